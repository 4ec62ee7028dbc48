//! RTCP compound packets from viewers.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rillcast::proto::rtp::rtcp::parse_compound;

fuzz_target!(|data: &[u8]| {
    for p in parse_compound(data) {
        if let Ok(p) = p {
            for _ in p.report_blocks() {}
        }
    }
});

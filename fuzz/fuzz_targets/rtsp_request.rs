//! RTSP requests and interleaved `$` frames from a client.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rillcast::proto::rtsp::request::{parse, Parsed};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    // Parse message after message, as the connection loop does.
    while let Ok(p) = parse(rest) {
        let consumed = match p {
            Parsed::Incomplete => break,
            Parsed::Request { consumed, .. } | Parsed::Interleaved { consumed, .. } => consumed,
        };
        assert!(consumed > 0 && consumed <= rest.len());
        rest = &rest[consumed..];
    }
});

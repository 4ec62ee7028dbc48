//! The RTSP connection state machine (`RtspConn`) fed a client's byte stream, request after
//! request, with invariants checked after every step. See `rillcast::fuzzing::rtsp_connection`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = rillcast::fuzzing::rtsp_connection(data);
});

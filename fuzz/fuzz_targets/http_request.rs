//! The whole HTTP request path: head parse → body cap → router (HLS with stream credentials,
//! then the web API: Host check → route → auth → CSRF → body) → response framing → body
//! reads. See `rillcast::fuzzing::http_request_path` for the input layout and invariants.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = rillcast::fuzzing::http_request_path(data);
});

//! WebSocket client frames (what a browser, or anyone, sends to `/STREAM/ws`): arbitrary bytes
//! in arbitrary read sizes. The reader must consume every byte it is given until it reports an
//! error, and never hand out a control payload over 125 bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rillcast::proto::ws::{ClientEvent, ClientFrameReader, MAX_CONTROL_PAYLOAD};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else { return };
    let mut r = ClientFrameReader::new(4096);
    for chunk in rest.chunks(1 + ctl as usize) {
        let mut left = chunk;
        while !left.is_empty() {
            match r.push(left) {
                Ok((used, ev)) => {
                    assert!(used > 0 && used <= left.len());
                    if let Some(ClientEvent::Ping(p)) = &ev {
                        assert!(p.len() <= MAX_CONTROL_PAYLOAD);
                    }
                    left = &left[used..];
                }
                Err(_) => return,
            }
        }
    }
});

//! ADTS ingest: arbitrary bytes in arbitrary read sizes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rillcast::ingest::adts::AdtsSplitter;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else { return };
    let mut s = AdtsSplitter::new();
    for chunk in rest.chunks(1 + ctl as usize) {
        s.push(chunk, &mut |p, f| {
            assert!(f.len() < 8192);
            assert!(p.sample_rate > 0);
        });
    }
});

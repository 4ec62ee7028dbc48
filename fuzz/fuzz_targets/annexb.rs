//! Annex B ingest: arbitrary bytes in arbitrary read sizes, with end-of-write signals.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rillcast::ingest::annexb::AnnexBAssembler;
use rillcast::media::Codec;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else { return };
    let codec = if ctl & 1 == 0 { Codec::H264 } else { Codec::H265 };
    let mut a = AnnexBAssembler::new(codec, 4096);
    let step = 1 + (ctl as usize >> 1) % 64;
    for (i, chunk) in rest.chunks(step).enumerate() {
        a.push(chunk, &mut |au| {
            assert!(au.data.len() <= 4096);
            // Every unit handed out is well-formed length-prefixed NALs.
            let total: usize = rillcast::ingest::annexb::nal_units(au.data).map(|n| n.len() + 4).sum();
            assert_eq!(total, au.data.len());
        });
        if (ctl >> 7) == 1 && i % 3 == 0 {
            a.end_of_write(&mut |au| assert!(au.data.len() <= 4096));
        }
    }
});

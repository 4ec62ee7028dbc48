//! MPEG-TS ingest: arbitrary bytes in arbitrary read sizes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rillcast::proto::ts_demux::TsDemuxer;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else { return };
    let mut d = TsDemuxer::new(64 * 1024);
    for chunk in rest.chunks(1 + ctl as usize * 3) {
        d.push(chunk, &mut |pes| assert!(pes.payload.len() <= 64 * 1024));
    }
    d.flush(&mut |pes| assert!(pes.payload.len() <= 64 * 1024));
});

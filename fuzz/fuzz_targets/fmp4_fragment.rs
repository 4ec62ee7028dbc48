//! The fMP4 muxer on arbitrary access units (ring payloads are length-prefixed NAL units, but
//! a broken encoder can put anything there): an error or a fragment whose boxes add up, never
//! a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rillcast::media::{Codec, FrameMeta, Track};
use rillcast::proto::fmp4::{fragment_decode_time, Fmp4Muxer, InitInfo};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, au)) = data.split_first() else { return };
    let mut m = Fmp4Muxer::new(InitInfo {
        video: Some(if ctl & 1 == 0 { Codec::H264 } else { Codec::H265 }),
        audio_rate_hz: Some(48_000),
    });
    let meta = FrameMeta {
        track: if ctl & 2 == 0 { Track::Video } else { Track::Audio },
        pts: u64::from(ctl) << 30,
        dts: u64::from(ctl),
        keyframe: ctl & 4 != 0,
    };
    let mut out = vec![0u8; (ctl as usize * 37) % 4096];
    if let Ok(n) = m.write_fragment(&meta, au, &mut out) {
        assert!(n <= out.len());
        let moof = u32::from_be_bytes(out[..4].try_into().unwrap()) as usize;
        let mdat = u32::from_be_bytes(out[moof..moof + 4].try_into().unwrap()) as usize;
        assert_eq!(moof + mdat, n);
        assert_eq!(fragment_decode_time(&out[..n]), Some(meta.dts));
    }
});

//! Parameter sets from the encoder (H.264 and H.265 SPS) and ADTS headers.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rillcast::media::{aac, h264, h265};

fuzz_target!(|data: &[u8]| {
    if let Ok(i) = h264::parse_sps(data) {
        let _ = i.codec_string();
    }
    if let Ok(i) = h265::parse_sps(data) {
        let _ = i.codec_string();
    }
    if let Ok(h) = aac::AdtsHeader::parse(data) {
        let _ = h.to_audio_params();
    }
    let _ = h264::first_mb_in_slice(data);
});

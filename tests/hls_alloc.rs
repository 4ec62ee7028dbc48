//! The allocation story with HLS running: frames published through a stream hub reach the
//! HLS consumer (`net::hls::HlsStream`: frame cursor + segmenter) and are cut into segments,
//! with a source restart on the way; after warm-up, 10,000+ frames cost zero heap allocations.
//! A counting global allocator measures it (the pattern of `tests/proto_alloc.rs`).
//!
//! The counting allocator is `tests/common/alloc.rs` (the library keeps
//! `#![deny(unsafe_code)]`).

mod common;

use std::sync::{Arc, Mutex};

use rillcast::ingest::source::video_params;
use rillcast::media::fanout::{FrameCursor, StreamHub};
use rillcast::media::ring::MediaRing;
use rillcast::media::{AudioParams, Codec, FrameMeta, Track};
use rillcast::net::hls::{HlsStream, HlsStreamConfig};
use rillcast::proto::hls::HlsConfig;

#[global_allocator]
static GLOBAL: common::alloc::CountingAlloc = common::alloc::CountingAlloc;

const AAC: AudioParams = AudioParams {
    object_type: 2,
    sample_rate_index: 3,
    sample_rate: 48_000,
    channels: 1,
};

fn video_au(len: usize) -> Vec<u8> {
    let mut au = ((len - 4) as u32).to_be_bytes().to_vec();
    au.push(0x65);
    au.resize(len, 0x5a);
    au
}

/// 30 fps video (GOP 30) interleaved with 48 kHz AAC, as the hub would get it from ingest.
struct Feeder {
    video: u64,
    audio: u64,
    key: Vec<u8>,
    delta: Vec<u8>,
    aac: Vec<u8>,
}

impl Feeder {
    /// Publishes `n` frames (video and audio in time order).
    fn publish(&mut self, hub: &mut StreamHub, n: u64) {
        for _ in 0..n {
            let v_90k = self.video * 3000;
            let a_90k = self.audio * 1024 * 90_000 / 48_000;
            let now_ms = v_90k.min(a_90k) / 90;
            if v_90k <= a_90k {
                let key = self.video.is_multiple_of(30);
                let meta = FrameMeta {
                    track: Track::Video,
                    pts: v_90k,
                    dts: v_90k,
                    keyframe: key,
                };
                let data = if key { &self.key } else { &self.delta };
                hub.publish(meta, data, now_ms).unwrap();
                self.video += 1;
            } else {
                let meta = FrameMeta {
                    track: Track::Audio,
                    pts: self.audio * 1024,
                    dts: self.audio * 1024,
                    keyframe: true,
                };
                hub.publish(meta, &self.aac, now_ms).unwrap();
                self.audio += 1;
            }
        }
    }
}

// A single test function so no other test thread allocates while counting.
#[test]
fn hls_consumer_and_segmenter_do_not_allocate_per_frame() {
    assert_eq!(
        common::alloc::count_on_this_thread(|| drop(std::hint::black_box(vec![1u8; 10]))),
        1
    );
    // Sized as the daemon sizes a stream: ring, 13-segment arena (window 6).
    let mut hub = StreamHub::new("live", MediaRing::new(1 << 20, 1024), 8);
    hub.set_video_params(video_params(
        Codec::H264,
        &[],
        &[0x67, 0x42, 0xc0, 0x1e, 0xda, 0x05, 0x07, 0xe8, 0x40],
        &[0x68, 0xce, 0x3c, 0x80],
    ));
    hub.set_audio_params(AAC);
    let cursor = FrameCursor::start(&hub.ring, [true, true], 1 << 19);
    let hls = Arc::new(Mutex::new(HlsStream::new(
        HlsStreamConfig {
            name: "live".into(),
            segmenter: HlsConfig {
                target_duration_ms: 1000,
                window_segments: 6,
                arena_len_bytes: 2 << 20,
                max_segments: 13,
            },
            expect_audio: true,
            max_bitrate_bps: 1_000_000,
        },
        cursor,
        // The real clock: the allocation count covers reading it per segment.
        rillcast::net::hls::system_wall_clock(),
    )));
    assert!(hub.add_consumer(hls.clone()));
    let mut f = Feeder {
        video: 0,
        audio: 0,
        key: video_au(12_000),
        delta: video_au(3_000),
        aac: vec![0x21; 200],
    };
    // Warm-up: the ring wraps, the segment table and the arena fill, a restart happens.
    f.publish(&mut hub, 3000);
    hub.source_restarted();
    f.publish(&mut hub, 1000);
    let before = hls.lock().unwrap().stats().unwrap();
    let frames = 12_000;
    let n = common::alloc::count_on_this_thread(|| f.publish(&mut hub, frames));
    let after = hls.lock().unwrap().stats().unwrap();
    assert_eq!(n, 0, "{n} allocations in {frames} frames through hub + HLS");
    // The frames really went through the segmenter: ~1 segment per second of media.
    let segs = after.segments_completed - before.segments_completed;
    assert!(segs >= 100, "{segs} segments in {frames} frames");
    assert_eq!(hls.lock().unwrap().push_errors, 0);
    assert_eq!(after.evicted_early, 0);
    // A restart (an event, not a frame: it may allocate codec strings) marks a discontinuity,
    // and the frames after it are again allocation-free.
    hub.source_restarted();
    f.publish(&mut hub, 100);
    let n = common::alloc::count_on_this_thread(|| f.publish(&mut hub, 2000));
    assert_eq!(n, 0, "{n} allocations in 2000 frames after a restart");
    let mut pl = String::with_capacity(4096);
    assert!(hls
        .lock()
        .unwrap()
        .segmenter()
        .unwrap()
        .render_media_playlist(&mut pl));
    assert!(pl.contains("#EXT-X-DISCONTINUITY"), "{pl}");
}

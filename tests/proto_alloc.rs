//! Measures heap allocations in the steady-state paths of the TS muxer, the HLS segmenter and
//! the TS demuxer with a counting global allocator: after construction and warm-up, muxing,
//! segmenting, rendering a playlist into a reused `String`, reading segments and demuxing must
//! allocate nothing.
//!
//! The counting allocator is `tests/common/alloc.rs` (the library keeps
//! `#![deny(unsafe_code)]`).

mod common;

use rillcast::media::{AudioParams, Codec, FrameMeta, Track};
use rillcast::proto::hls::{HlsConfig, HlsSegmenter};
use rillcast::proto::ts::TsMuxer;
use rillcast::proto::ts_demux::TsDemuxer;

#[global_allocator]
static GLOBAL: common::alloc::CountingAlloc = common::alloc::CountingAlloc;

const AAC: AudioParams = AudioParams {
    object_type: 2,
    sample_rate_index: 3,
    sample_rate: 48_000,
    channels: 2,
};

fn video_au(len: usize) -> Vec<u8> {
    let mut au = ((len - 4) as u32).to_be_bytes().to_vec();
    au.push(0x65);
    au.resize(len, 0x5a);
    au
}

// A single test function so no other test thread allocates while counting.
#[test]
fn steady_state_paths_do_not_allocate() {
    let key = video_au(6000);
    let delta = video_au(1500);
    let raw_aac = vec![0x21u8; 300];
    // The counter itself works.
    assert_eq!(
        common::alloc::count_on_this_thread(|| drop(std::hint::black_box(vec![1u8; 10]))),
        1
    );

    // Plain muxer into a caller buffer.
    let mut m = TsMuxer::new(Some(Codec::H264), Some(AAC)).unwrap();
    let mut buf = vec![0u8; 64 * 188];
    let n = common::alloc::count_on_this_thread(|| {
        for i in 0..100u64 {
            let v = FrameMeta {
                track: Track::Video,
                pts: i * 9000,
                dts: i * 9000,
                keyframe: i.is_multiple_of(10),
            };
            m.write_tables(&mut |_| {});
            m.write_video_into(&v, if v.keyframe { &key } else { &delta }, &mut buf)
                .unwrap();
            let a = FrameMeta {
                track: Track::Audio,
                pts: i * 1024,
                dts: i * 1024,
                keyframe: true,
            };
            m.write_audio_into(&a, &raw_aac, &mut buf).unwrap();
        }
    });
    assert_eq!(n, 0, "TsMuxer allocated {n} times in 100 frames");

    // Segmenter: warm up past the point where the segment table and arena are full, then
    // count over many more segments including evictions, playlist renders and reads.
    let cfg = HlsConfig {
        window_segments: 3,
        max_segments: 8,
        arena_len_bytes: 256 * 1024,
        ..HlsConfig::default()
    };
    let mut h = HlsSegmenter::new(cfg, Some(Codec::H264), Some(AAC)).unwrap();
    let mut playlist = String::with_capacity(4096);
    let mut read_buf = vec![0u8; 4096];
    let mut frame = 0u64;
    let mut run = |h: &mut HlsSegmenter, frames: u64, playlist: &mut String| {
        for _ in 0..frames {
            let t = frame * 9000;
            let v = FrameMeta {
                track: Track::Video,
                pts: t,
                dts: t,
                keyframe: frame.is_multiple_of(10),
            };
            h.push_video(
                &v,
                if v.keyframe { &key } else { &delta },
                1_700_000_000_000 + t / 90,
            )
            .unwrap();
            for k in 0..2 {
                let s = frame * 4800 / 10 + k * 1024;
                let a = FrameMeta {
                    track: Track::Audio,
                    pts: s,
                    dts: s,
                    keyframe: true,
                };
                h.push_audio(&a, &raw_aac, 1_700_000_000_000 + t / 90)
                    .unwrap();
            }
            if frame % 10 == 5 && frame > 10 {
                assert!(h.render_media_playlist(playlist));
                let seq = h.listed().last().unwrap();
                let mut off = 0;
                while let Ok(n) = h.read_segment(seq, off, &mut read_buf) {
                    if n == 0 {
                        break;
                    }
                    off += n;
                }
            }
            frame += 1;
        }
    };
    run(&mut h, 200, &mut playlist);
    let n = common::alloc::count_on_this_thread(|| run(&mut h, 300, &mut playlist));
    assert_eq!(n, 0, "HlsSegmenter allocated {n} times in 300 frames");
    assert!(h.stats().segments_completed >= 49);

    // Demuxer over the muxer's output.
    let mut ts = Vec::new();
    let mut m = TsMuxer::new(Some(Codec::H264), Some(AAC)).unwrap();
    m.write_tables(&mut |p| ts.extend_from_slice(p));
    for i in 0..50u64 {
        let v = FrameMeta {
            track: Track::Video,
            pts: i * 9000,
            dts: i * 9000,
            keyframe: i.is_multiple_of(10),
        };
        m.write_video(&v, if v.keyframe { &key } else { &delta }, &mut |p| {
            ts.extend_from_slice(p)
        })
        .unwrap();
        let a = FrameMeta {
            track: Track::Audio,
            pts: i * 1024,
            dts: i * 1024,
            keyframe: true,
        };
        m.write_audio(&a, &raw_aac, &mut |p| ts.extend_from_slice(p))
            .unwrap();
    }
    let mut d = TsDemuxer::new(64 * 1024);
    let mut pes = 0;
    let n = common::alloc::count_on_this_thread(|| {
        for chunk in ts.chunks(1000) {
            d.push(chunk, &mut |_| pes += 1);
        }
        d.flush(&mut |_| pes += 1);
    });
    assert_eq!(n, 0, "TsDemuxer allocated {n} times");
    assert_eq!(pes, 100);
}

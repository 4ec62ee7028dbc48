//! Bench feeder: writes rillcast's H.264 test pattern (`ingest::testsrc::TestPattern`) to
//! stdout as Annex B, one `write` per access unit, paced in real time — a stand-in for a camera
//! encoder writing into a pipe. The benchmark feeds the same bytes to rillcast (source kind
//! `stdin`) and to GStreamer's RTSP server (`fdsrc fd=0 ! h264parse`), so neither server pays
//! for encoding.
//!
//! `cargo run --release --example h264_feed -- [--width 1280] [--height 720] [--fps 30]
//!  [--gop 30] [--seconds 0 = forever] [--tag]` (`--tag`: an SEI with the frame number in
//!  front of every slice, as `rtsp_latency` uses).

#[path = "bench_common/mod.rs"]
mod bench_common;

use rillcast::ingest::testsrc::TestPattern;
use std::io::Write;
use std::time::{Duration, Instant};

fn main() {
    let mut width = 1280u32;
    let mut height = 720u32;
    let mut fps = 30u32;
    let mut gop = 30u32;
    let mut seconds = 0u64;
    let mut tag = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || -> u64 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{a} needs a number"))
        };
        match a.as_str() {
            "--width" => width = val() as u32,
            "--height" => height = val() as u32,
            "--fps" => fps = val() as u32,
            "--gop" => gop = val() as u32,
            "--seconds" => seconds = val(),
            "--tag" => tag = true,
            _ => panic!("unknown argument {a}"),
        }
    }
    let mut pattern = TestPattern::new(width, height, fps, gop).expect("test pattern");
    let mut frame = vec![0u8; pattern.max_frame_len()];
    let mut tagged = Vec::with_capacity(frame.len() + 64);
    let period = Duration::from_secs_f64(1.0 / fps as f64);
    let start = Instant::now();
    let mut next = start;
    let mut out = std::io::stdout().lock();
    let mut bytes = 0u64;
    for n in 0u64.. {
        if seconds > 0 && start.elapsed().as_secs() >= seconds {
            break;
        }
        let (len, _key) = pattern
            .next_frame(&mut frame)
            .expect("frame fits max_frame_len");
        let au = if tag {
            bench_common::insert_before_slice(
                &frame[..len],
                &bench_common::tag_sei(n as u32),
                &mut tagged,
            );
            &tagged[..]
        } else {
            &frame[..len]
        };
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else if now - next > 4 * period {
            // Blocked by the reader for a while: don't burst to catch up.
            next = now;
        }
        next += period;
        if out.write_all(au).and_then(|_| out.flush()).is_err() {
            break; // the reader went away
        }
        bytes += au.len() as u64;
        if n > 0 && n % (fps as u64 * 10) == 0 {
            eprintln!(
                "h264_feed: {n} frames, {:.2} Mbit/s",
                bytes as f64 * 8.0 / start.elapsed().as_secs_f64() / 1e6
            );
        }
    }
}

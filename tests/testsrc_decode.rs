//! End-to-end checks of the built-in test source against real ffmpeg/ffprobe: the H.264 and AAC
//! it generates decode with no error, at the right frame count, rate and duration; the picture
//! is what the generator means to draw; and `next_frame` allocates nothing.
//!
//! Needs `ffmpeg` and `ffprobe` on PATH; fails with a clear message if they are missing.

mod common;

use std::path::PathBuf;
use std::process::Command;

use rillcast::ingest::testsrc::{TestPattern, TestTone};

#[global_allocator]
static GLOBAL: common::alloc::CountingAlloc = common::alloc::CountingAlloc;

fn scratch_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rillcast-testsrc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir.join(name)
}

/// Runs a tool, panicking with a clear message if it is not installed.
fn run(tool: &str, args: &[&str]) -> std::process::Output {
    match Command::new(tool).args(args).output() {
        Ok(out) => out,
        Err(e) => panic!(
            "this test needs `{tool}` on PATH (install ffmpeg, e.g. `apt-get install ffmpeg`): {e}"
        ),
    }
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Writes `frames` access units to an Annex B file; returns (path, total bytes).
fn write_h264(name: &str, w: u32, h: u32, fps: u32, gop: u32, frames: usize) -> (PathBuf, usize) {
    let mut pattern = TestPattern::new(w, h, fps, gop).expect("valid test pattern");
    let mut buf = vec![0u8; pattern.max_frame_len()];
    let mut stream = Vec::new();
    for i in 0..frames {
        let (n, key) = pattern
            .next_frame(&mut buf)
            .expect("frame fits max_frame_len");
        assert_eq!(
            key,
            (i as u32).is_multiple_of(gop),
            "frame {i}: keyframe flag"
        );
        stream.extend_from_slice(&buf[..n]);
    }
    let path = scratch_path(name);
    std::fs::write(&path, &stream).expect("write h264");
    (path, stream.len())
}

/// ffmpeg decodes the stream with `-v error` printing nothing.
fn assert_decodes_silently(input_args: &[&str], path: &std::path::Path) {
    let p = path.to_str().expect("utf-8 temp path");
    let mut args = vec!["-nostdin", "-v", "error"];
    args.extend_from_slice(input_args);
    args.extend_from_slice(&["-i", p, "-f", "null", "-"]);
    let out = run("ffmpeg", &args);
    assert!(
        out.status.success(),
        "ffmpeg failed on {p}: {}",
        stderr_of(&out)
    );
    assert_eq!(stderr_of(&out), "", "ffmpeg reported errors decoding {p}");
}

fn ffprobe_stream(path: &std::path::Path, count: &str, entries: &str) -> String {
    let p = path.to_str().expect("utf-8 temp path");
    let entries = format!("stream={entries}");
    let out = run(
        "ffprobe",
        &[
            "-v",
            "error",
            count,
            "-select_streams",
            "0",
            "-show_entries",
            &entries,
            "-of",
            "default=nw=1",
            p,
        ],
    );
    assert!(
        out.status.success(),
        "ffprobe failed on {p}: {}",
        stderr_of(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn check_h264(name: &str, w: u32, h: u32, fps: u32, gop: u32) {
    const FRAMES: usize = 90;
    let (path, total_bytes) = write_h264(name, w, h, fps, gop, FRAMES);
    assert_decodes_silently(&["-f", "h264"], &path);

    let probe = ffprobe_stream(
        &path,
        "-count_frames",
        "codec_name,profile,width,height,r_frame_rate,nb_read_frames",
    );
    for want in [
        "codec_name=h264".to_string(),
        "profile=Constrained Baseline".to_string(),
        format!("width={w}"),
        format!("height={h}"),
        format!("r_frame_rate={fps}/1"),
        format!("nb_read_frames={FRAMES}"),
    ] {
        assert!(
            probe.lines().any(|l| l == want),
            "ffprobe of {name}: want {want}, got\n{probe}"
        );
    }

    // Every decoded frame differs from the one before it.
    let p = path.to_str().expect("utf-8 temp path");
    let out = run(
        "ffmpeg",
        &[
            "-nostdin", "-v", "error", "-f", "h264", "-i", p, "-f", "framemd5", "-",
        ],
    );
    assert!(
        out.status.success(),
        "ffmpeg framemd5 failed: {}",
        stderr_of(&out)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let hashes: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit(',').next())
        .map(str::trim)
        .collect();
    assert_eq!(hashes.len(), FRAMES, "framemd5 lines of {name}");
    for (i, pair) in hashes.windows(2).enumerate() {
        assert_ne!(
            pair[0],
            pair[1],
            "{name}: frames {i} and {} decode identically",
            i + 1
        );
    }

    let kbit_s = total_bytes as f64 * 8.0 * f64::from(fps) / FRAMES as f64 / 1000.0;
    eprintln!("{name}: {w}x{h}@{fps} gop {gop}: {total_bytes} bytes / {FRAMES} frames = {kbit_s:.0} kbit/s");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn h264_1280x720_decodes_with_ffmpeg() {
    check_h264("720p.h264", 1280, 720, 30, 30);
}

#[test]
fn h264_320x240_decodes_with_ffmpeg() {
    check_h264("240p.h264", 320, 240, 25, 12);
}

/// Decodes 320x240 to raw luma and checks the picture is the scene the generator describes:
/// the background stays exactly 128 (no DC-prediction smear from the box), the bottom row
/// carries the frame number in binary (16 MBs, MSB left, white = 1), and the box (7x7 MBs
/// here) sits on MB columns and moves by at most one MB per frame.
#[test]
fn decoded_320x240_picture_matches_the_scene() {
    const W: usize = 320;
    const H: usize = 240;
    const FRAMES: usize = 60;
    let (path, _) = write_h264("scene.h264", W as u32, H as u32, 30, 30, FRAMES);
    let p = path.to_str().expect("utf-8 temp path");
    let out = run(
        "ffmpeg",
        &[
            "-nostdin", "-v", "error", "-f", "h264", "-i", p, "-f", "rawvideo", "-pix_fmt",
            "yuv420p", "-",
        ],
    );
    assert!(out.status.success(), "ffmpeg failed: {}", stderr_of(&out));
    // yuv420p, not gray: gray would make swscale expand limited-range luma to full range.
    let yuv = out.stdout;
    assert_eq!(yuv.len(), W * H * 3 / 2 * FRAMES, "decoded frame count");

    // 15 MB rows: box is 7 MBs at MB rows 3..10 (pixels 48..160), counter in MB row 14.
    let (box_top, box_bottom) = (48, 160);
    let mut last_box_x: Option<usize> = None;
    for (n, frame) in yuv.chunks(W * H * 3 / 2).enumerate() {
        let row = |y: usize| &frame[y * W..(y + 1) * W];
        for y in (0..box_top).chain(box_bottom..224) {
            assert!(
                row(y).iter().all(|&v| v == 128),
                "frame {n}: background row {y} not flat grey"
            );
        }
        // Counter: sample the middle of each bit's MB.
        let counter_row = row(232);
        let mut value = 0u32;
        for bit in 0..16 {
            let v = counter_row[bit * 16 + 8];
            assert!(v == 16 || v == 235, "frame {n}: counter bit {bit} luma {v}");
            value = (value << 1) | u32::from(v == 235);
        }
        assert_eq!(value as usize, n, "frame {n}: counter");
        assert!(
            counter_row[256..].iter().all(|&v| v == 128),
            "frame {n}: right of the counter"
        );
        // Box: the non-grey pixels of its middle row are one run of 112 px starting on an MB.
        let mid = row(104);
        let first = mid.iter().position(|&v| v != 128).expect("box visible");
        let len = mid[first..].iter().take_while(|&&v| v != 128).count();
        assert_eq!(
            (first % 16, len),
            (0, 112),
            "frame {n}: box at {first}, {len} px wide"
        );
        assert!(
            mid[first + len..].iter().all(|&v| v == 128),
            "frame {n}: one box only"
        );
        if let Some(prev) = last_box_x {
            assert!(
                first.abs_diff(prev) <= 16,
                "frame {n}: box jumped from {prev} to {first}"
            );
        }
        last_box_x = Some(first);
    }
    let _ = std::fs::remove_file(&path);
}

fn check_aac(name: &str, rate: u32, channels: u8) {
    const FRAMES: usize = 100;
    let mut tone = TestTone::new(rate, channels).expect("valid test tone");
    let mut buf = vec![0u8; tone.max_frame_len()];
    let mut stream = Vec::new();
    for _ in 0..FRAMES {
        let n = tone.next_frame(&mut buf).expect("frame fits max_frame_len");
        stream.extend_from_slice(&buf[..n]);
    }
    let path = scratch_path(name);
    std::fs::write(&path, &stream).expect("write aac");
    assert_decodes_silently(&["-f", "aac"], &path);

    let probe = ffprobe_stream(
        &path,
        "-count_packets",
        "codec_name,profile,sample_rate,channels,nb_read_packets",
    );
    for want in [
        "codec_name=aac".to_string(),
        "profile=LC".to_string(),
        format!("sample_rate={rate}"),
        format!("channels={channels}"),
        format!("nb_read_packets={FRAMES}"),
    ] {
        assert!(
            probe.lines().any(|l| l == want),
            "ffprobe of {name}: want {want}, got\n{probe}"
        );
    }

    // Duration as ffprobe reports it per packet: the last packet ends at 100 * 1024 / rate.
    let p = path.to_str().expect("utf-8 temp path");
    let out = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            "packet=pts_time,duration_time",
            "-of",
            "csv=p=0",
            p,
        ],
    );
    assert!(
        out.status.success(),
        "ffprobe packets failed: {}",
        stderr_of(&out)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().expect("packets listed");
    let mut fields = last
        .split(',')
        .map(|f| f.trim().parse::<f64>().expect("number"));
    let end_s = fields.next().expect("pts_time") + fields.next().expect("duration_time");
    let want_s = (FRAMES * 1024) as f64 / f64::from(rate);
    assert!(
        (end_s - want_s).abs() < 1e-3,
        "{name}: ends at {end_s} s, want {want_s} s"
    );

    // Decoded samples: the right count; a beep of about -18 dBFS in the first frames and
    // digital silence after it.
    let out = run(
        "ffmpeg",
        &[
            "-nostdin",
            "-v",
            "error",
            "-i",
            p,
            "-f",
            "s16le",
            "-acodec",
            "pcm_s16le",
            "-",
        ],
    );
    assert!(
        out.status.success(),
        "ffmpeg decode failed: {}",
        stderr_of(&out)
    );
    let samples: Vec<i16> = out
        .stdout
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let ch = usize::from(channels);
    assert_eq!(
        samples.len(),
        FRAMES * 1024 * ch,
        "{name}: decoded sample count"
    );
    let peak = |from_frame: usize, to_frame: usize| {
        samples[from_frame * 1024 * ch..to_frame * 1024 * ch]
            .iter()
            .map(|s| s.unsigned_abs())
            .max()
            .unwrap_or(0)
    };
    let beep_peak = peak(1, 4);
    assert!(
        (3500..=4700).contains(&beep_peak),
        "{name}: beep peak {beep_peak}, want about 4096"
    );
    assert_eq!(peak(8, 40), 0, "{name}: silence after the beep");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn aac_44100_stereo_decodes_with_ffmpeg() {
    check_aac("44k1_stereo.aac", 44_100, 2);
}

#[test]
fn aac_48000_mono_decodes_with_ffmpeg() {
    check_aac("48k_mono.aac", 48_000, 1);
}

#[test]
fn next_frame_does_not_allocate() {
    // The counter works: a Vec allocation is seen.
    assert!(common::alloc::count_on_this_thread(|| drop(std::hint::black_box(vec![1u8; 10]))) >= 1);

    let mut pattern = TestPattern::new(1280, 720, 30, 30).expect("valid test pattern");
    let mut tone = TestTone::new(48_000, 2).expect("valid test tone");
    let mut vbuf = vec![0u8; pattern.max_frame_len()];
    let mut abuf = vec![0u8; tone.max_frame_len()];
    let mut bytes = 0usize;
    let allocs = common::alloc::count_on_this_thread(|| {
        for _ in 0..300 {
            bytes += pattern.next_frame(&mut vbuf).expect("fits").0;
            bytes += tone.next_frame(&mut abuf).expect("fits");
        }
    });
    assert!(bytes > 0);
    assert_eq!(
        allocs, 0,
        "next_frame allocated {allocs} times over 300 frames"
    );
}

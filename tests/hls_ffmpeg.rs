//! End-to-end check of the HLS segmenter's TS against real tools: ffmpeg makes H.264 (libx264,
//! no B-frames) and AAC, the test converts them to the ring's frame format, segments them, and
//! hands the segments to ffprobe (packets: continuity, monotonic PTS), ffmpeg (decodes with
//! `-v error` silent) and tstools' `tsinfo` (PAT/PMT). A missing tool fails the test.

use std::path::{Path, PathBuf};
use std::process::Command;

use rillcast::media::{AudioParams, Codec, FrameMeta, Track};
use rillcast::proto::hls::{HlsConfig, HlsSegmenter};
use rillcast::proto::ts_demux::TsDemuxer;

const T0_MS: u64 = 1_735_689_600_000;

fn tool(name: &str, args: &[&str]) -> std::process::Output {
    Command::new(name)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("`{name}` is needed for this test and could not run ({e}); install it (ffmpeg / tstools)"))
}

fn temp_dir(case: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rillcast-hls-ffmpeg-{case}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn ffmpeg(args: &[&str]) {
    let out = tool("ffmpeg", args);
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// 3 s of 10 fps video, one keyframe per second, no B-frames, AUD before every access unit.
fn ffmpeg_video(dir: &Path, codec: Codec) -> Vec<u8> {
    let path = dir.join("in.es");
    let p = path.to_str().unwrap();
    let src = [
        "-v",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=160x120:rate=10",
        "-t",
        "3",
    ];
    match codec {
        Codec::H265 => ffmpeg(
            &[
                &src[..],
                &[
                    "-c:v",
                    "libx265",
                    "-bf",
                    "0",
                    "-g",
                    "10",
                    "-x265-params",
                    "aud=1:log-level=error",
                    "-f",
                    "hevc",
                    p,
                ],
            ]
            .concat(),
        ),
        _ => ffmpeg(
            &[
                &src[..],
                &[
                    "-c:v",
                    "libx264",
                    "-bf",
                    "0",
                    "-g",
                    "10",
                    "-x264-params",
                    "aud=1",
                    "-f",
                    "h264",
                    p,
                ],
            ]
            .concat(),
        ),
    }
    std::fs::read(path).unwrap()
}

/// 3 s of a 48 kHz sine as AAC in ADTS.
fn ffmpeg_aac(dir: &Path) -> Vec<u8> {
    let path = dir.join("in.aac");
    ffmpeg(&[
        "-v",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        "sine=sample_rate=48000",
        "-t",
        "3",
        "-c:a",
        "aac",
        "-f",
        "adts",
        path.to_str().unwrap(),
    ]);
    std::fs::read(path).unwrap()
}

/// Annex B -> access units in ring format (4-byte lengths), split at AUD (x264/x265 `aud=1`), AUD
/// dropped (the muxer writes its own). Returns (au, keyframe).
fn annexb_to_frames(es: &[u8], codec: Codec) -> Vec<(Vec<u8>, bool)> {
    let mut nals = Vec::new();
    let mut i = 0;
    let mut start = None;
    while i + 3 <= es.len() {
        if es[i..i + 3] == [0, 0, 1] {
            if let Some(s) = start {
                let mut e = i;
                while e > s && es[e - 1] == 0 {
                    e -= 1;
                }
                nals.push(&es[s..e]);
            }
            i += 3;
            start = Some(i);
        } else {
            i += 1;
        }
    }
    if let Some(s) = start {
        nals.push(&es[s..]);
    }
    let mut frames: Vec<(Vec<u8>, bool)> = Vec::new();
    for nal in nals {
        let (t, aud, is_key) = match codec {
            Codec::H265 => {
                let t = (nal[0] >> 1) & 0x3f;
                (t, 35, (16..=23).contains(&t))
            }
            _ => (nal[0] & 0x1f, 9, nal[0] & 0x1f == 5),
        };
        if t == aud {
            frames.push((Vec::new(), false));
            continue;
        }
        let f = frames.last_mut().expect("stream starts with an AUD");
        f.0.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        f.0.extend_from_slice(nal);
        f.1 |= is_key;
    }
    frames
}

/// ADTS stream -> (params, raw frames).
fn adts_to_frames(es: &[u8]) -> (AudioParams, Vec<Vec<u8>>) {
    let mut frames = Vec::new();
    let mut params = None;
    let mut rest = es;
    while rest.len() >= 7 {
        assert_eq!(rest[0], 0xff);
        let hdr_len = if rest[1] & 1 == 1 { 7 } else { 9 };
        let len =
            ((rest[3] as usize & 3) << 11) | ((rest[4] as usize) << 3) | (rest[5] as usize >> 5);
        let sr_index = (rest[2] >> 2) & 0xf;
        params.get_or_insert(AudioParams {
            object_type: (rest[2] >> 6) + 1,
            sample_rate_index: sr_index,
            sample_rate: [96_000, 88_200, 64_000, 48_000, 44_100, 32_000][sr_index as usize],
            channels: ((rest[2] & 1) << 2) | (rest[3] >> 6),
        });
        frames.push(rest[hdr_len..len].to_vec());
        rest = &rest[len..];
    }
    (params.unwrap(), frames)
}

/// Segments 3 s of ffmpeg output, checks the two complete segments and their concatenation
/// with ffprobe, ffmpeg and tsinfo.
fn run_case(case: &str, video_codec: Option<Codec>, with_audio: bool) {
    let dir = temp_dir(case);
    let video = video_codec
        .map(|c| annexb_to_frames(&ffmpeg_video(&dir, c), c))
        .unwrap_or_default();
    let (params, audio) = if with_audio {
        let (p, f) = adts_to_frames(&ffmpeg_aac(&dir));
        (Some(p), f)
    } else {
        (None, Vec::new())
    };
    if video_codec.is_some() {
        assert_eq!(video.len(), 30);
        assert!(video[0].1 && video[10].1 && !video[1].1);
    }
    if let Some(p) = params {
        assert_eq!(p.sample_rate, 48_000);
    }

    let cfg = HlsConfig {
        window_segments: 3,
        max_segments: 8,
        arena_len_bytes: 1 << 20,
        ..HlsConfig::default()
    };
    let mut h = HlsSegmenter::new(cfg, video_codec, params).unwrap();
    // Offset the clock so PTS don't start at 0 (as a camera's wouldn't).
    let base_90k = 900_000u64;
    let mut a = 0usize;
    let mut push_audio_until = |h: &mut HlsSegmenter, t: u64| {
        while a < audio.len() && base_90k + a as u64 * 1920 <= t {
            let s = base_90k * 48_000 / 90_000 + a as u64 * 1024;
            let m = FrameMeta {
                track: Track::Audio,
                pts: s,
                dts: s,
                keyframe: true,
            };
            h.push_audio(&m, &audio[a], T0_MS + s / 48).unwrap();
            a += 1;
        }
    };
    for (i, (au, key)) in video.iter().enumerate() {
        let t = base_90k + i as u64 * 9000;
        push_audio_until(&mut h, t);
        let m = FrameMeta {
            track: Track::Video,
            pts: t,
            dts: t,
            keyframe: *key,
        };
        h.push_video(&m, au, T0_MS + t / 90).unwrap();
    }
    if video_codec.is_none() {
        push_audio_until(&mut h, u64::MAX);
    }
    let listed: Vec<u64> = h.listed().collect();
    // The AAC encoder's priming and padding make audio-only a little longer than 3 s.
    assert!(
        listed.starts_with(&[0, 1]) && listed.len() <= 3,
        "{case}: {listed:?}"
    );

    // Write each complete segment and their concatenation.
    let mut all = Vec::new();
    let mut files = Vec::new();
    for seq in [0, 1] {
        let len = h.segment_len(seq).unwrap();
        let mut seg = vec![0u8; len];
        let mut off = 0;
        while off < len {
            off += h
                .read_segment(seq, off, &mut seg[off..(off + 1000).min(len)])
                .unwrap();
        }
        let path = dir.join(format!("seg{seq}.ts"));
        std::fs::write(&path, &seg).unwrap();
        files.push(path);
        all.extend_from_slice(&seg);
    }
    let all_path = dir.join("all.ts");
    std::fs::write(&all_path, &all).unwrap();

    // Our own view: continuity counters across the concatenation (segments are consecutive).
    let mut last_cc = std::collections::HashMap::new();
    for p in all.chunks(188) {
        assert_eq!(p[0], 0x47);
        let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
        let cc = p[3] & 0xf;
        if let Some(prev) = last_cc.insert(pid, cc) {
            assert_eq!(cc, (prev + 1) & 0xf, "CC gap on PID {pid:#x}");
        }
    }
    let mut d = TsDemuxer::new(1 << 20);
    d.push(&all, &mut |_| {});
    d.flush(&mut |_| {});
    assert_eq!(d.stats().cc_errors, 0);
    assert_eq!(d.stats().psi_errors, 0);

    let (v_idx, a_idx) = match (video_codec.is_some(), with_audio) {
        (true, true) => (Some(0), Some(1)),
        (true, false) => (Some(0), None),
        _ => (None, Some(0)),
    };
    for f in files.iter().chain([&all_path]) {
        let fs = f.to_str().unwrap();
        // ffprobe: every packet, no corrupt flag, PTS strictly increasing per stream.
        let out = tool(
            "ffprobe",
            &[
                "-v",
                "error",
                "-show_entries",
                "packet=stream_index,pts,dts,flags",
                "-of",
                "csv=p=0",
                fs,
            ],
        );
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "",
            "ffprobe complained about {fs}"
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let mut last = [None::<u64>; 2];
        let mut count = [0usize; 2];
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let f: Vec<&str> = line.split(',').collect();
            let idx: usize = f[0].parse().unwrap();
            let pts: u64 = f[1].parse().unwrap();
            assert!(!f[3].contains('C'), "corrupt packet in {fs}: {line}");
            if let Some(prev) = last[idx] {
                assert!(pts > prev, "PTS not increasing in {fs}: {line}");
            }
            last[idx] = Some(pts);
            count[idx] += 1;
        }
        if let Some(v) = v_idx {
            assert!(count[v] >= 10, "{fs}: video packets {count:?}");
        }
        if let Some(a) = a_idx {
            assert!(count[a] >= 40, "{fs}: audio packets {count:?}");
        }

        // ffmpeg decodes it without a word at -v error.
        let out = tool("ffmpeg", &["-v", "error", "-i", fs, "-f", "null", "-"]);
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "",
            "ffmpeg decode errors for {fs}"
        );

        // tstools sees the PAT and PMT at the start of each segment.
        let out = tool("tsinfo", &[fs]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "tsinfo failed: {text}");
        assert!(text.contains("Packet 1 is PAT"), "{text}");
        assert!(
            text.contains("Packet 2 is PMT with PID 1000 (4096)"),
            "{text}"
        );
        let pcr = if video_codec.is_some() {
            "PCR PID 0100 (256)"
        } else {
            "PCR PID 0101 (257)"
        };
        assert!(text.contains(pcr), "{text}");
        match video_codec {
            Some(Codec::H265) => assert!(
                text.contains("PID 0100 ( 256) -> Stream type 24 ( 36)"),
                "{text}"
            ),
            Some(_) => assert!(
                text.contains("PID 0100 ( 256) -> Stream type 1b ( 27) H.264"),
                "{text}"
            ),
            None => {}
        }
        assert_eq!(
            text.contains("PID 0101 ( 257) -> Stream type 0f ( 15) 13818-7 Audio with ADTS"),
            with_audio,
            "{text}"
        );
    }
    // First segment's first packet of the driving stream: offset PTS, keyframe flag.
    let sel = if video_codec.is_some() { "v" } else { "a" };
    let out = tool(
        "ffprobe",
        &[
            "-v",
            "error",
            "-select_streams",
            sel,
            "-show_entries",
            "packet=pts,flags",
            "-of",
            "csv=p=0",
            files[0].to_str().unwrap(),
        ],
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("900000,K"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn h264_aac_segments_decode_and_probe_clean() {
    run_case("h264-aac", Some(Codec::H264), true);
}

#[test]
fn h265_video_only_segments_decode_and_probe_clean() {
    run_case("h265", Some(Codec::H265), false);
}

#[test]
fn aac_audio_only_segments_decode_and_probe_clean() {
    run_case("aac", None, true);
}

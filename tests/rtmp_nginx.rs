//! End-to-end: the sans-IO RTMP publisher, driven over a blocking `TcpStream` by a test-only
//! driver, publishes real H.264 + AAC (made by ffmpeg) to nginx with libnginx-mod-rtmp, while
//! ffmpeg/ffprobe read the stream back. Also: a wrong app and a duplicate stream key must end in
//! a `Failed` state, not a hang.
//!
//! Needs `nginx` (with /usr/lib/nginx/modules/ngx_rtmp_module.so), `ffmpeg` and `ffprobe`; fails
//! with a clear message when one is missing. nginx is killed by a Drop guard in all cases.

mod common;

use common::nginx::{Nginx, NginxOpts};
use common::{free_port, require_tool, temp_dir};
use rillcast::media::{AudioParams, Codec, FrameMeta, Track, VideoParams};
use rillcast::proto::rtmp::{RejectKind, RtmpError, RtmpPublisher, RtmpState, StreamInfo};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills (and reaps) a child process when dropped, whatever the test outcome.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------- media fixtures: ffmpeg output split into ring-format frames ----------

struct VideoFrame {
    avcc: Vec<u8>,
    keyframe: bool,
}

/// Groups NAL units into access units (H.264 7.4.1.2.3: a new AU begins with an AUD, SPS, PPS
/// or SEI after a slice, or a slice with first_mb_in_slice == 0 after a slice).
fn split_h264(data: &[u8]) -> (Vec<VideoFrame>, Vec<u8>, Vec<u8>) {
    let (mut sps, mut pps) = (Vec::new(), Vec::new());
    let mut frames: Vec<VideoFrame> = Vec::new();
    let mut cur = VideoFrame {
        avcc: Vec::new(),
        keyframe: false,
    };
    let mut cur_has_slice = false;
    for nal in common::media::annexb_nals(data) {
        let t = nal[0] & 0x1F;
        let is_slice = t == 1 || t == 5;
        let first_mb_zero = is_slice && nal.get(1).is_some_and(|b| b & 0x80 != 0);
        let starts_au = cur_has_slice && (matches!(t, 6..=9) || first_mb_zero);
        if starts_au {
            frames.push(std::mem::replace(
                &mut cur,
                VideoFrame {
                    avcc: Vec::new(),
                    keyframe: false,
                },
            ));
            cur_has_slice = false;
        }
        if t == 7 && sps.is_empty() {
            sps = nal.to_vec();
        }
        if t == 8 && pps.is_empty() {
            pps = nal.to_vec();
        }
        cur.keyframe |= t == 5;
        cur_has_slice |= is_slice;
        cur.avcc
            .extend_from_slice(&(nal.len() as u32).to_be_bytes());
        cur.avcc.extend_from_slice(nal);
    }
    if cur_has_slice {
        frames.push(cur);
    }
    (frames, sps, pps)
}

const AAC_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// Splits ADTS (ISO 14496-3 1.A.2) into raw AAC frames and the stream's parameters.
fn split_adts(data: &[u8]) -> (Vec<Vec<u8>>, AudioParams) {
    let mut frames = Vec::new();
    let mut params = None;
    let mut pos = 0;
    while pos + 7 <= data.len() {
        let h = &data[pos..pos + 7];
        assert!(
            h[0] == 0xFF && h[1] & 0xF0 == 0xF0,
            "ADTS sync lost at {pos}"
        );
        let header_len = if h[1] & 1 == 1 { 7 } else { 9 };
        let len = (((h[3] & 3) as usize) << 11) | ((h[4] as usize) << 3) | ((h[5] as usize) >> 5);
        let sr_idx = (h[2] >> 2) & 0xF;
        params.get_or_insert(AudioParams {
            object_type: (h[2] >> 6) + 1,
            sample_rate_index: sr_idx,
            sample_rate: AAC_RATES[sr_idx as usize],
            channels: ((h[2] & 1) << 2) | (h[3] >> 6),
        });
        frames.push(data[pos + header_len..pos + len].to_vec());
        pos += len;
    }
    (frames, params.expect("no ADTS frames"))
}

struct Media {
    video: Vec<VideoFrame>,
    params: VideoParams,
    audio: Vec<Vec<u8>>,
    audio_params: AudioParams,
}

fn make_media(dir: &Path, seconds: u32) -> Media {
    require_tool("ffmpeg");
    let v = dir.join("ffmpeg_testsrc2.h264");
    let a = dir.join("ffmpeg_sine.aac");
    let t = seconds.to_string();
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440"])
        .args([
            "-map", "0:v", "-t", &t, "-c:v", "libx264", "-bf", "0", "-g", "25", "-f", "h264",
        ])
        .arg(&v)
        .args(["-map", "1:a", "-t", &t, "-c:a", "aac", "-f", "adts"])
        .arg(&a)
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (video, sps, pps) = split_h264(&std::fs::read(&v).unwrap());
    assert!(
        !sps.is_empty() && !pps.is_empty(),
        "no SPS/PPS in ffmpeg output"
    );
    let (audio, audio_params) = split_adts(&std::fs::read(&a).unwrap());
    let params = VideoParams {
        codec: Codec::H264,
        vps: Vec::new(),
        sps,
        pps,
        width: 320,
        height: 240,
        fps: Some((25, 1)),
    };
    Media {
        video,
        params,
        audio,
        audio_params,
    }
}

// ---------- the test-only blocking driver ----------

struct Driver {
    sock: TcpStream,
    p: RtmpPublisher,
    start: Instant,
    out: Vec<u8>,
    inbuf: Vec<u8>,
}

fn random_c1() -> [u8; 1528] {
    let mut x = Instant::now().elapsed().as_nanos() as u64 | 1;
    let mut r = [0u8; 1528];
    for b in r.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    r
}

impl Driver {
    fn connect(port: u16, app: &str, key: &str) -> Driver {
        let sock = TcpStream::connect(("127.0.0.1", port)).expect("connect to nginx");
        sock.set_nodelay(true).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(2)))
            .unwrap();
        let url = format!("rtmp://127.0.0.1:{port}/{app}");
        let p = RtmpPublisher::new(&url, Some(key), 0, random_c1()).unwrap();
        Driver {
            sock,
            p,
            start: Instant::now(),
            out: vec![0; 16384],
            inbuf: vec![0; 16384],
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Writes what the core has, reads what the socket has (waiting at most ~2 ms), runs timers.
    fn pump(&mut self) {
        loop {
            let n = self.p.poll_transmit(&mut self.out);
            if n == 0 {
                break;
            }
            if self.sock.write_all(&self.out[..n]).is_err() {
                self.p.handle_eof();
                return;
            }
        }
        let now = self.now_ms();
        match self.sock.read(&mut self.inbuf) {
            Ok(0) => self.p.handle_eof(),
            Ok(n) => {
                let _ = self.p.handle_input(&self.inbuf[..n], now);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => self.p.handle_eof(),
        }
        if self.p.poll_timeout().is_some_and(|t| now >= t) {
            self.p.handle_timeout(now);
        }
    }

    /// Pumps until the state leaves Handshaking/Connecting (or `limit` passes).
    fn wait_settled(&mut self, limit: Duration) -> RtmpState {
        let t0 = Instant::now();
        while matches!(
            self.p.state(),
            RtmpState::Handshaking | RtmpState::Connecting
        ) {
            assert!(
                t0.elapsed() < limit,
                "no publish result within {limit:?}: a hang"
            );
            self.pump();
        }
        self.p.state()
    }
}

fn spawn_reader(args: &[&str]) -> KillOnDrop {
    KillOnDrop(
        Command::new(args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", args[0])),
    )
}

/// Waits for a reader to exit (bounded), returning (stdout, stderr).
fn finish_reader(mut c: KillOnDrop, limit: Duration) -> (String, String) {
    let t0 = Instant::now();
    while c.0.try_wait().unwrap().is_none() {
        assert!(
            t0.elapsed() < limit,
            "{:?} did not finish within {limit:?}",
            c.0
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (mut out, mut err) = (String::new(), String::new());
    c.0.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    c.0.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (out, err)
}

/// Per-stream (packets, first pts s, last pts+duration s) from ffmpeg's framecrc output.
fn framecrc_spans(text: &str) -> Vec<(usize, f64, f64)> {
    let mut tb = vec![];
    let mut spans: Vec<(usize, f64, f64)> = vec![];
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("#tb ") {
            let (idx, frac) = rest.split_once(": ").unwrap();
            let (n, d) = frac.split_once('/').unwrap();
            let i: usize = idx.parse().unwrap();
            tb.resize(tb.len().max(i + 1), 0.0);
            tb[i] = n.trim().parse::<f64>().unwrap() / d.trim().parse::<f64>().unwrap();
            spans.resize(tb.len(), (0, f64::MAX, 0.0));
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            let i: usize = f[0].parse().unwrap();
            let pts: f64 = f[2].parse::<f64>().unwrap() * tb[i];
            let dur: f64 = f[3].parse::<f64>().unwrap() * tb[i];
            let s = &mut spans[i];
            s.0 += 1;
            s.1 = s.1.min(pts);
            s.2 = s.2.max(pts + dur);
        }
    }
    spans
}

#[test]
fn publish_to_nginx_rtmp_and_read_back() {
    require_tool("ffprobe");
    let dir = temp_dir("rtmp-nginx");
    let nginx = Nginx::start(&dir, free_port(), NginxOpts::default());
    let media = make_media(&dir, 12);
    assert!(
        media.video.len() >= 295 && media.video[0].keyframe,
        "{} video frames",
        media.video.len()
    );
    let key = "rillcast-test-key";
    let url = format!("rtmp://127.0.0.1:{}/live/{key}", nginx.port);

    let mut d = Driver::connect(nginx.port, "live", key);
    d.p.set_stream_info(StreamInfo::new(
        Some(&media.params),
        Some(media.audio_params),
    ));
    let st = d.wait_settled(Duration::from_secs(5));
    assert_eq!(st, RtmpState::Publishing, "nginx log:\n{}", nginx.log());

    // A second publisher on the same key: nginx-rtmp answers NetStream.Publish.BadName.
    let mut dup = Driver::connect(nginx.port, "live", key);
    match dup.wait_settled(Duration::from_secs(5)) {
        RtmpState::Failed {
            reason:
                RtmpError::Rejected {
                    kind: RejectKind::BadName,
                    description,
                },
        } => {
            eprintln!("duplicate publisher rejected: {description}")
        }
        other => panic!("duplicate publish must be BadName, got {other:?}"),
    }
    drop(dup);

    let probe = spawn_reader(&[
        "ffprobe",
        "-v",
        "error",
        "-show_entries",
        "stream=codec_type,codec_name,width,height,start_time",
        "-of",
        "compact=p=0:nk=0",
        &url,
    ]);
    let decode = spawn_reader(&[
        "ffmpeg",
        "-hide_banner",
        "-nostats",
        "-v",
        "error",
        "-i",
        &url,
        "-t",
        "10",
        "-f",
        "framecrc",
        "-",
    ]);

    // Interleave both tracks by time and pace them in real time: nginx-rtmp forwards live.
    let aframe_ms = 1024.0 * 1000.0 / media.audio_params.sample_rate as f64;
    let mut events: Vec<(f64, Track, usize)> = (0..media.video.len())
        .map(|i| (i as f64 * 40.0, Track::Video, i))
        .chain((0..media.audio.len()).map(|j| (j as f64 * aframe_ms, Track::Audio, j)))
        .collect();
    events.sort_by(|a, b| a.0.total_cmp(&b.0));
    let t0 = Instant::now();
    for (at_ms, track, i) in events {
        while (t0.elapsed().as_secs_f64() * 1000.0) < at_ms {
            d.pump();
        }
        let r = match track {
            Track::Video => {
                let f = &media.video[i];
                let pts = i as u64 * 3600;
                let meta = FrameMeta {
                    track,
                    pts,
                    dts: pts,
                    keyframe: f.keyframe,
                };
                d.p.send_video(meta, &f.avcc, &media.params)
            }
            Track::Audio => {
                let pts = i as u64 * 1024;
                let meta = FrameMeta {
                    track,
                    pts,
                    dts: pts,
                    keyframe: true,
                };
                d.p.send_audio(meta, &media.audio[i], &media.audio_params)
            }
        };
        r.unwrap_or_else(|e| panic!("send failed: {e}; nginx log:\n{}", nginx.log()));
        d.pump();
    }
    while d.p.stats().queued_media_bytes > 0 {
        d.pump();
    }
    let stats = d.p.stats();
    eprintln!("publisher stats: {stats:?}");
    assert_eq!(d.p.state(), RtmpState::Publishing);
    assert_eq!(
        (
            stats.dropped_gops,
            stats.dropped_video_frames,
            stats.dropped_audio_frames
        ),
        (0, 0, 0)
    );
    assert_eq!(stats.video_frames_sent as usize, media.video.len());
    assert!(
        stats.bytes_acked > 0 && stats.bytes_acked <= stats.bytes_sent,
        "nginx must acknowledge per our Window Acknowledgement Size: {stats:?}"
    );

    let (probe_out, probe_err) = finish_reader(probe, Duration::from_secs(10));
    let (crc, decode_err) = finish_reader(decode, Duration::from_secs(10));
    d.p.finish().unwrap();
    d.pump();
    drop(d);

    eprintln!("ffprobe: {probe_out}");
    assert!(probe_err.trim().is_empty(), "ffprobe errors: {probe_err}");
    assert!(
        decode_err.trim().is_empty(),
        "ffmpeg decode errors: {decode_err}"
    );
    let mut starts = (None, None);
    for line in probe_out.lines() {
        let start = line
            .split('|')
            .find_map(|kv| kv.strip_prefix("start_time="))
            .and_then(|v| v.parse::<f64>().ok());
        if line.contains("codec_type=video") {
            assert!(
                line.contains("codec_name=h264") && line.contains("width=320"),
                "{line}"
            );
            assert!(line.contains("height=240"), "{line}");
            starts.0 = start;
        } else if line.contains("codec_type=audio") {
            assert!(line.contains("codec_name=aac"), "{line}");
            starts.1 = start;
        }
    }
    let (Some(v0), Some(a0)) = starts else {
        panic!("missing a stream: {probe_out}")
    };
    assert!((v0 - a0).abs() <= 0.100, "A/V start times {v0} vs {a0}");

    let spans = framecrc_spans(&crc);
    eprintln!("decoded (packets, first s, end s) per stream: {spans:?}");
    assert_eq!(spans.len(), 2, "video + audio decoded");
    for (i, (n, first, end)) in spans.iter().enumerate() {
        assert!(
            end - first >= 9.9,
            "stream {i}: only {:.2} s decoded ({n} frames)",
            end - first
        );
    }
    assert!(spans[0].0 >= 248, "video frames decoded: {}", spans[0].0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn wrong_app_is_an_error_state_not_a_hang() {
    let dir = temp_dir("rtmp-nginx-badapp");
    let nginx = Nginx::start(&dir, free_port(), NginxOpts::default());
    let mut d = Driver::connect(nginx.port, "nosuchapp", "k");
    let st = d.wait_settled(Duration::from_secs(5));
    eprintln!("wrong app → {st:?}");
    assert!(
        matches!(
            st,
            RtmpState::Failed {
                reason: RtmpError::PeerClosed
                    | RtmpError::Rejected {
                        kind: RejectKind::ConnectRejected,
                        ..
                    }
            }
        ),
        "{st:?}; nginx log:\n{}",
        nginx.log()
    );
    assert!(
        nginx.log().contains("application not found"),
        "nginx log:\n{}",
        nginx.log()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

//! RTSP load generator for the benchmark (a cargo example: it never enters the daemon binary).
//!
//! N viewers from one process, on one thread (a smol executor: one task per viewer, so 1000
//! viewers cost one core at most and leave the other to the server). Each viewer does OPTIONS,
//! DESCRIBE, SETUP of every track (RTP/AVP/TCP interleaved), PLAY, then reads interleaved RTP,
//! checking sequence numbers per track, counting video frames (marker bit) and bytes, and
//! timing PLAY → first packet and PLAY → first keyframe packet (H.264 IDR / H.265 IRAP, also
//! inside STAP-A/AP and FU-A/FU).
//!
//! Once every viewer plays (or failed), it waits `--settle` seconds, then measures over
//! `--duration` seconds: viewers held (still connected and receiving), delivered bitrate,
//! video frame rate per viewer, sequence gaps, and — with `--pid` — the server's CPU %, RSS,
//! peak RSS and threads from /proc over the same window (and its idle RSS before the first
//! viewer connects). With `--probes K`, K more viewers join one at a time during the window
//! (from a thread of their own, so a busy load loop doesn't delay their clocks) and each
//! reports PLAY -> first keyframe packet while the N viewers play. Prints one `key=value` line (and appends it to `--out`).
//!
//! `cargo run --release --example rtsp_load -- --url rtsp://127.0.0.1:8554/live --viewers 100
//!  --duration 20 [--warm 3] [--probes 20] [--pid PID] [--label rillcast] [--ramp-ms 2] [--settle 2] [--out FILE]`

#[path = "bench_common/mod.rs"]
mod bench_common;

use bench_common::{cpu_percent, ms, percentiles, proc_sample, starts_keyframe, Client};
use smol::io::AsyncReadExt;
use smol::{LocalExecutor, Timer};
use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Default)]
struct Stats {
    playing: bool,
    failed: Option<String>,
    closed: bool,
    bytes: u64,
    video_frames: u64,
    /// Packets missing by sequence number (RTP channels only).
    gaps: u64,
    /// Sequence numbers going backwards or repeating.
    disorder: u64,
    first_pkt_ms: Option<f64>,
    first_key_ms: Option<f64>,
    last_rx: Option<Instant>,
}

struct Opts {
    url: String,
    viewers: usize,
    duration_s: f64,
    settle_s: f64,
    ramp_ms: u64,
    pid: Option<u32>,
    label: String,
    out: Option<String>,
    /// Seconds one extra, unmeasured viewer plays before the measured ones connect, so the
    /// server's pipeline is running (GStreamer prepares a shared media on first use).
    warm_s: f64,
    /// New viewers, one after another in a thread of their own, joining during the window
    /// while the N viewers play: PLAY -> first keyframe packet of a join under load.
    probes: usize,
}

fn parse_args() -> Opts {
    let mut o = Opts {
        url: "rtsp://127.0.0.1:8554/live".into(),
        viewers: 1,
        duration_s: 10.0,
        settle_s: 2.0,
        ramp_ms: 2,
        pid: None,
        label: "server".into(),
        out: None,
        warm_s: 0.0,
        probes: 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        let num = |v: &str| -> f64 { v.parse().unwrap_or_else(|_| panic!("{a}: not a number")) };
        match a.as_str() {
            "--url" => o.url = v,
            "--viewers" => o.viewers = num(&v) as usize,
            "--duration" => o.duration_s = num(&v),
            "--settle" => o.settle_s = num(&v),
            "--ramp-ms" => o.ramp_ms = num(&v) as u64,
            "--pid" => o.pid = Some(num(&v) as u32),
            "--label" => o.label = v,
            "--out" => o.out = Some(v),
            "--warm" => o.warm_s = num(&v),
            "--probes" => o.probes = num(&v) as usize,
            _ => panic!("unknown argument {a}"),
        }
    }
    o
}

async fn viewer(url: String, stats: Rc<RefCell<Stats>>) {
    if let Err(e) = viewer_inner(&url, &stats).await {
        let mut s = stats.borrow_mut();
        if s.playing {
            s.closed = true;
        }
        s.failed = Some(e.to_string());
    }
}

async fn viewer_inner(url: &str, stats: &Rc<RefCell<Stats>>) -> std::io::Result<()> {
    let mut c = Client::connect(&bench_common::host_port(url)).await?;
    let p = c.play_tcp(url).await?;
    stats.borrow_mut().playing = true;
    // Per interleaved channel: is it a video RTP channel / H.265, last sequence number.
    let mut kind = [(false, false, false); 256]; // (rtp, video, h265)
    for &(ch, video, h265) in &p.tracks {
        kind[ch as usize] = (true, video, h265);
    }
    let mut last_seq: [Option<u16>; 256] = [None; 256];
    let mut buf = vec![0u8; 256 * 1024];
    let (mut start, mut end) = (0usize, 0usize);
    buf[..p.leftover.len()].copy_from_slice(&p.leftover);
    end += p.leftover.len();
    let play_sent = p.play_sent;
    loop {
        // Parse every complete frame in buf[start..end] (the borrow ends before the read).
        {
            let mut s = stats.borrow_mut();
            let now = Instant::now();
            while end - start >= 4 {
                let b = &buf[start..end];
                if b[0] != b'$' {
                    // An RTSP message in the data stream: skip its head (and body).
                    let Some(h) = b.windows(4).position(|w| w == b"\r\n\r\n") else {
                        break;
                    };
                    let head = String::from_utf8_lossy(&b[..h]).to_ascii_lowercase();
                    let body: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if !head.starts_with("rtsp/") && !head.contains(" rtsp/") {
                        return Err(std::io::Error::other("garbage in interleaved stream"));
                    }
                    if b.len() < h + 4 + body {
                        break;
                    }
                    start += h + 4 + body;
                    continue;
                }
                let len = u16::from_be_bytes([b[2], b[3]]) as usize;
                if b.len() < 4 + len {
                    break;
                }
                let ch = b[1] as usize;
                let pkt = &b[4..4 + len];
                s.bytes += 4 + len as u64;
                let (rtp, video, h265) = kind[ch];
                if rtp && pkt.len() >= 12 {
                    let seq = u16::from_be_bytes([pkt[2], pkt[3]]);
                    if let Some(prev) = last_seq[ch] {
                        let d = seq.wrapping_sub(prev);
                        if d == 0 || d > 0x8000 {
                            s.disorder += 1;
                        } else {
                            s.gaps += u64::from(d - 1);
                        }
                    }
                    last_seq[ch] = Some(seq);
                    if s.first_pkt_ms.is_none() {
                        s.first_pkt_ms = Some(ms(now - play_sent));
                    }
                    if video {
                        let cc = (pkt[0] & 0x0f) as usize;
                        let off = 12 + 4 * cc;
                        if pkt[1] & 0x80 != 0 {
                            s.video_frames += 1;
                        }
                        if s.first_key_ms.is_none()
                            && pkt.len() > off
                            && starts_keyframe(&pkt[off..], h265)
                        {
                            s.first_key_ms = Some(ms(now - play_sent));
                        }
                    }
                }
                start += 4 + len;
            }
            s.last_rx = Some(now);
        }
        if start == end {
            start = 0;
            end = 0;
        } else if buf.len() - end < 64 * 1024 + 8 {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
        }
        let n = c.stream.read(&mut buf[end..]).await?;
        if n == 0 {
            return Err(std::io::Error::other("server closed the connection"));
        }
        end += n;
    }
}

fn main() {
    let o = parse_args();
    let ex = LocalExecutor::new();
    let all: Vec<Rc<RefCell<Stats>>> = (0..o.viewers)
        .map(|_| Rc::new(RefCell::new(Stats::default())))
        .collect();
    let line = smol::block_on(ex.run(async {
        let idle = o.pid.and_then(proc_sample);
        let warm = Rc::new(RefCell::new(Stats::default()));
        if o.warm_s > 0.0 {
            ex.spawn(viewer(o.url.clone(), warm.clone())).detach();
            Timer::after(Duration::from_secs_f64(o.warm_s)).await;
            if let Some(e) = &warm.borrow().failed {
                eprintln!("rtsp_load: warm-up viewer failed: {e}");
            }
        }
        let t0 = Instant::now();
        for s in &all {
            ex.spawn(viewer(o.url.clone(), s.clone())).detach();
            if o.ramp_ms > 0 {
                Timer::after(Duration::from_millis(o.ramp_ms)).await;
            }
        }
        // Every viewer plays or failed (bounded).
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline
            && all.iter().any(|s| {
                let s = s.borrow();
                !s.playing && s.failed.is_none()
            })
        {
            Timer::after(Duration::from_millis(50)).await;
        }
        let ramp_s = t0.elapsed().as_secs_f64();
        Timer::after(Duration::from_secs_f64(o.settle_s)).await;
        let snap0: Vec<Stats> = all.iter().map(|s| s.borrow().clone()).collect();
        let p0 = o.pid.and_then(proc_sample);
        let w0 = Instant::now();
        let probes = (o.probes > 0).then(|| {
            let (url, k, dur) = (o.url.clone(), o.probes, o.duration_s);
            std::thread::spawn(move || probe_joins(&url, k, dur))
        });
        Timer::after(Duration::from_secs_f64(o.duration_s)).await;
        let p1 = o.pid.and_then(proc_sample);
        let window_s = w0.elapsed().as_secs_f64();
        let snap1: Vec<Stats> = all.iter().map(|s| s.borrow().clone()).collect();
        let mut line = summarize(&o, &snap0, &snap1, idle, p0, p1, window_s, ramp_s);
        if let Some(h) = probes {
            // Each probe is bounded (1 s pause + 3 s), so this wait is too.
            let (mut keys, failed, err) = h.join().unwrap_or_default();
            let max = keys.iter().cloned().fold(f64::NAN, f64::max);
            let (p50, p95, _) = percentiles(&mut keys);
            line.push_str(&format!(
                " probes={} probe_failed={failed} probe_key_ms_p50={p50:.1} \
                 probe_key_ms_p95={p95:.1} probe_key_ms_max={max:.1}",
                o.probes
            ));
            if !err.is_empty() {
                line.push_str(&format!(" probe_error={err}"));
            }
        }
        line
    }));
    println!("{line}");
    if let Some(path) = &o.out {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("--out file");
        writeln!(f, "{line}").expect("write --out");
    }
    // Dropping the executor closes every connection.
}

/// `k` viewers joining one after another, each playing until its first keyframe packet (at
/// most 3 s) and then leaving. Returns (PLAY -> keyframe ms, failed, first failure).
fn probe_joins(url: &str, k: usize, _window_s: f64) -> (Vec<f64>, usize, String) {
    let mut keys = Vec::new();
    let mut failed = 0;
    let mut first_error = String::new();
    // A pseudo-random pause (0..1 s, longer than a 30-frame GOP at 30 fps) before each join,
    // so joins land at every phase of the GOP instead of right after the keyframe the previous
    // probe waited for.
    let mut seed = Instant::now().elapsed().as_nanos() as u64 | 1;
    for _ in 0..k {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(seed % 1000));
        let r = smol::block_on(smol::future::or(
            async { Some(probe_one(url).await) },
            async {
                Timer::after(Duration::from_secs(3)).await;
                None
            },
        ));
        match r {
            Some(Ok(ms)) => keys.push(ms),
            other => {
                failed += 1;
                if first_error.is_empty() {
                    first_error = match other {
                        Some(Err(e)) => e.to_string().replace(' ', "_"),
                        _ => "no_keyframe_within_3_s".into(),
                    };
                }
            }
        }
    }
    (keys, failed, first_error)
}

async fn probe_one(url: &str) -> std::io::Result<f64> {
    let mut c = Client::connect(&bench_common::host_port(url)).await?;
    let p = c.play_tcp(url).await?;
    let video = p.tracks.iter().find(|t| t.1).copied();
    let Some((ch, _, h265)) = video else {
        return Err(std::io::Error::other("no video track"));
    };
    let mut buf = p.leftover;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let mut at = 0;
        while buf.len() - at >= 4 && buf[at] == b'$' {
            let len = u16::from_be_bytes([buf[at + 2], buf[at + 3]]) as usize;
            if buf.len() - at < 4 + len {
                break;
            }
            let pkt = &buf[at + 4..at + 4 + len];
            if buf[at + 1] == ch && pkt.len() > 12 {
                let off = 12 + 4 * (pkt[0] & 0x0f) as usize;
                if pkt.len() > off && starts_keyframe(&pkt[off..], h265) {
                    return Ok(ms(p.play_sent.elapsed()));
                }
            }
            at += 4 + len;
        }
        buf.drain(..at);
        let n = c.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[allow(clippy::too_many_arguments)]
fn summarize(
    o: &Opts,
    s0: &[Stats],
    s1: &[Stats],
    idle: Option<bench_common::ProcSample>,
    p0: Option<bench_common::ProcSample>,
    p1: Option<bench_common::ProcSample>,
    window_s: f64,
    ramp_s: f64,
) -> String {
    let end = Instant::now();
    let mut held = 0usize;
    let mut failed = 0usize;
    let mut first_error = String::new();
    let mut kbps = Vec::new();
    let mut fps = Vec::new();
    let mut key_ms = Vec::new();
    let mut first_ms = Vec::new();
    let (mut total_bytes, mut gaps_window, mut gaps_total, mut disorder) = (0u64, 0, 0, 0);
    let mut viewers_with_gaps = 0usize;
    for (a, b) in s0.iter().zip(s1) {
        if let Some(e) = &b.failed {
            failed += 1;
            if first_error.is_empty() {
                first_error = e.replace(' ', "_");
            }
        }
        let recent = b
            .last_rx
            .is_some_and(|t| end.duration_since(t) < Duration::from_secs(2));
        if b.playing && b.failed.is_none() && recent {
            held += 1;
        }
        let bytes = b.bytes - a.bytes;
        total_bytes += bytes;
        if b.playing {
            kbps.push(bytes as f64 * 8.0 / window_s / 1000.0);
            fps.push((b.video_frames - a.video_frames) as f64 / window_s);
        }
        gaps_window += b.gaps - a.gaps;
        gaps_total += b.gaps;
        disorder += b.disorder;
        if b.gaps > 0 {
            viewers_with_gaps += 1;
        }
        if let Some(k) = b.first_key_ms {
            key_ms.push(k);
        }
        if let Some(k) = b.first_pkt_ms {
            first_ms.push(k);
        }
    }
    let (kbps_med, _, _) = percentiles(&mut kbps.clone());
    let kbps_min = kbps.iter().cloned().fold(f64::NAN, f64::min);
    let (fps_med, _, _) = percentiles(&mut fps.clone());
    let fps_min = fps.iter().cloned().fold(f64::NAN, f64::min);
    let (key50, key95, _) = percentiles(&mut key_ms);
    let (first50, _, _) = percentiles(&mut first_ms);
    let mut line = format!(
        "label={} viewers={} held={} failed={} ramp_s={:.1} window_s={:.1} mbps_total={:.1} \
         kbps_median={:.0} kbps_min={:.0} fps_median={:.1} fps_min={:.1} gaps_window={} \
         gaps_total={} viewers_with_gaps={} disorder={} first_pkt_ms_p50={:.1} \
         key_ms_p50={:.1} key_ms_p95={:.1} keyframes_seen={}",
        o.label,
        o.viewers,
        held,
        failed,
        ramp_s,
        window_s,
        total_bytes as f64 * 8.0 / window_s / 1e6,
        kbps_med,
        kbps_min,
        fps_med,
        fps_min,
        gaps_window,
        gaps_total,
        viewers_with_gaps,
        disorder,
        first50,
        key50,
        key95,
        key_ms.len()
    );
    if let (Some(i), Some(a), Some(b)) = (idle, p0, p1) {
        line.push_str(&format!(
            " cpu_pct={:.1} rss_kib={} hwm_kib={} anon_kib={} threads={} idle_rss_kib={} \
             idle_anon_kib={}",
            cpu_percent(&a, &b),
            b.rss_kib,
            b.hwm_kib,
            b.anon_kib,
            b.threads,
            i.rss_kib,
            i.anon_kib
        ));
    }
    if !first_error.is_empty() {
        line.push_str(&format!(" first_error={first_error}"));
    }
    line
}

//! Latency probe for the benchmark: time from an encoder's write into the server's stdin to the
//! arrival of that frame's last RTP packet (marker bit) at a TCP-interleaved viewer.
//!
//! It starts the server itself (`--cmd`, run by `sh -c`, its stdin a pipe from this process),
//! writes rillcast's H.264 test pattern into that pipe in real time, one `write` per access
//! unit, each with an SEI (user_data_unregistered) carrying the frame number in front of the
//! slice, and takes the time just before each write. A viewer on `--url` notes the tag in the
//! RTP stream and stamps the arrival of the packet with the marker bit that ends that frame.
//! Writer and viewer share one clock (`Instant`) in one process. The first `--skip` frames
//! (start-up, the GOP burst a new viewer gets) are left out.
//!
//! `cargo run --release --example rtsp_latency -- --cmd "exec rillcast --config c.toml"
//!  --url rtsp://127.0.0.1:8554/live [--frames 400] [--skip 90] [--label rillcast] [--out F]`

#[path = "bench_common/mod.rs"]
mod bench_common;

use bench_common::{ms, percentiles, tag_in_payload, Client};
use rillcast::ingest::testsrc::TestPattern;
use smol::io::AsyncReadExt;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn main() {
    let mut cmd = String::new();
    let mut url = "rtsp://127.0.0.1:8554/live".to_string();
    let mut frames = 400usize;
    let mut skip = 90usize;
    let mut label = "server".to_string();
    let mut out: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--cmd" => cmd = v,
            "--url" => url = v,
            "--frames" => frames = v.parse().expect("--frames"),
            "--skip" => skip = v.parse().expect("--skip"),
            "--label" => label = v,
            "--out" => out = Some(v),
            _ => panic!("unknown argument {a}"),
        }
    }
    assert!(!cmd.is_empty(), "--cmd is required");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(&cmd)
        .stdin(Stdio::piped())
        .spawn()
        .expect("start the server");
    let mut stdin = child.stdin.take().expect("piped stdin");

    // Writer: one Annex B access unit per write, 30 per second, time taken before each write.
    let total = frames + skip + 90;
    let written: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; total]));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let written = written.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut pattern = TestPattern::new(1280, 720, 30, 30).expect("pattern");
            let mut frame = vec![0u8; pattern.max_frame_len()];
            let mut tagged = Vec::with_capacity(frame.len() + 64);
            let period = Duration::from_secs_f64(1.0 / 30.0);
            let mut next = Instant::now();
            for n in 0..total {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let (len, _) = pattern.next_frame(&mut frame).expect("frame");
                bench_common::insert_before_slice(
                    &frame[..len],
                    &bench_common::tag_sei(n as u32),
                    &mut tagged,
                );
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                } else if now - next > 4 * period {
                    next = now; // the server was not reading yet: no burst to catch up
                }
                next += period;
                let t = Instant::now();
                written.lock().expect("not poisoned")[n] = Some(t);
                if stdin.write_all(&tagged).is_err() {
                    break;
                }
            }
            // Keep the pipe open until the viewer is done (EOF would stop the server's source).
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let arrivals = smol::block_on(async {
        // The server answers DESCRIBE once it has parameter sets: retry, bounded.
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut c, p) = loop {
            match Client::connect(&bench_common::host_port(&url)).await {
                Ok(mut c) => match c.play_tcp(&url).await {
                    Ok(p) => break (c, p),
                    Err(e) if Instant::now() > deadline => panic!("PLAY failed: {e}"),
                    Err(_) => {}
                },
                Err(e) if Instant::now() > deadline => panic!("connect failed: {e}"),
                Err(_) => {}
            }
            smol::Timer::after(Duration::from_millis(200)).await;
        };
        let video_ch = p
            .tracks
            .iter()
            .find(|t| t.1)
            .map(|t| t.0)
            .expect("a video track");
        let mut arrivals: Vec<Option<Instant>> = vec![None; total];
        let mut buf = vec![0u8; 256 * 1024];
        let (mut start, mut end) = (0usize, p.leftover.len());
        buf[..end].copy_from_slice(&p.leftover);
        let mut current: Option<usize> = None;
        let done_at = skip + frames;
        let deadline = Instant::now() + Duration::from_secs_f64(total as f64 / 30.0 + 20.0);
        'read: while Instant::now() < deadline {
            let now = Instant::now();
            while end - start >= 4 {
                let b = &buf[start..end];
                if b[0] != b'$' {
                    panic!("unexpected non-interleaved data from the server");
                }
                let len = u16::from_be_bytes([b[2], b[3]]) as usize;
                if b.len() < 4 + len {
                    break;
                }
                let pkt = &b[4..4 + len];
                if b[1] == video_ch && pkt.len() > 12 {
                    let off = 12 + 4 * (pkt[0] & 0x0f) as usize;
                    if let Some(t) = pkt.get(off..).and_then(tag_in_payload) {
                        current = Some(t as usize);
                    }
                    if pkt[1] & 0x80 != 0 {
                        if let Some(n) = current.take() {
                            if n < total {
                                arrivals[n] = Some(now);
                            }
                            if n + 1 >= done_at {
                                break 'read;
                            }
                        }
                    }
                }
                start += 4 + len;
            }
            if start == end {
                (start, end) = (0, 0);
            } else {
                buf.copy_within(start..end, 0);
                end -= start;
                start = 0;
            }
            let read = smol::future::or(
                async { Some(c.stream.read(&mut buf[end..]).await) },
                async {
                    smol::Timer::after(Duration::from_secs(5)).await;
                    None
                },
            );
            match read.await {
                Some(Ok(n)) if n > 0 => end += n,
                other => panic!("viewer read ended: {other:?}"),
            }
        }
        arrivals
    });
    stop.store(true, Ordering::Relaxed);
    let _ = child.kill();
    let _ = child.wait();
    let _ = writer.join();

    let written = written.lock().expect("not poisoned");
    let mut lat: Vec<f64> = (skip..(skip + frames).min(total))
        .filter_map(|n| match (written[n], arrivals[n]) {
            (Some(w), Some(a)) => Some(ms(a.saturating_duration_since(w))),
            _ => None,
        })
        .collect();
    let matched = lat.len();
    let max = lat.iter().cloned().fold(f64::NAN, f64::max);
    let (p50, p95, p99) = percentiles(&mut lat);
    let line = format!(
        "label={label} frames={frames} matched={matched} p50_ms={p50:.2} p95_ms={p95:.2} \
         p99_ms={p99:.2} max_ms={max:.2}"
    );
    println!("{line}");
    if let Some(path) = out {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("--out");
        writeln!(f, "{line}").expect("write --out");
    }
}

//! End-to-end RTMP/RTMPS push: the real `rillcast` binary (tests/common) publishes its built-in
//! test source (H.264 + AAC) to a real nginx with Debian's libnginx-mod-rtmp on loopback, and
//! ffmpeg/ffprobe read the stream back from nginx. Covers: read-back decode, origin down at
//! start, origin restart, rejected publish with bounded retries, a slow uplink (a rate-limiting
//! TCP proxy in this file), RTMPS through nginx's `stream` module as TLS terminator (CA made
//! here with openssl), a wrong CA, and a fleet of 50 targets.
//!
//! Needs nginx (+ libnginx-mod-rtmp, libnginx-mod-stream), ffmpeg, ffprobe, openssl: fails with
//! an install hint when one is missing. Every wait is bounded; nginx and the daemon are killed
//! on drop. The tests take a file-wide lock: each one is CPU-heavy and they would disturb each
//! other's timing on a small machine.

mod common;

use common::nginx::{Nginx, NginxOpts};
use common::{free_port, require_tool, run_bounded, temp_dir, Daemon};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn require_media_tools() {
    require_tool("ffmpeg");
    require_tool("ffprobe");
}

/// A testsrc stream plus `push` tables.
fn daemon_config(width: u32, height: u32, push: &str) -> String {
    format!(
        "[streams.live.source]\nkind = \"testsrc\"\nwidth = {width}\nheight = {height}\n\
         gop_frames = 30\n\n{push}\n"
    )
}

fn push_table(url: &str, extra: &str) -> String {
    format!("[[push]]\nurl = \"{url}\"\nbackoff_max_ms = 2000\n{extra}\n")
}

/// Lines of the daemon log that contain every one of `needles`.
fn count_lines(d: &Daemon, needles: &[&str]) -> usize {
    d.log()
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .count()
}

/// Waits until the log has at least `n` lines containing all `needles`.
fn wait_lines(d: &Daemon, needles: &[&str], n: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if count_lines(d, needles) >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "no {n} log lines with {needles:?} within {timeout:?}; log:\n{}",
        d.log()
    );
}

fn publishing(i: usize) -> [String; 2] {
    [format!("push[{i}] "), ": publishing".to_string()]
}

fn wait_publishing(d: &Daemon, i: usize, n: usize, timeout: Duration) {
    let p = publishing(i);
    wait_lines(d, &[&p[0], &p[1]], n, timeout);
}

/// `ffprobe` stream facts: (codec_name, width, height, start_time) per stream.
fn probe(url: &str) -> Vec<(String, u32, u32, f64)> {
    let (ok, out, err) = run_bounded(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-rw_timeout",
            "15000000",
            "-show_entries",
            "stream=codec_name,width,height,start_time",
            "-of",
            "flat",
            url,
        ]),
        Duration::from_secs(40),
    );
    assert!(ok, "ffprobe {url} failed: {err}");
    // flat: streams.stream.N.KEY=VALUE
    let mut rows: Vec<(String, u32, u32, f64)> = Vec::new();
    for l in out.lines() {
        let Some(rest) = l.strip_prefix("streams.stream.") else {
            continue;
        };
        let Some((idx, kv)) = rest.split_once('.') else {
            continue;
        };
        let Some((k, v)) = kv.split_once('=') else {
            continue;
        };
        let i: usize = idx.parse().unwrap_or(0);
        while rows.len() <= i {
            rows.push((String::new(), 0, 0, f64::NAN));
        }
        let v = v.trim_matches('"');
        match k {
            "codec_name" => rows[i].0 = v.to_string(),
            "width" => rows[i].1 = v.parse().unwrap_or(0),
            "height" => rows[i].2 = v.parse().unwrap_or(0),
            "start_time" => rows[i].3 = v.parse().unwrap_or(f64::NAN),
            _ => {}
        }
    }
    rows
}

/// Decodes `seconds` of `url` with ffmpeg; returns (video frames decoded, stderr). Panics on
/// any decoder error.
fn decode(url: &str, seconds: u32) -> u64 {
    let (ok, out, err) = run_bounded(
        Command::new("ffmpeg").args([
            "-nostdin",
            "-v",
            "error",
            "-rw_timeout",
            "15000000",
            "-i",
            url,
            "-t",
            &seconds.to_string(),
            "-map",
            "0:v",
            "-map",
            "0:a",
            "-f",
            "null",
            "-progress",
            "pipe:1",
            "-",
        ]),
        Duration::from_secs(seconds as u64 + 40),
    );
    assert!(ok, "ffmpeg reading {url} failed: {err}");
    assert!(
        err.trim().is_empty(),
        "ffmpeg reported errors decoding {url}:\n{err}"
    );
    out.lines()
        .filter_map(|l| l.strip_prefix("frame="))
        .filter_map(|v| v.trim().parse().ok())
        .next_back()
        .unwrap_or(0)
}

#[test]
fn push_h264_aac_reads_back_from_nginx() {
    let _g = serial();
    require_media_tools();
    let dir = temp_dir("push-basic");
    let nginx = Nginx::start(&dir, free_port(), NginxOpts::default());
    let d = Daemon::start(
        "push-basic",
        &daemon_config(640, 368, &push_table(&nginx.url("cam1"), "")),
    );
    wait_publishing(&d, 0, 1, Duration::from_secs(20));
    // The key is never logged in full.
    assert!(
        !d.log().contains("cam1"),
        "stream key in the log:\n{}",
        d.log()
    );
    let streams = probe(&nginx.url("cam1"));
    let video = streams.iter().find(|s| s.0 == "h264").expect("h264 stream");
    let audio = streams.iter().find(|s| s.0 == "aac").expect("aac stream");
    assert_eq!((video.1, video.2), (640, 368), "{streams:?}");
    assert!(
        (video.3 - audio.3).abs() <= 0.1,
        "A/V start times differ by more than 100 ms: {streams:?}"
    );
    let frames = decode(&nginx.url("cam1"), 10);
    // testsrc runs at 30 fps: 10 s is 300 frames.
    assert!(frames >= 270, "decoded only {frames} video frames in 10 s");
    assert_eq!(
        count_lines(&d, &["push[0]", "backing off"]),
        0,
        "{}",
        d.log()
    );
}

#[test]
fn origin_down_at_start_then_up() {
    let _g = serial();
    require_media_tools();
    let dir = temp_dir("push-late");
    let port = free_port();
    let url = format!("rtmp://127.0.0.1:{port}/live/late");
    let d = Daemon::start("push-late", &daemon_config(320, 240, &push_table(&url, "")));
    // The very first connect fails: the target backs off and keeps trying.
    wait_lines(&d, &["push[0]", "backing off"], 2, Duration::from_secs(15));
    std::thread::sleep(Duration::from_secs(5));
    let nginx = Nginx::start(&dir, port, NginxOpts::default());
    let up = Instant::now();
    // backoff_max_ms = 2000, plus the connect itself and a loaded machine's slack.
    wait_publishing(&d, 0, 1, Duration::from_secs(12));
    eprintln!("publishing {:?} after the origin came up", up.elapsed());
    let frames = decode(&nginx.url("late"), 4);
    assert!(frames >= 90, "decoded {frames} frames");
}

#[test]
fn origin_restart_mid_stream() {
    let _g = serial();
    require_media_tools();
    let dir = temp_dir("push-restart");
    let mut nginx = Nginx::start(&dir, free_port(), NginxOpts::default());
    let d = Daemon::start(
        "push-restart",
        &daemon_config(320, 240, &push_table(&nginx.url("again"), "")),
    );
    wait_publishing(&d, 0, 1, Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2));
    nginx.stop();
    wait_lines(&d, &["push[0]", "backing off"], 1, Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(3));
    nginx.restart();
    wait_publishing(&d, 0, 2, Duration::from_secs(15));
    let frames = decode(&nginx.url("again"), 5);
    assert!(frames >= 120, "decoded {frames} frames after the restart");
}

/// A tiny HTTP server for nginx-rtmp's `on_publish`: every request gets 403. Counts requests.
fn http_403_server() -> (u16, Arc<AtomicU64>, Arc<AtomicBool>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    l.set_nonblocking(true).unwrap();
    let hits = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (h, s) = (hits.clone(), stop.clone());
    std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((mut c, _)) => {
                    let _ = c.set_nonblocking(false);
                    let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut buf = [0u8; 4096];
                    let _ = c.read(&mut buf);
                    h.fetch_add(1, Ordering::Relaxed);
                    let _ = c.write_all(
                        b"HTTP/1.0 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(_) => break,
            }
        }
    });
    (port, hits, stop)
}

#[test]
fn rejected_publish_backs_off_without_hot_loop() {
    let _g = serial();
    require_media_tools();
    let dir = temp_dir("push-reject");
    let (http_port, hits, stop) = http_403_server();
    let nginx = Nginx::start(
        &dir,
        free_port(),
        NginxOpts {
            on_publish: Some(format!("http://127.0.0.1:{http_port}/auth")),
            ..Default::default()
        },
    );
    let port = nginx.port;
    let push = format!(
        "{}{}",
        push_table(&nginx.url("denied"), ""),
        push_table(&format!("rtmp://127.0.0.1:{port}/noapp/k"), "")
    );
    let d = Daemon::start("push-reject", &daemon_config(320, 240, &push));
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(20));
    let window = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let log = d.log();
    // The wrong app: nginx-rtmp closes the connection after `connect` (no `_error`).
    assert!(
        log.lines().any(|l| l.contains("push[1]")
            && l.contains("backing off")
            && l.contains("closed the connection after connect (wrong app")),
        "no rejection reason for push[1]:\n{log}"
    );
    // on_publish 403: nginx drops the connection after our publish.
    assert!(
        log.lines().any(|l| l.contains("push[0]")
            && l.contains("backing off")
            && l.contains("closed the connection after publish (stream key refused")),
        "no failure reason for push[0]:\n{log}"
    );
    assert!(
        hits.load(Ordering::Relaxed) >= 2,
        "nginx never asked on_publish"
    );
    for i in 0..2 {
        let attempts = count_lines(&d, &[&format!("push[{i}] "), "connecting (attempt"]);
        let per_minute = attempts as f64 * 60.0 / window;
        // backoff_max_ms = 2000 with full jitter (mean 1 s, floor 250 ms): a hot loop would
        // make thousands; the backoff makes about 20 in 20 s.
        assert!(
            (3..=40).contains(&attempts),
            "push[{i}]: {attempts} attempts in {window:.0} s ({per_minute:.0}/min)\n{log}"
        );
        assert_eq!(
            count_lines(&d, &[&format!("push[{i}] "), ": publishing"]),
            0
        );
    }
    assert!(!log.contains("denied"), "stream key in the log:\n{log}");
}

/// A TCP proxy that forwards client → server at `rate` bytes/s (the other way unlimited), with
/// small socket buffers so the bottleneck is not hidden in the kernel. Setting `rate` to 0
/// freezes the upstream direction without closing anything: a half-open path.
fn slow_proxy(target_port: u16, rate: Arc<AtomicU64>) -> (u16, Arc<AtomicBool>) {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(16 * 1024).unwrap();
    sock.bind(&common::addr(0).into()).unwrap();
    sock.listen(8).unwrap();
    let l: TcpListener = sock.into();
    let port = l.local_addr().unwrap().port();
    l.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            let (client, _) = match l.accept() {
                Ok(c) => c,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                Err(_) => return,
            };
            let _ = client.set_nonblocking(false);
            let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)) else {
                continue;
            };
            let (mut c_r, mut s_w) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut s_r, mut c_w) = (server, client);
            let s1 = s.clone();
            let rate = rate.clone();
            std::thread::spawn(move || {
                let t0 = Instant::now();
                let mut sent = 0u64;
                let mut buf = [0u8; 1500];
                let _ = c_r.set_read_timeout(Some(Duration::from_millis(200)));
                while !s1.load(Ordering::Relaxed) {
                    let bytes_per_s = rate.load(Ordering::Relaxed);
                    if bytes_per_s == 0 {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                    let n = match c_r.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                        {
                            continue
                        }
                        Err(_) => break,
                    };
                    if s_w.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    sent += n as u64;
                    let due = Duration::from_secs_f64(sent as f64 / bytes_per_s as f64);
                    if let Some(wait) = due.checked_sub(t0.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
                let _ = s_w.shutdown(std::net::Shutdown::Both);
            });
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = s_r.read(&mut buf) {
                    if c_w.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = c_w.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    (port, stop)
}

#[test]
fn slow_uplink_drops_gops_and_memory_stays_flat() {
    let _g = serial();
    require_media_tools();
    let dir = temp_dir("push-slow");
    let nginx = Nginx::start(&dir, free_port(), NginxOpts::default());
    // 300 kbit/s for a ~2 Mbit/s stream (testsrc 1280x720).
    let (proxy_port, stop) = slow_proxy(nginx.port, Arc::new(AtomicU64::new(300_000 / 8)));
    let url = format!("rtmp://127.0.0.1:{proxy_port}/live/slow");
    // HLS off: its preallocated segment arena is first written (and so enters RSS) over the
    // first ~25 s at 2 Mbit/s, which would mask what this test measures — the push queue.
    let d = Daemon::start(
        "push-slow",
        &format!(
            "[hls]\nenabled = false\n{}",
            daemon_config(1280, 720, &push_table(&url, ""))
        ),
    );
    wait_publishing(&d, 0, 1, Duration::from_secs(20));
    // The 1 MB queue fills within ~5 s; after that memory must not grow.
    std::thread::sleep(Duration::from_secs(10));
    let mut samples = Vec::new();
    for _ in 0..25 {
        samples.push(d.rss_kib());
        std::thread::sleep(Duration::from_secs(1));
    }
    stop.store(true, Ordering::Relaxed);
    let (lo, hi) = (
        *samples.iter().min().unwrap(),
        *samples.iter().max().unwrap(),
    );
    eprintln!("daemon RSS over 25 s: {lo}..{hi} KiB");
    assert!(lo > 0, "could not read the daemon's RSS");
    assert!(
        hi - lo <= 1024,
        "RSS grew by {} KiB under a slow uplink: {samples:?}",
        hi - lo
    );
    let log = d.log();
    assert!(
        log.lines()
            .any(|l| l.contains("push[0]") && l.contains("GOPs dropped")),
        "no GOP drops reported:\n{log}"
    );
    // Dropping GOPs keeps the connection alive: no reconnect, no watchdog.
    assert_eq!(count_lines(&d, &["push[0]", "backing off"]), 0, "{log}");
}

#[test]
fn half_open_uplink_detected_within_15_s() {
    let _g = serial();
    require_media_tools();
    let dir = temp_dir("push-halfopen");
    let nginx = Nginx::start(&dir, free_port(), NginxOpts::default());
    let rate = Arc::new(AtomicU64::new(1 << 40));
    let (proxy_port, stop) = slow_proxy(nginx.port, rate.clone());
    let url = format!("rtmp://127.0.0.1:{proxy_port}/live/frozen");
    let d = Daemon::start(
        "push-halfopen",
        &daemon_config(640, 368, &push_table(&url, "")),
    );
    wait_publishing(&d, 0, 1, Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2));
    // The path goes silent: no FIN, no RST, nothing forwarded or read.
    rate.store(0, Ordering::Relaxed);
    let frozen = Instant::now();
    wait_lines(
        &d,
        &["push[0]", "backing off", "half-open"],
        1,
        Duration::from_secs(25),
    );
    let took = frozen.elapsed();
    stop.store(true, Ordering::Relaxed);
    eprintln!("half-open connection detected {took:?} after the path froze");
    // 15 s of no progress (or no acknowledgement), after the few hundred KiB of socket
    // buffers filled at ~2 Mbit/s, plus the 1 s watchdog tick.
    assert!(
        took <= Duration::from_secs(19),
        "half-open connection detected only after {took:?}"
    );
}

/// A throwaway CA and a server certificate for localhost / 127.0.0.1, made with openssl.
fn make_ca(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    require_tool("openssl");
    let run = |args: &[&str]| {
        let (ok, _, err) = run_bounded(
            Command::new("openssl").args(args).current_dir(dir),
            Duration::from_secs(30),
        );
        assert!(ok, "openssl {args:?} failed: {err}");
    };
    let ca_key = format!("{name}-ca.key");
    let ca_pem = format!("{name}-ca.pem");
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &ca_key,
        "-out",
        &ca_pem,
        "-days",
        "2",
        "-subj",
        &format!("/CN={name} test CA"),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    (dir.join(ca_pem), dir.join(ca_key))
}

fn make_server_cert(dir: &Path, ca_pem: &Path, ca_key: &Path) -> (PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let (ok, _, err) = run_bounded(
            Command::new("openssl").args(args).current_dir(dir),
            Duration::from_secs(30),
        );
        assert!(ok, "openssl {args:?} failed: {err}");
    };
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=localhost",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        &ca_pem.display().to_string(),
        "-CAkey",
        &ca_key.display().to_string(),
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    (dir.join("srv.pem"), dir.join("srv.key"))
}

#[test]
fn rtmps_through_tls_terminator_and_wrong_ca() {
    let _g = serial();
    require_media_tools();
    let dir = temp_dir("push-tls");
    let (ca, ca_key) = make_ca(&dir, "good");
    let (other_ca, _) = make_ca(&dir, "other");
    let (cert, key) = make_server_cert(&dir, &ca, &ca_key);
    let tls_port = free_port();
    let nginx = Nginx::start(
        &dir,
        free_port(),
        NginxOpts {
            tls: Some((tls_port, cert, key)),
            ..Default::default()
        },
    );
    // `localhost` is resolved by the daemon (it may try ::1 first; nginx listens on 127.0.0.1).
    let push = format!(
        "{}{}",
        push_table(
            &format!("rtmps://localhost:{tls_port}/live/secure"),
            &format!("ca_file = \"{}\"", ca.display())
        ),
        push_table(
            &format!("rtmps://localhost:{tls_port}/live/wrongca"),
            &format!("ca_file = \"{}\"", other_ca.display())
        ),
    );
    let d = Daemon::start("push-tls", &daemon_config(320, 240, &push));
    wait_publishing(&d, 0, 1, Duration::from_secs(20));
    wait_lines(
        &d,
        &["push[1]", "backing off", "TLS certificate error"],
        1,
        Duration::from_secs(20),
    );
    // Read back through the plain RTMP port of the same origin.
    let streams = probe(&nginx.url("secure"));
    assert!(
        streams.iter().any(|s| s.0 == "h264" && s.1 == 320),
        "{streams:?}"
    );
    let frames = decode(&nginx.url("secure"), 4);
    assert!(frames >= 90, "decoded {frames} frames over RTMPS");
    assert_eq!(count_lines(&d, &["push[1]", ": publishing"]), 0);
}

#[test]
fn fleet_of_50_sessions_into_one_origin() {
    let _g = serial();
    require_media_tools();
    // 5 edge daemons x 10 targets (a daemon takes at most 16): 50 publish sessions.
    const DAEMONS: usize = 5;
    const PER: usize = 10;
    let dir = temp_dir("push-fleet");
    let nginx = Nginx::start(&dir, free_port(), NginxOpts::default());
    let daemons: Vec<Daemon> = (0..DAEMONS)
        .map(|k| {
            let mut push = String::new();
            for i in 0..PER {
                push.push_str(&push_table(
                    &nginx.url(&format!("edge{k}x{i}")),
                    "queue_kib = 128",
                ));
            }
            let cfg = format!(
                "[media]\nmemory_mib = 32\n{}",
                daemon_config(320, 240, &push)
            );
            Daemon::start(&format!("push-fleet{k}"), &cfg)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up: usize = daemons
            .iter()
            .map(|d| {
                (0..PER)
                    .filter(|&i| {
                        let p = publishing(i);
                        count_lines(d, &[&p[0], &p[1]]) > 0
                    })
                    .count()
            })
            .sum();
        if up == DAEMONS * PER {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {up} of {} sessions publishing after 60 s",
            DAEMONS * PER
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // Every stream readable: probe all, 10 at a time, each bounded.
    let urls: Vec<String> = (0..DAEMONS)
        .flat_map(|k| (0..PER).map(move |i| format!("edge{k}x{i}")))
        .map(|key| nginx.url(&key))
        .collect();
    for batch in urls.chunks(10) {
        let handles: Vec<_> = batch
            .iter()
            .cloned()
            .map(|u| std::thread::spawn(move || (probe(&u), u)))
            .collect();
        for h in handles {
            let (streams, u) = h.join().unwrap();
            assert!(
                streams.iter().any(|s| s.0 == "h264") && streams.iter().any(|s| s.0 == "aac"),
                "{u}: {streams:?}"
            );
        }
    }
    for d in &daemons {
        assert_eq!(count_lines(d, &["backing off"]), 0, "{}", d.log());
    }
}

//! Hostile clients against the real daemon: a UDP flood at the RTP/RTCP ports and a connect
//! storm while canaries watch (an interleaved RTSP viewer, HLS playlist polls, RTSP OPTIONS,
//! the systemd watchdog), password guessing, per-address connection caps, request deadlines,
//! and TEARDOWN over TCP.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Flood sender threads. On a fast loopback the daemon's reader keeps up with these (the
/// bounded turns are shown by a unit test in `net::rtsp`); on a camera it would not.
const FLOOD_THREADS: u64 = 2;

const TESTSRC_SMALL: &str = r#"
[hls]
segment_ms = 1000
[streams.live.source]
kind = "testsrc"
width = 320
height = 240
gop_frames = 30
"#;

/// One HTTP/1.1 GET on a fresh connection from 127.0.0.1: (status, body, time taken).
fn http_get(port: u16, path: &str, headers: &str) -> std::io::Result<(u16, String, Duration)> {
    let t0 = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    Ok((status, body, t0.elapsed()))
}

/// CPU time (user + system) the process has used, in clock ticks (USER_HZ, 100 on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    f.get(11).unwrap_or(&0) + f.get(12).unwrap_or(&0)
}

fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Reads until the peer closes (Ok(true)) or `limit` passes (Ok(false)).
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => {}
        }
    }
    false
}

/// TEARDOWN of a TCP-interleaved session is answered on that connection (the reply used to be
/// queued behind RTP and dropped with the viewer's buffer), and the connection stays usable.
#[test]
fn teardown_over_tcp_is_answered() {
    let d = Daemon::start("teardown-tcp", TESTSRC_SMALL);
    d.wait_live("live", Duration::from_secs(10));
    for round in 0..3 {
        let mut c = RtspClient::connect(d.rtsp_port).unwrap();
        c.play_tcp(&d.url("live")).unwrap();
        for _ in 0..40 {
            c.read_interleaved().unwrap();
        }
        let t0 = Instant::now();
        let (st, headers, _) = c
            .request("TEARDOWN", &d.url("live"), &[])
            .unwrap_or_else(|e| panic!("round {round}: no TEARDOWN reply: {e}"));
        assert_eq!(st, 200, "round {round}: {headers:?}");
        assert!(
            headers
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case("cseq") && v == "5"),
            "round {round}: the reply is the TEARDOWN's (CSeq 5): {headers:?}"
        );
        assert!(t0.elapsed() < Duration::from_secs(3), "round {round}");
        // Nothing but the reply after it: the next answer is the OPTIONS' own.
        c.session = None;
        let (st, headers, _) = c.request("OPTIONS", "*", &[]).unwrap();
        assert_eq!(st, 200);
        assert!(headers.iter().any(|(k, v)| k == "CSeq" && v == "6"));
        c.close();
    }
    assert!(d.log().contains("left: TEARDOWN"), "{}", d.log());
}

/// Wrong passwords from one address lock it out (403, counted in /metrics) while the right
/// password from another address still plays.
#[test]
fn rtsp_brute_force_is_throttled_per_address() {
    let token = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let http_extra = format!(
        "password_hash = \"{}\"\napi_tokens = [\"{}\"]\n{TESTSRC_SMALL}\n\
         [streams.live.auth]\nuser = \"cam\"\npassword = \"s3cret\"\n",
        rillcast::web::auth::hash_password_with("unused password", &[1; 16], 4, 8, 1),
        rillcast::web::auth::hash_token(token)
    );
    let d = Daemon::start_full(
        "bruteforce",
        "auth_max_failures = 4\nauth_lockout_s = 30\nmax_pending_per_address = 64\n",
        &http_extra,
        &[],
        Duration::from_secs(20),
    );
    let url = d.url("live");
    // base64("cam:guessN") / base64("cam:s3cret")
    let b64 = |s: &str| {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let b = s.as_bytes();
        let mut out = String::new();
        for c in b.chunks(3) {
            let n = (c[0] as u32) << 16
                | (*c.get(1).unwrap_or(&0) as u32) << 8
                | *c.get(2).unwrap_or(&0) as u32;
            for i in 0..4 {
                if i <= c.len() {
                    out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    };
    let describe = |from: [u8; 4], password: &str| -> u16 {
        let mut c = RtspClient::connect_from(from, d.rtsp_port).unwrap();
        let auth = format!("Basic {}", b64(&format!("cam:{password}")));
        c.request("DESCRIBE", &url, &[("Authorization", &auth)])
            .unwrap()
            .0
    };
    wait_for("the stream is live", Duration::from_secs(10), || {
        (describe([127, 0, 0, 1], "s3cret") == 200).then_some(())
    });
    let attacker = [127, 0, 0, 3];
    let mut statuses = Vec::new();
    for i in 0..12 {
        statuses.push(describe(attacker, &format!("guess{i}")));
    }
    assert_eq!(&statuses[..4], &[401; 4], "{statuses:?}");
    assert!(statuses[4..].iter().all(|&s| s == 403), "{statuses:?}");
    // Locked out: the right password from the attacker's address is refused too ...
    assert_eq!(describe(attacker, "s3cret"), 403);
    // ... while a client at another address plays.
    let mut good = RtspClient::connect_from([127, 0, 0, 1], d.rtsp_port).unwrap();
    let auth = format!("Basic {}", b64("cam:s3cret"));
    let (st, _, _) = good
        .request("DESCRIBE", &url, &[("Authorization", &auth)])
        .unwrap();
    assert_eq!(st, 200);
    let (st, _, _) = good
        .request(
            "SETUP",
            &format!("{url}/trackID=0"),
            &[
                ("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1"),
                ("Authorization", &auth),
            ],
        )
        .unwrap();
    assert_eq!(st, 200);
    let (st, _, _) = good.request("PLAY", &url, &[]).unwrap();
    assert_eq!(st, 200);
    good.read_interleaved().unwrap();
    let (st, m, _) = http_get(
        d.http_port,
        "/metrics",
        &format!("Authorization: Bearer {token}\r\n"),
    )
    .unwrap();
    assert_eq!(st, 200, "{m}");
    assert!(
        m.contains("rillcast_rtsp_auth_failures_total 4\n"),
        "4 wrong passwords counted (none while locked):\n{m}"
    );
    assert!(
        m.contains("rillcast_rtsp_auth_throttled_total 9\n"),
        "9 requests refused while locked:\n{m}"
    );
    let log = d.log();
    assert_eq!(
        log.matches("locked out of authentication").count(),
        1,
        "one log line for the lockout:\n{log}"
    );
}

/// Per-address caps and request deadlines, RTSP and HTTP: a request trickled byte by byte or
/// padded with blank lines is cut at `request_timeout_ms` from its first byte; one address
/// cannot hold more than its share of not-playing connections, and a viewer that plays frees
/// its slot; another address is served throughout.
#[test]
fn slow_and_hoarding_clients_are_cut_by_deadlines_and_per_address_caps() {
    let d = Daemon::start_full(
        "caps",
        "request_timeout_ms = 1500\nmax_pending_per_address = 3\n",
        &format!("max_connections_per_address = 3\nrequest_timeout_ms = 1500\n{TESTSRC_SMALL}"),
        &[],
        Duration::from_secs(20),
    );
    d.wait_live("live", Duration::from_secs(10));
    // Trickled request and blank-line chatter, from their own addresses.
    let trickle = |from: [u8; 4], port: u16, chunk: &'static [u8]| {
        std::thread::spawn(move || {
            let mut s = connect_from(from, port).unwrap();
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(8) {
                if s.write_all(chunk).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(150));
            }
            assert!(closed_within(&mut s, Duration::from_secs(1)));
            t0.elapsed()
        })
    };
    let slow = trickle([127, 0, 0, 21], d.rtsp_port, b"O");
    let blank = trickle([127, 0, 0, 22], d.rtsp_port, b"\r\n");
    let http_slow = trickle([127, 0, 0, 25], d.http_port, b"G");
    // Hoarding: 3 idle RTSP connections from one address; the 4th is closed at once.
    let hoarder = [127, 0, 0, 23];
    let mut held: Vec<TcpStream> = (0..3)
        .map(|_| connect_from(hoarder, d.rtsp_port).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = connect_from(hoarder, d.rtsp_port).unwrap();
    assert!(
        closed_within(&mut extra, Duration::from_secs(2)),
        "a 4th not-playing connection from one address is refused"
    );
    // Another address is unaffected.
    let mut other = RtspClient::connect_from([127, 0, 0, 24], d.rtsp_port).unwrap();
    assert_eq!(other.request("OPTIONS", "*", &[]).unwrap().0, 200);
    // One of the hoarder's connections plays: its slot frees, a new connection is served.
    drop(held.pop());
    std::thread::sleep(Duration::from_millis(300));
    let mut viewer = RtspClient::connect_from(hoarder, d.rtsp_port).unwrap();
    viewer.play_tcp(&d.url("live")).unwrap();
    viewer.read_interleaved().unwrap();
    // A stray blank line from a playing viewer starts no request clock.
    viewer.stream.write_all(b"\r\n").unwrap();
    let stray_at = Instant::now();
    std::thread::sleep(Duration::from_millis(200));
    let mut after = RtspClient::connect_from(hoarder, d.rtsp_port).unwrap();
    assert_eq!(after.request("OPTIONS", "*", &[]).unwrap().0, 200);
    for (name, t) in [
        ("trickled RTSP request", slow),
        ("RTSP blank lines", blank),
        ("trickled HTTP request", http_slow),
    ] {
        let took = t.join().unwrap();
        assert!(
            took >= Duration::from_millis(1200) && took < Duration::from_secs(5),
            "{name}: closed after {took:?}, want ~1.5 s (request_timeout_ms)"
        );
    }
    // HTTP: 3 connections per address; the 4th gets 503, another address 200.
    let http_hoard: Vec<TcpStream> = (0..3)
        .map(|_| connect_from(hoarder, d.http_port).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut s = connect_from(hoarder, d.http_port).unwrap();
    s.write_all(b"GET /live/index.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 503");
    let (st, body, _) = http_get(d.http_port, "/api/v1/health", "").unwrap();
    assert_eq!(st, 200, "another address is served: {body}");
    drop(http_hoard);
    drop(held);
    std::thread::sleep(Duration::from_millis(2500).saturating_sub(stray_at.elapsed()));
    viewer.session = None;
    let (st, _, _) = viewer
        .request("OPTIONS", "*", &[])
        .expect("the playing viewer outlives request_timeout_ms after a stray CRLF");
    assert_eq!(st, 200);
    viewer.read_interleaved().unwrap();
    let log = d.log();
    assert!(log.contains("not-playing connections open from that address"));
}

/// A flood of datagrams at the server's RTP and RTCP ports for 30 s, with a connect storm at
/// the RTSP and HTTP ports in the middle of it: the interleaved canary viewer loses no packet,
/// every playlist poll answers in < 500 ms, RTSP answers, the systemd watchdog is fed on time,
/// and the flood is logged as a few summary lines, not per packet.
#[test]
fn udp_flood_and_connect_storm_leave_the_control_plane_answering() {
    let dir = temp_dir("flood-notify");
    let notify_path = dir.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let d = Daemon::start_env(
        "flood",
        "",
        TESTSRC_SMALL,
        &[],
        &[
            ("NOTIFY_SOCKET", notify_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "2000000"),
        ],
        Duration::from_secs(20),
    );
    d.wait_live("live", Duration::from_secs(10));
    wait_for("a playlist", Duration::from_secs(15), || {
        let (st, _, _) = http_get(d.http_port, "/live/index.m3u8", "").ok()?;
        (st == 200).then_some(())
    });
    let stop = Arc::new(AtomicBool::new(false));

    // Canary 1: a TCP-interleaved viewer, every video sequence number and its arrival time.
    let mut canary = RtspClient::connect(d.rtsp_port).unwrap();
    canary.play_tcp(&d.url("live")).unwrap();
    let canary_seqs = Arc::new(Mutex::new(Vec::<u16>::new()));
    let canary_max_gap_ms = Arc::new(AtomicU64::new(0));
    let canary_thread = {
        let (stop, seqs, max_gap) = (stop.clone(), canary_seqs.clone(), canary_max_gap_ms.clone());
        std::thread::spawn(move || {
            let mut last = Instant::now();
            while !stop.load(Relaxed) {
                let p = canary
                    .read_interleaved()
                    .expect("the canary viewer keeps receiving");
                if p.channel == 0 {
                    seqs.lock().unwrap().push(p.seq());
                    let gap = last.elapsed().as_millis() as u64;
                    max_gap.fetch_max(gap, Relaxed);
                    last = Instant::now();
                }
            }
        })
    };
    // Canary 2: the systemd watchdog.
    let watchdog_thread = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let mut at = Vec::new();
            while !stop.load(Relaxed) {
                if let Ok(n) = notify.recv(&mut buf) {
                    if String::from_utf8_lossy(&buf[..n]).contains("WATCHDOG=1") {
                        at.push(Instant::now());
                    }
                }
            }
            at
        })
    };

    // The flood: a few threads (more than the daemon's one reader can keep up with), as fast
    // as they can, from a non-viewer address and from the canary's own address (other ports),
    // alternating RTP and RTCP port; bounded to 30 s.
    let flood_secs = 30;
    let (rtp_port, rtcp_port) = (d.udp_port, d.udp_port + 1);
    let floods: Vec<_> = (0..FLOOD_THREADS)
        .map(|i| {
            std::thread::spawn(move || {
                let a = UdpSocket::bind("127.0.0.2:0").unwrap();
                let b = UdpSocket::bind("127.0.0.1:0").unwrap();
                // A valid-looking RTCP receiver report, so the daemon has to look at each.
                let mut rr = [0u8; 32];
                rr[..4].copy_from_slice(&[0x81, 201, 0, 7]);
                let t0 = Instant::now();
                let mut sent = 0u64;
                while t0.elapsed() < Duration::from_secs(flood_secs) {
                    for _ in 0..256 {
                        let port = if (sent + i).is_multiple_of(2) {
                            rtp_port
                        } else {
                            rtcp_port
                        };
                        let s = if sent % 4 < 2 { &a } else { &b };
                        if s.send_to(&rr, ("127.0.0.1", port)).is_ok() {
                            sent += 1;
                        }
                    }
                }
                sent
            })
        })
        .collect();

    // The connect storm, from 127.0.0.5, 8 s into the flood: ~2000 connects/s for 4 s across
    // both ports; every 10th connection stays open (idle) until the storm ends.
    let storm = {
        let (rtsp, http) = (d.rtsp_port, d.http_port);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(8));
            let t0 = Instant::now();
            let mut held = Vec::new();
            let mut n = 0u64;
            while t0.elapsed() < Duration::from_secs(4) {
                let due = t0.elapsed().as_millis() as u64 * 2;
                if n >= due {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                let port = if n.is_multiple_of(2) { rtsp } else { http };
                if let Ok(s) = connect_from([127, 0, 0, 5], port) {
                    if n.is_multiple_of(10) && held.len() < 400 {
                        held.push(s);
                    }
                }
                n += 1;
            }
            drop(held);
            n
        })
    };

    // Canaries 3 and 4: a playlist every 200 ms and an RTSP OPTIONS every second.
    let cpu0 = cpu_ticks(d.pid());
    let t0 = Instant::now();
    let mut polls = 0;
    let mut worst_poll = Duration::ZERO;
    let mut worst_options = Duration::ZERO;
    let mut next_options = Instant::now();
    while t0.elapsed() < Duration::from_secs(flood_secs) {
        let (st, body, took) = http_get(d.http_port, "/live/index.m3u8", "")
            .unwrap_or_else(|e| panic!("playlist poll {polls} failed at {:?}: {e}", t0.elapsed()));
        assert_eq!(st, 200, "playlist poll {polls} at {:?}", t0.elapsed());
        assert!(body.starts_with("#EXTM3U"), "{body}");
        assert!(
            took < Duration::from_millis(500),
            "playlist poll {polls} at {:?} took {took:?}",
            t0.elapsed()
        );
        worst_poll = worst_poll.max(took);
        polls += 1;
        if Instant::now() >= next_options {
            let t = Instant::now();
            let mut c = RtspClient::connect(d.rtsp_port).unwrap();
            assert_eq!(c.request("OPTIONS", "*", &[]).unwrap().0, 200);
            worst_options = worst_options.max(t.elapsed());
            next_options += Duration::from_secs(1);
        }
        std::thread::sleep(Duration::from_millis(200).saturating_sub(took));
    }
    let sent: u64 = floods.into_iter().map(|f| f.join().unwrap()).sum();
    let cpu_pct = (cpu_ticks(d.pid()) - cpu0) as f64 / t0.elapsed().as_secs_f64();
    let connects = storm.join().unwrap();
    stop.store(true, Relaxed);
    canary_thread.join().unwrap();
    let watchdog = watchdog_thread.join().unwrap();
    let seqs = canary_seqs.lock().unwrap().clone();
    let max_gap = canary_max_gap_ms.load(Relaxed);
    let wd_gap = watchdog
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    eprintln!(
        "flood: {sent} datagrams in {flood_secs} s ({} /s); storm: {connects} connects; \
         {polls} playlist polls, worst {worst_poll:?}; worst OPTIONS {worst_options:?}; \
         canary {} video packets, longest silence {max_gap} ms; {} watchdog pings, \
         longest gap {wd_gap:?}; daemon CPU {cpu_pct:.0} % of a core",
        sent / flood_secs,
        seqs.len(),
        watchdog.len()
    );
    assert!(sent > 100_000, "the flood really flooded: {sent}");
    assert!(connects > 4000, "the storm really stormed: {connects}");
    assert!(polls >= 100, "{polls} polls");
    assert!(
        worst_options < Duration::from_millis(500),
        "{worst_options:?}"
    );
    assert!(seqs.len() > 1000, "{} canary packets", seqs.len());
    assert_eq!(seq_gaps(&seqs), 0, "canary saw sequence gaps");
    assert!(max_gap < 1000, "canary silent for {max_gap} ms");
    // WATCHDOG_USEC = 2 s: systemd would kill us after a 2 s gap.
    assert!(watchdog.len() >= 25, "{} watchdog pings", watchdog.len());
    assert!(
        wd_gap < Duration::from_millis(1900),
        "watchdog gap {wd_gap:?}"
    );
    let mut d = d;
    assert!(d.alive(), "the daemon survived");
    let log = d.log();
    let noise = log.matches("UDP datagram(s)").count();
    assert!(
        (1..=5).contains(&noise),
        "{noise} flood log lines (want a summary every 10 s):\n{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

//! End-to-end RTSP: the real daemon on loopback, real ffmpeg/ffprobe and GStreamer as clients,
//! plus the harness's small client where a test must see individual RTP packets.

mod common;
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

const TESTSRC_SMALL: &str = r#"
[streams.live.source]
kind = "testsrc"
width = 320
height = 240
gop_frames = 30
"#;

/// ffmpeg decodes `secs` seconds from `url`; returns (frames decoded, stderr).
fn ffmpeg_decode(url: &str, transport: &str, secs: u32, extra: &[&str]) -> (u64, String) {
    require_tool("ffmpeg");
    let mut cmd = Command::new("ffmpeg");
    cmd.args([
        "-hide_banner",
        "-nostdin",
        "-v",
        "warning",
        "-rtsp_transport",
        transport,
    ])
    .args(["-i", url])
    .args(extra)
    .args([
        "-t",
        &secs.to_string(),
        "-f",
        "null",
        "-",
        "-progress",
        "pipe:1",
    ]);
    let (ok, out, err) = run_bounded(&mut cmd, Duration::from_secs(secs as u64 + 30));
    assert!(ok, "ffmpeg failed on {url} ({transport}): {err}");
    let frames = out
        .lines()
        .filter_map(|l| l.strip_prefix("frame="))
        .filter_map(|v| v.trim().parse().ok())
        .next_back()
        .unwrap_or(0);
    (frames, err)
}

fn assert_clean(stderr: &str, what: &str) {
    // -v warning: any decoder error or timestamp complaint shows up here.
    let bad: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        bad.is_empty(),
        "{what}: ffmpeg complained:\n{}",
        bad.join("\n")
    );
}

#[test]
fn ffmpeg_decodes_testsrc_over_tcp_and_udp_with_audio() {
    let d = Daemon::start("ffmpeg-h264", TESTSRC_SMALL);
    d.wait_live("live", Duration::from_secs(10));
    for transport in ["tcp", "udp"] {
        let (frames, err) = ffmpeg_decode(&d.url("live"), transport, 6, &["-map", "0"]);
        assert_clean(&err, transport);
        // 6 s at 30 fps; within 2 %.
        assert!(
            (176..=184).contains(&frames),
            "{transport}: {frames} frames for 6 s at 30 fps"
        );
    }
    // ffprobe sees both tracks with the right parameters.
    require_tool("ffprobe");
    let (ok, out, err) = run_bounded(
        Command::new("ffprobe")
            .args(["-v", "error", "-rtsp_transport", "tcp", "-show_entries"])
            .args([
                "stream=codec_name,width,height,sample_rate,channels",
                "-of",
                "csv=p=0",
            ])
            .arg(d.url("live")),
        Duration::from_secs(20),
    );
    assert!(ok, "ffprobe: {err}");
    assert!(out.contains("h264,320,240"), "{out}");
    assert!(out.contains("aac,48000,1"), "{out}");
}

/// H.265 from a file source, with AAC from a second (ADTS file) input.
#[test]
fn ffmpeg_decodes_h265_file_source_with_aac() {
    require_tool("ffmpeg");
    let dir = temp_dir("h265-src");
    let video = dir.join("v.h265");
    let audio = dir.join("a.aac");
    let (ok, _, err) = run_bounded(
        Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=320x240:rate=25",
            ])
            .args([
                "-t",
                "4",
                "-c:v",
                "libx265",
                "-x265-params",
                "bframes=0:keyint=25:log-level=error",
            ])
            .args(["-f", "hevc"])
            .arg(&video),
        Duration::from_secs(60),
    );
    assert!(ok, "making the H.265 file: {err}");
    let (ok, _, err) = run_bounded(
        Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=44100",
            ])
            .args(["-t", "4", "-c:a", "aac", "-f", "adts"])
            .arg(&audio),
        Duration::from_secs(60),
    );
    assert!(ok, "making the AAC file: {err}");
    let cfg = format!(
        "[streams.cam.source]\nkind = \"file\"\nformat = \"h265\"\nfps = 25.0\npath = \"{}\"\n\
         [streams.cam.audio]\nkind = \"file\"\nformat = \"adts\"\npath = \"{}\"\n",
        video.display(),
        audio.display()
    );
    let d = Daemon::start("ffmpeg-h265", &cfg);
    d.wait_live("cam", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300)); // audio parameters known too
    for transport in ["tcp", "udp"] {
        let (frames, err) = ffmpeg_decode(&d.url("cam"), transport, 6, &["-map", "0"]);
        assert_clean(&err, transport);
        assert!(
            (147..=153).contains(&frames),
            "{transport}: {frames} frames for 6 s at 25 fps"
        );
    }
    let (ok, out, err) = run_bounded(
        Command::new("ffprobe")
            .args(["-v", "error", "-rtsp_transport", "tcp", "-show_entries"])
            .args([
                "stream=codec_name,width,height,sample_rate",
                "-of",
                "csv=p=0",
            ])
            .arg(d.url("cam")),
        Duration::from_secs(20),
    );
    assert!(ok, "ffprobe: {err}");
    assert!(out.contains("hevc,320,240"), "{out}");
    assert!(out.contains("aac,44100"), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn gstreamer_plays_over_udp_and_tcp() {
    require_tool("gst-launch-1.0");
    let d = Daemon::start("gst", TESTSRC_SMALL);
    d.wait_live("live", Duration::from_secs(10));
    for protocols in ["udp", "tcp"] {
        let pipeline = format!(
            "rtspsrc location={} protocols={protocols} latency=200 ! rtph264depay ! h264parse ! \
             avdec_h264 ! fakesink num-buffers=60 sync=false",
            d.url("live")
        );
        let (ok, out, err) = run_bounded(
            Command::new("gst-launch-1.0")
                .arg("-q")
                .args(pipeline.split_whitespace()),
            Duration::from_secs(30),
        );
        assert!(ok, "gstreamer over {protocols}: {out}\n{err}");
        assert!(!err.contains("ERROR"), "gstreamer over {protocols}: {err}");
    }
}

/// 50 viewers, half TCP half UDP, for 10 s: every one gets every RTP packet.
#[test]
fn fifty_viewers_get_every_packet() {
    // All fifty come from 127.0.0.1 and set up at once: more than the default share of
    // not-playing connections one address may hold.
    let d = Daemon::start_full(
        "fifty",
        "max_pending_per_address = 64",
        TESTSRC_SMALL,
        &[],
        Duration::from_secs(20),
    );
    d.wait_live("live", Duration::from_secs(10));
    let url = d.url("live");
    let port = d.rtsp_port;
    let mut handles = Vec::new();
    for i in 0..50 {
        let url = url.clone();
        handles.push(std::thread::spawn(
            move || -> Result<(usize, usize), String> {
                let mut c = RtspClient::connect(port).map_err(|e| e.to_string())?;
                let end = Instant::now() + Duration::from_secs(10);
                let mut seqs: [Vec<u16>; 2] = [Vec::new(), Vec::new()];
                if i % 2 == 0 {
                    c.play_tcp(&url).map_err(|e| e.to_string())?;
                    while Instant::now() < end {
                        let p = c
                            .read_interleaved()
                            .map_err(|e| format!("viewer {i}: {e}"))?;
                        if p.channel % 2 == 0 {
                            seqs[(p.channel / 2) as usize].push(p.seq());
                        }
                    }
                } else {
                    let socks = c.play_udp(&url).map_err(|e| e.to_string())?;
                    let mut buf = [0u8; 2048];
                    for s in &socks {
                        s.0.set_read_timeout(Some(Duration::from_millis(20)))
                            .unwrap();
                    }
                    while Instant::now() < end {
                        for (t, s) in socks.iter().enumerate() {
                            while let Ok(n) = s.0.recv(&mut buf) {
                                if n >= 12 {
                                    seqs[t].push(u16::from_be_bytes([buf[2], buf[3]]));
                                }
                            }
                        }
                    }
                }
                let gaps = seq_gaps(&seqs[0]) + seq_gaps(&seqs[1]);
                if gaps > 0 {
                    return Err(format!(
                        "viewer {i} ({}): {gaps} gaps",
                        if i % 2 == 0 { "tcp" } else { "udp" }
                    ));
                }
                Ok((seqs[0].len(), seqs[1].len()))
            },
        ));
    }
    for h in handles {
        let (v, a) = h.join().unwrap().unwrap();
        // 10 s at 30 fps is ≥ 300 video packets; 48 kHz / 1024 ≈ 47 audio frames per second.
        assert!(
            v >= 300 && a >= 400,
            "too few packets: video {v}, audio {a}"
        );
    }
    assert!(d.log().contains("viewer"), "log mentions viewers");
}

/// A TCP viewer that stops reading is dropped; a second viewer sees no gap throughout.
#[test]
fn stalled_tcp_viewer_does_not_disturb_another() {
    let d = Daemon::start_full(
        "stall",
        "stall_timeout_ms = 2000",
        TESTSRC_SMALL,
        &[],
        Duration::from_secs(20),
    );
    d.wait_live("live", Duration::from_secs(10));
    // The stalled one: play, then never read again (small receive buffer fills fast).
    let mut stalled = RtspClient::connect(d.rtsp_port).unwrap();
    socket2::SockRef::from(&stalled.stream)
        .set_recv_buffer_size(4096)
        .unwrap();
    stalled.play_tcp(&d.url("live")).unwrap();
    let mut good = RtspClient::connect(d.rtsp_port).unwrap();
    good.play_tcp(&d.url("live")).unwrap();
    let end = Instant::now() + Duration::from_secs(8);
    let mut seqs = Vec::new();
    while Instant::now() < end {
        let p = good.read_interleaved().unwrap();
        if p.channel == 0 {
            seqs.push(p.seq());
        }
    }
    assert_eq!(seq_gaps(&seqs), 0, "the good viewer saw gaps");
    assert!(seqs.len() > 200, "{} packets", seqs.len());
    let log = d.log();
    assert!(
        log.contains("TCP socket stalled past stall_timeout_ms"),
        "the stalled viewer was dropped:\n{log}"
    );
    stalled.close();
}

/// A viewer joining mid-GOP first gets SPS and PPS (STAP-A) and a keyframe.
#[test]
fn mid_gop_join_starts_with_parameter_sets_and_keyframe() {
    let d = Daemon::start("midgop", TESTSRC_SMALL);
    d.wait_live("live", Duration::from_secs(10));
    for wait_ms in [100u64, 450, 700] {
        std::thread::sleep(Duration::from_millis(wait_ms));
        let mut c = RtspClient::connect(d.rtsp_port).unwrap();
        let t0 = Instant::now();
        c.play_tcp(&d.url("live")).unwrap();
        let first = loop {
            let p = c.read_interleaved().unwrap();
            if p.channel == 0 {
                break p;
            }
        };
        let elapsed = t0.elapsed();
        let pl = first.payload();
        assert_eq!(
            pl[0] & 0x1f,
            24,
            "first video packet is a STAP-A, got type {}",
            pl[0] & 0x1f
        );
        let mut types = Vec::new();
        let mut i = 1;
        while i + 2 <= pl.len() {
            let len = u16::from_be_bytes([pl[i], pl[i + 1]]) as usize;
            types.push(pl[i + 2] & 0x1f);
            i += 2 + len;
        }
        assert_eq!(&types[..2], &[7, 8], "SPS, PPS first: {types:?}");
        // The next NAL (in this or the following packet) is the IDR.
        if types.len() < 3 {
            let p = c.read_interleaved().unwrap();
            let t = p.payload()[0] & 0x1f;
            let t = if t == 28 { p.payload()[1] & 0x1f } else { t };
            assert_eq!(t, 5, "IDR follows the parameter sets");
        } else {
            assert_eq!(types[2], 5);
        }
        assert!(
            elapsed < Duration::from_secs(2),
            "first packet took {elapsed:?}"
        );
        c.close();
    }
}

/// Bad requests get the right status; the connection's neighbours carry on.
#[test]
fn bad_requests_get_4xx_and_neighbours_carry_on() {
    let d = Daemon::start("bad", TESTSRC_SMALL);
    d.wait_live("live", Duration::from_secs(10));
    let mut watcher = RtspClient::connect(d.rtsp_port).unwrap();
    watcher.play_tcp(&d.url("live")).unwrap();

    let url = d.url("live");
    // Unknown stream.
    let mut c = RtspClient::connect(d.rtsp_port).unwrap();
    assert_eq!(c.request("DESCRIBE", &d.url("nope"), &[]).unwrap().0, 404);
    // Bad transport.
    assert_eq!(
        c.request(
            "SETUP",
            &format!("{url}/trackID=0"),
            &[("Transport", "RTP/SAVP;multicast")]
        )
        .unwrap()
        .0,
        461
    );
    // PLAY before SETUP.
    assert_eq!(c.request("PLAY", &url, &[]).unwrap().0, 455);
    // SETUP of one track twice.
    let tr = [("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")];
    assert_eq!(
        c.request("SETUP", &format!("{url}/trackID=0"), &tr)
            .unwrap()
            .0,
        200
    );
    let tr2 = [("Transport", "RTP/AVP/TCP;unicast;interleaved=2-3")];
    let st = c
        .request("SETUP", &format!("{url}/trackID=0"), &tr2)
        .unwrap()
        .0;
    assert!(st == 455 || st == 459, "second SETUP of a track: {st}");
    // A session id used from another connection.
    let sid = c.session.clone().unwrap();
    let mut other = RtspClient::connect(d.rtsp_port).unwrap();
    other.session = Some(sid);
    assert_eq!(other.request("PLAY", &url, &[]).unwrap().0, 454);
    // Unknown method.
    assert_eq!(other.request("BREW", &url, &[]).unwrap().0, 501);

    // A 1 MiB header line: refused, connection closed, daemon fine.
    let mut big = std::net::TcpStream::connect(("127.0.0.1", d.rtsp_port)).unwrap();
    use std::io::{Read, Write};
    let _ = big.write_all(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nX-Big: ");
    let junk = vec![b'a'; 1 << 20];
    let _ = big.write_all(&junk); // may fail once the server closes: fine
    big.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut resp = Vec::new();
    let _ = big.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp);
    assert!(
        resp.starts_with("RTSP/1.0 4"),
        "oversized request answered with {resp:?}"
    );

    // Random garbage from many connections.
    let mut x = rand_u64() | 1;
    for _ in 0..50 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", d.rtsp_port)).unwrap();
        let mut g = vec![0u8; 512];
        for b in g.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let _ = s.write_all(&g);
    }

    // The watcher never noticed.
    let mut seqs = Vec::new();
    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end {
        let p = watcher.read_interleaved().unwrap();
        if p.channel == 0 {
            seqs.push(p.seq());
        }
    }
    assert_eq!(seq_gaps(&seqs), 0);
    assert!(!seqs.is_empty());
}

/// An encoder process that dies is restarted; viewers see a stall, then frames again.
#[test]
fn killed_encoder_is_restarted() {
    require_tool("ffmpeg");
    let cfg = r#"
[streams.cam.source]
kind = "exec"
format = "h264"
fps = 25.0
restart_min_ms = 200
command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-bf", "0", "-g", "25", "-flush_packets", "1", "-f", "h264", "-"]
"#;
    let d = Daemon::start("restart", cfg);
    d.wait_live("cam", Duration::from_secs(20));
    let mut c = RtspClient::connect(d.rtsp_port).unwrap();
    c.play_tcp(&d.url("cam")).unwrap();
    let read_for = |c: &mut RtspClient, dur: Duration| {
        let end = Instant::now() + dur;
        let mut n = 0;
        while Instant::now() < end {
            if c.read_interleaved().is_ok() {
                n += 1;
            }
        }
        n
    };
    assert!(read_for(&mut c, Duration::from_secs(2)) > 20);
    // Kill the encoder (the daemon's child).
    // The encoder is a child of the stream's ingest thread: look in every task.
    let mut pid = None;
    for t in std::fs::read_dir(format!("/proc/{}/task", d.pid())).unwrap() {
        let path = t.unwrap().path().join("children");
        let children = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(p) = children.split_whitespace().next() {
            pid = Some(p.to_string());
        }
    }
    let pid = pid.expect("encoder child process");
    assert!(Command::new("kill")
        .args(["-9", &pid])
        .status()
        .unwrap()
        .success());
    std::thread::sleep(Duration::from_millis(100));
    // Frames again within a few seconds, on the same session.
    let n = read_for(&mut c, Duration::from_secs(6));
    assert!(n > 20, "after the restart only {n} packets");
    let log = d.log();
    assert!(log.contains("restarting in"), "restart logged:\n{log}");
    assert!(log.matches("encoder started").count() >= 2, "{log}");
}

/// MPEG-TS ingest over TCP (rillcast connects to an encoder that listens) and over UDP:
/// PES timestamps are used, and ffmpeg decodes what comes out over RTSP.
#[test]
fn mpegts_ingest_over_tcp_and_udp() {
    require_tool("ffmpeg");
    for kind in ["tcp", "udp"] {
        let port = free_port();
        let out_url = match kind {
            "tcp" => format!("tcp://127.0.0.1:{port}?listen=1"),
            _ => format!("udp://127.0.0.1:{port}?pkt_size=1316"),
        };
        let cfg = format!(
            "[streams.ts.source]\nkind = \"{kind}\"\nformat = \"mpegts\"\naddress = \"127.0.0.1:{port}\"\n\
             restart_min_ms = 200\n"
        );
        // For UDP the daemon binds first; for TCP the encoder listens first.
        let mut encoder = std::process::Command::new("ffmpeg");
        encoder
            .args(["-nostdin", "-loglevel", "error", "-re", "-f", "lavfi", "-i"])
            .args([
                "testsrc2=size=320x240:rate=25",
                "-f",
                "lavfi",
                "-i",
                "sine=sample_rate=44100",
            ])
            .args([
                "-t",
                "30",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-bf",
                "0",
                "-g",
                "25",
            ])
            .args(["-c:a", "aac", "-f", "mpegts", &out_url])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let (d, mut enc) = if kind == "tcp" {
            let enc = encoder.spawn().unwrap();
            std::thread::sleep(Duration::from_millis(500));
            (Daemon::start(&format!("ts-{kind}"), &cfg), enc)
        } else {
            let d = Daemon::start(&format!("ts-{kind}"), &cfg);
            (d, encoder.spawn().unwrap())
        };
        d.wait_live("ts", Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(500));
        let (frames, err) = ffmpeg_decode(&d.url("ts"), "tcp", 5, &["-map", "0"]);
        assert_clean(&err, kind);
        assert!(
            (122..=128).contains(&frames),
            "{kind}: {frames} frames for 5 s at 25 fps"
        );
        let (ok, out, err) = run_bounded(
            Command::new("ffprobe")
                .args(["-v", "error", "-rtsp_transport", "tcp", "-show_entries"])
                .args(["stream=codec_name,sample_rate", "-of", "csv=p=0"])
                .arg(d.url("ts")),
            Duration::from_secs(20),
        );
        assert!(ok, "ffprobe: {err}");
        assert!(
            out.contains("h264") && out.contains("aac,44100"),
            "{kind}: {out}"
        );
        let _ = enc.kill();
        let _ = enc.wait();
    }
}

/// Basic and Digest authentication with a real client; wrong or missing credentials are 401.
#[test]
fn auth_with_ffmpeg_and_rejections() {
    let cfg =
        format!("{TESTSRC_SMALL}\n[streams.live.auth]\nuser = \"cam\"\npassword = \"s3cret\"\n");
    let d = Daemon::start("auth", &cfg);
    let mut c = RtspClient::connect(d.rtsp_port).unwrap();
    let (st, headers, _) = c.request("DESCRIBE", &d.url("live"), &[]).unwrap();
    assert_eq!(st, 401);
    assert!(headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("WWW-Authenticate") && v.starts_with("Digest")));
    // Basic with a wrong password.
    let (st, _, _) = c
        .request(
            "DESCRIBE",
            &d.url("live"),
            &[("Authorization", "Basic Y2FtOndyb25n")],
        )
        .unwrap();
    assert_eq!(st, 401);
    // Basic with the right one ("cam:s3cret").
    let (st, _, _) = c
        .request(
            "DESCRIBE",
            &d.url("live"),
            &[("Authorization", "Basic Y2FtOnMzY3JldA==")],
        )
        .unwrap();
    assert_eq!(st, 200);
    // ffmpeg (Digest) with credentials in the URL decodes; without them it is refused.
    let url = format!("rtsp://cam:s3cret@127.0.0.1:{}/live", d.rtsp_port);
    let (frames, err) = ffmpeg_decode(&url, "tcp", 2, &[]);
    assert!(frames > 50, "{frames} frames: {err}");
    let (ok, _, err) = run_bounded(
        Command::new("ffmpeg").args([
            "-v",
            "error",
            "-rtsp_transport",
            "tcp",
            "-i",
            &d.url("live"),
            "-t",
            "1",
            "-f",
            "null",
            "-",
        ]),
        Duration::from_secs(20),
    );
    assert!(
        !ok && err.contains("401"),
        "no credentials must fail with 401: {err}"
    );
}

/// PAUSE stops the packets; PLAY resumes them, and RTP-Info names the sequence number that
/// really comes next.
#[test]
fn pause_and_resume_with_truthful_rtp_info() {
    let d = Daemon::start("pause", TESTSRC_SMALL);
    d.wait_live("live", Duration::from_secs(10));
    let url = d.url("live");
    let mut c = RtspClient::connect(d.rtsp_port).unwrap();
    c.play_tcp(&url).unwrap();
    for _ in 0..50 {
        c.read_interleaved().unwrap();
    }
    // PAUSE; packets already queued may precede the response (the client skips them).
    let (st, _, _) = c.request("PAUSE", &url, &[]).unwrap();
    assert_eq!(st, 200, "PAUSE");
    c.stream
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    assert!(c.read_interleaved().is_err(), "packets after PAUSE");
    c.stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let (st, headers, _) = c.request("PLAY", &url, &[]).unwrap();
    assert_eq!(st, 200, "resume");
    let info = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("RTP-Info"))
        .map(|(_, v)| v.clone())
        .expect("RTP-Info");
    let video_seq: u16 = info
        .split(',')
        .find(|p| p.contains("trackID=0"))
        .and_then(|p| p.split(';').find_map(|kv| kv.trim().strip_prefix("seq=")))
        .and_then(|s| s.parse().ok())
        .expect("seq in RTP-Info");
    let first = loop {
        let p = c.read_interleaved().unwrap();
        if p.channel == 0 {
            break p;
        }
    };
    assert_eq!(first.seq(), video_seq, "RTP-Info {info}");
}

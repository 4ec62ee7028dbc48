//! End-to-end fMP4 over WebSocket: the real daemon on loopback, a small WebSocket client in
//! the test. ffmpeg decodes what it captured (init segment + fragments) with nothing to say
//! at `-v warning`; every track's `tfdt` increases; the first fragment is a keyframe; the
//! handshake's refusals, ping/pong, close, and the stream credentials (401 without them).

mod common;
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

// The harness puts these first lines in [http].
const STREAMS: &str = r#"send_timeout_ms = 2000

[media]
memory_mib = 64

[streams.hevc.source]
kind = "file"
format = "h265"
fps = 25.0
path = "FIXTURE"

[streams.live.source]
kind = "testsrc"
width = 320
height = 240
gop_frames = 30

[streams.cam.source]
kind = "testsrc"
width = 160
height = 128
audio = false

[streams.cam.auth]
user = "viewer"
password = "s3cret"
"#;

/// Reads the hello, the init segment and fragments for `secs` of media; returns
/// (hello, init, fragments).
fn capture(ws: &mut WsClient, secs: u64) -> (String, Vec<u8>, Vec<Vec<u8>>) {
    let (op, hello) = ws.read_message().expect("hello");
    assert_eq!(op, 1, "first message is text");
    let (op, init) = ws.read_message().expect("init");
    assert_eq!(op, 2);
    assert_eq!(&init[4..8], b"ftyp", "init segment starts with ftyp");
    let mut frags = Vec::new();
    let mut first_video: Option<u64> = None;
    let deadline = Instant::now() + Duration::from_secs(secs + 10);
    loop {
        assert!(Instant::now() < deadline, "fragments too slow");
        let (op, f) = ws.read_message().expect("fragment");
        assert_eq!(op, 2, "fragments are binary");
        let (track, t, _) = fmp4_fragment_info(&f).expect("a moof with a traf");
        frags.push(f);
        if track == 1 {
            let start = *first_video.get_or_insert(t);
            if t - start >= secs * 90_000 {
                break;
            }
        }
    }
    (String::from_utf8(hello).unwrap(), init, frags)
}

#[test]
fn websocket_fmp4_decodes_cleanly_with_increasing_tfdt_and_honours_credentials() {
    require_tool("ffmpeg");
    require_tool("ffprobe");
    let fixture = fixture("ffmpeg_testsrc_160x120_x265.h265");
    let d = Daemon::start(
        "fmp4-e2e",
        &STREAMS.replace("FIXTURE", fixture.to_str().unwrap()),
    );
    d.wait_live("live", Duration::from_secs(20));
    let port = d.http_port;
    // A viewer that never reads: blocked once the kernel buffers are full, then closed after
    // the send timeout, while the others below play on.
    let (stalled, _) = WsClient::connect(port, "/live/ws", &[]).expect("upgrade");
    let _ = socket2::SockRef::from(&stalled.stream).set_recv_buffer_size(4096);
    // H.264 + AAC from the test source, 3 s.
    let (mut ws, head) = WsClient::connect(port, "/live/ws", &[]).expect("upgrade");
    assert!(
        head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{head}"
    );
    let (hello, init, frags) = capture(&mut ws, 3);
    assert!(
        hello.contains("\"codecs\":\"avc1.") && hello.contains("mp4a.40.2"),
        "{hello}"
    );
    let mut last = [None::<u64>; 3];
    let mut counts = [0usize; 3];
    for (i, f) in frags.iter().enumerate() {
        let (track, t, flags) = fmp4_fragment_info(f).unwrap();
        assert!(track == 1 || track == 2, "track {track}");
        if i == 0 {
            assert_eq!(track, 1, "a viewer starts with video");
            assert_eq!(flags & 0x0001_0000, 0, "... at a sync sample");
        }
        let k = track as usize;
        if let Some(p) = last[k] {
            assert!(
                t > p,
                "tfdt of track {track} went from {p} to {t} at fragment {i}"
            );
        }
        last[k] = Some(t);
        counts[k] += 1;
    }
    assert!(counts[1] >= 80, "video fragments in 3 s: {counts:?}");
    assert!(
        counts[2] >= 100,
        "audio fragments in 3 s (48 kHz AAC): {counts:?}"
    );
    // ffmpeg decodes init + fragments with nothing to warn about.
    let dir = temp_dir("fmp4-capture");
    let file = dir.join("live.mp4");
    let mut all = init.clone();
    for f in &frags {
        all.extend_from_slice(f);
    }
    std::fs::write(&file, &all).unwrap();
    let (ok, _, err) = run_bounded(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "warning", "-i"])
            .arg(&file)
            .args(["-f", "null", "-"]),
        Duration::from_secs(60),
    );
    assert!(ok, "ffmpeg failed: {err}");
    assert_eq!(err.trim(), "", "ffmpeg -v warning had something to say");
    let (ok, out, err) = run_bounded(
        Command::new("ffprobe")
            .args([
                "-v",
                "warning",
                "-show_entries",
                "stream=codec_name,width,height,sample_rate",
            ])
            .args(["-of", "compact"])
            .arg(&file),
        Duration::from_secs(30),
    );
    assert!(ok && err.trim().is_empty(), "ffprobe: {err}");
    assert!(
        out.contains("codec_name=h264|width=320|height=240"),
        "{out}"
    );
    assert!(
        out.contains("codec_name=aac") && out.contains("sample_rate=48000"),
        "{out}"
    );
    // Ping gets a pong with the same payload (fragments may come first); close is echoed.
    ws.send(0x9, b"are you there").unwrap();
    let pong = (0..500)
        .map(|_| ws.read_message().unwrap())
        .find(|(op, _)| *op == 0xa)
        .expect("a pong");
    assert_eq!(pong.1, b"are you there");
    ws.send(0x8, &1000u16.to_be_bytes()).unwrap();
    let close = (0..500)
        .map(|_| ws.read_message().unwrap())
        .find(|(op, _)| *op == 0x8)
        .expect("close echoed");
    assert_eq!(close.1, 1000u16.to_be_bytes());

    // Refusals: not an upgrade, the wrong version, an unknown stream.
    let plain = http_get(port, "/live/ws");
    assert!(plain.starts_with("HTTP/1.1 400"), "{plain}");
    let e = WsClient::connect(port, "/live/ws", &["Sec-WebSocket-Version: 8"]).err();
    // The client sends version 13 first; a second version field is not what the server reads,
    // so test the version check with a raw request instead.
    let _ = e;
    let raw = http_raw(
        port,
        "GET /live/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    );
    assert!(
        raw.starts_with("HTTP/1.1 426") && raw.contains("Sec-WebSocket-Version: 13"),
        "{raw}"
    );
    assert_eq!(
        WsClient::connect(port, "/nope/ws", &[]).err().map(|e| e.0),
        Some(404)
    );

    // H.265 (hvcC in an hvc1 sample entry, as Safari wants it) from x265 via a file source.
    let (mut ws, _) = WsClient::connect(port, "/hevc/ws", &[]).expect("upgrade");
    let (hello, init, frags) = capture(&mut ws, 2);
    assert!(hello.contains("\"codecs\":\"hvc1."), "{hello}");
    let file = dir.join("hevc.mp4");
    let mut all = init;
    for f in &frags {
        all.extend_from_slice(f);
    }
    std::fs::write(&file, &all).unwrap();
    let (ok, _, err) = run_bounded(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "warning", "-i"])
            .arg(&file)
            .args(["-f", "null", "-"]),
        Duration::from_secs(60),
    );
    assert!(ok && err.trim().is_empty(), "ffmpeg on H.265 fMP4: {err}");
    let (_, out, _) = run_bounded(
        Command::new("ffprobe")
            .args([
                "-v",
                "warning",
                "-show_entries",
                "stream=codec_name,codec_tag_string,width,height",
            ])
            .args(["-of", "compact"])
            .arg(&file),
        Duration::from_secs(30),
    );
    assert!(
        out.contains("codec_name=hevc|codec_tag_string=hvc1|width=160|height=120"),
        "{out}"
    );

    // A protected stream: 401 without credentials or with wrong ones, plays with Basic.
    let r = WsClient::connect(port, "/cam/ws", &[])
        .err()
        .expect("refused");
    assert_eq!(r.0, 401, "{}", r.1);
    assert!(r.1.contains("WWW-Authenticate: Basic"), "{}", r.1);
    let wrong = WsClient::connect(port, "/cam/ws", &["Authorization: Basic dmlld2VyOm5vcGU="]);
    assert_eq!(wrong.err().map(|e| e.0), Some(401));
    // base64("viewer:s3cret")
    let (mut ws, _) = WsClient::connect(
        port,
        "/cam/ws",
        &["Authorization: Basic dmlld2VyOnMzY3JldA=="],
    )
    .expect("credentials accepted");
    let (hello, _, frags) = capture(&mut ws, 1);
    assert!(!hello.contains("mp4a"), "no audio on cam: {hello}");
    assert!(frags.len() >= 25);
    // By now the stalled viewer has been closed (~1 s to fill its buffers at 1.8 Mbit/s,
    // then 2 s of send timeout); it never held up anyone above.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !d.log().contains("left: stalled (send timeout)") {
        assert!(
            Instant::now() < deadline,
            "stalled viewer not closed:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(stalled);
    let _ = std::fs::remove_dir_all(&dir);
}

fn http_raw(port: u16, req: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut b = [0u8; 4096];
    while !out.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&b[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn http_get(port: u16, path: &str) -> String {
    http_raw(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
}

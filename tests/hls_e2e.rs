//! End-to-end HLS: the real daemon on loopback serving HLS from RAM to real clients — ffmpeg
//! (H.264+AAC and H.265+AAC), hls.js in Debian's headless Chromium (cross-origin for an open
//! stream, on the daemon's page with a login session for a protected one) — plus the playlist rules
//! over a run with an encoder restart, TS checks on fetched segments, and the HTTP server's
//! limits (traversal, HEAD/Range/CORS, slowloris, huge headers, the connection cap).

mod common;
use common::*;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TESTSRC_SMALL: &str = r#"
[streams.live.source]
kind = "testsrc"
width = 320
height = 240
gop_frames = 30
"#;

/// One HTTP response as the tests see it.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response (Content-Length framed; HEAD has no body) from `s`.
fn read_response(s: &mut TcpStream, head_request: bool) -> std::io::Result<Resp> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(b[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {text:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; if head_request { 0 } else { len }];
    s.read_exact(&mut body)?;
    Ok(Resp {
        status,
        headers,
        body,
    })
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the HTTP port");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// One request on a fresh connection.
fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut s = connect(port);
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    read_response(&mut s, method == "HEAD").unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

fn get(port: u16, path: &str) -> Resp {
    request(port, "GET", path, &[])
}

/// Polls until the playlist answers 200.
fn wait_playlist(d: &Daemon, stream: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = get(d.http_port, &format!("/{stream}/index.m3u8"));
        if r.status == 200 {
            return r.text();
        }
        assert!(
            Instant::now() < deadline,
            "no playlist for {stream} within 30 s (last {}); log:\n{}",
            r.status,
            d.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// ffmpeg reads the HLS URL and decodes `secs` seconds of every stream; returns frames and
/// stderr (at `-v warning`: empty when clean).
fn ffmpeg_decode_hls(url: &str, secs: u32) -> (u64, String) {
    require_tool("ffmpeg");
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-v", "warning", "-i", url])
        .args(["-map", "0", "-t", &secs.to_string()])
        .args(["-f", "null", "-", "-progress", "pipe:1"]);
    let (ok, out, err) = run_bounded(&mut cmd, Duration::from_secs(secs as u64 + 40));
    assert!(ok, "ffmpeg failed on {url}: {err}");
    let frames = out
        .lines()
        .filter_map(|l| l.strip_prefix("frame="))
        .filter_map(|v| v.trim().parse().ok())
        .next_back()
        .unwrap_or(0);
    (frames, err)
}

fn assert_clean(stderr: &str, what: &str) {
    let bad: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        bad.is_empty(),
        "{what}: ffmpeg complained:\n{}",
        bad.join("\n")
    );
}

/// A media playlist, parsed.
#[derive(Debug, Default)]
struct MediaPlaylist {
    target_duration: u64,
    media_sequence: u64,
    /// (uri, EXTINF seconds, has PDT, discontinuity before it)
    segments: Vec<(String, f64, Option<String>, bool)>,
}

fn parse_playlist(text: &str) -> MediaPlaylist {
    assert!(text.starts_with("#EXTM3U\n"), "{text}");
    let mut p = MediaPlaylist::default();
    let (mut dur, mut pdt, mut disc) = (None, None, false);
    for l in text.lines() {
        if let Some(v) = l.strip_prefix("#EXT-X-TARGETDURATION:") {
            p.target_duration = v.parse().unwrap();
        } else if let Some(v) = l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            p.media_sequence = v.parse().unwrap();
        } else if let Some(v) = l.strip_prefix("#EXTINF:") {
            dur = Some(v.trim_end_matches(',').parse::<f64>().unwrap());
        } else if let Some(v) = l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            pdt = Some(v.to_string());
        } else if l == "#EXT-X-DISCONTINUITY" {
            disc = true;
        } else if !l.starts_with('#') && !l.is_empty() {
            let d = dur
                .take()
                .unwrap_or_else(|| panic!("URI without EXTINF: {text}"));
            p.segments.push((l.to_string(), d, pdt.take(), disc));
            disc = false;
        }
    }
    p
}

fn seg_seq(uri: &str) -> u64 {
    uri.strip_prefix("seg")
        .and_then(|s| s.strip_suffix(".ts"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("segment URI {uri}"))
}

/// Transport-stream checks on consecutive segments joined: continuity counters per PID, PCR
/// present and increasing on the PCR PID (from the PMT), and (via ffprobe) PTS/DTS
/// monotonic per stream. Returns the number of packets per PID.
fn check_ts(ts: &[u8], dir: &Path) -> HashMap<u16, usize> {
    assert!(
        !ts.is_empty() && ts.len().is_multiple_of(188),
        "TS length {}",
        ts.len()
    );
    let mut cc: HashMap<u16, u8> = HashMap::new();
    let mut count: HashMap<u16, usize> = HashMap::new();
    let mut pcr_pid = None;
    let mut last_pcr: Option<u64> = None;
    let mut pcrs = 0;
    for (i, p) in ts.chunks(188).enumerate() {
        assert_eq!(p[0], 0x47, "sync byte of packet {i}");
        let pid = u16::from_be_bytes([p[1] & 0x1f, p[2]]);
        *count.entry(pid).or_default() += 1;
        let afc = (p[3] >> 4) & 3;
        let c = p[3] & 0xf;
        if afc & 1 == 1 {
            if let Some(prev) = cc.insert(pid, c) {
                assert_eq!(
                    c,
                    (prev + 1) & 0xf,
                    "continuity counter of PID {pid:#x} at packet {i}"
                );
            }
        }
        // PMT: program_info follows PCR_PID at byte 13 of a PMT section (pointer field 0).
        if pid == 0x1000 && p[1] & 0x40 != 0 {
            pcr_pid = Some(u16::from_be_bytes([p[13] & 0x1f, p[14]]));
        }
        if afc & 2 == 2 && p[4] > 0 && p[5] & 0x10 != 0 && Some(pid) == pcr_pid {
            let b = &p[6..12];
            let base = (u64::from(b[0]) << 25)
                | (u64::from(b[1]) << 17)
                | (u64::from(b[2]) << 9)
                | (u64::from(b[3]) << 1)
                | (u64::from(b[4]) >> 7);
            if let Some(l) = last_pcr {
                assert!(base > l, "PCR not increasing at packet {i}: {l} -> {base}");
            }
            last_pcr = Some(base);
            pcrs += 1;
        }
    }
    assert!(pcr_pid.is_some(), "no PMT");
    assert!(pcrs > 0, "no PCR on PID {pcr_pid:?}");
    require_tool("ffprobe");
    let f = dir.join("joined.ts");
    std::fs::write(&f, ts).unwrap();
    let (ok, out, err) = run_bounded(
        Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "packet=stream_index,pts,dts",
            ])
            .args(["-of", "compact=p=0:nk=0"])
            .arg(&f),
        Duration::from_secs(30),
    );
    assert!(ok && err.trim().is_empty(), "ffprobe on segments: {err}");
    let mut last: HashMap<String, (i64, i64)> = HashMap::new();
    let mut packets = 0;
    // Lines look like `stream_index=0|pts=180028|dts=180028|`; blank lines separate them.
    for l in out.lines().filter(|l| l.starts_with("stream_index=")) {
        let field = |k: &str| {
            l.split('|')
                .find_map(|f| f.strip_prefix(k))
                .unwrap_or_else(|| panic!("no {k} in {l}"))
        };
        let (Ok(pts), Ok(dts)) = (field("pts=").parse::<i64>(), field("dts=").parse::<i64>())
        else {
            panic!("packet without timestamps: {l}");
        };
        let v = [field("stream_index=")];
        if let Some((lp, ld)) = last.get(v[0]) {
            assert!(
                dts > *ld,
                "DTS not increasing in stream {}: {ld} -> {dts}",
                v[0]
            );
            assert!(
                pts > *lp || v[0] != "1",
                "audio PTS not increasing: {lp} -> {pts}"
            );
        }
        last.insert(v[0].to_string(), (pts, dts));
        packets += 1;
    }
    assert!(packets > 50, "only {packets} packets");
    count
}

#[test]
fn ffmpeg_decodes_h264_aac_and_segments_pass_ts_checks() {
    let d = Daemon::start("hls-h264", TESTSRC_SMALL);
    let pl = parse_playlist(&wait_playlist(&d, "live"));
    let url = format!("http://127.0.0.1:{}/live/index.m3u8", d.http_port);
    let (frames, err) = ffmpeg_decode_hls(&url, 10);
    assert_clean(&err, "H.264 HLS");
    assert!(
        (290..=310).contains(&frames),
        "{frames} frames for 10 s at 30 fps"
    );
    // ffprobe sees both tracks from the playlist.
    let (ok, out, err) = run_bounded(
        Command::new("ffprobe")
            .args(["-v", "error", "-show_entries"])
            .args([
                "stream=codec_name,width,height,sample_rate",
                "-of",
                "csv=p=0",
            ])
            .arg(&url),
        Duration::from_secs(30),
    );
    assert!(ok, "ffprobe: {err}");
    assert!(out.contains("h264,320,240"), "{out}");
    assert!(out.contains("aac,48000"), "{out}");
    // Consecutive listed segments, joined, pass the TS checks.
    let pl2 = parse_playlist(&get(d.http_port, "/live/index.m3u8").text());
    assert!(pl2.media_sequence > pl.media_sequence, "the window moved");
    let mut ts = Vec::new();
    for (uri, ..) in pl2.segments.iter().take(4) {
        let r = get(d.http_port, &format!("/live/{uri}"));
        assert_eq!(r.status, 200, "{uri}");
        ts.extend_from_slice(&r.body);
    }
    let counts = check_ts(&ts, &d.dir);
    assert!(counts.get(&0x100).copied().unwrap_or(0) > 100, "{counts:?}");
    assert!(counts.get(&0x101).copied().unwrap_or(0) > 50, "{counts:?}");
    // The multivariant playlist names the stream with its measured bandwidth and codecs.
    let m = get(d.http_port, "/master.m3u8");
    assert_eq!(m.status, 200);
    let t = m.text();
    assert!(t.contains("RESOLUTION=320x240"), "{t}");
    assert!(t.contains("CODECS=\"avc1.42c01e,mp4a.40.2\""), "{t}");
    assert!(t.contains("\nlive/index.m3u8\n"), "{t}");
    let bw: u64 = t
        .split("BANDWIDTH=")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!(bw > 100_000, "BANDWIDTH {bw}");
    assert!(d.log().contains("HLS"), "memory line mentions HLS");
}

/// H.265 from a file source, with AAC from an ADTS file input.
#[test]
fn ffmpeg_decodes_h265_aac() {
    require_tool("ffmpeg");
    let dir = temp_dir("hls-h265-src");
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
            .args(["-t", "4", "-c:v", "libx265"])
            .args(["-x265-params", "bframes=0:keyint=25:log-level=error"])
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
    let d = Daemon::start("hls-h265", &cfg);
    wait_playlist(&d, "cam");
    let url = format!("http://127.0.0.1:{}/cam/index.m3u8", d.http_port);
    let (frames, err) = ffmpeg_decode_hls(&url, 10);
    assert_clean(&err, "H.265 HLS");
    assert!(
        (240..=260).contains(&frames),
        "{frames} frames for 10 s at 25 fps"
    );
    let (ok, out, err) = run_bounded(
        Command::new("ffprobe")
            .args(["-v", "error", "-show_entries"])
            .args([
                "stream=codec_name,width,height,sample_rate",
                "-of",
                "csv=p=0",
            ])
            .arg(&url),
        Duration::from_secs(30),
    );
    assert!(ok, "ffprobe: {err}");
    assert!(out.contains("hevc,320,240"), "{out}");
    assert!(out.contains("aac,44100"), "{out}");
    let m = get(d.http_port, "/master.m3u8").text();
    assert!(m.contains("CODECS=\"hvc1."), "{m}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Over ≥ 30 s, with the encoder killed once: target duration covers every rounded EXTINF
/// and never changes, the media sequence only grows, every segment has a PDT, a
/// discontinuity follows the restart, and a segment that left the playlist stays
/// downloadable while the window moves by one more playlist length.
#[test]
fn playlist_rules_over_30_seconds_with_an_encoder_restart() {
    require_tool("ffmpeg");
    let cfg = r#"
[hls]
window = 3
segment_ms = 2000
[streams.cam.source]
kind = "exec"
format = "h264"
fps = 25.0
restart_min_ms = 300
command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-bf", "0", "-g", "25", "-flush_packets", "1", "-f", "h264", "-"]
"#;
    let d = Daemon::start("hls-rules", cfg);
    let first = parse_playlist(&wait_playlist(&d, "cam"));
    let window = 3u64;
    let td = first.target_duration;
    let start = Instant::now();
    let mut last_seq = first.media_sequence;
    let mut killed_at_seq = None;
    let mut discontinuity_after_kill = false;
    let mut retained_checks = 0;
    let mut pdts: HashMap<u64, String> = HashMap::new();
    while start.elapsed() < Duration::from_secs(32) || !discontinuity_after_kill {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no discontinuity seen after the restart"
        );
        let r = get(d.http_port, "/cam/index.m3u8");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("cache-control"), Some("no-cache"));
        let p = parse_playlist(&r.text());
        assert_eq!(p.target_duration, td, "EXT-X-TARGETDURATION changed");
        assert!(p.media_sequence >= last_seq, "media sequence went back");
        last_seq = p.media_sequence;
        assert!(!p.segments.is_empty() && p.segments.len() as u64 <= window);
        for (i, (uri, dur, pdt, disc)) in p.segments.iter().enumerate() {
            let seq = seg_seq(uri);
            assert_eq!(
                seq,
                p.media_sequence + i as u64,
                "sequence numbers are consecutive"
            );
            assert!(dur.round() as u64 <= td, "EXTINF {dur} > target {td}");
            let pdt = pdt.clone().unwrap_or_else(|| panic!("no PDT on {uri}"));
            // A segment's PDT never changes between playlists.
            assert_eq!(pdts.entry(seq).or_insert_with(|| pdt.clone()), &pdt);
            if *disc && killed_at_seq.is_some_and(|k| seq > k) {
                discontinuity_after_kill = true;
            }
        }
        // PDTs increase along the playlist (same format: string order is time order).
        assert!(p.segments.windows(2).all(|w| w[0].2 < w[1].2), "PDT order");
        // The segment that left the playlist `window` segments ago is still served.
        if p.media_sequence >= window {
            let old = p.media_sequence - window;
            let r = get(d.http_port, &format!("/cam/seg{old}.ts"));
            assert_eq!(
                r.status, 200,
                "seg{old} left the playlist less than a playlist ago"
            );
            assert!(!r.body.is_empty() && r.body[0] == 0x47);
            retained_checks += 1;
        }
        if killed_at_seq.is_none() && start.elapsed() > Duration::from_secs(10) {
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
            killed_at_seq = Some(p.segments.last().map_or(0, |s| seg_seq(&s.0)));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    // 2 s segments of two 1 s GOPs: arrival-time stamping on a loaded machine may shift a
    // keyframe by tens of ms, and the rounding rule must hold all the same.
    assert!(
        last_seq >= first.media_sequence + 12,
        "sequence {} → {last_seq} in 30 s",
        first.media_sequence
    );
    assert!(retained_checks > 20, "{retained_checks} retention checks");
    // Far older segments are gone: nothing is kept beyond the plan.
    assert_eq!(get(d.http_port, "/cam/seg0.ts").status, 404);
    assert!(d.log().matches("encoder started").count() >= 2);
}

/// A static file server for the test page (python3's http.server), killed on drop.
struct StaticServer(Child);

impl Drop for StaticServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn npm_ready(web: &Path) {
    require_tool("node");
    require_tool("npm");
    if web.join("node_modules/hls.js/dist/hls.min.js").exists()
        && web
            .join("node_modules/playwright-core/package.json")
            .exists()
    {
        return;
    }
    let (ok, out, err) = run_bounded(
        Command::new("npm")
            .args(["install", "--no-audit", "--no-fund"])
            .current_dir(web),
        Duration::from_secs(300),
    );
    assert!(
        ok,
        "npm install in tests/web failed (scripts/install-deps.sh does it too):\n{out}\n{err}"
    );
}

#[test]
fn hlsjs_plays_in_headless_chromium() {
    require_tool("chromium");
    require_tool("python3");
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web");
    npm_ready(&web);
    let d = Daemon::start("hls-hlsjs", TESTSRC_SMALL);
    wait_playlist(&d, "live");
    let page_port = free_port();
    let server = StaticServer(
        Command::new("python3")
            .args([
                "-m",
                "http.server",
                &page_port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .current_dir(&web)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m http.server"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", page_port)).is_err() {
        assert!(Instant::now() < deadline, "static server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Both playlists: the media playlist, and the multivariant one (level switching path).
    for playlist in ["live/index.m3u8", "master.m3u8"] {
        let page = format!(
            "http://127.0.0.1:{page_port}/hls-player.html?src=http://127.0.0.1:{}/{playlist}",
            d.http_port
        );
        let (ok, out, err) = run_bounded(
            Command::new("node")
                .arg("play-hls.mjs")
                .arg(&page)
                .args(["5", "45"])
                .current_dir(&web),
            Duration::from_secs(90),
        );
        assert!(ok, "hls.js did not play {playlist} 5 s:\n{out}\n{err}");
        assert!(out.contains("\"fatal\":null"), "{out}");
    }
    drop(server);
}

#[test]
fn http_limits_traversal_head_range_cors() {
    // The harness writes `[http] port/bind` last before `extra`: these keys land in [http].
    let cfg = format!(
        "max_connections = 8\nrequest_timeout_ms = 2000\nkeepalive_timeout_ms = 3000\n{TESTSRC_SMALL}"
    );
    let d = Daemon::start("hls-http", &cfg);
    let pl = parse_playlist(&wait_playlist(&d, "live"));
    let port = d.http_port;
    let seg = format!("/live/{}", pl.segments[0].0);

    // A planted file next to the daemon's config, and outside it: never served.
    let secret = "rillcast-secret-do-not-serve";
    std::fs::write(d.dir.join("secret.txt"), secret).unwrap();
    std::fs::write(d.dir.join("seg1.ts"), secret).unwrap();
    for path in [
        "/../secret.txt",
        "/live/../secret.txt",
        "/live/../../etc/passwd",
        "/%2e%2e/secret.txt",
        "/%2E%2E/%2E%2E/etc/passwd",
        "/live/%2e%2e/%2e%2e/etc/passwd",
        "/live%2f..%2f..%2fetc%2fpasswd",
        "/%252e%252e/secret.txt",
        "/live/..%5c..%5csecret.txt",
        "/live/..\\..\\secret.txt",
        "/live/seg1.ts%00",
        "/live/seg1.ts%00.m3u8",
        "/live/./seg1.ts",
        "//live/seg1.ts",
        "/secret.txt",
        "/seg1.ts",
        "/etc/passwd",
        "/live/seg-1.ts",
        "/live/seg1.ts.bak",
        "/nope/index.m3u8",
        "/live/index.m3u8/",
    ] {
        let r = get(port, path);
        assert_eq!(r.status, 404, "{path}");
        assert!(
            !r.text().contains(secret) && !r.text().contains("root:"),
            "{path}"
        );
    }
    // Raw bytes a client library would never send.
    let mut s = connect(port);
    s.write_all(b"GET /live/\x00seg1.ts HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s, false).unwrap();
    assert_eq!(r.status, 400);

    // Content-Type, Cache-Control, CORS.
    let r = get(port, "/live/index.m3u8");
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let full = get(port, &seg);
    assert_eq!(full.status, 200);
    assert_eq!(full.header("content-type"), Some("video/mp2t"));
    let cc = full.header("cache-control").unwrap();
    assert!(
        cc.starts_with("max-age=") && cc.ends_with(", immutable"),
        "{cc}"
    );
    assert_eq!(full.header("accept-ranges"), Some("bytes"));
    let len = full.body.len();
    assert_eq!(
        full.header("content-length"),
        Some(len.to_string().as_str())
    );
    let pre = request(
        port,
        "OPTIONS",
        &seg,
        &[
            ("Origin", "http://a"),
            ("Access-Control-Request-Method", "GET"),
        ],
    );
    assert_eq!(pre.status, 204);
    assert_eq!(pre.header("access-control-allow-origin"), Some("*"));
    assert!(pre
        .header("access-control-allow-methods")
        .unwrap()
        .contains("GET"));
    assert_eq!(request(port, "OPTIONS", "/elsewhere", &[]).status, 404);
    assert_eq!(request(port, "DELETE", &seg, &[]).status, 405);

    // HEAD: same headers, no body.
    let h = request(port, "HEAD", &seg, &[]);
    assert_eq!(h.status, 200);
    assert_eq!(h.header("content-length"), Some(len.to_string().as_str()));
    assert!(h.body.is_empty());

    // Range: one range → 206 with exactly those bytes; suffix; past the end → 416.
    let r = request(port, "GET", &seg, &[("Range", "bytes=188-375")]);
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 188-375/{len}").as_str())
    );
    assert_eq!(r.body, full.body[188..376]);
    let r = request(port, "GET", &seg, &[("Range", "bytes=-188")]);
    assert_eq!(
        (r.status, r.body.as_slice()),
        (206, &full.body[len - 188..])
    );
    let r = request(port, "GET", &seg, &[("Range", &format!("bytes={len}-"))]);
    assert_eq!(r.status, 416);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes */{len}").as_str())
    );

    // Keep-alive: three requests on one connection, then `Connection: close` ends it.
    let mut s = connect(port);
    for i in 0..3 {
        let close = if i == 2 { "Connection: close\r\n" } else { "" };
        s.write_all(format!("GET {seg} HTTP/1.1\r\nHost: x\r\n{close}\r\n").as_bytes())
            .unwrap();
        let r = read_response(&mut s, false).unwrap();
        assert_eq!((r.status, r.body.len()), (200, len));
        assert_eq!(
            r.header("connection"),
            Some(if i == 2 { "close" } else { "keep-alive" })
        );
    }
    let mut rest = Vec::new();
    assert_eq!(
        s.read_to_end(&mut rest).unwrap(),
        0,
        "closed after Connection: close"
    );

    // A 1 MiB header line: 431 and close, without reading the whole line.
    let mut s = connect(port);
    let _ = s.write_all(b"GET /live/index.m3u8 HTTP/1.1\r\nX-Big: ");
    let _ = s.write_all(&vec![b'a'; 1 << 20]); // may fail once the server closes: fine
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp);
    assert!(
        resp.starts_with("HTTP/1.1 431 "),
        "1 MiB header answered {resp:?}"
    );

    // Slowloris: one header byte every 250 ms is cut when the 2 s request timeout passes.
    let mut s = connect(port);
    let slow = b"GET /live/index.m3u8 HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut cut_after = None;
    for (i, b) in slow.iter().enumerate() {
        if s.write_all(&[*b]).is_err() {
            cut_after = Some(i);
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
        // A closed connection shows as EOF on a non-blocking peek.
        s.set_nonblocking(true).unwrap();
        let mut one = [0u8; 1];
        let closed = matches!(s.peek(&mut one), Ok(0));
        s.set_nonblocking(false).unwrap();
        if closed {
            cut_after = Some(i);
            break;
        }
    }
    let cut = cut_after.expect("the slow client was never cut off");
    assert!(
        cut < slow.len() - 1,
        "cut after {cut} bytes, before the head was complete"
    );

    // Connection cap (8): eight idle connections, the ninth gets 503; when they go, room again.
    let idle: Vec<TcpStream> = (0..8).map(|_| connect(port)).collect();
    std::thread::sleep(Duration::from_millis(300)); // let the server accept all eight
    let mut ninth = connect(port);
    let mut resp = Vec::new();
    let _ = ninth.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp);
    assert!(
        resp.starts_with("HTTP/1.1 503 "),
        "ninth connection got {resp:?}"
    );
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = connect(port);
        let _ =
            s.write_all(b"GET /live/index.m3u8 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        if read_response(&mut s, false).is_ok_and(|r| r.status == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no room after the idle connections closed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!d.log().contains("panicked"));
}

/// A stream with `streams.X.auth`: every HLS URL answers 401 (with a Basic challenge naming
/// the stream, no wildcard CORS) without its credentials; ffmpeg fails on it without them and
/// decodes it cleanly with `http://user:pass@…` (so it re-sends them for every segment, which
/// are protected too); a logged-in web session plays it by cookie (raw HTTP, and hls.js in
/// Chromium on the daemon's own page); `/master.m3u8` hides it from strangers.
#[test]
fn protected_stream_hls_needs_credentials_and_ffmpeg_plays_with_them() {
    let pw = "a long password";
    let cfg = format!(
        "password_hash = \"{}\"\n{TESTSRC_SMALL}\n[streams.live.auth]\nuser = \"cam\"\npassword = \"s3cret\"\n",
        rillcast::web::auth::hash_password_with(pw, &[7; 16], 4, 8, 1)
    );
    let d = Daemon::start("hls-auth", &cfg);
    let port = d.http_port;
    // base64("cam:s3cret") and base64("cam:wrong").
    let basic = ("Authorization", "Basic Y2FtOnMzY3JldA==");
    let wrong = ("Authorization", "Basic Y2FtOndyb25n");
    let deadline = Instant::now() + Duration::from_secs(30);
    let pl = loop {
        let r = request(port, "GET", "/live/index.m3u8", &[basic]);
        if r.status == 200 {
            break parse_playlist(&r.text());
        }
        assert!(
            Instant::now() < deadline,
            "no playlist within 30 s (last {}); log:\n{}",
            r.status,
            d.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let seg = format!("/live/{}", pl.segments[0].0);
    // Program date-time is today's wall clock: the newest segment started within its own
    // duration plus a little of now (it was 1 h ahead while PDT came from the daemon epoch).
    let (_, dur_s, pdt, _) = pl.segments.last().unwrap();
    let pdt_ms = unix_ms_of_pdt(pdt.as_deref().expect("every segment has a PDT"));
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let age_ms = now_ms as i64 - pdt_ms as i64;
    assert!(
        age_ms > 0 && age_ms < (*dur_s * 1000.0) as i64 + 5_000,
        "PDT {pdt:?} is {age_ms} ms before now"
    );

    // Strangers: 401 on every URL and method that reads, with the challenge and no CORS.
    for (method, path, hdrs) in [
        ("GET", "/live/index.m3u8", &[][..]),
        ("HEAD", "/live/index.m3u8", &[][..]),
        ("GET", seg.as_str(), &[][..]),
        ("HEAD", seg.as_str(), &[][..]),
        ("GET", seg.as_str(), &[("Range", "bytes=0-187")][..]),
        ("GET", "/live/seg999999.ts", &[][..]),
        ("GET", "/live/index.m3u8", &[wrong][..]),
        ("GET", seg.as_str(), &[wrong][..]),
        (
            "GET",
            seg.as_str(),
            &[("Cookie", "rillcast_session=forged")][..],
        ),
        ("GET", "/master.m3u8", &[][..]),
    ] {
        let r = request(port, method, path, hdrs);
        assert_eq!(r.status, 401, "{method} {path} {hdrs:?}");
        let want = if path == "/master.m3u8" {
            "Basic realm=\"rillcast/master\""
        } else {
            "Basic realm=\"rillcast/live\""
        };
        assert_eq!(r.header("www-authenticate"), Some(want), "{method} {path}");
        assert_eq!(r.header("access-control-allow-origin"), None, "{path}");
        assert!(r.body.len() < 100 && !r.text().contains("#EXT"), "{path}");
    }
    // A cross-origin preflight gets nothing that would let another page read the stream.
    let pre = request(
        port,
        "OPTIONS",
        &seg,
        &[
            ("Origin", "http://evil.example"),
            ("Access-Control-Request-Method", "GET"),
        ],
    );
    assert_eq!(pre.header("access-control-allow-origin"), None);

    // Basic with the stream's user and password: served, same-origin only, never shared-cached.
    let r = request(port, "GET", "/live/index.m3u8", &[basic]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);
    assert_eq!(r.header("cache-control"), Some("private, no-cache"));
    let s = request(port, "GET", &seg, &[basic]);
    assert_eq!(s.status, 200);
    assert_eq!(s.body.first(), Some(&0x47));
    assert!(s.header("cache-control").unwrap().starts_with("private, "));
    let m = request(port, "GET", "/master.m3u8", &[basic]);
    assert_eq!(m.status, 200);
    assert!(m.text().contains("\nlive/index.m3u8\n"), "{}", m.text());

    // ffmpeg without credentials fails on the 401; with them in the URL it decodes, clean.
    require_tool("ffmpeg");
    let plain = format!("http://127.0.0.1:{port}/live/index.m3u8");
    let (ok, _, err) = run_bounded(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-v", "warning", "-i", &plain])
            .args(["-t", "1", "-f", "null", "-"]),
        Duration::from_secs(30),
    );
    assert!(!ok, "ffmpeg played a protected stream without credentials");
    assert!(err.contains("401"), "ffmpeg's error names the 401: {err}");
    let url = format!("http://cam:s3cret@127.0.0.1:{port}/live/index.m3u8");
    let (frames, err) = ffmpeg_decode_hls(&url, 5);
    assert_clean(&err, "protected HLS with credentials");
    assert!(
        (140..=160).contains(&frames),
        "{frames} frames for 5 s at 30 fps"
    );
    let wrong_url = format!("http://cam:nope@127.0.0.1:{port}/live/index.m3u8");
    let (ok, _, err) = run_bounded(
        Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-nostdin",
                "-v",
                "warning",
                "-i",
                &wrong_url,
            ])
            .args(["-t", "1", "-f", "null", "-"]),
        Duration::from_secs(30),
    );
    assert!(!ok && err.contains("401"), "wrong password: {err}");

    // The page's logged-in user: the session cookie opens the playlist and segments.
    let body = format!("{{\"password\":\"{pw}\"}}");
    let mut c = connect(port);
    c.write_all(
        format!(
            "POST /api/v1/login HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let login = read_response(&mut c, false).unwrap();
    assert_eq!(login.status, 200, "login: {}", login.text());
    let cookie = login
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .expect("Set-Cookie")
        .to_string();
    let pl =
        parse_playlist(&request(port, "GET", "/live/index.m3u8", &[("Cookie", &cookie)]).text());
    let last = pl.segments.last().expect("a listed segment");
    let r = request(
        port,
        "GET",
        &format!("/live/{}", last.0),
        &[("Cookie", &cookie)],
    );
    assert_eq!(r.status, 200);
    // The cookie counts only with a Host the web API accepts (DNS-rebinding guard).
    let mut c = connect(port);
    c.write_all(
        format!(
            "GET /live/index.m3u8 HTTP/1.1\r\nHost: evil.example\r\nCookie: {cookie}\r\n\
             Connection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(read_response(&mut c, false).unwrap().status, 401);

    // hls.js in Chromium on the daemon's own page: refused before logging in, plays after,
    // with nothing but the session cookie the browser keeps (same-origin).
    require_tool("chromium");
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web");
    npm_ready(&web);
    let (ok, out, err) = run_bounded(
        Command::new("node")
            .arg("play-hls-session.mjs")
            .arg(format!("http://127.0.0.1:{port}"))
            .args(["/live/index.m3u8", pw, "4", "40"])
            .current_dir(&web),
        Duration::from_secs(120),
    );
    assert!(ok, "hls.js with a web session:\n{out}\n{err}");
    assert!(!d.log().contains("panicked"), "{}", d.log());
}

/// The Unix ms of an `EXT-X-PROGRAM-DATE-TIME` value as the daemon writes it, found by binary
/// search over the crate's own formatter (fixed-width ISO 8601 sorts like time).
fn unix_ms_of_pdt(pdt: &str) -> u64 {
    let fmt = |t: u64| {
        let mut s = String::new();
        rillcast::proto::hls::write_iso8601_utc_ms(&mut s, t);
        s
    };
    let (mut lo, mut hi) = (0u64, 1u64 << 45);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if fmt(mid).as_str() < pdt {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    assert_eq!(fmt(lo), pdt, "not a PDT the daemon writes");
    lo
}

//! Fuzz harnesses over whole request paths, shared by the cargo-fuzz targets in `fuzz/` and by
//! bounded random-input tests in the normal suite (so a harness that stops compiling, or an
//! invariant that stops holding, fails `cargo test` too).
//!
//! Owns: [`http_request_path`] (bytes → [`parse_head`] → body cap → [`route_request`]: the HLS
//! routes with [`MediaAuth`] and the web API with its Host check, sessions, CSRF and JSON
//! validation → [`frame_response`] → body reads) and [`rtsp_connection`] (bytes → RTSP framing
//! → [`RtspConn::handle_request`], request after request, with invariants checked after each
//! step). Both build their fixtures from nothing for every input, so a crash reproduces from
//! its input alone. Must not: open sockets or files (the API runs without a config file and
//! with a fake runtime), or read the clock.
//!
//! Invariants panic on purpose: that is how a fuzzer reports them. Nothing here runs in the
//! daemon.

use crate::config::Config;
use crate::media::fanout::{FrameCursor, StreamHub};
use crate::media::ring::MediaRing;
use crate::media::{AudioParams, Codec, FrameMeta, Track};
use crate::net::hls::{HlsHandler, HlsStream, HlsStreamConfig, WallClock};
use crate::net::http::{
    body_cap, frame_response, parse_head, route_request, HttpBody, HttpHandler, MAX_HEADERS,
};
use crate::net::media_auth::MediaAuth;
use crate::proto::hls::HlsConfig;
use crate::proto::rtsp::request::{parse, Parsed};
use crate::proto::rtsp::session::{RtspConn, SessionEvent, StreamCatalog, TrackTransport};
use crate::proto::rtsp::Credentials;
use crate::web::api::{ChangePlan, Clock, Runtime, WebApi, WebOptions};
use crate::web::metrics::ServerCounters;
use crate::web::status::{Status, StreamStatus};
use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

/// The web password of the HTTP fixture.
pub const WEB_PASSWORD: &str = "fuzzing password";
/// `Authorization` for the protected stream `cam` (user `viewer`, password `s3cret`).
pub const CAM_BASIC: &str = "Basic dmlld2VyOnMzY3JldA==";

struct FakeRuntime;

impl Runtime for FakeRuntime {
    fn status(&self, cfg: &Config, _now_ms: u64) -> Status {
        Status {
            version: "fuzz",
            streams: cfg
                .streams
                .keys()
                .map(|n| StreamStatus {
                    name: n.clone(),
                    live: true,
                    rtsp_path: format!("/{n}"),
                    ..Default::default()
                })
                .collect(),
            rtsp_port: 8554,
            http_port: 8080,
            ..Default::default()
        }
    }
    fn kick_viewer(&self, _id: &str) -> bool {
        false
    }
    fn restart_source(&self, stream: &str, cfg: &Config) -> bool {
        cfg.streams.contains_key(stream)
    }
    fn apply(&self, _plan: &ChangePlan, _new: &Config) {}
    fn counters(&self) -> ServerCounters {
        ServerCounters::default()
    }
}

struct StepClock(Rc<Cell<u64>>);

impl Clock for StepClock {
    fn now_ms(&self) -> u64 {
        self.0.get()
    }
    fn unix_ms(&self) -> u64 {
        1_735_689_600_000 + self.0.get()
    }
}

/// Baseline SPS/PPS of the test source (320x240).
fn video_params() -> crate::media::VideoParams {
    crate::ingest::source::video_params(
        Codec::H264,
        &[],
        &[0x67, 0x42, 0xc0, 0x1f, 0xda, 0x05, 0x07, 0xe8, 0x40],
        &[0x68, 0xce, 0x3c, 0x80],
    )
}

/// A live HLS stream with a few complete segments (kept alive by the returned hub).
fn hls_stream(name: &str) -> (StreamHub, Arc<Mutex<HlsStream>>) {
    let mut hub = StreamHub::new(name, MediaRing::new(64 << 10, 256), 2);
    let cursor = FrameCursor::start(&hub.ring, [true, true], 32 << 10);
    let wall: WallClock = Box::new(|| 1_735_689_600_000);
    let s = Arc::new(Mutex::new(HlsStream::new(
        HlsStreamConfig {
            name: name.into(),
            segmenter: HlsConfig {
                target_duration_ms: 1000,
                window_segments: 2,
                arena_len_bytes: 64 << 10,
                max_segments: 5,
            },
            expect_audio: true,
            max_bitrate_bps: 1_000_000,
        },
        cursor,
        wall,
    )));
    // A slot is free in a fresh hub.
    let _ = hub.add_consumer(s.clone());
    hub.set_video_params(video_params());
    hub.set_audio_params(AudioParams {
        object_type: 2,
        sample_rate_index: 3,
        sample_rate: 48_000,
        channels: 1,
    });
    for i in 0..45u64 {
        let meta = FrameMeta {
            track: Track::Video,
            pts: i * 9000,
            dts: i * 9000,
            keyframe: i % 10 == 0,
        };
        let _ = hub.publish(meta, &[0, 0, 0, 4, 0x65, 1, 2, 3], i * 100);
        let a = FrameMeta {
            track: Track::Audio,
            pts: i * 4800,
            dts: i * 4800,
            keyframe: true,
        };
        let _ = hub.publish(a, &[0x21, 0x10, 0x04], i * 100);
    }
    (hub, s)
}

/// Feeds `data` to the HTTP server's request path as the server would, request after request.
///
/// The first byte picks what the harness adds after each request line: bit 0 a valid session
/// cookie, bit 1 valid Basic credentials for `cam`, bit 2 the session's CSRF token, bit 3 a
/// `Host: camera`. The rest is the raw bytes of one or more pipelined requests. Returns the
/// statuses answered.
pub fn http_request_path(data: &[u8]) -> Vec<u16> {
    let mut statuses = Vec::new();
    let Some((&flags, raw)) = data.split_first() else {
        return statuses;
    };
    let salt = [9u8; 16];
    let hash = crate::web::auth::hash_password_with(WEB_PASSWORD, &salt, 4, 8, 1);
    let text = format!(
        "[http]\npassword_hash = \"{hash}\"\nallowed_hosts = [\"*.home.arpa\"]\n\
         [streams.live.source]\nkind = \"testsrc\"\n\
         [streams.cam.source]\nkind = \"testsrc\"\n\
         [streams.cam.auth]\nuser = \"viewer\"\npassword = \"s3cret\"\n"
    );
    let cfg = match Config::parse(&text, "fuzz.toml") {
        Ok(c) => c,
        Err(e) => panic!("the fixture config must parse: {e}"),
    };
    let now = Rc::new(Cell::new(1_000u64));
    let mut counter = 0u8;
    let web = Rc::new(WebApi::new(
        cfg.clone(),
        FakeRuntime,
        StepClock(now.clone()),
        WebOptions {
            config_path: None,
            last_good_path: None,
            board: crate::boot::Limits::default(),
            own_names: vec!["camera".into()],
            random: Box::new(move |b: &mut [u8]| {
                for x in b {
                    counter = counter.wrapping_add(1);
                    *x = counter;
                }
            }),
            scrypt_log_n: 4,
        },
    ));
    let auth = Rc::new(MediaAuth::new(
        cfg.streams
            .iter()
            .map(|(n, s)| (n.as_str(), s.auth.as_ref())),
    ));
    let weak = Rc::downgrade(&web);
    auth.set_session_check(Box::new(move |r| {
        weak.upgrade().is_some_and(|w| w.session_valid(r))
    }));
    let (_live_hub, live) = hls_stream("live");
    let (_cam_hub, cam) = hls_stream("cam");
    let handlers: Vec<Rc<dyn HttpHandler>> =
        vec![Rc::new(HlsHandler::new(vec![live, cam], auth)), web.clone()];
    let peer: SocketAddr = ([192, 168, 1, 20], 40_000).into();

    // Log in, as the page would: the cookie and CSRF token the flags may add.
    let body = format!("{{\"password\":\"{WEB_PASSWORD}\"}}");
    let login = format!(
        "POST /api/v1/login HTTP/1.1\r\nHost: camera\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (cookie, csrf) = match route_request(&handlers, login.as_bytes(), peer) {
        Some(r) => session_of(&r.response),
        None => (String::new(), String::new()),
    };
    let mut extra = String::new();
    if flags & 1 != 0 {
        extra.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    if flags & 2 != 0 {
        extra.push_str(&format!("Authorization: {CAM_BASIC}\r\n"));
    }
    if flags & 4 != 0 {
        extra.push_str(&format!("X-CSRF-Token: {csrf}\r\n"));
    }
    if flags & 8 != 0 {
        extra.push_str("Host: camera\r\n");
    }
    // The raw bytes alone can hold credentials only if the fuzzer found them.
    let raw_has_creds = contains(raw, CAM_BASIC.as_bytes())
        || (!cookie.is_empty() && contains(raw, cookie.as_bytes()));
    let granted = flags & 3 != 0 || raw_has_creds;

    let mut out = Vec::with_capacity(512);
    let mut chunk = vec![0u8; 4096];
    let mut rest = raw;
    for _ in 0..8 {
        // Insert the extra fields after the request line, as a client would have sent them.
        let mut buf = Vec::with_capacity(rest.len() + extra.len());
        let inserted = match rest.iter().position(|&b| b == b'\n') {
            Some(nl) if !extra.is_empty() => {
                buf.extend_from_slice(&rest[..=nl]);
                buf.extend_from_slice(extra.as_bytes());
                buf.extend_from_slice(&rest[nl + 1..]);
                extra.len()
            }
            _ => {
                buf.extend_from_slice(rest);
                0
            }
        };
        let mut fields = [("", ""); MAX_HEADERS];
        let (head_len, total, path_is_cam) = match parse_head(&buf, &mut fields) {
            Ok(Some(h)) => {
                if h.content_length > body_cap(&handlers, h.path) {
                    return statuses; // 413, connection closed
                }
                let total = h.head_len.saturating_add(h.content_length);
                if total > buf.len() {
                    return statuses; // waits for the body, then times out
                }
                (h.head_len, total, h.path.starts_with("/cam/"))
            }
            Ok(None) | Err(_) => return statuses, // more bytes, or an error status and close
        };
        assert!(head_len <= total && total <= buf.len());
        let Some(routed) = route_request(&handlers, &buf[..total], peer) else {
            panic!("a head that parsed must route");
        };
        let mut resp = routed.response;
        let (span, _keep) = frame_response(&mut resp, routed.range.as_deref(), true, &mut out);
        check_response_head(&out, resp.status);
        statuses.push(resp.status);
        if path_is_cam {
            let head = String::from_utf8_lossy(&out).to_ascii_lowercase();
            assert!(
                !head.contains("access-control-allow-origin: *"),
                "wildcard CORS on a protected stream"
            );
            if (200..300).contains(&resp.status) && resp.status != 204 {
                assert!(granted, "protected media served without credentials");
            }
        }
        assert!(span.0 <= span.1, "span {span:?}");
        match &resp.body {
            HttpBody::Bytes(b) => assert!(span.1 <= b.len()),
            HttpBody::Static(b) => assert!(span.1 <= b.len()),
            HttpBody::Reader { len, reader } => {
                assert!(span.1 <= *len);
                let mut off = span.0;
                while off < span.1 {
                    let want = (span.1 - off).min(chunk.len());
                    match reader.read_at(off, &mut chunk[..want]) {
                        Some(n) if n > 0 => {
                            assert!(n <= want);
                            off += n;
                        }
                        _ => break,
                    }
                }
            }
            HttpBody::Events(_) | HttpBody::Upgrade(_) | HttpBody::Empty => {}
        }
        if let HttpBody::Events(mut src) = resp.body {
            let mut ev = Vec::new();
            for _ in 0..3 {
                ev.clear();
                let _ = src.poll_event(&mut ev);
            }
        }
        now.set(now.get() + 250);
        // The harness inserted `extra` into this request: skip its bytes in `rest`.
        let consumed = total.saturating_sub(inserted);
        if consumed == 0 || consumed > rest.len() {
            break;
        }
        rest = &rest[consumed..];
    }
    statuses
}

fn session_of(r: &crate::net::http::HttpResponse) -> (String, String) {
    let cookie = r
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .and_then(|(_, v)| v.split(';').next())
        .unwrap_or("")
        .to_string();
    let csrf = match &r.body {
        HttpBody::Bytes(b) => serde_json::from_slice::<serde_json::Value>(b)
            .ok()
            .and_then(|v| v["csrf"].as_str().map(str::to_string))
            .unwrap_or_default(),
        _ => String::new(),
    };
    (cookie, csrf)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// A response head: a status line with the status, CRLF lines only, one empty line at the end.
fn check_response_head(out: &[u8], status: u16) {
    assert!((100..600).contains(&status), "status {status}");
    let prefix = format!("HTTP/1.1 {status} ");
    assert!(out.starts_with(prefix.as_bytes()), "status line");
    assert!(out.ends_with(b"\r\n\r\n"), "head end");
    let end = out.len() - 4;
    assert!(
        !out[..end].windows(4).any(|w| w == b"\r\n\r\n"),
        "an empty line inside the head (response splitting)"
    );
    for (i, &b) in out.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && out[i - 1] == b'\r', "bare LF in the head");
        }
        if b == b'\r' {
            assert_eq!(out.get(i + 1), Some(&b'\n'), "bare CR in the head");
        }
    }
}

/// Two streams: `live` (video + audio, open) and `cam` (video only, Basic + Digest).
struct FakeCatalog {
    slots: Cell<u32>,
}

impl StreamCatalog for FakeCatalog {
    fn sdp(&self, stream: &str) -> Option<String> {
        match stream {
            "live" => Some(
                "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=live\r\nt=0 0\r\n\
                 m=video 0 RTP/AVP 96\r\na=control:trackID=0\r\n\
                 m=audio 0 RTP/AVP 97\r\na=control:trackID=1\r\n"
                    .into(),
            ),
            "cam" => Some(
                "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=cam\r\nt=0 0\r\n\
                 m=video 0 RTP/AVP 96\r\na=control:trackID=0\r\n"
                    .into(),
            ),
            _ => None,
        }
    }
    fn credentials(&self, stream: &str) -> Option<Credentials> {
        (stream == "cam").then(|| Credentials {
            user: "viewer".into(),
            password: "s3cret".into(),
            allow_basic: true,
        })
    }
    fn has_track(&self, stream: &str, track: Track) -> bool {
        matches!((stream, track), ("live", _) | ("cam", Track::Video))
    }
    fn play_start_pts(&self, _stream: &str, _track: Track) -> Option<u64> {
        Some(123_456)
    }
    fn viewer_slot_available(&self, _stream: &str) -> bool {
        self.slots.get() > 0
    }
}

/// Feeds `data` to one RTSP connection's state machine: the first 8 bytes seed it, the rest
/// is what the client sent (requests and interleaved `$` frames), framed as the server does.
/// `{SID}` in the bytes becomes the session id once there is one (a fuzzer cannot guess it).
/// Invariants are checked after every step. Returns the statuses answered and whether a PLAY
/// started sending.
pub fn rtsp_connection(data: &[u8]) -> (Vec<u16>, bool) {
    let mut statuses = Vec::new();
    let mut played = false;
    let (seed, raw) = match data.split_first_chunk::<8>() {
        Some((s, r)) => (u64::from_le_bytes(*s), r),
        None => (0, data),
    };
    let peer: SocketAddr = ([192, 168, 1, 30], 50_000).into();
    let mut conn = RtspConn::new(peer, (6970, 6971), 60, seed);
    let catalog = FakeCatalog {
        slots: Cell::new(u32::from(seed as u8 % 3)),
    };
    let has_auth = contains(&raw.to_ascii_lowercase(), b"authorization");
    let mut out = Vec::with_capacity(1024);
    let mut now_ms = 0u64;
    let mut pending = raw.to_vec();
    let mut sid_replaced = false;
    for _ in 0..64 {
        if let (Some(id), false) = (conn.session_id(), sid_replaced) {
            pending = replace_all(&pending, b"{SID}", id.as_bytes());
            sid_replaced = true;
        }
        let rest = pending.as_slice();
        let consumed = match parse(rest) {
            Ok(Parsed::Request { req, consumed }) => {
                out.clear();
                now_ms += u64::from(consumed as u8) * 10;
                let event = conn.handle_request(&req, now_ms, &catalog, &mut out);
                statuses.push(check_rtsp_reply(&out));
                match event {
                    Some(SessionEvent::Setup { track }) => {
                        assert!(conn.tracks().any(|(t, _)| t == track), "set-up track");
                        catalog.slots.set(catalog.slots.get().saturating_sub(1));
                    }
                    Some(SessionEvent::Play) => {
                        assert!(conn.is_playing(), "play");
                        played = true;
                    }
                    Some(SessionEvent::Teardown) | Some(SessionEvent::Pause) => {
                        assert!(!conn.is_playing(), "stopped")
                    }
                    None => {}
                }
                consumed
            }
            Ok(Parsed::Interleaved { consumed, .. }) => {
                now_ms += 5;
                conn.note_activity(now_ms);
                consumed
            }
            Ok(Parsed::Incomplete) | Err(_) => break,
        };
        check_rtsp_conn(&conn, peer, has_auth);
        let _ = conn.is_expired(now_ms.saturating_add(61_000));
        let first = conn.tracks().next().map(|(t, s)| (t, s.next_seq));
        if let Some((t, s)) = first {
            conn.set_next_seq(t, s.wrapping_add(1));
        }
        if consumed == 0 || consumed > pending.len() {
            break;
        }
        pending.drain(..consumed);
    }
    (statuses, played)
}

fn replace_all(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay.get(i..i + from.len()) == Some(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// Checks one reply's framing; returns its status.
fn check_rtsp_reply(out: &[u8]) -> u16 {
    assert!(out.starts_with(b"RTSP/1.0 "), "status line");
    let code = out.get(9..12).unwrap_or_default();
    assert!(
        code.len() == 3 && code.iter().all(u8::is_ascii_digit),
        "status code"
    );
    let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") else {
        panic!("an RTSP reply without the end of its head");
    };
    let head = &out[..end];
    for (i, &b) in head.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && head[i - 1] == b'\r', "bare LF in the reply head");
        }
    }
    let body_len = out.len() - end - 4;
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    let declared = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    assert_eq!(declared, body_len, "Content-Length");
    code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'))
}

fn check_rtsp_conn(conn: &RtspConn, peer: SocketAddr, has_auth: bool) {
    let tracks: Vec<_> = conn.tracks().collect();
    if conn.is_playing() {
        assert!(conn.session_id().is_some() && !tracks.is_empty(), "playing");
    }
    if !tracks.is_empty() {
        assert!(
            conn.stream().is_some() && conn.session_id().is_some(),
            "session"
        );
    }
    if conn.stream() == Some("cam") {
        assert!(has_auth, "a protected stream set up without credentials");
    }
    let mut channels = Vec::new();
    for (_, s) in &tracks {
        match s.transport {
            TrackTransport::Udp {
                client_rtp,
                client_rtcp,
            } => {
                assert_eq!(client_rtp.ip(), peer.ip(), "UDP only to the peer");
                assert_eq!(client_rtcp.ip(), peer.ip(), "UDP only to the peer");
            }
            TrackTransport::Interleaved {
                rtp_channel,
                rtcp_channel,
            } => {
                assert_ne!(rtp_channel, rtcp_channel, "channels");
                channels.push(rtp_channel);
                channels.push(rtcp_channel);
            }
        }
    }
    let n = channels.len();
    channels.sort_unstable();
    channels.dedup();
    assert_eq!(
        channels.len(),
        n,
        "interleaved channels shared between tracks"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xorshift(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    /// Mutations of real requests (and noise) through the whole HTTP path.
    #[test]
    fn http_request_path_survives_mutated_requests() {
        let seeds: &[&[u8]] = &[
            b"GET /cam/index.m3u8 HTTP/1.1\r\nHost: camera\r\n\r\n",
            b"GET /cam/seg1.ts HTTP/1.1\r\nRange: bytes=0-99\r\n\r\nHEAD /live/seg2.ts HTTP/1.1\r\n\r\n",
            b"GET /master.m3u8 HTTP/1.1\r\nAuthorization: Basic dmlld2VyOnMzY3JldA==\r\n\r\n",
            b"OPTIONS /cam/seg0.ts HTTP/1.1\r\nOrigin: http://evil\r\n\r\n",
            b"GET /api/v1/config HTTP/1.1\r\n\r\n",
            b"PUT /api/v1/config HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"hls\":{\"a\"}",
            b"POST /api/v1/login HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"password\":1}",
            b"GET /api/v1/events HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\n\r\n",
            b"GET /%2e%2e/cam/index.m3u8 HTTP/1.1\r\n\r\n",
            // UTF-8 in Host against the `*.home.arpa` pattern (a str cut inside a character).
            "GET /api/v1/session HTTP/1.1\r\nHost: a\u{e9}12345678\r\n\r\n".as_bytes(),
        ];
        let mut seen = std::collections::BTreeSet::new();
        let mut x = 0x1234_5678_9abc_def1u64;
        for round in 0..1500 {
            let base = seeds[round % seeds.len()];
            let mut v = vec![(round / seeds.len()) as u8 & 0x0f];
            v.extend_from_slice(base);
            for _ in 0..(round / seeds.len()) % 5 {
                let r = xorshift(&mut x);
                let i = 1 + (r as usize) % (v.len() - 1);
                v[i] = (r >> 32) as u8;
            }
            seen.extend(http_request_path(&v));
        }
        // The mutations reach every kind of answer, not just the parser's refusals.
        for s in [200, 204, 206, 400, 401, 403, 404] {
            assert!(seen.contains(&s), "{s} never answered: {seen:?}");
        }
    }

    /// The flags add working credentials; without them the protected stream is 401.
    #[test]
    fn http_harness_credentials_flags() {
        let get = b"GET /cam/index.m3u8 HTTP/1.1\r\n\r\n";
        let with = |flags: u8| {
            let mut v = vec![flags];
            v.extend_from_slice(get);
            http_request_path(&v)
        };
        assert_eq!(with(0), [401]);
        assert_eq!(with(2), [200], "Basic");
        assert_eq!(with(1 | 8), [200], "session cookie with an accepted Host");
        assert_eq!(with(1), [401], "a session cookie needs an accepted Host");
        assert_eq!(with(8), [401]);
    }

    /// Found by the fuzzer: the first track took `interleaved=3-1`; the second, with no
    /// channels asked, was given 2-3 and shared channel 3 with it.
    #[test]
    fn rtsp_interleaved_channels_never_shared() {
        let mut v = 1u64.to_le_bytes().to_vec();
        v.extend_from_slice(
            b"SETUP rtsp://h/live/trackID=0 RTSP/1.0\r\nCSeq: 3\r\n\
              Transport: RTP/AVP/TCP;unicast;interleaved=3-1\r\n\r\n\
              SETUP rtsp://h/live/trackID=1 RTSP/1.0\r\nCSeq: 4\r\nSession: {SID}\r\n\
              Transport: RTP/AVP/TCP;unicast\r\n\r\n",
        );
        assert_eq!(rtsp_connection(&v).0, [200, 200]);
    }

    #[test]
    fn rtsp_connection_survives_request_sequences() {
        let steps: &[&[u8]] = &[
            b"OPTIONS rtsp://h/live RTSP/1.0\r\nCSeq: 1\r\n\r\n",
            b"DESCRIBE rtsp://h/live RTSP/1.0\r\nCSeq: 2\r\n\r\n",
            b"SETUP rtsp://h/live/trackID=0 RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n",
            b"SETUP rtsp://h/live/trackID=1 RTSP/1.0\r\nCSeq: 4\r\nTransport: RTP/AVP;unicast;client_port=5000-5001\r\n\r\n",
            b"PLAY rtsp://h/live RTSP/1.0\r\nCSeq: 5\r\nSession: {SID}\r\n\r\n",
            b"$\x01\x00\x04abcd",
            b"PAUSE rtsp://h/live RTSP/1.0\r\nCSeq: 6\r\nSession: {SID}\r\n\r\n",
            b"DESCRIBE rtsp://h/cam RTSP/1.0\r\nCSeq: 7\r\nAuthorization: Basic dmlld2VyOnMzY3JldA==\r\n\r\n",
            b"SETUP rtsp://h/cam RTSP/1.0\r\nCSeq: 8\r\nTransport: RTP/AVP/TCP;interleaved=2-3\r\n\r\n",
            b"TEARDOWN rtsp://h/live RTSP/1.0\r\nCSeq: 9\r\nSession: {SID}\r\n\r\n",
            b"GET_PARAMETER rtsp://h/live RTSP/1.0\r\nCSeq: 10\r\nContent-Length: 2\r\n\r\nab",
        ];
        let mut seen = std::collections::BTreeSet::new();
        let mut plays = 0;
        let mut x = 0x0bad_cafe_f00d_1234u64;
        for round in 0..1500u64 {
            let mut v = round.to_le_bytes().to_vec();
            if round % 2 == 0 {
                // The session in order (ffmpeg's sequence), then anything.
                for s in steps {
                    v.extend_from_slice(s);
                }
            }
            for _ in 0..(1 + xorshift(&mut x) % 8) {
                let s = steps[(xorshift(&mut x) as usize) % steps.len()];
                v.extend_from_slice(s);
            }
            for _ in 0..(round % 4) {
                let r = xorshift(&mut x);
                let i = 8 + (r as usize) % (v.len() - 8);
                v[i] = (r >> 32) as u8;
            }
            let (st, played) = rtsp_connection(&v);
            seen.extend(st);
            plays += usize::from(played);
        }
        assert!(plays > 10, "PLAY reached {plays} times");
        for s in [200, 400, 401, 454, 455, 461] {
            assert!(seen.contains(&s), "{s} never answered: {seen:?}");
        }
    }
}

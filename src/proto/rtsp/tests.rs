//! Scenario tests of the connection state machine, against a catalog with one stream.

use super::*;
use crate::proto::rtsp::request::{parse, Parsed};
use crate::proto::rtsp::throttle::AuthThrottle;
use std::cell::{Cell, RefCell};

struct Catalog {
    creds: Option<Credentials>,
    throttle: RefCell<AuthThrottle>,
    failures: Cell<u32>,
}

impl Catalog {
    fn open() -> Self {
        Catalog {
            creds: None,
            throttle: RefCell::new(AuthThrottle::new(3, 30_000)),
            failures: Cell::new(0),
        }
    }

    fn protected() -> Self {
        Catalog {
            creds: Some(Credentials {
                user: "u".into(),
                password: "secret".into(),
                allow_basic: true,
            }),
            ..Catalog::open()
        }
    }
}

impl StreamCatalog for Catalog {
    fn sdp(&self, stream: &str) -> Option<String> {
        (stream == "live").then(|| "v=0\r\n".to_string())
    }
    fn credentials(&self, _stream: &str) -> Option<Credentials> {
        self.creds.clone()
    }
    fn has_track(&self, stream: &str, track: Track) -> bool {
        stream == "live" && track == Track::Video
    }
    fn play_start_pts(&self, _stream: &str, _track: Track) -> Option<u64> {
        None
    }
    fn viewer_slot_available(&self, _stream: &str) -> bool {
        true
    }
    fn auth_locked(&self, peer: IpAddr, now_ms: u64) -> bool {
        self.throttle.borrow().locked_for_ms(peer, now_ms).is_some()
    }
    fn auth_attempt(&self, peer: IpAddr, ok: bool, now_ms: u64) {
        let mut t = self.throttle.borrow_mut();
        if ok {
            t.record_success(peer);
        } else {
            self.failures.set(self.failures.get() + 1);
            t.record_failure(peer, now_ms);
        }
    }
}

fn conn(peer: &str) -> RtspConn {
    RtspConn::new(peer.parse().unwrap(), (8000, 8001), 60, 7)
}

/// Handles `bytes` (one request); returns (response bytes, event).
fn send(
    c: &mut RtspConn,
    cat: &Catalog,
    now_ms: u64,
    bytes: &str,
) -> (String, Option<SessionEvent>) {
    let Ok(Parsed::Request { req, .. }) = parse(bytes.as_bytes()) else {
        panic!("not a request: {bytes:?}");
    };
    let mut out = Vec::new();
    let ev = c.handle_request(&req, now_ms, cat, &mut out);
    (String::from_utf8(out).unwrap(), ev)
}

fn status(resp: &str) -> u16 {
    resp.split(' ').nth(1).unwrap().parse().unwrap()
}

#[test]
fn require_is_echoed_only_as_tokens() {
    let cat = Catalog::open();
    let mut c = conn("192.0.2.9:5000");
    let (resp, ev) = send(
        &mut c,
        &cat,
        0,
        "OPTIONS * RTSP/1.0\r\nCSeq: 2\r\nRequire: implicit-play ,\tcom.example.x\r\n\r\n",
    );
    assert_eq!(
        resp,
        "RTSP/1.0 551 Option not supported\r\nCSeq: 2\r\nServer: rillcast\r\n\
         Unsupported: implicit-play, com.example.x\r\n\r\n"
    );
    assert_eq!(ev, None);
    for bad in ["a b", "a,,b", "x\"y", "tag; q=1", "é"] {
        let (resp, _) = send(
            &mut c,
            &cat,
            0,
            &format!("OPTIONS * RTSP/1.0\r\nCSeq: 3\r\nRequire: {bad}\r\n\r\n"),
        );
        assert_eq!(
            resp, "RTSP/1.0 400 Bad Request\r\nCSeq: 3\r\nServer: rillcast\r\n\r\n",
            "Require: {bad}"
        );
    }
    // A bare CR never reaches the state machine (the parser refuses it), and the tag check
    // refuses it on its own too.
    assert_eq!(option_tags("a\rInjected: 1"), None);
    assert_eq!(option_tags("a\n"), None);
}

fn setup_tcp(c: &mut RtspConn, cat: &Catalog) -> String {
    let (resp, ev) = send(
        c,
        cat,
        0,
        "SETUP rtsp://h/live/trackID=0 RTSP/1.0\r\nCSeq: 3\r\n\
         Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n",
    );
    assert_eq!(status(&resp), 200, "{resp}");
    assert_eq!(
        ev,
        Some(SessionEvent::Setup {
            track: Track::Video
        })
    );
    c.session_id().unwrap().to_string()
}

#[test]
fn play_failed_turns_the_answer_into_an_error_and_play_can_be_retried() {
    let cat = Catalog::open();
    let mut c = conn("192.0.2.9:5000");
    let sid = setup_tcp(&mut c, &cat);
    let play = format!("PLAY rtsp://h/live RTSP/1.0\r\nCSeq: 0004\r\nSession: {sid}\r\n\r\n");
    let (resp, ev) = send(&mut c, &cat, 10, &play);
    assert_eq!(status(&resp), 200);
    assert_eq!(ev, Some(SessionEvent::Play));
    let mut out = resp.into_bytes();
    c.play_failed(503, &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!(
            "RTSP/1.0 503 Service Unavailable\r\nCSeq: 0004\r\nServer: rillcast\r\n\
             Session: {sid};timeout=60\r\n\r\n"
        )
    );
    assert!(!c.is_playing());
    // The session survives: the next PLAY starts again (a new Play event, not a no-op).
    let (resp, ev) = send(&mut c, &cat, 20, &play.replace("0004", "5"));
    assert_eq!(status(&resp), 200);
    assert_eq!(ev, Some(SessionEvent::Play));
}

fn describe(c: &mut RtspConn, cat: &Catalog, now_ms: u64, auth: Option<&str>) -> u16 {
    let auth = auth.map_or(String::new(), |a| format!("Authorization: Basic {a}\r\n"));
    let (resp, _) = send(
        c,
        cat,
        now_ms,
        &format!("DESCRIBE rtsp://h/live RTSP/1.0\r\nCSeq: 2\r\n{auth}\r\n"),
    );
    status(&resp)
}

// base64("u:wrong"), base64("u:secret")
const WRONG: &str = "dTp3cm9uZw==";
const RIGHT: &str = "dTpzZWNyZXQ=";

#[test]
fn guessing_is_locked_out_per_address_and_unlocks_after_the_window() {
    let cat = Catalog::protected();
    let mut a = conn("192.0.2.1:4000");
    // No credentials: a challenge, not a failure.
    assert_eq!(describe(&mut a, &cat, 0, None), 401);
    assert_eq!(cat.failures.get(), 0);
    for i in 0..3 {
        assert_eq!(describe(&mut a, &cat, 100 + i, Some(WRONG)), 401, "try {i}");
    }
    assert_eq!(cat.failures.get(), 3);
    // Locked: refused without checking, even with the right password, on a new connection too.
    assert_eq!(describe(&mut a, &cat, 200, Some(RIGHT)), 403);
    let mut a2 = conn("192.0.2.1:4001");
    let (resp, ev) = send(
        &mut a2,
        &cat,
        300,
        &format!(
            "DESCRIBE rtsp://h/live RTSP/1.0\r\nCSeq: 9\r\nAuthorization: Basic {RIGHT}\r\n\r\n"
        ),
    );
    assert_eq!(
        resp,
        "RTSP/1.0 403 Forbidden\r\nCSeq: 9\r\nServer: rillcast\r\n\r\n"
    );
    assert_eq!(ev, None);
    assert_eq!(cat.failures.get(), 3);
    // Another address is not affected.
    let mut b = conn("192.0.2.2:4000");
    assert_eq!(describe(&mut b, &cat, 300, Some(RIGHT)), 200);
    // After the lockout the right password works again.
    assert_eq!(describe(&mut a2, &cat, 100 + 2 + 30_001, Some(RIGHT)), 200);
}

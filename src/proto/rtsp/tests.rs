//! `RtspConn` replayed against the requests real clients sent (`tests/fixtures/rtsp/`, captured
//! from ffmpeg 5.1 and GStreamer 1.22; see its README), byte for byte, plus one test per
//! decision listed in the `session` module doc. No sockets, no clock: `now_ms` is a parameter.
//!
//! `replay`: the captured clients, end to end through one connection. `hardening`: hostile
//! input (`Require` tags, PLAY failures, password guessing) against a one-stream catalog.

mod replay {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    use super::super::*;
    use crate::proto::rtsp::request::{parse, Parsed};

    /// The nonce the auth fixtures were computed with (fixtures README).
    const FIXTURE_NONCE: &str = "0123456789abcdef0123456789abcdef";
    /// The session id the capture server gave; replaced with ours before a request is parsed.
    const FIXTURE_SESSION: &str = "12345678";
    const PEER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 40000);
    const SERVER_PORTS: (u16, u16) = (8000, 8001);

    struct Catalog {
        video: bool,
        audio: bool,
        creds: Option<Credentials>,
        slot: bool,
    }

    impl Catalog {
        fn open() -> Self {
            Catalog {
                video: true,
                audio: true,
                creds: None,
                slot: true,
            }
        }
        fn protected(allow_basic: bool) -> Self {
            Catalog {
                creds: Some(Credentials {
                    user: "viewer".into(),
                    password: "secret".into(),
                    allow_basic,
                }),
                ..Catalog::open()
            }
        }
    }

    impl StreamCatalog for Catalog {
        fn sdp(&self, stream: &str) -> Option<String> {
            (stream == "live").then(|| "v=0\r\ns=live\r\n".to_string())
        }
        fn credentials(&self, _stream: &str) -> Option<Credentials> {
            self.creds.clone()
        }
        fn has_track(&self, stream: &str, track: Track) -> bool {
            stream == "live"
                && match track {
                    Track::Video => self.video,
                    Track::Audio => self.audio,
                }
        }
        fn play_start_pts(&self, _stream: &str, track: Track) -> Option<u64> {
            Some(match track {
                Track::Video => 90_000,
                Track::Audio => 48_000,
            })
        }
        fn viewer_slot_available(&self, _stream: &str) -> bool {
            self.slot
        }
    }

    /// A response as text, split into status, headers and body.
    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Reply {
        fn parse(bytes: &[u8]) -> Reply {
            let text = std::str::from_utf8(bytes).expect("responses are ASCII");
            let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
            let mut lines = head.split("\r\n");
            let status_line = lines.next().unwrap();
            assert!(status_line.starts_with("RTSP/1.0 "), "{status_line}");
            let status = status_line[9..12].parse().unwrap();
            let headers = lines
                .map(|l| {
                    let (n, v) = l.split_once(':').expect("header line");
                    (n.to_string(), v.trim().to_string())
                })
                .collect();
            Reply {
                status,
                headers,
                body: body.to_string(),
            }
        }
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
        fn all(&self, name: &str) -> Vec<&str> {
            self.headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
                .collect()
        }
    }

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/rtsp/{name}.txt",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn conn() -> RtspConn {
        let mut c = RtspConn::new(PEER, SERVER_PORTS, 60, 0x5eed);
        c.nonce = FIXTURE_NONCE.to_string();
        c
    }

    /// Feeds `bytes` (one request) to `c` and returns the reply and the event.
    fn send(
        c: &mut RtspConn,
        bytes: &[u8],
        now_ms: u64,
        cat: &Catalog,
    ) -> (Reply, Option<SessionEvent>) {
        let (req, consumed) = match parse(bytes).expect("the fixture parses") {
            Parsed::Request { req, consumed } => (req, consumed),
            other => panic!("not a request: {other:?}"),
        };
        assert_eq!(consumed, bytes.len(), "one request per fixture");
        let mut out = Vec::new();
        let ev = c.handle_request(&req, now_ms, cat, &mut out);
        (Reply::parse(&out), ev)
    }

    /// Replays a fixture, with the capture server's session id replaced by ours.
    fn replay(c: &mut RtspConn, name: &str, cat: &Catalog) -> (Reply, Option<SessionEvent>) {
        let mut text = String::from_utf8(fixture(name)).unwrap();
        if let Some(id) = c.session_id() {
            text = text.replace(FIXTURE_SESSION, id);
        }
        send(c, text.as_bytes(), 1_000, cat)
    }

    fn request(text: &str) -> Vec<u8> {
        text.replace('\n', "\r\n").into_bytes()
    }

    #[test]
    fn ffmpeg_over_tcp_from_options_to_teardown() {
        let cat = Catalog::open();
        let mut c = conn();

        let (r, ev) = replay(&mut c, "ffmpeg_options", &cat);
        assert_eq!((r.status, ev), (200, None));
        assert_eq!(r.header("CSeq"), Some("1"));
        assert_eq!(r.header("Public"), Some(PUBLIC));

        let (r, ev) = replay(&mut c, "ffmpeg_describe", &cat);
        assert_eq!((r.status, ev), (200, None));
        assert_eq!(r.header("Content-Type"), Some("application/sdp"));
        assert_eq!(
            r.header("Content-Base"),
            Some("rtsp://127.0.0.1:18554/live/")
        );
        assert_eq!(r.body, "v=0\r\ns=live\r\n");
        assert_eq!(r.header("Content-Length"), Some("13"));

        let (r, ev) = replay(&mut c, "ffmpeg_setup_tcp", &cat);
        assert_eq!(r.status, 200);
        assert_eq!(
            ev,
            Some(SessionEvent::Setup {
                track: Track::Video
            })
        );
        let id = c.session_id().expect("SETUP made a session").to_string();
        assert_eq!(id.len(), 16);
        assert_eq!(
            r.header("Session"),
            Some(format!("{id};timeout=60").as_str())
        );
        let video = *c.tracks().next().unwrap().1;
        assert_eq!(
            video.transport,
            TrackTransport::Interleaved {
                rtp_channel: 0,
                rtcp_channel: 1
            }
        );
        assert_eq!(
            r.header("Transport"),
            Some(
                format!(
                    "RTP/AVP/TCP;unicast;interleaved=0-1;ssrc={:08X}",
                    video.ssrc
                )
                .as_str()
            )
        );

        let (r, ev) = replay(&mut c, "ffmpeg_setup_tcp_audio", &cat);
        assert_eq!(r.status, 200);
        assert_eq!(
            ev,
            Some(SessionEvent::Setup {
                track: Track::Audio
            })
        );
        assert_eq!(
            c.session_id(),
            Some(id.as_str()),
            "one session per connection"
        );
        let audio = *c.tracks().nth(1).unwrap().1;
        assert_ne!(audio.ssrc, video.ssrc);
        assert_eq!(
            audio.transport,
            TrackTransport::Interleaved {
                rtp_channel: 2,
                rtcp_channel: 3
            }
        );

        let (r, ev) = replay(&mut c, "ffmpeg_play_tcp", &cat);
        assert_eq!((r.status, ev), (200, Some(SessionEvent::Play)));
        assert!(c.is_playing());
        assert_eq!(r.header("Range"), Some("npt=now-"));
        let rtptime = |s: &TrackSetup, pts: u32| s.rtp_ts_offset.wrapping_add(pts);
        assert_eq!(
            r.header("RTP-Info").unwrap(),
            format!(
                "url=rtsp://127.0.0.1:18554/live/trackID=0;seq={};rtptime={},\
                 url=rtsp://127.0.0.1:18554/live/trackID=1;seq={};rtptime={}",
                video.initial_seq,
                rtptime(&video, 90_000),
                audio.initial_seq,
                rtptime(&audio, 48_000)
            )
        );

        let (r, ev) = replay(&mut c, "ffmpeg_teardown_tcp", &cat);
        assert_eq!((r.status, ev), (200, Some(SessionEvent::Teardown)));
        assert_eq!(r.header("CSeq"), Some("6"));
        assert!(c.session_id().is_none() && c.tracks().next().is_none() && !c.is_playing());
    }

    #[test]
    fn ffmpeg_over_udp_sends_only_to_the_peer_address() {
        let cat = Catalog::open();
        let mut c = conn();
        let (r, _) = replay(&mut c, "ffmpeg_setup_udp", &cat);
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("Transport").unwrap(),
            format!(
                "RTP/AVP;unicast;client_port=27110-27111;server_port=8000-8001;ssrc={:08X};mode=play",
                c.tracks().next().unwrap().1.ssrc
            )
        );
        let (r, _) = replay(&mut c, "ffmpeg_setup_udp_audio", &cat);
        assert_eq!(r.status, 200);
        let ports: Vec<_> = c
            .tracks()
            .map(|(_, s)| match s.transport {
                TrackTransport::Udp {
                    client_rtp,
                    client_rtcp,
                } => (client_rtp, client_rtcp),
                other => panic!("{other:?}"),
            })
            .collect();
        let at = |p| SocketAddr::new(PEER.ip(), p);
        assert_eq!(
            ports,
            [(at(27110), at(27111)), (at(27112), at(27113))],
            "UDP goes to the RTSP peer's own IP"
        );
        let (r, ev) = replay(&mut c, "ffmpeg_play_udp", &cat);
        assert_eq!((r.status, ev), (200, Some(SessionEvent::Play)));
    }

    #[test]
    fn gstreamer_over_udp_and_tcp() {
        let cat = Catalog::open();
        let mut c = conn();
        for (name, want) in [
            ("gstreamer_options", 200),
            ("gstreamer_describe", 200),
            ("gstreamer_setup_udp", 200),
            ("gstreamer_setup_udp_audio", 200),
            ("gstreamer_play_udp", 200),
        ] {
            let (r, _) = replay(&mut c, name, &cat);
            assert_eq!(r.status, want, "{name}");
        }
        assert!(c.is_playing());
        assert_eq!(c.tracks().count(), 2);

        let mut c = conn();
        let (r, ev) = replay(&mut c, "gstreamer_setup_tcp", &cat);
        assert_eq!(r.status, 200);
        assert_eq!(
            ev,
            Some(SessionEvent::Setup {
                track: Track::Video
            })
        );
        assert!(r
            .header("Transport")
            .unwrap()
            .starts_with("RTP/AVP/TCP;unicast;interleaved=0-1;"));
    }

    #[test]
    fn digest_from_ffmpeg_and_gstreamer_is_accepted() {
        let cat = Catalog::protected(false);
        for name in [
            "ffmpeg_digest_describe",
            "ffmpeg_digest_qop_describe",
            "gstreamer_digest_describe",
            "gstreamer_digest_qopchallenge_describe",
        ] {
            let mut c = conn();
            let (r, _) = replay(&mut c, name, &cat);
            assert_eq!(r.status, 200, "{name}");
        }
        for name in ["ffmpeg_digest_setup", "gstreamer_digest_setup"] {
            let mut c = conn();
            let (r, ev) = replay(&mut c, name, &cat);
            assert_eq!(r.status, 200, "{name}");
            assert!(matches!(ev, Some(SessionEvent::Setup { .. })), "{name}");
        }
        // The qop SETUP carries the capture's session id: the Digest response itself verifies
        // (for method SETUP), and then the foreign session id is refused.
        let mut c = conn();
        let (r, _) = replay(&mut c, "ffmpeg_digest_qop_setup_audio", &cat);
        assert_eq!(r.status, 454);
        assert_eq!(c.authed_stream.as_deref(), Some("live"));
    }

    #[test]
    fn missing_or_wrong_credentials_get_a_challenge() {
        let mut c = conn();
        let (r, _) = replay(&mut c, "ffmpeg_describe", &Catalog::protected(true));
        assert_eq!(r.status, 401);
        assert_eq!(
            r.all("WWW-Authenticate"),
            [
                format!("Digest realm=\"rillcast\", nonce=\"{FIXTURE_NONCE}\"").as_str(),
                "Basic realm=\"rillcast\""
            ]
        );
        // Basic is refused unless the stream allows it (no Basic challenge then either).
        let (r, _) = replay(&mut c, "ffmpeg_basic_describe", &Catalog::protected(false));
        assert_eq!(r.status, 401);
        assert_eq!(r.all("WWW-Authenticate").len(), 1);
        let (r, _) = replay(&mut c, "ffmpeg_basic_describe", &Catalog::protected(true));
        assert_eq!(r.status, 200);

        // The right response for another nonce (another connection's) is refused.
        let mut other = RtspConn::new(PEER, SERVER_PORTS, 60, 7);
        let (r, _) = replay(
            &mut other,
            "ffmpeg_digest_describe",
            &Catalog::protected(false),
        );
        assert_eq!(r.status, 401);
        // A wrong password is refused.
        let mut c = conn();
        let mut cat = Catalog::protected(true);
        cat.creds.as_mut().unwrap().password = "other".into();
        let (r, _) = replay(&mut c, "ffmpeg_digest_describe", &cat);
        assert_eq!(r.status, 401);
    }

    #[test]
    fn a_session_id_from_another_connection_is_454() {
        let cat = Catalog::open();
        let mut a = conn();
        replay(&mut a, "ffmpeg_setup_tcp", &cat);
        let a_id = a.session_id().unwrap().to_string();
        let mut b = RtspConn::new(PEER, SERVER_PORTS, 60, 99);
        replay(&mut b, "ffmpeg_setup_tcp", &cat);
        // b's PLAY with a's session id.
        let play = String::from_utf8(fixture("ffmpeg_play_tcp"))
            .unwrap()
            .replace(FIXTURE_SESSION, &a_id);
        let (r, ev) = send(&mut b, play.as_bytes(), 1_000, &cat);
        assert_eq!((r.status, ev), (454, None));
        assert!(!b.is_playing());
        // PLAY before any SETUP: 455; with a session id but none here: 454.
        let mut c = conn();
        let (r, _) = send(
            &mut c,
            &request("PLAY rtsp://h/live RTSP/1.0\nCSeq: 2\n\n"),
            0,
            &cat,
        );
        assert_eq!(r.status, 455);
        let (r, _) = replay(&mut c, "ffmpeg_play_tcp", &cat);
        assert_eq!(r.status, 454);
    }

    #[test]
    fn setup_refusals() {
        let cat = Catalog::open();
        // The same track twice: 455.
        let mut c = conn();
        replay(&mut c, "ffmpeg_setup_tcp", &cat);
        let again = String::from_utf8(fixture("ffmpeg_setup_tcp"))
            .unwrap()
            .replace(
                "CSeq: 3",
                &format!("CSeq: 4\r\nSession: {}", c.session_id().unwrap()),
            );
        let (r, ev) = send(&mut c, again.as_bytes(), 0, &cat);
        assert_eq!((r.status, ev), (455, None));
        // The aggregate URL of a two-track stream: 459; of a one-track stream: that track.
        let aggregate = request(
            "SETUP rtsp://h/live RTSP/1.0\nCSeq: 3\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\n\n",
        );
        let (r, _) = send(&mut conn(), &aggregate, 0, &cat);
        assert_eq!(r.status, 459);
        let video_only = Catalog {
            audio: false,
            ..Catalog::open()
        };
        let (r, ev) = send(&mut conn(), &aggregate, 0, &video_only);
        assert_eq!(r.status, 200);
        assert_eq!(
            ev,
            Some(SessionEvent::Setup {
                track: Track::Video
            })
        );
        // Unknown stream or track: 404. No Transport or a bad one: 461. No viewer slot: 453.
        let (r, _) = send(
            &mut conn(),
            &request(
                "SETUP rtsp://h/nope/trackID=0 RTSP/1.0\nCSeq: 3\nTransport: RTP/AVP/TCP;unicast\n\n",
            ),
            0,
            &cat,
        );
        assert_eq!(r.status, 404);
        let (r, _) = send(
            &mut conn(),
            &request(
                "SETUP rtsp://h/live/trackID=7 RTSP/1.0\nCSeq: 3\nTransport: RTP/AVP/TCP;unicast\n\n",
            ),
            0,
            &cat,
        );
        assert_eq!(r.status, 404);
        let (r, _) = send(
            &mut conn(),
            &request("SETUP rtsp://h/live/trackID=0 RTSP/1.0\nCSeq: 3\n\n"),
            0,
            &cat,
        );
        assert_eq!(r.status, 461);
        let full = Catalog {
            slot: false,
            ..Catalog::open()
        };
        let mut c = conn();
        let (r, ev) = replay(&mut c, "ffmpeg_setup_tcp", &full);
        assert_eq!((r.status, ev), (453, None));
        assert!(c.session_id().is_none());
        // UDP for one track and interleaved for the other: 461.
        let mut c = conn();
        replay(&mut c, "ffmpeg_setup_udp", &cat);
        let (r, _) = replay(&mut c, "ffmpeg_setup_tcp_audio", &cat);
        assert_eq!(r.status, 461);
    }

    #[test]
    fn request_level_refusals() {
        let cat = Catalog::open();
        let cases: &[(&str, u16)] = &[
            ("OPTIONS * RTSP/1.0\n\n", 400),
            ("DESCRIBE rtsp://h/live RTSP/1.0\nCSeq: x1\n\n", 400),
            ("ANNOUNCE rtsp://h/live RTSP/1.0\nCSeq: 1\n\n", 405),
            ("RECORD rtsp://h/live RTSP/1.0\nCSeq: 1\n\n", 405),
            ("REDIRECT rtsp://h/live RTSP/1.0\nCSeq: 1\n\n", 501),
            ("DESCRIBE rtsp://h/nope RTSP/1.0\nCSeq: 1\n\n", 404),
            ("DESCRIBE rtsp://h/ RTSP/1.0\nCSeq: 1\n\n", 404),
            ("DESCRIBE nonsense RTSP/1.0\nCSeq: 1\n\n", 400),
            ("TEARDOWN rtsp://h/live RTSP/1.0\nCSeq: 1\n\n", 454),
            (
                "GET_PARAMETER rtsp://h/live RTSP/1.0\nCSeq: 1\nContent-Length: 4\n\nabcd",
                451,
            ),
            ("GET_PARAMETER rtsp://h/live RTSP/1.0\nCSeq: 1\n\n", 200),
            ("SET_PARAMETER rtsp://h/live RTSP/1.0\nCSeq: 1\n\n", 200),
        ];
        for &(text, want) in cases {
            let (r, ev) = send(&mut conn(), &request(text), 0, &cat);
            assert_eq!((r.status, ev), (want, None), "{text:?}");
        }
        let (r, _) = send(
            &mut conn(),
            &request("ANNOUNCE rtsp://h/live RTSP/1.0\nCSeq: 1\n\n"),
            0,
            &cat,
        );
        assert_eq!(r.header("Allow"), Some(PUBLIC));
    }

    #[test]
    fn require_is_refused_with_551() {
        let (r, ev) = send(
            &mut conn(),
            &request("OPTIONS rtsp://h/live RTSP/1.0\nCSeq: 1\nRequire: play.basic\n\n"),
            0,
            &Catalog::open(),
        );
        assert_eq!((r.status, ev), (551, None));
        assert_eq!(r.header("Unsupported"), Some("play.basic"));
    }

    #[test]
    fn pause_and_resume_report_the_next_sequence_number() {
        let cat = Catalog::open();
        let mut c = conn();
        replay(&mut c, "ffmpeg_setup_tcp", &cat);
        replay(&mut c, "ffmpeg_play_tcp", &cat);
        let id = c.session_id().unwrap().to_string();
        let pause = request(&format!(
            "PAUSE rtsp://127.0.0.1:18554/live/ RTSP/1.0\nCSeq: 6\nSession: {id}\n\n"
        ));
        let (r, ev) = send(&mut c, &pause, 2_000, &cat);
        assert_eq!((r.status, ev), (200, Some(SessionEvent::Pause)));
        // A second PAUSE is answered but is no new event.
        let (r, ev) = send(&mut c, &pause, 2_000, &cat);
        assert_eq!((r.status, ev), (200, None));
        c.set_next_seq(Track::Video, 4242);
        let (r, ev) = replay(&mut c, "ffmpeg_play_tcp", &cat);
        assert_eq!((r.status, ev), (200, Some(SessionEvent::Play)));
        assert!(r.header("RTP-Info").unwrap().contains(";seq=4242;"));
        // PLAY while playing: 200, no second Play event.
        let (r, ev) = replay(&mut c, "ffmpeg_play_tcp", &cat);
        assert_eq!((r.status, ev), (200, None));
    }

    #[test]
    fn a_session_expires_without_activity_and_rtcp_counts_as_activity() {
        let cat = Catalog::open();
        let mut c = conn();
        replay(&mut c, "ffmpeg_setup_tcp", &cat); // at 1 s
        assert!(!c.is_expired(61_000));
        assert!(c.is_expired(61_001));
        c.note_activity(50_000);
        assert!(!c.is_expired(110_000));
        assert!(c.is_expired(110_001));
        // No session, nothing to expire.
        assert!(!conn().is_expired(u64::MAX));
    }

    #[test]
    fn seeds_make_different_ids_and_the_same_seed_the_same() {
        let cat = Catalog::open();
        let ids = |seed| {
            let mut c = RtspConn::new(PEER, SERVER_PORTS, 60, seed);
            replay(&mut c, "ffmpeg_setup_tcp", &cat);
            let ssrc = c.tracks().next().unwrap().1.ssrc;
            (
                c.nonce().to_string(),
                c.session_id().unwrap().to_string(),
                ssrc,
            )
        };
        assert_eq!(ids(1), ids(1));
        let (a, b) = (ids(1), ids(2));
        assert!(a.0 != b.0 && a.1 != b.1 && a.2 != b.2);
    }
}

mod hardening {
    use super::super::*;
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
}

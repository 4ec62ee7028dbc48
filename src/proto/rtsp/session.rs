//! The per-connection RTSP server state machine (RFC 2326 §10, Appendix A.2).
//!
//! Owns: answering each request of one TCP connection, the (at most one) session it creates,
//! and per-track RTP parameters (SSRC, initial sequence number, timestamp offset, transport).
//! Must not: do I/O, read the clock (`now_ms` is a parameter), or draw randomness from the OS:
//! every random value comes from the `seed` given to [`RtspConn::new`] through splitmix64.
//!
//! Decisions, each tested in `tests.rs`:
//! - One session per connection, for one stream. A Session id is only ever accepted on the
//!   connection that created it: another id (e.g. one from a different connection) is 454.
//! - An unknown stream, and a configured stream that is not live yet (the catalog has no SDP
//!   for it), are both 404: the catalog cannot tell them apart, and ffmpeg/GStreamer give up on
//!   503 just the same; 503 with Retry-After would promise a retry no client does.
//! - SETUP of a track already set up is 455 (§11.3.6 "Method Not Valid in This State"): §10.4
//!   lets a repeated SETUP change transport parameters, which we do not support. SETUP of a
//!   second stream in the session and SETUP while playing are 455 too.
//! - SETUP on the aggregate URL is accepted when the stream has one track; with two tracks it is
//!   459 Aggregate Operation Not Allowed (§11.3.10).
//! - Track control URLs are `<stream>/trackID=N` with N = [`Track::index`] (0 video, 1 audio),
//!   so the SDP writer must use the same ids.
//! - Credentials are checked on DESCRIBE/SETUP/PLAY (not OPTIONS) until they succeed once for a
//!   stream on this connection; the Digest nonce is per connection.
//! - ANNOUNCE/RECORD get 405 with `Allow` (we take no publishers); unknown methods 501.
//! - `Require` (§12.32) is refused with 551 and its option tags echoed in `Unsupported`, each
//!   re-checked as a token: a value with anything else (a bare CR could start a header of its
//!   own in our reply) is 400.
//! - While the catalog says the peer is locked out of guessing (see [`super::throttle`]), a
//!   request for a protected stream is 403 without looking at its credentials; a wrong
//!   `Authorization` is reported to the catalog, a missing one is only challenged.
//! - PLAY answers 200 optimistically (the viewer is created from the same state); when the
//!   shell then cannot start it, [`RtspConn::play_failed`] turns the answer into an error.

use std::net::{IpAddr, SocketAddr};

use super::auth::{self, Credentials};
use super::request::{write_response, Request};
use super::transport::{self, TransportReply, TransportRequest};
use crate::media::Track;

/// What the server knows about its streams; implemented by the daemon over its media state.
pub trait StreamCatalog {
    /// The SDP (RFC 4566) of a live stream; None if unknown or not live yet (→ 404).
    fn sdp(&self, stream: &str) -> Option<String>;
    /// Who may view `stream`; None means no authentication for it.
    fn credentials(&self, stream: &str) -> Option<Credentials>;
    fn has_track(&self, stream: &str, track: Track) -> bool;
    /// PTS (in the track's RTP clock) of the first frame a viewer starting now will get; used
    /// for `RTP-Info: rtptime` (§12.33). None leaves rtptime out.
    fn play_start_pts(&self, stream: &str, track: Track) -> Option<u64>;
    /// False when the stream's viewer limit is reached (→ 453 Not Enough Bandwidth, §11.3.5).
    fn viewer_slot_available(&self, stream: &str) -> bool;
    /// True while `peer` may not try credentials (too many failures); the request is 403.
    fn auth_locked(&self, _peer: IpAddr, _now_ms: u64) -> bool {
        false
    }
    /// Told the outcome of every request that carried credentials for a protected stream.
    fn auth_attempt(&self, _peer: IpAddr, _ok: bool, _now_ms: u64) {}
}

/// What the shell must do after a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionEvent {
    /// A track was set up (see [`RtspConn::tracks`]); the first Setup takes a viewer slot.
    Setup { track: Track },
    /// Start (or resume) sending RTP for every set-up track.
    Play,
    /// Stop sending; keep the session.
    Pause,
    /// Stop sending and release the session and its viewer slot.
    Teardown,
}

/// Where one track's RTP and RTCP go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrackTransport {
    /// UDP to the RTSP peer's own IP at the client's ports.
    Udp {
        client_rtp: SocketAddr,
        client_rtcp: SocketAddr,
    },
    /// Interleaved in the RTSP connection (§10.12).
    Interleaved { rtp_channel: u8, rtcp_channel: u8 },
}

/// RTP parameters of one set-up track (RFC 3550 §5.1: random SSRC, initial seq and timestamp).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrackSetup {
    pub ssrc: u32,
    pub initial_seq: u16,
    /// Sequence number of the next packet to send, reported in `RTP-Info` on PLAY. Starts at
    /// `initial_seq`; the shell updates it with [`RtspConn::set_next_seq`] after a PAUSE.
    pub next_seq: u16,
    /// Added (mod 2^32) to the track's PTS to make the RTP timestamp.
    pub rtp_ts_offset: u32,
    pub transport: TrackTransport,
}

/// Methods listed in `Public` (OPTIONS) and `Allow` (405).
const PUBLIC: &str =
    "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER";

/// splitmix64 (Steele, Lea, Flood 2014): tiny, seedable, good enough for ids and RTP fields.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// One RTSP connection's state. Feed it every parsed request with [`RtspConn::handle_request`].
pub struct RtspConn {
    peer: SocketAddr,
    server_ports: (u16, u16),
    session_timeout_s: u32,
    rng: SplitMix64,
    nonce: String,
    authed_stream: Option<String>,
    session_id: Option<String>,
    stream: Option<String>,
    tracks: [Option<TrackSetup>; 2],
    playing: bool,
    last_activity_ms: u64,
    /// CSeq of the request handled last, for [`RtspConn::play_failed`].
    last_cseq: heapless::String<10>,
}

/// The stream / track a request URI names.
struct Target<'a> {
    stream: &'a str,
    /// `trackID=N` suffix, if any.
    track_id: Option<u32>,
    /// The URI without query, track suffix and trailing `/`: the aggregate control URL.
    base: &'a str,
}

/// Splits `rtsp://host[:port]/<stream>[/trackID=N][/]` (or a bare path) into its parts.
/// None for `*` or anything not an rtsp URL / absolute path.
fn parse_target(uri: &str) -> Option<Target<'_>> {
    let no_query = uri.split('?').next().unwrap_or(uri);
    // `get`, not indexing: a Request built by hand (not by the parser, which admits only
    // ASCII) could split a UTF-8 character at byte 7 or 8.
    let scheme = no_query.get(..7);
    let path_start = if scheme.is_some_and(|p| p.eq_ignore_ascii_case("rtsp://")) {
        let after = no_query.get(7..).unwrap_or("");
        7 + after.find('/').unwrap_or(after.len())
    } else if no_query.starts_with('/') {
        0
    } else {
        return None;
    };
    let mut base = no_query.trim_end_matches('/');
    let mut track_id = None;
    if let Some(slash) = base.rfind('/').filter(|&i| i >= path_start) {
        let last = base.get(slash + 1..).unwrap_or("");
        if last.len() > 8
            && last
                .get(..8)
                .is_some_and(|p| p.eq_ignore_ascii_case("trackID="))
        {
            let n = last.get(8..).unwrap_or("");
            if n.len() > 3 || !n.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            track_id = Some(n.parse().ok()?);
            base = base.get(..slash).unwrap_or("").trim_end_matches('/');
        }
    }
    let stream = base.get(path_start..).unwrap_or("").trim_matches('/');
    Some(Target {
        stream,
        track_id,
        base,
    })
}

fn session_id_of(header: &str) -> &str {
    header.split(';').next().unwrap_or("").trim()
}

impl RtspConn {
    /// `peer`: the connection's remote address (UDP goes only there). `server_ports`: our RTP
    /// and RTCP UDP ports. `seed` must differ per connection and be unguessable (e.g. OS
    /// randomness taken once at start, mixed with a connection counter): it makes the Digest
    /// nonce, session id, SSRCs, initial sequence numbers and timestamps.
    pub fn new(
        peer: SocketAddr,
        server_ports: (u16, u16),
        session_timeout_s: u32,
        seed: u64,
    ) -> Self {
        let mut rng = SplitMix64(seed);
        let nonce = format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64());
        RtspConn {
            peer,
            server_ports,
            session_timeout_s,
            rng,
            nonce,
            authed_stream: None,
            session_id: None,
            stream: None,
            tracks: [None, None],
            playing: false,
            last_activity_ms: 0,
            last_cseq: heapless::String::new(),
        }
    }

    /// The set-up tracks, video first.
    pub fn tracks(&self) -> impl Iterator<Item = (Track, &TrackSetup)> {
        Track::ALL
            .into_iter()
            .zip(self.tracks.iter())
            .filter_map(|(t, s)| s.as_ref().map(|s| (t, s)))
    }

    /// The stream this connection's session is for, once a SETUP succeeded.
    pub fn stream(&self) -> Option<&str> {
        self.stream.as_deref()
    }

    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    pub fn is_playing(&self) -> bool {
        self.playing
    }

    /// The Digest nonce this connection's challenges carry.
    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    /// Records liveness other than a request (e.g. an RTCP receiver report, RFC 2326 §12.37).
    pub fn note_activity(&mut self, now_ms: u64) {
        self.last_activity_ms = self.last_activity_ms.max(now_ms);
    }

    /// True when a session exists and nothing was heard for `session_timeout_s`; the shell then
    /// tears the session down (as for [`SessionEvent::Teardown`]) and may close the connection.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.session_id.is_some()
            && now_ms.saturating_sub(self.last_activity_ms)
                > u64::from(self.session_timeout_s) * 1000
    }

    /// Tells the core which RTP sequence number comes next on `track`, for `RTP-Info` when the
    /// client resumes after PAUSE.
    pub fn set_next_seq(&mut self, track: Track, seq: u16) {
        if let Some(t) = self.tracks[track.index()].as_mut() {
            t.next_seq = seq;
        }
    }

    /// Handles one parsed request; writes the whole response into `out`; returns what the
    /// shell must do. Call once per [`super::request::Parsed::Request`], in order.
    pub fn handle_request(
        &mut self,
        req: &Request<'_>,
        now_ms: u64,
        catalog: &dyn StreamCatalog,
        out: &mut Vec<u8>,
    ) -> Option<SessionEvent> {
        self.note_activity(now_ms);
        // §12.17: every request carries CSeq; without it the reply cannot be matched.
        let cseq = match req.cseq() {
            Some(c) if !c.is_empty() && c.len() <= 10 && c.bytes().all(|b| b.is_ascii_digit()) => c,
            _ => {
                write_response(out, 400, None, &[], &[]);
                return None;
            }
        };
        self.last_cseq.clear();
        // At most 10 digits, checked above: fits.
        let _ = self.last_cseq.push_str(cseq);
        if req.version != "RTSP/1.0" {
            write_response(out, 505, Some(cseq), &[], &[]);
            return None;
        }
        // §12.32: we implement no extension, so any Require is refused and its option tags
        // echoed back — only as tokens, never the raw value.
        if let Some(required) = req.header("Require") {
            match option_tags(required) {
                Some(tags) => {
                    write_response(out, 551, Some(cseq), &[("Unsupported", &tags)], &[]);
                }
                None => write_response(out, 400, Some(cseq), &[], &[]),
            }
            return None;
        }
        let mut cx = Cx {
            req,
            cseq,
            now_ms,
            catalog,
            out,
        };
        match req.method {
            "OPTIONS" => self.options(&mut cx),
            "DESCRIBE" => self.describe(&mut cx),
            "SETUP" => self.setup(&mut cx),
            "PLAY" => self.play(&mut cx),
            "PAUSE" => self.pause(&mut cx),
            "TEARDOWN" => self.teardown(&mut cx),
            "GET_PARAMETER" | "SET_PARAMETER" => self.parameter(&mut cx),
            "ANNOUNCE" | "RECORD" => {
                cx.reply(405, &[("Allow", PUBLIC)], &[]);
                None
            }
            _ => {
                cx.reply(501, &[], &[]);
                None
            }
        }
    }

    /// Call right after a [`SessionEvent::Play`] when the shell could not start sending
    /// (no media, no viewer slot): replaces the 200 in `out` with `status` (e.g. 503, or 453
    /// at capacity; RFC 2326 §11) and leaves the session set up but not playing, so a later
    /// PLAY may try again.
    pub fn play_failed(&mut self, status: u16, out: &mut Vec<u8>) {
        self.playing = false;
        out.clear();
        let session = self.session_header();
        write_response(
            out,
            status,
            Some(self.last_cseq.as_str()),
            &[("Session", &session)],
            &[],
        );
    }

    fn session_header(&self) -> String {
        format!(
            "{};timeout={}",
            self.session_id.as_deref().unwrap_or(""),
            self.session_timeout_s
        )
    }

    /// True if the request's Session header (if any) names our session.
    fn session_matches(&self, req: &Request<'_>) -> bool {
        match req.header("Session") {
            None => true,
            Some(h) => self.session_id.as_deref() == Some(session_id_of(h)),
        }
    }

    /// Checks credentials for `stream`; on failure writes the 401 and returns false.
    fn authorize(&mut self, cx: &mut Cx<'_, '_>, stream: &str) -> bool {
        if self.authed_stream.as_deref() == Some(stream) {
            return true;
        }
        let Some(creds) = cx.catalog.credentials(stream) else {
            return true;
        };
        let ip = self.peer.ip();
        if cx.catalog.auth_locked(ip, cx.now_ms) {
            cx.reply(403, &[], &[]);
            return false;
        }
        if let Some(h) = cx.req.header("Authorization") {
            let ok = auth::verify(h, cx.req.method, &creds, &self.nonce);
            cx.catalog.auth_attempt(ip, ok, cx.now_ms);
            if ok {
                self.authed_stream = Some(stream.to_owned());
                return true;
            }
        }
        let challenges = auth::challenges(&creds, &self.nonce);
        let mut headers: heapless::Vec<(&str, &str), 2> = heapless::Vec::new();
        for c in &challenges {
            // Same capacity as `challenges`: cannot fail.
            let _ = headers.push(("WWW-Authenticate", c.as_str()));
        }
        cx.reply(401, &headers, &[]);
        false
    }

    fn options(&mut self, cx: &mut Cx<'_, '_>) -> Option<SessionEvent> {
        if self.session_id.is_some()
            && cx.req.header("Session").is_some()
            && self.session_matches(cx.req)
        {
            let session = self.session_header();
            cx.reply(200, &[("Public", PUBLIC), ("Session", &session)], &[]);
        } else {
            cx.reply(200, &[("Public", PUBLIC)], &[]);
        }
        None
    }

    fn describe(&mut self, cx: &mut Cx<'_, '_>) -> Option<SessionEvent> {
        let Some(target) = parse_target(cx.req.uri) else {
            cx.reply(400, &[], &[]);
            return None;
        };
        if !self.authorize(cx, target.stream) {
            return None;
        }
        let Some(sdp) = cx
            .catalog
            .sdp(target.stream)
            .filter(|_| !target.stream.is_empty())
        else {
            cx.reply(404, &[], &[]);
            return None;
        };
        let content_base = format!("{}/", target.base);
        cx.reply(
            200,
            &[
                ("Content-Base", &content_base),
                ("Content-Type", "application/sdp"),
            ],
            sdp.as_bytes(),
        );
        None
    }

    fn setup(&mut self, cx: &mut Cx<'_, '_>) -> Option<SessionEvent> {
        let Some(target) = parse_target(cx.req.uri) else {
            cx.reply(400, &[], &[]);
            return None;
        };
        let stream = target.stream;
        if !self.authorize(cx, stream) {
            return None;
        }
        let has = |t| !stream.is_empty() && cx.catalog.has_track(stream, t);
        let track = match target.track_id {
            Some(0) if has(Track::Video) => Track::Video,
            Some(1) if has(Track::Audio) => Track::Audio,
            Some(_) => {
                cx.reply(404, &[], &[]);
                return None;
            }
            None => match (has(Track::Video), has(Track::Audio)) {
                (true, false) => Track::Video,
                (false, true) => Track::Audio,
                (true, true) => {
                    cx.reply(459, &[], &[]);
                    return None;
                }
                (false, false) => {
                    cx.reply(404, &[], &[]);
                    return None;
                }
            },
        };
        if cx.req.header("Session").is_some() && !self.session_matches(cx.req) {
            cx.reply(454, &[], &[]);
            return None;
        }
        let other_stream = self.stream.as_deref().is_some_and(|s| s != stream);
        if other_stream || self.playing || self.tracks[track.index()].is_some() {
            cx.reply(455, &[], &[]);
            return None;
        }
        let requested = match cx.req.header("Transport") {
            Some(h) => transport::parse_transport(h, self.peer.ip()),
            None => Err(transport::TransportError::Missing),
        };
        let Ok(requested) = requested else {
            cx.reply(461, &[], &[]);
            return None;
        };
        let other = self.tracks[1 - track.index()];
        let transport = match requested {
            TransportRequest::Udp {
                client_rtp,
                client_rtcp,
            } => {
                if matches!(
                    other,
                    Some(TrackSetup {
                        transport: TrackTransport::Interleaved { .. },
                        ..
                    })
                ) {
                    cx.reply(461, &[], &[]);
                    return None;
                }
                TrackTransport::Udp {
                    client_rtp: SocketAddr::new(self.peer.ip(), client_rtp),
                    client_rtcp: SocketAddr::new(self.peer.ip(), client_rtcp),
                }
            }
            TransportRequest::Interleaved { channels } => {
                let used = match other {
                    Some(TrackSetup {
                        transport:
                            TrackTransport::Interleaved {
                                rtp_channel,
                                rtcp_channel,
                            },
                        ..
                    }) => Some((rtp_channel, rtcp_channel)),
                    Some(_) => {
                        cx.reply(461, &[], &[]);
                        return None;
                    }
                    None => None,
                };
                let overlaps = |(a, b): (u8, u8)| {
                    used.is_some_and(|(c, d)| a == c || a == d || b == c || b == d)
                };
                let channels = match channels {
                    Some(ch) if overlaps(ch) => {
                        cx.reply(461, &[], &[]);
                        return None;
                    }
                    Some(ch) => ch,
                    None => {
                        let preferred = (2 * track.index() as u8, 2 * track.index() as u8 + 1);
                        // The other track uses at most two channels, which may straddle
                        // pairs (`interleaved=3-1`, found by fuzzing): take the first free
                        // pair, never a channel it uses.
                        let free = (0..=127u8).map(|i| (2 * i, 2 * i + 1));
                        let Some(ch) = [preferred]
                            .into_iter()
                            .chain(free)
                            .find(|&ch| !overlaps(ch))
                        else {
                            cx.reply(461, &[], &[]);
                            return None;
                        };
                        ch
                    }
                };
                TrackTransport::Interleaved {
                    rtp_channel: channels.0,
                    rtcp_channel: channels.1,
                }
            }
        };
        if self.session_id.is_none() && !cx.catalog.viewer_slot_available(stream) {
            cx.reply(453, &[], &[]);
            return None;
        }
        let mut ssrc = self.rng.next_u64() as u32;
        while other.is_some_and(|o| o.ssrc == ssrc) {
            ssrc = self.rng.next_u64() as u32;
        }
        let initial_seq = self.rng.next_u64() as u16;
        let setup = TrackSetup {
            ssrc,
            initial_seq,
            next_seq: initial_seq,
            rtp_ts_offset: self.rng.next_u64() as u32,
            transport,
        };
        if self.session_id.is_none() {
            self.session_id = Some(format!("{:016X}", self.rng.next_u64()));
        }
        self.stream = Some(stream.to_owned());
        self.tracks[track.index()] = Some(setup);
        let reply = match transport {
            TrackTransport::Udp {
                client_rtp,
                client_rtcp,
            } => TransportReply::Udp {
                client_ports: (client_rtp.port(), client_rtcp.port()),
                server_ports: self.server_ports,
            },
            TrackTransport::Interleaved {
                rtp_channel,
                rtcp_channel,
            } => TransportReply::Interleaved {
                channels: (rtp_channel, rtcp_channel),
            },
        };
        let transport_value = transport::format_reply(reply, ssrc);
        let session = self.session_header();
        cx.reply(
            200,
            &[("Transport", &transport_value), ("Session", &session)],
            &[],
        );
        Some(SessionEvent::Setup { track })
    }

    /// Common checks of PLAY / PAUSE: a Session header that isn't this connection's session
    /// (e.g. one taken from another connection) is 454; no session at all is 455; the request
    /// must name the session (else 454). Returns false after writing the error.
    fn check_session(&self, cx: &mut Cx<'_, '_>) -> bool {
        if self.session_id.is_none() {
            let status = if cx.req.header("Session").is_some() {
                454
            } else {
                455
            };
            cx.reply(status, &[], &[]);
            return false;
        }
        if cx.req.header("Session").is_none() || !self.session_matches(cx.req) {
            cx.reply(454, &[], &[]);
            return false;
        }
        true
    }

    fn play(&mut self, cx: &mut Cx<'_, '_>) -> Option<SessionEvent> {
        if !self.check_session(cx) {
            return None;
        }
        let Some(target) = parse_target(cx.req.uri) else {
            cx.reply(400, &[], &[]);
            return None;
        };
        // The URL must be this session's stream (aggregate or one of its tracks).
        if self.stream.as_deref() != Some(target.stream) {
            cx.reply(454, &[], &[]);
            return None;
        }
        if !self.authorize(cx, target.stream) {
            return None;
        }
        let mut rtp_info = String::with_capacity(160);
        for (track, setup) in self.tracks() {
            if !rtp_info.is_empty() {
                rtp_info.push(',');
            }
            rtp_info.push_str(&format!(
                "url={}/trackID={};seq={}",
                target.base,
                track.index(),
                setup.next_seq
            ));
            if let Some(pts) = cx.catalog.play_start_pts(target.stream, track) {
                // RTP timestamps are the PTS plus a random offset, mod 2^32 (RFC 3550 §5.1).
                let rtptime = setup.rtp_ts_offset.wrapping_add(pts as u32);
                rtp_info.push_str(&format!(";rtptime={rtptime}"));
            }
        }
        let session = self.session_header();
        // A live stream can only start now (§12.29 `npt=now-`), whatever Range was asked for.
        cx.reply(
            200,
            &[
                ("Session", &session),
                ("Range", "npt=now-"),
                ("RTP-Info", &rtp_info),
            ],
            &[],
        );
        let was_playing = std::mem::replace(&mut self.playing, true);
        (!was_playing).then_some(SessionEvent::Play)
    }

    fn pause(&mut self, cx: &mut Cx<'_, '_>) -> Option<SessionEvent> {
        if !self.check_session(cx) {
            return None;
        }
        let session = self.session_header();
        cx.reply(200, &[("Session", &session)], &[]);
        let was_playing = std::mem::replace(&mut self.playing, false);
        was_playing.then_some(SessionEvent::Pause)
    }

    fn teardown(&mut self, cx: &mut Cx<'_, '_>) -> Option<SessionEvent> {
        if self.session_id.is_none()
            || cx.req.header("Session").is_none()
            || !self.session_matches(cx.req)
        {
            cx.reply(454, &[], &[]);
            return None;
        }
        cx.reply(200, &[], &[]);
        self.session_id = None;
        self.stream = None;
        self.tracks = [None, None];
        self.playing = false;
        Some(SessionEvent::Teardown)
    }

    /// GET_PARAMETER / SET_PARAMETER (§10.8, §10.9): keep-alive only; we expose no parameters.
    fn parameter(&mut self, cx: &mut Cx<'_, '_>) -> Option<SessionEvent> {
        if !self.session_matches(cx.req) {
            cx.reply(454, &[], &[]);
            return None;
        }
        if !cx.req.body.is_empty() {
            cx.reply(451, &[], &[]);
            return None;
        }
        if cx.req.header("Session").is_some() {
            let session = self.session_header();
            cx.reply(200, &[("Session", &session)], &[]);
        } else {
            cx.reply(200, &[], &[]);
        }
        None
    }
}

/// The option tags of a `Require` value (§3.8, §12.32: comma-separated tokens), normalised to
/// `a, b`; None when any byte is not part of a token list.
fn option_tags(value: &str) -> Option<String> {
    let mut tags = String::with_capacity(value.len());
    for tag in value.split(',') {
        let tag = tag.trim_matches(|c| c == ' ' || c == '\t');
        if tag.is_empty() || !tag.bytes().all(is_token_byte) {
            return None;
        }
        if !tags.is_empty() {
            tags.push_str(", ");
        }
        tags.push_str(tag);
    }
    Some(tags)
}

/// RFC 2326 §15.1 `token` (as RFC 2616 §2.2): visible ASCII except separators.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The request being answered and where the answer goes.
struct Cx<'r, 'a> {
    req: &'r Request<'a>,
    cseq: &'a str,
    now_ms: u64,
    catalog: &'r dyn StreamCatalog,
    out: &'r mut Vec<u8>,
}

impl Cx<'_, '_> {
    fn reply(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        write_response(self.out, status, Some(self.cseq), headers, body);
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

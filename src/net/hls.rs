//! HLS from RAM (RFC 8216): one segmenter per stream fed by the hub, and the HTTP routes that
//! serve its playlists and segments.
//!
//! Owns: [`HlsStream`] — a hub [`Consumer`] that moves every frame from the ring into the
//! stream's [`HlsSegmenter`] (its arena was sized by the memory plan), marking a
//! discontinuity when the hub's parameters change or its source restarted — and
//! [`HlsHandler`], the [`HttpHandler`] for `/<stream>/index.m3u8`, `/<stream>/seg<N>.ts` and
//! `/master.m3u8` (every stream as a rendition of one group). A protected stream
//! (`streams.X.auth`) is served only to a caller [`MediaAuth`] grants, without wildcard CORS,
//! and `/master.m3u8` lists it only to such a caller. Must not: read a file (segments exist
//! only in the arena; any other name is 404), read the wall clock per frame, or allocate per
//! frame.
//!
//! Program date-time (RFC 8216 §4.3.2.6) is the wall clock sampled where a segment can start
//! (every video keyframe; at most every [`WALL_SAMPLE_MS`] for audio-only streams) through the
//! injected [`WallClock`], applied to the frame's own timestamp. So a Pi that booted before
//! NTP labels segments correctly from the first keyframe after the clock is set. A step shows
//! as a jump between two segments' PDT and nothing else: the media timeline did not change,
//! so no EXT-X-DISCONTINUITY (§4.3.2.3 is about encoding and timestamp changes), and since
//! every segment carries its own PDT tag, players that map PDT read each segment's value
//! instead of extrapolating a wrong one from an earlier tag. A segment's PDT is fixed when it
//! starts and never changes while it is listed (the date mapping a client saw stays true). A
//! backward step is taken as it is too: smoothing it would keep labels wrong for as long as
//! the smoothing lasts, which is what this fixes.

use crate::media::fanout::{lock, Consumer, FrameCursor, StreamView};
use crate::media::{aac, h264, h265, AudioParams, Codec, Track, VideoParams};
use crate::net::http::{BodyReader, HttpBody, HttpHandler, HttpRequest, HttpResponse};
use crate::net::media_auth::{media_cors, Caller, MediaAccess, MediaAuth};
use crate::proto::hls::{
    parse_segment_uri, render_multivariant_playlist, HlsConfig, HlsError, HlsSegmenter, HlsStats,
    Rendition,
};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

/// How long a stream whose config promises audio waits for the audio parameters before
/// segmenting video alone (adding audio later costs a discontinuity).
pub const TRACK_WAIT_MS: u64 = 3000;

/// RFC 8216 §4: the media type of playlists.
pub const PLAYLIST_CONTENT_TYPE: &str = "application/vnd.apple.mpegurl";
/// The media type of MPEG-TS segments.
pub const SEGMENT_CONTENT_TYPE: &str = "video/mp2t";

/// An audio-only stream samples the wall clock at most this often (video samples it on
/// every keyframe, where segments start).
pub const WALL_SAMPLE_MS: u64 = 100;

/// Reads the wall clock: Unix time in ms (the daemon passes the system clock, tests a
/// simulated one).
pub type WallClock = Box<dyn FnMut() -> u64 + Send>;

/// The system clock as a [`WallClock`] (0 before 1970, which a Pi without RTC and NTP is not).
pub fn system_wall_clock() -> WallClock {
    Box::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    })
}

/// What one stream's HLS needs from the daemon at start.
#[derive(Clone, Debug)]
pub struct HlsStreamConfig {
    pub name: String,
    pub segmenter: HlsConfig,
    /// The config promises an audio track (testsrc tone or an audio input).
    pub expect_audio: bool,
    /// BANDWIDTH in the multivariant playlist until segments have been measured.
    pub max_bitrate_bps: u64,
}

/// One stream's segmenter, fed by the hub.
pub struct HlsStream {
    cfg: HlsStreamConfig,
    cursor: FrameCursor,
    segmenter: Option<HlsSegmenter>,
    generation: u32,
    first_frame_ms: Option<u64>,
    video: Option<VideoParams>,
    audio: Option<AudioParams>,
    /// RFC 6381 codec strings for the multivariant playlist.
    codecs: String,
    /// Frames refused by the segmenter (logged on the first and every 1000th).
    pub push_errors: u64,
    wall_clock: WallClock,
    /// Wall clock minus daemon clock (ms), from the last sample.
    wall_offset_ms: Option<i64>,
    /// Daemon-clock ms of the frame at the last sample.
    wall_sampled_at_ms: u64,
}

impl HlsStream {
    /// A consumer starting at the hub's newest keyframe. Pair with `hub.add_consumer`.
    pub fn new(cfg: HlsStreamConfig, cursor: FrameCursor, wall_clock: WallClock) -> Self {
        HlsStream {
            wall_clock,
            wall_offset_ms: None,
            wall_sampled_at_ms: 0,
            cfg,
            cursor,
            segmenter: None,
            generation: u32::MAX,
            first_frame_ms: None,
            video: None,
            audio: None,
            codecs: String::new(),
            push_errors: 0,
        }
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// The segmenter, once the stream's tracks are known.
    pub fn segmenter(&self) -> Option<&HlsSegmenter> {
        self.segmenter.as_ref()
    }

    pub fn stats(&self) -> Option<HlsStats> {
        self.segmenter.as_ref().map(|s| s.stats())
    }

    /// Brings the segmenter in line with the hub's parameters. False: not ready to segment.
    fn configure(&mut self, view: &StreamView<'_>, now_ms: u64) -> bool {
        if self.segmenter.is_some() && view.params_generation == self.generation {
            return true;
        }
        let first = *self.first_frame_ms.get_or_insert(now_ms);
        let waited = now_ms.saturating_sub(first) >= TRACK_WAIT_MS;
        let missing_audio = self.cfg.expect_audio && view.audio.is_none();
        if view.video.is_none() || (missing_audio && !waited) {
            return false;
        }
        let video = view.video.map(|v| v.codec);
        let audio = view.audio.copied();
        let result = match self.segmenter.as_mut() {
            // A parameter change or a source restart: new PAT/PMT and a discontinuity.
            Some(s) => s.set_tracks(video, audio),
            None => HlsSegmenter::new(self.cfg.segmenter, video, audio).map(|s| {
                self.segmenter = Some(s);
            }),
        };
        if let Err(e) = result {
            log::warn!("[{}] HLS cannot segment these tracks: {e:?}", self.cfg.name);
            return false;
        }
        self.generation = view.params_generation;
        self.video = view.video.cloned();
        self.audio = audio;
        self.codecs = codecs_string(self.video.as_ref(), self.audio.as_ref());
        log::info!(
            "[{}] HLS segmenting {} (generation {})",
            self.cfg.name,
            self.codecs,
            self.generation
        );
        true
    }

    /// The wall-clock time (Unix ms) of a frame stamped `frame_ms` on the daemon clock,
    /// re-sampling the clock when this frame may start a segment (`may_cut`) and `now_ms`
    /// (daemon clock) is when it arrived.
    fn wall_clock_ms(&mut self, frame_ms: u64, now_ms: u64, may_cut: bool) -> u64 {
        if may_cut || self.wall_offset_ms.is_none() {
            let wall = i128::from((self.wall_clock)());
            let offset = (wall - i128::from(now_ms)).clamp(i64::MIN.into(), i64::MAX.into());
            // Clamped to the i64 range just above.
            self.wall_offset_ms = Some(offset as i64);
            self.wall_sampled_at_ms = frame_ms;
        }
        let offset = i128::from(self.wall_offset_ms.unwrap_or(0));
        (i128::from(frame_ms) + offset).clamp(0, u64::MAX.into()) as u64
    }

    fn note_error(&mut self, e: HlsError) {
        self.push_errors += 1;
        if self.push_errors % 1000 == 1 {
            log::warn!(
                "[{}] HLS frame refused: {e:?} ({} so far)",
                self.cfg.name,
                self.push_errors
            );
        }
    }
}

impl Consumer for HlsStream {
    fn on_frame(&mut self, view: &StreamView<'_>, now_ms: u64) {
        while let Some(f) = self.cursor.next(view.ring) {
            if !self.configure(view, now_ms) {
                continue;
            }
            let has_video = self.video.is_some();
            let (frame_ms, may_cut) = match f.meta.track {
                Track::Video => (f.meta.dts / 90, f.meta.keyframe),
                Track::Audio => {
                    let rate = u64::from(self.audio.map_or(48_000, |a| a.sample_rate).max(1));
                    let ms = u64::try_from(u128::from(f.meta.pts) * 1000 / u128::from(rate))
                        .unwrap_or(u64::MAX);
                    let due = ms.saturating_sub(self.wall_sampled_at_ms) >= WALL_SAMPLE_MS
                        || ms < self.wall_sampled_at_ms;
                    (ms, !has_video && due)
                }
            };
            let wall_ms = self.wall_clock_ms(frame_ms, now_ms, may_cut);
            // `configure` returned true: the segmenter exists.
            let Some(seg) = self.segmenter.as_mut() else {
                continue;
            };
            let r = match f.meta.track {
                Track::Video => seg.push_video(&f.meta, f.data, wall_ms),
                Track::Audio => seg.push_audio(&f.meta, f.data, wall_ms),
            };
            if let Err(e) = r {
                self.note_error(e);
            }
        }
    }

    fn is_closed(&self) -> bool {
        false
    }
}

/// `avc1.64001f,mp4a.40.2` from the parameter sets (RFC 6381 §3.3, ISO 14496-15 Annex E).
pub fn codecs_string(video: Option<&VideoParams>, audio: Option<&AudioParams>) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(v) = video {
        let s = match v.codec {
            Codec::H264 => h264::codec_string(&v.sps).map(|s| s.to_string()).ok(),
            Codec::H265 => h265::codec_string(&v.sps).map(|s| s.to_string()).ok(),
            Codec::Aac => None,
        };
        parts.push(s.unwrap_or_else(|| {
            match v.codec {
                Codec::H265 => "hvc1",
                _ => "avc1",
            }
            .to_string()
        }));
    }
    if let Some(a) = audio {
        parts.push(aac::codec_string(a.object_type).to_string());
    }
    parts.join(",")
}

/// One stream's HLS state, shared by its ingest thread (which feeds it) and the HTTP side.
pub type SharedHlsStream = Arc<Mutex<HlsStream>>;

/// Serves one segment's bytes from the arena, chunk by chunk, while it is stored. The
/// stream's lock is held for one chunk's copy (16 KiB), never across a socket wait.
struct SegmentBody {
    stream: SharedHlsStream,
    seq: u64,
}

impl BodyReader for SegmentBody {
    fn read_at(&self, offset: usize, buf: &mut [u8]) -> Option<usize> {
        let s = lock(&self.stream);
        s.segmenter
            .as_ref()?
            .read_segment(self.seq, offset, buf)
            .ok()
    }
}

/// The HTTP routes of HLS.
pub struct HlsHandler {
    /// (name, stream): names copied out so routing takes no lock.
    streams: Vec<(String, SharedHlsStream)>,
    auth: std::rc::Rc<MediaAuth>,
}

impl HlsHandler {
    pub fn new(streams: Vec<SharedHlsStream>, auth: std::rc::Rc<MediaAuth>) -> Self {
        let streams = streams
            .into_iter()
            .map(|s| {
                let name = lock(&s).name().to_string();
                (name, s)
            })
            .collect();
        HlsHandler { streams, auth }
    }

    fn stream(&self, name: &str) -> Option<&SharedHlsStream> {
        self.streams.iter().find(|(n, _)| n == name).map(|(_, s)| s)
    }

    fn playlist(&self, stream: &SharedHlsStream, access: MediaAccess) -> HttpResponse {
        let mut text = String::with_capacity(1024);
        let ready = {
            let s = lock(stream);
            s.segmenter
                .as_ref()
                .is_some_and(|seg| seg.render_media_playlist(&mut text))
        };
        if !ready {
            return media_cors(HttpResponse::text(503, "no segment yet\n"), access)
                .with_header("Retry-After", "1")
                .with_header("Cache-Control", "no-cache");
        }
        media_cors(
            HttpResponse::new(200, HttpBody::Bytes(text.into_bytes())),
            access,
        )
        .with_header("Content-Type", PLAYLIST_CONTENT_TYPE)
        .with_header("Cache-Control", private(access, "no-cache"))
    }

    fn segment(&self, stream: &SharedHlsStream, seq: u64, access: MediaAccess) -> HttpResponse {
        let s = lock(stream);
        let Some(seg) = s.segmenter.as_ref() else {
            return media_cors(HttpResponse::text(404, "not found\n"), access);
        };
        let Ok(len) = seg.segment_len(seq) else {
            return media_cors(HttpResponse::text(404, "segment gone\n"), access);
        };
        // A segment's bytes never change while it is stored, which is at least as long as
        // the window plus the retention: let caches keep it that long.
        let target_s = seg.target_duration_s().unwrap_or(1);
        let keep_s = (s.cfg.segmenter.window_segments as u64)
            .saturating_mul(2)
            .saturating_mul(target_s);
        let reader = Rc::new(SegmentBody {
            stream: stream.clone(),
            seq,
        });
        media_cors(
            HttpResponse::new(200, HttpBody::Reader { len, reader }),
            access,
        )
        .with_header("Content-Type", SEGMENT_CONTENT_TYPE)
        .with_header(
            "Cache-Control",
            private(access, &format!("max-age={keep_s}, immutable")),
        )
    }

    /// The multivariant playlist of the streams this caller may see. Protected streams are
    /// listed only to a caller granted them; when only hidden streams are live, the answer is
    /// a 401 challenge (so ffmpeg sends the credentials of its URL and retries).
    fn master(&self, caller: &Caller<'_, '_>) -> HttpResponse {
        /// (uri, bandwidth, resolution, codecs)
        type Entry = (String, u64, Option<(u32, u32)>, String);
        let mut entries: Vec<Entry> = Vec::new();
        let mut hidden = false;
        let mut any_protected = false;
        for (name, st) in &self.streams {
            let access = self.auth.allows(caller, name);
            let s = lock(st);
            let Some(seg) = s.segmenter.as_ref() else {
                continue;
            };
            if seg.listed().next().is_none() {
                continue;
            }
            match access {
                MediaAccess::Denied => {
                    hidden = true;
                    continue;
                }
                MediaAccess::Granted => any_protected = true,
                MediaAccess::Public => {}
            }
            let bandwidth = seg.peak_bitrate_bps().unwrap_or(s.cfg.max_bitrate_bps);
            let resolution = s
                .video
                .as_ref()
                .filter(|v| v.width > 0 && v.height > 0)
                .map(|v| (v.width, v.height));
            entries.push((
                format!("{}/index.m3u8", s.cfg.name),
                bandwidth,
                resolution,
                s.codecs.clone(),
            ));
        }
        // What a stranger sees is public (`*` is fine); a list with a protected stream is not.
        let access = if any_protected {
            MediaAccess::Granted
        } else {
            MediaAccess::Public
        };
        if entries.is_empty() {
            if hidden {
                return MediaAuth::challenge("master");
            }
            return media_cors(HttpResponse::text(503, "no stream live yet\n"), access)
                .with_header("Retry-After", "1")
                .with_header("Cache-Control", "no-cache");
        }
        // Highest bandwidth first: players without a bandwidth estimate start with the first.
        entries.sort_by_key(|e| std::cmp::Reverse(e.1));
        let renditions: Vec<Rendition<'_>> = entries
            .iter()
            .map(|(uri, bw, res, codecs)| Rendition {
                uri,
                bandwidth_bps: u32::try_from(*bw).unwrap_or(u32::MAX),
                resolution: *res,
                codecs,
            })
            .collect();
        let mut text = String::with_capacity(256);
        render_multivariant_playlist(&renditions, &mut text);
        let r = media_cors(
            HttpResponse::new(200, HttpBody::Bytes(text.into_bytes())),
            access,
        )
        .with_header("Content-Type", PLAYLIST_CONTENT_TYPE)
        .with_header("Cache-Control", private(access, "no-cache"));
        if hidden && access == MediaAccess::Public {
            // The list depends on the credentials sent.
            r.with_header("Vary", "Authorization, Cookie")
        } else {
            r
        }
    }
}

/// `Cache-Control` for media: protected media never goes into a shared cache.
fn private(access: MediaAccess, directives: &str) -> String {
    match access {
        MediaAccess::Public => directives.to_string(),
        MediaAccess::Granted | MediaAccess::Denied => format!("private, {directives}"),
    }
}

/// What an HLS path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HlsPath<'a> {
    Master,
    Playlist(&'a str),
    Segment(&'a str, u64),
}

fn classify(path: &str) -> Option<HlsPath<'_>> {
    if path == "/master.m3u8" {
        return Some(HlsPath::Master);
    }
    let (name, file) = path.strip_prefix('/')?.split_once('/')?;
    if file == "index.m3u8" {
        Some(HlsPath::Playlist(name))
    } else {
        parse_segment_uri(file).map(|seq| HlsPath::Segment(name, seq))
    }
}

impl HttpHandler for HlsHandler {
    fn handle(&self, req: &HttpRequest<'_>) -> Option<HttpResponse> {
        let what = classify(req.path)?;
        let (stream, name) = match what {
            HlsPath::Master => (None, None),
            HlsPath::Playlist(n) | HlsPath::Segment(n, _) => (Some(self.stream(n)?), Some(n)),
        };
        let caller = Caller::new(req);
        // Master: CORS decided per answer (it depends on what the caller may see).
        let access = name.map_or(MediaAccess::Public, |n| self.auth.allows(&caller, n));
        let protected = name.is_some_and(|n| self.auth.is_protected(n));
        match req.method {
            "GET" => {}
            // A protected stream allows no cross-origin reads: its preflight grants nothing.
            "OPTIONS" if protected => {
                return Some(
                    HttpResponse::new(204, HttpBody::Empty)
                        .with_header("Allow", "GET, HEAD, OPTIONS")
                        .with_header("Vary", "Origin"),
                )
            }
            "OPTIONS" => return Some(HttpResponse::cors_preflight()),
            _ => {
                return Some(
                    media_cors(HttpResponse::text(405, "method not allowed\n"), access)
                        .with_header("Allow", "GET, HEAD, OPTIONS"),
                )
            }
        }
        if access == MediaAccess::Denied {
            log::debug!("HLS {}: 401 for {}", req.peer, req.path);
            return Some(MediaAuth::challenge(name.unwrap_or("master")));
        }
        Some(match (what, stream) {
            (HlsPath::Master, _) => self.master(&caller),
            (HlsPath::Playlist(_), Some(s)) => self.playlist(s, access),
            (HlsPath::Segment(_, seq), Some(s)) => self.segment(s, seq, access),
            // Stream looked up above for both.
            _ => HttpResponse::text(404, "not found\n"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::fanout::StreamHub;
    use crate::media::ring::MediaRing;
    use crate::media::FrameMeta;

    const T0_MS: u64 = 1_735_689_600_000;

    thread_local! {
        /// The simulated wall clock: Unix ms = SIM_WALL_OFFSET + the hub's `now_ms`.
        static SIM_NOW: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
        static SIM_WALL_OFFSET: std::cell::Cell<i64> = const { std::cell::Cell::new(T0_MS as i64) };
    }

    fn sim_wall() -> WallClock {
        Box::new(|| (SIM_NOW.get() as i64 + SIM_WALL_OFFSET.get()) as u64)
    }

    fn publish(hub: &mut StreamHub, meta: FrameMeta, data: &[u8], now_ms: u64) {
        SIM_NOW.set(now_ms);
        hub.publish(meta, data, now_ms).unwrap();
    }

    fn hub_and_stream(expect_audio: bool) -> (StreamHub, SharedHlsStream) {
        hub_and_stream_named(expect_audio, "live")
    }

    fn hub_and_stream_named(expect_audio: bool, name: &str) -> (StreamHub, SharedHlsStream) {
        let mut hub = StreamHub::new("live", MediaRing::new(1 << 20, 1024), 4);
        let cfg = HlsStreamConfig {
            name: name.into(),
            segmenter: HlsConfig {
                target_duration_ms: 1000,
                window_segments: 3,
                arena_len_bytes: 1 << 20,
                max_segments: 7,
            },
            expect_audio,
            max_bitrate_bps: 1_000_000,
        };
        let cursor = FrameCursor::start(&hub.ring, [true, true], 1 << 19);
        let s = Arc::new(Mutex::new(HlsStream::new(cfg, cursor, sim_wall())));
        assert!(hub.add_consumer(s.clone()));
        (hub, s)
    }

    /// Baseline 3.1 SPS from the testsrc: 320x240.
    fn params() -> VideoParams {
        crate::ingest::source::video_params(
            Codec::H264,
            &[],
            &[0x67, 0x42, 0xc0, 0x1f, 0xda, 0x05, 0x07, 0xe8, 0x40],
            &[0x68, 0xce, 0x3c, 0x80],
        )
    }

    fn vframe(hub: &mut StreamHub, i: u64) {
        let meta = FrameMeta {
            track: Track::Video,
            pts: i * 9000,
            dts: i * 9000,
            keyframe: i.is_multiple_of(10),
        };
        publish(hub, meta, &[0, 0, 0, 4, 0x65, 1, 2, 3], i * 100);
    }

    fn get(h: &HlsHandler, method: &str, path: &str) -> Option<HttpResponse> {
        h.handle(&HttpRequest {
            method,
            path,
            query: None,
            headers: &[],
            body: &[],
            peer: "127.0.0.1:1".parse().unwrap(),
        })
    }

    fn body(r: &HttpResponse) -> String {
        match &r.body {
            HttpBody::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
            HttpBody::Static(b) => String::from_utf8_lossy(b).into_owned(),
            _ => String::new(),
        }
    }

    fn hdr<'r>(r: &'r HttpResponse, name: &str) -> Option<&'r str> {
        r.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn routes_playlists_segments_and_nothing_else() {
        let (mut hub, s) = hub_and_stream(false);
        let h = HlsHandler::new(vec![s.clone()], Rc::new(MediaAuth::new([("live", None)])));
        // Before any frame: known names answer 503, unknown ones are not ours.
        assert_eq!(get(&h, "GET", "/live/index.m3u8").unwrap().status, 503);
        assert_eq!(get(&h, "GET", "/master.m3u8").unwrap().status, 503);
        for other in [
            "/nope/index.m3u8",
            "/live/seg1.mp4",
            "/live",
            "/",
            "/live/a/seg1.ts",
        ] {
            assert!(get(&h, "GET", other).is_none(), "{other}");
        }
        hub.set_video_params(params());
        for i in 0..35 {
            vframe(&mut hub, i);
        }
        let r = get(&h, "GET", "/live/index.m3u8").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(hdr(&r, "content-type"), Some(PLAYLIST_CONTENT_TYPE));
        assert_eq!(hdr(&r, "cache-control"), Some("no-cache"));
        assert_eq!(hdr(&r, "access-control-allow-origin"), Some("*"));
        let text = body(&r);
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:0\n"), "{text}");
        assert!(
            text.contains("#EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:00.000Z\n"),
            "{text}"
        );
        assert!(text.contains("seg2.ts"), "{text}");
        let r = get(&h, "GET", "/live/seg1.ts").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(hdr(&r, "content-type"), Some(SEGMENT_CONTENT_TYPE));
        assert_eq!(hdr(&r, "cache-control"), Some("max-age=6, immutable"));
        let HttpBody::Reader { len, reader } = &r.body else {
            panic!("segment body is read from the arena");
        };
        let mut buf = vec![0u8; *len + 10];
        assert_eq!(reader.read_at(0, &mut buf), Some(*len));
        assert_eq!(buf[0], 0x47);
        assert_eq!(
            get(&h, "GET", "/live/seg3.ts").unwrap().status,
            404,
            "still open"
        );
        assert_eq!(get(&h, "GET", "/live/seg99.ts").unwrap().status, 404);
        assert_eq!(get(&h, "OPTIONS", "/live/seg1.ts").unwrap().status, 204);
        assert_eq!(get(&h, "POST", "/live/index.m3u8").unwrap().status, 405);
        let m = get(&h, "GET", "/master.m3u8").unwrap();
        assert_eq!(
            body(&m),
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-STREAM-INF:BANDWIDTH=18048,RESOLUTION=320x240,\
             CODECS=\"avc1.42c01f\"\nlive/index.m3u8\n"
        );
    }

    fn get_with(
        h: &HlsHandler,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Option<HttpResponse> {
        h.handle(&HttpRequest {
            method,
            path,
            query: None,
            headers,
            body: &[],
            peer: "127.0.0.1:1".parse().unwrap(),
        })
    }

    #[test]
    fn protected_stream_needs_credentials_and_master_hides_it() {
        let (mut hub, open) = hub_and_stream_named(false, "live");
        let (mut chub, cam) = hub_and_stream_named(false, "cam");
        let a = crate::config::AuthConfig {
            user: "viewer".into(),
            password: "s3cret".into(),
        };
        let auth = Rc::new(MediaAuth::new([("live", None), ("cam", Some(&a))]));
        let h = HlsHandler::new(vec![open, cam], auth.clone());
        // Only the protected stream is live: strangers get a challenge for master too.
        chub.set_video_params(params());
        for i in 0..35 {
            vframe(&mut chub, i);
        }
        let m = get(&h, "GET", "/master.m3u8").unwrap();
        assert_eq!(m.status, 401);
        hub.set_video_params(params());
        for i in 0..35 {
            vframe(&mut hub, i);
        }
        let basic = [("Authorization", "Basic dmlld2VyOnMzY3JldA==")];
        let wrong = [("Authorization", "Basic dmlld2VyOndyb25n")];
        for path in ["/cam/index.m3u8", "/cam/seg1.ts", "/cam/seg99.ts"] {
            for hdrs in [&[][..], &wrong[..]] {
                let r = get_with(&h, "GET", path, hdrs).unwrap();
                assert_eq!(r.status, 401, "{path} {hdrs:?}");
                assert_eq!(
                    hdr(&r, "www-authenticate"),
                    Some("Basic realm=\"rillcast/cam\"")
                );
                assert_eq!(hdr(&r, "access-control-allow-origin"), None);
                assert!(!body(&r).contains("seg"), "{path}");
            }
        }
        let r = get_with(&h, "GET", "/cam/index.m3u8", &basic).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(hdr(&r, "access-control-allow-origin"), None);
        assert_eq!(hdr(&r, "cache-control"), Some("private, no-cache"));
        assert!(body(&r).contains("seg2.ts"));
        let r = get_with(&h, "GET", "/cam/seg1.ts", &basic).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(hdr(&r, "access-control-allow-origin"), None);
        assert_eq!(
            hdr(&r, "cache-control"),
            Some("private, max-age=6, immutable")
        );
        assert_eq!(
            get_with(&h, "GET", "/cam/seg99.ts", &basic).unwrap().status,
            404
        );
        // A cross-origin preflight for the protected stream grants nothing.
        let pre = get(&h, "OPTIONS", "/cam/seg1.ts").unwrap();
        assert_eq!(pre.status, 204);
        assert_eq!(hdr(&pre, "access-control-allow-origin"), None);
        // The open stream is unchanged.
        let r = get(&h, "GET", "/live/index.m3u8").unwrap();
        assert_eq!(
            (r.status, hdr(&r, "access-control-allow-origin")),
            (200, Some("*"))
        );
        // Master: strangers see the open stream only (with `*`), the viewer both (without).
        let m = get(&h, "GET", "/master.m3u8").unwrap();
        assert_eq!(m.status, 200);
        assert!(body(&m).contains("live/index.m3u8") && !body(&m).contains("cam/"));
        assert_eq!(hdr(&m, "access-control-allow-origin"), Some("*"));
        let m = get_with(&h, "GET", "/master.m3u8", &basic).unwrap();
        assert!(body(&m).contains("live/index.m3u8") && body(&m).contains("cam/index.m3u8"));
        assert_eq!(hdr(&m, "access-control-allow-origin"), None);
        // A web session (through the hook) works like the password.
        auth.set_session_check(Box::new(|r| r.header("cookie") == Some("s=1")));
        let r = get_with(&h, "GET", "/cam/seg1.ts", &[("Cookie", "s=1")]).unwrap();
        assert_eq!(r.status, 200);
        let r = get_with(&h, "GET", "/cam/seg1.ts", &[("Cookie", "s=2")]).unwrap();
        assert_eq!(r.status, 401);
    }

    /// NTP arrives mid-stream: the wall clock steps forward an hour (then back a minute). The
    /// segments already cut keep their labels; the next segment after each step carries the
    /// new time, and media durations are untouched.
    #[test]
    fn program_date_time_follows_a_clock_step_at_the_next_segment() {
        let (mut hub, s) = hub_and_stream(false);
        hub.set_video_params(params());
        SIM_WALL_OFFSET.set(T0_MS as i64);
        for i in 0..25 {
            vframe(&mut hub, i);
        }
        SIM_WALL_OFFSET.set(T0_MS as i64 + 3_600_000);
        for i in 25..45 {
            vframe(&mut hub, i);
        }
        let mut pl = String::new();
        assert!(lock(&s).segmenter().unwrap().render_media_playlist(&mut pl));
        assert_eq!(
            pl,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:1\n\
             #EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:01.000Z\n#EXTINF:1.000,\nseg1.ts\n\
             #EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:02.000Z\n#EXTINF:1.000,\nseg2.ts\n\
             #EXT-X-PROGRAM-DATE-TIME:2025-01-01T01:00:03.000Z\n#EXTINF:1.000,\nseg3.ts\n"
        );
        // A step back (a second NTP correction) is taken as it is: the label is the truth.
        SIM_WALL_OFFSET.set(T0_MS as i64 + 3_540_000);
        for i in 45..65 {
            vframe(&mut hub, i);
        }
        assert!(lock(&s).segmenter().unwrap().render_media_playlist(&mut pl));
        assert_eq!(
            pl,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:3\n\
             #EXT-X-PROGRAM-DATE-TIME:2025-01-01T01:00:03.000Z\n#EXTINF:1.000,\nseg3.ts\n\
             #EXT-X-PROGRAM-DATE-TIME:2025-01-01T01:00:04.000Z\n#EXTINF:1.000,\nseg4.ts\n\
             #EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:59:05.000Z\n#EXTINF:1.000,\nseg5.ts\n"
        );
        SIM_WALL_OFFSET.set(T0_MS as i64);
        assert!(!pl.contains("DISCONTINUITY"), "{pl}");
    }

    #[test]
    fn restart_marks_a_discontinuity_and_waits_for_audio() {
        let (mut hub, s) = hub_and_stream(true);
        hub.set_video_params(params());
        // Audio is promised: video alone is held back for TRACK_WAIT_MS.
        for i in 0..20 {
            vframe(&mut hub, i);
        }
        assert!(lock(&s).segmenter().is_none());
        for i in 20..60 {
            vframe(&mut hub, i); // now_ms = i * 100 passes 3000 at frame 30
        }
        assert!(lock(&s).segmenter().is_some());
        hub.source_restarted();
        for i in 60..90 {
            vframe(&mut hub, i);
        }
        let mut pl = String::new();
        assert!(lock(&s).segmenter().unwrap().render_media_playlist(&mut pl));
        assert!(pl.contains("#EXT-X-DISCONTINUITY\n"), "{pl}");
    }

    #[test]
    fn codec_strings() {
        let a = AudioParams {
            object_type: 2,
            sample_rate_index: 3,
            sample_rate: 48_000,
            channels: 1,
        };
        assert_eq!(
            codecs_string(Some(&params()), Some(&a)),
            "avc1.42c01f,mp4a.40.2"
        );
        assert_eq!(codecs_string(None, Some(&a)), "mp4a.40.2");
    }
}

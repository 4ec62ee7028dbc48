//! RTMP / RTMPS push shell: one task per `[[push]]` target on the media thread, driving the
//! sans-IO [`RtmpPublisher`] over a non-blocking TCP socket (optionally through rustls).
//!
//! Owns: name resolution (again on every attempt), TCP connect with a timeout, TLS, the
//! reconnect loop (exponential backoff with full jitter, capped, forever — also when the very
//! first connect fails), the half-open watchdog (the core's acknowledgement stall plus a
//! send-progress check here), the per-target [`PushStatus`] snapshot, and the hub
//! [`Consumer`] that queues every frame into the publisher's byte-capped media queue
//! synchronously (never blocking; the queue drops whole GOPs when the uplink is slow).
//!
//! Timestamps: the core restarts its timeline at 0 on each connection (each connection is a new
//! publish at the origin, starting with onMetaData, sequence headers and the newest keyframe
//! of the ring); within a connection they are monotonic per track. We chose that over
//! continuing the previous connection's clock because origins treat a re-publish as a new
//! stream anyway, and a gap of seconds at the start of a new publish confuses players more.
//!
//! Threads: the [`Feed`] consumer runs on the stream's ingest thread (inside the hub's lock,
//! then its own: lock order hub → feed); the task runs on the media thread and takes the feed's
//! lock only around publisher calls, never across a socket write or an `.await`.
//!
//! Must not: block the media thread (every socket call is non-blocking), hold a lock or a
//! `RefCell` borrow across an `.await`, log the stream key (only [`RtmpUrl::redacted`]), or allocate per
//! frame (buffers are allocated once per target; the publisher once per connection).

use crate::config::PushConfig;
use crate::ingest::source::Epoch;
use crate::media::fanout::{lock, Consumer, ConsumerRef, FrameCursor, SharedHub, StreamView};
use crate::media::Track;
use crate::proto::rtmp::handshake::C1_RANDOM_BYTES;
use crate::proto::rtmp::{
    RtmpConfig, RtmpError, RtmpPublisher, RtmpState, RtmpStats, RtmpUrl, StreamInfo,
};
use smol::future::FutureExt;
use smol::Async;
use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// TCP connect deadline per address, and the core's deadline from handshake to
/// `NetStream.Publish.Start`.
pub const CONNECT_TIMEOUT_MS: u64 = 10_000;
/// A connection that accepts no bytes while we have some queued, or acknowledges nothing
/// (RTMP spec 5.4.3) for this long, is treated as half-open and closed.
pub const HALF_OPEN_TIMEOUT_MS: u64 = 15_000;
/// First backoff ceiling; doubles per failed attempt up to `backoff_max_ms`.
pub const BACKOFF_MIN_MS: u64 = 500;
/// Full jitter may draw 0; never retry sooner than this (no hot loop).
pub const BACKOFF_FLOOR_MS: u64 = 250;
/// A session that published at least this long resets the backoff to its first step.
pub const STABLE_SESSION_MS: u64 = 10_000;
/// Shell read and write buffers (also in `budget::PUSH_FIXED_BYTES`).
const IO_BUFFER_BYTES: usize = 16 * 1024;
/// Kernel send buffer of a push socket: small, so the byte-capped media queue (not the
/// kernel) absorbs a slow uplink and GOP dropping bounds latency.
const SOCKET_SNDBUF_BYTES: usize = 64 * 1024;
/// Window Acknowledgement Size we announce: the origin acks every 256 KiB.
const WINDOW_ACK_BYTES: u32 = 256 * 1024;
/// Latency samples in flight (video frames queued but not yet written to the socket).
const LATENCY_MARKS: usize = 64;
/// How often a publishing target logs its counters (info level).
const STATS_LOG_INTERVAL_MS: u64 = 30_000;
/// At most one "GOPs dropped" warning per target this often.
const DROP_LOG_INTERVAL_MS: u64 = 10_000;

/// Where a push target is. One log line per change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushState {
    /// Configured with `enabled = false`.
    Idle,
    /// Resolving, connecting, TLS and RTMP handshakes, connect/createStream/publish.
    Connecting { attempt: u32 },
    /// `NetStream.Publish.Start` received; media flows.
    Publishing,
    /// Waiting before attempt `attempt + 1`; `retry_at_ms` is on the daemon's [`Epoch`] clock.
    BackingOff {
        attempt: u32,
        retry_at_ms: u64,
        last_error: String,
    },
}

impl PushState {
    /// Short name for APIs: idle, connecting, publishing, backing-off.
    pub fn name(&self) -> &'static str {
        match self {
            PushState::Idle => "idle",
            PushState::Connecting { .. } => "connecting",
            PushState::Publishing => "publishing",
            PushState::BackingOff { .. } => "backing-off",
        }
    }
}

/// Ingest-to-socket latency of video frames: from the hub handing the frame to the push
/// consumer until its last byte was accepted by the origin socket (TLS: encrypted and written).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencyStats {
    pub samples: u64,
    pub sum_us: u64,
    pub max_us: u64,
    pub last_us: u64,
}

impl LatencyStats {
    pub fn mean_us(&self) -> u64 {
        self.sum_us.checked_div(self.samples).unwrap_or(0)
    }
}

/// A snapshot of one target for logs and the web API. Updated by the target's task.
#[derive(Clone, Debug)]
pub struct PushStatus {
    /// Index in the config's `[[push]]` list.
    pub index: usize,
    /// The URL with the key redacted.
    pub url: String,
    /// The local stream published.
    pub stream: String,
    pub state: PushState,
    /// Epoch ms when `state` was entered.
    pub since_ms: u64,
    /// Connection attempts so far.
    pub attempts: u64,
    /// Times publishing started.
    pub publishes: u64,
    pub last_error: Option<String>,
    /// The current (or last) connection's counters.
    pub connection: RtmpStats,
    /// Over every connection, including the current one.
    pub bytes_sent_total: u64,
    pub dropped_gops_total: u64,
    pub dropped_frames_total: u64,
    pub latency: LatencyStats,
}

impl PushStatus {
    /// Milliseconds until the next attempt while backing off.
    pub fn next_try_in_ms(&self, now_ms: u64) -> Option<u64> {
        match &self.state {
            PushState::BackingOff { retry_at_ms, .. } => Some(retry_at_ms.saturating_sub(now_ms)),
            _ => None,
        }
    }
}

pub type PushStatusRef = Rc<RefCell<PushStatus>>;

/// The hub side of a target: the live publisher (while connected) and its read position.
struct Feed {
    publisher: Option<RtmpPublisher>,
    cursor: Option<FrameCursor>,
    /// Frames arrived since the task last looked.
    dirty: bool,
    waker: Option<Waker>,
    /// (byte offset at which a video frame's last byte leaves, when it was handed to us). The
    /// offset counts the media queue's record headers too, so it errs late by 4 bytes a record.
    marks: [(u64, Instant); LATENCY_MARKS],
    mark_head: usize,
    mark_len: usize,
    /// A fatal, non-protocol problem found while queueing (e.g. H.265 over RTMP).
    media_error: Option<RtmpError>,
}

impl Feed {
    fn new() -> Self {
        let now = Instant::now();
        Feed {
            publisher: None,
            cursor: None,
            dirty: false,
            waker: None,
            marks: [(0, now); LATENCY_MARKS],
            mark_head: 0,
            mark_len: 0,
            media_error: None,
        }
    }

    /// Queues every frame from the cursor to the ring's head into the publisher. Starts the
    /// cursor at the newest keyframe the first time after publishing began.
    fn pump(&mut self, view: &StreamView<'_>) {
        let Some(p) = self.publisher.as_mut() else {
            return;
        };
        if p.state() != RtmpState::Publishing {
            return;
        }
        let cursor = match &mut self.cursor {
            Some(c) => c,
            None => {
                p.set_stream_info(StreamInfo::new(view.video, view.audio.copied()));
                let wants = [view.video.is_some(), view.audio.is_some()];
                // The publisher's own queue absorbs lag (dropping whole GOPs); the cursor only
                // tracks the position, so it never skips on its own.
                self.cursor
                    .insert(FrameCursor::start(view.ring, wants, u64::MAX))
            }
        };
        let now = Instant::now();
        while let Some(f) = cursor.next(view.ring) {
            let before = p.stats().video_frames_sent;
            let r = match (f.meta.track, view.video, view.audio) {
                (Track::Video, Some(v), _) => p.send_video(f.meta, f.data, v),
                (Track::Audio, _, Some(a)) => p.send_audio(f.meta, f.data, a),
                _ => Ok(()),
            };
            match r {
                Ok(()) | Err(RtmpError::BadFrame) | Err(RtmpError::NotPublishing) => {}
                Err(e) => {
                    self.media_error = Some(e);
                    return;
                }
            }
            let st = p.stats();
            if st.video_frames_sent > before && self.mark_len < LATENCY_MARKS {
                let i = (self.mark_head + self.mark_len) % LATENCY_MARKS;
                self.marks[i] = (st.bytes_sent + st.queued_media_bytes, now);
                self.mark_len += 1;
            }
        }
    }

    /// Settles latency marks whose bytes have all been written (`written_bytes` = bytes of the
    /// publisher's output accepted by the socket).
    fn settle(&mut self, written_bytes: u64, lat: &mut LatencyStats) {
        let now = Instant::now();
        while self.mark_len > 0 {
            let (mark, at) = self.marks[self.mark_head];
            if mark > written_bytes {
                break;
            }
            let us = now.saturating_duration_since(at).as_micros() as u64;
            lat.samples += 1;
            lat.sum_us += us;
            lat.max_us = lat.max_us.max(us);
            lat.last_us = us;
            self.mark_head = (self.mark_head + 1) % LATENCY_MARKS;
            self.mark_len -= 1;
        }
    }

    fn reset(&mut self) {
        self.publisher = None;
        self.cursor = None;
        self.mark_len = 0;
        self.media_error = None;
    }
}

impl Consumer for Feed {
    fn on_frame(&mut self, view: &StreamView<'_>, _now_ms: u64) {
        if self.publisher.is_none() {
            return;
        }
        self.pump(view);
        self.dirty = true;
        if let Some(w) = &self.waker {
            w.wake_by_ref();
        }
    }

    fn is_closed(&self) -> bool {
        false
    }
}

/// One configured target: its status, and while enabled its task and hub consumer.
struct Running {
    status: PushStatusRef,
    enabled: bool,
    /// Dropping the task cancels it (closing the socket).
    task: Option<smol::Task<()>>,
    consumer: Option<(SharedHub, ConsumerRef)>,
}

impl Running {
    fn stop(&mut self) {
        self.task = None;
        if let Some((hub, c)) = self.consumer.take() {
            lock(&hub).remove_consumer(&c);
        }
    }
}

/// Every push target of the daemon, by config index. Lives on the media thread; the web API
/// reads statuses and restarts targets through [`crate::web::live::PushView`].
pub struct PushManager {
    hubs: Vec<(String, SharedHub, u32)>,
    epoch: Epoch,
    targets: RefCell<Vec<Running>>,
}

impl PushManager {
    /// `hubs`: (stream name, hub, the stream's max_bitrate_kbps for auto-sized queues).
    pub fn new(hubs: Vec<(String, SharedHub, u32)>, epoch: Epoch) -> Rc<Self> {
        Rc::new(PushManager {
            hubs,
            epoch,
            targets: RefCell::new(Vec::new()),
        })
    }

    /// Starts every target of `cfg` (queues as planned by [`MemoryPlan`](crate::media::budget::MemoryPlan)).
    pub fn start_all(&self, cfg: &crate::config::Config) {
        let mut t = self.targets.borrow_mut();
        for r in t.iter_mut() {
            r.stop();
        }
        t.clear();
        for (i, p) in cfg.push.iter().enumerate() {
            t.push(self.start(i, p));
        }
    }

    /// The full status snapshot of target `index` (latency, per-connection counters).
    pub fn snapshot(&self, index: usize) -> Option<PushStatus> {
        self.targets
            .borrow()
            .get(index)
            .map(|r| r.status.borrow().clone())
    }

    fn start(&self, index: usize, cfg: &PushConfig) -> Running {
        let hub = self.hubs.iter().find(|(n, _, _)| *n == cfg.stream);
        let kbps = hub.map_or(4000, |h| h.2);
        let hub = hub.map(|h| h.1.clone());
        let (status, task, consumer) =
            spawn_push(index, cfg, cfg.queue_bytes(kbps), hub, self.epoch);
        Running {
            status,
            enabled: cfg.enabled,
            task,
            consumer,
        }
    }
}

impl crate::web::live::PushView for PushManager {
    fn status(&self, index: usize, cfg: &PushConfig) -> Option<crate::web::status::PushStatus> {
        let targets = self.targets.borrow();
        let r = targets.get(index)?;
        let st = r.status.borrow();
        let now = self.epoch.now_ms();
        let (state, attempt) = match &st.state {
            PushState::Idle if !r.enabled => ("disabled", 0),
            PushState::Idle => ("idle", 0),
            PushState::Connecting { attempt } => ("connecting", *attempt),
            PushState::Publishing => ("publishing", 0),
            PushState::BackingOff { attempt, .. } => ("backing_off", *attempt),
        };
        Some(crate::web::status::PushStatus {
            index,
            stream: cfg.stream.clone(),
            url: st.url.clone(),
            enabled: r.enabled,
            state,
            last_error: st.last_error.clone(),
            next_retry_s: st.next_try_in_ms(now).map(|ms| ms.div_ceil(1000)),
            attempt,
            reconnects: st.publishes.saturating_sub(1),
            bytes_sent: st.bytes_sent_total,
            gops_dropped: st.dropped_gops_total,
        })
    }

    fn apply(&self, restart: &[usize], cfg: &crate::config::Config) {
        let mut t = self.targets.borrow_mut();
        while t.len() > cfg.push.len() {
            if let Some(mut r) = t.pop() {
                r.stop();
            }
        }
        // Restarts after start-up size the queue the same way the plan did.
        for &i in restart {
            if let (Some(slot), Some(p)) = (t.get_mut(i), cfg.push.get(i)) {
                slot.stop();
                *slot = self.start(i, p);
            }
        }
        // New targets (appended by the API) start whether or not `restart` lists them.
        while t.len() < cfg.push.len() {
            let i = t.len();
            t.push(self.start(i, &cfg.push[i]));
        }
    }
}

/// What [`spawn_push`] returns: the status, the task (None when not started) and the consumer
/// registered on the hub.
pub type Spawned = (
    PushStatusRef,
    Option<smol::Task<()>>,
    Option<(SharedHub, ConsumerRef)>,
);

/// Starts target `index` (config `cfg`) publishing `hub`: returns its status snapshot, its task
/// and its hub consumer. A disabled target stays `Idle` and starts nothing. `queue_bytes` comes
/// from the memory plan.
pub fn spawn_push(
    index: usize,
    cfg: &PushConfig,
    queue_bytes: usize,
    hub: Option<SharedHub>,
    epoch: Epoch,
) -> Spawned {
    let url = RtmpUrl::parse_with_key(&cfg.url, cfg.key.as_deref());
    let shown = match &url {
        Ok(u) => u.redacted().to_string(),
        Err(_) => "<invalid url>".to_string(),
    };
    let status = Rc::new(RefCell::new(PushStatus {
        index,
        url: shown.clone(),
        stream: cfg.stream.clone(),
        state: PushState::Idle,
        since_ms: epoch.now_ms(),
        attempts: 0,
        publishes: 0,
        last_error: None,
        connection: RtmpStats::default(),
        bytes_sent_total: 0,
        dropped_gops_total: 0,
        dropped_frames_total: 0,
        latency: LatencyStats::default(),
    }));
    let fail = |status: PushStatusRef, e: String| -> Spawned {
        log::error!("push[{index}] {shown}: {e}");
        status.borrow_mut().last_error = Some(e);
        (status, None, None)
    };
    let url = match url {
        // Config validation parses the same URL, so this is only reached when embedding.
        Err(e) => return fail(status, e.to_string()),
        Ok(u) => u,
    };
    if !cfg.enabled {
        log::info!("push[{index}] {shown}: idle (enabled = false)");
        return (status, None, None);
    }
    if url.key.is_empty() {
        return fail(
            status,
            "no stream key: add it to the URL path or set key = \"...\"".into(),
        );
    }
    let Some(hub) = hub else {
        return fail(status, format!("no stream \"{}\"", cfg.stream));
    };
    let feed = Arc::new(Mutex::new(Feed::new()));
    let consumer: ConsumerRef = feed.clone();
    if !lock(&hub).add_consumer(consumer.clone()) {
        return fail(
            status,
            "the stream has no room for another consumer (raise rtsp.max_viewers)".into(),
        );
    }
    let target = Target {
        index,
        url,
        shown: shown.clone(),
        ca_file: cfg.ca_file.clone(),
        backoff_max_ms: cfg.backoff_max_ms as u64,
        queue_bytes,
        hub: hub.clone(),
        epoch,
        status: status.clone(),
        feed,
        jitter: Jitter::new(index as u64),
        prev: RtmpStats::default(),
        inbuf: vec![0; IO_BUFFER_BYTES].into_boxed_slice(),
        out: vec![0; IO_BUFFER_BYTES].into_boxed_slice(),
    };
    let task = crate::net::spawn(target.run());
    (status, Some(task), Some((hub, consumer)))
}

/// A small xorshift generator seeded from the OS (std's `RandomState`); for backoff jitter and
/// the handshake's C1 filler, neither of which is a secret.
struct Jitter(u64);

impl Jitter {
    fn new(salt: u64) -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(salt);
        h.write_u128(Instant::now().elapsed().as_nanos());
        Jitter(h.finish() | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Backoff before attempt `attempt + 1` (attempt >= 1): full jitter (a uniform draw from 0 to
/// the exponential ceiling, AWS architecture blog "Exponential Backoff And Jitter"), never below
/// [`BACKOFF_FLOOR_MS`].
pub fn backoff_ms(attempt: u32, max_ms: u64, random: u64) -> u64 {
    let shift = attempt.saturating_sub(1).min(20);
    let ceiling = (BACKOFF_MIN_MS << shift).min(max_ms).max(BACKOFF_FLOOR_MS);
    (random % (ceiling + 1)).max(BACKOFF_FLOOR_MS)
}

/// Why a session ended, and whether it had published long enough to reset the backoff.
struct SessionEnd {
    error: String,
    stable: bool,
}

struct Target {
    index: usize,
    url: RtmpUrl,
    shown: String,
    #[cfg_attr(not(feature = "rtmps"), allow(dead_code))]
    ca_file: Option<std::path::PathBuf>,
    backoff_max_ms: u64,
    queue_bytes: usize,
    hub: SharedHub,
    epoch: Epoch,
    status: PushStatusRef,
    feed: Arc<Mutex<Feed>>,
    jitter: Jitter,
    /// Sum of the finished connections' counters.
    prev: RtmpStats,
    inbuf: Box<[u8]>,
    out: Box<[u8]>,
}

/// The socket, with or without TLS on top.
struct Conn {
    sock: Async<TcpStream>,
    #[cfg(feature = "rtmps")]
    tls: Option<rustls::ClientConnection>,
}

impl Target {
    fn set_state(&mut self, state: PushState) {
        let now = self.epoch.now_ms();
        match &state {
            PushState::Idle => log::info!("push[{}] {}: idle", self.index, self.shown),
            PushState::Connecting { attempt } => {
                log::info!("push[{}] {}: connecting (attempt {attempt})", self.index, self.shown)
            }
            PushState::Publishing => log::info!("push[{}] {}: publishing", self.index, self.shown),
            PushState::BackingOff {
                attempt,
                retry_at_ms,
                last_error,
            } => log::warn!(
                "push[{}] {}: backing off, next try in {:.1} s (attempt {attempt} failed: {last_error})",
                self.index,
                self.shown,
                retry_at_ms.saturating_sub(now) as f64 / 1000.0
            ),
        }
        let mut st = self.status.borrow_mut();
        if let PushState::BackingOff { last_error, .. } = &state {
            st.last_error = Some(last_error.clone());
        }
        st.state = state;
        st.since_ms = now;
    }

    async fn run(mut self) {
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            self.status.borrow_mut().attempts += 1;
            self.set_state(PushState::Connecting { attempt });
            let end = self.session().await;
            self.end_connection();
            if end.stable {
                attempt = 1;
            }
            let delay = backoff_ms(attempt, self.backoff_max_ms, self.jitter.next());
            let retry_at_ms = self.epoch.now_ms() + delay;
            self.set_state(PushState::BackingOff {
                attempt,
                retry_at_ms,
                last_error: end.error,
            });
            smol::Timer::after(Duration::from_millis(delay)).await;
        }
    }

    /// Folds the finished connection's counters into the totals and detaches the publisher.
    fn end_connection(&mut self) {
        let mut feed = lock(&self.feed);
        if let Some(p) = &feed.publisher {
            let s = p.stats();
            self.prev.bytes_sent += s.bytes_sent;
            self.prev.dropped_gops += s.dropped_gops;
            self.prev.dropped_video_frames += s.dropped_video_frames;
            self.prev.dropped_audio_frames += s.dropped_audio_frames;
        }
        feed.reset();
    }

    fn publish_stats(&self, cur: RtmpStats, lat: Option<LatencyStats>) {
        let mut st = self.status.borrow_mut();
        st.connection = cur;
        st.bytes_sent_total = self.prev.bytes_sent + cur.bytes_sent;
        st.dropped_gops_total = self.prev.dropped_gops + cur.dropped_gops;
        st.dropped_frames_total = self.prev.dropped_video_frames
            + self.prev.dropped_audio_frames
            + cur.dropped_video_frames
            + cur.dropped_audio_frames;
        if let Some(l) = lat {
            st.latency = l;
        }
    }

    /// Resolves, connects and publishes until the connection fails; returns why.
    async fn session(&mut self) -> SessionEnd {
        let fail = |error: String| SessionEnd {
            error,
            stable: false,
        };
        let conn = match self.connect().await {
            Ok(c) => c,
            Err(e) => return fail(e),
        };
        let mut c1 = [0u8; C1_RANDOM_BYTES];
        for chunk in c1.chunks_mut(8) {
            let r = self.jitter.next().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
        let config = RtmpConfig {
            media_queue_bytes: self.queue_bytes,
            chunk_size: 4096,
            window_ack_bytes: WINDOW_ACK_BYTES,
            connect_timeout_ms: CONNECT_TIMEOUT_MS,
            ack_stall_timeout_ms: HALF_OPEN_TIMEOUT_MS,
        };
        let p = RtmpPublisher::with_config(self.url.clone(), self.epoch.now_ms(), c1, config);
        lock(&self.feed).publisher = Some(p);
        self.drive(conn).await
    }

    async fn connect(&mut self) -> Result<Conn, String> {
        let host = self.url.host.clone();
        let addrs = smol::net::resolve((host.as_str(), self.url.port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?;
        if addrs.is_empty() {
            return Err(format!("cannot resolve {host}: no addresses"));
        }
        let mut last = String::new();
        let mut sock = None;
        for addr in addrs {
            let timeout = async {
                smol::Timer::after(Duration::from_millis(CONNECT_TIMEOUT_MS)).await;
                Err(std::io::Error::new(
                    ErrorKind::TimedOut,
                    "connect timed out",
                ))
            };
            match Async::<TcpStream>::connect(addr).or(timeout).await {
                Ok(s) => {
                    sock = Some(s);
                    break;
                }
                Err(e) => last = format!("connect {addr}: {e}"),
            }
        }
        let sock = sock.ok_or(last)?;
        let _ = sock.get_ref().set_nodelay(true);
        let _ = socket2::SockRef::from(sock.get_ref()).set_send_buffer_size(SOCKET_SNDBUF_BYTES);
        #[cfg(feature = "rtmps")]
        {
            let tls = if self.url.tls {
                let cfg = tls::client_config(self.ca_file.as_deref())?;
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|e| format!("TLS: bad server name {host}: {e}"))?;
                Some(rustls::ClientConnection::new(cfg, name).map_err(|e| format!("TLS: {e}"))?)
            } else {
                None
            };
            Ok(Conn { sock, tls })
        }
        #[cfg(not(feature = "rtmps"))]
        {
            if self.url.tls {
                return Err("rtmps:// needs a build with the `rtmps` feature".into());
            }
            Ok(Conn { sock })
        }
    }

    /// The I/O loop of one connection.
    async fn drive(&mut self, mut conn: Conn) -> SessionEnd {
        let (mut out_start, mut out_end) = (0usize, 0usize);
        let mut last_progress_ms = self.epoch.now_ms();
        let mut published_at: Option<u64> = None;
        let mut lat = self.status.borrow().latency;
        let mut next_stats_log = self.epoch.now_ms() + STATS_LOG_INTERVAL_MS;
        let (mut logged_drops, mut next_drop_log) = (0u64, 0u64);
        // Where the session was before it failed, to word "the origin closed" usefully.
        let mut last_phase = Phase::Handshake;
        let end = |published_at: Option<u64>, now: u64, error: String| SessionEnd {
            error,
            stable: published_at.is_some_and(|t| now.saturating_sub(t) >= STABLE_SESSION_MS),
        };
        loop {
            let now = self.epoch.now_ms();
            // 1. Read everything the socket has.
            if let Err(e) = self.read_input(&mut conn, now) {
                return end(published_at, now, e);
            }
            // 2. Deadlines of the core (connect, acknowledgement watchdog).
            {
                let mut feed = lock(&self.feed);
                // Set in `session` before `drive`, removed only after it returns.
                let Some(p) = feed.publisher.as_mut() else {
                    return end(published_at, now, "publisher missing".into());
                };
                if p.poll_timeout().is_some_and(|t| t <= now) {
                    p.handle_timeout(now);
                }
            }
            // 3. State changes.
            let (state, media_error) = {
                let feed = lock(&self.feed);
                (feed.publisher.as_ref().map(|p| p.state()), feed.media_error)
            };
            if let Some(e) = media_error {
                return end(published_at, now, e.to_string());
            }
            match state {
                Some(RtmpState::Failed { reason }) => {
                    return end(published_at, now, describe(reason, last_phase));
                }
                Some(RtmpState::Handshaking) => {}
                Some(RtmpState::Connecting) => {
                    let sid = lock(&self.feed)
                        .publisher
                        .as_ref()
                        .map_or(0, |p| p.stream_id());
                    last_phase = if sid == 0 {
                        Phase::Connect
                    } else {
                        Phase::Publish
                    };
                }
                Some(RtmpState::Publishing) if published_at.is_none() => {
                    published_at = Some(now);
                    last_phase = Phase::Media;
                    self.status.borrow_mut().publishes += 1;
                    self.set_state(PushState::Publishing);
                    // Start at the newest keyframe the ring holds (the GOP cache).
                    let hub = lock(&self.hub);
                    lock(&self.feed).pump(&hub.view());
                }
                _ => {}
            }
            // 4. Write what the socket takes.
            let wrote = match self.write_output(&mut conn, &mut out_start, &mut out_end) {
                Ok(w) => w,
                Err(e) => return end(published_at, now, e),
            };
            if wrote || !conn.has_pending(out_start, out_end) {
                last_progress_ms = now;
            }
            // 5. Send-progress watchdog: bytes waiting, socket accepting nothing.
            if now.saturating_sub(last_progress_ms) >= HALF_OPEN_TIMEOUT_MS {
                return end(
                    published_at,
                    now,
                    format!(
                        "half-open connection: the socket accepted nothing for {} s",
                        HALF_OPEN_TIMEOUT_MS / 1000
                    ),
                );
            }
            // 6. Counters and latency.
            let cur = {
                let mut feed = lock(&self.feed);
                let cur = feed
                    .publisher
                    .as_ref()
                    .map(|p| p.stats())
                    .unwrap_or_default();
                if let Some(written) = conn.written_bytes(cur.bytes_sent, out_start, out_end) {
                    // A mark over-counts the queue's 4-byte record headers, so with the queue
                    // drained every queued frame has left, whatever the marks say.
                    let drained = cur.queued_media_bytes == 0 && written == cur.bytes_sent;
                    feed.settle(if drained { u64::MAX } else { written }, &mut lat);
                }
                cur
            };
            self.publish_stats(cur, Some(lat));
            let drops = self.prev.dropped_gops + cur.dropped_gops;
            if drops > logged_drops && now >= next_drop_log {
                logged_drops = drops;
                next_drop_log = now + DROP_LOG_INTERVAL_MS;
                log::warn!(
                    "push[{}] {}: uplink slower than the stream: {drops} GOPs dropped so far \
                     (queue {} KiB)",
                    self.index,
                    self.shown,
                    self.queue_bytes / 1024
                );
            }
            if published_at.is_some() && now >= next_stats_log {
                next_stats_log = now + STATS_LOG_INTERVAL_MS;
                log::info!(
                    "push[{}] {}: {} kB sent, {} GOPs dropped, latency mean {:.1} ms max {:.1} ms",
                    self.index,
                    self.shown,
                    (self.prev.bytes_sent + cur.bytes_sent) / 1000,
                    self.prev.dropped_gops + cur.dropped_gops,
                    lat.mean_us() as f64 / 1000.0,
                    lat.max_us as f64 / 1000.0
                );
            }
            // 7. Sleep until the socket, a frame or a deadline needs us.
            let mut deadline = now + 1000;
            if let Some(t) = lock(&self.feed)
                .publisher
                .as_ref()
                .and_then(|p| p.poll_timeout())
            {
                deadline = deadline.min(t.max(now + 1));
            }
            let pending = conn.has_pending(out_start, out_end);
            if pending {
                deadline = deadline.min(last_progress_ms + HALF_OPEN_TIMEOUT_MS);
            }
            let at = self.epoch.0 + Duration::from_millis(deadline);
            let feed = self.feed.clone();
            let frames = std::future::poll_fn(move |cx| {
                let mut f = lock(&feed);
                if f.dirty {
                    f.dirty = false;
                    return Poll::Ready(());
                }
                if !f.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    f.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            });
            let sock = &conn.sock;
            let readable = async {
                let _ = sock.readable().await;
            };
            let writable = async {
                if pending {
                    let _ = sock.writable().await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            let timer = async {
                smol::Timer::at(at).await;
            };
            readable.or(writable).or(frames).or(timer).await;
        }
    }

    /// Reads until the socket would block, feeding the publisher (through TLS if any).
    fn read_input(&mut self, conn: &mut Conn, now: u64) -> Result<(), String> {
        loop {
            let n = match conn.sock.get_ref().read(&mut self.inbuf) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("read: {e}")),
            };
            let mut feed = lock(&self.feed);
            // Present for the whole of `drive`.
            let Some(p) = feed.publisher.as_mut() else {
                return Err("publisher missing".into());
            };
            if n == 0 {
                p.handle_eof();
                return Ok(());
            }
            #[cfg(feature = "rtmps")]
            if let Some(tls) = &mut conn.tls {
                let mut data = &self.inbuf[..n];
                while !data.is_empty() {
                    tls.read_tls(&mut data)
                        .map_err(|e| format!("TLS read: {e}"))?;
                    tls.process_new_packets().map_err(tls::describe)?;
                    let mut plain = [0u8; 4096];
                    loop {
                        match tls.reader().read(&mut plain) {
                            Ok(0) => {
                                p.handle_eof();
                                return Ok(());
                            }
                            Ok(k) => {
                                // A protocol error fails the publisher; the caller reports it.
                                let _ = p.handle_input(&plain[..k], now);
                            }
                            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                            Err(e) => return Err(format!("TLS: {e}")),
                        }
                    }
                }
                continue;
            }
            // A protocol error fails the publisher; the caller reports it from its state.
            let _ = p.handle_input(&self.inbuf[..n], now);
        }
    }

    /// Moves publisher output to the socket until it would block. Returns whether any byte
    /// was written.
    fn write_output(
        &mut self,
        conn: &mut Conn,
        out_start: &mut usize,
        out_end: &mut usize,
    ) -> Result<bool, String> {
        let mut wrote = false;
        #[cfg(feature = "rtmps")]
        if let Some(tls) = &mut conn.tls {
            let mut sock = conn.sock.get_ref();
            loop {
                if tls.wants_write() {
                    match tls.write_tls(&mut sock) {
                        Ok(_) => {
                            wrote = true;
                            continue;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(wrote),
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) => return Err(format!("write: {e}")),
                    }
                }
                let n = match lock(&self.feed).publisher.as_mut() {
                    Some(p) => p.poll_transmit(&mut self.out),
                    None => 0,
                };
                if n == 0 {
                    return Ok(wrote);
                }
                // With the TLS send buffer empty, rustls takes 16 KiB of plaintext whole
                // (its buffer limit is 64 KiB).
                tls.writer()
                    .write_all(&self.out[..n])
                    .map_err(|e| format!("TLS: {e}"))?;
            }
        }
        loop {
            if *out_start == *out_end {
                let mut feed = lock(&self.feed);
                let Some(p) = feed.publisher.as_mut() else {
                    return Ok(wrote);
                };
                let n = p.poll_transmit(&mut self.out);
                if n == 0 {
                    return Ok(wrote);
                }
                (*out_start, *out_end) = (0, n);
            }
            match conn.sock.get_ref().write(&self.out[*out_start..*out_end]) {
                Ok(0) => return Err("write: socket closed".into()),
                Ok(k) => {
                    *out_start += k;
                    wrote = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(wrote),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("write: {e}")),
            }
        }
    }
}

impl Conn {
    /// Bytes waiting for the socket (in our buffer or, with TLS, in rustls's).
    fn has_pending(&self, out_start: usize, out_end: usize) -> bool {
        #[cfg(feature = "rtmps")]
        if let Some(tls) = &self.tls {
            return tls.wants_write();
        }
        out_start < out_end
    }

    /// How much of the publisher's output the socket has taken, when known exactly.
    fn written_bytes(&self, handed_out: u64, out_start: usize, out_end: usize) -> Option<u64> {
        #[cfg(feature = "rtmps")]
        if let Some(tls) = &self.tls {
            return (!tls.wants_write()).then_some(handed_out);
        }
        Some(handed_out - (out_end - out_start) as u64)
    }
}

/// How far a session got, for wording a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Handshake,
    /// `connect` sent, no stream yet.
    Connect,
    /// `createStream` answered, `publish` sent.
    Publish,
    Media,
}

/// The core's failure reason, worded for the log and the API.
fn describe(e: RtmpError, phase: Phase) -> String {
    match e {
        RtmpError::PeerClosed => match phase {
            Phase::Handshake => {
                "the origin closed the connection during the RTMP handshake (not an RTMP server, \
                 or does it need rtmps://?)"
                    .into()
            }
            Phase::Connect => {
                "the origin closed the connection after connect (wrong app, or not allowed?)".into()
            }
            Phase::Publish => {
                "the origin closed the connection after publish (stream key refused or in use?)"
                    .into()
            }
            Phase::Media => "the origin closed the connection".into(),
        },
        RtmpError::AckStall => format!(
            "half-open connection: the origin acknowledged nothing for {} s",
            HALF_OPEN_TIMEOUT_MS / 1000
        ),
        RtmpError::ConnectTimeout => format!(
            "no NetStream.Publish.Start within {} s",
            CONNECT_TIMEOUT_MS / 1000
        ),
        e => e.to_string(),
    }
}

#[cfg(feature = "rtmps")]
mod tls {
    //! rustls client configuration: system CA bundle plus an optional `ca_file`, with the
    //! `ring` provider. Cached per thread by `ca_file`, so many targets share one root store.

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    use std::cell::RefCell;
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    /// Where Debian/Ubuntu, Fedora and Alpine/Buildroot keep the CA bundle.
    const SYSTEM_BUNDLES: [&str; 3] = [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ];

    type Cache = Vec<(Option<PathBuf>, Arc<rustls::ClientConfig>)>;

    thread_local! {
        static CACHE: RefCell<Cache> = const { RefCell::new(Vec::new()) };
    }

    pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
        let hit = CACHE.with(|c| {
            c.borrow()
                .iter()
                .find(|(k, _)| k.as_deref() == ca_file)
                .map(|(_, v)| v.clone())
        });
        if let Some(cfg) = hit {
            return Ok(cfg);
        }
        let mut roots = rustls::RootCertStore::empty();
        if let Some(bundle) = SYSTEM_BUNDLES.iter().find(|p| Path::new(p).exists()) {
            if let Ok(iter) = CertificateDer::pem_file_iter(bundle) {
                roots.add_parsable_certificates(iter.flatten());
            }
        }
        if let Some(path) = ca_file {
            let iter = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            let mut n = 0;
            for cert in iter {
                let cert = cert.map_err(|e| format!("ca_file {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
                n += 1;
            }
            if n == 0 {
                return Err(format!("ca_file {}: no PEM certificates", path.display()));
            }
        }
        if roots.is_empty() {
            return Err(
                "TLS: no CA certificates (no system bundle found; set ca_file)".to_string(),
            );
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let cfg = Arc::new(cfg);
        CACHE.with(|c| {
            c.borrow_mut()
                .push((ca_file.map(Path::to_path_buf), cfg.clone()))
        });
        Ok(cfg)
    }

    /// A TLS error worded for the log: certificate problems say so first.
    pub fn describe(e: rustls::Error) -> String {
        match e {
            rustls::Error::InvalidCertificate(c) => {
                format!("TLS certificate error: {c:?} (is ca_file the origin's CA?)")
            }
            e => format!("TLS: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_full_jitter_and_is_capped() {
        // The ceiling doubles from 500 ms: a draw of u64::MAX-ish lands near it.
        for (attempt, ceiling) in [(1, 500), (2, 1000), (3, 2000), (7, 30_000), (60, 30_000)] {
            let hi = backoff_ms(attempt, 30_000, ceiling);
            assert_eq!(hi, ceiling, "attempt {attempt}");
            assert!(backoff_ms(attempt, 30_000, u64::MAX) <= ceiling);
        }
        // Full jitter: small draws are allowed but never below the floor.
        assert_eq!(backoff_ms(5, 30_000, 0), BACKOFF_FLOOR_MS);
        assert_eq!(backoff_ms(5, 30_000, 1000), 1000);
        // A 1 s cap caps.
        assert_eq!(backoff_ms(10, 1000, 1000), 1000);
        assert_eq!(backoff_ms(10, 1000, 1001), BACKOFF_FLOOR_MS);
    }

    #[test]
    fn jitter_spreads() {
        let mut j = Jitter::new(1);
        let draws: Vec<u64> = (0..1000).map(|_| backoff_ms(7, 30_000, j.next())).collect();
        let below_half = draws.iter().filter(|&&d| d < 15_000).count();
        assert!((350..650).contains(&below_half), "{below_half}");
        assert!(draws
            .iter()
            .all(|&d| (BACKOFF_FLOOR_MS..=30_000).contains(&d)));
    }

    /// The manager against a closed port: the first connect fails, the target backs off with
    /// the reason, and the web's restart/disable path removes its consumer from the hub.
    #[test]
    fn manager_backs_off_and_applies_changes() {
        use crate::config::Config;
        use crate::media::fanout::StreamHub;
        use crate::media::ring::MediaRing;
        use crate::web::live::PushView;
        // A port nothing listens on: bind, read the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let text = format!(
            "[[push]]\nurl = \"rtmp://127.0.0.1:{port}/live/secretkey\"\nbackoff_max_ms = 1000\n"
        );
        let mut cfg = Config::parse(&text, "t").unwrap();
        let hub: SharedHub = Arc::new(Mutex::new(StreamHub::new(
            "live",
            MediaRing::new(64 * 1024, 64),
            4,
        )));
        let epoch = Epoch(Instant::now());
        let m = PushManager::new(vec![("live".into(), hub.clone(), 4000)], epoch);
        m.start_all(&cfg);
        assert_eq!(lock(&hub).consumer_count(), 1);
        let m2 = m.clone();
        let st = crate::net::block_on(async move {
            for _ in 0..100 {
                smol::Timer::after(Duration::from_millis(20)).await;
                if let Some(s) = PushView::status(&*m2, 0, &PushConfig::default()) {
                    if s.state == "backing_off" {
                        return Some(s);
                    }
                }
            }
            None
        })
        .expect("no backing-off state within 2 s");
        assert_eq!(st.attempt, 1);
        assert!(st.next_retry_s.is_some());
        let e = st.last_error.unwrap();
        assert!(e.contains("connect 127.0.0.1"), "{e}");
        assert!(!st.url.contains("secretkey"), "{}", st.url);
        // Disabled through the API: the task stops, the consumer leaves the hub.
        cfg.push[0].enabled = false;
        m.apply(&[0], &cfg);
        assert_eq!(lock(&hub).consumer_count(), 0);
        assert_eq!(
            PushView::status(&*m, 0, &cfg.push[0]).unwrap().state,
            "disabled"
        );
        // Removed: nothing left.
        cfg.push.clear();
        m.apply(&[], &cfg);
        assert!(m.snapshot(0).is_none());
    }

    #[test]
    fn latency_marks_settle_in_order() {
        let mut f = Feed::new();
        let t0 = Instant::now();
        f.marks[0] = (100, t0);
        f.marks[1] = (300, t0);
        f.mark_len = 2;
        let mut lat = LatencyStats::default();
        f.settle(99, &mut lat);
        assert_eq!(lat.samples, 0);
        f.settle(299, &mut lat);
        assert_eq!((lat.samples, f.mark_len), (1, 1));
        f.settle(1000, &mut lat);
        assert_eq!((lat.samples, f.mark_len), (2, 0));
        assert!(lat.max_us >= lat.last_us);
    }
}

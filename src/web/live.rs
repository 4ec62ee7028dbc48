//! The web API's view of the running daemon: implements [`Runtime`] over the stream hubs, the
//! RTSP server and the per-stream source tasks, and runs the two background tasks (the
//! once-a-second sampler/observer and the webhook sender).
//!
//! Owns: the stop flags of the per-stream input threads (so a source change restarts only that
//! stream's input: the old threads see their flag after their next read and exit, dropping an
//! `exec` encoder), the samplers, and the push-target view until the push shell reports real
//! states.
//!
//! Must not: run on a frame path. Everything here runs once a second or per API call.

use super::api::{ChangePlan, Clock, Runtime, WebApi};
use super::metrics::ServerCounters;
use super::status::{
    mask_push_url, HubSample, MemoryStatus, ProtocolCounts, PushStatus, Status, StreamSampler,
    StreamStatus, ViewerInfo,
};
use crate::config::{Config, SourceConfig, SourceKind};
use crate::ingest::source::{self, Epoch};
use crate::media::budget::{MemoryPlan, StreamPlan};
use crate::media::fanout::{lock, SharedHub};
use crate::media::ring::Lookup;
use crate::media::{Codec, Track};
use crate::net::rtsp::RtspServer;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One stream as the web layer manages it.
pub struct LiveStream {
    pub name: String,
    pub hub: SharedHub,
    pub plan: StreamPlan,
    /// Shared with the sampler thread.
    sampler: Arc<Mutex<StreamSampler>>,
    /// The running input threads' stop flag; replaced on every (re)start.
    stop: RefCell<Arc<AtomicBool>>,
    api_restarts: std::cell::Cell<u64>,
}

/// What a push shell reports per target (filled in when the push shell is built in).
pub trait PushView {
    /// The status of target `index` as configured by `cfg`.
    fn status(&self, index: usize, cfg: &crate::config::PushConfig) -> Option<PushStatus>;
    /// (Re)starts the given targets with the new config; stops removed ones.
    fn apply(&self, restart: &[usize], cfg: &Config);
}

/// The daemon side of the web API.
pub struct LiveRuntime {
    pub streams: Vec<LiveStream>,
    pub rtsp: Rc<RtspServer>,
    pub epoch: Epoch,
    pub started: Instant,
    /// The plan's figure; the push targets' share follows live adds and removals (each was
    /// checked against the ceiling before it was saved: `boot::check`).
    pub planned_bytes: std::cell::Cell<u64>,
    /// The plan without the push targets (fixed at start).
    pub fixed_bytes: u64,
    pub ceiling_bytes: u64,
    pub rtsp_port: u16,
    pub http_port: u16,
    pub push: RefCell<Option<Rc<dyn PushView>>>,
}

impl LiveRuntime {
    pub fn new(
        plan: &MemoryPlan,
        hubs: Vec<(StreamPlan, SharedHub)>,
        rtsp: Rc<RtspServer>,
        epoch: Epoch,
        ports: (u16, u16),
    ) -> Self {
        LiveRuntime {
            streams: hubs
                .into_iter()
                .map(|(plan, hub)| LiveStream {
                    name: plan.name.clone(),
                    hub,
                    plan,
                    sampler: Arc::new(Mutex::new(StreamSampler::default())),
                    stop: RefCell::new(Arc::new(AtomicBool::new(false))),
                    api_restarts: std::cell::Cell::new(0),
                })
                .collect(),
            rtsp,
            epoch,
            started: Instant::now(),
            planned_bytes: std::cell::Cell::new(plan.total_bytes as u64),
            fixed_bytes: (plan.total_bytes
                - plan.pushes.iter().map(|p| p.total_bytes).sum::<usize>())
                as u64,
            ceiling_bytes: plan.ceiling_bytes as u64,
            rtsp_port: ports.0,
            http_port: ports.1,
            push: RefCell::new(None),
        }
    }

    /// Starts (or restarts) the input thread(s) of `stream` from `cfg`.
    pub fn start_sources(&self, stream: &str, cfg: &Config) -> bool {
        let (Some(ls), Some(scfg)) = (
            self.streams.iter().find(|s| s.name == stream),
            cfg.streams.get(stream),
        ) else {
            return false;
        };
        // Stop the old input threads (they exit after their next read, killing an encoder
        // child), then start new ones with a fresh flag.
        let stop = Arc::new(AtomicBool::new(false));
        ls.stop.replace(stop.clone()).store(true, Ordering::Relaxed);
        let testsrc = scfg.source.kind == SourceKind::Testsrc;
        let v = source::spawn_video_stoppable(
            scfg.source.clone(),
            ls.plan.clone(),
            ls.hub.clone(),
            self.epoch,
            stop.clone(),
        );
        if let Err(e) = v {
            log::error!("[{stream}] cannot start the video input thread: {e}");
            return false;
        }
        if let (Some(a), false) = (scfg.audio.clone(), testsrc) {
            let a: SourceConfig = a;
            if let Err(e) = source::spawn_audio_stoppable(a, ls.hub.clone(), self.epoch, stop) {
                log::error!("[{stream}] cannot start the audio input thread: {e}");
                return false;
            }
        }
        true
    }

    /// Starts the sampler thread: once a second it reads every hub's counters (bitrate, fps,
    /// keyframe interval, history) and, when anything events are made from changed
    /// (liveness, parameters, restarts, consumers), sends on `changed` so the observer on
    /// the media thread builds a snapshot and diffs it. A plain thread, not a smol timer:
    /// timers in smol's reactor allocate on every firing, and a quiet daemon must allocate
    /// nothing (tests/alloc_steady_state.rs counts).
    pub fn spawn_sampler(&self, changed: smol::channel::Sender<()>) -> std::io::Result<()> {
        let streams: Vec<(SharedHub, Arc<Mutex<StreamSampler>>)> = self
            .streams
            .iter()
            .map(|s| (s.hub.clone(), s.sampler.clone()))
            .collect();
        let epoch = self.epoch;
        std::thread::Builder::new()
            .name("web-sampler".into())
            .spawn(move || {
                let mut prev: Vec<u64> = Vec::with_capacity(4 * streams.len());
                let mut cur: Vec<u64> = Vec::with_capacity(4 * streams.len());
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    let now_ms = epoch.now_ms();
                    cur.clear();
                    for (hub, sampler) in &streams {
                        let sample = {
                            let hub = lock(hub);
                            cur.extend_from_slice(&[
                                flowing(&hub, now_ms) as u64,
                                hub.params_generation as u64,
                                hub.source_restarts,
                                hub.consumer_count() as u64,
                            ]);
                            hub_sample(&hub)
                        };
                        lock(sampler).sample(sample, now_ms);
                    }
                    if cur != prev {
                        std::mem::swap(&mut cur, &mut prev);
                        // Full: a wake-up is already pending. Closed: the daemon is ending.
                        if let Err(smol::channel::TrySendError::Closed(_)) = changed.try_send(()) {
                            return;
                        }
                    }
                }
            })
            .map(|_| ())
    }
}

/// Live for the page: parameters and a keyframe held, and a frame within the last 5 s (a
/// source that died leaves its last GOP in the ring; that is not live).
fn flowing(hub: &crate::media::fanout::StreamHub, now_ms: u64) -> bool {
    hub.is_live()
        && hub
            .last_frame_ms
            .is_some_and(|t| now_ms.saturating_sub(t) < 5000)
}

/// One hub's counters for the sampler.
fn hub_sample(hub: &crate::media::fanout::StreamHub) -> HubSample {
    let rs = hub.ring.stats();
    let last = hub.ring.last_video_keyframe();
    let pts = |seq: u64| match hub.ring.get(seq) {
        Lookup::Frame(f) => Some(f.meta.pts),
        _ => None,
    };
    // The keyframe before the newest: scan back through the ring (once a second, bounded by
    // the ring's slot count).
    let prev = last.and_then(|k| {
        (hub.ring.tail()..k).rev().find(|&q| {
            matches!(hub.ring.get(q), Lookup::Frame(f) if f.meta.track == Track::Video && f.meta.keyframe)
        })
    });
    HubSample {
        bytes_in: rs.bytes_in,
        video_frames: hub.stats().video_frames,
        last_keyframes_pts_90k: (last.and_then(pts), prev.and_then(pts)),
    }
}

impl Runtime for LiveRuntime {
    fn status(&self, cfg: &Config, now_ms: u64) -> Status {
        let viewers_raw = self.rtsp.viewer_list();
        let streams = self
            .streams
            .iter()
            .map(|s| {
                let hub = lock(&s.hub);
                let sm = lock(&s.sampler);
                let rs = hub.ring.stats();
                let hs = hub.stats();
                let v = hub.video.as_ref();
                let rtsp = viewers_raw.iter().filter(|x| x.1 == s.name).count() as u32;
                StreamStatus {
                    name: s.name.clone(),
                    live: flowing(&hub, self.epoch.now_ms()),
                    codec: v.map(|v| match v.codec {
                        Codec::H264 => "H.264",
                        Codec::H265 => "H.265",
                        Codec::Aac => "AAC",
                    }),
                    width: v.map_or(0, |v| v.width),
                    height: v.map_or(0, |v| v.height),
                    fps: sm.fps,
                    bitrate_kbps: sm.bitrate_kbps,
                    bitrate_history_kbps: sm.history(),
                    keyframe_interval_ms: sm.keyframe_interval_ms,
                    viewers: ProtocolCounts {
                        rtsp,
                        hls: 0,
                        // Filled below from the push targets that are publishing.
                        rtmp_push: 0,
                    },
                    rtsp_path: format!("/{}", s.name),
                    hls_path: format!("/{}/index.m3u8", s.name),
                    source_kind: cfg
                        .streams
                        .get(&s.name)
                        .map(|c| format!("{:?}", c.source.kind).to_lowercase())
                        .unwrap_or_default(),
                    source_restarts: hub.source_restarts + s.api_restarts.get(),
                    video_frames: hs.video_frames,
                    audio_frames: hs.audio_frames,
                    bytes: rs.bytes_in,
                    dropped_frames: hs.dropped_too_large,
                    evicted_frames: rs.evicted,
                    last_frame_age_ms: hub
                        .last_frame_ms
                        .map(|t| self.epoch.now_ms().saturating_sub(t)),
                }
            })
            .collect();
        let push_view = self.push.borrow().clone();
        let mut streams: Vec<StreamStatus> = streams;
        let push: Vec<PushStatus> = cfg
            .push
            .iter()
            .enumerate()
            .map(|(i, p)| {
                push_view
                    .as_ref()
                    .and_then(|v| v.status(i, p))
                    .unwrap_or_else(|| PushStatus {
                        index: i,
                        stream: p.stream.clone(),
                        url: mask_push_url(&p.url),
                        enabled: p.enabled,
                        state: if p.enabled { "unavailable" } else { "disabled" },
                        last_error: p.enabled.then(|| {
                            "the RTMP push shell is not built into this daemon yet".into()
                        }),
                        ..Default::default()
                    })
            })
            .collect();
        for p in push.iter().filter(|p| p.state == "publishing") {
            if let Some(st) = streams.iter_mut().find(|st| st.name == p.stream) {
                st.viewers.rtmp_push += 1;
            }
        }
        let _ = now_ms;
        Status {
            version: env!("CARGO_PKG_VERSION"),
            uptime_s: self.started.elapsed().as_secs(),
            memory: MemoryStatus {
                planned_bytes: self.planned_bytes.get(),
                ceiling_bytes: self.ceiling_bytes,
            },
            streams,
            push,
            viewers: viewers_raw
                .into_iter()
                .map(|(id, stream, peer)| ViewerInfo {
                    id,
                    stream,
                    protocol: "rtsp",
                    peer: peer.to_string(),
                })
                .collect(),
            rtsp_port: self.rtsp_port,
            http_port: self.http_port,
        }
    }

    fn kick_viewer(&self, id: &str) -> bool {
        self.rtsp.kick(id)
    }

    fn restart_source(&self, stream: &str, cfg: &Config) -> bool {
        let ok = self.start_sources(stream, cfg);
        if let (true, Some(ls)) = (ok, self.streams.iter().find(|x| x.name == stream)) {
            ls.api_restarts.set(ls.api_restarts.get() + 1);
        }
        ok
    }

    fn apply(&self, plan: &ChangePlan, new: &Config) {
        for s in &plan.restart_sources {
            if self.start_sources(s, new) {
                if let Some(ls) = self.streams.iter().find(|x| &x.name == s) {
                    ls.api_restarts.set(ls.api_restarts.get() + 1);
                }
                log::info!("[{s}] source restarted with the new configuration");
            }
        }
        if let Some(p) = self.push.borrow().as_ref() {
            p.apply(&plan.restart_push, new);
        }
        let push: usize = crate::media::budget::push_plans(new)
            .iter()
            .map(|p| p.total_bytes)
            .sum();
        self.planned_bytes.set(self.fixed_bytes + push as u64);
    }

    fn counters(&self) -> ServerCounters {
        let r = self.rtsp.stats();
        ServerCounters {
            rtsp_connections: r.connections,
            rtsp_connections_refused: r.connections_refused,
            rtsp_bad_requests: r.bad_requests,
            rtsp_timeouts: r.timeouts,
            rtsp_auth_failures: r.auth_failures,
            rtsp_auth_throttled: r.auth_throttled,
            rtsp_refused_per_address: r.refused_per_address,
            rtsp_request_timeouts: r.request_timeouts,
            rtsp_udp_ignored: r.udp_ignored,
            ..Default::default()
        }
    }
}

/// The daemon's clock for the API.
#[derive(Clone, Copy, Debug)]
pub struct SystemClock(pub Epoch);

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        self.0.now_ms()
    }
    fn unix_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// Fills `buf` from the OS's random source (`/dev/urandom`).
pub fn os_random(buf: &mut [u8]) {
    use std::io::Read;
    let ok = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(buf));
    if let Err(e) = ok {
        // Without randomness there are no safe sessions or salts: refuse to go on.
        panic!("/dev/urandom unreadable: {e}");
    }
}

/// This machine's names for the Host check: the hostname and `hostname.local` (mDNS).
pub fn own_names() -> Vec<String> {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let h = h.trim();
    if h.is_empty() {
        return Vec::new();
    }
    vec![h.to_string(), format!("{h}.local")]
}

/// Samples hubs and emits events once a second; sends due webhooks. Runs forever.
pub async fn background(api: Rc<WebApi<Rc<LiveRuntime>, SystemClock>>) {
    let sender = api.clone();
    let wakeups = api.webhook_wakeups();
    crate::net::spawn(async move {
        loop {
            match sender.webhook_due() {
                Some(d) => {
                    let r = super::events::post_json(&d.url, d.body.as_bytes(), 5000).await;
                    let ok = matches!(r, Ok(200..=299));
                    if !ok {
                        log::warn!(
                            "webhook {}: {}",
                            d.url,
                            match r {
                                Ok(s) => format!("HTTP {s}"),
                                Err(e) => e,
                            }
                        );
                    }
                    sender.webhook_done(d, ok);
                }
                None => {
                    // Sleep until a delivery is queued or the earliest retry is due; an idle
                    // daemon runs no timer here.
                    match sender.webhook_next_due_in_ms() {
                        Some(ms) => {
                            use smol::future::FutureExt;
                            let t = async {
                                smol::Timer::after(std::time::Duration::from_millis(ms)).await;
                            };
                            t.or(async {
                                let _ = wakeups.recv().await;
                            })
                            .await;
                        }
                        None => {
                            if wakeups.recv().await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        }
    })
    .detach();
    let (tx, rx) = smol::channel::bounded(1);
    if let Err(e) = api.rt.spawn_sampler(tx) {
        log::error!("web: cannot start the sampler thread: {e}");
        return;
    }
    api.observe();
    loop {
        // Push targets change state on their own tasks (which run timers anyway); while any
        // is configured, also look every 2 s. Otherwise only the sampler's changes wake us, so
        // an idle daemon runs no timer here.
        if api.has_push_targets() {
            use smol::future::FutureExt;
            let woke = async { rx.recv().await.is_ok() }
                .or(async {
                    smol::Timer::after(std::time::Duration::from_secs(2)).await;
                    true
                })
                .await;
            if !woke {
                return;
            }
        } else if rx.recv().await.is_err() {
            return;
        }
        api.observe();
    }
}

impl<T: Runtime> Runtime for Rc<T> {
    fn status(&self, cfg: &Config, now_ms: u64) -> Status {
        (**self).status(cfg, now_ms)
    }
    fn kick_viewer(&self, id: &str) -> bool {
        (**self).kick_viewer(id)
    }
    fn restart_source(&self, stream: &str, cfg: &Config) -> bool {
        (**self).restart_source(stream, cfg)
    }
    fn apply(&self, plan: &ChangePlan, new: &Config) {
        (**self).apply(plan, new)
    }
    fn counters(&self) -> ServerCounters {
        (**self).counters()
    }
}

//! The web API's view of the running daemon: implements [`Runtime`] over the stream hubs, the
//! RTSP server and the per-stream source tasks, and runs the two background tasks (the
//! once-a-second sampler/observer and the webhook sender).
//!
//! Owns: the source tasks (so a source change restarts only that stream's task: dropping a
//! smol `Task` cancels it, and `exec` children are `kill_on_drop`), the samplers, and the
//! push-target view until the push shell reports real states.
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
use crate::media::fanout::StreamHub;
use crate::media::ring::Lookup;
use crate::media::{Codec, Track};
use crate::net::rtsp::RtspServer;
use smol::Task;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

/// One stream as the web layer manages it.
pub struct LiveStream {
    pub name: String,
    pub hub: Rc<RefCell<StreamHub>>,
    pub plan: StreamPlan,
    sampler: RefCell<StreamSampler>,
    tasks: RefCell<Vec<Task<()>>>,
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
    pub planned_bytes: u64,
    pub ceiling_bytes: u64,
    pub rtsp_port: u16,
    pub http_port: u16,
    pub push: RefCell<Option<Rc<dyn PushView>>>,
}

impl LiveRuntime {
    pub fn new(
        plan: &MemoryPlan,
        hubs: Vec<(StreamPlan, Rc<RefCell<StreamHub>>)>,
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
                    sampler: RefCell::new(StreamSampler::default()),
                    tasks: RefCell::new(Vec::new()),
                    api_restarts: std::cell::Cell::new(0),
                })
                .collect(),
            rtsp,
            epoch,
            started: Instant::now(),
            planned_bytes: plan.total_bytes as u64,
            ceiling_bytes: plan.ceiling_bytes as u64,
            rtsp_port: ports.0,
            http_port: ports.1,
            push: RefCell::new(None),
        }
    }

    /// Starts (or restarts) the source task(s) of `stream` from `cfg`. Must run on the media
    /// thread's executor.
    pub fn start_sources(&self, stream: &str, cfg: &Config) -> bool {
        let (Some(ls), Some(scfg)) = (
            self.streams.iter().find(|s| s.name == stream),
            cfg.streams.get(stream),
        ) else {
            return false;
        };
        // Dropping the old tasks cancels them (and kills an exec child).
        ls.tasks.borrow_mut().clear();
        let testsrc = scfg.source.kind == SourceKind::Testsrc;
        let mut tasks = Vec::with_capacity(2);
        tasks.push(crate::net::spawn(source::run_video(
            scfg.source.clone(),
            ls.plan.clone(),
            ls.hub.clone(),
            self.epoch,
        )));
        if let (Some(a), false) = (scfg.audio.clone(), testsrc) {
            let a: SourceConfig = a;
            tasks.push(crate::net::spawn(source::run_audio(
                a,
                ls.hub.clone(),
                self.epoch,
            )));
        }
        *ls.tasks.borrow_mut() = tasks;
        true
    }

    /// Reads every hub's counters once (call once a second).
    pub fn sample(&self, now_ms: u64) {
        for s in &self.streams {
            let hub = s.hub.borrow();
            let rs = hub.ring.stats();
            let last = hub.ring.last_video_keyframe();
            let pts = |seq: u64| match hub.ring.get(seq) {
                Lookup::Frame(f) => Some(f.meta.pts),
                _ => None,
            };
            // The keyframe before the newest: scan back through the ring (once a second,
            // bounded by the ring's slot count).
            let prev = last.and_then(|k| {
                (hub.ring.tail()..k).rev().find(|&q| {
                    matches!(hub.ring.get(q), Lookup::Frame(f) if f.meta.track == Track::Video && f.meta.keyframe)
                })
            });
            let sample = HubSample {
                bytes_in: rs.bytes_in,
                video_frames: hub.stats().video_frames,
                last_keyframes_pts_90k: (last.and_then(pts), prev.and_then(pts)),
            };
            s.sampler.borrow_mut().sample(sample, now_ms);
        }
    }
}

impl Runtime for LiveRuntime {
    fn status(&self, cfg: &Config, now_ms: u64) -> Status {
        let viewers_raw = self.rtsp.viewer_list();
        let streams = self
            .streams
            .iter()
            .map(|s| {
                let hub = s.hub.borrow();
                let sm = s.sampler.borrow();
                let rs = hub.ring.stats();
                let hs = hub.stats();
                let v = hub.video.as_ref();
                let rtsp = viewers_raw.iter().filter(|x| x.1 == s.name).count() as u32;
                let pushing = cfg
                    .push
                    .iter()
                    .filter(|p| p.enabled && p.stream == s.name)
                    .count() as u32;
                StreamStatus {
                    name: s.name.clone(),
                    live: hub.is_live(),
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
                        rtmp_push: pushing,
                    },
                    rtsp_path: format!("/{}", s.name),
                    hls_path: format!("/hls/{}/index.m3u8", s.name),
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
        let push = cfg
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
        let _ = now_ms;
        Status {
            version: env!("CARGO_PKG_VERSION"),
            uptime_s: self.started.elapsed().as_secs(),
            memory: MemoryStatus {
                planned_bytes: self.planned_bytes,
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
    }

    fn counters(&self) -> ServerCounters {
        let r = self.rtsp.stats();
        ServerCounters {
            rtsp_connections: r.connections,
            rtsp_connections_refused: r.connections_refused,
            rtsp_bad_requests: r.bad_requests,
            rtsp_timeouts: r.timeouts,
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
                    smol::Timer::after(std::time::Duration::from_millis(250)).await;
                }
            }
        }
    })
    .detach();
    loop {
        smol::Timer::after(std::time::Duration::from_secs(1)).await;
        api.rt.sample(api.clock.now_ms());
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

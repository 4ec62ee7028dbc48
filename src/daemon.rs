//! The daemon: allocate every pool once from the [`MemoryPlan`], start the sources and the
//! servers on the media thread, and run until stopped.
//!
//! Owns: start-up order and wiring — nothing protocol-specific. The figure it prints
//! ("media memory: N MiB") is the plan's, and the plan is all the media memory there is.

use crate::config::{Config, SourceKind, StreamConfig};
use crate::ingest::source::Epoch;
use crate::media::budget::{MemoryPlan, StreamPlan, HLS_SEGMENT_ENTRY_BYTES};
use crate::media::fanout::{lock, FrameCursor, SharedHub, StreamHub};
use crate::media::ring::MediaRing;
use crate::net;
use crate::net::fmp4::{Fmp4Handler, Fmp4Stream, Fmp4StreamConfig};
use crate::net::hls::{HlsHandler, HlsStream, HlsStreamConfig};
use crate::net::http::{HttpHandler, HttpLimits, HttpServer};
use crate::net::media_auth::MediaAuth;
use crate::net::rtsp::{RtspServer, RtspStream};
use smol::Async;
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Where the daemon ended up listening (ports may be chosen by the OS in tests).
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    pub rtsp: SocketAddr,
    pub rtsp_udp: (u16, u16),
    pub http: SocketAddr,
}

/// Limits from a board profile (`--board`).
#[derive(Clone, Debug, Default)]
pub struct BoardLimits {
    pub memory_mib: Option<u32>,
    pub max_viewers: Option<u32>,
    /// The config file the web page saves to (None: built-in defaults, changes not saved).
    pub config_path: Option<std::path::PathBuf>,
    /// The board's encoder command (re-applied when the web page's config is validated).
    pub encoder_command: Option<Vec<String>>,
    /// Where saves keep the last good copy (`boot::last_good_path`).
    pub last_good_path: Option<std::path::PathBuf>,
    /// Start-up ran the last good copy instead of the file: announced as an event.
    pub fallback: Option<crate::boot::Fallback>,
}

/// Runs the daemon on the current thread until it fails. `on_bound` is told the addresses
/// once every listener is up.
pub fn run(cfg: Config, board: BoardLimits, on_bound: impl FnOnce(Bound)) -> Result<(), String> {
    let plan = MemoryPlan::new(&cfg, board.memory_mib, board.max_viewers)?;
    log::info!("{}", plan.summary());
    let epoch = Epoch(Instant::now());
    // The wall clock at the epoch, for the fMP4 viewers' latency readout.
    let epoch_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut rtsp_streams = Vec::new();
    let mut starts = Vec::new();
    for sp in &plan.streams {
        let scfg = &cfg.streams[&sp.name];
        let ring = MediaRing::new(sp.ring_bytes, sp.ring_slots);
        let hub: SharedHub = Arc::new(Mutex::new(StreamHub::new(
            &sp.name,
            ring,
            // Room for the HLS and fMP4 consumers and a few push targets besides the viewers.
            plan.max_viewers as usize + 5,
        )));
        rtsp_streams.push(RtspStream {
            name: sp.name.clone(),
            hub: hub.clone(),
            auth: scfg.auth.clone(),
            // A viewer may lag by half the ring before it skips to a keyframe.
            max_lag_bytes: sp.ring_bytes as u64 / 2,
        });
        starts.push((sp.clone(), scfg.clone(), hub));
    }
    // HTTP: HLS first, then the other routes; a handler that returns None passes the request on.
    let mut http_handlers: Vec<Rc<dyn HttpHandler>> = Vec::new();
    // Stream credentials for every HTTP media route; the web session check is added below.
    let media_auth = Rc::new(MediaAuth::new(
        cfg.streams
            .iter()
            .map(|(n, s)| (n.as_str(), s.auth.as_ref())),
    ));
    if cfg.hls.enabled {
        http_handlers.push(Rc::new(start_hls(&cfg, &starts, media_auth.clone())));
    }
    let http_listener = TcpListener::bind((cfg.http.bind.as_str(), cfg.http.port))
        .map_err(|e| format!("HTTP port {}:{}: {e}", cfg.http.bind, cfg.http.port))?;
    let http_addr = http_listener.local_addr().map_err(|e| e.to_string())?;
    let http_listener = Async::new(http_listener).map_err(|e| e.to_string())?;
    let listener = TcpListener::bind((cfg.rtsp.bind.as_str(), cfg.rtsp.port))
        .map_err(|e| format!("RTSP port {}:{}: {e}", cfg.rtsp.bind, cfg.rtsp.port))?;
    let rtsp_addr = listener.local_addr().map_err(|e| e.to_string())?;
    let listener = Async::new(listener).map_err(|e| e.to_string())?;
    let server = RtspServer::new(cfg.rtsp.clone(), rtsp_streams, epoch, plan.max_viewers)
        .map_err(|e| format!("RTSP UDP ports from {}: {e}", cfg.rtsp.udp_port))?;
    let hubs_for_watchdog: Vec<SharedHub> = starts.iter().map(|(_, _, h)| h.clone()).collect();
    on_bound(Bound {
        rtsp: rtsp_addr,
        rtsp_udp: server.udp_ports(),
        http: http_addr,
    });
    // The web page and API (crate::web): sources are started through it so a source change
    // from the page restarts only that stream's task.
    let web_rt = Rc::new(crate::web::live::LiveRuntime::new(
        &plan,
        starts
            .iter()
            .map(|(sp, _, h)| (sp.clone(), h.clone()))
            .collect(),
        server.clone(),
        epoch,
        (rtsp_addr.port(), http_addr.port()),
    ));
    let web = Rc::new(crate::web::api::WebApi::new(
        cfg.clone(),
        web_rt.clone(),
        crate::web::live::SystemClock(epoch),
        crate::web::api::WebOptions {
            config_path: board.config_path.clone(),
            last_good_path: board.last_good_path.clone(),
            board: crate::boot::Limits {
                memory_mib: board.memory_mib,
                max_viewers: board.max_viewers,
                encoder: board.encoder_command.clone(),
            },
            own_names: crate::web::live::own_names(),
            random: Box::new(crate::web::live::os_random),
            scrypt_log_n: crate::web::auth::SCRYPT_LOG_N,
        },
    ));
    if let Some(f) = &board.fallback {
        web.emit(crate::web::events::EventKind::ConfigFallback {
            file: f.file.clone(),
            error: f.error.clone(),
            used: f.used.clone(),
        });
    }
    // RTMP/RTMPS push targets: one task each on this thread, a consumer each on its hub.
    let push = net::rtmp_push::PushManager::new(
        starts
            .iter()
            .map(|(sp, scfg, h)| (sp.name.clone(), h.clone(), scfg.max_bitrate_kbps))
            .collect(),
        epoch,
    );
    push.start_all(&cfg);
    *web_rt.push.borrow_mut() = Some(push);
    let web_weak = Rc::downgrade(&web);
    server.set_viewer_hook(Box::new(move |stream, id, joined| {
        if let Some(w) = web_weak.upgrade() {
            w.viewer_event(stream, "rtsp", id, joined);
        }
    }));
    let web_weak = Rc::downgrade(&web);
    media_auth.set_session_check(Box::new(move |req| {
        web_weak.upgrade().is_some_and(|w| w.session_valid(req))
    }));
    if cfg.fmp4.enabled {
        http_handlers.push(Rc::new(start_fmp4(
            &cfg,
            &starts,
            epoch_unix_ms,
            media_auth.clone(),
        )));
    }
    http_handlers.push(web.clone());
    let http_server = HttpServer::new(
        HttpLimits {
            max_connections: plan.http_connections as usize,
            request_timeout_ms: cfg.http.request_timeout_ms.into(),
            keepalive_timeout_ms: cfg.http.keepalive_timeout_ms.into(),
            send_timeout_ms: cfg.http.send_timeout_ms.into(),
            max_connections_per_address: cfg.http.max_connections_per_address as usize,
        },
        http_handlers,
    );
    // Media runs on one plain thread per input (see ingest::source); the async runtime below
    // only carries the control plane. Inputs are started through the web runtime, which keeps
    // their stop flags, so a source change from the page restarts only that stream's input.
    for (sp, scfg, _hub) in &starts {
        if scfg.source.kind == SourceKind::Testsrc && scfg.audio.is_some() {
            log::warn!(
                "[{}] testsrc makes its own audio; the audio input is ignored",
                sp.name
            );
        }
        if !web_rt.start_sources(&sp.name, &cfg) {
            return Err(format!("[{}] cannot start the input threads", sp.name));
        }
    }
    net::block_on(async move {
        net::spawn(crate::web::live::background(web)).detach();
        let hubs: Vec<_> = hubs_for_watchdog;
        net::spawn(systemd_watchdog(hubs, epoch)).detach();
        net::spawn(http_server.serve(http_listener)).detach();
        server.serve(listener).await;
    });
    Ok(())
}

/// Registers one HLS segmenter per stream on its hub (arena sized by the plan) and returns
/// the HTTP routes that serve them.
fn start_hls(
    cfg: &Config,
    starts: &[(StreamPlan, StreamConfig, SharedHub)],
    auth: Rc<MediaAuth>,
) -> HlsHandler {
    let mut streams = Vec::new();
    for (sp, scfg, hub) in starts {
        let window = cfg.hls.window as usize;
        let segmenter = crate::proto::hls::HlsConfig {
            target_duration_ms: cfg.hls.segment_ms,
            window_segments: window,
            arena_len_bytes: sp.hls_bytes - sp.hls_segments * HLS_SEGMENT_ENTRY_BYTES,
            max_segments: sp.hls_segments,
        };
        let expect_audio = match scfg.source.kind {
            SourceKind::Testsrc => scfg.source.audio,
            _ => scfg.audio.is_some(),
        };
        let mut hub = lock(hub);
        let cursor = FrameCursor::start(&hub.ring, [true, true], sp.ring_bytes as u64 / 2);
        let stream = Arc::new(Mutex::new(HlsStream::new(
            HlsStreamConfig {
                name: sp.name.clone(),
                segmenter,
                expect_audio,
                max_bitrate_bps: u64::from(scfg.max_bitrate_kbps) * 1000,
            },
            cursor,
            crate::net::hls::system_wall_clock(),
        )));
        // Consumers run on the stream's ingest thread; the HTTP side locks the stream only
        // to render a playlist or copy a chunk of a segment.
        if !hub.add_consumer(stream.clone()) {
            log::error!("[{}] HLS: no consumer slot on the hub", sp.name);
            continue;
        }
        streams.push(stream);
    }
    log::info!(
        "HLS: {} stream(s), {} ms segments, window {}",
        streams.len(),
        cfg.hls.segment_ms,
        cfg.hls.window
    );
    HlsHandler::new(streams, auth)
}

/// Registers one fMP4 fragment store per stream on its hub (sized by the plan) and returns
/// the WebSocket route that serves it.
fn start_fmp4(
    cfg: &Config,
    starts: &[(StreamPlan, StreamConfig, SharedHub)],
    epoch_unix_ms: u64,
    auth: Rc<MediaAuth>,
) -> Fmp4Handler {
    let mut streams = Vec::new();
    for (sp, scfg, hub) in starts {
        let expect_audio = match scfg.source.kind {
            SourceKind::Testsrc => scfg.source.audio,
            _ => scfg.audio.is_some(),
        };
        let mut hub = lock(hub);
        let cursor = FrameCursor::start(&hub.ring, [true, true], sp.ring_bytes as u64 / 2);
        let stream = Arc::new(Mutex::new(Fmp4Stream::new(
            Fmp4StreamConfig {
                name: sp.name.clone(),
                arena_bytes: sp.fmp4_arena_bytes,
                slots: sp.fmp4_slots,
                max_au_bytes: sp.max_au_bytes,
                max_viewers: cfg.fmp4.max_viewers as usize,
                expect_audio,
                epoch_unix_ms,
            },
            cursor,
        )));
        if !hub.add_consumer(stream.clone()) {
            log::error!("[{}] fMP4: no consumer slot on the hub", sp.name);
            continue;
        }
        streams.push(stream);
    }
    log::info!(
        "fMP4 WebSocket: {} stream(s), {} ms of fragments, up to {} viewers each",
        streams.len(),
        cfg.fmp4.buffer_ms,
        cfg.fmp4.max_viewers
    );
    Fmp4Handler::new(streams, auth, cfg.http.send_timeout_ms.into())
}

/// Tells systemd we are up (Type=notify), and feeds its watchdog only while frames flow: a
/// daemon whose every source has been silent for 10 s is not healthy, and systemd restarts it.
async fn systemd_watchdog(hubs: Vec<SharedHub>, epoch: Epoch) {
    let notifier = match crate::sd_notify::Notifier::from_env() {
        Ok(Some(n)) => n,
        Ok(None) => return,
        Err(e) => {
            log::warn!("systemd notify socket: {e}");
            return;
        }
    };
    let _ = notifier.ready();
    let Some(period_us) = crate::sd_notify::watchdog_period_us() else {
        return;
    };
    let tick = std::time::Duration::from_micros(period_us / 2);
    loop {
        smol::Timer::after(tick).await;
        let now = epoch.now_ms();
        let flowing = hubs.iter().any(|h| {
            lock(h)
                .last_frame_ms
                .is_some_and(|t| now.saturating_sub(t) < 10_000)
        });
        if flowing {
            let _ = notifier.watchdog();
        } else {
            let _ = notifier.status("no frames from any source");
        }
    }
}

/// A daemon on its own thread, for tests and embedding.
pub struct DaemonThread {
    pub bound: Bound,
    pub thread: std::thread::JoinHandle<Result<(), String>>,
}

/// Starts the daemon on a new thread and waits until it listens.
pub fn spawn_thread(cfg: Config, board: BoardLimits) -> Result<DaemonThread, String> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let thread = std::thread::Builder::new()
        .name("rillcast-media".into())
        .spawn(move || {
            let tx2 = tx.clone();
            let r = run(cfg, board, move |b| {
                let _ = tx2.send(Ok(b));
            });
            if let Err(e) = &r {
                let _ = tx.send(Err(e.clone()));
            }
            r
        })
        .map_err(|e| e.to_string())?;
    let bound = rx
        .recv()
        .map_err(|_| "daemon thread ended before listening".to_string())??;
    Ok(DaemonThread { bound, thread })
}

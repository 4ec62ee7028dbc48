//! The daemon: allocate every pool once from the [`MemoryPlan`], start the sources and the
//! servers on the media thread, and run until stopped.
//!
//! Owns: start-up order and wiring — nothing protocol-specific. The figure it prints
//! ("media memory: N MiB") is the plan's, and the plan is all the media memory there is.

use crate::config::{Config, SourceKind};
use crate::ingest::source::{self, Epoch};
use crate::media::budget::MemoryPlan;
use crate::media::fanout::StreamHub;
use crate::media::ring::MediaRing;
use crate::net;
use crate::net::rtsp::{RtspServer, RtspStream};
use smol::Async;
use std::cell::RefCell;
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::time::Instant;

/// Where the daemon ended up listening (ports may be chosen by the OS in tests).
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    pub rtsp: SocketAddr,
    pub rtsp_udp: (u16, u16),
}

/// Limits from a board profile (`--board`).
#[derive(Clone, Debug, Default)]
pub struct BoardLimits {
    pub memory_mib: Option<u32>,
    pub max_viewers: Option<u32>,
}

/// Runs the daemon on the current thread until it fails. `on_bound` is told the addresses
/// once every listener is up.
pub fn run(cfg: Config, board: BoardLimits, on_bound: impl FnOnce(Bound)) -> Result<(), String> {
    let plan = MemoryPlan::new(&cfg, board.memory_mib, board.max_viewers)?;
    log::info!("{}", plan.summary());
    let epoch = Epoch(Instant::now());
    let mut rtsp_streams = Vec::new();
    let mut starts = Vec::new();
    for sp in &plan.streams {
        let scfg = &cfg.streams[&sp.name];
        let ring = MediaRing::new(sp.ring_bytes, sp.ring_slots);
        let hub = Rc::new(RefCell::new(StreamHub::new(
            &sp.name,
            ring,
            plan.max_viewers as usize + 4,
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
    let listener = TcpListener::bind((cfg.rtsp.bind.as_str(), cfg.rtsp.port))
        .map_err(|e| format!("RTSP port {}:{}: {e}", cfg.rtsp.bind, cfg.rtsp.port))?;
    let rtsp_addr = listener.local_addr().map_err(|e| e.to_string())?;
    let listener = Async::new(listener).map_err(|e| e.to_string())?;
    let server = RtspServer::new(cfg.rtsp.clone(), rtsp_streams, epoch, plan.max_viewers)
        .map_err(|e| format!("RTSP UDP ports from {}: {e}", cfg.rtsp.udp_port))?;
    // Push targets (RTMP/RTMPS), started on the media thread below. Their status snapshots are
    // for the web API; they live as long as the daemon.
    let pushes: Vec<(usize, usize, Rc<RefCell<StreamHub>>)> = cfg
        .push
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            // Disabled targets have no plan entry (0 bytes) and stay idle.
            let queue_bytes = plan
                .pushes
                .iter()
                .find(|pp| pp.index == i)
                .map_or(0, |pp| pp.queue_bytes);
            let hub = starts
                .iter()
                .find(|(sp, _, _)| sp.name == p.stream)?
                .2
                .clone();
            Some((i, queue_bytes, hub))
        })
        .collect();
    let push_cfg = cfg.push.clone();
    let hubs_for_watchdog: Vec<Rc<RefCell<StreamHub>>> =
        starts.iter().map(|(_, _, h)| h.clone()).collect();
    on_bound(Bound {
        rtsp: rtsp_addr,
        rtsp_udp: server.udp_ports(),
    });
    net::block_on(async move {
        for (sp, scfg, hub) in starts {
            let audio = scfg.audio.clone();
            if scfg.source.kind == SourceKind::Testsrc && audio.is_some() {
                log::warn!(
                    "[{}] testsrc makes its own audio; the audio input is ignored",
                    sp.name
                );
            }
            net::spawn(source::run_video(
                scfg.source.clone(),
                sp,
                hub.clone(),
                epoch,
            ))
            .detach();
            if let (Some(a), false) = (audio, scfg.source.kind == SourceKind::Testsrc) {
                net::spawn(source::run_audio(a, hub, epoch)).detach();
            }
        }
        let _push_status: Vec<net::rtmp_push::PushStatusRef> = pushes
            .into_iter()
            .map(|(i, queue_bytes, hub)| {
                net::rtmp_push::spawn_push(i, &push_cfg[i], queue_bytes, hub, epoch)
            })
            .collect();
        let hubs: Vec<_> = hubs_for_watchdog;
        net::spawn(systemd_watchdog(hubs, epoch)).detach();
        server.serve(listener).await;
    });
    Ok(())
}

/// Tells systemd we are up (Type=notify), and feeds its watchdog only while frames flow: a
/// daemon whose every source has been silent for 10 s is not healthy, and systemd restarts it.
async fn systemd_watchdog(hubs: Vec<Rc<RefCell<StreamHub>>>, epoch: Epoch) {
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
            h.borrow()
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

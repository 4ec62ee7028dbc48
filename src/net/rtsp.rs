//! The RTSP server shell: sockets and tasks around the sans-IO cores.
//!
//! Owns: the listener, one task per TCP connection (read requests, answer them through
//! [`RtspConn`], wait for the socket when a TCP viewer is blocked), the two shared UDP sockets,
//! and [`RtspViewer`] — a hub [`Consumer`] that moves the packets an [`RtpSender`] produces into
//! a socket. Per frame, nothing here allocates and no task is woken: the hub calls
//! [`Consumer::on_frame`] synchronously, and a viewer writes without blocking. Only a TCP
//! viewer whose socket is full wakes its own connection task, which waits for the socket to
//! drain; meanwhile the ring holds its frames and the lag policy bounds how far it may fall.
//!
//! Viewers are `Arc<Mutex<_>>`: the stream's ingest thread publishes a frame and pumps every
//! viewer on that thread; the connection task (on the control-plane executor) handles requests
//! and waits on a full socket. Lock order everywhere: hub, then viewer.
//!
//! Housekeeping runs once a second on a thread of its own: UDP sessions without keep-alive and
//! TCP viewers stalled past `stall_timeout_ms` are closed there, each with one log line.
//!
//! Hostile clients, all on the control-plane executor, which must keep serving HLS, the page
//! and the systemd watchdog: the UDP reader takes at most [`UDP_READ_BUDGET`] datagrams per
//! socket per turn and then yields, drops datagrams from addresses that are no viewer's
//! (counted, never logged per packet); the accept loop yields every [`ACCEPT_BUDGET`]
//! connections; each client address may hold `max_pending_per_address` connections that do
//! not play; a request must be complete `request_timeout_ms` after its first byte, and a
//! connection that does not play must complete one every `session_timeout_s`; wrong
//! credentials are throttled per address ([`AuthThrottle`]).

use crate::config::{AuthConfig, RtspConfig};
use crate::ingest::source::Epoch;
use crate::media::budget::{RTSP_READ_BUFFER_BYTES, VIEWER_TCP_BUFFER_BYTES};
use crate::media::fanout::{lock, Consumer, SharedHub, StreamView};
use crate::media::ring::Lookup;
use crate::media::{Codec, Track, VIDEO_CLOCK_HZ};
use crate::proto::rtp::rtcp::{ntp_from_unix, parse_compound};
use crate::proto::rtp::sender::{Outgoing, RtpSender, SenderTrack};
use crate::proto::rtp::{RtpPacketizer, RtpTrackState, AUDIO_PAYLOAD_TYPE, VIDEO_PAYLOAD_TYPE};
use crate::proto::rtsp::auth::Credentials;
use crate::proto::rtsp::request::{self, Parsed};
use crate::proto::rtsp::session::{RtspConn, SessionEvent, StreamCatalog, TrackTransport};
use crate::proto::rtsp::throttle::{peer_key, AuthThrottle};
use crate::proto::sdp::{write_describe, SdpSession};
use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::Async;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Kernel send buffer of an RTSP TCP connection.
const VIEWER_SNDBUF_BYTES: usize = 256 * 1024;
/// Datagrams read from each UDP socket per executor turn before yielding to other tasks.
pub const UDP_READ_BUDGET: usize = 64;
/// Connections accepted per executor turn before yielding to other tasks.
pub const ACCEPT_BUDGET: usize = 32;
/// Refusals and ignored datagrams are logged at most this often (one summary line).
const NOISE_LOG_INTERVAL_MS: u64 = 10_000;
const NOISE_REFUSED: usize = 0;
const NOISE_UDP: usize = 1;

/// One stream as the RTSP server sees it.
pub struct RtspStream {
    pub name: String,
    pub hub: SharedHub,
    pub auth: Option<AuthConfig>,
    /// A lagging viewer skips to a keyframe beyond this many bytes behind.
    pub max_lag_bytes: u64,
}

/// Server-wide counters, for logs and metrics.
#[derive(Clone, Copy, Debug, Default)]
pub struct RtspStats {
    pub connections: u64,
    pub connections_refused: u64,
    pub bad_requests: u64,
    pub viewers_now: u32,
    pub viewers_total: u64,
    pub timeouts: u64,
    /// Requests with wrong credentials.
    pub auth_failures: u64,
    /// Requests refused (403) because their address was locked out after failures.
    pub auth_throttled: u64,
    /// Connections closed because their address had `max_pending_per_address` open.
    pub refused_per_address: u64,
    /// Datagrams at the server's UDP ports from addresses that are no viewer's, or malformed.
    pub udp_ignored: u64,
    /// Connections closed for not completing a request in time.
    pub request_timeouts: u64,
}

/// See [`RtspServer::set_viewer_hook`].
pub type ViewerHook = Box<dyn Fn(&str, &str, bool)>;

pub struct RtspServer {
    cfg: RtspConfig,
    streams: Vec<RtspStream>,
    epoch: Epoch,
    max_viewers: u32,
    udp_rtp: Option<Async<UdpSocket>>,
    udp_rtcp: Option<Async<UdpSocket>>,
    /// Every playing viewer, for housekeeping (which runs on a thread of its own).
    viewers: Arc<Mutex<Vec<Weak<Mutex<RtspViewer>>>>>,
    timeouts: Arc<std::sync::atomic::AtomicU64>,
    /// Told (stream, viewer id, joined) when a viewer starts or stops (the web layer's events).
    viewer_hook: RefCell<Option<ViewerHook>>,
    /// UDP viewers by the addresses their RTP and RTCP come from, for keep-alive; datagrams
    /// from any other address are dropped.
    rtcp_peers: RefCell<HashMap<SocketAddr, Weak<Mutex<RtspViewer>>>>,
    stats: Cell<RtspStats>,
    seed: Cell<u64>,
    throttle: RefCell<AuthThrottle>,
    /// Open connections that do not play, per client address ([`peer_key`]).
    pending: RefCell<HashMap<IpAddr, u32>>,
    /// (when, counter total) of the last noise line per kind ([`RtspServer::log_noise`]).
    noise_logged: [Cell<(u64, u64)>; 2],
}

impl RtspServer {
    /// Binds the server's UDP sockets (TCP is bound by [`RtspServer::serve`]'s caller).
    pub fn new(
        cfg: RtspConfig,
        streams: Vec<RtspStream>,
        epoch: Epoch,
        max_viewers: u32,
    ) -> io::Result<Rc<Self>> {
        let (udp_rtp, udp_rtcp) = bind_udp_pair(&cfg.bind, cfg.udp_port)?;
        let (cfg_auth_max_failures, cfg_auth_lockout_s) =
            (cfg.auth_max_failures, cfg.auth_lockout_s);
        Ok(Rc::new(RtspServer {
            cfg,
            streams,
            epoch,
            max_viewers,
            udp_rtp: Some(udp_rtp),
            udp_rtcp: Some(udp_rtcp),
            viewers: Arc::new(Mutex::new(Vec::with_capacity(max_viewers as usize))),
            timeouts: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            viewer_hook: RefCell::new(None),
            rtcp_peers: RefCell::new(HashMap::with_capacity(max_viewers as usize)),
            stats: Cell::new(RtspStats::default()),
            seed: Cell::new(seed_from_os()),
            throttle: RefCell::new(AuthThrottle::new(
                cfg_auth_max_failures,
                u64::from(cfg_auth_lockout_s) * 1000,
            )),
            pending: RefCell::new(HashMap::new()),
            noise_logged: [Cell::new((0, 0)), Cell::new((0, 0))],
        }))
    }

    pub fn stats(&self) -> RtspStats {
        let mut s = self.stats.get();
        s.timeouts = self.timeouts.load(std::sync::atomic::Ordering::Relaxed);
        s
    }

    /// The server's UDP ports (RTP, RTCP).
    pub fn udp_ports(&self) -> (u16, u16) {
        let p = |s: &Option<Async<UdpSocket>>| {
            s.as_ref()
                .and_then(|s| s.get_ref().local_addr().ok())
                .map_or(0, |a| a.port())
        };
        (p(&self.udp_rtp), p(&self.udp_rtcp))
    }

    /// Playing viewers as (id, stream, peer) for the web API; the id is `rtsp-<peer>`.
    pub fn viewer_list(&self) -> Vec<(String, String, SocketAddr)> {
        // Upgrade under the list lock, then lock each viewer with the list lock released.
        let viewers: Vec<_> = lock(&self.viewers)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        viewers
            .iter()
            .filter_map(|v| {
                let v = lock(v);
                (!v.closed).then(|| (format!("rtsp-{}", v.peer), v.stream.clone(), v.peer))
            })
            .collect()
    }

    /// Sets the function told (stream, viewer id, joined) when a viewer starts or stops.
    pub fn set_viewer_hook(&self, hook: ViewerHook) {
        *self.viewer_hook.borrow_mut() = Some(hook);
    }

    /// Disconnects the viewer with this id (see [`RtspServer::viewer_list`]).
    pub fn kick(&self, id: &str) -> bool {
        let viewers: Vec<_> = lock(&self.viewers)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for v in viewers {
            {
                let mut v = lock(&v);
                if !v.closed && format!("rtsp-{}", v.peer) == id {
                    log::info!(
                        "[{}] viewer {} disconnected from the web API",
                        v.stream,
                        v.peer
                    );
                    v.close();
                    return true;
                }
            }
        }
        false
    }

    fn bump(&self, f: impl FnOnce(&mut RtspStats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }

    fn next_seed(&self) -> u64 {
        // splitmix64 step: distinct seeds for every connection from one OS-seeded start.
        let mut z = self.seed.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.seed.set(z);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn stream(&self, name: &str) -> Option<&RtspStream> {
        self.streams.iter().find(|s| s.name == name)
    }

    /// Accepts connections forever.
    pub async fn serve(self: Rc<Self>, listener: Async<TcpListener>) {
        let (udp_rtp_port, _) = self.udp_ports();
        log::info!(
            "RTSP listening on {} (UDP {}-{}), streams: {}",
            listener
                .get_ref()
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            udp_rtp_port,
            udp_rtp_port.saturating_add(1),
            self.streams
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.start_housekeeping();
        crate::net::spawn(self.clone().rtcp_receiver()).detach();
        let max_conns = self.max_viewers as u64 + 16;
        let max_pending = self.cfg.max_pending_per_address.max(1);
        let open = Rc::new(Cell::new(0u64));
        let mut accepted = 0usize;
        loop {
            // A connect storm keeps accept() ready: let the other tasks run now and then.
            accepted = accepted.wrapping_add(1);
            if accepted.is_multiple_of(ACCEPT_BUDGET) {
                smol::future::yield_now().await;
            }
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    log::warn!("RTSP accept failed: {e}");
                    smol::Timer::after(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let key = peer_key(peer.ip());
            let pending = self.pending.borrow().get(&key).copied().unwrap_or(0);
            let why = if open.get() >= max_conns {
                Some("connections open")
            } else if pending >= max_pending {
                self.bump(|s| s.refused_per_address += 1);
                Some("not-playing connections open from that address")
            } else {
                None
            };
            if let Some(why) = why {
                self.bump(|s| s.connections_refused += 1);
                let total = self.stats.get().connections_refused;
                self.log_noise(NOISE_REFUSED, total, |n| {
                    format!(
                        "RTSP: refused {n} connection(s) in the last {} s, the last from {peer}: \
                         too many {why}",
                        NOISE_LOG_INTERVAL_MS / 1000
                    )
                });
                drop(stream);
                continue;
            }
            self.bump(|s| s.connections += 1);
            open.set(open.get() + 1);
            let slot = PendingSlot::take(self.clone(), key);
            let server = self.clone();
            let open = open.clone();
            crate::net::spawn(async move {
                server.connection(stream, peer, slot).await;
                open.set(open.get() - 1);
            })
            .detach();
        }
    }

    /// Logs one line per [`NOISE_LOG_INTERVAL_MS`] at most for `kind`, with the number of
    /// events (`total` is the counter's running total) since the last line.
    fn log_noise(&self, kind: usize, total: u64, line: impl FnOnce(u64) -> String) {
        let Some(cell) = self.noise_logged.get(kind) else {
            return;
        };
        let (last_ms, last_total) = cell.get();
        let now_ms = self.epoch.now_ms();
        if last_ms == 0 || now_ms.saturating_sub(last_ms) >= NOISE_LOG_INTERVAL_MS {
            log::warn!("{}", line(total.saturating_sub(last_total)));
            cell.set((now_ms, total));
        }
    }

    /// Once a second, on a plain thread (an async timer would allocate in smol's timer map
    /// every tick): UDP sessions without keep-alive and TCP viewers stalled past the limit are
    /// closed; closing wakes the viewer's connection task, which cleans up.
    fn start_housekeeping(&self) {
        let viewers = self.viewers.clone();
        let timeouts = self.timeouts.clone();
        let epoch = self.epoch;
        let timeout_ms = self.cfg.session_timeout_s as u64 * 1000;
        let stall_ms = self.cfg.stall_timeout_ms as u64;
        let spawned = std::thread::Builder::new()
            .name("rtsp-housekeeping".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_secs(1));
                let now = epoch.now_ms();
                lock(&viewers).retain(|w| {
                    let Some(v) = w.upgrade() else { return false };
                    let mut v = lock(&v);
                    let why = match &v.out {
                        Out::Udp { .. } if now.saturating_sub(v.last_seen_ms) > timeout_ms => {
                            Some("no keep-alive (RTSP or RTCP) within the session timeout")
                        }
                        Out::Tcp {
                            blocked_since_ms: Some(t),
                            ..
                        } if now.saturating_sub(*t) > stall_ms => {
                            Some("TCP socket stalled past stall_timeout_ms")
                        }
                        _ => None,
                    };
                    if let Some(why) = why {
                        log::info!("[{}] viewer {} dropped: {why}", v.stream, v.peer);
                        v.close();
                        timeouts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    !v.closed
                });
            });
        if let Err(e) = spawned {
            log::error!("RTSP housekeeping thread: {e}; session timeouts are not enforced");
        }
    }

    /// Reads RTCP from UDP viewers (receiver reports keep a session alive) and discards what
    /// arrives on the RTP port (NAT-opening packets from clients). Shares the control-plane
    /// thread, so a flood must not starve it: each turn reads at most [`UDP_READ_BUDGET`]
    /// datagrams per socket, and a turn that hit the budget sleeps a millisecond (the kernel
    /// drops the excess for free). Datagrams from addresses that are no viewer's are counted
    /// and dropped before any parsing.
    async fn rtcp_receiver(self: Rc<Self>) {
        let (Some(rtcp), Some(rtp)) = (&self.udp_rtcp, &self.udp_rtp) else {
            return;
        };
        let mut buf = [0u8; 1500];
        loop {
            // Sleeps in the reactor until either socket has a datagram.
            let _ = rtcp.readable().or(rtp.readable()).await;
            let mut full = false;
            for (sock, is_rtcp) in [(rtcp, true), (rtp, false)] {
                let mut n_read = 0;
                while n_read < UDP_READ_BUDGET {
                    match sock.get_ref().recv_from(&mut buf) {
                        Ok((n, from)) => {
                            n_read += 1;
                            self.on_datagram(buf.get(..n).unwrap_or(&[]), from, is_rtcp);
                        }
                        // WouldBlock: drained. Any other error (e.g. a queued ICMP error) is
                        // retried next turn, after the yield below.
                        Err(_) => break,
                    }
                }
                full |= n_read == UDP_READ_BUDGET;
            }
            if full {
                smol::Timer::after(Duration::from_millis(1)).await;
            } else {
                smol::future::yield_now().await;
            }
        }
    }

    /// One datagram at the server's RTP (`is_rtcp` false) or RTCP port.
    fn on_datagram(&self, data: &[u8], from: SocketAddr, is_rtcp: bool) {
        let viewer = self.rtcp_peers.borrow().get(&from).and_then(Weak::upgrade);
        let valid = viewer.is_some() && (!is_rtcp || parse_compound(data).all(|p| p.is_ok()));
        match viewer {
            Some(v) if valid => lock(&v).last_seen_ms = self.epoch.now_ms(),
            _ => {
                self.bump(|s| s.udp_ignored += 1);
                let total = self.stats.get().udp_ignored;
                self.log_noise(NOISE_UDP, total, |n| {
                    format!(
                        "RTSP: ignored {n} UDP datagram(s) in the last {} s that came from no \
                         viewer or were malformed, the last from {from}",
                        NOISE_LOG_INTERVAL_MS / 1000
                    )
                });
            }
        }
    }

    async fn connection(
        self: Rc<Self>,
        stream: Async<TcpStream>,
        peer: SocketAddr,
        mut slot: PendingSlot,
    ) {
        let _ = stream.get_ref().set_nodelay(true);
        // Bound the kernel's share of a viewer too: on loopback or a LAN, auto-tuning grows a
        // send buffer to megabytes, which hides a stalled viewer for many seconds and costs
        // RAM a camera doesn't have. 256 KiB is > 1 s of a 2 Mbit/s stream.
        let _ = socket2::SockRef::from(stream.get_ref()).set_send_buffer_size(VIEWER_SNDBUF_BYTES);
        let local = stream
            .get_ref()
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let stream = Arc::new(stream);
        let mut conn = RtspConn::new(
            peer,
            self.udp_ports(),
            self.cfg.session_timeout_s,
            self.next_seed(),
        );
        let mut rbuf = vec![0u8; RTSP_READ_BUFFER_BYTES].into_boxed_slice();
        let mut rlen = 0usize;
        let mut resp: Vec<u8> = Vec::with_capacity(1024);
        let mut viewer: Option<Arc<Mutex<RtspViewer>>> = None;
        let session_timeout = Duration::from_secs(self.cfg.session_timeout_s.into());
        let request_timeout = Duration::from_millis(self.cfg.request_timeout_ms.into());
        // Slowloris guards, neither reset by bytes that do not complete a request: a
        // connection that does not play must complete a request within the session timeout
        // of the previous one (or of connecting), and any request must be complete within
        // the request timeout of its first byte. A playing session is governed by
        // housekeeping instead.
        let mut idle_deadline = Instant::now() + session_timeout;
        let mut head_deadline: Option<Instant> = None;
        log::debug!("RTSP connection from {peer}");
        let why = 'conn: loop {
            let deadline = match (viewer.is_some(), head_deadline) {
                (true, h) => h,
                (false, None) => Some(idle_deadline),
                (false, Some(h)) => Some(h.min(idle_deadline)),
            };
            let read = async { Ev::Read((&*stream).read(&mut rbuf[rlen..]).await) };
            let signal = async {
                match &viewer {
                    Some(v) => {
                        Signal(v).await;
                        if lock(v).closed {
                            return Ev::Closed;
                        }
                        let _ = stream.writable().await;
                        Ev::Writable
                    }
                    None => std::future::pending().await,
                }
            };
            let timer = async {
                match deadline {
                    Some(d) => {
                        smol::Timer::at(d).await;
                        Ev::Idle
                    }
                    None => std::future::pending().await,
                }
            };
            let ev = read.or(signal).or(timer).await;
            let now_ms = self.epoch.now_ms();
            match ev {
                Ev::Idle => {
                    self.bump(|s| s.request_timeouts += 1);
                    if head_deadline.is_some_and(|h| Instant::now() >= h) {
                        break 'conn "request not complete within request_timeout_ms".to_string();
                    }
                    break 'conn "no request within session_timeout_s before playing".to_string();
                }
                Ev::Closed => break 'conn "closed by the server".to_string(),
                Ev::Writable => {
                    if let Some(v) = &viewer {
                        self.pump(v, now_ms);
                    }
                }
                Ev::Read(Err(e)) => break 'conn format!("read error: {e}"),
                Ev::Read(Ok(0)) => break 'conn "client closed the connection".to_string(),
                Ev::Read(Ok(n)) => {
                    rlen += n;
                    if let Some(v) = &viewer {
                        lock(v).last_seen_ms = now_ms;
                    }
                    // Handle every complete message in the buffer.
                    loop {
                        let (consumed, outcome) = match request::parse(&rbuf[..rlen]) {
                            Ok(Parsed::Incomplete) => {
                                if rlen == rbuf.len() {
                                    self.bump(|s| s.bad_requests += 1);
                                    let _ = (&*stream)
                                        .write_all(b"RTSP/1.0 400 Bad Request\r\n\r\n")
                                        .await;
                                    break 'conn "request larger than the read buffer".to_string();
                                }
                                break;
                            }
                            Ok(Parsed::Interleaved { consumed, .. }) => (consumed, None),
                            Ok(Parsed::Request { req, consumed }) => {
                                resp.clear();
                                let catalog = Catalog {
                                    server: &self,
                                    local,
                                };
                                let ev = conn.handle_request(&req, now_ms, &catalog, &mut resp);
                                (consumed, Some(ev))
                            }
                            Err(e) => {
                                self.bump(|s| s.bad_requests += 1);
                                let _ = (&*stream)
                                    .write_all(b"RTSP/1.0 400 Bad Request\r\n\r\n")
                                    .await;
                                break 'conn format!("malformed request ({e:?})");
                            }
                        };
                        // consumed <= rlen: parse only reports bytes it was given.
                        rbuf.copy_within(consumed.min(rlen)..rlen, 0);
                        rlen -= consumed.min(rlen);
                        head_deadline = None;
                        let Some(mut ev) = outcome else { continue };
                        idle_deadline = Instant::now() + session_timeout;
                        // Play: create the viewer before answering, so RTP-Info and the first
                        // packet come from the same ring state; it sends nothing until the
                        // response is out. If it cannot start, the answer says so.
                        if let Some(SessionEvent::Play) = ev {
                            if viewer.is_none() {
                                match self.start_viewer(&conn, stream.clone(), peer, now_ms) {
                                    Ok(v) => {
                                        viewer = Some(v);
                                        slot.release();
                                    }
                                    Err(e) => {
                                        let status = if e == AT_CAPACITY { 453 } else { 503 };
                                        log::warn!(
                                            "RTSP {peer}: cannot play: {e} (answered {status})"
                                        );
                                        conn.play_failed(status, &mut resp);
                                        ev = None;
                                    }
                                }
                            }
                        }
                        // TEARDOWN of an interleaved session: stop the viewer first (no packet
                        // after this point), then write what it had queued (whole packets, the
                        // earlier replies) and the reply, so the client gets its 200.
                        if let (Some(SessionEvent::Teardown), Some(v)) = (ev, viewer.as_ref()) {
                            if lock(v).is_tcp() {
                                let v = v.clone();
                                viewer = None;
                                self.stop_viewer(&v, "TEARDOWN");
                                slot.retake();
                                let queued = lock(&v).take_queued();
                                let stall = Duration::from_millis(self.cfg.stall_timeout_ms.into());
                                let write = async {
                                    (&*stream).write_all(&queued).await?;
                                    (&*stream).write_all(&resp).await
                                };
                                let timed_out = async {
                                    smol::Timer::after(stall).await;
                                    Err(io::ErrorKind::TimedOut.into())
                                };
                                if let Err(e) = write.or(timed_out).await {
                                    break 'conn format!("write error after TEARDOWN: {e}");
                                }
                                continue;
                            }
                        }
                        match &viewer {
                            Some(v) if lock(v).is_tcp() => lock(v).queue_control(&resp),
                            _ => {
                                if let Err(e) = (&*stream).write_all(&resp).await {
                                    break 'conn format!("write error: {e}");
                                }
                            }
                        }
                        match ev {
                            Some(SessionEvent::Play) => {
                                if let Some(v) = &viewer {
                                    lock(v).paused = false;
                                }
                            }
                            Some(SessionEvent::Pause) => {
                                if let Some(v) = &viewer {
                                    let mut v = lock(v);
                                    v.paused = true;
                                    // The next PLAY's RTP-Info must name the sequence numbers
                                    // the viewer will really send next.
                                    for t in Track::ALL {
                                        if let Some(tr) = v.sender.track(t) {
                                            conn.set_next_seq(t, tr.rtp.seq);
                                        }
                                    }
                                }
                            }
                            Some(SessionEvent::Teardown) => {
                                if let Some(v) = viewer.take() {
                                    self.stop_viewer(&v, "TEARDOWN");
                                    slot.retake();
                                }
                            }
                            _ => {}
                        }
                        if let Some(v) = &viewer {
                            self.pump(v, now_ms);
                        }
                    }
                    // Blank lines between messages carry nothing: drop them, so chatter
                    // cannot fill the buffer. Before playing they still start the request
                    // clock (chatter must not hold a slot); a playing viewer's stray CRLF
                    // must not cut it.
                    let blank = rlen > 0
                        && rbuf
                            .get(..rlen)
                            .is_some_and(|b| b.iter().all(|&c| c == b'\r' || c == b'\n'));
                    if blank {
                        rlen = 0;
                    }
                    // Bytes of a message that is not complete yet: its clock started with
                    // the first of them, and only a complete message stops it.
                    if rlen > 0 || (blank && viewer.is_none()) {
                        head_deadline.get_or_insert(Instant::now() + request_timeout);
                    }
                }
            }
        };
        if let Some(v) = viewer.take() {
            self.stop_viewer(&v, &why);
        } else {
            log::debug!("RTSP {peer}: {why}");
        }
    }

    /// Sends what a viewer can take now (after its socket drained, or after a request).
    /// Lock order as everywhere: hub, then viewer.
    fn pump(&self, v: &Arc<Mutex<RtspViewer>>, now_ms: u64) {
        let name = lock(v).stream.clone();
        if let Some(s) = self.stream(&name) {
            let hub = lock(&s.hub);
            lock(v).pump(&hub.view(), now_ms);
        }
    }

    fn start_viewer(
        &self,
        conn: &RtspConn,
        stream: Arc<Async<TcpStream>>,
        peer: SocketAddr,
        now_ms: u64,
    ) -> Result<Arc<Mutex<RtspViewer>>, String> {
        let name = conn.stream().ok_or("no stream")?.to_string();
        let s = self.stream(&name).ok_or("unknown stream")?;
        let mut hub = lock(&s.hub);
        let mut tracks: [Option<SenderTrack>; 2] = [None, None];
        let mut channels = [(0u8, 1u8); 2];
        let mut udp_dst: [Option<(SocketAddr, SocketAddr)>; 2] = [None, None];
        let mut tcp = None;
        for (t, setup) in conn.tracks() {
            let (codec, clock_hz, pt) = match t {
                Track::Video => (
                    hub.video.as_ref().map(|v| v.codec).ok_or("no video")?,
                    VIDEO_CLOCK_HZ,
                    VIDEO_PAYLOAD_TYPE,
                ),
                Track::Audio => (
                    Codec::Aac,
                    hub.audio.map(|a| a.sample_rate).ok_or("no audio")?,
                    AUDIO_PAYLOAD_TYPE,
                ),
            };
            tracks[t.index()] = Some(SenderTrack {
                rtp: RtpTrackState::new(pt, setup.ssrc, setup.initial_seq),
                ts_offset: setup.rtp_ts_offset,
                clock_hz,
                packetizer: RtpPacketizer::new(codec, self.cfg.max_packet_bytes as usize)
                    .map_err(|e| e.to_string())?,
            });
            match setup.transport {
                TrackTransport::Udp {
                    client_rtp,
                    client_rtcp,
                } => {
                    // Only ever to the RTSP peer's own address.
                    udp_dst[t.index()] = Some((
                        SocketAddr::new(peer.ip(), client_rtp.port()),
                        SocketAddr::new(peer.ip(), client_rtcp.port()),
                    ));
                    tcp = Some(false);
                }
                TrackTransport::Interleaved {
                    rtp_channel,
                    rtcp_channel,
                } => {
                    channels[t.index()] = (rtp_channel, rtcp_channel);
                    tcp = Some(true);
                }
            }
        }
        let tcp = tcp.ok_or("no track set up")?;
        let sender = RtpSender::new(&hub.ring, tracks, s.max_lag_bytes, "rillcast", now_ms);
        let out = if tcp {
            Out::Tcp {
                stream,
                channels,
                buf: vec![0u8; VIEWER_TCP_BUFFER_BYTES].into_boxed_slice(),
                start: 0,
                end: 0,
                blocked_since_ms: None,
            }
        } else {
            Out::Udp {
                dst: udp_dst,
                buf: vec![0u8; self.cfg.max_packet_bytes as usize + 64].into_boxed_slice(),
            }
        };
        let v = Arc::new(Mutex::new(RtspViewer {
            stream: name.clone(),
            peer,
            sender,
            out,
            udp: self.udp_sockets(),
            paused: true,
            closed: false,
            last_seen_ms: now_ms,
            waker: None,
            packets_dropped: 0,
        }));
        let as_consumer: Arc<Mutex<dyn Consumer>> = v.clone();
        if !hub.add_consumer(as_consumer) {
            return Err(AT_CAPACITY.into());
        }
        if let Out::Udp { dst, .. } = &lock(&v).out {
            let mut peers = self.rtcp_peers.borrow_mut();
            for (rtp, rtcp) in dst.iter().flatten() {
                peers.insert(*rtp, Arc::downgrade(&v));
                peers.insert(*rtcp, Arc::downgrade(&v));
            }
        }
        lock(&self.viewers).push(Arc::downgrade(&v));
        self.bump(|s| {
            s.viewers_now += 1;
            s.viewers_total += 1;
        });
        if let Some(h) = self.viewer_hook.borrow().as_ref() {
            h(&name, &format!("rtsp-{peer}"), true);
        }
        log::info!(
            "[{name}] viewer {peer} playing over {} ({} viewers)",
            if tcp { "TCP" } else { "UDP" },
            hub.consumer_count()
        );
        Ok(v)
    }

    fn stop_viewer(&self, v: &Arc<Mutex<RtspViewer>>, why: &str) {
        let (name, peer) = {
            let mut b = lock(v);
            b.close();
            (b.stream.clone(), b.peer)
        };
        if let Some(s) = self.stream(&name) {
            let c: Arc<Mutex<dyn Consumer>> = v.clone();
            lock(&s.hub).remove_consumer(&c);
        }
        if let Out::Udp { dst, .. } = &lock(v).out {
            let mut peers = self.rtcp_peers.borrow_mut();
            for (rtp, rtcp) in dst.iter().flatten() {
                peers.remove(rtp);
                peers.remove(rtcp);
            }
        }
        self.bump(|s| s.viewers_now = s.viewers_now.saturating_sub(1));
        if let Some(h) = self.viewer_hook.borrow().as_ref() {
            h(&name, &format!("rtsp-{peer}"), false);
        }
        let b = lock(v);
        let c = b.sender.cursor();
        log::info!(
            "[{name}] viewer {peer} left: {why} (skipped {} frames, {} resyncs, {} packets dropped)",
            c.skipped_frames,
            c.resyncs,
            b.packets_dropped
        );
    }

    fn udp_sockets(&self) -> Option<(Arc<UdpSocket>, Arc<UdpSocket>)> {
        let rtp = self.udp_rtp.as_ref()?.get_ref().try_clone().ok()?;
        let rtcp = self.udp_rtcp.as_ref()?.get_ref().try_clone().ok()?;
        Some((Arc::new(rtp), Arc::new(rtcp)))
    }
}

/// The error [`RtspServer::start_viewer`] gives when the hub has no consumer slot (→ 453).
const AT_CAPACITY: &str = "stream at viewer capacity";

/// One connection's place in its address's count of connections that do not play
/// (`max_pending_per_address`); released while the connection plays, and on drop.
struct PendingSlot {
    server: Rc<RtspServer>,
    key: IpAddr,
    held: bool,
}

impl PendingSlot {
    fn take(server: Rc<RtspServer>, key: IpAddr) -> Self {
        *server.pending.borrow_mut().entry(key).or_insert(0) += 1;
        PendingSlot {
            server,
            key,
            held: true,
        }
    }

    fn release(&mut self) {
        if !std::mem::replace(&mut self.held, false) {
            return;
        }
        let mut pending = self.server.pending.borrow_mut();
        if let Some(n) = pending.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                pending.remove(&self.key);
            }
        }
    }

    /// Counts the connection again (it stopped playing); it may exceed the cap, which only
    /// refuses new connections.
    fn retake(&mut self) {
        if !std::mem::replace(&mut self.held, true) {
            *self
                .server
                .pending
                .borrow_mut()
                .entry(self.key)
                .or_insert(0) += 1;
        }
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        self.release();
    }
}

enum Ev {
    Read(io::Result<usize>),
    Writable,
    Closed,
    Idle,
}

/// The RTSP core's view of the streams.
struct Catalog<'a> {
    server: &'a RtspServer,
    local: SocketAddr,
}

impl StreamCatalog for Catalog<'_> {
    fn sdp(&self, stream: &str) -> Option<String> {
        let s = self.server.stream(stream)?;
        let hub = lock(&s.hub);
        if !hub.is_live() {
            return None;
        }
        let id = stream.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        write_describe(
            &SdpSession {
                stream_name: stream,
                server_addr: self.local.ip(),
                session_id: id >> 1,
                session_version: hub.params_generation as u64,
            },
            hub.video.as_ref(),
            hub.audio.as_ref(),
        )
        .ok()
    }

    fn credentials(&self, stream: &str) -> Option<Credentials> {
        let a = self.server.stream(stream)?.auth.as_ref()?;
        Some(Credentials {
            user: a.user.clone(),
            password: a.password.clone(),
            allow_basic: true,
        })
    }

    fn has_track(&self, stream: &str, track: Track) -> bool {
        self.server.stream(stream).is_some_and(|s| {
            let hub = lock(&s.hub);
            match track {
                Track::Video => hub.video.is_some(),
                Track::Audio => hub.audio.is_some(),
            }
        })
    }

    fn play_start_pts(&self, stream: &str, track: Track) -> Option<u64> {
        let s = self.server.stream(stream)?;
        let hub = lock(&s.hub);
        let ring = &hub.ring;
        let start = if hub.video.is_some() {
            ring.last_video_keyframe()?
        } else {
            ring.head().saturating_sub(1)
        };
        // The same rule as RtpSender: audio starts at the first frame not older than the
        // keyframe the viewer starts with.
        let key_us = match ring.get(start) {
            Lookup::Frame(f) if f.meta.track == Track::Video => {
                Some(f.meta.pts.saturating_mul(1_000_000) / VIDEO_CLOCK_HZ as u64)
            }
            _ => None,
        };
        let audio_hz = hub.audio.map_or(48_000, |a| a.sample_rate).max(1) as u64;
        let audio_end_us = |pts: u64| pts.saturating_add(1024).saturating_mul(1_000_000) / audio_hz;
        (start..ring.head()).find_map(|q| match ring.get(q) {
            Lookup::Frame(f) if f.meta.track == track => match (track, key_us) {
                (Track::Audio, Some(k)) if audio_end_us(f.meta.pts) <= k => None,
                _ => Some(f.meta.pts),
            },
            _ => None,
        })
    }

    fn viewer_slot_available(&self, _stream: &str) -> bool {
        self.server.stats().viewers_now < self.server.max_viewers
    }

    fn auth_locked(&self, peer: IpAddr, now_ms: u64) -> bool {
        let locked = self
            .server
            .throttle
            .borrow()
            .locked_for_ms(peer, now_ms)
            .is_some();
        if locked {
            self.server.bump(|s| s.auth_throttled += 1);
        }
        locked
    }

    fn auth_attempt(&self, peer: IpAddr, ok: bool, now_ms: u64) {
        let mut throttle = self.server.throttle.borrow_mut();
        if ok {
            throttle.record_success(peer);
            return;
        }
        self.server.bump(|s| s.auth_failures += 1);
        if throttle.record_failure(peer, now_ms) {
            log::warn!(
                "RTSP: {} locked out of authentication for {} s after {} wrong credentials",
                peer_key(peer),
                self.server.cfg.auth_lockout_s,
                self.server.cfg.auth_max_failures
            );
        } else {
            log::debug!("RTSP {peer}: wrong credentials");
        }
    }
}

enum Out {
    Udp {
        /// (RTP, RTCP) destination per track: the RTSP peer's address, client's ports.
        dst: [Option<(SocketAddr, SocketAddr)>; 2],
        buf: Box<[u8]>,
    },
    Tcp {
        stream: Arc<Async<TcpStream>>,
        /// (RTP, RTCP) interleaved channel per track.
        channels: [(u8, u8); 2],
        /// Interleaved frames and control responses waiting for the socket.
        buf: Box<[u8]>,
        start: usize,
        end: usize,
        blocked_since_ms: Option<u64>,
    },
}

/// One playing RTSP session, registered with its stream's hub.
pub struct RtspViewer {
    stream: String,
    peer: SocketAddr,
    sender: RtpSender,
    out: Out,
    udp: Option<(Arc<UdpSocket>, Arc<UdpSocket>)>,
    paused: bool,
    closed: bool,
    last_seen_ms: u64,
    waker: Option<Waker>,
    packets_dropped: u64,
}

impl RtspViewer {
    fn is_tcp(&self) -> bool {
        matches!(self.out, Out::Tcp { .. })
    }

    fn close(&mut self) {
        self.closed = true;
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Takes the bytes queued for an interleaved connection (the tail of a packet first, so
    /// the stream stays framed); call after the viewer was stopped, to write them out.
    fn take_queued(&mut self) -> Vec<u8> {
        match &mut self.out {
            Out::Tcp {
                buf, start, end, ..
            } => {
                let queued = buf.get(*start..*end).unwrap_or(&[]).to_vec();
                *start = 0;
                *end = 0;
                queued
            }
            Out::Udp { .. } => Vec::new(),
        }
    }

    /// Queues an RTSP response on the interleaved connection, between whole RTP packets.
    fn queue_control(&mut self, resp: &[u8]) {
        if let Out::Tcp {
            buf, start, end, ..
        } = &mut self.out
        {
            if buf.len() - *end < resp.len() {
                buf.copy_within(*start..*end, 0);
                *end -= *start;
                *start = 0;
            }
            if buf.len() - *end >= resp.len() {
                buf[*end..*end + resp.len()].copy_from_slice(resp);
                *end += resp.len();
            } else {
                // The client sends requests but reads nothing: it is stalled anyway.
                self.close();
            }
        }
    }

    /// Sends what the sender has, without blocking.
    fn pump(&mut self, view: &StreamView<'_>, now_ms: u64) {
        if self.closed {
            return;
        }
        let ntp = ntp_from_unix(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        );
        let RtspViewer {
            sender,
            out,
            udp,
            paused,
            closed,
            waker,
            packets_dropped,
            ..
        } = self;
        match out {
            Out::Udp { dst, buf } => {
                if *paused {
                    return;
                }
                let Some((rtp_sock, rtcp_sock)) = udp.as_ref() else {
                    return;
                };
                while let Some(Outgoing { track, rtcp, len }) =
                    sender.poll_packet(view.ring, now_ms, ntp, buf)
                {
                    let Some((rtp_dst, rtcp_dst)) = dst[track.index()] else {
                        continue;
                    };
                    let (sock, to) = if rtcp {
                        (rtcp_sock, rtcp_dst)
                    } else {
                        (rtp_sock, rtp_dst)
                    };
                    if let Err(e) = sock.send_to(&buf[..len], to) {
                        *packets_dropped += 1;
                        if e.kind() != io::ErrorKind::WouldBlock {
                            log::trace!("UDP send to {to}: {e}");
                        }
                    }
                }
            }
            Out::Tcp {
                stream,
                channels,
                buf,
                start,
                end,
                blocked_since_ms,
            } => loop {
                // Flush what is queued.
                while *start < *end {
                    match stream.get_ref().write(&buf[*start..*end]) {
                        Ok(0) => {
                            *closed = true;
                            return;
                        }
                        Ok(n) => *start += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            blocked_since_ms.get_or_insert(now_ms);
                            if let Some(w) = waker.take() {
                                w.wake();
                            }
                            return;
                        }
                        Err(_) => {
                            *closed = true;
                            if let Some(w) = waker.take() {
                                w.wake();
                            }
                            return;
                        }
                    }
                }
                *blocked_since_ms = None;
                *start = 0;
                *end = 0;
                if *paused {
                    return;
                }
                // Fill the buffer with whole interleaved packets.
                let max = sender_max_packet(sender);
                let mut any = false;
                while buf.len() - *end >= 4 + max {
                    let at = *end;
                    let Some(Outgoing { track, rtcp, len }) =
                        sender.poll_packet(view.ring, now_ms, ntp, &mut buf[at + 4..at + 4 + max])
                    else {
                        break;
                    };
                    let (rtp_ch, rtcp_ch) = channels[track.index()];
                    buf[at] = b'$';
                    buf[at + 1] = if rtcp { rtcp_ch } else { rtp_ch };
                    buf[at + 2..at + 4].copy_from_slice(&(len as u16).to_be_bytes());
                    *end += 4 + len;
                    any = true;
                }
                if !any {
                    return;
                }
            },
        }
    }
}

fn sender_max_packet(s: &RtpSender) -> usize {
    Track::ALL
        .iter()
        .filter_map(|t| s.track(*t))
        .map(|t| t.packetizer.max_packet_len())
        .max()
        .unwrap_or(1500)
        .max(128)
}

impl Consumer for RtspViewer {
    fn on_frame(&mut self, view: &StreamView<'_>, now_ms: u64) {
        // A blocked TCP viewer waits for its socket; its connection task pumps it.
        if let Out::Tcp {
            blocked_since_ms: Some(_),
            ..
        } = self.out
        {
            return;
        }
        self.pump(view, now_ms);
    }

    fn is_closed(&self) -> bool {
        self.closed
    }
}

/// Resolves when the viewer is blocked on its socket or closed.
struct Signal<'a>(&'a Arc<Mutex<RtspViewer>>);

impl Future for Signal<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut v = lock(self.0);
        let blocked = matches!(
            v.out,
            Out::Tcp {
                blocked_since_ms: Some(_),
                ..
            }
        );
        if v.closed || blocked {
            return Poll::Ready(());
        }
        match &v.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => v.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

fn bind_udp_pair(bind: &str, port: u16) -> io::Result<(Async<UdpSocket>, Async<UdpSocket>)> {
    if port != 0 {
        let rtcp_port = port.checked_add(1).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "no UDP port after 65535 for RTCP",
            )
        })?;
        let rtp = UdpSocket::bind((bind, port))?;
        let rtcp = UdpSocket::bind((bind, rtcp_port))?;
        return Ok((Async::new(rtp)?, Async::new(rtcp)?));
    }
    // Any free even/odd pair.
    for _ in 0..50 {
        let probe = UdpSocket::bind((bind, 0))?;
        let p = probe.local_addr()?.port() & !1;
        drop(probe);
        let Ok(rtp) = UdpSocket::bind((bind, p)) else {
            continue;
        };
        if let Ok(rtcp) = UdpSocket::bind((bind, p + 1)) {
            return Ok((Async::new(rtp)?, Async::new(rtcp)?));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        "no free UDP port pair",
    ))
}

/// Entropy for session ids and SSRCs without a dependency: std's hasher keys come from the OS.
fn seed_from_os() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Datagrams queued at the RTCP port before the reader runs are read in turns of at most
    /// [`UDP_READ_BUDGET`], with other tasks running in between (a flood cannot hold the
    /// control-plane thread), and every one from a non-viewer is counted.
    #[test]
    fn a_udp_flood_is_read_in_bounded_turns() {
        let cfg = RtspConfig {
            bind: "127.0.0.1".into(),
            udp_port: 0,
            ..RtspConfig::default()
        };
        let server = RtspServer::new(cfg, Vec::new(), Epoch(Instant::now()), 4).unwrap();
        let (_, rtcp_port) = server.udp_ports();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        // Small enough for the default receive buffer to hold them all.
        const QUEUED: u64 = 200;
        let mut rr = [0u8; 32];
        rr[..4].copy_from_slice(&[0x81, 201, 0, 7]);
        let steps = crate::net::block_on(async {
            crate::net::spawn(server.clone().rtcp_receiver()).detach();
            // Let the reader start waiting.
            for _ in 0..4 {
                smol::future::yield_now().await;
            }
            for _ in 0..QUEUED {
                tx.send_to(&rr, ("127.0.0.1", rtcp_port)).unwrap();
            }
            // Observe the counter between turns of the reader.
            let mut seen = vec![0u64];
            let t0 = Instant::now();
            while *seen.last().unwrap() < QUEUED && t0.elapsed() < Duration::from_secs(5) {
                smol::future::yield_now().await;
                let n = server.stats().udp_ignored;
                if n != *seen.last().unwrap() {
                    seen.push(n);
                }
            }
            seen
        });
        assert_eq!(*steps.last().unwrap(), QUEUED, "all counted: {steps:?}");
        let biggest = steps.windows(2).map(|w| w[1] - w[0]).max().unwrap();
        assert!(
            biggest <= UDP_READ_BUDGET as u64,
            "one turn read {biggest} datagrams: {steps:?}"
        );
    }
}

//! fMP4 over WebSocket for browsers (Media Source Extensions): one fragment store per stream,
//! fed by the hub, and the `/<stream>/ws` route whose viewers are cursors into it.
//!
//! Owns: [`Fmp4Stream`] — a hub [`Consumer`] that muxes every frame once with
//! [`proto::fmp4`](crate::proto::fmp4) into a fragment ring (a [`MediaRing`] whose "frames" are
//! `moof`+`mdat` fragments, sized by the memory plan), keeps the init segment of the current
//! parameter generation, and pumps its WebSocket viewers on the ingest thread, the way RTSP
//! TCP viewers are pumped: each viewer writes straight from the store to its socket, without
//! blocking; a viewer whose socket is full is marked blocked and its connection task waits for
//! the socket, then pumps it again. [`Fmp4Handler`] is the [`HttpHandler`] that checks the
//! upgrade and the stream's credentials and hands the connection over.
//!
//! A viewer gets, in order: one text message (JSON: the MSE codecs string and the Unix time
//! of media time 0, for the page's latency readout), the init segment (binary), then one
//! binary message per fragment from the newest keyframe on. A new parameter generation sends
//! a new text + init pair. A viewer that falls behind by half the store, or whose fragment was
//! overwritten, re-enters at the newest keyframe ([`FrameCursor`]); memory never grows.
//!
//! Must not: allocate per frame (the fragment is written into a scratch buffer planned at
//! start, then once into the ring), read the clock per frame, or block the ingest thread.
//!
//! Later (LL-HLS, DASH): parts and segments are runs of consecutive fragments of this store;
//! a `BodyReader` over a seq range serves them as byte ranges without muxing again.

use crate::media::fanout::{lock, Consumer, FrameCursor, StreamView};
use crate::media::ring::{Lookup, MediaRing};
use crate::media::{AudioParams, Track};
use crate::net::hls::{codecs_string, TRACK_WAIT_MS};
use crate::net::http::{HttpBody, HttpHandler, HttpRequest, HttpResponse, Upgrade};
use crate::net::media_auth::{Caller, MediaAccess, MediaAuth};
use crate::proto::fmp4::{write_init, Fmp4Error, Fmp4Muxer, FRAGMENT_OVERHEAD_BYTES};
use crate::proto::ws::{self, ClientEvent, ClientFrameReader};
use smol::future::FutureExt;
use smol::io::AsyncReadExt;
use smol::Async;
use std::future::Future;
use std::io::{self, IoSlice, Write};
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Kernel send buffer of a WebSocket viewer: what it may hold beyond the store.
pub const VIEWER_SNDBUF_BYTES: usize = 256 * 1024;
/// A client data frame larger than this closes the connection (1009): we read no messages.
pub const MAX_CLIENT_FRAME_BYTES: u64 = 4096;

/// What one stream's fMP4 store needs at start (from the memory plan).
#[derive(Clone, Debug)]
pub struct Fmp4StreamConfig {
    pub name: String,
    /// Bytes of the fragment ring.
    pub arena_bytes: usize,
    /// Fragment descriptors in the ring.
    pub slots: usize,
    /// Largest access unit the ring accepts: the scratch buffer is this plus the headers.
    pub max_au_bytes: usize,
    /// WebSocket viewers at once (more get 503).
    pub max_viewers: usize,
    /// The config promises audio: wait for its parameters (up to [`TRACK_WAIT_MS`]).
    pub expect_audio: bool,
    /// Unix time (ms) of the daemon's epoch.
    pub epoch_unix_ms: u64,
}

/// Which message a viewer is in the middle of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Msg {
    Hello,
    Init,
    Fragment(u64),
    /// The viewer's queued control frame (header included).
    Control,
}

struct WsViewer {
    id: u64,
    socket: Arc<Async<TcpStream>>,
    cursor: FrameCursor,
    /// The init generation (`Fmp4Stream::init_epoch`) this viewer has been sent.
    init_sent: u64,
    /// A video keyframe has been sent in this generation (until then, nothing else is).
    started: bool,
    /// (message, bytes of it written so far, header included).
    sending: Option<(Msg, usize)>,
    control: heapless::Vec<u8, 130>,
    close_after_control: bool,
    /// The socket was full: the connection task waits for it and pumps again.
    blocked: bool,
    closed: bool,
    waker: Option<Waker>,
}

impl WsViewer {
    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// Counters for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fmp4Stats {
    pub fragments: u64,
    pub refused_frames: u64,
    pub viewers: usize,
    pub viewers_refused: u64,
    /// Viewers that had to skip ahead to a keyframe.
    pub resyncs: u64,
    /// Viewers whose socket is full right now (their connection task waits for it).
    pub viewers_blocked: usize,
    /// Bytes written to viewers' sockets.
    pub sent_bytes: u64,
}

/// One stream's fragment store and its WebSocket viewers.
pub struct Fmp4Stream {
    cfg: Fmp4StreamConfig,
    cursor: FrameCursor,
    store: MediaRing,
    scratch: Box<[u8]>,
    muxer: Option<Fmp4Muxer>,
    generation: u32,
    first_frame_ms: Option<u64>,
    audio: Option<AudioParams>,
    init: Vec<u8>,
    hello: Vec<u8>,
    init_epoch: u64,
    /// First store seq of the current init generation.
    generation_start_seq: u64,
    viewers: Vec<WsViewer>,
    next_viewer_id: u64,
    stats: Fmp4Stats,
}

impl Fmp4Stream {
    /// A store fed from `cursor` (a cursor into the hub's ring). Allocates everything now.
    pub fn new(cfg: Fmp4StreamConfig, cursor: FrameCursor) -> Self {
        Fmp4Stream {
            store: MediaRing::new(cfg.arena_bytes, cfg.slots),
            scratch: vec![0u8; cfg.max_au_bytes + FRAGMENT_OVERHEAD_BYTES].into_boxed_slice(),
            viewers: Vec::with_capacity(cfg.max_viewers),
            cfg,
            cursor,
            muxer: None,
            generation: u32::MAX,
            first_frame_ms: None,
            audio: None,
            init: Vec::with_capacity(4096),
            hello: Vec::with_capacity(256),
            init_epoch: 0,
            generation_start_seq: 0,
            next_viewer_id: 1,
            stats: Fmp4Stats::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    pub fn stats(&self) -> Fmp4Stats {
        Fmp4Stats {
            viewers: self.viewers.iter().filter(|v| !v.closed).count(),
            viewers_blocked: self.viewers.iter().filter(|v| v.blocked).count(),
            ..self.stats
        }
    }

    /// The current init segment (empty before the tracks are known).
    pub fn init_segment(&self) -> &[u8] {
        &self.init
    }

    /// Brings the init segment in line with the hub's parameters. False: not ready.
    fn configure(&mut self, view: &StreamView<'_>, now_ms: u64) -> bool {
        if view.params_generation == self.generation {
            // Tried already: ready, or refused (logged once) until the parameters change.
            return self.muxer.is_some();
        }
        let first = *self.first_frame_ms.get_or_insert(now_ms);
        let waited = now_ms.saturating_sub(first) >= TRACK_WAIT_MS;
        if view.video.is_none() || (self.cfg.expect_audio && view.audio.is_none() && !waited) {
            return false;
        }
        // Once per parameter generation: the init segment and the hello may allocate.
        let info = match write_init(view.video, view.audio, &mut self.init) {
            Ok(i) => i,
            Err(e) => {
                log::warn!(
                    "[{}] fMP4 cannot describe these tracks: {e:?}",
                    self.cfg.name
                );
                self.generation = view.params_generation;
                self.muxer = None;
                self.init.clear();
                return false;
            }
        };
        let codecs = codecs_string(view.video, view.audio);
        self.hello.clear();
        self.hello.extend_from_slice(
            format!(
                "{{\"codecs\":\"{codecs}\",\"unix_ms_at_zero\":{}}}",
                self.cfg
                    .epoch_unix_ms
                    .saturating_sub(crate::ingest::source::Epoch::BASE_S * 1000)
            )
            .as_bytes(),
        );
        self.muxer = Some(Fmp4Muxer::new(info));
        self.generation = view.params_generation;
        self.audio = view.audio.copied();
        self.init_epoch += 1;
        self.generation_start_seq = self.store.head();
        log::info!(
            "[{}] fMP4 init segment: {codecs}, {} bytes (generation {})",
            self.cfg.name,
            self.init.len(),
            self.generation
        );
        true
    }

    fn mux_one(&mut self, meta: &crate::media::FrameMeta, data: &[u8]) {
        let Some(m) = self.muxer.as_mut() else {
            return;
        };
        let r: Result<(), Fmp4Error> =
            m.write_fragment(meta, data, &mut self.scratch)
                .and_then(|n| {
                    self.store
                        .push(*meta, &self.scratch[..n])
                        .map(|_| ())
                        .map_err(|_| Fmp4Error::BufferTooSmall)
                });
        match r {
            Ok(()) => self.stats.fragments += 1,
            // Audio frames before an audio track is described are expected: not an error.
            Err(Fmp4Error::NoSuchTrack) if meta.track == Track::Audio => {}
            Err(e) => {
                self.stats.refused_frames += 1;
                if self.stats.refused_frames % 1000 == 1 {
                    log::warn!(
                        "[{}] fMP4 frame refused: {e:?} ({} so far)",
                        self.cfg.name,
                        self.stats.refused_frames
                    );
                }
            }
        }
    }

    /// Registers a WebSocket viewer (after the 101 was sent on `socket`) starting at the
    /// newest keyframe; None when full. Its connection task pumps it while it is blocked.
    pub fn add_viewer(&mut self, socket: Arc<Async<TcpStream>>) -> Option<u64> {
        self.viewers.retain(|v| !v.closed);
        if self.viewers.len() >= self.cfg.max_viewers {
            self.stats.viewers_refused += 1;
            return None;
        }
        let id = self.next_viewer_id;
        self.next_viewer_id += 1;
        let cursor = FrameCursor::start(&self.store, [true, true], self.cfg.arena_bytes as u64 / 2);
        self.viewers.push(WsViewer {
            id,
            socket,
            cursor,
            init_sent: 0,
            started: false,
            sending: None,
            control: heapless::Vec::new(),
            close_after_control: false,
            blocked: false,
            closed: false,
            waker: None,
        });
        Some(id)
    }

    pub fn remove_viewer(&mut self, id: u64) {
        if let Some(v) = self.viewers.iter().find(|v| v.id == id) {
            self.stats.resyncs += v.cursor.resyncs;
        }
        self.viewers.retain(|v| v.id != id);
    }

    /// The socket of viewer `id` has room again (its connection task saw it writable):
    /// clears the block and pumps it.
    pub fn resume(&mut self, id: u64) {
        if let Some(i) = self.viewers.iter().position(|v| v.id == id) {
            self.viewers[i].blocked = false;
            self.pump(i);
        }
    }

    fn viewer(&mut self, id: u64) -> Option<&mut WsViewer> {
        self.viewers.iter_mut().find(|v| v.id == id)
    }

    /// Pumps viewer `i` until it is caught up, blocked, or closed.
    fn pump(&mut self, i: usize) {
        let Fmp4Stream {
            store,
            init,
            hello,
            init_epoch,
            generation_start_seq,
            viewers,
            muxer,
            cfg,
            stats,
            ..
        } = self;
        let max_lag_bytes = &(cfg.arena_bytes as u64 / 2);
        let Some(v) = viewers.get_mut(i) else {
            return;
        };
        if v.closed || v.blocked {
            return;
        }
        loop {
            let (msg, mut pos) = match v.sending {
                Some(s) => s,
                None => {
                    let next = if !v.control.is_empty() {
                        Msg::Control
                    } else if muxer.is_none() {
                        return; // not live yet
                    } else if v.init_sent != *init_epoch {
                        // A new generation: start at the newest keyframe (fragments of
                        // the old one are skipped below).
                        v.cursor = FrameCursor::start(store, [true, true], *max_lag_bytes);
                        v.init_sent = *init_epoch;
                        v.started = false;
                        Msg::Hello
                    } else {
                        match v.cursor.next(store) {
                            Some(f) if f.seq < *generation_start_seq => continue,
                            // MSE needs a keyframe first; audio before it is dropped too, so
                            // both tracks start together.
                            Some(f)
                                if !(v.started
                                    || f.meta.track == Track::Video && f.meta.keyframe) =>
                            {
                                continue
                            }
                            Some(f) => {
                                v.started = true;
                                Msg::Fragment(f.seq)
                            }
                            None => return,
                        }
                    };
                    (next, 0)
                }
            };
            let (opcode, payload): (u8, &[u8]) = match msg {
                Msg::Hello => (ws::OP_TEXT, hello),
                Msg::Init => (ws::OP_BINARY, init),
                Msg::Control => (0, &v.control),
                Msg::Fragment(seq) => match store.get(seq) {
                    Lookup::Frame(f) => (ws::OP_BINARY, f.data),
                    // Overwritten mid-message: the stream cannot be resumed.
                    _ => {
                        log::debug!("WS viewer {}: fragment {seq} evicted mid-send", v.id);
                        v.closed = true;
                        v.wake();
                        return;
                    }
                },
            };
            let before = pos;
            let r = write_message(&v.socket, opcode, payload, &mut pos);
            stats.sent_bytes += (pos - before) as u64;
            match r {
                Ok(true) => {
                    v.sending = None;
                    match msg {
                        Msg::Hello => v.sending = Some((Msg::Init, 0)),
                        Msg::Control => {
                            v.control.clear();
                            if v.close_after_control {
                                v.closed = true;
                                v.wake();
                                return;
                            }
                        }
                        _ => {}
                    }
                }
                Ok(false) => {
                    v.sending = Some((msg, pos));
                    v.blocked = true;
                    v.wake();
                    return;
                }
                Err(e) => {
                    log::debug!("WS viewer {}: {e}", v.id);
                    v.closed = true;
                    v.wake();
                    return;
                }
            }
        }
    }
}

/// Writes what it can of one WebSocket message (`opcode` 0: `payload` is a whole frame
/// already). `pos` counts bytes written so far. Ok(true): done; Ok(false): the socket is full.
fn write_message(
    socket: &Async<TcpStream>,
    opcode: u8,
    payload: &[u8],
    pos: &mut usize,
) -> io::Result<bool> {
    let mut hdr = [0u8; ws::MAX_HEADER_BYTES];
    let hl = if opcode == 0 {
        0
    } else {
        ws::frame_header(opcode, payload.len(), &mut hdr)
    };
    let total = hl + payload.len();
    let mut s = socket.get_ref();
    while *pos < total {
        let r = if *pos < hl {
            s.write_vectored(&[IoSlice::new(&hdr[*pos..hl]), IoSlice::new(payload)])
        } else {
            s.write(&payload[*pos - hl..])
        };
        match r {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => *pos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

impl Consumer for Fmp4Stream {
    fn on_frame(&mut self, view: &StreamView<'_>, now_ms: u64) {
        while let Some(f) = self.cursor.next(view.ring) {
            if !self.configure(view, now_ms) {
                continue;
            }
            if f.meta.track == Track::Audio && self.audio.is_none() {
                continue;
            }
            self.mux_one(&f.meta, f.data);
        }
        for i in 0..self.viewers.len() {
            self.pump(i);
        }
    }

    fn is_closed(&self) -> bool {
        false
    }
}

/// One stream's fMP4 state, shared by its ingest thread and the HTTP side.
pub type SharedFmp4Stream = Arc<Mutex<Fmp4Stream>>;

/// The `/<stream>/ws` route.
pub struct Fmp4Handler {
    streams: Vec<(String, SharedFmp4Stream)>,
    /// Stream credentials and the web session check, shared with HLS.
    auth: Rc<MediaAuth>,
    send_timeout_ms: u64,
}

impl Fmp4Handler {
    pub fn new(streams: Vec<SharedFmp4Stream>, auth: Rc<MediaAuth>, send_timeout_ms: u64) -> Self {
        let streams = streams
            .into_iter()
            .map(|s| {
                let name = lock(&s).name().to_string();
                (name, s)
            })
            .collect();
        Fmp4Handler {
            streams,
            auth,
            send_timeout_ms,
        }
    }
}

impl HttpHandler for Fmp4Handler {
    fn handle(&self, req: &HttpRequest<'_>) -> Option<HttpResponse> {
        let name = req.path.strip_prefix('/')?.strip_suffix("/ws")?;
        let (_, stream) = self.streams.iter().find(|(n, _)| n == name)?;
        if self.auth.allows(&Caller::new(req), name) == MediaAccess::Denied {
            return Some(MediaAuth::challenge(name));
        }
        let accept = match ws::check_upgrade(req.method, |h| req.header(h)) {
            Ok(a) => a,
            Err(ws::HandshakeError::Version) => {
                return Some(
                    HttpResponse::text(426, "WebSocket version 13 only\n")
                        .with_header("Sec-WebSocket-Version", "13"),
                )
            }
            Err(ws::HandshakeError::NotUpgrade) => {
                return Some(HttpResponse::text(
                    400,
                    "this is a WebSocket (fMP4 for Media Source Extensions)\n",
                ))
            }
            Err(e) => return Some(HttpResponse::text(e.status(), "bad WebSocket handshake\n")),
        };
        Some(
            HttpResponse::new(
                101,
                HttpBody::Upgrade(Box::new(WsSession {
                    stream: stream.clone(),
                    send_timeout_ms: self.send_timeout_ms,
                })),
            )
            .with_header("Upgrade", "websocket")
            .with_header("Sec-WebSocket-Accept", accept.as_str()),
        )
    }
}

/// One upgraded connection: registers a viewer, answers the client, waits when blocked.
struct WsSession {
    stream: SharedFmp4Stream,
    send_timeout_ms: u64,
}

impl Upgrade for WsSession {
    fn run(
        self: Box<Self>,
        socket: Arc<Async<TcpStream>>,
        peer: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin(async move { self.session(socket, peer).await })
    }
}

enum Ev {
    Read(io::Result<usize>),
    Signal,
}

impl WsSession {
    async fn session(self, socket: Arc<Async<TcpStream>>, peer: SocketAddr) {
        let _ = socket2::SockRef::from(socket.get_ref()).set_send_buffer_size(VIEWER_SNDBUF_BYTES);
        let (id, name) = {
            let mut st = lock(&self.stream);
            let name = st.name().to_string();
            match st.add_viewer(socket.clone()) {
                Some(id) => (id, name),
                None => {
                    log::warn!("[{name}] WebSocket viewer {peer} refused: viewer limit");
                    // 1013 "try again later" (RFC 6455 §7.4.1 registry).
                    let mut pos = 0;
                    let _ = write_message(&socket, ws::OP_CLOSE, &1013u16.to_be_bytes(), &mut pos);
                    return;
                }
            }
        };
        log::info!("[{name}] WebSocket viewer {peer} joined");
        {
            let mut st = lock(&self.stream);
            if let Some(i) = st.viewers.iter().position(|v| v.id == id) {
                st.pump(i);
            }
        }
        let mut reader = ClientFrameReader::new(MAX_CLIENT_FRAME_BYTES);
        let mut buf = [0u8; 512];
        let why: &str = loop {
            let mut s = &*socket;
            let ev = async { Ev::Read(s.read(&mut buf).await) }
                .or(async {
                    Signal {
                        stream: &self.stream,
                        id,
                    }
                    .await;
                    Ev::Signal
                })
                .await;
            match ev {
                Ev::Read(Ok(0)) => break "client left",
                Ev::Read(Err(_)) => break "read error",
                Ev::Read(Ok(n)) => {
                    let mut data = &buf[..n];
                    let mut st = lock(&self.stream);
                    let Some(v) = st.viewer(id) else {
                        break "removed";
                    };
                    while !data.is_empty() {
                        match reader.push(data) {
                            Ok((used, ev)) => {
                                data = data.get(used..).unwrap_or_default();
                                match ev {
                                    Some(ClientEvent::Ping(p)) => queue_control(v, ws::OP_PONG, &p),
                                    Some(ClientEvent::Close(code)) => {
                                        let c = code.unwrap_or(1000).to_be_bytes();
                                        queue_control(v, ws::OP_CLOSE, &c);
                                        v.close_after_control = true;
                                    }
                                    None => {}
                                }
                            }
                            Err(e) => {
                                log::debug!("[{name}] WebSocket {peer}: {e:?}");
                                queue_control(v, ws::OP_CLOSE, &e.close_code().to_be_bytes());
                                v.close_after_control = true;
                                break;
                            }
                        }
                    }
                    if let Some(i) = st.viewers.iter().position(|v| v.id == id) {
                        st.pump(i);
                    }
                }
                Ev::Signal => {
                    let closed = lock(&self.stream).viewer(id).is_none_or(|v| v.closed);
                    if closed {
                        break "closed";
                    }
                    // Blocked: wait for room, within the send timeout.
                    let deadline = Instant::now() + Duration::from_millis(self.send_timeout_ms);
                    let ok = socket
                        .writable()
                        .or(async {
                            smol::Timer::at(deadline).await;
                            Err(io::ErrorKind::TimedOut.into())
                        })
                        .await;
                    if ok.is_err() {
                        break "stalled (send timeout)";
                    }
                    lock(&self.stream).resume(id);
                }
            }
        };
        lock(&self.stream).remove_viewer(id);
        let _ = socket.get_ref().shutdown(std::net::Shutdown::Both);
        log::info!("[{name}] WebSocket viewer {peer} left: {why}");
    }
}

fn queue_control(v: &mut WsViewer, opcode: u8, payload: &[u8]) {
    if !v.control.is_empty() {
        return; // one pending control frame is enough; a flood of pings gets one pong
    }
    let mut hdr = [0u8; ws::MAX_HEADER_BYTES];
    let p = &payload[..payload.len().min(ws::MAX_CONTROL_PAYLOAD)];
    let hl = ws::frame_header(opcode, p.len(), &mut hdr);
    let _ = v.control.extend_from_slice(&hdr[..hl]);
    let _ = v.control.extend_from_slice(p);
}

/// Resolves when the viewer is blocked on its socket or closed (or gone).
struct Signal<'a> {
    stream: &'a SharedFmp4Stream,
    id: u64,
}

impl Future for Signal<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = lock(self.stream);
        let Some(v) = st.viewer(self.id) else {
            return Poll::Ready(());
        };
        if v.closed || v.blocked {
            return Poll::Ready(());
        }
        match &v.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => v.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::fanout::StreamHub;
    use crate::media::{Codec, FrameMeta};
    use std::io::Read;
    use std::net::TcpListener;

    fn params(sps_level: u8) -> crate::media::VideoParams {
        crate::ingest::source::video_params(
            Codec::H264,
            &[],
            &[0x67, 0x42, 0xc0, sps_level, 0xda, 0x05, 0x07, 0xe8, 0x40],
            &[0x68, 0xce, 0x3c, 0x80],
        )
    }

    fn hub_and_store(arena_bytes: usize) -> (StreamHub, SharedFmp4Stream) {
        let mut hub = StreamHub::new("live", MediaRing::new(1 << 20, 1024), 4);
        let cursor = FrameCursor::start(&hub.ring, [true, true], 1 << 19);
        let s = Arc::new(Mutex::new(Fmp4Stream::new(
            Fmp4StreamConfig {
                name: "live".into(),
                arena_bytes,
                slots: 256,
                max_au_bytes: 16 * 1024,
                max_viewers: 2,
                expect_audio: false,
                epoch_unix_ms: 1_735_689_600_000,
            },
            cursor,
        )));
        assert!(hub.add_consumer(s.clone()));
        (hub, s)
    }

    fn vframe(hub: &mut StreamHub, i: u64, len: usize) {
        let mut au = ((len - 4) as u32).to_be_bytes().to_vec();
        au.push(if i.is_multiple_of(10) { 0x65 } else { 0x41 });
        au.resize(len, 7);
        let meta = FrameMeta {
            track: Track::Video,
            pts: i * 3000,
            dts: i * 3000,
            keyframe: i.is_multiple_of(10),
        };
        hub.publish(meta, &au, i * 33).unwrap();
    }

    /// A connected pair: the server side as the store wants it, the client side blocking.
    fn socket_pair() -> (Arc<Async<TcpStream>>, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (Arc::new(Async::new(s).unwrap()), c)
    }

    fn read_msg(c: &mut TcpStream) -> (u8, Vec<u8>) {
        let mut h = [0u8; 2];
        c.read_exact(&mut h).unwrap();
        let len = match h[1] {
            126 => {
                let mut b = [0u8; 2];
                c.read_exact(&mut b).unwrap();
                u16::from_be_bytes(b) as usize
            }
            127 => {
                let mut b = [0u8; 8];
                c.read_exact(&mut b).unwrap();
                u64::from_be_bytes(b) as usize
            }
            n => n as usize,
        };
        let mut p = vec![0u8; len];
        c.read_exact(&mut p).unwrap();
        (h[0] & 0x0f, p)
    }

    #[test]
    fn viewer_gets_hello_init_then_fragments_from_a_keyframe_and_a_new_init_on_change() {
        let (mut hub, s) = hub_and_store(256 * 1024);
        hub.set_video_params(params(0x1e));
        for i in 0..15 {
            vframe(&mut hub, i, 500);
        }
        let (sock, mut c) = socket_pair();
        let id = lock(&s).add_viewer(sock).unwrap();
        for i in 15..25 {
            vframe(&mut hub, i, 500);
        }
        let (op, hello) = read_msg(&mut c);
        assert_eq!(op, ws::OP_TEXT);
        let hello = String::from_utf8(hello).unwrap();
        assert_eq!(
            hello,
            "{\"codecs\":\"avc1.42c01e\",\"unix_ms_at_zero\":1735686000000}"
        );
        let (op, init) = read_msg(&mut c);
        assert_eq!((op, &init[4..8]), (ws::OP_BINARY, &b"ftyp"[..]));
        assert_eq!(init, lock(&s).init_segment());
        // From the newest keyframe held when it joined (frame 10), every frame in order.
        for i in 10..25u64 {
            let (op, f) = read_msg(&mut c);
            assert_eq!(op, ws::OP_BINARY);
            assert_eq!(
                crate::proto::fmp4::fragment_decode_time(&f),
                Some(i * 3000),
                "fragment {i}"
            );
            assert_eq!(f.len(), FRAGMENT_OVERHEAD_BYTES + 500);
        }
        // New parameters: a new hello and init before the next keyframe's fragment.
        hub.set_video_params(params(0x1f));
        for i in 30..32 {
            vframe(&mut hub, i, 500);
        }
        let (op, hello) = read_msg(&mut c);
        assert_eq!(op, ws::OP_TEXT);
        assert!(String::from_utf8(hello).unwrap().contains("avc1.42c01f"));
        assert_eq!(read_msg(&mut c).0, ws::OP_BINARY);
        let (_, f) = read_msg(&mut c);
        assert_eq!(crate::proto::fmp4::fragment_decode_time(&f), Some(90_000));
        let st = lock(&s).stats();
        assert_eq!(
            (st.viewers, st.viewers_blocked, st.refused_frames),
            (1, 0, 0)
        );
        lock(&s).remove_viewer(id);
        assert_eq!(lock(&s).stats().viewers, 0);
    }

    #[test]
    fn a_full_socket_blocks_only_that_viewer_and_the_cap_holds() {
        let (mut hub, s) = hub_and_store(4 << 20);
        hub.set_video_params(params(0x1e));
        vframe(&mut hub, 0, 100);
        let (slow, _never_read) = socket_pair();
        let _ = socket2::SockRef::from(slow.get_ref()).set_send_buffer_size(4096);
        let (fast, mut c) = socket_pair();
        lock(&s).add_viewer(slow).unwrap();
        let fast_id = lock(&s).add_viewer(fast).unwrap();
        let (third, _) = socket_pair();
        assert_eq!(lock(&s).add_viewer(third), None, "max_viewers = 2");
        let reader = std::thread::spawn(move || {
            let mut total = 0usize;
            let mut b = [0u8; 65536];
            while let Ok(n) = c.read(&mut b) {
                if n == 0 {
                    break;
                }
                total += n;
                if total >= 2_900_000 {
                    break;
                }
            }
            total
        });
        for i in 1..250 {
            vframe(&mut hub, i, 12_000);
            // What the fast viewer's connection task does when its reader is late.
            let deadline = Instant::now() + Duration::from_secs(10);
            while lock(&s).stats().viewers_blocked == 2 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
                lock(&s).resume(fast_id);
            }
        }
        let st = lock(&s).stats();
        assert_eq!(st.viewers_blocked, 1, "only the slow one: {st:?}");
        assert_eq!(st.viewers_refused, 1);
        assert!(
            reader.join().unwrap() >= 2_900_000,
            "the fast viewer got everything"
        );
    }

    #[test]
    fn a_viewer_far_behind_skips_to_the_newest_keyframe_and_memory_stays_put() {
        let (mut hub, s) = hub_and_store(1 << 20);
        hub.set_video_params(params(0x1e));
        let (sock, c) = socket_pair();
        let _ = socket2::SockRef::from(sock.get_ref()).set_send_buffer_size(4096);
        let id = lock(&s).add_viewer(sock).unwrap();
        // Nobody reads: the viewer blocks early; 60 frames of 12 KB pass it by (720 KB, more
        // than half of the 1 MiB store, less than all of it).
        for i in 0..60 {
            vframe(&mut hub, i, 12_000);
        }
        assert_eq!(lock(&s).stats().viewers_blocked, 1);
        let mut c = c;
        c.set_read_timeout(Some(Duration::from_millis(700)))
            .unwrap();
        let reader = std::thread::spawn(move || {
            let mut times = Vec::new();
            // hello and init first
            assert_eq!(read_msg(&mut c).0, ws::OP_TEXT);
            assert_eq!(read_msg(&mut c).0, ws::OP_BINARY);
            let mut h = [0u8; 2];
            while c.read_exact(&mut h).is_ok() {
                let mut b = [0u8; 2];
                let len = match h[1] {
                    126 => {
                        c.read_exact(&mut b).unwrap();
                        u16::from_be_bytes(b) as usize
                    }
                    n => n as usize,
                };
                let mut p = vec![0u8; len];
                c.read_exact(&mut p).unwrap();
                times.push(crate::proto::fmp4::fragment_decode_time(&p).unwrap() / 3000);
            }
            times
        });
        // What its connection task does once the socket drains.
        let deadline = Instant::now() + Duration::from_secs(10);
        while lock(&s).stats().viewers_blocked == 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
            lock(&s).resume(id);
        }
        let frames = reader.join().unwrap();
        // In order up to where it was, then the newest keyframe (50) and on: one jump.
        let jumps: Vec<_> = frames.windows(2).filter(|w| w[1] != w[0] + 1).collect();
        assert_eq!(jumps.len(), 1, "{frames:?}");
        assert_eq!(jumps[0][1], 50, "{frames:?}");
        assert_eq!((frames[0], frames.last().copied()), (0, Some(59)));
        lock(&s).remove_viewer(id);
        assert_eq!(lock(&s).stats().resyncs, 1);
    }

    fn req<'a>(path: &'a str, headers: &'a [(&'a str, &'a str)]) -> HttpRequest<'a> {
        HttpRequest {
            method: "GET",
            path,
            query: None,
            headers,
            body: &[],
            peer: "127.0.0.1:1".parse().unwrap(),
        }
    }

    #[test]
    fn handler_checks_credentials_and_the_handshake() {
        let (_hub, s) = hub_and_store(256 * 1024);
        let auth = crate::config::AuthConfig {
            user: "viewer".into(),
            password: "s3cret".into(),
        };
        let media_auth = Rc::new(MediaAuth::new([("live", Some(&auth))]));
        media_auth.set_session_check(Box::new(|r| {
            r.header("cookie") == Some("rillcast_session=ok")
        }));
        let h = Fmp4Handler::new(vec![s], media_auth, 1000);
        let up: &[(&str, &str)] = &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        assert!(h.handle(&req("/other/ws", up)).is_none());
        assert!(h.handle(&req("/live/index.m3u8", up)).is_none());
        let r = h.handle(&req("/live/ws", up)).unwrap();
        assert_eq!(r.status, 401);
        let with = |extra: (&'static str, &'static str)| {
            let mut v = up.to_vec();
            v.push(extra);
            v
        };
        let basic = with(("Authorization", "Basic dmlld2VyOnMzY3JldA=="));
        let r = h.handle(&req("/live/ws", &basic)).unwrap();
        assert_eq!(r.status, 101);
        assert!(r
            .headers
            .iter()
            .any(|(k, v)| *k == "Sec-WebSocket-Accept" && v == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        let wrong = with(("Authorization", "Basic dmlld2VyOndyb25n"));
        assert_eq!(h.handle(&req("/live/ws", &wrong)).unwrap().status, 401);
        let cookie = with(("Cookie", "rillcast_session=ok"));
        assert_eq!(h.handle(&req("/live/ws", &cookie)).unwrap().status, 101);
        let plain: &[(&str, &str)] = &[("Authorization", "Basic dmlld2VyOnMzY3JldA==")];
        assert_eq!(h.handle(&req("/live/ws", plain)).unwrap().status, 400);
    }
}

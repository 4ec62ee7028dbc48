//! One harness for the end-to-end tests: start the real `rillcast` binary on loopback with a
//! config written for the test, talk to it with real clients (ffmpeg, GStreamer) or with the
//! small RTSP client below, and stop it on drop. Every wait is bounded.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod alloc;
pub mod media;
pub mod nginx;

/// Panics with an install hint when an external tool is missing: tests never skip silently.
pub fn require_tool(tool: &str) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "`{tool}` is not installed: run scripts/install-deps.sh (the test suite needs real peers)"
    );
}

/// A free TCP port on 127.0.0.1 (and, for UDP pairs, `p` and `p+1` free for UDP).
pub fn free_port() -> u16 {
    for _ in 0..200 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        // Linux gives odd ports to bind(0); take the even one below it.
        let p = l.local_addr().unwrap().port() & !1;
        drop(l);
        if p > 1024
            && TcpListener::bind(("127.0.0.1", p)).is_ok()
            && UdpSocket::bind(("127.0.0.1", p)).is_ok()
            && UdpSocket::bind(("127.0.0.1", p + 1)).is_ok()
            && TcpListener::bind(("127.0.0.1", p + 1)).is_ok()
        {
            return p;
        }
    }
    panic!("no free port pair");
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "rillcast-{tag}-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() ^ (rand_u64() & 0xffff_ffff) as u128
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(Instant::now().elapsed().as_nanos() as u64);
    h.finish()
}

/// The daemon under test.
pub struct Daemon {
    pub child: Child,
    pub rtsp_port: u16,
    pub http_port: u16,
    pub udp_port: u16,
    pub dir: PathBuf,
    pub log_path: PathBuf,
    /// The command-line arguments after `--config PATH` (kept for [`Daemon::restart`]).
    pub args: Vec<String>,
}

impl Daemon {
    /// Starts `rillcast` with `extra` config appended after the ports, and waits until RTSP
    /// answers and every stream is live (DESCRIBE 200) or `timeout` passes.
    pub fn start(tag: &str, extra: &str) -> Daemon {
        Self::start_with(tag, extra, &[], Duration::from_secs(20))
    }

    pub fn start_with(tag: &str, extra: &str, args: &[&str], timeout: Duration) -> Daemon {
        Self::start_full(tag, "", extra, args, timeout)
    }

    /// As [`Daemon::start_with`], with extra keys for the `[rtsp]` table.
    pub fn start_full(
        tag: &str,
        rtsp_extra: &str,
        extra: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Daemon {
        Self::start_env(tag, rtsp_extra, extra, args, &[], timeout)
    }

    /// As [`Daemon::start_full`], with extra environment variables for the daemon.
    pub fn start_env(
        tag: &str,
        rtsp_extra: &str,
        extra: &str,
        args: &[&str],
        envs: &[(&str, &str)],
        timeout: Duration,
    ) -> Daemon {
        // Ports are probed free and then released, so a concurrent test can take one before the
        // daemon binds it: a daemon that exits before listening is retried on fresh ports.
        for attempt in 1..=3 {
            let dir = temp_dir(tag);
            let rtsp_port = free_port();
            let udp_port = free_port();
            let mut http_port = free_port();
            while http_port == rtsp_port || http_port == udp_port || http_port == udp_port + 1 {
                http_port = free_port();
            }
            let cfg = format!(
                "[rtsp]\nport = {rtsp_port}\nbind = \"127.0.0.1\"\nudp_port = {udp_port}\n{rtsp_extra}\n\
                 [http]\nport = {http_port}\nbind = \"127.0.0.1\"\n{extra}\n"
            );
            let cfg_path = dir.join("rillcast.toml");
            std::fs::write(&cfg_path, cfg).unwrap();
            let log_path = dir.join("daemon.log");
            let log = std::fs::File::create(&log_path).unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_rillcast"))
                .arg("--config")
                .arg(&cfg_path)
                .args(args)
                .envs(envs.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start rillcast");
            let mut d = Daemon {
                child,
                rtsp_port,
                http_port,
                udp_port,
                dir,
                log_path,
                args: args.iter().map(|a| a.to_string()).collect(),
            };
            let deadline = Instant::now() + timeout;
            while Instant::now() < deadline {
                if !d.alive() {
                    break;
                }
                // Ready = the daemon said so (printed after every port is bound: RTSP TCP,
                // the UDP pair, HTTP) and it still runs; a bare TCP connect is not enough,
                // since the RTSP listener is bound before the UDP ports.
                if d.log().contains("ready: rtsp://")
                    && TcpStream::connect(("127.0.0.1", rtsp_port)).is_ok()
                    && d.alive()
                {
                    return d;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if d.alive() || attempt == 3 {
                panic!(
                    "rillcast did not listen within {timeout:?} (attempt {attempt}); log:\n{}",
                    d.log()
                );
            }
            eprintln!(
                "rillcast exited before listening (attempt {attempt}), retrying:\n{}",
                d.log()
            );
        }
        unreachable!("the loop returns or panics")
    }

    pub fn url(&self, stream: &str) -> String {
        format!("rtsp://127.0.0.1:{}/{stream}", self.rtsp_port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `stream` answers DESCRIBE with 200 (it has parameter sets and a keyframe).
    pub fn wait_live(&self, stream: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(mut c) = RtspClient::connect(self.rtsp_port) {
                if let Ok((200, _, _)) = c.request("DESCRIBE", &self.url(stream), &[]) {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "stream {stream} not live within {timeout:?}; log:\n{}",
            self.log()
        );
    }

    /// Resident set size of the daemon, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Stops the daemon (SIGKILL) and starts it again on the same config file and ports,
    /// logging to a fresh `daemon.log`; waits (bounded) until it says `ready` again.
    pub fn restart(&mut self, timeout: Duration) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let log = std::fs::File::create(&self.log_path).unwrap();
        self.child = Command::new(env!("CARGO_BIN_EXE_rillcast"))
            .arg("--config")
            .arg(self.dir.join("rillcast.toml"))
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start rillcast");
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline && self.alive() {
            if self.log().contains("ready: rtsp://") {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "rillcast did not restart within {timeout:?}; log:\n{}",
            self.log()
        );
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!(
                "--- rillcast log ({}):\n{}",
                self.log_path.display(),
                self.log()
            );
        }
    }
}

/// Runs a command with a time limit; returns (status success, stdout, stderr).
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> (bool, String, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let to = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let te = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (o, e) = (to.join().unwrap(), te.join().unwrap());
    match status {
        Some(st) => (st.success(), o, e),
        None => (false, o, format!("{e}\n[killed after {limit:?}]")),
    }
}

/// A deliberately small RTSP client for tests: blocking, one request at a time.
pub struct RtspClient {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
    cseq: u32,
    pub session: Option<String>,
}

/// An RTSP response: (status, headers, body).
pub type Response = (u16, Vec<(String, String)>, String);

/// One RTP packet as the tests see it.
#[derive(Clone, Debug)]
pub struct RtpPacket {
    pub channel: u8,
    pub data: Vec<u8>,
}

impl RtpPacket {
    pub fn seq(&self) -> u16 {
        u16::from_be_bytes([self.data[2], self.data[3]])
    }
    pub fn ts(&self) -> u32 {
        u32::from_be_bytes([self.data[4], self.data[5], self.data[6], self.data[7]])
    }
    pub fn marker(&self) -> bool {
        self.data[1] & 0x80 != 0
    }
    pub fn payload_type(&self) -> u8 {
        self.data[1] & 0x7f
    }
    pub fn payload(&self) -> &[u8] {
        &self.data[12..]
    }
}

/// A TCP connection to 127.0.0.1:`port` from the loopback address `from` (any of 127/8), so
/// one test can be several clients as far as per-address limits go.
pub fn connect_from(from: [u8; 4], port: u16) -> std::io::Result<TcpStream> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    sock.bind(&SocketAddr::from((from, 0)).into())?;
    sock.connect_timeout(&addr(port).into(), Duration::from_secs(5))?;
    Ok(sock.into())
}

impl RtspClient {
    pub fn connect(port: u16) -> std::io::Result<Self> {
        Self::connect_from([127, 0, 0, 1], port)
    }

    /// As [`RtspClient::connect`], from another loopback address (see [`connect_from`]).
    pub fn connect_from(from: [u8; 4], port: u16) -> std::io::Result<Self> {
        let stream = connect_from(from, port)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let reader = BufReader::with_capacity(256 * 1024, stream.try_clone()?);
        Ok(RtspClient {
            stream,
            reader,
            cseq: 0,
            session: None,
        })
    }

    /// Sends a request; returns (status, headers, body). Skips interleaved packets that arrive
    /// before the response.
    pub fn request(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Response> {
        self.cseq += 1;
        let mut req = format!(
            "{method} {url} RTSP/1.0\r\nCSeq: {}\r\nUser-Agent: rillcast-test\r\n",
            self.cseq
        );
        if let Some(s) = &self.session {
            req.push_str(&format!("Session: {s}\r\n"));
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.stream.write_all(req.as_bytes())?;
        self.read_response()
    }

    pub fn read_response(&mut self) -> std::io::Result<Response> {
        loop {
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if buf[0] == b'$' {
                self.read_interleaved()?;
                continue;
            }
            break;
        }
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            self.reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let (k, v) = (k.trim().to_string(), v.trim().to_string());
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.parse().unwrap_or(0);
                }
                if k.eq_ignore_ascii_case("session") {
                    self.session = Some(v.split(';').next().unwrap_or("").to_string());
                }
                headers.push((k, v));
            }
        }
        let mut body = vec![0u8; len];
        self.reader.read_exact(&mut body)?;
        Ok((status, headers, String::from_utf8_lossy(&body).into_owned()))
    }

    /// Reads one `$` interleaved frame.
    pub fn read_interleaved(&mut self) -> std::io::Result<RtpPacket> {
        let mut h = [0u8; 4];
        self.reader.read_exact(&mut h)?;
        if h[0] != b'$' {
            return Err(std::io::Error::other(format!(
                "expected '$', got {:02x?}",
                h
            )));
        }
        let len = u16::from_be_bytes([h[2], h[3]]) as usize;
        let mut data = vec![0u8; len];
        self.reader.read_exact(&mut data)?;
        Ok(RtpPacket {
            channel: h[1],
            data,
        })
    }

    /// OPTIONS, DESCRIBE, SETUP of every track in the SDP over TCP, PLAY.
    pub fn play_tcp(&mut self, url: &str) -> std::io::Result<String> {
        let (st, _, sdp) = self.request("DESCRIBE", url, &[("Accept", "application/sdp")])?;
        assert_eq!(st, 200, "DESCRIBE");
        for (i, control) in sdp_controls(&sdp).iter().enumerate() {
            let transport = format!("RTP/AVP/TCP;unicast;interleaved={}-{}", 2 * i, 2 * i + 1);
            let (st, _, _) = self.request(
                "SETUP",
                &format!("{url}/{control}"),
                &[("Transport", &transport)],
            )?;
            assert_eq!(st, 200, "SETUP {control}");
        }
        let (st, _, _) = self.request("PLAY", url, &[("Range", "npt=0.000-")])?;
        assert_eq!(st, 200, "PLAY");
        Ok(sdp)
    }

    /// As [`RtspClient::play_tcp`] over UDP; returns the (RTP, RTCP) sockets per track.
    pub fn play_udp(&mut self, url: &str) -> std::io::Result<Vec<(UdpSocket, UdpSocket)>> {
        let (st, _, sdp) = self.request("DESCRIBE", url, &[])?;
        assert_eq!(st, 200, "DESCRIBE");
        let mut socks = Vec::new();
        for control in sdp_controls(&sdp) {
            let (rtp, rtcp) = udp_pair();
            let transport = format!(
                "RTP/AVP;unicast;client_port={}-{}",
                rtp.local_addr()?.port(),
                rtcp.local_addr()?.port()
            );
            let (st, _, _) = self.request(
                "SETUP",
                &format!("{url}/{control}"),
                &[("Transport", &transport)],
            )?;
            assert_eq!(st, 200, "SETUP {control}");
            socks.push((rtp, rtcp));
        }
        let (st, _, _) = self.request("PLAY", url, &[])?;
        assert_eq!(st, 200, "PLAY");
        Ok(socks)
    }

    pub fn close(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// The `a=control:` values of each media section.
pub fn sdp_controls(sdp: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_media = false;
    for l in sdp.lines() {
        if l.starts_with("m=") {
            in_media = true;
        }
        if in_media {
            if let Some(c) = l.strip_prefix("a=control:") {
                out.push(c.trim().to_string());
            }
        }
    }
    out
}

/// Two adjacent UDP sockets on loopback with large receive buffers (RTP even, RTCP odd).
pub fn udp_pair() -> (UdpSocket, UdpSocket) {
    for _ in 0..200 {
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = probe.local_addr().unwrap().port() & !1;
        drop(probe);
        let Ok(a) = UdpSocket::bind(("127.0.0.1", p)) else {
            continue;
        };
        if let Ok(b) = UdpSocket::bind(("127.0.0.1", p + 1)) {
            set_rcvbuf(&a, 4 << 20);
            a.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            return (a, b);
        }
    }
    panic!("no UDP pair");
}

fn set_rcvbuf(s: &UdpSocket, bytes: usize) {
    socket2::SockRef::from(s).set_recv_buffer_size(bytes).ok();
}

/// Counts gaps in a run of RTP sequence numbers (wrapping).
pub fn seq_gaps(seqs: &[u16]) -> usize {
    seqs.windows(2)
        .filter(|w| w[1] != w[0].wrapping_add(1))
        .count()
}

pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Counts RTP packets of one track without allocating: complete frames (marker bit) and
/// sequence-number gaps. Shared between a reader thread and the test.
#[derive(Default)]
pub struct RtspPacketCounter {
    pub packets: std::sync::atomic::AtomicU64,
    pub frames: std::sync::atomic::AtomicU64,
    pub gaps: std::sync::atomic::AtomicU64,
    last_seq: std::sync::atomic::AtomicU32,
}

impl RtspPacketCounter {
    /// Takes one RTP packet (header included).
    pub fn rtp(&self, p: &[u8]) {
        use std::sync::atomic::Ordering::Relaxed;
        if p.len() < 12 {
            return;
        }
        let seq = u16::from_be_bytes([p[2], p[3]]) as u32;
        // last_seq holds seq + 1 (0 = none yet).
        let prev = self.last_seq.swap(seq + 1, Relaxed);
        if prev != 0 && (prev - 1 + 1) as u16 != seq as u16 {
            self.gaps.fetch_add(1, Relaxed);
        }
        self.packets.fetch_add(1, Relaxed);
        if p[1] & 0x80 != 0 {
            self.frames.fetch_add(1, Relaxed);
        }
    }
}

/// A minimal WebSocket client (RFC 6455) for the fMP4 tests: the opening handshake, masked
/// client frames, and whole server messages (no fragmentation; the daemon sends none).
pub struct WsClient {
    pub stream: TcpStream,
}

impl WsClient {
    /// GET `path` with the upgrade fields plus `extra` header lines. Ok: 101 and its head;
    /// Err: the status and head of any other answer.
    pub fn connect(
        port: u16,
        path: &str,
        extra: &[&str],
    ) -> Result<(WsClient, String), (u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| (0, e.to_string()))?;
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut req = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n"
        );
        for h in extra {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes())
            .map_err(|e| (0, e.to_string()))?;
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match s.read(&mut b) {
                Ok(1) => head.push(b[0]),
                _ => return Err((0, String::from_utf8_lossy(&head).into_owned())),
            }
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if status != 101 {
            return Err((status, head));
        }
        Ok((WsClient { stream: s }, head))
    }

    /// Reads one whole server frame: (opcode, payload).
    pub fn read_message(&mut self) -> std::io::Result<(u8, Vec<u8>)> {
        let mut h = [0u8; 2];
        self.stream.read_exact(&mut h)?;
        if h[1] & 0x80 != 0 {
            return Err(std::io::Error::other("server frames must not be masked"));
        }
        let len = match h[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                self.stream.read_exact(&mut b)?;
                u16::from_be_bytes(b) as usize
            }
            127 => {
                let mut b = [0u8; 8];
                self.stream.read_exact(&mut b)?;
                u64::from_be_bytes(b) as usize
            }
            n => n as usize,
        };
        let mut p = vec![0u8; len];
        self.stream.read_exact(&mut p)?;
        Ok((h[0] & 0x0f, p))
    }

    /// Sends one masked frame.
    pub fn send(&mut self, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        let mask = (rand_u64() as u32).to_be_bytes();
        let mut f = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n <= 0xffff => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&f)
    }
}

/// In an fMP4 fragment (`moof` + `mdat` with one `traf`, as rillcast writes them): (track
/// ID, tfdt decode time, first sample's flags), found by walking the boxes.
pub fn fmp4_fragment_info(frag: &[u8]) -> Option<(u32, u64, u32)> {
    fn boxes(mut b: &[u8]) -> Vec<([u8; 4], &[u8])> {
        let mut out = Vec::new();
        while b.len() >= 8 {
            let len = u32::from_be_bytes(b[..4].try_into().unwrap()) as usize;
            if len < 8 || len > b.len() {
                break;
            }
            out.push((b[4..8].try_into().unwrap(), &b[8..len]));
            b = &b[len..];
        }
        out
    }
    let moof = boxes(frag).into_iter().find(|(k, _)| k == b"moof")?.1;
    let traf = boxes(moof).into_iter().find(|(k, _)| k == b"traf")?.1;
    let inner = boxes(traf);
    let tfhd = inner.iter().find(|(k, _)| k == b"tfhd")?.1;
    let tfdt = inner.iter().find(|(k, _)| k == b"tfdt")?.1;
    let trun = inner.iter().find(|(k, _)| k == b"trun")?.1;
    let id = u32::from_be_bytes(tfhd.get(4..8)?.try_into().ok()?);
    let t = if tfdt[0] == 1 {
        u64::from_be_bytes(tfdt.get(4..12)?.try_into().ok()?)
    } else {
        u64::from(u32::from_be_bytes(tfdt.get(4..8)?.try_into().ok()?))
    };
    // trun: version/flags, count, then the optional fields in order.
    let flags = u32::from_be_bytes(trun.get(0..4)?.try_into().ok()?) & 0xff_ffff;
    let mut at = 8;
    if flags & 0x1 != 0 {
        at += 4;
    }
    if flags & 0x4 != 0 {
        at += 4;
    }
    if flags & 0x100 != 0 {
        at += 4;
    }
    if flags & 0x200 != 0 {
        at += 4;
    }
    let sample_flags = if flags & 0x400 != 0 {
        u32::from_be_bytes(trun.get(at..at + 4)?.try_into().ok()?)
    } else {
        0
    };
    Some((id, t, sample_flags))
}

/// `tests/web` with playwright-core installed (npm, once), for the Chromium tests.
pub fn web_dir_ready() -> PathBuf {
    require_tool("chromium");
    require_tool("node");
    require_tool("npm");
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web");
    if !web
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        let (ok, out, err) = run_bounded(
            Command::new("npm")
                .args(["install", "--no-audit", "--no-fund"])
                .current_dir(&web),
            Duration::from_secs(300),
        );
        assert!(ok, "npm install in tests/web failed:\n{out}\n{err}");
    }
    web
}

/// One HTTP/1.1 request to 127.0.0.1:`port` with `Connection: close` (and a Host header
/// unless given); returns (status, head, body). Bounded by a 20 s read timeout.
pub fn http_req(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {head:?}")))?;
    Ok((status, head.to_string(), body.to_string()))
}

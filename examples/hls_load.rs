//! HLS load generator for `scripts/bench-hls.sh`: N viewers, each on its own keep-alive
//! connection, poll a media playlist the way players do (RFC 8216 §6.3.4: reload after the
//! target duration, half of it when nothing changed) and fetch every new segment from the
//! live edge on; plus one probe that polls every 100 ms to time when segments get listed.
//!
//! Usage: `hls_load <playlist URL> <viewers> <seconds>`; prints one `key=value` line:
//! segments fetched, errors, fetch latency p50/p99, playlist fetches, and "ingest→listed":
//! how long after the ingest of a segment's last frame the segment appears in the playlist
//! (start = `EXT-X-PROGRAM-DATE-TIME`, or nginx-rtmp's `hls_fragment_naming system` name,
//! which is the wall-clock ms at the fragment's start; end = start + EXTINF).
//!
//! Works against any HLS server over plain HTTP/1.1 on loopback; single-threaded on smol.

use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::{Async, LocalExecutor, Timer};
use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Default)]
struct Stats {
    segments: u64,
    bytes: u64,
    errors: u64,
    playlists: u64,
    behind: u64,
    latencies_us: Vec<u64>,
    listed_delay_ms: Vec<i64>,
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    addr: SocketAddr,
    stream: Option<Async<TcpStream>>,
    buf: Vec<u8>,
}

impl Conn {
    fn new(addr: SocketAddr) -> Self {
        Conn {
            addr,
            stream: None,
            buf: Vec::with_capacity(64 * 1024),
        }
    }

    /// GETs `path` into `body`; returns the status. Errors drop the connection.
    async fn get(&mut self, path: &str, body: &mut Vec<u8>) -> io::Result<u16> {
        let r = self.get_inner(path, body).await;
        if r.is_err() {
            self.stream = None;
        }
        r
    }

    async fn get_inner(&mut self, path: &str, body: &mut Vec<u8>) -> io::Result<u16> {
        if self.stream.is_none() {
            self.stream = Some(Async::<TcpStream>::connect(self.addr).await?);
        }
        let s = self.stream.as_mut().unwrap(); // set just above
        let req = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        self.buf.clear();
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| io::Error::other("bad status line"))?;
        let len: usize = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0);
        let close = head.to_ascii_lowercase().contains("connection: close");
        body.clear();
        body.extend_from_slice(&self.buf[head_end..]);
        while body.len() < len {
            let old = body.len();
            body.resize(len, 0);
            let n = s.read(&mut body[old..]).await?;
            body.truncate(old + n);
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        if close {
            self.stream = None;
        }
        Ok(status)
    }
}

struct Playlist {
    target_s: u64,
    media_sequence: u64,
    /// (uri, EXTINF ms, PDT as Unix ms)
    segments: Vec<(String, u64, Option<u64>)>,
}

fn parse_playlist(text: &str) -> Option<Playlist> {
    if !text.starts_with("#EXTM3U") {
        return None;
    }
    let mut p = Playlist {
        target_s: 1,
        media_sequence: 0,
        segments: Vec::new(),
    };
    let (mut dur, mut pdt) = (0u64, None);
    for l in text.lines() {
        if let Some(v) = l.strip_prefix("#EXT-X-TARGETDURATION:") {
            p.target_s = v.trim().parse().ok()?;
        } else if let Some(v) = l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            p.media_sequence = v.trim().parse().ok()?;
        } else if let Some(v) = l.strip_prefix("#EXTINF:") {
            let secs: f64 = v.split(',').next()?.trim().parse().ok()?;
            dur = (secs * 1000.0).round() as u64;
        } else if let Some(v) = l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            pdt = parse_rfc3339_ms(v.trim());
        } else if !l.starts_with('#') && !l.trim().is_empty() {
            p.segments.push((l.trim().to_string(), dur, pdt.take()));
        }
    }
    Some(p)
}

/// `2025-01-01T00:00:01.500Z` → Unix ms (UTC only, as rillcast writes it).
fn parse_rfc3339_ms(s: &str) -> Option<u64> {
    let n = |a: usize, b: usize| s.get(a..b)?.parse::<i64>().ok();
    let (y, mo, d) = (n(0, 4)?, n(5, 7)?, n(8, 10)?);
    let (h, mi, sec) = (n(11, 13)?, n(14, 16)?, n(17, 19)?);
    let ms = if s.as_bytes().get(19) == Some(&b'.') {
        n(20, 23)?
    } else {
        0
    };
    // Days from civil (proleptic Gregorian).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(((days * 86_400 + h * 3600 + mi * 60 + sec) * 1000) + ms).ok()
}

/// Segment start (Unix ms): the PDT, or a name ending in 13 digits (nginx-rtmp's
/// `hls_fragment_naming system`).
fn segment_start_ms(uri: &str, pdt: Option<u64>) -> Option<u64> {
    pdt.or_else(|| {
        let stem = uri.rsplit('/').next()?.strip_suffix(".ts")?;
        let digits: String = stem
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        (digits.len() >= 13)
            .then(|| digits.chars().rev().collect::<String>().parse().ok())
            .flatten()
    })
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn resolve(playlist_path: &str, uri: &str) -> String {
    if uri.starts_with('/') {
        return uri.to_string();
    }
    let dir = &playlist_path[..playlist_path.rfind('/').map_or(0, |i| i + 1)];
    format!("{dir}{uri}")
}

async fn viewer(
    addr: SocketAddr,
    path: Rc<str>,
    start_delay: Duration,
    end: Instant,
    stats: Rc<RefCell<Stats>>,
) {
    Timer::after(start_delay).await;
    let mut conn = Conn::new(addr);
    let mut body = Vec::new();
    let mut next_seq: Option<u64> = None;
    while Instant::now() < end {
        let ok = matches!(conn.get(&path, &mut body).await, Ok(200));
        stats.borrow_mut().playlists += 1;
        let Some(p) = ok
            .then(|| parse_playlist(&String::from_utf8_lossy(&body)))
            .flatten()
        else {
            stats.borrow_mut().errors += 1;
            Timer::after(Duration::from_millis(500)).await;
            continue;
        };
        let newest = p.media_sequence + p.segments.len() as u64;
        let from = *next_seq.get_or_insert(newest.saturating_sub(1));
        if from < p.media_sequence {
            stats.borrow_mut().behind += 1;
        }
        let mut got_new = false;
        for (i, (uri, _, _)) in p.segments.iter().enumerate() {
            let seq = p.media_sequence + i as u64;
            if seq < from {
                continue;
            }
            let t0 = Instant::now();
            match conn.get(&resolve(&path, uri), &mut body).await {
                Ok(200) => {
                    let mut s = stats.borrow_mut();
                    s.segments += 1;
                    s.bytes += body.len() as u64;
                    s.latencies_us.push(t0.elapsed().as_micros() as u64);
                }
                _ => stats.borrow_mut().errors += 1,
            }
            next_seq = Some(seq + 1);
            got_new = true;
        }
        let wait_ms = if got_new {
            p.target_s * 1000
        } else {
            p.target_s * 500
        };
        Timer::after(Duration::from_millis(wait_ms)).await;
    }
}

/// Polls every 100 ms; for each segment seen for the first time, the delay from its last
/// frame's ingest (start + EXTINF) to now.
async fn probe(addr: SocketAddr, path: Rc<str>, end: Instant, stats: Rc<RefCell<Stats>>) {
    let mut conn = Conn::new(addr);
    let mut body = Vec::new();
    let mut seen: HashMap<String, ()> = HashMap::new();
    let mut first = true;
    while Instant::now() < end {
        if let Ok(200) = conn.get(&path, &mut body).await {
            let now = now_unix_ms() as i64;
            if let Some(p) = parse_playlist(&String::from_utf8_lossy(&body)) {
                for (uri, dur, pdt) in &p.segments {
                    if seen.insert(uri.clone(), ()).is_none() && !first {
                        if let Some(start) = segment_start_ms(uri, *pdt) {
                            let delay = now - (start + dur) as i64;
                            stats.borrow_mut().listed_delay_ms.push(delay);
                        }
                    }
                }
                first = false;
            }
        }
        Timer::after(Duration::from_millis(100)).await;
    }
}

fn percentile<T: Copy + Ord + Default>(v: &mut [T], p: f64) -> T {
    if v.is_empty() {
        return T::default();
    }
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: hls_load <http://host:port/path.m3u8> <viewers> <seconds>");
        std::process::exit(2);
    }
    let url = args[1].strip_prefix("http://").expect("http:// URL");
    let (hostport, path) = url.split_at(url.find('/').expect("URL path"));
    let addr = hostport
        .to_socket_addrs()
        .expect("address")
        .next()
        .expect("address");
    let viewers: u64 = args[2].parse().expect("viewers");
    let secs: u64 = args[3].parse().expect("seconds");
    let path: Rc<str> = path.into();
    let stats = Rc::new(RefCell::new(Stats::default()));
    let ex = LocalExecutor::new();
    let started = Instant::now();
    let end = started + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for i in 0..viewers {
        // Spread the viewers over the first second, as real arrivals would be.
        let delay = Duration::from_millis(i * 1000 / viewers.max(1));
        tasks.push(ex.spawn(viewer(addr, path.clone(), delay, end, stats.clone())));
    }
    tasks.push(ex.spawn(probe(addr, path.clone(), end, stats.clone())));
    smol::block_on(ex.run(async {
        for t in tasks {
            t.await;
        }
    }));
    let mut s = stats.borrow_mut();
    let elapsed = started.elapsed().as_secs_f64();
    let p50 = percentile(&mut s.latencies_us, 0.50) as f64 / 1000.0;
    let p99 = percentile(&mut s.latencies_us, 0.99) as f64 / 1000.0;
    let l50 = percentile(&mut s.listed_delay_ms, 0.50);
    let lmax = percentile(&mut s.listed_delay_ms, 1.0);
    println!(
        "viewers={viewers} secs={elapsed:.1} segments={} errors={} behind={} playlists={} \
         MB={:.1} fetch_p50_ms={p50:.2} fetch_p99_ms={p99:.2} ingest_to_listed_p50_ms={l50} \
         ingest_to_listed_max_ms={lmax} listed_samples={}",
        s.segments,
        s.errors,
        s.behind,
        s.playlists,
        s.bytes as f64 / 1e6,
        s.listed_delay_ms.len()
    );
}

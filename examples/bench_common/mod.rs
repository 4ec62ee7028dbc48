//! Shared by the benchmark examples (`rtsp_load`, `rtsp_latency`, `h264_feed`): a minimal async
//! RTSP-over-TCP client (OPTIONS, DESCRIBE, SETUP of every track, PLAY), an interleaved-frame
//! splitter, keyframe detection in RTP payloads (RFC 6184 / RFC 7798), the SEI frame tag the
//! latency probe uses, and /proc readings of a server process.
//!
//! Bench tooling only: it allocates freely outside the per-packet path and never enters the
//! daemon binary.
#![allow(dead_code)]

use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;
use std::time::{Duration, Instant};

/// The tracks a PLAYing viewer receives: interleaved RTP channel of each, and which is video.
#[derive(Clone, Debug)]
pub struct Playing {
    /// (RTP channel, is_video, is_h265) per SETUP track.
    pub tracks: Vec<(u8, bool, bool)>,
    /// When PLAY was written.
    pub play_sent: Instant,
    /// Bytes that followed the PLAY response in the same reads (interleaved data).
    pub leftover: Vec<u8>,
}

/// An RTSP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads one response; interleaved frames in front of it are skipped. `buf` keeps what follows.
pub async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Response> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        // Skip interleaved frames ahead of the response.
        while buf.first() == Some(&b'$') && buf.len() >= 4 {
            let n = 4 + u16::from_be_bytes([buf[2], buf[3]]) as usize;
            if buf.len() < n {
                break;
            }
            buf.drain(..n);
        }
        if buf.first() != Some(&b'$') {
            if let Some(end) = find(buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let mut lines = head.split("\r\n");
                let status = lines
                    .next()
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .collect();
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                    buf.drain(..end + 4 + len);
                    return Ok(Response {
                        status,
                        headers,
                        body,
                    });
                }
            }
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A connection's request writer (CSeq and Session bookkeeping).
pub struct Client {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
    cseq: u32,
    pub session: Option<String>,
}

impl Client {
    pub async fn connect(host_port: &str) -> std::io::Result<Client> {
        let stream = TcpStream::connect(host_port).await?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            buf: Vec::with_capacity(64 * 1024),
            cseq: 0,
            session: None,
        })
    }

    pub async fn send(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Instant> {
        self.cseq += 1;
        let mut req = format!(
            "{method} {url} RTSP/1.0\r\nCSeq: {}\r\nUser-Agent: rillcast-bench\r\n",
            self.cseq
        );
        if let Some(s) = &self.session {
            req.push_str(&format!("Session: {s}\r\n"));
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.stream.write_all(req.as_bytes()).await?;
        Ok(Instant::now())
    }

    pub async fn request(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
    ) -> std::io::Result<(Response, Instant)> {
        let sent = self.send(method, url, headers).await?;
        let r = read_response(&mut self.stream, &mut self.buf).await?;
        if let Some(s) = r.header("session") {
            self.session = Some(s.split(';').next().unwrap_or("").trim().to_string());
        }
        if r.status != 200 {
            return Err(std::io::Error::other(format!(
                "{method} {url}: RTSP {}",
                r.status
            )));
        }
        Ok((r, sent))
    }

    /// OPTIONS, DESCRIBE, SETUP of every track (TCP interleaved, channels 2i/2i+1), PLAY.
    pub async fn play_tcp(&mut self, url: &str) -> std::io::Result<Playing> {
        self.request("OPTIONS", url, &[]).await?;
        let (d, _) = self
            .request("DESCRIBE", url, &[("Accept", "application/sdp")])
            .await?;
        let base = d
            .header("content-base")
            .map(str::to_string)
            .unwrap_or_else(|| format!("{url}/"));
        let mut tracks = Vec::new();
        for (i, m) in sdp_media(&d.body).iter().enumerate() {
            let control = if m.control.starts_with("rtsp://") {
                m.control.clone()
            } else if m.control == "*" || m.control.is_empty() {
                url.to_string()
            } else if base.ends_with('/') {
                format!("{base}{}", m.control)
            } else {
                format!("{base}/{}", m.control)
            };
            let ch = (2 * i) as u8;
            let transport = format!("RTP/AVP/TCP;unicast;interleaved={}-{}", ch, ch + 1);
            self.request("SETUP", &control, &[("Transport", &transport)])
                .await?;
            tracks.push((ch, m.video, m.h265));
        }
        if tracks.is_empty() {
            return Err(std::io::Error::other("SDP has no media"));
        }
        let (_, play_sent) = self
            .request("PLAY", url, &[("Range", "npt=0.000-")])
            .await?;
        Ok(Playing {
            tracks,
            play_sent,
            leftover: std::mem::take(&mut self.buf),
        })
    }
}

/// One `m=` section of an SDP.
#[derive(Clone, Debug, Default)]
pub struct SdpMedia {
    pub video: bool,
    pub h265: bool,
    pub control: String,
}

pub fn sdp_media(sdp: &str) -> Vec<SdpMedia> {
    let mut out: Vec<SdpMedia> = Vec::new();
    for line in sdp.lines() {
        let line = line.trim();
        if let Some(m) = line.strip_prefix("m=") {
            out.push(SdpMedia {
                video: m.starts_with("video"),
                ..Default::default()
            });
        } else if let Some(last) = out.last_mut() {
            if let Some(c) = line.strip_prefix("a=control:") {
                last.control = c.to_string();
            } else if line.starts_with("a=rtpmap:") && line.to_ascii_uppercase().contains("H265") {
                last.h265 = true;
            }
        }
    }
    out
}

/// Does this RTP payload carry the start of a keyframe? H.264 (RFC 6184): an IDR (type 5)
/// as a single NAL, in a STAP-A (24), or as the first FU-A (28) fragment. H.265 (RFC 7798):
/// an IRAP (types 16..=21) as a single NAL, in an AP (48), or as the first FU (49) fragment.
pub fn starts_keyframe(payload: &[u8], h265: bool) -> bool {
    if h265 {
        let irap = |t: u8| (16..=21).contains(&t);
        let Some(&b0) = payload.first() else {
            return false;
        };
        match (b0 >> 1) & 0x3f {
            48 => {
                let mut p = &payload[2.min(payload.len())..];
                while p.len() >= 3 {
                    let n = u16::from_be_bytes([p[0], p[1]]) as usize;
                    if irap((p[2] >> 1) & 0x3f) {
                        return true;
                    }
                    p = &p[(2 + n).min(p.len())..];
                }
                false
            }
            49 => payload.len() > 2 && payload[2] & 0x80 != 0 && irap(payload[2] & 0x3f),
            t => irap(t),
        }
    } else {
        let Some(&b0) = payload.first() else {
            return false;
        };
        match b0 & 0x1f {
            24 => {
                let mut p = &payload[1..];
                while p.len() >= 3 {
                    let n = u16::from_be_bytes([p[0], p[1]]) as usize;
                    if p[2] & 0x1f == 5 {
                        return true;
                    }
                    p = &p[(2 + n).min(p.len())..];
                }
                false
            }
            28 => payload.len() > 1 && payload[1] & 0x80 != 0 && payload[1] & 0x1f == 5,
            t => t == 5,
        }
    }
}

/// user_data_unregistered UUID of the latency tag (H.264 D.1.6); no two zero bytes in a row.
pub const TAG_UUID: [u8; 16] = *b"rillcast-latency";

/// The SEI NAL (no start code) carrying frame number `n` as 8 hex digits (never a zero byte,
/// so no emulation prevention is needed): type 6, payloadType 5, payloadSize 24, UUID, tag,
/// rbsp_trailing_bits.
pub fn tag_sei(n: u32) -> [u8; 28] {
    let mut s = [0u8; 28];
    s[0] = 0x06;
    s[1] = 5;
    s[2] = 24;
    s[3..19].copy_from_slice(&TAG_UUID);
    s[19..27].copy_from_slice(format!("{n:08x}").as_bytes());
    s[27] = 0x80;
    s
}

/// The frame number in a tag SEI NAL, if `nal` is one.
pub fn read_tag(nal: &[u8]) -> Option<u32> {
    if nal.len() >= 27 && nal[0] & 0x1f == 6 && nal[1] == 5 && nal[3..19] == TAG_UUID {
        u32::from_str_radix(std::str::from_utf8(&nal[19..27]).ok()?, 16).ok()
    } else {
        None
    }
}

/// Finds a tag in an H.264 RTP payload: a single SEI NAL or one inside a STAP-A.
pub fn tag_in_payload(payload: &[u8]) -> Option<u32> {
    match payload.first()? & 0x1f {
        24 => {
            let mut p = &payload[1..];
            while p.len() >= 2 {
                let n = u16::from_be_bytes([p[0], p[1]]) as usize;
                let nal = &p[2..(2 + n).min(p.len())];
                if let Some(t) = read_tag(nal) {
                    return Some(t);
                }
                p = &p[(2 + n).min(p.len())..];
            }
            None
        }
        _ => read_tag(payload),
    }
}

/// Inserts `sei` (with a 4-byte start code) in front of the first VCL NAL (type 1 or 5) of an
/// Annex B access unit, as H.264 §7.4.1.2.3 orders SEI before the primary picture.
pub fn insert_before_slice(au: &[u8], sei: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut i = 0;
    while i + 3 < au.len() {
        if au[i] == 0 && au[i + 1] == 0 && au[i + 2] == 1 {
            let t = au[i + 3] & 0x1f;
            if t == 1 || t == 5 {
                let sc = if i > 0 && au[i - 1] == 0 { i - 1 } else { i };
                out.extend_from_slice(&au[..sc]);
                out.extend_from_slice(&[0, 0, 0, 1]);
                out.extend_from_slice(sei);
                out.extend_from_slice(&au[sc..]);
                return;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    out.extend_from_slice(au);
}

/// A server process as /proc shows it.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcSample {
    pub at: Option<Instant>,
    /// utime + stime, in clock ticks (USER_HZ = 100 on Linux).
    pub cpu_ticks: u64,
    pub rss_kib: u64,
    pub hwm_kib: u64,
    /// Private anonymous memory (heap, rings, buffers): what the process itself allocated.
    pub anon_kib: u64,
    pub threads: u64,
}

pub fn proc_sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the `(comm)`: state is field 3; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let cpu_ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some(ProcSample {
        at: Some(Instant::now()),
        cpu_ticks,
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
        anon_kib: field("RssAnon:"),
        threads: field("Threads:"),
    })
}

/// CPU use between two samples, in % of one core.
pub fn cpu_percent(a: &ProcSample, b: &ProcSample) -> f64 {
    let (Some(t0), Some(t1)) = (a.at, b.at) else {
        return 0.0;
    };
    let secs = t1.duration_since(t0).as_secs_f64().max(1e-6);
    (b.cpu_ticks.saturating_sub(a.cpu_ticks)) as f64 / 100.0 / secs * 100.0
}

/// Median and 95th / 99th percentile of `v` (sorted in place).
pub fn percentiles(v: &mut [f64]) -> (f64, f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.95), at(0.99))
}

/// `host:port` of an rtsp:// URL.
pub fn host_port(url: &str) -> String {
    let rest = url.strip_prefix("rtsp://").unwrap_or(url);
    let hp = rest.split('/').next().unwrap_or(rest);
    if hp.contains(':') {
        hp.to_string()
    } else {
        format!("{hp}:554")
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyframe_detection_h264() {
        // RFC 6184 §5.6 single NAL: IDR (nal_ref_idc 3, type 5) vs non-IDR slice (type 1).
        assert!(starts_keyframe(&[0x65, 0x88], false));
        assert!(!starts_keyframe(&[0x41, 0x9a], false));
        // §5.7.1 STAP-A (type 24): SPS (2 bytes) then IDR (2 bytes).
        assert!(starts_keyframe(
            &[0x78, 0, 2, 0x67, 0x42, 0, 2, 0x65, 0x88],
            false
        ));
        assert!(!starts_keyframe(
            &[0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce],
            false
        ));
        // §5.8 FU-A (type 28): FU header S bit + type 5 starts a keyframe; a middle one doesn't.
        assert!(starts_keyframe(&[0x7c, 0x85, 0x88], false));
        assert!(!starts_keyframe(&[0x7c, 0x05, 0x88], false));
        assert!(!starts_keyframe(&[], false));
    }

    #[test]
    fn keyframe_detection_h265() {
        // RFC 7798 §1.1.4: type in bits 1..6 of byte 0. IDR_W_RADL = 19, TRAIL_R = 1.
        assert!(starts_keyframe(&[19 << 1, 1, 0xaf], true));
        assert!(!starts_keyframe(&[1 << 1, 1, 0xaf], true));
        // §4.4.3 FU (type 49): FU header S bit + type 19.
        assert!(starts_keyframe(&[49 << 1, 1, 0x80 | 19], true));
        assert!(!starts_keyframe(&[49 << 1, 1, 19], true));
        // §4.4.2 AP (type 48): VPS (32) then CRA (21).
        assert!(starts_keyframe(
            &[48 << 1, 1, 0, 2, 32 << 1, 1, 0, 2, 21 << 1, 1],
            true
        ));
    }

    #[test]
    fn tag_round_trip_and_insertion() {
        let sei = tag_sei(0x1234);
        assert!(
            !sei.windows(2).any(|w| w == [0, 0]),
            "no emulation prevention needed"
        );
        assert_eq!(read_tag(&sei), Some(0x1234));
        // AUD, SPS, IDR with 4-byte start codes: the SEI goes right before the IDR.
        let au = [
            0, 0, 0, 1, 9, 0x10, 0, 0, 0, 1, 0x67, 0x42, 0, 0, 0, 1, 0x65, 0x88,
        ];
        let mut out = Vec::new();
        insert_before_slice(&au, &sei, &mut out);
        // The IDR's start code begins at byte 12.
        assert_eq!(&out[..12], &au[..12]);
        assert_eq!(&out[12..16], &[0, 0, 0, 1]);
        assert_eq!(&out[16..16 + sei.len()], &sei);
        assert_eq!(&out[16 + sei.len()..], &au[12..]);
        // In a STAP-A as a payloader may aggregate it.
        let mut stap = vec![24u8, 0, sei.len() as u8];
        stap.extend_from_slice(&sei);
        assert_eq!(tag_in_payload(&stap), Some(0x1234));
    }
}

//! SDP (RFC 4566) session descriptions for the RTSP DESCRIBE response (RFC 2326 Appendix C)
//! of a live stream with at most one video and one audio track.
//!
//! Owns: the session-level lines, the per-codec media sections (RFC 6184 §8.1 H.264, RFC 7798
//! §7.1 H.265, RFC 3640 §4.1 AAC-hbr), and the base64 (RFC 4648 §4) used by `sprop-*`.
//! Must not: do I/O or read the clock. Not a per-frame path: it builds a `String`.
//!
//! Track control URLs are `trackID=<Track::index()>`; payload types are
//! [`VIDEO_PAYLOAD_TYPE`] and [`AUDIO_PAYLOAD_TYPE`]. Media ports are 0 as RFC 2326 C.1.4
//! allows when the transport is negotiated by SETUP.

use crate::media::{AudioParams, Codec, Track, VideoParams};
use crate::proto::rtp::{AUDIO_PAYLOAD_TYPE, VIDEO_PAYLOAD_TYPE};
use core::fmt::Write as _;
use std::net::IpAddr;

/// Session-level inputs of [`write_describe`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SdpSession<'a> {
    /// `s=` line. Control characters are dropped so a name cannot inject lines.
    pub stream_name: &'a str,
    /// Address of the server in `o=` (RFC 4566 §5.2).
    pub server_addr: IpAddr,
    /// `o=` sess-id; RFC 4566 suggests an NTP timestamp. Stable per stream.
    pub session_id: u64,
    /// `o=` sess-version; bump when the parameters (SPS/PPS, audio config) change.
    pub session_version: u64,
}

/// Why a description cannot be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SdpError {
    /// `VideoParams::codec` is not a video codec, or audio is not AAC.
    UnsupportedCodec,
}

impl core::fmt::Display for SdpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("unsupported codec for SDP track")
    }
}

impl std::error::Error for SdpError {}

/// Writes the DESCRIBE body (`application/sdp`) for a live stream. Lines end in CRLF
/// (RFC 4566 §5). Parameters that cannot be derived are left out rather than guessed: no
/// `profile-level-id` for an SPS shorter than 4 bytes, no `sprop-*` for missing parameter sets,
/// no `a=framerate` without VUI timing.
pub fn write_describe(
    session: &SdpSession<'_>,
    video: Option<&VideoParams>,
    audio: Option<&AudioParams>,
) -> Result<String, SdpError> {
    let mut s = String::with_capacity(512);
    let ip = match session.server_addr {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    };
    // Writing into a String cannot fail; the fmt::Results below are ignored for that reason.
    let _ = write!(
        s,
        "v=0\r\no=- {} {} IN {} {}\r\n",
        session.session_id, session.session_version, ip, session.server_addr
    );
    let name: String = session
        .stream_name
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    // RFC 4566 §5.3: s= must not be empty; a single space stands for "no name".
    let name = if name.is_empty() { " " } else { &name };
    let _ = write!(
        s,
        "s={name}\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\na=control:*\r\na=range:npt=now-\r\na=tool:rillcast\r\n"
    );
    if let Some(v) = video {
        write_video(&mut s, v)?;
    }
    if let Some(a) = audio {
        write_audio(&mut s, a);
    }
    Ok(s)
}

fn write_video(s: &mut String, v: &VideoParams) -> Result<(), SdpError> {
    let pt = VIDEO_PAYLOAD_TYPE;
    let _ = write!(s, "m=video 0 RTP/AVP {pt}\r\n");
    match v.codec {
        Codec::H264 => {
            let _ = write!(
                s,
                "a=rtpmap:{pt} H264/90000\r\na=fmtp:{pt} packetization-mode=1"
            );
            // RFC 6184 §8.1: profile_idc, constraint flags, level_idc = SPS bytes 1..4.
            if let Some(pli) = v.sps.get(1..4) {
                let _ = write!(
                    s,
                    ";profile-level-id={:02X}{:02X}{:02X}",
                    pli[0], pli[1], pli[2]
                );
            }
            if !v.sps.is_empty() && !v.pps.is_empty() {
                s.push_str(";sprop-parameter-sets=");
                base64_into(s, &v.sps);
                s.push(',');
                base64_into(s, &v.pps);
            }
        }
        Codec::H265 => {
            let _ = write!(s, "a=rtpmap:{pt} H265/90000\r\na=fmtp:{pt} ");
            // RFC 7798 §7.1; no sprop-max-don-diff means 0: no DONL fields.
            let mut first = true;
            for (key, ps) in [
                ("sprop-vps", &v.vps),
                ("sprop-sps", &v.sps),
                ("sprop-pps", &v.pps),
            ] {
                if ps.is_empty() {
                    continue;
                }
                if !first {
                    s.push(';');
                }
                first = false;
                let _ = write!(s, "{key}=");
                base64_into(s, ps);
            }
        }
        Codec::Aac => return Err(SdpError::UnsupportedCodec),
    }
    s.push_str("\r\n");
    if let Some((num, den)) = v.fps.filter(|&(n, d)| n > 0 && d > 0) {
        // RFC 4566 §6 a=framerate: decimal; exact integers stay integers (30, not 30.00).
        if num % den == 0 {
            let _ = write!(s, "a=framerate:{}\r\n", num / den);
        } else {
            let _ = write!(s, "a=framerate:{:.2}\r\n", num as f64 / den as f64);
        }
    }
    let _ = write!(s, "a=control:trackID={}\r\n", Track::Video.index());
    Ok(())
}

fn write_audio(s: &mut String, a: &AudioParams) {
    let pt = AUDIO_PAYLOAD_TYPE;
    let asc = a.audio_specific_config();
    // RFC 3640 §4.1 / §3.3.6 (AAC-hbr): 13-bit sizes, 3-bit indexes; the RTP clock is the
    // sample rate. streamtype 5 = audio; profile-level-id 1 as in the RFC's examples.
    let _ = write!(
        s,
        "m=audio 0 RTP/AVP {pt}\r\n\
         a=rtpmap:{pt} MPEG4-GENERIC/{}/{}\r\n\
         a=fmtp:{pt} streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;\
         indexdeltalength=3;config={:02X}{:02X}\r\n\
         a=control:trackID={}\r\n",
        a.sample_rate,
        a.channels,
        asc[0],
        asc[1],
        Track::Audio.index()
    );
}

/// Appends the standard base64 (RFC 4648 §4, with `=` padding) of `data` to `s`.
fn base64_into(s: &mut String, data: &[u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    // Every index below is a 6-bit value (masked with 0x3f), so it is within the 64-entry table.
    let sym = |v: u32| ALPHABET[(v & 0x3f) as usize] as char;
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let v = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        s.push(sym(v >> 18));
        s.push(sym(v >> 12));
        s.push(if chunk.len() > 1 { sym(v >> 6) } else { '=' });
        s.push(if chunk.len() > 2 { sym(v) } else { '=' });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn b64(d: &[u8]) -> String {
        let mut s = String::new();
        base64_into(&mut s, d);
        s
    }

    #[test]
    fn base64_rfc4648_vectors() {
        // RFC 4648 §10.
        let v = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (i, o) in v {
            assert_eq!(b64(i.as_bytes()), o);
        }
        assert_eq!(b64(&[0xff, 0xfe, 0xfd, 0xfc]), "//79/A==");
    }

    fn session() -> SdpSession<'static> {
        SdpSession {
            stream_name: "cam",
            server_addr: IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10)),
            session_id: 3_900_000_000,
            session_version: 1,
        }
    }

    #[test]
    fn h264_and_aac() {
        // SPS/PPS from an x264 baseline 320x240 stream: profile 0x42, constraints 0xC0, level
        // 0x0D (1.3). AAC LC, 44.1 kHz (index 4), stereo: ASC = 00010 0100 0010 000 = 0x1210.
        let v = VideoParams {
            codec: Codec::H264,
            vps: vec![],
            sps: vec![0x67, 0x42, 0xc0, 0x0d, 0xd9, 0x01, 0x41, 0xfb, 0x01, 0x10],
            pps: vec![0x68, 0xcb, 0x83, 0xcb, 0x20],
            width: 320,
            height: 240,
            fps: Some((30, 1)),
        };
        let a = AudioParams {
            object_type: 2,
            sample_rate_index: 4,
            sample_rate: 44_100,
            channels: 2,
        };
        let sdp = write_describe(&session(), Some(&v), Some(&a)).unwrap();
        let expect = "v=0\r\n\
            o=- 3900000000 1 IN IP4 192.168.1.10\r\n\
            s=cam\r\n\
            c=IN IP4 0.0.0.0\r\n\
            t=0 0\r\n\
            a=control:*\r\n\
            a=range:npt=now-\r\n\
            a=tool:rillcast\r\n\
            m=video 0 RTP/AVP 96\r\n\
            a=rtpmap:96 H264/90000\r\n\
            a=fmtp:96 packetization-mode=1;profile-level-id=42C00D;sprop-parameter-sets=Z0LADdkBQfsBEA==,aMuDyyA=\r\n\
            a=framerate:30\r\n\
            a=control:trackID=0\r\n\
            m=audio 0 RTP/AVP 97\r\n\
            a=rtpmap:97 MPEG4-GENERIC/44100/2\r\n\
            a=fmtp:97 streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config=1210\r\n\
            a=control:trackID=1\r\n";
        assert_eq!(sdp, expect);
    }

    #[test]
    fn h265_video_only() {
        let v = VideoParams {
            codec: Codec::H265,
            vps: vec![0x40, 0x01, 0x0c, 0x01],
            sps: vec![0x42, 0x01, 0x01],
            pps: vec![0x44, 0x01, 0xc1, 0x72],
            width: 1920,
            height: 1080,
            fps: Some((30000, 1001)),
        };
        let sdp = write_describe(&session(), Some(&v), None).unwrap();
        let media = sdp.split_once("a=tool:rillcast\r\n").unwrap().1;
        assert_eq!(
            media,
            "m=video 0 RTP/AVP 96\r\n\
             a=rtpmap:96 H265/90000\r\n\
             a=fmtp:96 sprop-vps=QAEMAQ==;sprop-sps=QgEB;sprop-pps=RAHBcg==\r\n\
             a=framerate:29.97\r\n\
             a=control:trackID=0\r\n"
        );
    }

    #[test]
    fn name_sanitized_and_codec_checked() {
        let mut s = session();
        s.stream_name = "a\r\nm=evil";
        let sdp = write_describe(&s, None, None).unwrap();
        assert!(sdp.contains("s=am=evil\r\n"));
        assert_eq!(sdp.lines().filter(|l| l.starts_with("m=")).count(), 0);
        s.stream_name = "\n";
        assert!(write_describe(&s, None, None).unwrap().contains("s= \r\n"));
        let bad = VideoParams {
            codec: Codec::Aac,
            vps: vec![],
            sps: vec![],
            pps: vec![],
            width: 0,
            height: 0,
            fps: None,
        };
        assert_eq!(
            write_describe(&s, Some(&bad), None),
            Err(SdpError::UnsupportedCodec)
        );
    }
}

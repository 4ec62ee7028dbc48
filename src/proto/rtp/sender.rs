//! `RtpSender`: one viewer's RTP/RTCP output, sans-IO.
//!
//! Owns: which frame the viewer sends next (a [`FrameCursor`] with the lag policy), how far into
//! that frame it is (a [`PacketizerCursor`]), the per-track RTP state, and when RTCP sender
//! reports are due. The shell calls [`RtpSender::poll_packet`] until it returns `None` (or the
//! socket is full) and only moves the bytes; nothing here touches a socket or reads a clock.
//! Allocation-free after construction.

use super::rtcp::write_sender_report;
use super::{PacketizerCursor, RtpPacketizer, RtpTrackState};
use crate::media::fanout::FrameCursor;
use crate::media::ring::{Lookup, MediaRing};
use crate::media::Track;

/// RTCP sender reports go out this often per track (RFC 3550 §6.2 suggests 5 s minimum).
pub const SR_INTERVAL_MS: u64 = 5_000;

/// One set-up track of a viewer.
#[derive(Clone, Copy, Debug)]
pub struct SenderTrack {
    pub rtp: RtpTrackState,
    /// Added to the frame's pts (RFC 3550 §5.1: random initial timestamp).
    pub ts_offset: u32,
    /// RTP clock of the track (90 kHz video, sample rate audio).
    pub clock_hz: u32,
    pub packetizer: RtpPacketizer,
}

/// What [`RtpSender::poll_packet`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outgoing {
    pub track: Track,
    /// An RTCP packet (goes to the RTCP port / odd interleaved channel).
    pub rtcp: bool,
    pub len: usize,
}

#[derive(Clone, Copy, Debug)]
struct InFrame {
    seq: u64,
    track: Track,
    rtp_ts: u32,
    cursor: PacketizerCursor,
}

#[derive(Clone, Debug)]
pub struct RtpSender {
    tracks: [Option<SenderTrack>; 2],
    cursor: FrameCursor,
    current: Option<InFrame>,
    next_sr_ms: u64,
    sr_pending: [bool; 2],
    cname: heapless::String<64>,
    /// Media time (µs) of the first video frame sent: audio older than this is skipped, so
    /// every track's first packet has the same media time (receivers such as ffmpeg align
    /// tracks by their first packets until the first sender report, and step if they differ).
    video_start_us: Option<u64>,
    /// Frames the packetizer refused (malformed length prefixes); skipped.
    pub malformed_frames: u64,
}

impl RtpSender {
    /// A sender positioned at the ring's GOP start. `max_lag_bytes` bounds how far behind the
    /// viewer may fall before it skips to a keyframe.
    pub fn new(
        ring: &MediaRing,
        tracks: [Option<SenderTrack>; 2],
        max_lag_bytes: u64,
        cname: &str,
        now_ms: u64,
    ) -> Self {
        let wants = [tracks[0].is_some(), tracks[1].is_some()];
        let mut c = heapless::String::new();
        for ch in cname.chars() {
            if c.push(ch).is_err() {
                break;
            }
        }
        RtpSender {
            tracks,
            cursor: FrameCursor::start(ring, wants, max_lag_bytes),
            current: None,
            // First report soon after the first packets, so receivers can sync A/V early.
            next_sr_ms: now_ms + 500,
            sr_pending: [false; 2],
            cname: c,
            video_start_us: None,
            malformed_frames: 0,
        }
    }

    pub fn track(&self, t: Track) -> Option<&SenderTrack> {
        self.tracks[t.index()].as_ref()
    }

    pub fn cursor(&self) -> &FrameCursor {
        &self.cursor
    }

    /// The RTP timestamp `pts` maps to on track `t`.
    pub fn rtp_ts(&self, t: Track, pts: u64) -> Option<u32> {
        self.tracks[t.index()]
            .as_ref()
            .map(|tr| (pts as u32).wrapping_add(tr.ts_offset))
    }

    /// Writes the next packet into `out` (at least the packetizer's max packet length, and 128
    /// bytes for RTCP). `now_ms` is the daemon clock (the same clock frame pts are counted
    /// in), `ntp_now` the wall clock in NTP format, for sender reports.
    pub fn poll_packet(
        &mut self,
        ring: &MediaRing,
        now_ms: u64,
        ntp_now: u64,
        out: &mut [u8],
    ) -> Option<Outgoing> {
        if now_ms >= self.next_sr_ms {
            self.next_sr_ms = now_ms + SR_INTERVAL_MS;
            self.sr_pending = [self.tracks[0].is_some(), self.tracks[1].is_some()];
        }
        for t in Track::ALL {
            if !self.sr_pending[t.index()] {
                continue;
            }
            self.sr_pending[t.index()] = false;
            let Some(tr) = &self.tracks[t.index()] else {
                continue;
            };
            if tr.rtp.packets_sent == 0 {
                continue;
            }
            let now_ticks = now_ms * tr.clock_hz as u64 / 1000;
            let rtp_ts = (now_ticks as u32).wrapping_add(tr.ts_offset);
            if let Ok(len) = write_sender_report(
                out,
                tr.rtp.ssrc,
                ntp_now,
                rtp_ts,
                tr.rtp.packets_sent,
                tr.rtp.octets_sent,
                &self.cname,
            ) {
                return Some(Outgoing {
                    track: t,
                    rtcp: true,
                    len,
                });
            }
        }
        loop {
            if let Some(cur) = &mut self.current {
                let frame = match ring.get(cur.seq) {
                    Lookup::Frame(f) => f,
                    // Evicted mid-frame (the viewer stalled): the rest is gone.
                    _ => {
                        self.current = None;
                        self.cursor.resync(ring);
                        continue;
                    }
                };
                // `current` is only set for tracks that are set up.
                let Some(tr) = self.tracks[cur.track.index()].as_mut() else {
                    self.current = None;
                    continue;
                };
                match tr.packetizer.next_packet(
                    frame.data,
                    cur.rtp_ts,
                    &mut cur.cursor,
                    &mut tr.rtp,
                    out,
                ) {
                    Ok(Some(len)) => {
                        return Some(Outgoing {
                            track: cur.track,
                            rtcp: false,
                            len,
                        })
                    }
                    Ok(None) => self.current = None,
                    Err(_) => {
                        self.malformed_frames += 1;
                        self.current = None;
                    }
                }
                continue;
            }
            let f = self.cursor.next(ring)?;
            let t = f.meta.track;
            let Some(tr) = self.tracks[t.index()].as_ref() else {
                continue;
            };
            let at_us = f.meta.pts * 1_000_000 / tr.clock_hz.max(1) as u64;
            match t {
                Track::Video => {
                    self.video_start_us.get_or_insert(at_us);
                }
                Track::Audio if self.tracks[Track::Video.index()].is_some() => {
                    match self.video_start_us {
                        // Audio waits for the first video frame, then starts at its time.
                        None => continue,
                        Some(v) if at_us + 1_000_000 * 1024 / tr.clock_hz.max(1) as u64 <= v => {
                            continue
                        }
                        _ => {}
                    }
                }
                Track::Audio => {}
            }
            let Some(ts) = self.rtp_ts(t, f.meta.pts) else {
                continue;
            };
            self.current = Some(InFrame {
                seq: f.seq,
                track: t,
                rtp_ts: ts,
                cursor: PacketizerCursor::default(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{Codec, FrameMeta};

    fn track(codec: Codec, pt: u8, seq: u16, clock_hz: u32) -> SenderTrack {
        SenderTrack {
            rtp: RtpTrackState::new(pt, 0x1122_3344 + pt as u32, seq),
            ts_offset: 1000,
            clock_hz,
            packetizer: RtpPacketizer::new(codec, 200).unwrap(),
        }
    }

    fn video(pts: u64, key: bool, nal_len: usize) -> (FrameMeta, Vec<u8>) {
        let mut d = (nal_len as u32).to_be_bytes().to_vec();
        d.push(if key { 0x65 } else { 0x41 });
        d.extend(std::iter::repeat_n(0xab, nal_len - 1));
        (
            FrameMeta {
                track: Track::Video,
                pts,
                dts: pts,
                keyframe: key,
            },
            d,
        )
    }

    #[test]
    fn sends_frames_in_order_then_sender_reports() {
        let mut ring = MediaRing::new(64 * 1024, 64);
        for (i, len) in [(0u64, 100usize), (3000, 500)] {
            let (m, d) = video(i, i == 0, len);
            ring.push(m, &d).unwrap();
        }
        let tracks = [Some(track(Codec::H264, 96, 7, 90_000)), None];
        let mut s = RtpSender::new(&ring, tracks, u64::MAX, "rillcast", 0);
        let mut out = [0u8; 256];
        let mut got = Vec::new();
        while let Some(o) = s.poll_packet(&ring, 10, 0, &mut out) {
            let p = &out[..o.len];
            let seq = u16::from_be_bytes([p[2], p[3]]);
            let ts = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
            got.push((seq, ts, p[1] & 0x80 != 0, o.len));
        }
        // Frame 0 fits one packet (12 + 100); frame 1 (a 500-byte NAL: header + 499) needs 3 FU-A
        // packets of 186 body bytes at most: 186 + 186 + 127.
        assert_eq!(
            got,
            vec![
                (7, 1000, true, 112),
                (8, 4000, false, 200),
                (9, 4000, false, 200),
                (10, 4000, true, 141)
            ]
        );
        // At 500 ms the first sender report is due: SR + SDES(CNAME "rillcast").
        let o = s
            .poll_packet(&ring, 500, 0x0102_0304_0506_0708, &mut out)
            .unwrap();
        assert!(o.rtcp);
        let p = &out[..o.len];
        assert_eq!(&p[..2], &[0x80, 200]);
        assert_eq!(&p[8..16], &[1, 2, 3, 4, 5, 6, 7, 8]);
        // RTP ts for now = offset + 500 ms * 90 kHz.
        assert_eq!(
            u32::from_be_bytes([p[16], p[17], p[18], p[19]]),
            1000 + 45_000
        );
        assert_eq!(u32::from_be_bytes([p[20], p[21], p[22], p[23]]), 4); // packets
        assert!(s.poll_packet(&ring, 501, 0, &mut out).is_none());
    }

    #[test]
    fn eviction_mid_frame_resyncs_at_next_keyframe() {
        let mut ring = MediaRing::new(4096, 64);
        let (m, d) = video(0, true, 900);
        ring.push(m, &d).unwrap();
        let tracks = [Some(track(Codec::H264, 96, 0, 90_000)), None];
        let mut s = RtpSender::new(&ring, tracks, u64::MAX, "x", 0);
        let mut out = [0u8; 256];
        assert!(s.poll_packet(&ring, 0, 0, &mut out).is_some()); // first FU-A of frame 0
        for i in 1..12u64 {
            let (m, d) = video(i * 3000, i == 9, 900);
            ring.push(m, &d).unwrap();
        }
        let mut ts = Vec::new();
        while let Some(o) = s.poll_packet(&ring, 0, 0, &mut out) {
            ts.push(u32::from_be_bytes([out[4], out[5], out[6], out[7]]) - 1000);
            assert!(o.len <= 200);
        }
        ts.dedup();
        assert_eq!(ts, vec![27_000, 30_000, 33_000]);
        assert_eq!(s.cursor().resyncs, 1);
    }
}

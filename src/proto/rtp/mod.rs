//! RTP packetization (RFC 3550) of ring frames for RTSP viewers, plus RTCP in [`rtcp`].
//!
//! Owns: the 12-byte RTP fixed header, per-track send counters ([`RtpTrackState`]), and a
//! resumable packetizer ([`RtpPacketizer`] + [`PacketizerCursor`]) that turns one ring frame
//! (format: see [`crate::media`]) into RTP packets written into caller-provided buffers, one
//! packet per call. Codec payload formats live in [`h264`] (RFC 6184), [`h265`] (RFC 7798) and
//! [`aac`] (RFC 3640).
//!
//! Must not: do I/O, read the clock, allocate, or panic on any frame/cursor it is handed. Time
//! comes in as an RTP timestamp already converted to the track's clock (90 kHz for video, the
//! sample rate for audio).
//!
//! Contract for the session shell: for each frame, start from `PacketizerCursor::default()` and
//! call [`RtpPacketizer::next_packet`] until it returns `Ok(None)`. Between two calls the caller
//! may stop for as long as it likes (a TCP viewer whose socket is full); the cursor is a small
//! `Copy` value, so a stalled viewer costs 8 bytes, not a copy of the frame. A frame must not
//! change while a cursor is partway through it. On `Err` nothing was written and neither the
//! cursor nor the [`RtpTrackState`] moved.

pub mod aac;
pub mod h264;
pub mod h265;
pub mod rtcp;
pub mod sender;

use crate::media::Codec;

/// Length of the RTP fixed header without CSRCs (RFC 3550 §5.1).
pub const RTP_HEADER_LEN: usize = 12;

/// Dynamic payload type rillcast uses for the video track (RFC 3551 §6: 96..=127 are dynamic).
pub const VIDEO_PAYLOAD_TYPE: u8 = 96;
/// Dynamic payload type rillcast uses for the audio track.
pub const AUDIO_PAYLOAD_TYPE: u8 = 97;

/// Smallest accepted `max_packet_len`: header + the largest fragmentation overhead (AAC: 4
/// bytes of AU-header section) + room for payload.
pub const MIN_PACKET_LEN: usize = RTP_HEADER_LEN + 8;
/// Largest accepted `max_packet_len`: RTSP interleaved frames (RFC 2326 §10.12) and the 16-bit
/// aggregation size fields cannot describe more.
pub const MAX_PACKET_LEN: usize = u16::MAX as usize;

/// Errors of the RTP/RTCP cores. Small and `Copy`; the shell adds peer/stream context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtpError {
    /// A video frame's 4-byte length prefix runs past the frame, or a NAL unit is shorter than
    /// its NAL header.
    MalformedFrame,
    /// The frame cannot be carried: longer than `u32::MAX`, or an AAC AU longer than the 13-bit
    /// AU-size field allows (8191 bytes).
    FrameTooLarge,
    /// The cursor does not point into this frame (a cursor reused across frames).
    CursorMismatch,
    /// The output buffer is smaller than the packet to be written.
    BufferTooSmall,
    /// `max_packet_len` outside `MIN_PACKET_LEN..=MAX_PACKET_LEN`.
    InvalidPacketLen,
    /// RTCP: version field is not 2 (RFC 3550 §6.4.1).
    BadVersion,
    /// RTCP: a length field runs past the data, or is too short for the packet type.
    BadLength,
    /// RTCP: padding count is zero, larger than the packet, or set on a non-final packet
    /// (RFC 3550 §6.4.1, Appendix A.2).
    BadPadding,
    /// RTCP SDES: the CNAME is longer than 255 bytes (RFC 3550 §6.5).
    CnameTooLong,
}

impl core::fmt::Display for RtpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let s = match self {
            RtpError::MalformedFrame => "malformed frame (bad NAL length prefix)",
            RtpError::FrameTooLarge => "frame too large for the payload format",
            RtpError::CursorMismatch => "packetizer cursor does not match frame",
            RtpError::BufferTooSmall => "output buffer too small",
            RtpError::InvalidPacketLen => "max packet length out of range",
            RtpError::BadVersion => "RTCP version is not 2",
            RtpError::BadLength => "RTCP length field invalid",
            RtpError::BadPadding => "RTCP padding invalid",
            RtpError::CnameTooLong => "RTCP CNAME longer than 255 bytes",
        };
        f.write_str(s)
    }
}

impl std::error::Error for RtpError {}

/// The fields of an RTP fixed header rillcast sets (RFC 3550 §5.1). Version is always 2; no
/// padding, extension or CSRCs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpHeader {
    /// 7-bit payload type; the high bit is ignored.
    pub payload_type: u8,
    pub marker: bool,
    pub sequence_number: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

impl RtpHeader {
    /// Writes the 12-byte fixed header (RFC 3550 §5.1) to the start of `out`.
    pub fn write(&self, out: &mut [u8]) -> Result<usize, RtpError> {
        let out = out
            .get_mut(..RTP_HEADER_LEN)
            .ok_or(RtpError::BufferTooSmall)?;
        out[0] = 0x80; // V=2, P=0, X=0, CC=0
        out[1] = ((self.marker as u8) << 7) | (self.payload_type & 0x7f);
        out[2..4].copy_from_slice(&self.sequence_number.to_be_bytes());
        out[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        out[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        Ok(RTP_HEADER_LEN)
    }
}

/// Per-viewer, per-track sender state: the header fields that persist across packets and the
/// counters an RTCP sender report needs (RFC 3550 §6.4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpTrackState {
    pub payload_type: u8,
    pub ssrc: u32,
    /// Sequence number of the next packet; wraps at 2^16 (RFC 3550 §5.1).
    pub seq: u16,
    /// Packets sent so far (SR "sender's packet count"; wraps).
    pub packets_sent: u32,
    /// Payload octets sent so far, RTP header excluded (SR "sender's octet count"; wraps).
    pub octets_sent: u32,
}

impl RtpTrackState {
    /// Fresh state. RFC 3550 §5.1 asks for a random initial `seq` (and SSRC); the caller
    /// supplies both so this core stays deterministic.
    pub fn new(payload_type: u8, ssrc: u32, initial_seq: u16) -> Self {
        RtpTrackState {
            payload_type,
            ssrc,
            seq: initial_seq,
            packets_sent: 0,
            octets_sent: 0,
        }
    }

    /// Writes the RTP header for a packet with `payload_len` bytes already placed after it in
    /// `out`, and advances the counters. `out` has been checked to hold the header.
    fn finish_packet(
        &mut self,
        out: &mut [u8],
        marker: bool,
        rtp_ts: u32,
        payload_len: usize,
    ) -> Result<usize, RtpError> {
        let hdr = RtpHeader {
            payload_type: self.payload_type,
            marker,
            sequence_number: self.seq,
            timestamp: rtp_ts,
            ssrc: self.ssrc,
        };
        hdr.write(out)?;
        self.seq = self.seq.wrapping_add(1);
        self.packets_sent = self.packets_sent.wrapping_add(1);
        // payload_len <= MAX_PACKET_LEN, so the cast is lossless.
        self.octets_sent = self.octets_sent.wrapping_add(payload_len as u32);
        Ok(RTP_HEADER_LEN + payload_len)
    }
}

/// Where a viewer is within one frame. `Default` is "at the start of a frame".
///
/// Video: `offset` is the byte offset of the current NAL unit's 4-byte length prefix in the
/// frame and `sent_in_nal` how many bytes of that NAL's body (after its NAL header) have gone
/// out in fragmentation units (0 = not started). Audio: `offset` is how many bytes of the AU
/// have been sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketizerCursor {
    offset: u32,
    sent_in_nal: u32,
}

impl PacketizerCursor {
    /// True before the first packet of a frame has been produced.
    pub fn is_at_start(&self) -> bool {
        self.offset == 0 && self.sent_in_nal == 0
    }
}

/// Turns ring frames of one track into RTP packets. Stateless apart from configuration, so one
/// packetizer serves every viewer of a track; per-viewer progress lives in the cursor and
/// [`RtpTrackState`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpPacketizer {
    codec: Codec,
    max_packet_len: usize,
}

impl RtpPacketizer {
    /// `max_packet_len` bounds the whole RTP packet including the 12-byte header (e.g. 1400 to
    /// stay under a 1500-byte MTU with IP/UDP headers to spare).
    pub fn new(codec: Codec, max_packet_len: usize) -> Result<Self, RtpError> {
        if !(MIN_PACKET_LEN..=MAX_PACKET_LEN).contains(&max_packet_len) {
            return Err(RtpError::InvalidPacketLen);
        }
        Ok(RtpPacketizer {
            codec,
            max_packet_len,
        })
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    pub fn max_packet_len(&self) -> usize {
        self.max_packet_len
    }

    /// Writes the next RTP packet of `frame` into `out` and returns its length, or `Ok(None)`
    /// once the frame has been fully sent. The marker bit is set on the last packet of a video
    /// access unit (RFC 6184 §5.1, RFC 7798 §4.1) and on every packet that ends an AAC AU
    /// (RFC 3640 §3.2.1). `rtp_ts` is used as-is for every packet of the frame.
    ///
    /// Errors (never panics) on a malformed frame, a cursor from another frame, or an `out`
    /// shorter than the packet (`out.len() >= max_packet_len` always suffices). On error
    /// nothing changes. Allocation-free.
    pub fn next_packet(
        &self,
        frame: &[u8],
        rtp_ts: u32,
        cursor: &mut PacketizerCursor,
        state: &mut RtpTrackState,
        out: &mut [u8],
    ) -> Result<Option<usize>, RtpError> {
        if frame.len() > u32::MAX as usize {
            return Err(RtpError::FrameTooLarge);
        }
        match self.codec {
            Codec::H264 => next_nal_packet::<h264::H264>(
                self.max_packet_len,
                frame,
                rtp_ts,
                cursor,
                state,
                out,
            ),
            Codec::H265 => next_nal_packet::<h265::H265>(
                self.max_packet_len,
                frame,
                rtp_ts,
                cursor,
                state,
                out,
            ),
            Codec::Aac => aac::next_packet(self.max_packet_len, frame, rtp_ts, cursor, state, out),
        }
    }
}

/// What differs between the H.264 (RFC 6184) and H.265 (RFC 7798) payload formats; the
/// single-NAL / aggregation / fragmentation walk in [`next_nal_packet`] is shared.
pub(crate) trait NalFormat {
    /// Bytes of NAL unit header (1 for H.264, 2 for H.265).
    const NAL_HEADER_LEN: usize;
    /// Bytes of aggregation packet header before the first size field (STAP-A: 1, AP: 2).
    const AGG_HEADER_LEN: usize;
    /// Bytes of FU payload header + FU header (FU-A: 2, H.265 FU: 3).
    const FU_HEADER_LEN: usize;
    /// Aggregation header for a packet whose first NAL header is `nal_hdr`.
    fn agg_header(nal_hdr: &[u8]) -> [u8; 2];
    /// Folds one more aggregated NAL header into the aggregation header.
    fn agg_merge(acc: [u8; 2], nal_hdr: &[u8]) -> [u8; 2];
    /// Writes the FU headers for fragmenting a NAL with header `nal_hdr` into `out[..FU_HEADER_LEN]`.
    fn write_fu_header(nal_hdr: &[u8], start: bool, end: bool, out: &mut [u8]);
}

/// Reads the NAL unit whose 4-byte length prefix starts at `pos`. Returns the NAL (header
/// included) and the offset just past it.
fn nal_at(frame: &[u8], pos: usize, nal_header_len: usize) -> Result<(&[u8], usize), RtpError> {
    let prefix = frame
        .get(pos..pos.saturating_add(4))
        .ok_or(RtpError::MalformedFrame)?;
    // `prefix` has exactly 4 bytes (the `get` above succeeded on a 4-byte range).
    let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    let start = pos + 4;
    let end = start.checked_add(len).ok_or(RtpError::MalformedFrame)?;
    let nal = frame.get(start..end).ok_or(RtpError::MalformedFrame)?;
    if nal.len() < nal_header_len {
        return Err(RtpError::MalformedFrame);
    }
    Ok((nal, end))
}

/// Walks every length prefix of `frame` once so a malformed frame is refused before any of its
/// packets leave.
fn validate_nal_frame(frame: &[u8], nal_header_len: usize) -> Result<(), RtpError> {
    let mut pos = 0;
    while pos < frame.len() {
        pos = nal_at(frame, pos, nal_header_len)?.1;
    }
    Ok(())
}

/// The shared H.264/H.265 packetization walk: at a NAL boundary, aggregate as many following
/// NALs as fit (at least two, else a single NAL packet); a NAL larger than the payload room is
/// fragmented. NALs are never reordered (interleaved modes are not used).
fn next_nal_packet<F: NalFormat>(
    max_packet_len: usize,
    frame: &[u8],
    rtp_ts: u32,
    cursor: &mut PacketizerCursor,
    state: &mut RtpTrackState,
    out: &mut [u8],
) -> Result<Option<usize>, RtpError> {
    let pos = cursor.offset as usize;
    if pos == frame.len() && cursor.sent_in_nal == 0 {
        return Ok(None);
    }
    if pos > frame.len() {
        return Err(RtpError::CursorMismatch);
    }
    if cursor.is_at_start() {
        validate_nal_frame(frame, F::NAL_HEADER_LEN)?;
    }
    let payload_max = max_packet_len - RTP_HEADER_LEN;
    let (nal, next) = nal_at(frame, pos, F::NAL_HEADER_LEN).map_err(|e| {
        if cursor.is_at_start() {
            e
        } else {
            RtpError::CursorMismatch
        }
    })?;
    let (nal_hdr, body) = nal.split_at(F::NAL_HEADER_LEN);

    if cursor.sent_in_nal == 0 && nal.len() <= payload_max {
        // Aggregate following NALs while they fit (RFC 6184 §5.7.1, RFC 7798 §4.4.2).
        let mut agg_len = F::AGG_HEADER_LEN + 2 + nal.len();
        let mut agg_hdr = F::agg_header(nal_hdr);
        let mut count = 1usize;
        let mut end = next;
        while end < frame.len() {
            let (n2, next2) = nal_at(frame, end, F::NAL_HEADER_LEN)?;
            if agg_len + 2 + n2.len() > payload_max {
                break;
            }
            agg_len += 2 + n2.len();
            // n2 has at least NAL_HEADER_LEN bytes (checked by nal_at).
            agg_hdr = F::agg_merge(agg_hdr, &n2[..F::NAL_HEADER_LEN]);
            count += 1;
            end = next2;
        }
        let payload_len = if count >= 2 { agg_len } else { nal.len() };
        let packet = out
            .get_mut(..RTP_HEADER_LEN + payload_len)
            .ok_or(RtpError::BufferTooSmall)?;
        let payload = &mut packet[RTP_HEADER_LEN..];
        if count >= 2 {
            payload[..F::AGG_HEADER_LEN].copy_from_slice(&agg_hdr[..F::AGG_HEADER_LEN]);
            let mut w = F::AGG_HEADER_LEN;
            let mut r = pos;
            while r < end {
                // Re-reads NALs validated in the loop above.
                let (n, rn) = nal_at(frame, r, F::NAL_HEADER_LEN)?;
                // Every aggregated NAL fits in payload_max <= u16::MAX, so the cast is lossless.
                payload[w..w + 2].copy_from_slice(&(n.len() as u16).to_be_bytes());
                payload[w + 2..w + 2 + n.len()].copy_from_slice(n);
                w += 2 + n.len();
                r = rn;
            }
        } else {
            payload.copy_from_slice(nal);
        }
        let marker = end == frame.len();
        let len = state.finish_packet(packet, marker, rtp_ts, payload_len)?;
        cursor.offset = end as u32; // end <= frame.len() <= u32::MAX (checked by the caller).
        cursor.sent_in_nal = 0;
        return Ok(Some(len));
    }

    // Fragmentation unit (RFC 6184 §5.8, RFC 7798 §4.4.3). The NAL header is not sent; its
    // fields travel in the FU headers.
    let sent = cursor.sent_in_nal as usize;
    if sent >= body.len() {
        return Err(RtpError::CursorMismatch);
    }
    let chunk = (payload_max - F::FU_HEADER_LEN).min(body.len() - sent);
    let start = sent == 0;
    let end = sent + chunk == body.len();
    let payload_len = F::FU_HEADER_LEN + chunk;
    let packet = out
        .get_mut(..RTP_HEADER_LEN + payload_len)
        .ok_or(RtpError::BufferTooSmall)?;
    let payload = &mut packet[RTP_HEADER_LEN..];
    F::write_fu_header(nal_hdr, start, end, &mut payload[..F::FU_HEADER_LEN]);
    payload[F::FU_HEADER_LEN..].copy_from_slice(&body[sent..sent + chunk]);
    let marker = end && next == frame.len();
    let len = state.finish_packet(packet, marker, rtp_ts, payload_len)?;
    if end {
        cursor.offset = next as u32; // next <= frame.len() <= u32::MAX.
        cursor.sent_in_nal = 0;
    } else {
        cursor.sent_in_nal = (sent + chunk) as u32; // < body.len() <= u32::MAX.
    }
    Ok(Some(len))
}

#[cfg(test)]
pub(crate) mod test_support;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_bytes() {
        // RFC 3550 §5.1 layout: 0x80 = V2; 0xe0 = M=1, PT=96; seq, ts, ssrc big-endian.
        let h = RtpHeader {
            payload_type: 96,
            marker: true,
            sequence_number: 0x1234,
            timestamp: 0xdead_beef,
            ssrc: 0x0102_0304,
        };
        let mut out = [0u8; 12];
        assert_eq!(h.write(&mut out), Ok(12));
        assert_eq!(
            out,
            [0x80, 0xe0, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04]
        );
        let h = RtpHeader {
            marker: false,
            payload_type: 97,
            ..h
        };
        h.write(&mut out).unwrap();
        assert_eq!(out[1], 0x61);
        assert_eq!(h.write(&mut out[..11]), Err(RtpError::BufferTooSmall));
    }

    /// Fuzz-style: arbitrary frame bytes and arbitrary (even nonsensical) cursors must give
    /// packets or errors, never a panic, an oversized packet or an endless frame.
    #[test]
    fn packetizer_never_panics_on_arbitrary_input() {
        let mut rng = test_support::Lcg::new(0xf0f0);
        let mut out = vec![0u8; 2000];
        for i in 0..20_000 {
            let codec = [Codec::H264, Codec::H265, Codec::Aac][i % 3];
            let max_len = MIN_PACKET_LEN + rng.below(200);
            let p = RtpPacketizer::new(codec, max_len).unwrap();
            let len = rng.below(300);
            let mut frame: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if i % 2 == 0 && len > 8 {
                // Plausible prefixes so the walk gets past the first NAL sometimes.
                frame[..4].copy_from_slice(&(rng.below(len) as u32).to_be_bytes());
            }
            let mut c = if i % 4 == 1 {
                PacketizerCursor {
                    offset: rng.below(len + 8) as u32,
                    sent_in_nal: if rng.below(2) == 0 { 0 } else { rng.next() },
                }
            } else {
                PacketizerCursor::default()
            };
            let mut st = RtpTrackState::new(96, 1, 0);
            let out_len = rng.below(max_len + 1);
            // Every packet consumes at least one frame byte, so len + 1 calls must end it.
            let mut ended = false;
            for _ in 0..=len + 1 {
                match p.next_packet(&frame, 0, &mut c, &mut st, &mut out[..out_len]) {
                    Ok(Some(n)) => assert!(n <= max_len.min(out_len)),
                    Ok(None) | Err(_) => {
                        ended = true;
                        break;
                    }
                }
            }
            assert!(ended, "frame did not end: {frame:?} {c:?}");
        }
    }

    #[test]
    fn packet_len_bounds() {
        assert_eq!(
            RtpPacketizer::new(Codec::H264, MIN_PACKET_LEN - 1),
            Err(RtpError::InvalidPacketLen)
        );
        assert_eq!(
            RtpPacketizer::new(Codec::H264, MAX_PACKET_LEN + 1),
            Err(RtpError::InvalidPacketLen)
        );
        assert!(RtpPacketizer::new(Codec::Aac, MIN_PACKET_LEN).is_ok());
    }
}

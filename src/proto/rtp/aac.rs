//! AAC RTP payload format, RFC 3640 mode AAC-hbr (sizelength=13, indexlength=3,
//! indexdeltalength=3), one access unit per packet.
//!
//! Owns: the AU-header section and fragmentation of AUs larger than a packet (§3.2.3). Must not:
//! interleave or aggregate AUs, allocate or do I/O. The RTP clock is the sample rate; the
//! caller converts.

use super::{PacketizerCursor, RtpError, RtpTrackState, RTP_HEADER_LEN};

/// AU-headers-length (16 bits) + one 16-bit AU-header (RFC 3640 §3.2.1, §3.3.6).
pub const AU_HEADER_SECTION_LEN: usize = 4;
/// Largest AU the 13-bit AU-size field can describe.
pub const MAX_AU_LEN: usize = (1 << 13) - 1;

/// Writes the next packet of one AAC AU (`frame`, ADTS header stripped). Each fragment repeats
/// the AU-header with the size of the whole AU (§3.2.3); the marker bit is set on the packet
/// that completes the AU (§3.2.1: "final fragment ... or one or more complete AUs").
pub(super) fn next_packet(
    max_packet_len: usize,
    frame: &[u8],
    rtp_ts: u32,
    cursor: &mut PacketizerCursor,
    state: &mut RtpTrackState,
    out: &mut [u8],
) -> Result<Option<usize>, RtpError> {
    if frame.len() > MAX_AU_LEN {
        return Err(RtpError::FrameTooLarge);
    }
    if cursor.sent_in_nal != 0 {
        return Err(RtpError::CursorMismatch);
    }
    let sent = cursor.offset as usize;
    if sent >= frame.len() {
        return if sent == frame.len() {
            Ok(None)
        } else {
            Err(RtpError::CursorMismatch)
        };
    }
    let room = max_packet_len - RTP_HEADER_LEN - AU_HEADER_SECTION_LEN;
    let chunk = room.min(frame.len() - sent);
    let payload_len = AU_HEADER_SECTION_LEN + chunk;
    let packet = out
        .get_mut(..RTP_HEADER_LEN + payload_len)
        .ok_or(RtpError::BufferTooSmall)?;
    let payload = &mut packet[RTP_HEADER_LEN..];
    // frame.len() <= MAX_AU_LEN, so it fits 13 bits; AU-Index = 0 in the low 3 bits.
    let au_header = (frame.len() as u16) << 3;
    payload[0..2].copy_from_slice(&16u16.to_be_bytes());
    payload[2..4].copy_from_slice(&au_header.to_be_bytes());
    payload[4..].copy_from_slice(&frame[sent..sent + chunk]);
    let done = sent + chunk == frame.len();
    let len = state.finish_packet(packet, done, rtp_ts, payload_len)?;
    cursor.offset = (sent + chunk) as u32; // <= MAX_AU_LEN.
    Ok(Some(len))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::*;
    use super::MAX_AU_LEN;
    use crate::media::Codec;

    #[test]
    fn one_au_per_packet() {
        // 5-byte AU: AU-headers-length 0x0010 (16 bits), AU-header 0x0028 = size 5 << 3 | 0.
        let p = RtpPacketizer::new(Codec::Aac, 1400).unwrap();
        let mut st = RtpTrackState::new(97, 0x1122_3344, 100);
        let pk = collect(&p, &[0x21, 0x10, 0x04, 0x60, 0x8c], 48_000, &mut st).unwrap();
        let expect: Vec<u8> = vec![
            0x80, 0xe1, 0, 100, 0, 0, 0xbb, 0x80, 0x11, 0x22, 0x33, 0x44, // M=1, PT 97
            0x00, 0x10, 0x00, 0x28, 0x21, 0x10, 0x04, 0x60, 0x8c,
        ];
        assert_eq!(pk, vec![expect]);
    }

    #[test]
    fn fragmented_au() {
        // 600-byte AU, max packet 12 + 4 + 256: fragments of 256, 256, 88. Every fragment
        // carries AU-size 600 (0x258 << 3 = 0x12c0); only the last has the marker.
        let p = RtpPacketizer::new(Codec::Aac, 12 + 4 + 256).unwrap();
        let au: Vec<u8> = (0..600u32).map(|i| (i * 7) as u8).collect();
        let mut st = RtpTrackState::new(97, 1, 0xffff);
        let pk = collect(&p, &au, 1024, &mut st).unwrap();
        assert_eq!(pk.len(), 3);
        let lens: Vec<usize> = pk.iter().map(|p| p.len()).collect();
        assert_eq!(lens, vec![272, 272, 104]);
        let markers: Vec<bool> = pk.iter().map(|p| p[1] & 0x80 != 0).collect();
        assert_eq!(markers, vec![false, false, true]);
        let seqs: Vec<u16> = pk
            .iter()
            .map(|p| u16::from_be_bytes([p[2], p[3]]))
            .collect();
        assert_eq!(seqs, vec![0xffff, 0, 1]);
        for (i, p) in pk.iter().enumerate() {
            assert_eq!(p[12..16], [0x00, 0x10, 0x12, 0xc0]);
            let from = i * 256;
            assert_eq!(p[16..], au[from..(from + 256).min(600)]);
        }
        assert_eq!(st.octets_sent, 260 + 260 + 92);
    }

    #[test]
    fn oversized_au_is_an_error() {
        let p = RtpPacketizer::new(Codec::Aac, 1400).unwrap();
        let mut st = RtpTrackState::new(97, 1, 0);
        let mut c = PacketizerCursor::default();
        let mut out = [0u8; 1400];
        let big = vec![0u8; MAX_AU_LEN + 1];
        assert_eq!(
            p.next_packet(&big, 0, &mut c, &mut st, &mut out),
            Err(RtpError::FrameTooLarge)
        );
    }

    #[test]
    fn round_trip_random_aus() {
        let mut rng = Lcg::new(0xaac0_0001);
        for _ in 0..300 {
            let max_len = MIN_PACKET_LEN + rng.below(1500);
            let p = RtpPacketizer::new(Codec::Aac, max_len).unwrap();
            let au: Vec<u8> = (0..1 + rng.below(MAX_AU_LEN))
                .map(|_| rng.next() as u8)
                .collect();
            let mut st = RtpTrackState::new(97, 3, rng.next() as u16);
            let seq0 = st.seq;
            let pk = collect(&p, &au, 77, &mut st).unwrap();
            check_sequence(&pk, seq0, max_len);
            assert_eq!(depacketize_aac(&pk), au);
        }
    }
}

//! H.264 RTP payload format, RFC 6184 packetization-mode=1 (non-interleaved).
//!
//! Owns: the H.264 header rules for the shared walk in [`super::next_nal_packet`] — single NAL
//! unit packets (§5.6), STAP-A aggregation (§5.7.1, type 24) and FU-A fragmentation (§5.8,
//! type 28). Must not: reorder NAL units, alter NAL bytes, allocate or do I/O.

use super::NalFormat;

/// STAP-A NAL unit type (RFC 6184 §5.4, Table 3).
pub const STAP_A: u8 = 24;
/// FU-A NAL unit type (RFC 6184 §5.4, Table 3).
pub const FU_A: u8 = 28;

/// Marker type selecting the RFC 6184 rules.
pub(crate) struct H264;

impl NalFormat for H264 {
    const NAL_HEADER_LEN: usize = 1;
    const AGG_HEADER_LEN: usize = 1;
    const FU_HEADER_LEN: usize = 2;

    fn agg_header(nal_hdr: &[u8]) -> [u8; 2] {
        // F and NRI from the first NAL; merged below. nal_hdr has NAL_HEADER_LEN bytes.
        [(nal_hdr[0] & 0xe0) | STAP_A, 0]
    }

    fn agg_merge(acc: [u8; 2], nal_hdr: &[u8]) -> [u8; 2] {
        // §5.7.1: F is the OR of all F bits; NRI is the maximum of all NRIs.
        let f = (acc[0] | nal_hdr[0]) & 0x80;
        let nri = (acc[0] & 0x60).max(nal_hdr[0] & 0x60);
        [f | nri | STAP_A, 0]
    }

    fn write_fu_header(nal_hdr: &[u8], start: bool, end: bool, out: &mut [u8]) {
        // §5.8: FU indicator keeps F and NRI; FU header carries S, E, R=0 and the NAL type.
        out[0] = (nal_hdr[0] & 0xe0) | FU_A;
        out[1] = ((start as u8) << 7) | ((end as u8) << 6) | (nal_hdr[0] & 0x1f);
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::*;
    use crate::media::Codec;

    fn hdr(m: bool, seq: u16) -> Vec<u8> {
        // PT 96, ts 0x00010203, SSRC 0xcafebabe.
        let mut v = vec![0x80, (m as u8) << 7 | 96];
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(&[0x00, 0x01, 0x02, 0x03, 0xca, 0xfe, 0xba, 0xbe]);
        v
    }

    fn cat(a: Vec<u8>, b: &[u8]) -> Vec<u8> {
        let mut a = a;
        a.extend_from_slice(b);
        a
    }

    #[test]
    fn single_nal_packet() {
        // One non-IDR slice (0x41: NRI=2, type 1) that fits: the payload is the NAL verbatim.
        let p = RtpPacketizer::new(Codec::H264, 1400).unwrap();
        let frame = avcc(&[&[0x41, 1, 2, 3, 4, 5]]);
        let mut st = RtpTrackState::new(96, 0xcafe_babe, 7);
        let pk = collect(&p, &frame, 0x0001_0203, &mut st).unwrap();
        assert_eq!(pk, vec![cat(hdr(true, 7), &[0x41, 1, 2, 3, 4, 5])]);
        assert_eq!((st.seq, st.packets_sent, st.octets_sent), (8, 1, 6));
    }

    #[test]
    fn stap_a_then_fu_a() {
        // Keyframe: SPS, PPS, IDR. max packet 28 → 16 bytes of payload. SPS+PPS as STAP-A
        // (1 + 2+4 + 2+4 = 13 bytes); the IDR (1 + 30 bytes) goes as FU-A with 14 body bytes
        // per packet: 14 + 14 + 2.
        let p = RtpPacketizer::new(Codec::H264, 28).unwrap();
        let sps = [0x67, 0x42, 0x00, 0x1f];
        let pps = [0x68, 0xce, 0x3c, 0x80];
        let mut idr = vec![0x65];
        idr.extend(0u8..30);
        let frame = avcc(&[&sps, &pps, &idr]);
        let mut st = RtpTrackState::new(96, 0xcafe_babe, 0xfffe);
        let pk = collect(&p, &frame, 0x0001_0203, &mut st).unwrap();
        let body: Vec<u8> = (0u8..30).collect();
        let expect = vec![
            // STAP-A header 0x78: F=0, NRI=3 (max of 3, 3), type 24; then size+NAL pairs.
            cat(
                hdr(false, 0xfffe),
                &[
                    0x78, 0, 4, 0x67, 0x42, 0x00, 0x1f, 0, 4, 0x68, 0xce, 0x3c, 0x80,
                ],
            ),
            // FU indicator 0x7c = NRI 3 | 28; FU header 0x85 = S | type 5.
            cat(cat(hdr(false, 0xffff), &[0x7c, 0x85]), &body[..14]),
            // Middle fragment: no S/E. Sequence number wraps 0xffff → 0.
            cat(cat(hdr(false, 0), &[0x7c, 0x05]), &body[14..28]),
            // End fragment 0x45 = E | type 5, marker set: last packet of the access unit.
            cat(cat(hdr(true, 1), &[0x7c, 0x45]), &body[28..]),
        ];
        assert_eq!(pk, expect);
        assert_eq!(st.seq, 2);
        assert_eq!(st.octets_sent, 13 + 16 + 16 + 4);
    }

    #[test]
    fn stap_a_header_takes_max_nri_and_or_of_f() {
        // SEI (NRI 0) + slice (NRI 2) → 0x58; with a forbidden-bit NAL (0x86) → 0xd8.
        let p = RtpPacketizer::new(Codec::H264, 1400).unwrap();
        let mut st = RtpTrackState::new(96, 0xcafe_babe, 0);
        let pk = collect(
            &p,
            &avcc(&[&[0x06, 0xaa], &[0x41, 0xbb]]),
            0x0001_0203,
            &mut st,
        );
        assert_eq!(
            pk.unwrap(),
            vec![cat(
                hdr(true, 0),
                &[0x58, 0, 2, 0x06, 0xaa, 0, 2, 0x41, 0xbb]
            )]
        );
        let pk = collect(
            &p,
            &avcc(&[&[0x86, 0xaa], &[0x41, 0xbb]]),
            0x0001_0203,
            &mut st,
        );
        assert_eq!(pk.unwrap()[0][12], 0xd8);
    }

    #[test]
    fn malformed_frames_are_errors() {
        let p = RtpPacketizer::new(Codec::H264, 1400).unwrap();
        let mut st = RtpTrackState::new(96, 1, 0);
        let mut out = [0u8; 1400];
        let bad: [&[u8]; 4] = [
            &[0, 0, 0, 5, 0x65, 1],             // length runs past the end
            &[0, 0, 0],                         // truncated prefix
            &[0, 0, 0, 0],                      // empty NAL: no header
            &[0, 0, 0, 1, 0x65, 0, 0, 0, 9, 1], // second NAL bad: refused before the first goes
        ];
        for f in bad {
            let mut c = PacketizerCursor::default();
            assert_eq!(
                p.next_packet(f, 0, &mut c, &mut st, &mut out),
                Err(RtpError::MalformedFrame),
                "{f:?}"
            );
            assert!(c.is_at_start());
        }
        assert_eq!(st.packets_sent, 0);
        // An empty frame has nothing to send.
        let mut c = PacketizerCursor::default();
        assert_eq!(p.next_packet(&[], 0, &mut c, &mut st, &mut out), Ok(None));
    }

    #[test]
    fn short_output_is_an_error_and_resumable() {
        let p = RtpPacketizer::new(Codec::H264, 100).unwrap();
        let frame = avcc(&[&[0x65; 150]]);
        let mut st = RtpTrackState::new(96, 1, 0);
        let mut c = PacketizerCursor::default();
        let mut out = [0u8; 100];
        assert_eq!(
            p.next_packet(&frame, 0, &mut c, &mut st, &mut out[..50]),
            Err(RtpError::BufferTooSmall)
        );
        assert!(c.is_at_start());
        assert_eq!(st.seq, 0);
        assert_eq!(
            p.next_packet(&frame, 0, &mut c, &mut st, &mut out),
            Ok(Some(100))
        );
        // A stalled viewer resumes from a copy of its cursor and gets the same packet.
        let (saved_c, saved_st) = (c, st);
        let a = p.next_packet(&frame, 0, &mut c, &mut st, &mut out).unwrap();
        let first = out;
        let (mut c2, mut st2) = (saved_c, saved_st);
        let b = p
            .next_packet(&frame, 0, &mut c2, &mut st2, &mut out)
            .unwrap();
        assert_eq!((a, first), (b, out));
        assert_eq!(
            p.next_packet(&frame, 0, &mut c, &mut st, &mut out),
            Ok(None)
        );
    }

    #[test]
    fn round_trip_random_frames() {
        round_trip_nal_frames(Codec::H264, 0x2640_0001, 300);
    }
}

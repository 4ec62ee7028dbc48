//! H.265 RTP payload format, RFC 7798, without DONL (sprop-max-don-diff=0).
//!
//! Owns: the H.265 header rules for the shared walk in [`super::next_nal_packet`] — single NAL
//! unit packets (§4.4.1), aggregation packets (§4.4.2, type 48) and fragmentation units
//! (§4.4.3, type 49). Must not: reorder NAL units, alter NAL bytes, allocate or do I/O.

use super::NalFormat;

/// Aggregation packet NAL unit type (RFC 7798 §4.4.2).
pub const AP: u8 = 48;
/// Fragmentation unit NAL unit type (RFC 7798 §4.4.3).
pub const FU: u8 = 49;

/// Marker type selecting the RFC 7798 rules.
pub(crate) struct H265;

/// The 2-byte payload header (RFC 7798 §4.2, same layout as the NAL unit header): F(1),
/// Type(6), LayerId(6), TID(3).
fn payload_header(f: bool, nal_type: u8, layer_id: u8, tid: u8) -> [u8; 2] {
    [
        ((f as u8) << 7) | ((nal_type & 0x3f) << 1) | ((layer_id >> 5) & 1),
        ((layer_id & 0x1f) << 3) | (tid & 7),
    ]
}

/// (F, LayerId, TID) of a 2-byte NAL unit header.
fn fields(h: &[u8]) -> (bool, u8, u8) {
    (h[0] & 0x80 != 0, ((h[0] & 1) << 5) | (h[1] >> 3), h[1] & 7)
}

impl NalFormat for H265 {
    const NAL_HEADER_LEN: usize = 2;
    const AGG_HEADER_LEN: usize = 2;
    const FU_HEADER_LEN: usize = 3;

    fn agg_header(nal_hdr: &[u8]) -> [u8; 2] {
        let (f, layer, tid) = fields(nal_hdr);
        payload_header(f, AP, layer, tid)
    }

    fn agg_merge(acc: [u8; 2], nal_hdr: &[u8]) -> [u8; 2] {
        // §4.4.2: F is the OR of all F bits; LayerId and TID are the lowest of the aggregated
        // units (TID is coded TemporalId+1, so the lowest code is the lowest TemporalId).
        let (f0, l0, t0) = fields(&acc);
        let (f1, l1, t1) = fields(nal_hdr);
        payload_header(f0 | f1, AP, l0.min(l1), t0.min(t1))
    }

    fn write_fu_header(nal_hdr: &[u8], start: bool, end: bool, out: &mut [u8]) {
        // §4.4.3: payload header copies F, LayerId, TID with Type=49; FU header S, E, FuType.
        let (f, layer, tid) = fields(nal_hdr);
        let ph = payload_header(f, FU, layer, tid);
        out[0] = ph[0];
        out[1] = ph[1];
        out[2] = ((start as u8) << 7) | ((end as u8) << 6) | ((nal_hdr[0] >> 1) & 0x3f);
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::*;
    use crate::media::Codec;

    fn hdr(m: bool, seq: u16) -> Vec<u8> {
        let mut v = vec![0x80, (m as u8) << 7 | 96];
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(&[0, 0, 0, 9, 0, 0, 0, 5]);
        v
    }

    fn cat(a: Vec<u8>, b: &[u8]) -> Vec<u8> {
        let mut a = a;
        a.extend_from_slice(b);
        a
    }

    #[test]
    fn single_ap_and_fu() {
        // VPS 0x40 0x01, SPS 0x42 0x01, PPS 0x44 0x01 (type 32/33/34, LayerId 0, TID 1), then an
        // IDR_W_RADL slice 0x26 0x01 (type 19) of 2 + 20 bytes. max packet 12 + 20 = 32.
        let p = RtpPacketizer::new(Codec::H265, 32).unwrap();
        let vps = [0x40, 0x01, 0x0c];
        let sps = [0x42, 0x01, 0x01];
        let pps = [0x44, 0x01, 0xc1];
        let mut idr = vec![0x26, 0x01];
        idr.extend(100u8..120);
        let frame = avcc(&[&vps, &sps, &pps, &idr]);
        let mut st = RtpTrackState::new(96, 5, 0xffff);
        let pk = collect(&p, &frame, 9, &mut st).unwrap();
        let body: Vec<u8> = (100u8..120).collect();
        let expect = vec![
            // AP: payload header 0x60 0x01 = type 48, LayerId 0, TID 1; 2 + 3×(2+3) = 17 bytes.
            cat(
                hdr(false, 0xffff),
                &[
                    0x60, 0x01, 0, 3, 0x40, 0x01, 0x0c, 0, 3, 0x42, 0x01, 0x01, 0, 3, 0x44, 0x01,
                    0xc1,
                ],
            ),
            // FU: payload header 0x62 0x01 = type 49; FU header 0x93 = S | FuType 19.
            // 20 - 3 = 17 body bytes per fragment: 17 + 3.
            cat(cat(hdr(false, 0), &[0x62, 0x01, 0x93]), &body[..17]),
            // End: FU header 0x53 = E | 19, marker set.
            cat(cat(hdr(true, 1), &[0x62, 0x01, 0x53]), &body[17..]),
        ];
        assert_eq!(pk, expect);

        // A NAL that fits alone goes verbatim (single NAL unit packet).
        let pk = collect(&p, &avcc(&[&[0x02, 0x01, 7, 8]]), 9, &mut st).unwrap();
        assert_eq!(pk, vec![cat(hdr(true, 2), &[0x02, 0x01, 7, 8])]);
    }

    #[test]
    fn fu_middle_and_ap_field_merge() {
        // 2 + 40 bytes body with 17 per fragment: S, middle (no S/E), E.
        let p = RtpPacketizer::new(Codec::H265, 32).unwrap();
        let mut nal = vec![0x02, 0x02]; // TRAIL_R, TID 2
        nal.extend(0u8..40);
        let mut st = RtpTrackState::new(96, 5, 0);
        let pk = collect(&p, &avcc(&[&nal]), 9, &mut st).unwrap();
        let fu: Vec<[u8; 3]> = pk.iter().map(|p| [p[12], p[13], p[14]]).collect();
        assert_eq!(
            fu,
            vec![[0x62, 0x02, 0x81], [0x62, 0x02, 0x01], [0x62, 0x02, 0x41]]
        );
        // AP of a TID 2 and a TID 1 NAL with F set on one: F=1, TID=min=1.
        let pk = collect(&p, &avcc(&[&[0x02, 0x02], &[0x80, 0x01]]), 9, &mut st).unwrap();
        assert_eq!(pk[0][12..14], [0xe0, 0x01]);
    }

    #[test]
    fn nal_shorter_than_header_is_malformed() {
        let p = RtpPacketizer::new(Codec::H265, 1400).unwrap();
        let mut st = RtpTrackState::new(96, 5, 0);
        let mut c = PacketizerCursor::default();
        let mut out = [0u8; 1400];
        assert_eq!(
            p.next_packet(&[0, 0, 0, 1, 0x26], 0, &mut c, &mut st, &mut out),
            Err(RtpError::MalformedFrame)
        );
    }

    #[test]
    fn round_trip_random_frames() {
        round_trip_nal_frames(Codec::H265, 0x2650_0001, 300);
    }
}

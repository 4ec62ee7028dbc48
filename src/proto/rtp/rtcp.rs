//! RTCP (RFC 3550 §6): writing the sender report rillcast sends and parsing what viewers send.
//!
//! Owns: compound SR + SDES(CNAME) emission (§6.4.1, §6.5, §6.1 compound rules), NTP timestamp
//! conversion (§4), and a validating, non-panicking parser for incoming compound packets
//! (Appendix A.2 checks). Must not: read the clock (NTP time is an input), allocate, or trust
//! any byte of incoming data.

use super::RtpError;
use core::time::Duration;

/// RTCP packet types (RFC 3550 §12.1).
pub const PT_SR: u8 = 200;
pub const PT_RR: u8 = 201;
pub const PT_SDES: u8 = 202;
pub const PT_BYE: u8 = 203;
pub const PT_APP: u8 = 204;

/// SDES item type CNAME (RFC 3550 §6.5.1).
const SDES_CNAME: u8 = 1;

/// Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01) (RFC 868 / §4).
const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

/// Converts time since the Unix epoch to the 64-bit NTP fixed-point format (RFC 3550 §4):
/// seconds since 1900 in the high 32 bits (wrapping in 2036 as NTP era 1), fraction of a
/// second in units of 2^-32 s in the low 32 bits.
pub fn ntp_from_unix(since_epoch: Duration) -> u64 {
    let secs = since_epoch.as_secs().wrapping_add(NTP_UNIX_OFFSET_SECS) & 0xffff_ffff;
    // nanos < 1e9, so (nanos << 32) / 1e9 < 2^32 and the product fits u64.
    let frac = ((since_epoch.subsec_nanos() as u64) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// Length of the compound packet [`write_sender_report`] produces for a CNAME of `cname_len`
/// bytes.
pub fn sender_report_len(cname_len: usize) -> usize {
    // SR without report blocks: 28 bytes. SDES: 4 header + 4 SSRC + 2 item header + text,
    // then 1..=4 null octets ending the chunk on a 32-bit boundary (§6.5).
    28 + 8 + (2 + cname_len + 4) / 4 * 4
}

/// Writes a compound RTCP packet: a sender report with no report blocks (§6.4.1) followed by
/// an SDES packet with one chunk carrying CNAME (§6.5.1), as §6.1 requires of every compound
/// packet. `ntp_time` is from [`ntp_from_unix`]; `rtp_ts` is the RTP timestamp corresponding to
/// the same instant; the counts are [`super::RtpTrackState`]'s. Returns the bytes written.
#[allow(clippy::too_many_arguments)]
pub fn write_sender_report(
    out: &mut [u8],
    ssrc: u32,
    ntp_time: u64,
    rtp_ts: u32,
    packet_count: u32,
    octet_count: u32,
    cname: &str,
) -> Result<usize, RtpError> {
    if cname.len() > 255 {
        return Err(RtpError::CnameTooLong);
    }
    let total = sender_report_len(cname.len());
    let out = out.get_mut(..total).ok_or(RtpError::BufferTooSmall)?;
    // SR: V=2 P=0 RC=0, PT=200, length 6 (28 bytes / 4 - 1).
    out[0..4].copy_from_slice(&[0x80, PT_SR, 0, 6]);
    out[4..8].copy_from_slice(&ssrc.to_be_bytes());
    out[8..16].copy_from_slice(&ntp_time.to_be_bytes());
    out[16..20].copy_from_slice(&rtp_ts.to_be_bytes());
    out[20..24].copy_from_slice(&packet_count.to_be_bytes());
    out[24..28].copy_from_slice(&octet_count.to_be_bytes());
    // SDES: V=2 P=0 SC=1; length in 32-bit words minus one. total - 28 <= 8 + 260, fits u16.
    let sdes = &mut out[28..];
    let words = ((sdes.len() / 4) - 1) as u16;
    sdes[0] = 0x81;
    sdes[1] = PT_SDES;
    sdes[2..4].copy_from_slice(&words.to_be_bytes());
    sdes[4..8].copy_from_slice(&ssrc.to_be_bytes());
    sdes[8] = SDES_CNAME;
    sdes[9] = cname.len() as u8; // <= 255, checked above.
    sdes[10..10 + cname.len()].copy_from_slice(cname.as_bytes());
    // The chunk ends with the null item type and padding to a 32-bit boundary.
    sdes[10 + cname.len()..].fill(0);
    Ok(total)
}

/// Writes a BYE packet (RFC 3550 §6.6) for one SSRC, without a reason. It must follow an SR
/// or RR in the same compound packet (§6.1): write it right after [`write_sender_report`].
/// Returns the bytes written (8).
pub fn write_bye(out: &mut [u8], ssrc: u32) -> Result<usize, RtpError> {
    let out = out.get_mut(..8).ok_or(RtpError::BufferTooSmall)?;
    // V=2 P=0 SC=1, PT=203, length 1 (8 bytes / 4 - 1).
    out[0..4].copy_from_slice(&[0x81, PT_BYE, 0, 1]);
    out[4..8].copy_from_slice(&ssrc.to_be_bytes());
    Ok(8)
}

/// One validated RTCP packet of a compound packet (RFC 3550 §6.4–6.7). Borrowed from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtcpPacket<'a> {
    /// Packet type (200 SR, 201 RR, 202 SDES, 203 BYE, 204 APP, or another value).
    pub packet_type: u8,
    /// The 5-bit count field (RC, SC, or APP subtype).
    pub count: u8,
    /// SR/RR/APP: sender SSRC; SDES/BYE: the first SSRC/CSRC; `None` when the packet has none
    /// (a BYE or SDES with count 0).
    pub ssrc: Option<u32>,
    /// Everything after the 4-byte common header, padding removed.
    pub body: &'a [u8],
}

/// A reception report block (RFC 3550 §6.4.1) from an SR or RR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportBlock {
    /// The source this block reports on (rillcast's track SSRC).
    pub ssrc: u32,
    pub fraction_lost: u8,
    /// 24-bit signed cumulative number of packets lost, sign-extended.
    pub cumulative_lost: i32,
    pub extended_highest_seq: u32,
    /// Interarrival jitter in RTP timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP time of the last SR received (0 if none).
    pub last_sr: u32,
    /// Delay since that SR, in units of 1/65536 s.
    pub delay_since_last_sr: u32,
}

impl<'a> RtcpPacket<'a> {
    /// The reception report blocks of an SR or RR (empty for other types). The parser has
    /// already checked the body is long enough for `count` blocks.
    pub fn report_blocks(&self) -> impl Iterator<Item = ReportBlock> + 'a {
        let start = match self.packet_type {
            PT_SR => 24,
            PT_RR => 4,
            _ => usize::MAX,
        };
        let n = if start == usize::MAX {
            0
        } else {
            self.count as usize
        };
        let body = self.body;
        (0..n).filter_map(move |i| {
            let b = body.get(start + i * 24..start + (i + 1) * 24)?;
            let w = |o: usize| u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
            let lost = w(4) & 0x00ff_ffff;
            Some(ReportBlock {
                ssrc: w(0),
                fraction_lost: b[4],
                // Sign-extend the 24-bit field.
                cumulative_lost: ((lost << 8) as i32) >> 8,
                extended_highest_seq: w(8),
                jitter: w(12),
                last_sr: w(16),
                delay_since_last_sr: w(20),
            })
        })
    }
}

/// Iterator returned by [`parse_compound`].
#[derive(Clone, Debug)]
pub struct CompoundIter<'a> {
    rest: &'a [u8],
    failed: bool,
}

/// Parses an RTCP compound packet from untrusted bytes (e.g. a UDP datagram or an RTSP
/// interleaved frame on the RTCP channel). Yields each packet, or one error after which the
/// iterator ends. Checks (RFC 3550 Appendix A.2): version 2, each length field within the data,
/// padding only on the last packet and within bounds, SR/RR bodies long enough for their report
/// count. Lenient where real clients differ: the first packet need not be SR/RR, and unknown
/// packet types are passed through. Never panics, never allocates.
pub fn parse_compound(data: &[u8]) -> CompoundIter<'_> {
    CompoundIter {
        rest: data,
        failed: false,
    }
}

impl<'a> Iterator for CompoundIter<'a> {
    type Item = Result<RtcpPacket<'a>, RtpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let r = parse_one(self.rest);
        match r {
            Ok((pkt, rest)) => {
                self.rest = rest;
                Some(Ok(pkt))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

fn parse_one(data: &[u8]) -> Result<(RtcpPacket<'_>, &[u8]), RtpError> {
    let hdr = data.get(..4).ok_or(RtpError::BadLength)?;
    if hdr[0] >> 6 != 2 {
        return Err(RtpError::BadVersion);
    }
    let padding = hdr[0] & 0x20 != 0;
    let count = hdr[0] & 0x1f;
    let packet_type = hdr[1];
    let len = (u16::from_be_bytes([hdr[2], hdr[3]]) as usize + 1) * 4;
    let packet = data.get(..len).ok_or(RtpError::BadLength)?;
    let rest = &data[len..]; // len <= data.len(), checked by the `get` above.
    let mut body = &packet[4..];
    if padding {
        // Only the last packet of a compound may be padded (§6.4.1, A.2).
        if !rest.is_empty() {
            return Err(RtpError::BadPadding);
        }
        // body is at least 0 bytes; len >= 4, so the packet's last byte exists.
        let pad = packet[len - 1] as usize;
        if pad == 0 || pad > body.len() {
            return Err(RtpError::BadPadding);
        }
        body = &body[..body.len() - pad];
    }
    let min_body = match packet_type {
        PT_SR => 24 + 24 * count as usize,
        PT_RR => 4 + 24 * count as usize,
        PT_APP => 8,
        PT_SDES | PT_BYE => 4 * count as usize,
        _ => 0,
    };
    if body.len() < min_body {
        return Err(RtpError::BadLength);
    }
    let ssrc = body
        .get(..4)
        .filter(|_| min_body >= 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    Ok((
        RtcpPacket {
            packet_type,
            count,
            ssrc,
            body,
        },
        rest,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_conversion() {
        assert_eq!(ntp_from_unix(Duration::ZERO), 2_208_988_800u64 << 32);
        // Half a second is 0x8000_0000 in the fraction.
        assert_eq!(
            ntp_from_unix(Duration::from_millis(1500)),
            (2_208_988_801u64 << 32) | 0x8000_0000
        );
        // 2036-02-07T06:28:16Z is the NTP era rollover: seconds wrap to 0.
        assert_eq!(ntp_from_unix(Duration::from_secs(2_085_978_496)), 0);
        // 2^-32 s ≈ 0.233 ns: 1 ns → fraction 4 (floor of 4.29).
        assert_eq!(ntp_from_unix(Duration::from_nanos(1)) & 0xffff_ffff, 4);
    }

    #[test]
    fn sender_report_bytes() {
        let mut out = [0xffu8; 64];
        let n = write_sender_report(
            &mut out,
            0x1122_3344,
            0xe8a1_b2c3_8000_0000,
            0x0000_5678,
            10,
            1000,
            "rc",
        )
        .unwrap();
        // SR (28 bytes) + SDES: 4 header + 4 SSRC + [1, 2, 'r', 'c'] + 4 nulls (the item list
        // ends exactly on a word boundary, so a full null word follows) = 44.
        let expect: [u8; 44] = [
            0x80, 200, 0, 6, // V=2, RC=0, SR, length 6
            0x11, 0x22, 0x33, 0x44, // SSRC
            0xe8, 0xa1, 0xb2, 0xc3, 0x80, 0, 0, 0, // NTP
            0, 0, 0x56, 0x78, // RTP ts
            0, 0, 0, 10, // packets
            0, 0, 0x03, 0xe8, // octets
            0x81, 202, 0, 3, // V=2, SC=1, SDES, length 3
            0x11, 0x22, 0x33, 0x44, // chunk SSRC
            1, 2, b'r', b'c', // CNAME item
            0, 0, 0, 0, // end of items + padding
        ];
        assert_eq!(n, 44);
        assert_eq!(out[..n], expect);
        assert_eq!(sender_report_len(2), 44);

        // A 5-byte CNAME: 2 + 5 = 7 → one null octet ends the chunk at 8.
        let n = write_sender_report(&mut out, 1, 0, 0, 0, 0, "abcde").unwrap();
        assert_eq!(n, 28 + 8 + 8);
        assert_eq!(out[28..32], [0x81, 202, 0, 3]);
        assert_eq!(out[36..44], [1, 5, b'a', b'b', b'c', b'd', b'e', 0]);

        // Our own output parses back.
        let pkts: Vec<_> = parse_compound(&out[..n]).collect();
        assert_eq!(pkts.len(), 2);
        assert_eq!(pkts[0].unwrap().packet_type, PT_SR);
        assert_eq!(pkts[1].unwrap().ssrc, Some(1));

        assert_eq!(
            write_sender_report(&mut out[..43], 1, 0, 0, 0, 0, "abcde"),
            Err(RtpError::BufferTooSmall)
        );
        let long = "x".repeat(256);
        assert_eq!(
            write_sender_report(&mut [0u8; 600], 1, 0, 0, 0, 0, &long),
            Err(RtpError::CnameTooLong)
        );
    }

    #[test]
    fn bye_bytes() {
        let mut out = [0u8; 8];
        assert_eq!(write_bye(&mut out, 0x0a0b_0c0d), Ok(8));
        assert_eq!(out, [0x81, 203, 0, 1, 0x0a, 0x0b, 0x0c, 0x0d]);
        assert_eq!(write_bye(&mut out[..7], 1), Err(RtpError::BufferTooSmall));
    }

    /// An RR with one report block, an SDES and a BYE, as a client sends when it tears down.
    fn rr_sdes_bye() -> Vec<u8> {
        let mut v = vec![
            0x81, 201, 0, 7, // RR, RC=1, length 7 (32 bytes)
            0xaa, 0xbb, 0xcc, 0xdd, // reporter SSRC
            0x11, 0x22, 0x33, 0x44, // reportee SSRC
            0x40, 0xff, 0xff, 0xfe, // fraction 64/256, cumulative lost -2
            0x00, 0x01, 0x00, 0x10, // extended highest seq
            0, 0, 0, 20, // jitter
            0x12, 0x34, 0x56, 0x78, // LSR
            0, 1, 0, 0, // DLSR = 1 s
            0x81, 202, 0, 2, // SDES SC=1, length 2
            0xaa, 0xbb, 0xcc, 0xdd, 1, 1, b'x', 0,
        ];
        v.extend_from_slice(&[0x81, 203, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd]); // BYE SC=1
        v
    }

    #[test]
    fn parse_rr_sdes_bye() {
        let data = rr_sdes_bye();
        let pkts: Vec<_> = parse_compound(&data).map(|r| r.unwrap()).collect();
        let summary: Vec<(u8, Option<u32>)> =
            pkts.iter().map(|p| (p.packet_type, p.ssrc)).collect();
        assert_eq!(
            summary,
            vec![
                (PT_RR, Some(0xaabb_ccdd)),
                (PT_SDES, Some(0xaabb_ccdd)),
                (PT_BYE, Some(0xaabb_ccdd))
            ]
        );
        let blocks: Vec<_> = pkts[0].report_blocks().collect();
        assert_eq!(
            blocks,
            vec![ReportBlock {
                ssrc: 0x1122_3344,
                fraction_lost: 0x40,
                cumulative_lost: -2,
                extended_highest_seq: 0x0001_0010,
                jitter: 20,
                last_sr: 0x1234_5678,
                delay_since_last_sr: 0x0001_0000,
            }]
        );
        assert_eq!(pkts[2].report_blocks().count(), 0);
    }

    #[test]
    fn parse_errors() {
        let good = rr_sdes_bye();
        // Version 1.
        let mut bad = good.clone();
        bad[0] = 0x41;
        assert_eq!(
            parse_compound(&bad).collect::<Vec<_>>(),
            vec![Err(RtpError::BadVersion)]
        );
        // Length running past the end: RR fine, then SDES claims 100 words; iteration stops.
        let mut bad = good.clone();
        bad[35] = 100;
        let r: Vec<_> = parse_compound(&bad).collect();
        assert_eq!(r.len(), 2);
        assert!(r[0].is_ok());
        assert_eq!(r[1], Err(RtpError::BadLength));
        // RR claiming 2 report blocks in a body that holds 1.
        let mut bad = good.clone();
        bad[0] = 0x82;
        assert_eq!(parse_compound(&bad).next(), Some(Err(RtpError::BadLength)));
        // Padding on a packet that is not the last.
        let mut bad = good.clone();
        bad[0] |= 0x20;
        assert_eq!(parse_compound(&bad).next(), Some(Err(RtpError::BadPadding)));
        // Valid padding on the last packet: BYE + 4 padding octets (last says 4).
        let mut padded = vec![0xa1, 203, 0, 2, 0, 0, 0, 9, 0, 0, 0, 4];
        let p = parse_compound(&padded).next().unwrap().unwrap();
        assert_eq!((p.ssrc, p.body.len()), (Some(9), 4));
        // Padding count larger than the packet, or zero.
        padded[11] = 12;
        assert_eq!(
            parse_compound(&padded).next(),
            Some(Err(RtpError::BadPadding))
        );
        padded[11] = 0;
        assert_eq!(
            parse_compound(&padded).next(),
            Some(Err(RtpError::BadPadding))
        );
        // BYE with no sources: no SSRC. Truncated header: error.
        let p = parse_compound(&[0x80, 203, 0, 0]).next().unwrap().unwrap();
        assert_eq!(p.ssrc, None);
        assert_eq!(
            parse_compound(&[0x80, 203]).next(),
            Some(Err(RtpError::BadLength))
        );
        assert_eq!(parse_compound(&[]).next(), None);
    }

    #[test]
    fn parser_never_panics_on_random_bytes() {
        // Fuzz-style: random lengths and bytes, plus mutations of a valid compound packet.
        let mut rng = super::super::test_support::Lcg::new(0x7c7c);
        let good = rr_sdes_bye();
        for i in 0..20_000 {
            let data: Vec<u8> = if i % 2 == 0 {
                (0..rng.below(80)).map(|_| rng.next() as u8).collect()
            } else {
                let mut d = good.clone();
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(d.len());
                    d[at] = rng.next() as u8;
                }
                d.truncate(rng.below(d.len() + 1));
                d
            };
            let mut n = 0;
            for r in parse_compound(&data) {
                n += 1;
                if let Ok(p) = r {
                    assert!(p.body.len() + 4 <= data.len());
                    let _ = p.report_blocks().count();
                }
            }
            assert!(n <= data.len() / 4 + 1);
        }
    }
}

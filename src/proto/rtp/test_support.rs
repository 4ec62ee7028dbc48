//! Test-only helpers: a seeded PRNG, frame builders, and reference depacketizers written
//! straight from RFC 6184 / RFC 7798 / RFC 3640 to round-trip the packetizers. They panic on
//! any protocol violation; that is the assertion.

use super::*;

/// Small LCG (Knuth MMIX constants); deterministic, no dependency.
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Self {
        Lcg(seed)
    }
    pub fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
    /// Uniform-ish in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        self.next() as usize % n
    }
}

/// Builds a ring video frame (4-byte big-endian length prefixes).
pub fn avcc(nals: &[&[u8]]) -> Vec<u8> {
    let mut f = Vec::new();
    for n in nals {
        f.extend_from_slice(&(n.len() as u32).to_be_bytes());
        f.extend_from_slice(n);
    }
    f
}

/// Runs the packetizer over a whole frame from a fresh cursor.
pub fn collect(
    p: &RtpPacketizer,
    frame: &[u8],
    rtp_ts: u32,
    st: &mut RtpTrackState,
) -> Result<Vec<Vec<u8>>, RtpError> {
    let mut c = PacketizerCursor::default();
    let mut out = vec![0u8; p.max_packet_len()];
    let mut v = Vec::new();
    while let Some(n) = p.next_packet(frame, rtp_ts, &mut c, st, &mut out)? {
        v.push(out[..n].to_vec());
        assert!(v.len() < 1_000_000, "packetizer does not terminate");
    }
    Ok(v)
}

/// Checks V=2, consecutive (wrapping) sequence numbers, the size bound, one timestamp, and the
/// marker on the last packet only.
pub fn check_sequence(pk: &[Vec<u8>], seq0: u16, max_len: usize) {
    assert!(!pk.is_empty());
    for (i, p) in pk.iter().enumerate() {
        assert!(p.len() <= max_len && p.len() > RTP_HEADER_LEN);
        assert_eq!(p[0], 0x80);
        let seq = u16::from_be_bytes([p[2], p[3]]);
        assert_eq!(seq, seq0.wrapping_add(i as u16));
        assert_eq!(p[4..8], pk[0][4..8]);
        assert_eq!(p[1] & 0x80 != 0, i == pk.len() - 1, "marker on packet {i}");
    }
}

/// RFC 6184 (mode 1) receiver: returns the access unit in ring format.
pub fn depacketize_h264(pk: &[Vec<u8>]) -> Vec<u8> {
    let mut frame = Vec::new();
    let mut fu: Option<Vec<u8>> = None;
    for p in pk {
        let pl = &p[RTP_HEADER_LEN..];
        match pl[0] & 0x1f {
            1..=23 => {
                assert!(fu.is_none());
                frame.extend_from_slice(&avcc(&[pl]));
            }
            24 => {
                assert!(fu.is_none());
                let mut r = &pl[1..];
                let mut n = 0;
                while !r.is_empty() {
                    let len = u16::from_be_bytes([r[0], r[1]]) as usize;
                    frame.extend_from_slice(&avcc(&[&r[2..2 + len]]));
                    r = &r[2 + len..];
                    n += 1;
                }
                assert!(n >= 2, "STAP-A with one NAL");
            }
            28 => {
                let (s, e) = (pl[1] & 0x80 != 0, pl[1] & 0x40 != 0);
                assert!(!(s && e) && pl[1] & 0x20 == 0);
                if s {
                    assert!(fu.is_none());
                    fu = Some(vec![(pl[0] & 0xe0) | (pl[1] & 0x1f)]);
                }
                let buf = fu.as_mut().expect("FU-A without start");
                buf.extend_from_slice(&pl[2..]);
                if e {
                    frame.extend_from_slice(&avcc(&[buf]));
                    fu = None;
                }
            }
            t => panic!("unexpected H.264 payload type {t}"),
        }
    }
    assert!(fu.is_none(), "unterminated FU-A");
    frame
}

/// RFC 7798 (no DONL) receiver: returns the access unit in ring format.
pub fn depacketize_h265(pk: &[Vec<u8>]) -> Vec<u8> {
    let mut frame = Vec::new();
    let mut fu: Option<Vec<u8>> = None;
    for p in pk {
        let pl = &p[RTP_HEADER_LEN..];
        match (pl[0] >> 1) & 0x3f {
            48 => {
                assert!(fu.is_none());
                let mut r = &pl[2..];
                let mut n = 0;
                while !r.is_empty() {
                    let len = u16::from_be_bytes([r[0], r[1]]) as usize;
                    frame.extend_from_slice(&avcc(&[&r[2..2 + len]]));
                    r = &r[2 + len..];
                    n += 1;
                }
                assert!(n >= 2, "AP with one NAL");
            }
            49 => {
                let (s, e) = (pl[2] & 0x80 != 0, pl[2] & 0x40 != 0);
                assert!(!(s && e));
                if s {
                    assert!(fu.is_none());
                    let t = pl[2] & 0x3f;
                    fu = Some(vec![(pl[0] & 0x81) | (t << 1), pl[1]]);
                }
                let buf = fu.as_mut().expect("FU without start");
                buf.extend_from_slice(&pl[3..]);
                if e {
                    frame.extend_from_slice(&avcc(&[buf]));
                    fu = None;
                }
            }
            50.. => panic!("unexpected H.265 payload type"),
            _ => {
                assert!(fu.is_none());
                frame.extend_from_slice(&avcc(&[pl]));
            }
        }
    }
    assert!(fu.is_none(), "unterminated FU");
    frame
}

/// RFC 3640 AAC-hbr receiver for one AU (possibly fragmented).
pub fn depacketize_aac(pk: &[Vec<u8>]) -> Vec<u8> {
    let mut au = Vec::new();
    let mut size = None;
    for p in pk {
        let pl = &p[RTP_HEADER_LEN..];
        assert_eq!(pl[0..2], [0, 16]);
        let h = u16::from_be_bytes([pl[2], pl[3]]);
        assert_eq!(h & 7, 0, "AU-index");
        let s = (h >> 3) as usize;
        assert_eq!(
            *size.get_or_insert(s),
            s,
            "AU-size differs between fragments"
        );
        au.extend_from_slice(&pl[4..]);
    }
    assert_eq!(Some(au.len()), size);
    au
}

/// Random frames of random NAL counts/sizes (headers with real-looking types, never the
/// aggregation/fragmentation types) at random packet sizes, packetized and depacketized.
pub fn round_trip_nal_frames(codec: Codec, seed: u64, iterations: usize) {
    let mut rng = Lcg::new(seed);
    let mut st = RtpTrackState::new(96, 0x5555, 0xfff0);
    for _ in 0..iterations {
        let max_len = MIN_PACKET_LEN + rng.below(1500);
        let p = RtpPacketizer::new(codec, max_len).unwrap();
        let nal_count = 1 + rng.below(8);
        let mut nals = Vec::new();
        for _ in 0..nal_count {
            // Mostly small NALs (parameter sets, SEI), sometimes several packets long.
            let len = match rng.below(4) {
                0 => 2 + rng.below(8),
                1 => 2 + rng.below(200),
                _ => 2 + rng.below(6000),
            };
            let mut n: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            match codec {
                // F=0, random NRI, type 1..=23.
                Codec::H264 => n[0] = (n[0] & 0x60) | (1 + rng.below(23) as u8),
                // F=0, type 0..=40, LayerId 0, TID 1..=7.
                _ => {
                    n[0] = (rng.below(41) as u8) << 1;
                    n[1] = 1 + rng.below(7) as u8;
                }
            }
            nals.push(n);
        }
        let refs: Vec<&[u8]> = nals.iter().map(|n| n.as_slice()).collect();
        let frame = avcc(&refs);
        let seq0 = st.seq;
        let sent0 = st.packets_sent;
        let pk = collect(&p, &frame, rng.next(), &mut st).unwrap();
        check_sequence(&pk, seq0, max_len);
        assert_eq!(st.packets_sent - sent0, pk.len() as u32);
        let back = match codec {
            Codec::H264 => depacketize_h264(&pk),
            _ => depacketize_h265(&pk),
        };
        assert_eq!(back, frame, "max_len {max_len}");
    }
}

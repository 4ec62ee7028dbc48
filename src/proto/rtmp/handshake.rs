//! The RTMP simple handshake, client side (RTMP spec 5.2).
//!
//! Owns: building C0+C1, consuming S0+S1+S2, producing C2 (an echo of S1). Must not generate
//! randomness (the caller passes C1's random bytes) or read the clock (C1's time field is 0, the
//! epoch of this connection's timestamps, which spec 5.2.3 allows).

use super::RtmpError;

/// RTMP version carried in C0/S0 (spec 5.2.2).
pub const RTMP_VERSION: u8 = 3;
/// Size of C1/S1/C2/S2 (spec 5.2.3).
pub const HANDSHAKE_PACKET_BYTES: usize = 1536;
/// Random part of C1: 1536 minus the 4-byte time and 4-byte zero fields.
pub const C1_RANDOM_BYTES: usize = 1528;
/// S0 + S1 + S2.
const SERVER_BYTES: usize = 1 + 2 * HANDSHAKE_PACKET_BYTES;

/// C0 (version 3) + C1 (time = 0, zero = 0, then `random`), spec 5.2.2 / 5.2.3.
pub fn c0c1(random: &[u8; C1_RANDOM_BYTES]) -> [u8; 1 + HANDSHAKE_PACKET_BYTES] {
    let mut out = [0u8; 1 + HANDSHAKE_PACKET_BYTES];
    out[0] = RTMP_VERSION;
    // out[1..5] time = 0, out[5..9] zero = 0 (already zero).
    out[9..].copy_from_slice(random);
    out
}

/// Consumes the server's S0+S1+S2 incrementally.
pub struct ClientHandshake {
    received_bytes: usize,
    s1: [u8; HANDSHAKE_PACKET_BYTES],
    c2_taken: bool,
}

impl Default for ClientHandshake {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientHandshake {
    pub fn new() -> Self {
        ClientHandshake {
            received_bytes: 0,
            s1: [0; HANDSHAKE_PACKET_BYTES],
            c2_taken: false,
        }
    }

    /// Feeds server bytes; returns how many were consumed (the rest belong to the chunk stream).
    pub fn push(&mut self, input: &[u8]) -> Result<usize, RtmpError> {
        let take = input.len().min(SERVER_BYTES - self.received_bytes);
        for (i, &b) in input[..take].iter().enumerate() {
            let at = self.received_bytes + i;
            if at == 0 {
                if b != RTMP_VERSION {
                    return Err(RtmpError::BadHandshakeVersion(b));
                }
            } else if at <= HANDSHAKE_PACKET_BYTES {
                self.s1[at - 1] = b;
            }
            // S2 (the echo of our C1) is not checked: many origins do not echo it faithfully.
        }
        self.received_bytes += take;
        Ok(take)
    }

    /// C2 once S1 is complete (spec 5.2.4: sent after S1 is received), exactly once.
    pub fn take_c2(&mut self) -> Option<&[u8; HANDSHAKE_PACKET_BYTES]> {
        if self.c2_taken || self.received_bytes < 1 + HANDSHAKE_PACKET_BYTES {
            return None;
        }
        self.c2_taken = true;
        Some(&self.s1)
    }

    /// True once S2 has been fully read: the chunk stream starts with the next byte.
    pub fn is_done(&self) -> bool {
        self.received_bytes == SERVER_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c0c1_layout() {
        let mut r = [0u8; C1_RANDOM_BYTES];
        for (i, b) in r.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        let p = c0c1(&r);
        assert_eq!(p.len(), 1537);
        assert_eq!(&p[..9], &[3, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&p[9..], &r[..]);
    }

    #[test]
    fn c2_echoes_s1_and_split_input_works() {
        let mut server = vec![3u8];
        server.extend((0..1536).map(|i| (i * 7 % 256) as u8)); // S1
        server.extend(std::iter::repeat_n(0xEE, 1536)); // S2
        server.extend([0x02, 0xAA]); // first chunk bytes
        let mut hs = ClientHandshake::new();
        let mut consumed = 0;
        let mut got_c2 = false;
        for piece in server.chunks(100) {
            consumed += hs.push(piece).unwrap();
            if consumed >= 1537 && !got_c2 {
                let c2 = *hs.take_c2().expect("S1 complete");
                assert_eq!(&c2[..], &server[1..1537]);
                got_c2 = true;
            } else if consumed < 1537 {
                assert!(hs.take_c2().is_none());
            }
        }
        assert_eq!(consumed, 3073);
        assert!(hs.is_done());
        assert!(hs.take_c2().is_none(), "C2 only once");
    }

    #[test]
    fn bad_version() {
        let mut hs = ClientHandshake::new();
        assert_eq!(hs.push(&[6, 0, 0]), Err(RtmpError::BadHandshakeVersion(6)));
    }
}

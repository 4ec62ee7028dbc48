//! `AdtsSplitter`: an AAC ADTS byte stream (ISO 14496-3 §1.A.2) → raw AAC frames.
//!
//! Owns: finding frames across arbitrary read boundaries, resynchronising on the 12-bit syncword
//! after garbage, and stripping the header. A frame is handed out as soon as its last byte is
//! in, so there is nothing to wait for. No I/O, no clock; bounded buffer.

use crate::media::aac::AdtsHeader;
use crate::media::AudioParams;

/// Counters for logs and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdtsStats {
    pub frames: u64,
    /// Bytes skipped while looking for a syncword.
    pub garbage_bytes: u64,
    /// Frames with more than one raw data block (not carried: RTP/FLV want one per frame).
    pub multi_block_frames: u64,
}

/// Largest ADTS frame: frame_length is 13 bits.
const MAX_FRAME: usize = 8191;

pub struct AdtsSplitter {
    buf: Box<[u8; MAX_FRAME]>,
    len: usize,
    stats: AdtsStats,
}

impl Default for AdtsSplitter {
    fn default() -> Self {
        Self::new()
    }
}

impl AdtsSplitter {
    pub fn new() -> Self {
        AdtsSplitter {
            buf: Box::new([0; MAX_FRAME]),
            len: 0,
            stats: AdtsStats::default(),
        }
    }

    pub fn stats(&self) -> AdtsStats {
        self.stats
    }

    /// Feeds bytes; each complete frame goes to `emit` as (its parameters, raw AAC payload).
    pub fn push(&mut self, mut data: &[u8], emit: &mut dyn FnMut(AudioParams, &[u8])) {
        while !data.is_empty() {
            let n = data.len().min(MAX_FRAME - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&data[..n]);
            self.len += n;
            data = &data[n..];
            self.drain(emit);
        }
    }

    fn drain(&mut self, emit: &mut dyn FnMut(AudioParams, &[u8])) {
        let mut start = 0;
        loop {
            let avail = &self.buf[start..self.len];
            if avail.len() < 7 {
                break;
            }
            match AdtsHeader::parse(avail) {
                Ok(h) => {
                    let frame_len = h.frame_len as usize;
                    if avail.len() < frame_len {
                        break;
                    }
                    if h.raw_data_blocks != 1 {
                        self.stats.multi_block_frames += 1;
                    } else {
                        self.stats.frames += 1;
                        emit(h.to_audio_params(), &avail[h.header_len as usize..frame_len]);
                    }
                    start += frame_len;
                }
                Err(_) => {
                    // Resync: skip to the next byte that could begin a syncword.
                    let skip = avail[1..]
                        .iter()
                        .position(|&b| b == 0xff)
                        .map_or(avail.len(), |p| p + 1);
                    self.stats.garbage_bytes += skip as u64;
                    start += skip;
                }
            }
        }
        self.buf.copy_within(start..self.len, 0);
        self.len -= start;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ADTS header for AAC LC, 44.1 kHz (index 4), stereo, no CRC, `payload` bytes.
    fn adts(payload: &[u8]) -> Vec<u8> {
        let len = payload.len() + 7;
        let mut h = vec![
            0xff,
            0xf1,
            (1 << 6) | (4 << 2),
            (2 << 6) | ((len >> 11) as u8 & 0x3),
            (len >> 3) as u8,
            ((len as u8 & 0x7) << 5) | 0x1f,
            0xfc,
        ];
        h.extend_from_slice(payload);
        h
    }

    #[test]
    fn splits_frames_across_any_read_boundary() {
        let mut stream = vec![0x00, 0x12, 0xff]; // garbage, incl. a lone 0xff
        stream.extend(adts(&[1, 2, 3]));
        stream.extend(adts(&[4; 300]));
        stream.extend(adts(&[5]));
        for chunk in [1usize, 2, 7, 100, 4096] {
            let mut s = AdtsSplitter::new();
            let mut out = Vec::new();
            for c in stream.chunks(chunk) {
                s.push(c, &mut |p, f| {
                    assert_eq!((p.sample_rate, p.channels, p.object_type), (44100, 2, 2));
                    out.push(f.to_vec())
                });
            }
            assert_eq!(out, vec![vec![1, 2, 3], vec![4; 300], vec![5]], "chunk {chunk}");
            assert_eq!(s.stats().garbage_bytes, 3);
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x: u64 = 42;
        let mut s = AdtsSplitter::new();
        let mut buf = [0u8; 300];
        for _ in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = (x % 300) as usize;
            for (i, b) in buf[..n].iter_mut().enumerate() {
                *b = if i % 5 == 0 { 0xff } else { (x >> (i % 56)) as u8 };
            }
            s.push(&buf[..n], &mut |_, f| assert!(f.len() < MAX_FRAME));
        }
    }
}

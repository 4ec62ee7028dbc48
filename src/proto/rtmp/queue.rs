//! Outgoing byte queues of the RTMP core: a fixed-capacity ring of already-chunked media
//! messages, and a small queue for handshake/control/command bytes.
//!
//! Owns: bounded storage between `send_*`/`handle_*` and `poll_transmit`, and message
//! boundaries (so control chunks are never spliced into the middle of a media chunk). Must not
//! grow: both queues allocate once at construction; callers check free space before writing.

use super::chunk::ChunkSink;

/// Bytes of the length prefix stored in front of each media record.
pub const RECORD_OVERHEAD_BYTES: usize = 4;

/// A byte ring holding whole chunked messages (records), each behind a 4-byte length prefix.
pub struct MediaQueue {
    buf: Vec<u8>,
    head: usize,
    len: usize,
    /// Bytes of the record being transmitted that are still in the ring.
    partial_left: usize,
    /// Bytes promised by `begin_record` and not yet `put`.
    reserved_left: usize,
}

impl MediaQueue {
    /// Allocates the ring once; `capacity_bytes` is part of the daemon's declared media memory.
    pub fn new(capacity_bytes: usize) -> Self {
        MediaQueue {
            buf: vec![0; capacity_bytes],
            head: 0,
            len: 0,
            partial_left: 0,
            reserved_left: 0,
        }
    }

    pub fn capacity_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Bytes waiting in the ring (including record prefixes).
    pub fn queued_bytes(&self) -> usize {
        self.len
    }

    pub fn free_bytes(&self) -> usize {
        self.buf.len() - self.len
    }

    /// True while a record has been partly handed to the socket.
    pub fn in_record(&self) -> bool {
        self.partial_left > 0
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Drops everything queued (e.g. after a failure).
    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
        self.partial_left = 0;
        self.reserved_left = 0;
    }

    fn write_raw(&mut self, bytes: &[u8]) {
        let cap = self.buf.len();
        let n = bytes.len().min(cap - self.len);
        let tail = (self.head + self.len) % cap.max(1);
        let first = n.min(cap - tail);
        self.buf[tail..tail + first].copy_from_slice(&bytes[..first]);
        self.buf[..n - first].copy_from_slice(&bytes[first..n]);
        self.len += n;
    }

    fn read_raw(&mut self, out: &mut [u8]) -> usize {
        let cap = self.buf.len();
        let n = out.len().min(self.len);
        let first = n.min(cap - self.head);
        out[..first].copy_from_slice(&self.buf[self.head..self.head + first]);
        out[first..n].copy_from_slice(&self.buf[..n - first]);
        self.head = (self.head + n) % cap.max(1);
        self.len -= n;
        n
    }

    /// Starts a record of `len_bytes`; false (and nothing written) if it does not fit. Exactly
    /// `len_bytes` must then be `put`.
    pub fn begin_record(&mut self, len_bytes: usize) -> bool {
        debug_assert_eq!(self.reserved_left, 0, "previous record incomplete");
        if len_bytes + RECORD_OVERHEAD_BYTES > self.free_bytes() || len_bytes > u32::MAX as usize {
            return false;
        }
        self.write_raw(&(len_bytes as u32).to_be_bytes());
        self.reserved_left = len_bytes;
        true
    }

    /// Copies out bytes of at most one record (continuing the current one, else starting the
    /// next); returns 0 when the ring is empty or `out` is.
    pub fn read_record(&mut self, out: &mut [u8]) -> usize {
        if self.partial_left == 0 {
            if self.len < RECORD_OVERHEAD_BYTES || out.is_empty() {
                return 0;
            }
            let mut p = [0u8; RECORD_OVERHEAD_BYTES];
            self.read_raw(&mut p);
            self.partial_left = u32::from_be_bytes(p) as usize;
        }
        let want = self.partial_left.min(out.len());
        let n = self.read_raw(&mut out[..want]);
        self.partial_left -= n;
        n
    }
}

impl ChunkSink for MediaQueue {
    fn put(&mut self, bytes: &[u8]) {
        debug_assert!(bytes.len() <= self.reserved_left, "record overrun");
        let n = bytes.len().min(self.reserved_left);
        self.write_raw(&bytes[..n]);
        self.reserved_left -= n;
    }
}

/// Handshake, protocol-control and command bytes, sent before any queued media record.
pub struct ControlQueue {
    buf: Vec<u8>,
    read_pos: usize,
    capacity_bytes: usize,
}

impl ControlQueue {
    pub fn new(capacity_bytes: usize) -> Self {
        ControlQueue {
            buf: Vec::with_capacity(capacity_bytes),
            read_pos: 0,
            capacity_bytes,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.read_pos == self.buf.len()
    }

    /// Makes room for `len_bytes` more (compacting in place); false if they cannot fit.
    pub fn reserve(&mut self, len_bytes: usize) -> bool {
        if self.read_pos > 0 {
            self.buf.drain(..self.read_pos);
            self.read_pos = 0;
        }
        self.buf.len() + len_bytes <= self.capacity_bytes
    }

    pub fn read(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.buf.len() - self.read_pos);
        out[..n].copy_from_slice(&self.buf[self.read_pos..self.read_pos + n]);
        self.read_pos += n;
        if self.is_empty() {
            self.buf.clear();
            self.read_pos = 0;
        }
        n
    }
}

impl ChunkSink for ControlQueue {
    fn put(&mut self, bytes: &[u8]) {
        // Callers `reserve` first; the cap keeps a misbehaving caller from growing the Vec.
        let n = bytes.len().min(self.capacity_bytes - self.buf.len());
        self.buf.extend_from_slice(&bytes[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_wraps_and_keeps_record_boundaries() {
        let mut q = MediaQueue::new(20);
        assert!(q.begin_record(6));
        q.put(&[1, 2, 3]);
        q.put(&[4, 5, 6]);
        assert!(
            !q.begin_record(11),
            "4+6 used, 4+11 does not fit in the 10 left"
        );
        assert!(q.begin_record(6));
        q.put(&[7, 8, 9, 10, 11, 12]);
        let mut out = [0u8; 4];
        assert_eq!(q.read_record(&mut out), 4);
        assert_eq!(out, [1, 2, 3, 4]);
        assert!(q.in_record());
        assert_eq!(q.read_record(&mut out), 2, "stops at the record end");
        assert!(!q.in_record());
        assert!(!q.begin_record(7), "10 bytes free");
        assert!(q.begin_record(6), "wraps around the end of the ring");
        q.put(&[20, 21, 22, 23, 24, 25]);
        let mut big = [0u8; 32];
        assert_eq!(q.read_record(&mut big), 6);
        assert_eq!(&big[..6], &[7, 8, 9, 10, 11, 12]);
        assert_eq!(q.read_record(&mut big), 6);
        assert_eq!(&big[..6], &[20, 21, 22, 23, 24, 25]);
        assert!(q.is_empty());
        assert_eq!(q.read_record(&mut big), 0);
    }

    #[test]
    fn control_queue_is_capped() {
        let mut c = ControlQueue::new(8);
        assert!(c.reserve(8));
        c.put(&[1; 8]);
        assert!(!c.reserve(1));
        let mut out = [0u8; 5];
        assert_eq!(c.read(&mut out), 5);
        assert!(c.reserve(5), "compaction frees the consumed prefix");
        c.put(&[2; 9]);
        let mut all = [0u8; 16];
        assert_eq!(c.read(&mut all), 8);
        assert_eq!(&all[..8], &[1, 1, 1, 2, 2, 2, 2, 2]);
    }
}

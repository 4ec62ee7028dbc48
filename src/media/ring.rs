//! `MediaRing`: a stream's frame memory and fan-out point, allocated once.
//!
//! Owns: the byte arena where every frame of one stream lives (video and audio interleaved in
//! arrival order), and the descriptor ring that indexes it. Ingest pushes complete frames;
//! every consumer (RTSP viewer, HLS segmenter, RTMP pusher) is just a [`RingCursor`] — a frame
//! sequence number — so adding a viewer costs no media memory and a slow viewer cannot grow
//! anything: when the writer needs the space, the oldest frames are evicted, and a cursor that
//! points at an evicted frame learns it (`get` returns `Lookup::Evicted`) and re-enters at a
//! keyframe.
//!
//! Invariants: `tail <= head`; frames `tail..head` are valid and lie in the arena in circular
//! order; a frame is stored contiguously (never split at the wrap). No allocation after `new`.
//! Single owner, no locks: the daemon drives a stream's ring and its consumers from one thread.

use super::{FrameMeta, Track};

/// A frame handed out by the ring; borrows the arena.
#[derive(Clone, Copy, Debug)]
pub struct FrameView<'a> {
    pub seq: u64,
    pub meta: FrameMeta,
    pub data: &'a [u8],
}

/// Result of looking a sequence number up.
#[derive(Debug)]
pub enum Lookup<'a> {
    Frame(FrameView<'a>),
    /// Not written yet: the consumer is caught up.
    NotYet,
    /// Overwritten: the consumer fell behind by more than the ring holds.
    Evicted,
}

/// Why a frame was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// Larger than the ring's per-frame limit (a quarter of the arena): dropped and counted.
    TooLarge { len_bytes: usize, max_bytes: usize },
}

/// Counters, for logs and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingStats {
    pub frames_in: u64,
    pub bytes_in: u64,
    pub dropped_too_large: u64,
    pub evicted: u64,
}

/// A consumer's position: the sequence number of the next frame it wants.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingCursor {
    pub next_seq: u64,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    meta: FrameMeta,
    offset: u32,
    len: u32,
    /// `bytes_in` before this frame: lag in bytes is `bytes_in - bytes_before`.
    bytes_before: u64,
}

const EMPTY_SLOT: Slot = Slot {
    meta: FrameMeta {
        track: Track::Video,
        pts: 0,
        dts: 0,
        keyframe: false,
    },
    offset: 0,
    len: 0,
    bytes_before: 0,
};

pub struct MediaRing {
    arena: Box<[u8]>,
    slots: Box<[Slot]>,
    head: u64,
    tail: u64,
    /// Where the next frame goes in the arena.
    write_pos: usize,
    last_video_keyframe: Option<u64>,
    stats: RingStats,
}

impl MediaRing {
    /// Allocates the arena (`capacity_bytes`) and `slot_count` descriptors: the ring's only
    /// allocation. Memory is `capacity_bytes + slot_count * size_of::<Slot>()` (see
    /// [`MediaRing::memory_bytes`]).
    pub fn new(capacity_bytes: usize, slot_count: usize) -> Self {
        assert!(capacity_bytes >= 64 && capacity_bytes <= u32::MAX as usize);
        assert!(slot_count >= 16);
        MediaRing {
            arena: vec![0u8; capacity_bytes].into_boxed_slice(),
            slots: vec![EMPTY_SLOT; slot_count].into_boxed_slice(),
            head: 0,
            tail: 0,
            write_pos: 0,
            last_video_keyframe: None,
            stats: RingStats::default(),
        }
    }

    /// Bytes this ring reserves, for the daemon's memory budget.
    pub fn memory_bytes(capacity_bytes: usize, slot_count: usize) -> usize {
        capacity_bytes + slot_count * std::mem::size_of::<Slot>()
    }

    /// The largest frame accepted: a quarter of the arena, so a GOP cache survives one.
    pub fn max_frame_bytes(&self) -> usize {
        self.arena.len() / 4
    }

    /// Sequence number the next pushed frame will get.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// Oldest frame still held.
    pub fn tail(&self) -> u64 {
        self.tail
    }

    pub fn stats(&self) -> RingStats {
        self.stats
    }

    /// The newest video keyframe still held, if any: where a new viewer starts.
    pub fn last_video_keyframe(&self) -> Option<u64> {
        self.last_video_keyframe.filter(|&s| s >= self.tail)
    }

    /// Stores a copy of `data` as the newest frame, evicting the oldest as needed.
    pub fn push(&mut self, meta: FrameMeta, data: &[u8]) -> Result<u64, RingError> {
        let len = data.len();
        if len > self.max_frame_bytes() {
            self.stats.dropped_too_large += 1;
            return Err(RingError::TooLarge {
                len_bytes: len,
                max_bytes: self.max_frame_bytes(),
            });
        }
        let cap = self.arena.len();
        // Claim [start, start+len); when it doesn't fit before the end, the tail gap
        // [write_pos, cap) is given up too (its frames are the oldest), and we start at 0.
        let (start, wrapped) = if self.write_pos + len > cap {
            (0, true)
        } else {
            (self.write_pos, false)
        };
        let nslots = self.slots.len() as u64;
        while self.tail < self.head {
            let s = self.slots[(self.tail % nslots) as usize];
            let (a, b) = (s.offset as usize, s.offset as usize + s.len as usize);
            let overlaps_new = a < start + len && start < b;
            let in_given_up_gap = wrapped && b > self.write_pos;
            let slots_full = self.head - self.tail >= nslots;
            if overlaps_new || in_given_up_gap || slots_full {
                self.tail += 1;
                self.stats.evicted += 1;
            } else {
                break;
            }
        }
        self.arena[start..start + len].copy_from_slice(data);
        let seq = self.head;
        self.slots[(seq % nslots) as usize] = Slot {
            meta,
            offset: start as u32,
            len: len as u32,
            bytes_before: self.stats.bytes_in,
        };
        self.head += 1;
        self.write_pos = start + len;
        self.stats.frames_in += 1;
        self.stats.bytes_in += len as u64;
        if meta.track == Track::Video && meta.keyframe {
            self.last_video_keyframe = Some(seq);
        }
        Ok(seq)
    }

    /// Looks a frame up by sequence number.
    pub fn get(&self, seq: u64) -> Lookup<'_> {
        if seq >= self.head {
            return Lookup::NotYet;
        }
        if seq < self.tail {
            return Lookup::Evicted;
        }
        let s = &self.slots[(seq % self.slots.len() as u64) as usize];
        Lookup::Frame(FrameView {
            seq,
            meta: s.meta,
            data: &self.arena[s.offset as usize..(s.offset + s.len) as usize],
        })
    }

    /// How many bytes were pushed after frame `seq` began (0 when caught up or evicted).
    pub fn lag_bytes(&self, seq: u64) -> u64 {
        if seq < self.tail || seq >= self.head {
            return 0;
        }
        let s = &self.slots[(seq % self.slots.len() as u64) as usize];
        self.stats.bytes_in - s.bytes_before
    }

    /// The first video keyframe at or after `seq`, if one is held.
    pub fn next_video_keyframe(&self, seq: u64) -> Option<u64> {
        (seq.max(self.tail)..self.head).find(|&q| {
            let s = &self.slots[(q % self.slots.len() as u64) as usize];
            s.meta.track == Track::Video && s.meta.keyframe
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(track: Track, pts: u64, keyframe: bool) -> FrameMeta {
        FrameMeta {
            track,
            pts,
            dts: pts,
            keyframe,
        }
    }

    fn frame(ring: &MediaRing, seq: u64) -> Vec<u8> {
        match ring.get(seq) {
            Lookup::Frame(f) => f.data.to_vec(),
            other => panic!("seq {seq}: {other:?}"),
        }
    }

    #[test]
    fn push_and_read_back() {
        let mut r = MediaRing::new(1024, 16);
        assert!(matches!(r.get(0), Lookup::NotYet));
        assert_eq!(r.push(meta(Track::Video, 0, true), b"abc").unwrap(), 0);
        assert_eq!(r.push(meta(Track::Audio, 5, true), b"de").unwrap(), 1);
        assert_eq!(frame(&r, 0), b"abc");
        assert_eq!(frame(&r, 1), b"de");
        assert_eq!(r.last_video_keyframe(), Some(0));
        assert_eq!(r.lag_bytes(0), 5);
        assert_eq!(r.lag_bytes(1), 2);
    }

    #[test]
    fn wrap_evicts_oldest_first_and_frames_stay_contiguous() {
        let mut r = MediaRing::new(1024, 64);
        // 200-byte frames: 5 fit (1000 bytes), the 6th wraps to 0 and must evict frame 0
        // (overlap) — and nothing newer.
        for i in 0..6u8 {
            r.push(meta(Track::Video, i as u64, i == 0), &[i; 200])
                .unwrap();
        }
        assert_eq!(r.tail(), 1);
        assert!(matches!(r.get(0), Lookup::Evicted));
        for i in 1..6u8 {
            assert_eq!(frame(&r, i as u64), vec![i; 200]);
        }
        // The keyframe was evicted, so there is no GOP start any more.
        assert_eq!(r.last_video_keyframe(), None);
        // Frame 6 lands at 200..400 evicting frame 1; frames 2..=5 (400..1000) survive.
        r.push(meta(Track::Video, 6, true), &[6; 200]).unwrap();
        assert_eq!(r.tail(), 2);
        // A frame that doesn't fit before the end gives up the tail gap: the frames living
        // there (the oldest) go, newer ones at the start stay.
        let mut r = MediaRing::new(1000, 64);
        for i in 0..4u8 {
            r.push(meta(Track::Video, i as u64, false), &[i; 240])
                .unwrap(); // 0..960
        }
        r.push(meta(Track::Video, 4, false), &[4; 100]).unwrap(); // wraps: 0..100
        assert_eq!(r.tail(), 1); // frame 0 (0..240) overlapped
        r.push(meta(Track::Video, 5, false), &[5; 200]).unwrap(); // 100..300: evicts frame 1
        assert_eq!(r.tail(), 2);
        r.push(meta(Track::Video, 6, false), &[6; 240]).unwrap(); // 300..540: evicts 2
        assert_eq!(r.tail(), 3);
        r.push(meta(Track::Video, 7, false), &[7; 240]).unwrap(); // 540..780: evicts 3 (720..960)
        assert_eq!(r.tail(), 4);
        r.push(meta(Track::Video, 8, false), &[8; 240]).unwrap(); // 780..1020 > cap: wraps
                                                                  // Frames 4 (0..100) and 5 (100..300) overlap [0,240); 6 and 7 survive.
        assert_eq!(r.tail(), 6);
        for s in 6..=8 {
            assert_eq!(frame(&r, s), vec![s as u8; 240]);
        }
    }

    #[test]
    fn slot_count_bounds_frames() {
        let mut r = MediaRing::new(4096, 16);
        for i in 0..40u64 {
            r.push(meta(Track::Audio, i, true), &[1; 4]).unwrap();
        }
        assert_eq!(r.head() - r.tail(), 16);
        assert_eq!(r.stats().evicted, 24);
    }

    #[test]
    fn too_large_is_dropped_and_counted() {
        let mut r = MediaRing::new(4096, 16);
        let e = r.push(meta(Track::Video, 0, true), &[0; 1025]).unwrap_err();
        assert_eq!(
            e,
            RingError::TooLarge {
                len_bytes: 1025,
                max_bytes: 1024
            }
        );
        assert_eq!(r.stats().dropped_too_large, 1);
        assert_eq!(r.head(), 0);
    }

    #[test]
    fn next_keyframe_search() {
        let mut r = MediaRing::new(4096, 32);
        for i in 0..10u64 {
            r.push(meta(Track::Video, i, i % 4 == 0), &[0; 10]).unwrap();
            r.push(meta(Track::Audio, i, true), &[0; 3]).unwrap();
        }
        // Video keyframes at seq 0, 8, 16 (video frames are the even seqs).
        assert_eq!(r.next_video_keyframe(1), Some(8));
        assert_eq!(r.next_video_keyframe(9), Some(16));
        assert_eq!(r.next_video_keyframe(17), None);
        assert_eq!(r.last_video_keyframe(), Some(16));
    }

    /// Random pushes of random sizes: every held frame reads back exactly as written.
    #[test]
    fn random_sizes_read_back() {
        let mut r = MediaRing::new(10_000, 64);
        let mut x: u64 = 0x1234_5678;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..5000u64 {
            let len = (rnd() % 2600) as usize;
            let byte = (i % 251) as u8;
            let res = r.push(meta(Track::Video, i, false), &vec![byte; len]);
            assert_eq!(res.is_err(), len > 2500);
            for s in r.tail()..r.head() {
                let f = frame(&r, s);
                assert!(f.iter().all(|&b| b == f.first().copied().unwrap_or(0)));
            }
            assert!(r.head() - r.tail() <= 64);
        }
    }
}

//! `StreamHub`: one stream's ring, its current codec parameters, and the consumers that read it.
//!
//! Owns: publishing a frame (store it in the ring, then give every consumer a chance to send
//! it, synchronously, in the same turn) and the consumer registry, whose capacity is fixed at
//! start. Consumers (RTSP viewers, the HLS segmenter, RTMP pushers) implement [`Consumer`]:
//! they keep a [`RingCursor`](super::ring::RingCursor) and never block — a consumer that cannot
//! take more leaves its cursor where it is and is called again later by its own shell.
//!
//! No sockets here, no clock reads: `now_ms` is passed in. The hub lives in a [`SharedHub`]
//! (`Arc<Mutex<_>>`): a stream's ingest threads publish into it, and the frame reaches every
//! consumer on that same thread, in the same turn — the per-frame path never touches the async
//! runtime (whose reactor allocates per I/O event). Lock order: hub, then consumer.

use super::ring::{MediaRing, RingError};
use super::{AudioParams, FrameMeta, Track, VideoParams};
use std::sync::{Arc, Mutex};

/// Something that reads a stream's frames. Called on the publishing (ingest) thread.
pub trait Consumer: Send {
    /// A new frame is in `hub.ring`: send what you can without blocking.
    fn on_frame(&mut self, hub: &StreamView<'_>, now_ms: u64);
    /// The consumer is finished (disconnected, failed): the hub drops it.
    fn is_closed(&self) -> bool;
}

/// What a consumer sees of the hub while it is being called.
pub struct StreamView<'a> {
    pub name: &'a str,
    pub ring: &'a MediaRing,
    pub video: Option<&'a VideoParams>,
    pub audio: Option<&'a AudioParams>,
    /// Bumped whenever codec parameters change or the source restarted (consumers re-send
    /// headers, HLS marks a discontinuity).
    pub params_generation: u32,
}

/// Counters for logs and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HubStats {
    pub video_frames: u64,
    pub audio_frames: u64,
    pub dropped_too_large: u64,
    pub consumers_refused: u64,
}

pub type ConsumerRef = Arc<Mutex<dyn Consumer>>;

/// A hub shared between its ingest threads and the control plane.
pub type SharedHub = Arc<Mutex<StreamHub>>;

/// Locks a mutex, recovering the data if a thread panicked while holding it: media state is
/// always left consistent between frames, so a poisoned lock is not a reason to stop serving.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct StreamHub {
    pub name: String,
    pub ring: MediaRing,
    pub video: Option<VideoParams>,
    pub audio: Option<AudioParams>,
    pub params_generation: u32,
    /// Wall-clock-free liveness: `now_ms` of the last frame.
    pub last_frame_ms: Option<u64>,
    /// Times the source driver restarted its input (for the web page and metrics).
    pub source_restarts: u64,
    consumers: Vec<ConsumerRef>,
    max_consumers: usize,
    stats: HubStats,
}

impl StreamHub {
    pub fn new(name: &str, ring: MediaRing, max_consumers: usize) -> Self {
        StreamHub {
            name: name.to_string(),
            ring,
            video: None,
            audio: None,
            params_generation: 0,
            last_frame_ms: None,
            source_restarts: 0,
            consumers: Vec::with_capacity(max_consumers),
            max_consumers,
            stats: HubStats::default(),
        }
    }

    pub fn stats(&self) -> HubStats {
        self.stats
    }

    pub fn view(&self) -> StreamView<'_> {
        StreamView {
            name: &self.name,
            ring: &self.ring,
            video: self.video.as_ref(),
            audio: self.audio.as_ref(),
            params_generation: self.params_generation,
        }
    }

    /// Ready for viewers: video parameters known and a keyframe held (or audio-only).
    pub fn is_live(&self) -> bool {
        match &self.video {
            Some(_) => self.ring.last_video_keyframe().is_some(),
            None => self.audio.is_some() && self.ring.head() > 0,
        }
    }

    pub fn consumer_count(&self) -> usize {
        self.consumers.len()
    }

    /// Registers a consumer; refused (false) when the hub is at capacity.
    pub fn add_consumer(&mut self, c: ConsumerRef) -> bool {
        self.consumers.retain(|c| !lock(c).is_closed());
        if self.consumers.len() >= self.max_consumers {
            self.stats.consumers_refused += 1;
            return false;
        }
        self.consumers.push(c);
        true
    }

    pub fn remove_consumer(&mut self, c: &ConsumerRef) {
        self.consumers.retain(|x| !Arc::ptr_eq(x, c));
    }

    pub fn set_video_params(&mut self, p: VideoParams) {
        if self.video.as_ref() != Some(&p) {
            self.video = Some(p);
            self.params_generation += 1;
        }
    }

    /// The source restarted (encoder process, connection): counted like a parameter change,
    /// so consumers that care (HLS marks a discontinuity) see it in `params_generation`.
    pub fn source_restarted(&mut self) {
        self.params_generation += 1;
        self.source_restarts += 1;
    }

    pub fn set_audio_params(&mut self, p: AudioParams) {
        if self.audio != Some(p) {
            self.audio = Some(p);
            self.params_generation += 1;
        }
    }

    /// Stores a frame and lets every consumer send it. A frame too large for the ring is
    /// dropped and counted; consumers are not called.
    pub fn publish(&mut self, meta: FrameMeta, data: &[u8], now_ms: u64) -> Result<(), RingError> {
        if let Err(e) = self.ring.push(meta, data) {
            self.stats.dropped_too_large += 1;
            return Err(e);
        }
        match meta.track {
            Track::Video => self.stats.video_frames += 1,
            Track::Audio => self.stats.audio_frames += 1,
        }
        self.last_frame_ms = Some(now_ms);
        let view = StreamView {
            name: &self.name,
            ring: &self.ring,
            video: self.video.as_ref(),
            audio: self.audio.as_ref(),
            params_generation: self.params_generation,
        };
        let mut any_closed = false;
        for c in &self.consumers {
            let mut c = lock(c);
            c.on_frame(&view, now_ms);
            any_closed |= c.is_closed();
        }
        if any_closed {
            self.consumers.retain(|c| !lock(c).is_closed());
        }
        Ok(())
    }
}

/// A consumer's read position plus the policy for falling behind: a consumer that lags more
/// than `max_lag_bytes`, or whose next frame was evicted, skips to the newest keyframe (or
/// waits for the next one). Memory is the ring's; the "queue" of a consumer is just the span
/// between its cursor and the ring's head, so it is bounded by construction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameCursor {
    next_seq: u64,
    wants: [bool; 2],
    waiting_for_key: bool,
    max_lag_bytes: u64,
    /// Frames skipped by the lag policy (not counting tracks the consumer didn't ask for).
    pub skipped_frames: u64,
    /// Times the consumer had to re-enter at a keyframe.
    pub resyncs: u64,
}

impl FrameCursor {
    /// Starts at the newest video keyframe held (the GOP cache), so a new viewer gets a
    /// picture at once; audio-only consumers start at the next frame.
    pub fn start(ring: &MediaRing, wants: [bool; 2], max_lag_bytes: u64) -> Self {
        let wants_video = wants[Track::Video.index()];
        let gop_start = ring.last_video_keyframe().filter(|_| wants_video);
        FrameCursor {
            next_seq: gop_start.unwrap_or(ring.head()),
            wants,
            waiting_for_key: wants_video && gop_start.is_none(),
            max_lag_bytes,
            skipped_frames: 0,
            resyncs: 0,
        }
    }

    /// Sequence number of the next frame [`FrameCursor::next`] will consider.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    fn jump_to_keyframe(&mut self, ring: &MediaRing) {
        if !self.wants[Track::Video.index()] {
            self.next_seq = self.next_seq.max(ring.tail());
            return;
        }
        match ring.last_video_keyframe() {
            Some(k) if k >= self.next_seq || self.next_seq < ring.tail() => {
                self.skipped_frames += k.saturating_sub(self.next_seq);
                self.next_seq = k;
                self.waiting_for_key = false;
            }
            _ => {
                self.waiting_for_key = true;
                self.next_seq = self.next_seq.max(ring.tail());
            }
        }
    }

    /// The frame (at `seq`) being sent was evicted before it was finished, or the consumer
    /// otherwise lost its place: re-enter at a keyframe.
    pub fn resync(&mut self, ring: &MediaRing) {
        self.resyncs += 1;
        self.waiting_for_key = self.wants[Track::Video.index()];
        self.jump_to_keyframe(ring);
    }

    /// The next frame to send, or None when caught up. Skips tracks not wanted, applies the
    /// lag policy, and holds video back until a keyframe after a resync.
    pub fn next<'a>(&mut self, ring: &'a MediaRing) -> Option<super::ring::FrameView<'a>> {
        use super::ring::Lookup;
        loop {
            let f = match ring.get(self.next_seq) {
                Lookup::NotYet => return None,
                Lookup::Evicted => {
                    self.resync(ring);
                    continue;
                }
                Lookup::Frame(f) => f,
            };
            let t = f.meta.track;
            if !self.wants[t.index()] {
                self.next_seq += 1;
                continue;
            }
            if ring.lag_bytes(self.next_seq) > self.max_lag_bytes {
                self.resync(ring);
                if ring.lag_bytes(self.next_seq) > self.max_lag_bytes {
                    // Even the newest keyframe is too far back: wait for the next one.
                    self.waiting_for_key = self.wants[Track::Video.index()];
                    self.skipped_frames += ring.head() - self.next_seq;
                    self.next_seq = ring.head();
                    return None;
                }
                continue;
            }
            if t == Track::Video && self.waiting_for_key {
                if !f.meta.keyframe {
                    self.skipped_frames += 1;
                    self.next_seq += 1;
                    continue;
                }
                self.waiting_for_key = false;
            }
            self.next_seq += 1;
            return Some(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Recorder {
        cursor: u64,
        got: Vec<(u64, usize)>,
        closed_after: usize,
    }

    impl Consumer for Recorder {
        fn on_frame(&mut self, hub: &StreamView<'_>, _now_ms: u64) {
            while let super::super::ring::Lookup::Frame(f) = hub.ring.get(self.cursor) {
                self.got.push((f.seq, f.data.len()));
                self.cursor += 1;
            }
        }
        fn is_closed(&self) -> bool {
            self.got.len() >= self.closed_after
        }
    }

    fn meta(keyframe: bool) -> FrameMeta {
        FrameMeta {
            track: Track::Video,
            pts: 0,
            dts: 0,
            keyframe,
        }
    }

    #[test]
    fn publish_reaches_consumers_and_closed_ones_leave() {
        let mut hub = StreamHub::new("live", MediaRing::new(4096, 16), 2);
        let a: Arc<Mutex<Recorder>> = Arc::new(Mutex::new(Recorder {
            cursor: 0,
            got: vec![],
            closed_after: 100,
        }));
        let b: Arc<Mutex<Recorder>> = Arc::new(Mutex::new(Recorder {
            cursor: 0,
            got: vec![],
            closed_after: 2,
        }));
        assert!(hub.add_consumer(a.clone()));
        assert!(hub.add_consumer(b.clone()));
        let c: ConsumerRef = Arc::new(Mutex::new(Recorder {
            cursor: 0,
            got: vec![],
            closed_after: 1,
        }));
        assert!(!hub.add_consumer(c), "capacity is 2");
        for i in 0..3 {
            hub.publish(meta(i == 0), &[0; 10], i).unwrap();
        }
        assert_eq!(lock(&a).got, vec![(0, 10), (1, 10), (2, 10)]);
        assert_eq!(lock(&b).got, vec![(0, 10), (1, 10)]);
        assert_eq!(hub.consumer_count(), 1);
        assert!(hub.publish(meta(false), &[0; 2000], 9).is_err());
        assert_eq!(hub.stats().dropped_too_large, 1);
    }

    fn vmeta(pts: u64, keyframe: bool) -> FrameMeta {
        FrameMeta {
            track: Track::Video,
            pts,
            dts: pts,
            keyframe,
        }
    }

    fn drain(c: &mut FrameCursor, ring: &MediaRing) -> Vec<u64> {
        std::iter::from_fn(|| c.next(ring).map(|f| f.seq)).collect()
    }

    #[test]
    fn cursor_starts_at_gop_and_skips_unwanted_tracks() {
        let mut ring = MediaRing::new(64 * 1024, 64);
        for i in 0..10u64 {
            ring.push(vmeta(i, i % 4 == 0), &[0; 100]).unwrap();
            ring.push(
                FrameMeta {
                    track: Track::Audio,
                    pts: i,
                    dts: i,
                    keyframe: true,
                },
                &[0; 10],
            )
            .unwrap();
        }
        // Video keyframes: i = 0, 4, 8 → seq 0, 8, 16.
        let mut both = FrameCursor::start(&ring, [true, true], u64::MAX);
        assert_eq!(drain(&mut both, &ring), vec![16, 17, 18, 19]);
        let mut video = FrameCursor::start(&ring, [true, false], u64::MAX);
        assert_eq!(drain(&mut video, &ring), vec![16, 18]);
        let mut audio = FrameCursor::start(&ring, [false, true], u64::MAX);
        assert_eq!(drain(&mut audio, &ring), Vec::<u64>::new());
        ring.push(vmeta(10, false), &[0; 100]).unwrap();
        assert_eq!(drain(&mut both, &ring), vec![20]);
        assert_eq!(drain(&mut video, &ring), vec![20]);
    }

    #[test]
    fn laggard_reenters_at_keyframe_and_evicted_one_waits() {
        let mut ring = MediaRing::new(64 * 1024, 256);
        ring.push(vmeta(0, true), &[0; 1000]).unwrap();
        let mut c = FrameCursor::start(&ring, [true, false], 3000);
        assert_eq!(drain(&mut c, &ring), vec![0]);
        // Falls 5 frames behind, with a keyframe at seq 3.
        for i in 1..6u64 {
            ring.push(vmeta(i, i == 3), &[0; 1000]).unwrap();
        }
        assert_eq!(drain(&mut c, &ring), vec![3, 4, 5]);
        assert_eq!((c.skipped_frames, c.resyncs), (2, 1));
        // Evicted entirely (ring wraps many times) with no keyframe held: waits for one.
        for i in 6..200u64 {
            ring.push(vmeta(i, false), &[0; 1000]).unwrap();
        }
        assert_eq!(drain(&mut c, &ring), Vec::<u64>::new());
        ring.push(vmeta(200, false), &[0; 1000]).unwrap();
        ring.push(vmeta(201, true), &[0; 1000]).unwrap();
        ring.push(vmeta(202, false), &[0; 1000]).unwrap();
        assert_eq!(drain(&mut c, &ring), vec![201, 202]);
    }

    #[test]
    fn live_needs_params_and_keyframe() {
        let mut hub = StreamHub::new("live", MediaRing::new(4096, 16), 2);
        assert!(!hub.is_live());
        hub.set_video_params(VideoParams {
            codec: super::super::Codec::H264,
            vps: vec![],
            sps: vec![0x67],
            pps: vec![0x68],
            width: 0,
            height: 0,
            fps: None,
        });
        assert_eq!(hub.params_generation, 1);
        hub.publish(meta(true), &[1], 0).unwrap();
        assert!(hub.is_live());
    }
}

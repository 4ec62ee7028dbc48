//! `StreamHub`: one stream's ring, its current codec parameters, and the consumers that read it.
//!
//! Owns: publishing a frame (store it in the ring, then give every consumer a chance to send
//! it, synchronously, in the same turn) and the consumer registry, whose capacity is fixed at
//! start. Consumers (RTSP viewers, the HLS segmenter, RTMP pushers) implement [`Consumer`]:
//! they keep a [`RingCursor`](super::ring::RingCursor) and never block — a consumer that cannot
//! take more leaves its cursor where it is and is called again later by its own shell.
//!
//! No sockets here, no clock reads: `now_ms` is passed in. Single-threaded by design: the hub
//! lives in an `Rc<RefCell<_>>` on the daemon's media thread.

use super::ring::{MediaRing, RingError};
use super::{AudioParams, FrameMeta, Track, VideoParams};
use std::cell::RefCell;
use std::rc::Rc;

/// Something that reads a stream's frames.
pub trait Consumer {
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
    /// Bumped whenever codec parameters change (consumers re-send headers, HLS marks a
    /// discontinuity).
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

pub type ConsumerRef = Rc<RefCell<dyn Consumer>>;

pub struct StreamHub {
    pub name: String,
    pub ring: MediaRing,
    pub video: Option<VideoParams>,
    pub audio: Option<AudioParams>,
    pub params_generation: u32,
    /// Wall-clock-free liveness: `now_ms` of the last frame.
    pub last_frame_ms: Option<u64>,
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
        self.consumers.retain(|c| !c.borrow().is_closed());
        if self.consumers.len() >= self.max_consumers {
            self.stats.consumers_refused += 1;
            return false;
        }
        self.consumers.push(c);
        true
    }

    pub fn remove_consumer(&mut self, c: &ConsumerRef) {
        self.consumers.retain(|x| !Rc::ptr_eq(x, c));
    }

    pub fn set_video_params(&mut self, p: VideoParams) {
        if self.video.as_ref() != Some(&p) {
            self.video = Some(p);
            self.params_generation += 1;
        }
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
            // A consumer's own shell may hold its borrow only across no await, so this
            // borrow cannot conflict; if it ever does, skip it this frame (its cursor stays).
            if let Ok(mut c) = c.try_borrow_mut() {
                c.on_frame(&view, now_ms);
                any_closed |= c.is_closed();
            }
        }
        if any_closed {
            self.consumers
                .retain(|c| c.try_borrow().map_or(true, |c| !c.is_closed()));
        }
        Ok(())
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
        let a: Rc<RefCell<Recorder>> = Rc::new(RefCell::new(Recorder {
            cursor: 0,
            got: vec![],
            closed_after: 100,
        }));
        let b: Rc<RefCell<Recorder>> = Rc::new(RefCell::new(Recorder {
            cursor: 0,
            got: vec![],
            closed_after: 2,
        }));
        assert!(hub.add_consumer(a.clone()));
        assert!(hub.add_consumer(b.clone()));
        let c: ConsumerRef = Rc::new(RefCell::new(Recorder {
            cursor: 0,
            got: vec![],
            closed_after: 1,
        }));
        assert!(!hub.add_consumer(c), "capacity is 2");
        for i in 0..3 {
            hub.publish(meta(i == 0), &[0; 10], i).unwrap();
        }
        assert_eq!(a.borrow().got, vec![(0, 10), (1, 10), (2, 10)]);
        assert_eq!(b.borrow().got, vec![(0, 10), (1, 10)]);
        assert_eq!(hub.consumer_count(), 1);
        assert!(hub.publish(meta(false), &[0; 2000], 9).is_err());
        assert_eq!(hub.stats().dropped_too_large, 1);
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

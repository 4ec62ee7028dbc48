//! HLS segmenter and playlists (RFC 8216), sans-IO.
//!
//! Owns: cutting the frame stream into MPEG-TS segments (at keyframes, or on duration alone for
//! audio-only streams), storing them in one byte arena allocated at construction, the media
//! playlist (sliding window, discontinuities, program date-time) and the multivariant playlist.
//! Time is an input: media timestamps come with the frames, wall-clock time is passed in.
//!
//! Must not: do I/O, read a clock, or allocate after construction (the segment table and the
//! arena are sized once; playlists render into a caller `String` reused across calls). Never
//! panics on input: bad frames are errors, oversize segments are dropped and counted.
//!
//! Reading contract for the HTTP shell: segments are addressed by media sequence number and
//! copied out with [`HlsSegmenter::read_segment`] in chunks, so no borrow is held across an
//! await; a segment evicted between two reads answers [`SegmentGone`].

use core::fmt::Write;
use std::collections::VecDeque;

use super::ts::{TsError, TsMuxer, TS_PACKET_LEN};
use crate::media::{AudioParams, Codec, FrameMeta};

const CLOCK_90K: u64 = 90_000;

/// Segmenter configuration. Its memory is `arena_len_bytes` plus about 64 bytes per
/// `max_segments`; the daemon counts it in its declared media memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HlsConfig {
    /// Cut at the first keyframe at or after this much media time (RFC 8216 §4.3.3.1 target
    /// duration is derived from it and the first segment). Default 1000.
    pub target_duration_ms: u32,
    /// Segments listed in the media playlist. Default 6.
    pub window_segments: usize,
    /// Bytes of TS storage shared by all retained segments.
    pub arena_len_bytes: usize,
    /// Segments kept (listed + retained + the one being written). Must be at least
    /// `2 * window_segments + 1` so a segment that left the playlist stays readable for one
    /// more playlist length.
    pub max_segments: usize,
}

impl Default for HlsConfig {
    fn default() -> Self {
        Self {
            target_duration_ms: 1000,
            window_segments: 6,
            arena_len_bytes: 4 << 20,
            max_segments: 16,
        }
    }
}

/// Why a frame was not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HlsError {
    /// Configuration can't work (window 0, too few segments, arena below one packet).
    BadConfig,
    /// The muxer refused the frame (bad NAL lengths, missing track, ...).
    Mux(TsError),
    /// The segment being written outgrew the whole arena; it was dropped and the next one
    /// starts at the next keyframe, flagged as a discontinuity.
    SegmentTooLarge,
}

/// The segment is not (or no longer) stored: evicted, never existed, or still being written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentGone;

/// Counters for things a user may want to see. All saturating.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HlsStats {
    pub segments_completed: u64,
    /// Segments larger than the arena, dropped.
    pub segments_too_large: u64,
    /// Segments evicted for arena space while still listed or within the retention window.
    pub evicted_early: u64,
    /// Completed segments whose rounded duration exceeds the (fixed) target duration, e.g. a
    /// GOP longer than the first one.
    pub target_duration_exceeded: u64,
    /// Frames before the first keyframe (or after a drop) that no segment could take.
    pub frames_waiting_for_keyframe: u64,
    /// Decode timestamps that went backwards (treated as a discontinuity).
    pub timestamp_jumps: u64,
}

#[derive(Clone, Copy, Debug)]
struct Segment {
    seq: u64,
    /// Absolute arena position (monotonic; the arena index is `pos % len`).
    start_pos: u64,
    len_bytes: usize,
    start_90k: u64,
    duration_90k: u64,
    wall_clock_ms: u64,
    discontinuity: bool,
    complete: bool,
}

/// A TS segment ring over one fixed arena. Segments are contiguous in the (circular) arena,
/// oldest first, so the oldest is always the one to evict.
#[derive(Debug)]
struct SegmentStore {
    arena: Box<[u8]>,
    write_pos: u64,
    segs: VecDeque<Segment>,
    max_segments: usize,
    /// The open segment outgrew the arena during the current frame.
    overflowed: bool,
    evicted_early: u64,
    /// How many of the newest complete segments are protected (listed + retained).
    protected: usize,
}

impl SegmentStore {
    fn tail_pos(&self) -> u64 {
        self.segs.front().map_or(self.write_pos, |s| s.start_pos)
    }

    fn complete_count(&self) -> usize {
        self.segs.iter().filter(|s| s.complete).count()
    }

    fn evict_oldest(&mut self) {
        let complete = self.complete_count();
        if let Some(s) = self.segs.pop_front() {
            if s.complete && complete <= self.protected {
                self.evicted_early = self.evicted_early.saturating_add(1);
            }
        }
    }

    fn open(&mut self) -> Option<&mut Segment> {
        self.segs.back_mut().filter(|s| !s.complete)
    }

    fn append(&mut self, pkt: &[u8; TS_PACKET_LEN]) {
        if self.overflowed {
            return;
        }
        let cap = self.arena.len() as u64;
        while self.write_pos + TS_PACKET_LEN as u64 - self.tail_pos() > cap {
            if self.segs.len() > 1 {
                self.evict_oldest();
            } else {
                // Only the open segment is left and it doesn't fit: drop it.
                if let Some(s) = self.segs.pop_back() {
                    self.write_pos = s.start_pos;
                }
                self.overflowed = true;
                return;
            }
        }
        let at = (self.write_pos % cap) as usize;
        let first = (self.arena.len() - at).min(TS_PACKET_LEN);
        self.arena[at..at + first].copy_from_slice(&pkt[..first]);
        self.arena[..TS_PACKET_LEN - first].copy_from_slice(&pkt[first..]);
        self.write_pos += TS_PACKET_LEN as u64;
        if let Some(s) = self.open() {
            s.len_bytes += TS_PACKET_LEN;
        }
    }

    fn get(&self, seq: u64) -> Option<&Segment> {
        let first = self.segs.front()?.seq;
        let i = usize::try_from(seq.checked_sub(first)?).ok()?;
        self.segs.get(i).filter(|s| s.complete && s.seq == seq)
    }
}

/// Splits a frame stream into TS segments and renders playlists. Feed frames in decode order
/// with [`Self::push_video`] / [`Self::push_audio`]; render with
/// [`Self::render_media_playlist`]; serve bytes with [`Self::read_segment`].
#[derive(Debug)]
pub struct HlsSegmenter {
    cfg: HlsConfig,
    video: Option<Codec>,
    audio: Option<AudioParams>,
    muxer: TsMuxer,
    store: SegmentStore,
    next_seq: u64,
    pending_discontinuity: bool,
    /// Fixed at the first completed segment (RFC 8216 §6.2.1: must not change).
    target_duration_s: Option<u64>,
    /// Discontinuity-flagged segments completed so far (for EXT-X-DISCONTINUITY-SEQUENCE).
    discontinuities_completed: u64,
    /// Last timestamp and frame interval of the track that drives cutting.
    last_90k: Option<u64>,
    last_interval_90k: u64,
    stats: HlsStats,
}

impl HlsSegmenter {
    /// Allocates the arena and segment table once.
    pub fn new(
        cfg: HlsConfig,
        video: Option<Codec>,
        audio: Option<AudioParams>,
    ) -> Result<Self, HlsError> {
        if cfg.window_segments == 0
            || cfg.max_segments < 2 * cfg.window_segments + 1
            || cfg.arena_len_bytes < 2 * TS_PACKET_LEN
        {
            return Err(HlsError::BadConfig);
        }
        let muxer = TsMuxer::new(video, audio).map_err(HlsError::Mux)?;
        Ok(Self {
            cfg,
            video,
            audio,
            muxer,
            store: SegmentStore {
                arena: vec![0u8; cfg.arena_len_bytes].into_boxed_slice(),
                write_pos: 0,
                segs: VecDeque::with_capacity(cfg.max_segments),
                max_segments: cfg.max_segments,
                overflowed: false,
                evicted_early: 0,
                protected: 2 * cfg.window_segments,
            },
            next_seq: 0,
            pending_discontinuity: false,
            target_duration_s: None,
            discontinuities_completed: 0,
            last_90k: None,
            last_interval_90k: 0,
            stats: HlsStats::default(),
        })
    }

    pub fn stats(&self) -> HlsStats {
        HlsStats {
            evicted_early: self.store.evicted_early,
            ..self.stats
        }
    }

    /// The EXT-X-TARGETDURATION value, once the first segment completed.
    pub fn target_duration_s(&self) -> Option<u64> {
        self.target_duration_s
    }

    /// Marks a discontinuity (RFC 8216 §4.3.2.3): the source restarted or its timestamps
    /// jumped. The open segment is closed now; the next one starts at the next keyframe.
    pub fn discontinuity(&mut self) {
        if let Some(last) = self.last_90k {
            self.close_open(last.saturating_add(self.last_interval_90k));
        } else {
            self.drop_open();
        }
        self.pending_discontinuity = true;
        self.last_90k = None;
        self.last_interval_90k = 0;
    }

    /// The stream's parameters changed (codec, sample rate, ...): closes the open segment,
    /// flags a discontinuity, and writes new PAT/PMT from the next segment on.
    pub fn set_tracks(
        &mut self,
        video: Option<Codec>,
        audio: Option<AudioParams>,
    ) -> Result<(), HlsError> {
        let muxer = TsMuxer::new(video, audio).map_err(HlsError::Mux)?;
        self.discontinuity();
        self.muxer = muxer;
        self.video = video;
        self.audio = audio;
        Ok(())
    }

    /// Adds one video access unit (ring format, 90 kHz timestamps). `wall_clock_ms` (Unix
    /// epoch) is recorded as the segment's program date-time if this frame starts one.
    pub fn push_video(
        &mut self,
        meta: &FrameMeta,
        au: &[u8],
        wall_clock_ms: u64,
    ) -> Result<(), HlsError> {
        if self.video.is_none() {
            return Err(HlsError::Mux(TsError::NoSuchTrack));
        }
        let t = meta.dts;
        self.check_backwards(t);
        if meta.keyframe && self.should_cut(t) {
            self.cut(t, wall_clock_ms);
        }
        self.note_time(t);
        if self.store.open().is_none() {
            self.stats.frames_waiting_for_keyframe =
                self.stats.frames_waiting_for_keyframe.saturating_add(1);
            return Ok(());
        }
        let r = self
            .muxer
            .write_video(meta, au, &mut |p| self.store.append(p));
        self.after_write(r)
    }

    /// Adds one raw AAC frame (timestamps in the sample-rate clock).
    pub fn push_audio(
        &mut self,
        meta: &FrameMeta,
        raw: &[u8],
        wall_clock_ms: u64,
    ) -> Result<(), HlsError> {
        let Some(params) = self.audio else {
            return Err(HlsError::Mux(TsError::NoSuchTrack));
        };
        if self.video.is_none() {
            // Unwrapped (not 33-bit) 90 kHz time: segment arithmetic must survive the TS wrap.
            let t = (u128::from(meta.pts) * 90_000 / u128::from(params.sample_rate.max(1))) as u64;
            self.check_backwards(t);
            if self.should_cut(t) {
                self.cut(t, wall_clock_ms);
            }
            self.note_time(t);
        }
        if self.store.open().is_none() {
            self.stats.frames_waiting_for_keyframe =
                self.stats.frames_waiting_for_keyframe.saturating_add(1);
            return Ok(());
        }
        let r = self
            .muxer
            .write_audio(meta, raw, &mut |p| self.store.append(p));
        self.after_write(r)
    }

    fn after_write(&mut self, r: Result<usize, TsError>) -> Result<(), HlsError> {
        if self.store.overflowed {
            self.store.overflowed = false;
            self.stats.segments_too_large = self.stats.segments_too_large.saturating_add(1);
            // The dropped segment never reached a playlist: reuse its number so sequence
            // numbers stay contiguous, and mark the gap in media time.
            self.next_seq = self.next_seq.saturating_sub(1);
            self.pending_discontinuity = true;
            return Err(HlsError::SegmentTooLarge);
        }
        r.map(|_| ()).map_err(HlsError::Mux)
    }

    /// Decode time going backwards means the source restarted without telling us.
    fn check_backwards(&mut self, t: u64) {
        if self.last_90k.is_some_and(|last| t < last) {
            self.stats.timestamp_jumps = self.stats.timestamp_jumps.saturating_add(1);
            self.discontinuity();
        }
    }

    fn note_time(&mut self, t: u64) {
        if let Some(last) = self.last_90k {
            if t > last {
                self.last_interval_90k = t - last;
            }
        }
        self.last_90k = Some(t);
    }

    /// Cut when the open segment reached the target, less a slack: timestamps stamped from
    /// arrival jitter (by a millisecond, or by tens of them while an encoder's clock settles
    /// after a restart), and a keyframe due at the target (a GOP equal to the target) must not
    /// slip to the next one and double the segment past EXT-X-TARGETDURATION. Video: 10 % of
    /// the target or half a frame, whichever is more; audio-only: half a frame.
    fn should_cut(&mut self, t: u64) -> bool {
        let half_frame_90k = self.last_interval_90k / 2;
        let slack_90k = if self.video.is_some() {
            half_frame_90k.max(u64::from(self.cfg.target_duration_ms) * CLOCK_90K / 10_000)
        } else {
            half_frame_90k
        };
        match self.store.open() {
            None => true,
            Some(s) => {
                // Saturating: timestamps are input, and a leap must cut, not wrap.
                t.saturating_sub(s.start_90k)
                    .saturating_add(slack_90k)
                    .saturating_mul(1000)
                    >= u64::from(self.cfg.target_duration_ms) * CLOCK_90K
            }
        }
    }

    fn drop_open(&mut self) {
        if self.store.open().is_some() {
            if let Some(s) = self.store.segs.pop_back() {
                self.store.write_pos = s.start_pos;
                self.next_seq = s.seq;
            }
        }
    }

    fn close_open(&mut self, end_90k: u64) {
        let Some(s) = self.store.open() else {
            return;
        };
        s.complete = true;
        s.duration_90k = end_90k.saturating_sub(s.start_90k);
        let (dur, disc) = (s.duration_90k, s.discontinuity);
        self.stats.segments_completed = self.stats.segments_completed.saturating_add(1);
        if disc {
            self.discontinuities_completed += 1;
        }
        let rounded_s = dur.saturating_add(CLOCK_90K / 2) / CLOCK_90K;
        match self.target_duration_s {
            None => {
                // Fixed once: covers the configured target and the first real segment
                // (whose length shows the GOP); §4.3.3.1 compares rounded durations.
                let cfg_s = u64::from(self.cfg.target_duration_ms).div_ceil(1000);
                self.target_duration_s = Some(cfg_s.max(rounded_s).max(1));
            }
            Some(td) if rounded_s > td => {
                self.stats.target_duration_exceeded =
                    self.stats.target_duration_exceeded.saturating_add(1);
            }
            Some(_) => {}
        }
    }

    fn cut(&mut self, t: u64, wall_clock_ms: u64) {
        self.close_open(t);
        if self.store.segs.len() >= self.store.max_segments {
            self.store.evict_oldest();
        }
        self.store.segs.push_back(Segment {
            seq: self.next_seq,
            start_pos: self.store.write_pos,
            len_bytes: 0,
            start_90k: t,
            duration_90k: 0,
            wall_clock_ms,
            // The very first segment needs no tag.
            discontinuity: self.pending_discontinuity && self.next_seq > 0,
            complete: false,
        });
        self.pending_discontinuity = false;
        self.next_seq += 1;
        self.muxer.write_tables(&mut |p| self.store.append(p));
    }

    /// Length of a complete stored segment.
    pub fn segment_len(&self, seq: u64) -> Result<usize, SegmentGone> {
        self.store.get(seq).map(|s| s.len_bytes).ok_or(SegmentGone)
    }

    /// Copies bytes of segment `seq` from `offset` into `buf`; returns the count (0 at end).
    pub fn read_segment(
        &self,
        seq: u64,
        offset: usize,
        buf: &mut [u8],
    ) -> Result<usize, SegmentGone> {
        let s = self.store.get(seq).ok_or(SegmentGone)?;
        let n = s.len_bytes.saturating_sub(offset).min(buf.len());
        if n == 0 {
            // Also keeps an offset past the end out of the position arithmetic below.
            return Ok(0);
        }
        let cap = self.store.arena.len() as u64;
        // offset < len_bytes <= arena length: no overflow.
        let at = ((s.start_pos + offset as u64) % cap) as usize;
        let first = (self.store.arena.len() - at).min(n);
        buf[..first].copy_from_slice(&self.store.arena[at..at + first]);
        buf[first..n].copy_from_slice(&self.store.arena[..n - first]);
        Ok(n)
    }

    /// Peak bit rate over the listed segments (RFC 8216 §4.3.4.2 BANDWIDTH: the largest
    /// segment bit rate), or None before the first complete segment.
    pub fn peak_bitrate_bps(&self) -> Option<u64> {
        self.listed_segments()
            .filter(|s| s.duration_90k > 0)
            .map(|s| s.len_bytes as u64 * 8 * CLOCK_90K / s.duration_90k)
            .max()
    }

    /// Sequence numbers of the segments the media playlist lists now (oldest first).
    pub fn listed(&self) -> impl Iterator<Item = u64> + '_ {
        self.listed_segments().map(|s| s.seq)
    }

    fn listed_segments(&self) -> impl Iterator<Item = &Segment> + '_ {
        let complete = self.store.complete_count();
        let skip = complete.saturating_sub(self.cfg.window_segments);
        self.store.segs.iter().filter(|s| s.complete).skip(skip)
    }

    /// Renders the media playlist (RFC 8216 §4.3.3, §4.3.2) into `out` (cleared first).
    /// Returns false, leaving `out` empty, until the first segment is complete.
    pub fn render_media_playlist(&self, out: &mut String) -> bool {
        out.clear();
        let (Some(td), Some(first)) = (self.target_duration_s, self.listed_segments().next())
        else {
            return false;
        };
        let listed_disc = self.listed_segments().filter(|s| s.discontinuity).count() as u64;
        let disc_seq = self.discontinuities_completed.saturating_sub(listed_disc);
        // Writing to a String can't fail.
        let _ = write!(
            out,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{td}\n#EXT-X-MEDIA-SEQUENCE:{}\n",
            first.seq
        );
        if disc_seq > 0 {
            let _ = writeln!(out, "#EXT-X-DISCONTINUITY-SEQUENCE:{disc_seq}");
        }
        for s in self.listed_segments() {
            if s.discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            out.push_str("#EXT-X-PROGRAM-DATE-TIME:");
            write_iso8601_utc_ms(out, s.wall_clock_ms);
            let ms = s
                .duration_90k
                .saturating_mul(1000)
                .saturating_add(CLOCK_90K / 2)
                / CLOCK_90K;
            let _ = write!(out, "\n#EXTINF:{}.{:03},\n", ms / 1000, ms % 1000);
            write_segment_uri(out, s.seq);
            out.push('\n');
        }
        true
    }
}

/// Writes a segment's URI (relative to the playlist): `seg<seq>.ts`.
pub fn write_segment_uri(out: &mut String, seq: u64) {
    let _ = write!(out, "seg{seq}.ts");
}

/// Parses a URI written by [`write_segment_uri`] back into its sequence number.
pub fn parse_segment_uri(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("seg")?.strip_suffix(".ts")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Formats Unix-epoch milliseconds as `YYYY-MM-DDThh:mm:ss.sssZ` (RFC 3339, as RFC 8216
/// §4.3.2.6 requires for EXT-X-PROGRAM-DATE-TIME).
pub fn write_iso8601_utc_ms(out: &mut String, unix_ms: u64) {
    let secs = unix_ms / 1000;
    let days = (secs / 86_400) as i64;
    let sod = secs % 86_400;
    // Civil-from-days (proleptic Gregorian), shifted so the era starts on March 1st.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60,
        unix_ms % 1000
    );
}

/// One entry of a multivariant playlist.
#[derive(Clone, Copy, Debug)]
pub struct Rendition<'a> {
    /// URI of the rendition's media playlist, relative to the multivariant playlist.
    pub uri: &'a str,
    /// Peak bits per second (RFC 8216 §4.3.4.2 BANDWIDTH).
    pub bandwidth_bps: u32,
    /// Video width and height in pixels, if it has video.
    pub resolution: Option<(u32, u32)>,
    /// RFC 6381 codec strings joined by commas, e.g. `avc1.64001f,mp4a.40.2`.
    pub codecs: &'a str,
}

/// Renders a multivariant playlist (RFC 8216 §4.3.4.2) into `out` (cleared first).
pub fn render_multivariant_playlist(renditions: &[Rendition<'_>], out: &mut String) {
    out.clear();
    out.push_str("#EXTM3U\n#EXT-X-VERSION:3\n");
    for r in renditions {
        let _ = write!(out, "#EXT-X-STREAM-INF:BANDWIDTH={}", r.bandwidth_bps);
        if let Some((w, h)) = r.resolution {
            let _ = write!(out, ",RESOLUTION={w}x{h}");
        }
        let _ = write!(out, ",CODECS=\"{}\"\n{}\n", r.codecs, r.uri);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::Track;

    fn vmeta(dts: u64, keyframe: bool) -> FrameMeta {
        FrameMeta {
            track: Track::Video,
            pts: dts,
            dts,
            keyframe,
        }
    }

    const AU: [u8; 8] = [0, 0, 0, 4, 0x65, 1, 2, 3];
    /// 2025-01-01T00:00:00Z.
    const T0_MS: u64 = 1_735_689_600_000;

    /// 10 fps video; `gop` frames per keyframe; wall clock follows media time.
    fn feed(h: &mut HlsSegmenter, from_frame: u64, frames: u64, gop: u64, base_90k: u64) {
        for i in from_frame..from_frame + frames {
            let t = base_90k + i * 9000;
            h.push_video(&vmeta(t, i % gop == 0), &AU, T0_MS + t / 90)
                .unwrap();
        }
    }

    #[test]
    fn date_time_format() {
        let mut s = String::new();
        write_iso8601_utc_ms(&mut s, 0);
        s.push(' ');
        write_iso8601_utc_ms(&mut s, 951_782_400_123); // leap day 2000
        s.push(' ');
        write_iso8601_utc_ms(&mut s, T0_MS - 1);
        assert_eq!(
            s,
            "1970-01-01T00:00:00.000Z 2000-02-29T00:00:00.123Z 2024-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn playlist_script_byte_exact() {
        let cfg = HlsConfig {
            window_segments: 3,
            max_segments: 7,
            ..HlsConfig::default()
        };
        let mut h = HlsSegmenter::new(cfg, Some(Codec::H264), None).unwrap();
        let mut pl = String::new();
        // Frames before the first keyframe are not stored.
        h.push_video(&vmeta(0, false), &AU, T0_MS).unwrap();
        assert_eq!(h.stats().frames_waiting_for_keyframe, 1);
        // GOP 15 frames = 1.5 s at 10 fps; the target is 1 s, so cuts land every 1.5 s.
        feed(&mut h, 1, 14, 15, 0); // frame 1..14 continue with no keyframe: waiting
        assert!(!h.render_media_playlist(&mut pl), "no complete segment yet");
        assert!(pl.is_empty());
        feed(&mut h, 15, 31, 15, 0); // keyframes at 15, 30, 45 -> segments [15,30), [30,45)
        assert!(h.render_media_playlist(&mut pl));
        assert_eq!(
            pl,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n\
             #EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:01.500Z\n#EXTINF:1.500,\nseg0.ts\n\
             #EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:03.000Z\n#EXTINF:1.500,\nseg1.ts\n"
        );
        // Source restarts with timestamps from 0 again; 3 more GOPs, now 1 s each (10 frames).
        h.discontinuity();
        let base = 0;
        for i in 0..31u64 {
            let t = base + i * 9000;
            h.push_video(
                &vmeta(t, i.is_multiple_of(10)),
                &AU,
                T0_MS + 10_000 + t / 90,
            )
            .unwrap();
        }
        assert!(h.render_media_playlist(&mut pl));
        // seg2 = frame 45 of the old run, closed at the discontinuity (last + one frame);
        // seg3..5 are the new run. The window (3) shows seg3..seg5.
        assert_eq!(
            pl,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:3\n\
             #EXT-X-DISCONTINUITY\n\
             #EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:10.000Z\n#EXTINF:1.000,\nseg3.ts\n\
             #EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:11.000Z\n#EXTINF:1.000,\nseg4.ts\n\
             #EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:12.000Z\n#EXTINF:1.000,\nseg5.ts\n"
        );
        // One more segment: the discontinuity tag slides out -> DISCONTINUITY-SEQUENCE 1.
        for i in 31..41u64 {
            h.push_video(
                &vmeta(i * 9000, i.is_multiple_of(10)),
                &AU,
                T0_MS + 10_000 + i * 100,
            )
            .unwrap();
        }
        assert!(h.render_media_playlist(&mut pl));
        assert_eq!(
            pl,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:4\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:1\n\
             #EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:11.000Z\n#EXTINF:1.000,\nseg4.ts\n\
             #EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:12.000Z\n#EXTINF:1.000,\nseg5.ts\n\
             #EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:13.000Z\n#EXTINF:1.000,\nseg6.ts\n"
        );
        // seg1 and seg2 left the playlist but are retained; seg0 made room for seg7 in the
        // 7-slot table (2 * window protected, plus the open one).
        assert_eq!(h.segment_len(2).map(|n| n % 188), Ok(0));
        assert!(h.segment_len(1).is_ok());
        assert_eq!(h.segment_len(0), Err(SegmentGone));
        assert_eq!(
            h.segment_len(7),
            Err(SegmentGone),
            "open segment is not readable"
        );
        assert_eq!(h.stats().target_duration_exceeded, 0);
        assert_eq!(h.stats().evicted_early, 0);
        // Each 1 s segment: PAT + PMT + 10 one-packet frames = 12 packets = 18048 bits/s.
        assert_eq!(h.peak_bitrate_bps(), Some(12 * 188 * 8));
    }

    #[test]
    fn a_gop_equal_to_the_target_is_cut_despite_jitter() {
        let mut h = HlsSegmenter::new(HlsConfig::default(), Some(Codec::H264), None).unwrap();
        // 25 fps, a keyframe every 25 frames, each keyframe stamped 1 ms (90 ticks) early, or
        // 60 ms early (an encoder's clock settling after a restart).
        for i in 0..101u64 {
            let key = i.is_multiple_of(25);
            let early = match i {
                25 | 75 => 90,
                50 | 100 => 5400,
                _ => 0,
            };
            let t = i * 3600 - early;
            h.push_video(&vmeta(t, key), &AU, T0_MS + t / 90).unwrap();
        }
        // Cut at every keyframe (25, 50, 75, 100); without the slack only at 50 and 100.
        assert_eq!(h.listed().collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!(h.target_duration_s(), Some(1));
        assert_eq!(h.stats().target_duration_exceeded, 0);
    }

    #[test]
    fn audio_only_cuts_on_duration() {
        let p = AudioParams {
            object_type: 2,
            sample_rate_index: 3,
            sample_rate: 48_000,
            channels: 2,
        };
        let mut h = HlsSegmenter::new(HlsConfig::default(), None, Some(p)).unwrap();
        // 1024-sample frames at 48 kHz = 21.333 ms; 1 s target -> cut at frame 47 (1.0027 s).
        for k in 0..100u64 {
            let m = FrameMeta {
                track: Track::Audio,
                pts: k * 1024,
                dts: k * 1024,
                keyframe: true,
            };
            h.push_audio(&m, &[0x21; 20], T0_MS + k * 1024 * 1000 / 48_000)
                .unwrap();
        }
        let mut pl = String::new();
        assert!(h.render_media_playlist(&mut pl));
        assert_eq!(
            pl,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n\
             #EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:00.000Z\n#EXTINF:1.003,\nseg0.ts\n\
             #EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:01.002Z\n#EXTINF:1.003,\nseg1.ts\n"
        );
        assert_eq!(
            h.push_video(&vmeta(0, true), &AU, 0),
            Err(HlsError::Mux(TsError::NoSuchTrack))
        );
    }

    #[test]
    fn eviction_and_oversize() {
        // Arena for ~10 packets; each 1-frame GOP segment is PAT + PMT + 1 video packet.
        let cfg = HlsConfig {
            target_duration_ms: 100,
            window_segments: 1,
            arena_len_bytes: 188 * 10,
            max_segments: 8,
        };
        let mut h = HlsSegmenter::new(cfg, Some(Codec::H264), None).unwrap();
        for i in 0..5u64 {
            h.push_video(&vmeta(i * 9000, true), &AU, T0_MS).unwrap();
        }
        // 3 packets per segment in a 10-packet arena: seg0 and seg1 were evicted for space
        // (after they had left the 1-segment window and its retention).
        assert_eq!(h.segment_len(0), Err(SegmentGone));
        assert_eq!(h.segment_len(1), Err(SegmentGone));
        assert_eq!(h.segment_len(2), Ok(3 * 188));
        assert_eq!(h.stats().evicted_early, 0);
        // seg3 occupies packets 9, 10 % 10 = 0, 1: it wraps. Read it in 100-byte chunks.
        let mut seg = Vec::new();
        let mut buf = [0u8; 100];
        loop {
            let n = h.read_segment(3, seg.len(), &mut buf).unwrap();
            if n == 0 {
                break;
            }
            seg.extend_from_slice(&buf[..n]);
        }
        assert_eq!(seg.len(), 3 * 188);
        assert_eq!(&seg[..4], &[0x47, 0x40, 0x00, 0x13]); // PAT of the 4th segment: CC 3
        assert_eq!(&seg[188..192], &[0x47, 0x50, 0x00, 0x13]); // PMT
        assert_eq!(&seg[376..380], &[0x47, 0x41, 0x00, 0x33]); // video, AF + payload, CC 3
        assert_eq!(&seg[seg.len() - 4..], &[0x65, 1, 2, 3]);

        // A keyframe bigger than the whole arena: evicts everything older (seg3 and seg4 were
        // still protected: counted), is dropped itself, and the next keyframe recovers.
        let mut big = vec![0u8; 4 + 188 * 12];
        big[..4].copy_from_slice(&((188 * 12) as u32).to_be_bytes());
        big[4] = 0x65;
        assert_eq!(
            h.push_video(&vmeta(5 * 9000, true), &big, T0_MS),
            Err(HlsError::SegmentTooLarge)
        );
        assert_eq!(h.stats().segments_too_large, 1);
        assert_eq!(h.stats().evicted_early, 2);
        assert_eq!(h.segment_len(4), Err(SegmentGone));
        h.push_video(&vmeta(6 * 9000, false), &AU, T0_MS).unwrap();
        assert_eq!(h.stats().frames_waiting_for_keyframe, 1);
        h.push_video(&vmeta(7 * 9000, true), &AU, T0_MS).unwrap();
        h.push_video(&vmeta(8 * 9000, true), &AU, T0_MS).unwrap();
        let mut pl = String::new();
        assert!(h.render_media_playlist(&mut pl));
        // Sequence number 5 is reused after the drop, flagged as a discontinuity.
        assert_eq!(
            pl,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:5\n\
             #EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:00.000Z\n#EXTINF:0.100,\nseg5.ts\n"
        );
    }

    #[test]
    fn backwards_timestamps_are_a_discontinuity() {
        let cfg = HlsConfig {
            window_segments: 3,
            max_segments: 7,
            ..HlsConfig::default()
        };
        let mut h = HlsSegmenter::new(cfg, Some(Codec::H264), None).unwrap();
        // 20 frames from t = 100 s, then the camera restarts at t = 0 without notice.
        for i in 0..20u64 {
            let t = 9_000_000 + i * 9000;
            h.push_video(&vmeta(t, i.is_multiple_of(10)), &AU, T0_MS + i * 100)
                .unwrap();
        }
        for i in 0..11u64 {
            let t = i * 9000;
            h.push_video(&vmeta(t, i.is_multiple_of(10)), &AU, T0_MS + 2000 + i * 100)
                .unwrap();
        }
        assert_eq!(h.stats().timestamp_jumps, 1);
        let mut pl = String::new();
        assert!(h.render_media_playlist(&mut pl));
        assert_eq!(
            pl,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n\
             #EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:00.000Z\n#EXTINF:1.000,\nseg0.ts\n\
             #EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:01.000Z\n#EXTINF:1.000,\nseg1.ts\n\
             #EXT-X-DISCONTINUITY\n\
             #EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:02.000Z\n#EXTINF:1.000,\nseg2.ts\n"
        );
    }

    #[test]
    fn audio_only_cuts_across_the_33_bit_wrap() {
        let p = AudioParams {
            object_type: 2,
            sample_rate_index: 3,
            sample_rate: 48_000,
            channels: 2,
        };
        let mut h = HlsSegmenter::new(HlsConfig::default(), None, Some(p)).unwrap();
        // Start 0.5 s before 2^33 ticks of 90 kHz (26.5 h), run 3 s.
        let start = ((1u64 << 33) - 45_000) * 48_000 / 90_000;
        for k in 0..141u64 {
            let s = start + k * 1024;
            let m = FrameMeta {
                track: Track::Audio,
                pts: s,
                dts: s,
                keyframe: true,
            };
            h.push_audio(&m, &[0x21; 20], T0_MS).unwrap();
        }
        assert_eq!(h.listed().collect::<Vec<_>>(), [0, 1]);
        assert_eq!(h.stats().timestamp_jumps, 0);
    }

    #[test]
    fn multivariant_and_uris() {
        let mut s = String::new();
        render_multivariant_playlist(
            &[
                Rendition {
                    uri: "main/index.m3u8",
                    bandwidth_bps: 2_500_000,
                    resolution: Some((1920, 1080)),
                    codecs: "avc1.640028,mp4a.40.2",
                },
                Rendition {
                    uri: "audio/index.m3u8",
                    bandwidth_bps: 64_000,
                    resolution: None,
                    codecs: "mp4a.40.2",
                },
            ],
            &mut s,
        );
        assert_eq!(
            s,
            "#EXTM3U\n#EXT-X-VERSION:3\n\
             #EXT-X-STREAM-INF:BANDWIDTH=2500000,RESOLUTION=1920x1080,CODECS=\"avc1.640028,mp4a.40.2\"\nmain/index.m3u8\n\
             #EXT-X-STREAM-INF:BANDWIDTH=64000,CODECS=\"mp4a.40.2\"\naudio/index.m3u8\n"
        );
        let mut u = String::new();
        write_segment_uri(&mut u, 42);
        assert_eq!(parse_segment_uri(&u), Some(42));
        for bad in ["seg.ts", "seg-1.ts", "seg1.ts.ts", "x1.ts", "seg+1.ts"] {
            assert_eq!(parse_segment_uri(bad), None, "{bad}");
        }
    }

    #[test]
    fn bad_config_rejected() {
        let c = HlsConfig {
            window_segments: 6,
            max_segments: 12,
            ..HlsConfig::default()
        };
        assert_eq!(
            HlsSegmenter::new(c, Some(Codec::H264), None).err(),
            Some(HlsError::BadConfig)
        );
    }

    /// Random frames (valid and broken access units, timestamps that jump and go back, track
    /// changes, huge frames in a small arena) and random reads: never a panic, and what the
    /// playlist lists can always be read back whole.
    #[test]
    fn random_frames_and_reads_never_panic() {
        let mut x = 0x5eed_1234_abcd_ef01u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let aac = AudioParams {
            object_type: 2,
            sample_rate_index: 3,
            sample_rate: 48_000,
            channels: 1,
        };
        let mut segments_read = 0;
        for round in 0..40 {
            let cfg = HlsConfig {
                target_duration_ms: 200 + (next() % 2000) as u32,
                window_segments: 1 + (next() % 4) as usize,
                arena_len_bytes: 2 * TS_PACKET_LEN + (next() % 20_000) as usize,
                max_segments: 12,
            };
            let video = [None, Some(Codec::H264), Some(Codec::H265)][round % 3];
            let audio = (round % 2 == 0 || video.is_none()).then_some(aac);
            let mut h = HlsSegmenter::new(cfg, video, audio).unwrap();
            let (mut t, mut a) = (next() % (1 << 34), next() % (1 << 30));
            let mut buf = vec![0u8; 3000];
            let mut text = String::new();
            for _ in 0..600 {
                let r = next();
                match r % 16 {
                    0 => t = t.wrapping_sub(next() % 100_000),
                    1 => t = t.saturating_add(next() % 10_000_000),
                    2 => h.discontinuity(),
                    // A timestamp leap no real source makes, near the top of the range.
                    15 if r % 64 == 15 => t = t.saturating_add(next() >> 1),
                    3 => {
                        let v = [None, Some(Codec::H264)][(r >> 8) as usize % 2];
                        let _ = h.set_tracks(v, Some(aac));
                    }
                    _ => {}
                }
                t = t.saturating_add(3000);
                a = a.saturating_add(1024);
                let len = (next() % 4000) as usize;
                let mut au = vec![0u8; len + 4];
                if r % 7 != 0 {
                    // A valid single-NAL access unit; otherwise noise.
                    au[..4].copy_from_slice(&(len as u32).to_be_bytes());
                } else {
                    au.iter_mut().for_each(|b| *b = next() as u8);
                }
                let meta = FrameMeta {
                    track: crate::media::Track::Video,
                    pts: t,
                    dts: t.saturating_sub(next() % 3000),
                    keyframe: r % 5 == 0,
                };
                let _ = h.push_video(&meta, &au, next());
                let am = FrameMeta {
                    track: crate::media::Track::Audio,
                    pts: a,
                    dts: a,
                    keyframe: true,
                };
                let _ = h.push_audio(&am, &au[..(r as usize % 9000).min(au.len())], next());
                let listed: Vec<u64> = h.listed().collect();
                assert!(listed.len() <= cfg.window_segments);
                assert!(listed.windows(2).all(|w| w[1] == w[0] + 1), "{listed:?}");
                if h.render_media_playlist(&mut text) {
                    assert!(text.starts_with("#EXTM3U\n"));
                }
                if let Some(&seq) = listed.first() {
                    let len = h.segment_len(seq).unwrap();
                    let (mut off, mut total) = (0usize, 0usize);
                    while let Ok(n) =
                        h.read_segment(seq, off, &mut buf[..1 + (next() % 3000) as usize])
                    {
                        if n == 0 {
                            break;
                        }
                        off += n;
                        total += n;
                    }
                    assert_eq!(total, len);
                    segments_read += 1;
                }
                let _ = h.read_segment(next(), next() as usize, &mut buf);
                let _ = h.read_segment(
                    listed.last().copied().unwrap_or(0),
                    usize::MAX - (next() % 10) as usize,
                    &mut buf,
                );
                let _ = h.peak_bitrate_bps();
            }
        }
        assert!(segments_read > 1000, "only {segments_read} segment reads");
    }
}

//! The status snapshot the page, the API and `/metrics` show, and the per-stream sampler that
//! turns cumulative counters into a bitrate, a frame rate, a keyframe interval and a
//! five-minute bitrate history.
//!
//! Owns: the snapshot's shape (its JSON is the API's `status`/`streams` body) and the sampling
//! arithmetic. Pure: the caller reads the hubs once a second and passes `now_ms`; nothing here
//! touches the media path (the counters it samples are the ring's and the hub's own).

use serde::Serialize;

/// Seconds per bitrate-history point.
pub const HISTORY_STEP_S: u64 = 5;
/// History points kept: 60 × 5 s = the last five minutes.
pub const HISTORY_POINTS: usize = 60;

/// Everything the status view shows.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Status {
    pub version: &'static str,
    pub uptime_s: u64,
    pub memory: MemoryStatus,
    pub streams: Vec<StreamStatus>,
    pub push: Vec<PushStatus>,
    pub viewers: Vec<ViewerInfo>,
    pub rtsp_port: u16,
    pub http_port: u16,
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct MemoryStatus {
    /// Media memory the plan allocated at start (rings, buffers, segment arenas).
    pub planned_bytes: u64,
    /// The declared ceiling (`media.memory_mib` or the board's).
    pub ceiling_bytes: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProtocolCounts {
    pub rtsp: u32,
    pub hls: u32,
    pub rtmp_push: u32,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct StreamStatus {
    pub name: String,
    pub live: bool,
    pub codec: Option<&'static str>,
    pub width: u32,
    pub height: u32,
    /// Measured over the last second.
    pub fps: f64,
    pub bitrate_kbps: u32,
    /// Oldest first, one point per [`HISTORY_STEP_S`].
    pub bitrate_history_kbps: Vec<u32>,
    pub keyframe_interval_ms: Option<u32>,
    pub viewers: ProtocolCounts,
    pub rtsp_path: String,
    pub hls_path: String,
    pub source_kind: String,
    pub source_restarts: u64,
    pub video_frames: u64,
    pub audio_frames: u64,
    pub bytes: u64,
    pub dropped_frames: u64,
    pub evicted_frames: u64,
    pub last_frame_age_ms: Option<u64>,
}

/// Push target state as the page shows it (filled from the push shell when it is built in).
#[derive(Clone, Debug, Default, Serialize)]
pub struct PushStatus {
    pub index: usize,
    pub stream: String,
    /// The URL with the key part masked.
    pub url: String,
    pub enabled: bool,
    /// idle | connecting | publishing | backing_off | disabled | unavailable
    pub state: &'static str,
    pub last_error: Option<String>,
    pub next_retry_s: Option<u64>,
    pub attempt: u32,
    pub reconnects: u64,
    pub bytes_sent: u64,
    pub gops_dropped: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ViewerInfo {
    pub id: String,
    pub stream: String,
    pub protocol: &'static str,
    pub peer: String,
}

/// Counters read from a hub once a second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HubSample {
    pub bytes_in: u64,
    pub video_frames: u64,
    /// pts (90 kHz) of the newest video keyframe and of the keyframe before it, when held.
    pub last_keyframes_pts_90k: (Option<u64>, Option<u64>),
}

/// Turns once-a-second counter samples into rates and a fixed-size history (no allocation
/// after construction).
#[derive(Clone, Debug)]
pub struct StreamSampler {
    last: Option<(u64, HubSample)>,
    pub bitrate_kbps: u32,
    pub fps: f64,
    pub keyframe_interval_ms: Option<u32>,
    history: [u32; HISTORY_POINTS],
    filled: usize,
    head: usize,
    step_start_ms: u64,
    step_bytes: u64,
}

impl Default for StreamSampler {
    fn default() -> Self {
        StreamSampler {
            last: None,
            bitrate_kbps: 0,
            fps: 0.0,
            keyframe_interval_ms: None,
            history: [0; HISTORY_POINTS],
            filled: 0,
            head: 0,
            step_start_ms: 0,
            step_bytes: 0,
        }
    }
}

impl StreamSampler {
    /// Feeds one sample taken at `now_ms`.
    pub fn sample(&mut self, s: HubSample, now_ms: u64) {
        if let (Some(a), Some(b)) = s.last_keyframes_pts_90k {
            if a > b {
                self.keyframe_interval_ms = u32::try_from((a - b) / 90).ok();
            }
        }
        let Some((t0, prev)) = self.last else {
            self.last = Some((now_ms, s));
            self.step_start_ms = now_ms;
            return;
        };
        let dt_ms = now_ms.saturating_sub(t0);
        if dt_ms == 0 {
            return;
        }
        let dbytes = s.bytes_in.saturating_sub(prev.bytes_in);
        self.bitrate_kbps = u32::try_from(dbytes * 8 / dt_ms).unwrap_or(u32::MAX);
        self.fps = s.video_frames.saturating_sub(prev.video_frames) as f64 * 1000.0 / dt_ms as f64;
        self.last = Some((now_ms, s));
        self.step_bytes += dbytes;
        let step_ms = now_ms.saturating_sub(self.step_start_ms);
        if step_ms >= HISTORY_STEP_S * 1000 {
            self.history[self.head] =
                u32::try_from(self.step_bytes * 8 / step_ms).unwrap_or(u32::MAX);
            self.head = (self.head + 1) % HISTORY_POINTS;
            self.filled = (self.filled + 1).min(HISTORY_POINTS);
            self.step_bytes = 0;
            self.step_start_ms = now_ms;
        }
    }

    /// The history, oldest first.
    pub fn history(&self) -> Vec<u32> {
        let start = (self.head + HISTORY_POINTS - self.filled) % HISTORY_POINTS;
        (0..self.filled)
            .map(|i| self.history[(start + i) % HISTORY_POINTS])
            .collect()
    }
}

/// Masks the key in a push URL: `rtmp://h/app/abcdef123` → `rtmp://h/app/abc…`; the separate
/// key field is never shown at all.
pub fn mask_push_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return "…".into();
    };
    let after = &url[scheme_end + 3..];
    // host / app / key...: keep host and app, mask the rest.
    let mut parts = after.splitn(3, '/');
    let host = parts.next().unwrap_or("");
    let app = parts.next();
    let key = parts.next();
    let mut out = format!("{}{}", &url[..scheme_end + 3], host);
    if let Some(app) = app {
        out.push('/');
        out.push_str(app);
    }
    if let Some(key) = key.filter(|k| !k.is_empty()) {
        out.push('/');
        out.extend(key.chars().take(3));
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(bytes: u64, frames: u64) -> HubSample {
        HubSample {
            bytes_in: bytes,
            video_frames: frames,
            last_keyframes_pts_90k: (Some(180_000), Some(90_000)),
        }
    }

    #[test]
    fn rates_and_history() {
        let mut sm = StreamSampler::default();
        sm.sample(s(0, 0), 0);
        assert_eq!(sm.bitrate_kbps, 0);
        // 125 000 bytes in 1 s = 1000 kbit/s; 30 frames = 30 fps.
        sm.sample(s(125_000, 30), 1000);
        assert_eq!(sm.bitrate_kbps, 1000);
        assert!((sm.fps - 30.0).abs() < 1e-9);
        assert_eq!(sm.keyframe_interval_ms, Some(1000));
        for i in 2..=10 {
            sm.sample(s(125_000 * i, 30 * i), 1000 * i);
        }
        assert_eq!(sm.history(), vec![1000, 1000]);
        // The history wraps at 60 points and stays oldest-first.
        let mut sm = StreamSampler::default();
        for i in 0..=(HISTORY_POINTS as u64 + 5) * 5 {
            // bitrate grows: i * 8 kbit/s
            sm.sample(s(i * i * 500, 0), i * 1000);
        }
        let h = sm.history();
        assert_eq!(h.len(), HISTORY_POINTS);
        assert!(h.windows(2).all(|w| w[0] < w[1]), "{h:?}");
        // Counters going backwards (a restart) are not a huge bitrate.
        sm.sample(s(0, 0), 400_000);
        assert_eq!(sm.bitrate_kbps, 0);
    }

    #[test]
    fn push_url_masking() {
        assert_eq!(
            mask_push_url("rtmp://h:1935/live/abcdef"),
            "rtmp://h:1935/live/abc…"
        );
        assert_eq!(mask_push_url("rtmps://h/app"), "rtmps://h/app");
        assert_eq!(mask_push_url("rtmp://h/app/"), "rtmp://h/app");
        assert_eq!(mask_push_url("garbage"), "…");
    }
}

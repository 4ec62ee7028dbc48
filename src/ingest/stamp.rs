//! Timestamps for sources that carry none (raw Annex B, ADTS): arrival time in, a smooth,
//! honest, never-decreasing presentation time out.
//!
//! Owns: [`VideoStamper`] (a small phase-locked loop around the nominal frame duration) and
//! [`AudioStamper`] (sample counting, re-anchored when it drifts from arrival time). Time is an
//! input (`arrival` in the track's clock, counted from the daemon's start); nothing here reads a
//! clock, so every behaviour is tested with scripted arrivals.

/// Beyond this distance from arrival time (in seconds), stop smoothing and jump: the source
/// stalled or restarted.
const RESYNC_S: f64 = 1.0;

/// Stamps video frames: `pts = previous + duration`, pulled gently toward the arrival time.
#[derive(Clone, Debug)]
pub struct VideoStamper {
    clock_hz: f64,
    /// Current estimate of the frame duration in clock ticks.
    duration: f64,
    nominal: f64,
    last: Option<f64>,
    /// The next frame re-anchors to its arrival time (the source restarted).
    resync_next: bool,
}

impl VideoStamper {
    /// `fps` is the nominal rate (from config, the SPS timing info, or 30).
    pub fn new(clock_hz: u32, fps: f64) -> Self {
        let nominal = clock_hz as f64 / fps.clamp(1.0, 240.0);
        VideoStamper {
            clock_hz: clock_hz as f64,
            duration: nominal,
            nominal,
            last: None,
            resync_next: false,
        }
    }

    /// The source restarted: the next frame takes its arrival time (still after the last
    /// pts) instead of smearing the restart gap over the frames that follow — a smeared gap
    /// stretches the next GOPs' media time, and HLS segments with them past the target.
    pub fn resync(&mut self) {
        self.resync_next = true;
    }

    /// Changes the nominal rate (e.g. the SPS said otherwise) without a jump.
    pub fn set_fps(&mut self, fps: f64) {
        self.nominal = self.clock_hz / fps.clamp(1.0, 240.0);
        self.duration = self.nominal;
    }

    /// The presentation time of a frame that arrived at `arrival` (clock ticks). Strictly
    /// increasing from call to call.
    pub fn stamp(&mut self, arrival: u64) -> u64 {
        let arrival = arrival as f64;
        let Some(last) = self.last else {
            self.last = Some(arrival);
            return arrival as u64;
        };
        let predicted = last + self.duration;
        let err = arrival - predicted;
        let resync = std::mem::take(&mut self.resync_next);
        let pts = if resync || err.abs() > RESYNC_S * self.clock_hz {
            self.duration = self.nominal;
            arrival.max(last + 1.0)
        } else {
            // Proportional pull of 1/16 of the error per frame, and a slow integral term
            // that learns the encoder's real rate (a "30 fps" camera running at 29.97),
            // kept within ±10 % of nominal.
            self.duration =
                (self.duration + err / 256.0).clamp(self.nominal * 0.9, self.nominal * 1.1);
            let pts = predicted + err / 16.0;
            pts.clamp(last + self.duration * 0.5, last + self.duration * 2.0)
        };
        self.last = Some(pts);
        pts as u64
    }
}

/// Stamps AAC frames by counting samples; re-anchors to arrival time after a gap.
#[derive(Clone, Debug)]
pub struct AudioStamper {
    sample_rate: u32,
    next: Option<u64>,
}

impl AudioStamper {
    pub fn new(sample_rate: u32) -> Self {
        AudioStamper {
            sample_rate,
            next: None,
        }
    }

    /// The pts (in samples) of a frame of `samples` samples that arrived at `arrival` (in
    /// samples since the daemon's start). Frames arrive in bursts, so arrival only matters
    /// when it disagrees by more than 100 ms ahead (a gap) or 1 s behind (a restart).
    pub fn stamp(&mut self, arrival: u64, samples: u32) -> u64 {
        let rate = self.sample_rate as u64;
        let pts = match self.next {
            Some(n) if arrival <= n + rate / 10 && arrival + rate >= n => n,
            Some(n) => arrival.max(n),
            None => arrival,
        };
        self.next = Some(pts + samples as u64);
        pts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_gap_is_not_smeared_over_the_next_frames() {
        let mut s = VideoStamper::new(90_000, 25.0);
        for i in 0..50u64 {
            s.stamp(i * 3600);
        }
        // The encoder restarts: 600 ms with no frame, then frames at 25 fps again.
        s.resync();
        let after: Vec<u64> = (0..25u64)
            .map(|i| s.stamp(49 * 3600 + 54_000 + i * 3600))
            .collect();
        assert_eq!(after[0], 49 * 3600 + 54_000, "re-anchored at arrival");
        // One GOP after the restart spans 24 frame durations, not 24 plus the gap.
        assert!(
            (after[24] - after[0]).abs_diff(24 * 3600) < 400,
            "{}",
            after[24] - after[0]
        );
    }

    #[test]
    fn jittery_arrivals_become_even_steps() {
        let mut s = VideoStamper::new(90_000, 30.0);
        let mut x: u64 = 7;
        let mut prev = None;
        let mut steps = Vec::new();
        for i in 0..600u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let jitter = x % 1800; // up to 20 ms late
            let pts = s.stamp(i * 3000 + jitter);
            if let Some(p) = prev {
                assert!(pts > p);
                steps.push(pts - p);
            }
            prev = Some(pts);
        }
        // After settling, every step is within 10 % of 3000 even though arrival jitters by
        // up to 60 % of a frame.
        assert!(
            steps[60..].iter().all(|&d| (2700..=3300).contains(&d)),
            "{:?}",
            &steps[60..80]
        );
    }

    #[test]
    fn learns_a_slightly_slower_encoder() {
        let mut s = VideoStamper::new(90_000, 30.0);
        let real = 90_000.0 / 29.97;
        let mut last = 0;
        for i in 0..3000u64 {
            last = s.stamp((i as f64 * real) as u64);
        }
        let expected = (2999.0 * real) as u64;
        assert!(last.abs_diff(expected) < 900, "{last} vs {expected}"); // < 10 ms off
    }

    #[test]
    fn stall_resyncs_and_never_goes_backwards() {
        let mut s = VideoStamper::new(90_000, 25.0);
        assert_eq!(s.stamp(1000), 1000);
        assert_eq!(s.stamp(4600), 4600);
        // A 5 s stall: jump to arrival.
        assert_eq!(s.stamp(500_000), 500_000);
        // Arrival going backwards (clock quirk): still increasing.
        let p = s.stamp(100);
        assert!(p > 500_000);
    }

    #[test]
    fn audio_counts_samples_and_reanchors_after_a_gap() {
        let mut a = AudioStamper::new(48_000);
        assert_eq!(a.stamp(10_000, 1024), 10_000);
        // Bursty arrival within tolerance: pure sample counting.
        assert_eq!(a.stamp(10_000, 1024), 11_024);
        assert_eq!(a.stamp(14_000, 1024), 12_048);
        // A 2 s gap: re-anchor at arrival.
        assert_eq!(a.stamp(110_000, 1024), 110_000);
        assert_eq!(a.stamp(111_000, 1024), 111_024);
    }
}

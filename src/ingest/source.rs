//! Source drivers: the shells that own encoder processes, pipes, files and sockets, and feed
//! the ingest cores, which feed the stream's hub.
//!
//! Each input runs on a plain thread of its own with blocking reads: read → assemble → stamp
//! → publish into the hub → every consumer's socket, all in one turn on this thread. The async
//! runtime is not on this path, so nothing per frame waits for a wake-up or allocates in a
//! reactor (smol's reactor allocates a waker list per I/O event; measured in
//! `tests/alloc_steady_state.rs`).
//!
//! Owns: reading (into one buffer allocated at start), deciding when an encoder's write ended
//! (see [`write_ended`]), pacing files and the test source in real time, restarting a failed
//! encoder or connection with capped exponential backoff, and logging one line per event a user
//! cares about. Everything about bytes is in the cores ([`super::annexb`], [`super::adts`],
//! [`super::stamp`]); everything about memory is in [`crate::media`].

use super::adts::AdtsSplitter;
use super::annexb::{AccessUnit, AnnexBAssembler};
use super::stamp::{AudioStamper, VideoStamper};
use super::testsrc::{TestPattern, TestTone};
use crate::config::{SourceConfig, SourceFormat, SourceKind};
use crate::media::budget::{StreamPlan, INGEST_READ_BUFFER_BYTES};
use crate::media::fanout::{lock, SharedHub};
use crate::media::{h264, AudioParams, Codec, FrameMeta, Track, VideoParams, VIDEO_CLOCK_HZ};
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The daemon's clock origin: every pts and `now_ms` counts from here, plus
/// [`Epoch::BASE_S`] — so that a source whose first audio precedes its first video (MPEG-TS
/// does this) still maps to positive times, and nothing is ever stamped near zero.
#[derive(Clone, Copy, Debug)]
pub struct Epoch(pub Instant);

impl Epoch {
    pub const BASE_S: u64 = 3600;

    pub fn now_ms(&self) -> u64 {
        self.0.elapsed().as_millis() as u64 + Self::BASE_S * 1000
    }
    pub fn ticks(&self, at: Instant, clock_hz: u32) -> u64 {
        let d = at.saturating_duration_since(self.0);
        (d.as_micros() as u64).saturating_mul(clock_hz as u64) / 1_000_000
            + Self::BASE_S * clock_hz as u64
    }
}

/// Did a read return the end of one of the producer's writes? A pipe read returns what the
/// encoder wrote, unless the write was larger than the pipe or stdio cut it into page-sized
/// pieces: a read that fills the buffer, or is a multiple of 4096 bytes, may be the middle of
/// a write, so we wait for the next AU's first NAL instead.
pub fn write_ended(read_len: usize, buf_len: usize) -> bool {
    read_len > 0 && read_len < buf_len && !read_len.is_multiple_of(4096)
}

/// Builds the codec parameters a stream advertises from the assembler's parameter sets.
pub fn video_params(codec: Codec, vps: &[u8], sps: &[u8], pps: &[u8]) -> VideoParams {
    let (width, height, fps) = match codec {
        Codec::H264 => match h264::parse_sps(sps) {
            Ok(i) => (i.width, i.height, i.fps),
            Err(e) => {
                log::warn!("SPS not understood ({e:?}); resolution unknown");
                (0, 0, None)
            }
        },
        _ => h265_sps_summary(sps),
    };
    VideoParams {
        codec,
        vps: if codec == Codec::H265 {
            vps.to_vec()
        } else {
            Vec::new()
        },
        sps: sps.to_vec(),
        pps: pps.to_vec(),
        width,
        height,
        fps,
    }
}

fn h265_sps_summary(sps: &[u8]) -> (u32, u32, Option<(u32, u32)>) {
    match crate::media::h265::parse_sps(sps) {
        Ok(i) => (i.width, i.height, i.fps),
        Err(e) => {
            log::warn!("H.265 SPS not understood ({e:?}); resolution unknown");
            (0, 0, None)
        }
    }
}

/// Video: Annex B in, stamped access units into the hub.
pub struct VideoPipeline {
    codec: Codec,
    assembler: AnnexBAssembler,
    stamper: VideoStamper,
    fps_from_config: bool,
    /// Access units published so far (file pacing counts them).
    pub published: u64,
}

impl VideoPipeline {
    pub fn new(codec: Codec, fps: f64, max_au_bytes: usize) -> Self {
        VideoPipeline {
            codec,
            assembler: AnnexBAssembler::new(codec, max_au_bytes),
            stamper: VideoStamper::new(VIDEO_CLOCK_HZ, if fps > 0.0 { fps } else { 30.0 }),
            fps_from_config: fps > 0.0,
            published: 0,
        }
    }

    /// Feeds bytes. `arrival` gives the arrival time (90 kHz ticks) of each AU that completes.
    pub fn feed(
        &mut self,
        data: &[u8],
        end_of_write: bool,
        hub: &SharedHub,
        arrival: &mut dyn FnMut() -> u64,
        now_ms: u64,
    ) {
        let VideoPipeline {
            codec,
            assembler,
            stamper,
            fps_from_config,
            published,
        } = self;
        let mut on_au = |au: AccessUnit<'_>| {
            let mut hub = lock(hub);
            if au.params_changed {
                let p = video_params(*codec, au.vps, au.sps, au.pps);
                if let (false, Some((n, d))) = (*fps_from_config, p.fps) {
                    if n > 0 && d > 0 {
                        stamper.set_fps(n as f64 / d as f64);
                    }
                }
                log::info!(
                    "[{}] video {} {}x{}{}",
                    hub.name,
                    codec.name(),
                    p.width,
                    p.height,
                    p.fps
                        .map(|(n, d)| format!(" {:.2} fps", n as f64 / d as f64))
                        .unwrap_or_default()
                );
                hub.set_video_params(p);
            }
            let pts = stamper.stamp(arrival());
            let meta = FrameMeta {
                track: Track::Video,
                pts,
                dts: pts,
                keyframe: au.keyframe,
            };
            if let Err(e) = hub.publish(meta, au.data, now_ms) {
                log::warn!("[{}] video frame dropped: {e:?}", hub.name);
            }
            *published += 1;
        };
        assembler.push(data, &mut on_au);
        if end_of_write {
            assembler.end_of_write(&mut on_au);
        }
    }

    /// Feeds one whole access unit that came with its own timestamps (an MPEG-TS PES), already
    /// mapped to the daemon clock.
    pub fn feed_timed(&mut self, au: &[u8], pts: u64, dts: u64, hub: &SharedHub, now_ms: u64) {
        let VideoPipeline {
            codec,
            assembler,
            published,
            ..
        } = self;
        let mut on_au = |au: AccessUnit<'_>| {
            let mut hub = lock(hub);
            if au.params_changed {
                let p = video_params(*codec, au.vps, au.sps, au.pps);
                log::info!(
                    "[{}] video {} {}x{} (MPEG-TS)",
                    hub.name,
                    codec.name(),
                    p.width,
                    p.height
                );
                hub.set_video_params(p);
            }
            let meta = FrameMeta {
                track: Track::Video,
                pts,
                dts,
                keyframe: au.keyframe,
            };
            if let Err(e) = hub.publish(meta, au.data, now_ms) {
                log::warn!("[{}] video frame dropped: {e:?}", hub.name);
            }
            *published += 1;
        };
        assembler.push(au, &mut on_au);
        assembler.end_of_write(&mut on_au);
    }

    /// The source restarted: forget the partial AU; the next AU is stamped at its arrival
    /// (timestamps keep increasing, without smoothing across the gap).
    pub fn source_restarted(&mut self) {
        self.assembler.reset_partial();
        self.stamper.resync();
    }
}

/// Audio: ADTS in, stamped AAC frames into the hub.
pub struct AudioPipeline {
    splitter: AdtsSplitter,
    stamper: Option<AudioStamper>,
    last_timed_pts: Option<u64>,
    pub published: u64,
}

impl Default for AudioPipeline {
    fn default() -> Self {
        Self::new()
    }
}

impl AudioPipeline {
    pub fn new() -> Self {
        AudioPipeline {
            splitter: AdtsSplitter::new(),
            stamper: None,
            last_timed_pts: None,
            published: 0,
        }
    }

    /// Feeds ADTS bytes; `arrival` gives each frame's arrival time in the daemon clock
    /// (as an Instant) so it can be expressed in the frame's own sample rate.
    pub fn feed(
        &mut self,
        data: &[u8],
        hub: &SharedHub,
        epoch: Epoch,
        arrival: &mut dyn FnMut() -> Instant,
        now_ms: u64,
    ) {
        let AudioPipeline {
            splitter,
            stamper,
            published,
            ..
        } = self;
        splitter.push(data, &mut |p: AudioParams, frame: &[u8]| {
            let mut hub = lock(hub);
            if hub.audio != Some(p) {
                log::info!(
                    "[{}] audio AAC {} Hz, {} ch",
                    hub.name,
                    p.sample_rate,
                    p.channels
                );
                *stamper = Some(AudioStamper::new(p.sample_rate));
                hub.set_audio_params(p);
            }
            let Some(st) = stamper.as_mut() else { return };
            let pts = st.stamp(epoch.ticks(arrival(), p.sample_rate), 1024);
            let meta = FrameMeta {
                track: Track::Audio,
                pts,
                dts: pts,
                keyframe: true,
            };
            if let Err(e) = hub.publish(meta, frame, now_ms) {
                log::warn!("[{}] audio frame dropped: {e:?}", hub.name);
            }
            *published += 1;
        });
    }
}

impl AudioPipeline {
    /// Feeds ADTS bytes that came with a timestamp (an MPEG-TS PES, mapped to the daemon's
    /// 90 kHz clock): the n-th frame in it is `pts + n * 1024` samples.
    pub fn feed_timed(&mut self, data: &[u8], pts_90k: u64, hub: &SharedHub, now_ms: u64) {
        let mut n = 0u64;
        let published = &mut self.published;
        let last_pts = &mut self.last_timed_pts;
        self.splitter
            .push(data, &mut |p: AudioParams, frame: &[u8]| {
                let mut hub = lock(hub);
                if hub.audio != Some(p) {
                    log::info!(
                        "[{}] audio AAC {} Hz, {} ch (MPEG-TS)",
                        hub.name,
                        p.sample_rate,
                        p.channels
                    );
                    hub.set_audio_params(p);
                }
                let mut pts = pts_90k * p.sample_rate as u64 / VIDEO_CLOCK_HZ as u64 + n * 1024;
                n += 1;
                // PES timestamps are rounded to 90 kHz: keep whole frames apart, never backwards.
                if let Some(last) = *last_pts {
                    if pts < last + 1024 && pts + 1024 > last {
                        pts = last + 1024;
                    }
                }
                *last_pts = Some(pts);
                let meta = FrameMeta {
                    track: Track::Audio,
                    pts,
                    dts: pts,
                    keyframe: true,
                };
                if let Err(e) = hub.publish(meta, frame, now_ms) {
                    log::warn!("[{}] audio frame dropped: {e:?}", hub.name);
                }
                *published += 1;
            });
    }
}

/// Maps a source's 33-bit MPEG timestamps onto the daemon clock: unwrapped, offset so the
/// first one lands at its arrival time, and re-anchored (never backwards) when the source
/// jumps by more than 10 s (a restart, a splice).
#[derive(Clone, Copy, Debug, Default)]
pub struct TsClock {
    offset: Option<i64>,
    last_raw: u64,
    unwrapped_base: u64,
    last_out: u64,
}

impl TsClock {
    /// Maps `raw` (33-bit, 90 kHz) arriving at `arrival_90k` (daemon clock).
    pub fn map(&mut self, raw: u64, arrival_90k: u64) -> u64 {
        const WRAP: u64 = 1 << 33;
        let raw = raw & (WRAP - 1);
        if self.offset.is_some() && raw + WRAP / 2 < self.last_raw {
            self.unwrapped_base += WRAP;
        }
        self.last_raw = raw;
        let unwrapped = (self.unwrapped_base + raw) as i64;
        let offset = *self.offset.get_or_insert(arrival_90k as i64 - unwrapped);
        let mapped = unwrapped + offset;
        if (mapped - arrival_90k as i64).abs() > 10 * VIDEO_CLOCK_HZ as i64 {
            // Re-anchor at arrival, but never behind what we already handed out.
            let target = (arrival_90k).max(self.last_out + 1) as i64;
            self.offset = Some(target - unwrapped);
            self.last_out = target as u64;
            return target as u64;
        }
        // Tracks interleave loosely in a TS (audio PES may trail video by a second), so no
        // cross-track clamp here: each track keeps its own order (see `TsIngest`).
        let out = mapped.max(0) as u64;
        self.last_out = self.last_out.max(out);
        out
    }
}

/// MPEG-TS in (a camera or ffmpeg sending TS over TCP/UDP, a pipe or a file): PES video into
/// the Annex B assembler, PES audio into the ADTS splitter, PES timestamps kept.
pub struct TsIngest {
    demux: crate::proto::ts_demux::TsDemuxer,
    video: Option<VideoPipeline>,
    audio: AudioPipeline,
    clock: TsClock,
    max_au_bytes: usize,
}

impl TsIngest {
    pub fn new(max_au_bytes: usize) -> Self {
        TsIngest {
            demux: crate::proto::ts_demux::TsDemuxer::new(max_au_bytes),
            video: None,
            audio: AudioPipeline::new(),
            clock: TsClock::default(),
            max_au_bytes,
        }
    }

    pub fn feed(&mut self, data: &[u8], hub: &SharedHub, epoch: Epoch) {
        let TsIngest {
            demux,
            video,
            audio,
            clock,
            max_au_bytes,
        } = self;
        let arrival = epoch.ticks(Instant::now(), VIDEO_CLOCK_HZ);
        let now_ms = epoch.now_ms();
        demux.push(data, &mut |pes| {
            let Some(pts_raw) = pes.pts_90k else { return };
            let dts_raw = pes.dts_90k.unwrap_or(pts_raw);
            let dts = clock.map(dts_raw, arrival);
            let pts = dts + (pts_raw.wrapping_sub(dts_raw) & ((1 << 33) - 1)) % (10 * 90_000);
            match pes.stream_type {
                0x1b | 0x24 => {
                    let codec = if pes.stream_type == 0x24 {
                        Codec::H265
                    } else {
                        Codec::H264
                    };
                    let v =
                        video.get_or_insert_with(|| VideoPipeline::new(codec, 0.0, *max_au_bytes));
                    v.feed_timed(pes.payload, pts, dts, hub, now_ms);
                }
                0x0f => audio.feed_timed(pes.payload, pts, hub, now_ms),
                _ => {}
            }
        });
    }
}

/// Exponential backoff, capped; reset after a source ran long enough to count as healthy.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    min_ms: u32,
    max_ms: u32,
    next_ms: u32,
    pub attempts: u32,
}

impl Backoff {
    pub fn new(min_ms: u32, max_ms: u32) -> Self {
        Backoff {
            min_ms,
            max_ms,
            next_ms: min_ms,
            attempts: 0,
        }
    }
    /// After a source ended (`Ok`) or failed (`Err`): logs one line with the delay and the
    /// attempt, and sleeps that long. `started` is when the source was (re)started.
    pub fn wait_to_restart(
        &mut self,
        name: &str,
        what: &str,
        started: Instant,
        result: Result<(), String>,
    ) {
        let delay = self.next_delay(started.elapsed());
        let ms = delay.as_millis();
        match result {
            Ok(()) => log::warn!(
                "[{name}] {what} source ended; restarting in {ms} ms (attempt {})",
                self.attempts
            ),
            Err(e) => log::warn!(
                "[{name}] {what} source failed: {e}; restarting in {ms} ms (attempt {})",
                self.attempts
            ),
        }
        std::thread::sleep(delay);
    }

    /// The delay before the next attempt; doubles each time up to the cap.
    pub fn next_delay(&mut self, ran_for: Duration) -> Duration {
        if ran_for > Duration::from_secs(10) {
            self.next_ms = self.min_ms;
        }
        let d = self.next_ms;
        self.next_ms = (self.next_ms.saturating_mul(2)).min(self.max_ms);
        self.attempts += 1;
        Duration::from_millis(d as u64)
    }
}

/// Starts a stream's video input on its own thread (restarting the source as needed) and,
/// for `testsrc`, the tone with it. Returns at once.
pub fn spawn_video(
    cfg: SourceConfig,
    plan: StreamPlan,
    hub: SharedHub,
    epoch: Epoch,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let name = lock(&hub).name.clone();
    std::thread::Builder::new()
        .name(format!("ingest-{name}"))
        .spawn(move || run_video(cfg, plan, hub, epoch))
}

thread_local! {
    /// This ingest thread's stop flag (set by [`spawn_video_stoppable`]/[`spawn_audio_stoppable`]).
    static STOP: std::cell::RefCell<Option<Arc<AtomicBool>>> = const { std::cell::RefCell::new(None) };
}

/// True when this ingest thread was told to stop (its stream's source was replaced from the
/// web page). Checked after every read and before every restart, so a stopped thread
/// publishes nothing more and drops its encoder (`ChildGuard` kills it); a read that blocks
/// forever (a silent UDP or TCP peer) keeps the old thread parked until data or an error.
fn stopped() -> bool {
    STOP.with(|s| {
        s.borrow()
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
    })
}

/// [`spawn_video`] with a stop flag: setting it ends the thread (see `stopped`).
pub fn spawn_video_stoppable(
    cfg: SourceConfig,
    plan: StreamPlan,
    hub: SharedHub,
    epoch: Epoch,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let name = lock(&hub).name.clone();
    std::thread::Builder::new()
        .name(format!("ingest-{name}"))
        .spawn(move || {
            STOP.with(|s| *s.borrow_mut() = Some(stop));
            run_video(cfg, plan, hub, epoch)
        })
}

/// [`spawn_audio`] with a stop flag.
pub fn spawn_audio_stoppable(
    cfg: SourceConfig,
    hub: SharedHub,
    epoch: Epoch,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let name = lock(&hub).name.clone();
    std::thread::Builder::new()
        .name(format!("ingest-{name}-audio"))
        .spawn(move || {
            STOP.with(|s| *s.borrow_mut() = Some(stop));
            run_audio(cfg, hub, epoch)
        })
}

/// Starts a stream's separate audio input on its own thread.
pub fn spawn_audio(
    cfg: SourceConfig,
    hub: SharedHub,
    epoch: Epoch,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let name = lock(&hub).name.clone();
    std::thread::Builder::new()
        .name(format!("ingest-{name}-audio"))
        .spawn(move || run_audio(cfg, hub, epoch))
}

fn run_video(cfg: SourceConfig, plan: StreamPlan, hub: SharedHub, epoch: Epoch) {
    let name = lock(&hub).name.clone();
    if cfg.kind == SourceKind::Testsrc {
        return run_testsrc(cfg, plan, &hub, epoch);
    }
    let codec = match cfg.format {
        SourceFormat::H265 => Codec::H265,
        _ => Codec::H264,
    };
    if cfg.format == SourceFormat::Mpegts {
        return run_mpegts(cfg, plan, hub, epoch);
    }
    let mut pipe = VideoPipeline::new(codec, cfg.fps, plan.max_au_bytes);
    let mut buf = vec![0u8; INGEST_READ_BUFFER_BYTES].into_boxed_slice();
    let mut backoff = Backoff::new(cfg.restart_min_ms, cfg.restart_max_ms);
    loop {
        let started = Instant::now();
        let mut feed = |d: &[u8], eow: bool| feed_video(&mut pipe, d, eow, &hub, epoch);
        let result = match cfg.kind {
            SourceKind::Exec => read_exec(&cfg, &name, &mut buf, &mut feed),
            SourceKind::Stdin => read_stdin(&mut buf, &mut feed),
            // A TCP or UDP read ends wherever the network cut it, not where the encoder's
            // write ended: those wait for the next AU instead.
            SourceKind::Tcp => read_tcp(&cfg, &name, &mut buf, &mut |d, _| feed(d, false)),
            SourceKind::Udp => read_udp(&cfg, &mut buf, &mut |d, _| feed(d, false)),
            SourceKind::File => run_file_video(&cfg, &mut pipe, &mut buf, &hub, epoch),
            SourceKind::Testsrc => unreachable!("handled above"),
        };
        if stopped() {
            return;
        }
        pipe.source_restarted();
        lock(&hub).source_restarted();
        backoff.wait_to_restart(&name, "video", started, result);
        if stopped() {
            return;
        }
    }
}

fn run_mpegts(cfg: SourceConfig, plan: StreamPlan, hub: SharedHub, epoch: Epoch) {
    let name = lock(&hub).name.clone();
    let mut ts = TsIngest::new(plan.max_au_bytes);
    let mut buf = vec![0u8; INGEST_READ_BUFFER_BYTES].into_boxed_slice();
    let mut backoff = Backoff::new(cfg.restart_min_ms, cfg.restart_max_ms);
    loop {
        let started = Instant::now();
        let mut feed = |d: &[u8], _eow: bool| ts.feed(d, &hub, epoch);
        let result = match cfg.kind {
            SourceKind::Exec => read_exec(&cfg, &name, &mut buf, &mut feed),
            SourceKind::Stdin => read_stdin(&mut buf, &mut feed),
            SourceKind::Tcp => read_tcp(&cfg, &name, &mut buf, &mut feed),
            SourceKind::Udp => read_udp(&cfg, &mut buf, &mut feed),
            SourceKind::File => {
                Err("MPEG-TS files: use ffmpeg -re ... -f mpegts pipe: with kind = \"exec\"".into())
            }
            SourceKind::Testsrc => return,
        };
        if stopped() {
            return;
        }
        backoff.wait_to_restart(&name, "MPEG-TS", started, result);
        if stopped() {
            return;
        }
    }
}

fn feed_video(pipe: &mut VideoPipeline, d: &[u8], eow: bool, hub: &SharedHub, epoch: Epoch) {
    let t = epoch.ticks(Instant::now(), VIDEO_CLOCK_HZ);
    pipe.feed(d, eow, hub, &mut || t, epoch.now_ms());
}

fn run_audio(cfg: SourceConfig, hub: SharedHub, epoch: Epoch) {
    let name = lock(&hub).name.clone();
    let mut pipe = AudioPipeline::new();
    let mut buf = vec![0u8; INGEST_READ_BUFFER_BYTES].into_boxed_slice();
    let mut backoff = Backoff::new(cfg.restart_min_ms, cfg.restart_max_ms);
    loop {
        let started = Instant::now();
        let mut feed = |d: &[u8], _eow: bool| {
            let now = Instant::now();
            pipe.feed(d, &hub, epoch, &mut || now, epoch.now_ms());
        };
        let result = match cfg.kind {
            SourceKind::Exec => read_exec(&cfg, &name, &mut buf, &mut feed),
            SourceKind::Stdin => read_stdin(&mut buf, &mut feed),
            SourceKind::Tcp => read_tcp(&cfg, &name, &mut buf, &mut feed),
            SourceKind::Udp => read_udp(&cfg, &mut buf, &mut feed),
            SourceKind::File => run_file_audio(&cfg, &mut pipe, &mut buf, &hub, epoch),
            SourceKind::Testsrc => return,
        };
        if stopped() {
            return;
        }
        backoff.wait_to_restart(&name, "audio", started, result);
        if stopped() {
            return;
        }
    }
}

type Feed<'a> = dyn FnMut(&[u8], bool) + 'a;

/// Kills the encoder when the reader gives up on it (error, restart, or daemon exit).
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn read_exec(
    cfg: &SourceConfig,
    name: &str,
    buf: &mut [u8],
    feed: &mut Feed<'_>,
) -> Result<(), String> {
    use std::process::{Command, Stdio};
    let mut cmd = match &cfg.shell {
        Some(line) => {
            let mut c = Command::new("sh");
            c.arg("-c").arg(line);
            c
        }
        None => {
            let mut c = Command::new(&cfg.command[0]);
            c.args(&cfg.command[1..]);
            c
        }
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // systemd's notify socket and watchdog are ours (sd_notify(3)): an encoder that speaks
        // sd_notify must not report READY or feed the watchdog on our behalf.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID");
    let program = cfg.shell.as_deref().unwrap_or(&cfg.command[0]).to_string();
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start `{program}`: {e}"))?;
    let mut child = ChildGuard(child);
    log::info!(
        "[{name}] encoder started: `{program}` (pid {})",
        child.0.id()
    );
    let mut stdout = child.0.stdout.take().ok_or("no stdout")?;
    if let Some(stderr) = child.0.stderr.take() {
        let tag = name.to_string();
        let _ = std::thread::Builder::new()
            .name(format!("encoder-log-{name}"))
            .spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(stderr).lines() {
                    match line {
                        Ok(l) => log::info!("[{tag}] encoder: {}", l.trim_end()),
                        Err(_) => break,
                    }
                }
            });
    }
    loop {
        let n = match stdout.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("reading encoder output: {e}")),
        };
        if n == 0 {
            break;
        }
        if stopped() {
            return Ok(());
        }
        feed(&buf[..n], write_ended(n, buf.len()));
    }
    let status = child.0.wait().map_err(|e| e.to_string())?;
    Err(format!("encoder exited ({status})"))
}

fn read_stdin(buf: &mut [u8], feed: &mut Feed<'_>) -> Result<(), String> {
    let mut s = std::io::stdin().lock();
    loop {
        let n = match s.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("stdin: {e}")),
        };
        if n == 0 {
            // A closed stdin won't come back: wait a little less eagerly than a crash loop.
            std::thread::sleep(Duration::from_secs(1));
            return Err("stdin closed".into());
        }
        if stopped() {
            return Ok(());
        }
        feed(&buf[..n], write_ended(n, buf.len()));
    }
}

fn read_tcp(
    cfg: &SourceConfig,
    name: &str,
    buf: &mut [u8],
    feed: &mut Feed<'_>,
) -> Result<(), String> {
    use std::net::ToSocketAddrs;
    let addr = cfg.address.as_deref().unwrap_or_default();
    // Resolved again on every attempt: the encoder's address may change.
    let addrs: Vec<_> = addr
        .to_socket_addrs()
        .map_err(|e| format!("resolve {addr}: {e}"))?
        .collect();
    let mut last = format!("{addr}: no address");
    let mut stream = None;
    for a in addrs {
        match std::net::TcpStream::connect_timeout(&a, Duration::from_secs(5)) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("connect {a}: {e}"),
        }
    }
    let mut s = stream.ok_or(last)?;
    log::info!("[{name}] source connected to {addr}");
    loop {
        let n = match s.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("{addr}: {e}")),
        };
        if n == 0 {
            return Err(format!("{addr} closed the connection"));
        }
        if stopped() {
            return Ok(());
        }
        feed(&buf[..n], false);
    }
}

fn read_udp(cfg: &SourceConfig, buf: &mut [u8], feed: &mut Feed<'_>) -> Result<(), String> {
    let addr = cfg.address.as_deref().unwrap_or_default();
    let s = std::net::UdpSocket::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    loop {
        let n = s.recv(buf).map_err(|e| format!("{addr}: {e}"))?;
        if stopped() {
            return Ok(());
        }
        feed(&buf[..n], false);
    }
}

/// Sleeps until `due` (no-op when it has passed).
fn sleep_until(due: Instant) {
    let now = Instant::now();
    if due > now {
        std::thread::sleep(due - now);
    }
}

/// A file, looped at real-time pace: each AU's arrival is its slot on a virtual clock
/// (`start + n / fps`), so timestamps are exact and keep increasing across loops.
fn run_file_video(
    cfg: &SourceConfig,
    pipe: &mut VideoPipeline,
    buf: &mut [u8],
    hub: &SharedHub,
    epoch: Epoch,
) -> Result<(), String> {
    let path = cfg.path.as_ref().ok_or("no path")?;
    let fps = if cfg.fps > 0.0 { cfg.fps } else { 30.0 };
    let frame = Duration::from_secs_f64(1.0 / fps);
    let start = Instant::now();
    let base = pipe.published;
    loop {
        let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut any = false;
        loop {
            // Small reads keep publication close to each AU's slot.
            let n = f
                .read(&mut buf[..4096])
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if n == 0 {
                break;
            }
            any = true;
            let mut slot = pipe.published - base;
            let mut arrival = || {
                let t = epoch.ticks(start + frame.mul_f64(slot as f64), VIDEO_CLOCK_HZ);
                slot += 1;
                t
            };
            if stopped() {
                return Ok(());
            }
            pipe.feed(&buf[..n], false, hub, &mut arrival, epoch.now_ms());
            sleep_until(start + frame.mul_f64((pipe.published - base) as f64));
        }
        if !any {
            return Err(format!("{} is empty", path.display()));
        }
        // End of file: the last AU is complete.
        let mut slot = pipe.published - base;
        let mut arrival = || {
            let t = epoch.ticks(start + frame.mul_f64(slot as f64), VIDEO_CLOCK_HZ);
            slot += 1;
            t
        };
        pipe.feed(&[], true, hub, &mut arrival, epoch.now_ms());
        pipe.source_restarted();
    }
}

/// An ADTS file, looped at real-time pace (1024 samples per frame).
fn run_file_audio(
    cfg: &SourceConfig,
    pipe: &mut AudioPipeline,
    buf: &mut [u8],
    hub: &SharedHub,
    epoch: Epoch,
) -> Result<(), String> {
    let path = cfg.path.as_ref().ok_or("no path")?;
    let start = Instant::now();
    let base = pipe.published;
    loop {
        let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut any = false;
        loop {
            let n = f
                .read(&mut buf[..1024])
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if n == 0 {
                break;
            }
            any = true;
            let rate = lock(hub).audio.map_or(48_000, |a| a.sample_rate) as f64;
            let per_frame = Duration::from_secs_f64(1024.0 / rate);
            let mut slot = pipe.published - base;
            let mut arrival = || {
                let t = start + per_frame.mul_f64(slot as f64);
                slot += 1;
                t
            };
            if stopped() {
                return Ok(());
            }
            pipe.feed(&buf[..n], hub, epoch, &mut arrival, epoch.now_ms());
            sleep_until(start + per_frame.mul_f64((pipe.published - base) as f64));
        }
        if !any {
            return Err(format!("{} is empty", path.display()));
        }
    }
}

/// The built-in test source: a moving H.264 pattern and an AAC tone, paced in real time.
fn run_testsrc(cfg: SourceConfig, plan: StreamPlan, hub: &SharedHub, epoch: Epoch) {
    let name = lock(hub).name.clone();
    let fps = if cfg.fps > 0.0 {
        cfg.fps.round() as u32
    } else {
        30
    };
    let mut pattern = match TestPattern::new(cfg.width, cfg.height, fps, cfg.gop_frames) {
        Ok(p) => p,
        Err(e) => {
            log::error!("[{name}] testsrc: {e:?}");
            return;
        }
    };
    let mut tone = if cfg.audio {
        TestTone::new(48_000, 1).ok()
    } else {
        None
    };
    let mut vbuf = vec![0u8; pattern.max_frame_len()].into_boxed_slice();
    let mut abuf = vec![0u8; tone.as_ref().map_or(0, |t| t.max_frame_len())].into_boxed_slice();
    let mut vpipe = VideoPipeline::new(Codec::H264, fps as f64, plan.max_au_bytes);
    let mut apipe = AudioPipeline::new();
    log::info!(
        "[{name}] test source: {}x{} @ {fps} fps, GOP {}{}",
        cfg.width,
        cfg.height,
        cfg.gop_frames,
        if tone.is_some() {
            ", AAC 48 kHz tone"
        } else {
            ""
        }
    );
    let start = Instant::now();
    let start_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let vframe = Duration::from_secs_f64(1.0 / fps as f64);
    let aframe = Duration::from_secs_f64(1024.0 / 48_000.0);
    let (mut vn, mut an) = (0u64, 0u64);
    loop {
        let vdue = start + vframe.mul_f64(vn as f64);
        let adue = start + aframe.mul_f64(an as f64);
        let video_next = tone.is_none() || vdue <= adue;
        sleep_until(if video_next { vdue } else { adue });
        if stopped() {
            return;
        }
        if video_next {
            if cfg.paint_clock {
                pattern.set_stamp(start_unix_ms + vdue.duration_since(start).as_millis() as u64);
            }
            match pattern.next_frame(&mut vbuf) {
                Ok((len, _key)) => {
                    let t = epoch.ticks(vdue, VIDEO_CLOCK_HZ);
                    vpipe.feed(&vbuf[..len], true, hub, &mut || t, epoch.now_ms());
                }
                Err(e) => log::error!("[{name}] testsrc frame: {e:?}"),
            }
            vn += 1;
        } else if let Some(t) = tone.as_mut() {
            match t.next_frame(&mut abuf) {
                Ok(len) => apipe.feed(&abuf[..len], hub, epoch, &mut || adue, epoch.now_ms()),
                Err(e) => log::error!("[{name}] testsrc audio: {e:?}"),
            }
            an += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_end_heuristic() {
        assert!(write_ended(1234, 65536));
        assert!(!write_ended(4096, 65536), "a page-sized piece may continue");
        assert!(!write_ended(32768, 65536), "ffmpeg's avio buffer size");
        assert!(!write_ended(65536, 65536), "a full buffer may continue");
        assert!(!write_ended(0, 65536));
    }

    #[test]
    fn ts_clock_maps_unwraps_and_reanchors() {
        let mut c = TsClock::default();
        assert_eq!(c.map(1_000, 90_000), 90_000);
        assert_eq!(c.map(4_000, 95_000), 93_000); // follows the source, not arrival
                                                  // 33-bit wrap: raw goes from near 2^33 to small, output keeps increasing.
        let mut c = TsClock::default();
        let top = (1u64 << 33) - 3000;
        assert_eq!(c.map(top, 90_000), 90_000);
        assert_eq!(c.map(0, 93_000), 93_000);
        // A 20 s jump (source restarted): re-anchor at arrival, never backwards.
        assert_eq!(c.map(20 * 90_000, 96_000), 96_000);
        assert!(c.map(20 * 90_000 + 3000, 99_000) >= 96_000);
    }

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let mut b = Backoff::new(500, 3000);
        let z = Duration::ZERO;
        let d: Vec<u128> = (0..5).map(|_| b.next_delay(z).as_millis()).collect();
        assert_eq!(d, vec![500, 1000, 2000, 3000, 3000]);
        assert_eq!(b.next_delay(Duration::from_secs(11)).as_millis(), 500);
    }
}

#[cfg(test)]
mod ts_tests {
    use super::*;
    use crate::media::fanout::StreamHub;
    use crate::media::ring::{Lookup, MediaRing};
    use std::sync::{Arc, Mutex};

    /// ffmpeg's TS (H.264 + AAC, several AAC frames per PES) through TsIngest: timestamps
    /// strictly increase per track, audio steps by 1024 samples.
    #[test]
    fn ts_fixture_timestamps_increase_per_track() {
        let ts = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/ffmpeg_testsrc2_sine_1s.ts"
        ))
        .unwrap();
        let hub: SharedHub = Arc::new(Mutex::new(StreamHub::new(
            "t",
            MediaRing::new(1 << 20, 1024),
            4,
        )));
        let mut ingest = TsIngest::new(256 * 1024);
        let epoch = Epoch(Instant::now());
        for c in ts.chunks(1000) {
            ingest.feed(c, &hub, epoch);
        }
        let hub = lock(&hub);
        let mut last: [Option<u64>; 2] = [None, None];
        let mut audio = Vec::new();
        for q in hub.ring.tail()..hub.ring.head() {
            let Lookup::Frame(f) = hub.ring.get(q) else {
                panic!()
            };
            let t = f.meta.track.index();
            if let Some(l) = last[t] {
                assert!(f.meta.dts > l, "track {t}: {} after {l}", f.meta.dts);
            }
            last[t] = Some(f.meta.dts);
            if t == 1 {
                audio.push(f.meta.pts);
            }
        }
        assert!(audio.len() > 30, "{} audio frames", audio.len());
        for w in audio.windows(2) {
            assert!((1023..=1025).contains(&(w[1] - w[0])), "audio step {:?}", w);
        }
    }
}

//! Source drivers: the shells that own encoder processes, pipes, files and sockets, and feed
//! the ingest cores, which feed the stream's hub.
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
use crate::media::fanout::StreamHub;
use crate::media::{h264, AudioParams, Codec, FrameMeta, Track, VideoParams, VIDEO_CLOCK_HZ};
use smol::io::AsyncReadExt;
use std::cell::RefCell;
use std::io::Read;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The daemon's clock origin: every pts and `now_ms` counts from here.
#[derive(Clone, Copy, Debug)]
pub struct Epoch(pub Instant);

impl Epoch {
    pub fn now_ms(&self) -> u64 {
        self.0.elapsed().as_millis() as u64
    }
    pub fn ticks(&self, at: Instant, clock_hz: u32) -> u64 {
        let d = at.saturating_duration_since(self.0);
        (d.as_micros() as u64).saturating_mul(clock_hz as u64) / 1_000_000
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
        hub: &RefCell<StreamHub>,
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
            let mut hub = hub.borrow_mut();
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

    /// The source restarted: forget the partial AU (timestamps keep increasing).
    pub fn source_restarted(&mut self) {
        self.assembler.reset_partial();
    }
}

/// Audio: ADTS in, stamped AAC frames into the hub.
pub struct AudioPipeline {
    splitter: AdtsSplitter,
    stamper: Option<AudioStamper>,
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
            published: 0,
        }
    }

    /// Feeds ADTS bytes; `arrival` gives each frame's arrival time in the daemon clock
    /// (as an Instant) so it can be expressed in the frame's own sample rate.
    pub fn feed(
        &mut self,
        data: &[u8],
        hub: &RefCell<StreamHub>,
        epoch: Epoch,
        arrival: &mut dyn FnMut() -> Instant,
        now_ms: u64,
    ) {
        let AudioPipeline {
            splitter,
            stamper,
            published,
        } = self;
        splitter.push(data, &mut |p: AudioParams, frame: &[u8]| {
            let mut hub = hub.borrow_mut();
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

/// Runs a stream's video source forever (restarting it as needed).
pub async fn run_video(
    cfg: SourceConfig,
    plan: StreamPlan,
    hub: Rc<RefCell<StreamHub>>,
    epoch: Epoch,
) {
    let name = hub.borrow().name.clone();
    if cfg.kind == SourceKind::Testsrc {
        return run_testsrc(cfg, plan, hub, epoch).await;
    }
    let codec = match cfg.format {
        SourceFormat::H265 => Codec::H265,
        _ => Codec::H264,
    };
    if cfg.format == SourceFormat::Mpegts {
        log::error!("[{name}] format mpegts is not supported by this build yet");
        return;
    }
    let mut pipe = VideoPipeline::new(codec, cfg.fps, plan.max_au_bytes);
    let mut buf = vec![0u8; INGEST_READ_BUFFER_BYTES].into_boxed_slice();
    let mut backoff = Backoff::new(cfg.restart_min_ms, cfg.restart_max_ms);
    loop {
        let started = Instant::now();
        let result = match cfg.kind {
            SourceKind::Exec => {
                read_exec(&cfg, &name, &mut buf, &mut |d, eow| {
                    feed_video(&mut pipe, d, eow, &hub, epoch)
                })
                .await
            }
            SourceKind::Stdin => {
                read_stdin(&mut buf, &mut |d, eow| {
                    feed_video(&mut pipe, d, eow, &hub, epoch)
                })
                .await
            }
            SourceKind::Tcp => {
                read_tcp(&cfg, &mut buf, &mut |d, _| {
                    feed_video(&mut pipe, d, false, &hub, epoch)
                })
                .await
            }
            SourceKind::Udp => {
                read_udp(&cfg, &mut buf, &mut |d, _| {
                    feed_video(&mut pipe, d, false, &hub, epoch)
                })
                .await
            }
            SourceKind::File => run_file_video(&cfg, &mut pipe, &mut buf, &hub, epoch).await,
            SourceKind::Testsrc => unreachable!("handled above"),
        };
        pipe.source_restarted();
        let delay = backoff.next_delay(started.elapsed());
        match result {
            Ok(()) => log::warn!(
                "[{name}] video source ended; restarting in {} ms",
                delay.as_millis()
            ),
            Err(e) => log::warn!(
                "[{name}] video source failed: {e}; restarting in {} ms (attempt {})",
                delay.as_millis(),
                backoff.attempts
            ),
        }
        smol::Timer::after(delay).await;
    }
}

fn feed_video(
    pipe: &mut VideoPipeline,
    d: &[u8],
    eow: bool,
    hub: &RefCell<StreamHub>,
    epoch: Epoch,
) {
    let now = Instant::now();
    let t = epoch.ticks(now, VIDEO_CLOCK_HZ);
    pipe.feed(d, eow, hub, &mut || t, epoch.now_ms());
}

/// Runs a stream's separate audio input forever.
pub async fn run_audio(cfg: SourceConfig, hub: Rc<RefCell<StreamHub>>, epoch: Epoch) {
    let name = hub.borrow().name.clone();
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
            SourceKind::Exec => read_exec(&cfg, &name, &mut buf, &mut feed).await,
            SourceKind::Stdin => read_stdin(&mut buf, &mut feed).await,
            SourceKind::Tcp => read_tcp(&cfg, &mut buf, &mut feed).await,
            SourceKind::Udp => read_udp(&cfg, &mut buf, &mut feed).await,
            SourceKind::File => run_file_audio(&cfg, &mut pipe, &mut buf, &hub, epoch).await,
            SourceKind::Testsrc => return,
        };
        let delay = backoff.next_delay(started.elapsed());
        match result {
            Ok(()) => log::warn!(
                "[{name}] audio source ended; restarting in {} ms",
                delay.as_millis()
            ),
            Err(e) => log::warn!(
                "[{name}] audio source failed: {e}; restarting in {} ms",
                delay.as_millis()
            ),
        }
        smol::Timer::after(delay).await;
    }
}

type Feed<'a> = dyn FnMut(&[u8], bool) + 'a;

async fn read_exec(
    cfg: &SourceConfig,
    name: &str,
    buf: &mut [u8],
    feed: &mut Feed<'_>,
) -> Result<(), String> {
    let mut cmd = match &cfg.shell {
        Some(line) => {
            let mut c = smol::process::Command::new("sh");
            c.arg("-c").arg(line);
            c
        }
        None => {
            let mut c = smol::process::Command::new(&cfg.command[0]);
            c.args(&cfg.command[1..]);
            c
        }
    };
    cmd.stdin(smol::process::Stdio::null())
        .stdout(smol::process::Stdio::piped())
        .stderr(smol::process::Stdio::piped())
        .kill_on_drop(true);
    let program = cfg.shell.as_deref().unwrap_or(&cfg.command[0]).to_string();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start `{program}`: {e}"))?;
    log::info!("[{name}] encoder started: `{program}` (pid {})", child.id());
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    if let Some(stderr) = child.stderr.take() {
        let tag = name.to_string();
        crate::net::spawn(async move {
            use smol::io::AsyncBufReadExt;
            let mut lines = smol::io::BufReader::new(stderr).lines();
            while let Some(Ok(line)) = smol::stream::StreamExt::next(&mut lines).await {
                log::info!("[{tag}] encoder: {}", line.trim_end());
            }
        })
        .detach();
    }
    loop {
        let n = stdout
            .read(buf)
            .await
            .map_err(|e| format!("reading encoder output: {e}"))?;
        if n == 0 {
            break;
        }
        feed(&buf[..n], write_ended(n, buf.len()));
    }
    let status = child.status().await.map_err(|e| e.to_string())?;
    Err(format!("encoder exited ({status})"))
}

async fn read_stdin(buf: &mut [u8], feed: &mut Feed<'_>) -> Result<(), String> {
    let stdin = std::io::stdin();
    match smol::Async::new(stdin) {
        Ok(mut a) => loop {
            let n = a.read(buf).await.map_err(|e| format!("stdin: {e}"))?;
            if n == 0 {
                return Err("stdin closed".into());
            }
            feed(&buf[..n], write_ended(n, buf.len()));
        },
        Err(_) => {
            // Not pollable (a regular file): read it as a plain stream.
            let mut s = std::io::stdin().lock();
            loop {
                let n = s.read(buf).map_err(|e| format!("stdin: {e}"))?;
                if n == 0 {
                    return Err("stdin closed".into());
                }
                feed(&buf[..n], false);
                smol::future::yield_now().await;
            }
        }
    }
}

async fn read_tcp(cfg: &SourceConfig, buf: &mut [u8], feed: &mut Feed<'_>) -> Result<(), String> {
    let addr = cfg.address.as_deref().unwrap_or_default();
    // Resolved again on every attempt: the encoder's address may change.
    let mut s = smol::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    log::info!("source connected to {addr}");
    loop {
        let n = s.read(buf).await.map_err(|e| format!("{addr}: {e}"))?;
        if n == 0 {
            return Err(format!("{addr} closed the connection"));
        }
        feed(&buf[..n], false);
    }
}

async fn read_udp(cfg: &SourceConfig, buf: &mut [u8], feed: &mut Feed<'_>) -> Result<(), String> {
    let addr = cfg.address.as_deref().unwrap_or_default();
    let s = smol::net::UdpSocket::bind(addr)
        .await
        .map_err(|e| format!("bind {addr}: {e}"))?;
    loop {
        let n = s.recv(buf).await.map_err(|e| format!("{addr}: {e}"))?;
        feed(&buf[..n], false);
    }
}

/// A file, looped at real-time pace: each AU's arrival is its slot on a virtual clock
/// (`start + n / fps`), so timestamps are exact and keep increasing across loops.
async fn run_file_video(
    cfg: &SourceConfig,
    pipe: &mut VideoPipeline,
    buf: &mut [u8],
    hub: &RefCell<StreamHub>,
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
            pipe.feed(&buf[..n], false, hub, &mut arrival, epoch.now_ms());
            let due = start + frame.mul_f64((pipe.published - base) as f64);
            if due > Instant::now() {
                smol::Timer::at(due).await;
            }
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
async fn run_file_audio(
    cfg: &SourceConfig,
    pipe: &mut AudioPipeline,
    buf: &mut [u8],
    hub: &RefCell<StreamHub>,
    epoch: Epoch,
) -> Result<(), String> {
    let path = cfg.path.as_ref().ok_or("no path")?;
    let start = Instant::now();
    let base = pipe.published;
    loop {
        let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        loop {
            let n = f
                .read(&mut buf[..1024])
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if n == 0 {
                break;
            }
            let rate = hub.borrow().audio.map_or(48_000, |a| a.sample_rate) as f64;
            let per_frame = Duration::from_secs_f64(1024.0 / rate);
            let mut slot = pipe.published - base;
            let mut arrival = || {
                let t = start + per_frame.mul_f64(slot as f64);
                slot += 1;
                t
            };
            pipe.feed(&buf[..n], hub, epoch, &mut arrival, epoch.now_ms());
            let due = start + per_frame.mul_f64((pipe.published - base) as f64);
            if due > Instant::now() {
                smol::Timer::at(due).await;
            }
        }
    }
}

/// The built-in test source: a moving H.264 pattern and an AAC tone, paced in real time.
async fn run_testsrc(
    cfg: SourceConfig,
    plan: StreamPlan,
    hub: Rc<RefCell<StreamHub>>,
    epoch: Epoch,
) {
    let name = hub.borrow().name.clone();
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
    let vframe = Duration::from_secs_f64(1.0 / fps as f64);
    let aframe = Duration::from_secs_f64(1024.0 / 48_000.0);
    let (mut vn, mut an) = (0u64, 0u64);
    loop {
        let vdue = start + vframe.mul_f64(vn as f64);
        let adue = start + aframe.mul_f64(an as f64);
        let video_next = tone.is_none() || vdue <= adue;
        let due = if video_next { vdue } else { adue };
        if due > Instant::now() {
            smol::Timer::at(due).await;
        }
        if video_next {
            match pattern.next_frame(&mut vbuf) {
                Ok((len, _key)) => {
                    let t = epoch.ticks(vdue, VIDEO_CLOCK_HZ);
                    vpipe.feed(&vbuf[..len], true, &hub, &mut || t, epoch.now_ms());
                }
                Err(e) => log::error!("[{name}] testsrc frame: {e:?}"),
            }
            vn += 1;
        } else if let Some(t) = tone.as_mut() {
            match t.next_frame(&mut abuf) {
                Ok(len) => apipe.feed(&abuf[..len], &hub, epoch, &mut || adue, epoch.now_ms()),
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
    fn backoff_doubles_caps_and_resets() {
        let mut b = Backoff::new(500, 3000);
        let z = Duration::ZERO;
        let d: Vec<u128> = (0..5).map(|_| b.next_delay(z).as_millis()).collect();
        assert_eq!(d, vec![500, 1000, 2000, 3000, 3000]);
        assert_eq!(b.next_delay(Duration::from_secs(11)).as_millis(), 500);
    }
}

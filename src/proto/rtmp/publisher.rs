//! The RTMP publish session: handshake → connect → releaseStream/FCPublish/createStream →
//! publish → media (RTMP spec 7.2.1.1, 7.2.1.3, 7.2.2.6; the FMLE command order ffmpeg uses).
//!
//! Owns: the session state machine, protocol-control replies (acknowledgements, ping
//! responses), the media timeline (ms from 0, per connection), FLV tagging of ring frames, and
//! the drop-until-keyframe policy of the byte-capped media queue. Must not do I/O, read the
//! clock, or allocate per frame: buffers are allocated at construction and reused.

use super::amf0::{self, Amf0Decoder, Amf0Value};
use super::chunk::{msg_type, ChunkReader, ChunkWriter, Message, MessageHeader};
use super::flv;
use super::handshake::{self, ClientHandshake, C1_RANDOM_BYTES};
use super::queue::{ControlQueue, MediaQueue, RECORD_OVERHEAD_BYTES};
use super::{OriginText, RejectKind, RtmpError, RtmpUrl};
use crate::media::{AudioParams, Codec, FrameMeta, Track, VideoParams, VIDEO_CLOCK_HZ};

/// Chunk stream ids we use. Control-queue streams {2, 3, 8} and media-queue streams {4, 5, 6}
/// are disjoint, so the two queues can be interleaved at message boundaries without breaking
/// the per-chunk-stream header compression state.
const CSID_PROTOCOL: u32 = 2;
const CSID_COMMAND: u32 = 3;
const CSID_AUDIO: u32 = 4;
const CSID_DATA: u32 = 5;
const CSID_VIDEO: u32 = 6;
const CSID_STREAM_COMMAND: u32 = 8;

/// Transaction ids of our NetConnection commands.
const TXN_CONNECT: f64 = 1.0;
const TXN_RELEASE_STREAM: f64 = 2.0;
const TXN_FC_PUBLISH: f64 = 3.0;
const TXN_CREATE_STREAM: f64 = 4.0;

/// Handshake + control + command bytes in flight at once; C0+C1 or C2 (1537) dominate.
const CONTROL_QUEUE_BYTES: usize = 16 * 1024;
/// How often `poll_timeout` asks for a watchdog check while publishing.
const WATCHDOG_TICK_MS: u64 = 1000;

/// User Control event types (spec 6.2 / 7.1.7).
const UC_PING_REQUEST: u16 = 6;
const UC_PING_RESPONSE: u16 = 7;

/// Tunables of one publish connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtmpConfig {
    /// Capacity of the outgoing media queue in bytes, allocated once (declared media memory).
    /// Frames that do not fit are dropped until the next keyframe.
    pub media_queue_bytes: usize,
    /// Our outgoing chunk size, announced with Set Chunk Size right after the handshake.
    pub chunk_size: u32,
    /// Window Acknowledgement Size we announce: the origin acknowledges every this many bytes,
    /// which feeds the half-open watchdog. 0 = do not announce.
    pub window_ack_bytes: u32,
    /// Deadline from `new` to `NetStream.Publish.Start`.
    pub connect_timeout_ms: u64,
    /// Fail with [`RtmpError::AckStall`] when more than two windows stay unacknowledged this
    /// long. 0 = disabled.
    pub ack_stall_timeout_ms: u64,
}

impl Default for RtmpConfig {
    fn default() -> Self {
        RtmpConfig {
            media_queue_bytes: 1024 * 1024,
            chunk_size: 4096,
            window_ack_bytes: 256 * 1024,
            connect_timeout_ms: 10_000,
            ack_stall_timeout_ms: 20_000,
        }
    }
}

/// What `onMetaData` announces (FLV spec E.5). Set it with [`RtmpPublisher::set_stream_info`]
/// before media; otherwise it is derived from the first frame's parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamInfo {
    pub video: Option<VideoInfo>,
    pub audio: Option<AudioParams>,
    pub video_kbps: Option<u32>,
    pub audio_kbps: Option<u32>,
}

/// The video fields of `onMetaData`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VideoInfo {
    pub width: u32,
    pub height: u32,
    /// Frames per second as (num, den).
    pub fps: Option<(u32, u32)>,
}

impl StreamInfo {
    pub fn new(video: Option<&VideoParams>, audio: Option<AudioParams>) -> Self {
        StreamInfo {
            video: video.map(|v| VideoInfo {
                width: v.width,
                height: v.height,
                fps: v.fps,
            }),
            audio,
            video_kbps: None,
            audio_kbps: None,
        }
    }
}

/// Where the session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtmpState {
    /// Waiting for S0+S1+S2.
    Handshaking,
    /// connect / createStream / publish in progress.
    Connecting,
    /// `NetStream.Publish.Start` received; media is accepted.
    Publishing,
    /// Terminal: the shell should close the socket and reconnect with a new publisher.
    Failed { reason: RtmpError },
}

/// Counters for logs, the web page and the watchdog.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RtmpStats {
    /// Bytes handed to the shell by `poll_transmit`.
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Bytes the origin acknowledged (spec 5.4.3), unwrapped to 64 bits.
    pub bytes_acked: u64,
    pub video_frames_sent: u64,
    pub audio_frames_sent: u64,
    /// GOPs (or GOP tails) lost because the media queue was full.
    pub dropped_gops: u64,
    pub dropped_video_frames: u64,
    pub dropped_audio_frames: u64,
    /// Ping responses not sent because the control queue was full (a ping flood).
    pub dropped_pings: u64,
    pub queued_media_bytes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Handshake,
    WaitConnect,
    WaitCreateStream,
    WaitPublish,
    Publishing,
    Failed(RtmpError),
}

/// What the chunk reader must do after a protocol-control message.
enum ReaderAction {
    None,
    SetChunkSize(u32),
    Abort(u32),
}

/// Everything but the chunk reader, so a message borrowed from the reader can be handled.
struct Session {
    url: RtmpUrl,
    config: RtmpConfig,
    phase: Phase,
    handshake: ClientHandshake,
    writer: ChunkWriter,
    control: ControlQueue,
    media: MediaQueue,
    /// Command/metadata bodies (reused).
    scratch: Vec<u8>,
    /// The AVCDecoderConfigurationRecord last sent, and a buffer to build the next one.
    avc_config_sent: Vec<u8>,
    avc_config_next: Vec<u8>,
    asc_sent: Option<[u8; 2]>,
    metadata_sent: bool,
    stream_info: Option<StreamInfo>,
    stream_id: u32,
    started_ms: u64,
    peer_window_bytes: u32,
    last_ack_sent_at: u64,
    last_peer_ack_seq: u32,
    stall_since_ms: Option<u64>,
    last_tick_ms: u64,
    base_us: Option<u64>,
    last_rel_ms: [u64; 2],
    video_needs_key: bool,
    stats: RtmpStats,
}

/// A sans-IO RTMP publisher for one TCP (or TLS) connection. See the module docs of
/// `proto::rtmp` for the driving loop.
pub struct RtmpPublisher {
    reader: ChunkReader,
    s: Session,
}

impl RtmpPublisher {
    /// Parses `url` (see [`RtmpUrl::parse_with_key`]) and queues C0+C1 with the caller's random
    /// bytes, using [`RtmpConfig::default`].
    pub fn new(
        url: &str,
        key: Option<&str>,
        now_ms: u64,
        random_c1: [u8; C1_RANDOM_BYTES],
    ) -> Result<Self, RtmpError> {
        let url = RtmpUrl::parse_with_key(url, key)?;
        Ok(Self::with_config(
            url,
            now_ms,
            random_c1,
            RtmpConfig::default(),
        ))
    }

    /// Like [`RtmpPublisher::new`] with an already parsed URL and explicit tunables.
    pub fn with_config(
        url: RtmpUrl,
        now_ms: u64,
        random_c1: [u8; C1_RANDOM_BYTES],
        config: RtmpConfig,
    ) -> Self {
        let mut control = ControlQueue::new(CONTROL_QUEUE_BYTES);
        let c0c1 = handshake::c0c1(&random_c1);
        // A fresh queue of 16 KiB always has room for 1537 bytes.
        let _ = control.reserve(c0c1.len());
        super::chunk::ChunkSink::put(&mut control, &c0c1);
        RtmpPublisher {
            reader: ChunkReader::new(),
            s: Session {
                url,
                config,
                phase: Phase::Handshake,
                handshake: ClientHandshake::new(),
                writer: ChunkWriter::new(),
                control,
                media: MediaQueue::new(config.media_queue_bytes),
                scratch: Vec::with_capacity(1024),
                avc_config_sent: Vec::with_capacity(256),
                avc_config_next: Vec::with_capacity(256),
                asc_sent: None,
                metadata_sent: false,
                stream_info: None,
                stream_id: 0,
                started_ms: now_ms,
                peer_window_bytes: 0,
                last_ack_sent_at: 0,
                last_peer_ack_seq: 0,
                stall_since_ms: None,
                last_tick_ms: now_ms,
                base_us: None,
                last_rel_ms: [0; 2],
                video_needs_key: true,
                stats: RtmpStats::default(),
            },
        }
    }

    pub fn url(&self) -> &RtmpUrl {
        &self.s.url
    }

    pub fn state(&self) -> RtmpState {
        match self.s.phase {
            Phase::Handshake => RtmpState::Handshaking,
            Phase::WaitConnect | Phase::WaitCreateStream | Phase::WaitPublish => {
                RtmpState::Connecting
            }
            Phase::Publishing => RtmpState::Publishing,
            Phase::Failed(reason) => RtmpState::Failed { reason },
        }
    }

    pub fn stats(&self) -> RtmpStats {
        let mut st = self.s.stats;
        st.queued_media_bytes = self.s.media.queued_bytes() as u64;
        st
    }

    /// Bytes handed out by `poll_transmit` that the origin has not acknowledged yet (includes
    /// what sits in the kernel's socket buffer). Only meaningful with `window_ack_bytes > 0`.
    pub fn unacked_bytes(&self) -> u64 {
        self.s
            .stats
            .bytes_sent
            .saturating_sub(self.s.stats.bytes_acked)
    }

    /// The message stream id from `createStream` (0 before).
    pub fn stream_id(&self) -> u32 {
        self.s.stream_id
    }

    /// Sets what `onMetaData` announces; call before the first frame.
    pub fn set_stream_info(&mut self, info: StreamInfo) {
        self.s.stream_info = Some(info);
    }

    /// Feeds bytes read from the socket. On error the session is `Failed` and stays so.
    pub fn handle_input(&mut self, input: &[u8], now_ms: u64) -> Result<(), RtmpError> {
        if let Phase::Failed(e) = self.s.phase {
            return Err(e);
        }
        let r = self.handle_input_inner(input, now_ms);
        r.map_err(|e| self.s.fail(e))
    }

    fn handle_input_inner(&mut self, input: &[u8], now_ms: u64) -> Result<(), RtmpError> {
        self.s.stats.bytes_received += input.len() as u64;
        let mut rest = input;
        if self.s.phase == Phase::Handshake {
            let n = self.s.handshake.push(rest)?;
            rest = &rest[n..];
            if let Some(c2) = self.s.handshake.take_c2() {
                if !self.s.control.reserve(c2.len()) {
                    return Err(RtmpError::Protocol("control queue full during handshake"));
                }
                super::chunk::ChunkSink::put(&mut self.s.control, c2);
            }
            if !self.s.handshake.is_done() {
                return Ok(());
            }
            self.s.phase = Phase::WaitConnect;
            self.s.queue_connect()?;
        }
        while !rest.is_empty() {
            let (n, msg) = self.reader.push(rest)?;
            rest = &rest[n..];
            if let Some(m) = msg {
                let payload = self.reader.payload(&m);
                match self.s.on_message(&m, payload, now_ms)? {
                    ReaderAction::None => {}
                    ReaderAction::SetChunkSize(n) => self.reader.set_chunk_size(n)?,
                    ReaderAction::Abort(csid) => self.reader.abort(csid),
                }
                if let Phase::Failed(e) = self.s.phase {
                    return Err(e);
                }
            }
        }
        self.s.maybe_ack()
    }

    /// The peer closed the connection (read returned 0): the session fails with
    /// [`RtmpError::PeerClosed`] unless it already failed for a better reason.
    pub fn handle_eof(&mut self) {
        self.s.fail(RtmpError::PeerClosed);
    }

    /// When the shell should call [`RtmpPublisher::handle_timeout`] next (ms, same clock as
    /// `now_ms`). `None` once failed.
    pub fn poll_timeout(&self) -> Option<u64> {
        match self.s.phase {
            Phase::Failed(_) => None,
            Phase::Publishing => match self.s.stall_since_ms {
                Some(since) => Some(since + self.s.config.ack_stall_timeout_ms),
                None => Some(self.s.last_tick_ms + WATCHDOG_TICK_MS),
            },
            _ => Some(self.s.started_ms + self.s.config.connect_timeout_ms),
        }
    }

    /// Checks the connect deadline and the acknowledgement watchdog.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let s = &mut self.s;
        s.last_tick_ms = now_ms;
        match s.phase {
            Phase::Failed(_) => {}
            Phase::Publishing => {
                let window = s.config.window_ack_bytes as u64;
                if s.config.ack_stall_timeout_ms == 0 || window == 0 {
                    return;
                }
                let unacked = s.stats.bytes_sent.saturating_sub(s.stats.bytes_acked);
                if unacked <= 2 * window {
                    s.stall_since_ms = None;
                    return;
                }
                let since = *s.stall_since_ms.get_or_insert(now_ms);
                if now_ms.saturating_sub(since) >= s.config.ack_stall_timeout_ms {
                    s.fail(RtmpError::AckStall);
                }
            }
            _ => {
                if now_ms.saturating_sub(s.started_ms) >= s.config.connect_timeout_ms {
                    s.fail(RtmpError::ConnectTimeout);
                }
            }
        }
    }

    /// Copies bytes to write to the socket into `out`; returns how many (0 = nothing to send).
    /// Control messages go first, but never inside a media message already partly handed out.
    pub fn poll_transmit(&mut self, out: &mut [u8]) -> usize {
        let s = &mut self.s;
        let mut n = 0;
        while n < out.len() {
            if s.media.in_record() {
                n += s.media.read_record(&mut out[n..]);
            } else if !s.control.is_empty() {
                n += s.control.read(&mut out[n..]);
            } else if !s.media.is_empty() {
                n += s.media.read_record(&mut out[n..]);
            } else {
                break;
            }
        }
        s.stats.bytes_sent += n as u64;
        n
    }

    /// Queues one H.264 access unit from the ring (AVCC, see `media`). Before the first
    /// keyframe, and after a drop until the next keyframe, non-key frames are dropped.
    /// `Err(NotPublishing)`, `Err(BadFrame)` and `Err(UnsupportedCodec)` are not fatal.
    pub fn send_video(
        &mut self,
        meta: FrameMeta,
        frame: &[u8],
        params: &VideoParams,
    ) -> Result<(), RtmpError> {
        let s = &mut self.s;
        s.ready_for_media()?;
        if params.codec != Codec::H264 {
            return Err(RtmpError::UnsupportedCodec);
        }
        let kept = flv::avcc_kept_len(frame)?;
        if kept == 0 {
            return Ok(());
        }
        let ts_ms = s.timeline_ms(Track::Video, meta.dts, VIDEO_CLOCK_HZ);
        let cts_ms = ((meta.pts as i128 - meta.dts as i128) * 1000 / VIDEO_CLOCK_HZ as i128)
            .clamp(i32::MIN as i128, i32::MAX as i128) as i32;
        if !meta.keyframe && s.video_needs_key {
            s.stats.dropped_video_frames += 1;
            return Ok(());
        }
        let body_len = 5 + kept;
        let mut need = s.writer.max_encoded_len(body_len) + RECORD_OVERHEAD_BYTES;
        let mut send_config = false;
        if meta.keyframe {
            flv::avc_decoder_config(&params.sps, &params.pps, &mut s.avc_config_next)?;
            send_config = s.avc_config_next != s.avc_config_sent;
            if send_config {
                need +=
                    s.writer.max_encoded_len(5 + s.avc_config_next.len()) + RECORD_OVERHEAD_BYTES;
            }
        }
        if !s.metadata_sent {
            let info = s
                .stream_info
                .unwrap_or_else(|| StreamInfo::new(Some(params), None));
            s.build_metadata(&info);
            need += s.writer.max_encoded_len(s.scratch.len()) + RECORD_OVERHEAD_BYTES;
        }
        if need > s.media.free_bytes() {
            s.stats.dropped_video_frames += 1;
            if meta.keyframe || !s.video_needs_key {
                s.stats.dropped_gops += 1;
            }
            s.video_needs_key = true;
            return Ok(());
        }
        if !s.metadata_sent {
            s.queue_metadata(ts_ms)?;
        }
        if send_config {
            let head = flv::video_tag_header(true, flv::AVC_SEQUENCE_HEADER, 0);
            let h = s.media_header(ts_ms, msg_type::VIDEO, 5 + s.avc_config_next.len());
            queue_media(
                &mut s.writer,
                &mut s.media,
                CSID_VIDEO,
                &h,
                [&head[..], &s.avc_config_next[..]],
            )?;
            core::mem::swap(&mut s.avc_config_sent, &mut s.avc_config_next);
        }
        let head = flv::video_tag_header(meta.keyframe, flv::AVC_NALU, cts_ms);
        let h = s.media_header(ts_ms, msg_type::VIDEO, body_len);
        let parts = core::iter::once(&head[..]).chain(flv::KeptNals::new(frame));
        queue_media(&mut s.writer, &mut s.media, CSID_VIDEO, &h, parts)?;
        s.video_needs_key = false;
        s.stats.video_frames_sent += 1;
        Ok(())
    }

    /// Queues one raw AAC frame (ADTS header stripped). The AAC sequence header goes first, and
    /// again whenever the AudioSpecificConfig changes. A frame that does not fit is dropped.
    pub fn send_audio(
        &mut self,
        meta: FrameMeta,
        frame: &[u8],
        params: &AudioParams,
    ) -> Result<(), RtmpError> {
        let s = &mut self.s;
        s.ready_for_media()?;
        if params.sample_rate == 0 {
            return Err(RtmpError::BadFrame);
        }
        if frame.is_empty() {
            return Ok(());
        }
        let ts_ms = s.timeline_ms(Track::Audio, meta.pts, params.sample_rate);
        let asc = params.audio_specific_config();
        let send_asc = s.asc_sent != Some(asc);
        let body_len = 2 + frame.len();
        let mut need = s.writer.max_encoded_len(body_len) + RECORD_OVERHEAD_BYTES;
        if send_asc {
            need += s.writer.max_encoded_len(4) + RECORD_OVERHEAD_BYTES;
        }
        if !s.metadata_sent {
            let info = s
                .stream_info
                .unwrap_or_else(|| StreamInfo::new(None, Some(*params)));
            s.build_metadata(&info);
            need += s.writer.max_encoded_len(s.scratch.len()) + RECORD_OVERHEAD_BYTES;
        }
        if need > s.media.free_bytes() {
            s.stats.dropped_audio_frames += 1;
            return Ok(());
        }
        if !s.metadata_sent {
            s.queue_metadata(ts_ms)?;
        }
        if send_asc {
            let head = flv::audio_tag_header(flv::AAC_SEQUENCE_HEADER);
            let h = s.media_header(ts_ms, msg_type::AUDIO, 4);
            queue_media(
                &mut s.writer,
                &mut s.media,
                CSID_AUDIO,
                &h,
                [&head[..], &asc[..]],
            )?;
            s.asc_sent = Some(asc);
        }
        let head = flv::audio_tag_header(flv::AAC_RAW);
        let h = s.media_header(ts_ms, msg_type::AUDIO, body_len);
        queue_media(
            &mut s.writer,
            &mut s.media,
            CSID_AUDIO,
            &h,
            [&head[..], frame],
        )?;
        s.stats.audio_frames_sent += 1;
        Ok(())
    }

    /// Queues `FCUnpublish` and `deleteStream` for a clean stop; drain `poll_transmit`, then
    /// close the socket.
    pub fn finish(&mut self) -> Result<(), RtmpError> {
        let s = &mut self.s;
        if s.phase != Phase::Publishing {
            return Ok(());
        }
        s.scratch.clear();
        amf0::write_string(&mut s.scratch, "FCUnpublish");
        amf0::write_number(&mut s.scratch, 0.0);
        amf0::write_null(&mut s.scratch);
        amf0::write_string(&mut s.scratch, &s.url.key);
        s.queue_command(CSID_COMMAND, 0)?;
        s.scratch.clear();
        amf0::write_string(&mut s.scratch, "deleteStream");
        amf0::write_number(&mut s.scratch, 0.0);
        amf0::write_null(&mut s.scratch);
        amf0::write_number(&mut s.scratch, s.stream_id as f64);
        s.queue_command(CSID_COMMAND, 0)
    }
}

/// Writes one message into the media ring as a single record.
fn queue_media<'p, I: IntoIterator<Item = &'p [u8]>>(
    writer: &mut ChunkWriter,
    media: &mut MediaQueue,
    csid: u32,
    h: &MessageHeader,
    parts: I,
) -> Result<(), RtmpError> {
    let len = writer.encoded_len(csid, h)?;
    if !media.begin_record(len) {
        // Admission used an upper bound of every record's size, so this cannot happen.
        return Err(RtmpError::Protocol("media queue admission mismatch"));
    }
    writer.write(media, csid, h, parts)
}

fn be_u32(b: &[u8]) -> Result<u32, RtmpError> {
    match b.get(..4) {
        Some(x) => Ok(u32::from_be_bytes([x[0], x[1], x[2], x[3]])),
        None => Err(RtmpError::Protocol("short protocol control message")),
    }
}

impl Session {
    fn fail(&mut self, e: RtmpError) -> RtmpError {
        match self.phase {
            Phase::Failed(first) => first,
            _ => {
                self.phase = Phase::Failed(e);
                self.media.clear();
                e
            }
        }
    }

    fn ready_for_media(&self) -> Result<(), RtmpError> {
        match self.phase {
            Phase::Publishing => Ok(()),
            Phase::Failed(e) => Err(e),
            _ => Err(RtmpError::NotPublishing),
        }
    }

    /// Milliseconds since the first frame of this connection, never decreasing per track.
    fn timeline_ms(&mut self, track: Track, ts: u64, clock_hz: u32) -> u32 {
        let us = (ts as u128 * 1_000_000 / clock_hz.max(1) as u128).min(u64::MAX as u128) as u64;
        let base = *self.base_us.get_or_insert(us);
        let rel_ms = us.saturating_sub(base) / 1000;
        let last = &mut self.last_rel_ms[track.index()];
        *last = rel_ms.max(*last);
        // RTMP timestamps are 32-bit and wrap after ~49.7 days (spec 5.3.1.2.1 / 6.1.1).
        *last as u32
    }

    fn media_header(&self, ts_ms: u32, type_id: u8, len_bytes: usize) -> MessageHeader {
        MessageHeader {
            timestamp_ms: ts_ms,
            // Media bodies are bounded by the queue capacity; larger ones fail in the writer.
            len_bytes: len_bytes.min(u32::MAX as usize) as u32,
            type_id,
            stream_id: self.stream_id,
        }
    }

    /// `@setDataFrame("onMetaData", {...})` into `scratch` (FLV spec E.5 field names).
    fn build_metadata(&mut self, info: &StreamInfo) {
        let b = &mut self.scratch;
        b.clear();
        amf0::write_string(b, "@setDataFrame");
        amf0::write_string(b, "onMetaData");
        amf0::write_ecma_array_start(b, 0);
        if let Some(v) = info.video {
            amf0::write_prop_number(b, "width", v.width as f64);
            amf0::write_prop_number(b, "height", v.height as f64);
            if let Some((num, den)) = v.fps {
                if den > 0 {
                    amf0::write_prop_number(b, "framerate", num as f64 / den as f64);
                }
            }
            amf0::write_prop_number(b, "videocodecid", flv::VIDEO_CODEC_AVC as f64);
            if let Some(k) = info.video_kbps {
                amf0::write_prop_number(b, "videodatarate", k as f64);
            }
        }
        if let Some(a) = info.audio {
            amf0::write_prop_number(b, "audiocodecid", flv::AUDIO_FORMAT_AAC as f64);
            amf0::write_prop_number(b, "audiosamplerate", a.sample_rate as f64);
            amf0::write_prop_number(b, "audiosamplesize", 16.0);
            amf0::write_prop_bool(b, "stereo", a.channels >= 2);
            amf0::write_prop_number(b, "audiochannels", a.channels as f64);
            if let Some(k) = info.audio_kbps {
                amf0::write_prop_number(b, "audiodatarate", k as f64);
            }
        }
        amf0::write_prop_string(b, "encoder", "rillcast");
        amf0::write_object_end(b);
    }

    /// Queues the metadata built by `build_metadata` (admission already checked).
    fn queue_metadata(&mut self, ts_ms: u32) -> Result<(), RtmpError> {
        let h = self.media_header(ts_ms, msg_type::DATA_AMF0, self.scratch.len());
        queue_media(
            &mut self.writer,
            &mut self.media,
            CSID_DATA,
            &h,
            [&self.scratch[..]],
        )?;
        self.metadata_sent = true;
        Ok(())
    }

    fn queue_control(&mut self, csid: u32, h: &MessageHeader, payload: &[u8]) -> bool {
        let Ok(len) = self.writer.encoded_len(csid, h) else {
            return false;
        };
        if !self.control.reserve(len) {
            return false;
        }
        self.writer
            .write(&mut self.control, csid, h, [payload])
            .is_ok()
    }

    fn queue_protocol(&mut self, type_id: u8, payload: &[u8]) -> bool {
        let h = MessageHeader {
            timestamp_ms: 0,
            len_bytes: payload.len() as u32,
            type_id,
            stream_id: 0,
        };
        self.queue_control(CSID_PROTOCOL, &h, payload)
    }

    /// Queues the AMF0 command in `scratch`.
    fn queue_command(&mut self, csid: u32, stream_id: u32) -> Result<(), RtmpError> {
        let h = MessageHeader {
            timestamp_ms: 0,
            len_bytes: self.scratch.len().min(u32::MAX as usize) as u32,
            type_id: msg_type::COMMAND_AMF0,
            stream_id,
        };
        let len = self.writer.encoded_len(csid, &h)?;
        if !self.control.reserve(len) {
            return Err(RtmpError::Protocol("control queue full"));
        }
        self.writer
            .write(&mut self.control, csid, &h, [&self.scratch[..]])
    }

    /// After the handshake: Set Chunk Size, Window Acknowledgement Size, connect (spec 5.4.1,
    /// 5.4.4, 7.2.1.1).
    fn queue_connect(&mut self) -> Result<(), RtmpError> {
        let chunk = self
            .config
            .chunk_size
            .clamp(1, super::chunk::MAX_CHUNK_SIZE);
        if !self.queue_protocol(msg_type::SET_CHUNK_SIZE, &chunk.to_be_bytes()) {
            return Err(RtmpError::Protocol("control queue full"));
        }
        self.writer.set_chunk_size(chunk);
        if self.config.window_ack_bytes > 0 {
            let w = self.config.window_ack_bytes.to_be_bytes();
            if !self.queue_protocol(msg_type::WINDOW_ACK_SIZE, &w) {
                return Err(RtmpError::Protocol("control queue full"));
            }
        }
        let tc_url = self.url.tc_url();
        let b = &mut self.scratch;
        b.clear();
        amf0::write_string(b, "connect");
        amf0::write_number(b, TXN_CONNECT);
        amf0::write_object_start(b);
        amf0::write_prop_string(b, "app", &self.url.app);
        amf0::write_prop_string(b, "type", "nonprivate");
        amf0::write_prop_string(b, "flashVer", "FMLE/3.0 (compatible; rillcast)");
        amf0::write_prop_string(b, "tcUrl", &tc_url);
        amf0::write_object_end(b);
        self.queue_command(CSID_COMMAND, 0)
    }

    /// releaseStream, FCPublish, createStream (the FMLE sequence origins such as nginx-rtmp,
    /// YouTube and Twitch expect before publish).
    fn queue_create_stream(&mut self) -> Result<(), RtmpError> {
        for (name, txn) in [
            ("releaseStream", TXN_RELEASE_STREAM),
            ("FCPublish", TXN_FC_PUBLISH),
        ] {
            self.scratch.clear();
            amf0::write_string(&mut self.scratch, name);
            amf0::write_number(&mut self.scratch, txn);
            amf0::write_null(&mut self.scratch);
            amf0::write_string(&mut self.scratch, &self.url.key);
            self.queue_command(CSID_COMMAND, 0)?;
        }
        self.scratch.clear();
        amf0::write_string(&mut self.scratch, "createStream");
        amf0::write_number(&mut self.scratch, TXN_CREATE_STREAM);
        amf0::write_null(&mut self.scratch);
        self.queue_command(CSID_COMMAND, 0)
    }

    /// publish(key, "live") on the new message stream (spec 7.2.2.6; transaction id 0).
    fn queue_publish(&mut self) -> Result<(), RtmpError> {
        self.scratch.clear();
        amf0::write_string(&mut self.scratch, "publish");
        amf0::write_number(&mut self.scratch, 0.0);
        amf0::write_null(&mut self.scratch);
        amf0::write_string(&mut self.scratch, &self.url.key);
        amf0::write_string(&mut self.scratch, "live");
        self.queue_command(CSID_STREAM_COMMAND, self.stream_id)
    }

    /// Acknowledgement once the peer's window is crossed (spec 5.4.3).
    fn maybe_ack(&mut self) -> Result<(), RtmpError> {
        let window = self.peer_window_bytes as u64;
        let received = self.stats.bytes_received;
        if window == 0 || received - self.last_ack_sent_at < window {
            return Ok(());
        }
        // The sequence number is the byte count so far, modulo 2^32.
        if self.queue_protocol(msg_type::ACKNOWLEDGEMENT, &(received as u32).to_be_bytes()) {
            self.last_ack_sent_at = received;
        }
        Ok(())
    }

    fn on_message(
        &mut self,
        m: &Message,
        payload: &[u8],
        now_ms: u64,
    ) -> Result<ReaderAction, RtmpError> {
        match m.header.type_id {
            msg_type::SET_CHUNK_SIZE => Ok(ReaderAction::SetChunkSize(be_u32(payload)?)),
            msg_type::ABORT => Ok(ReaderAction::Abort(be_u32(payload)?)),
            msg_type::ACKNOWLEDGEMENT => {
                let seq = be_u32(payload)?;
                let advance = seq.wrapping_sub(self.last_peer_ack_seq) as u64;
                self.last_peer_ack_seq = seq;
                // Never claim more than we sent (a hostile or confused peer).
                self.stats.bytes_acked =
                    (self.stats.bytes_acked + advance).min(self.stats.bytes_sent);
                if advance > 0 {
                    self.stall_since_ms = None;
                    self.last_tick_ms = now_ms;
                }
                Ok(ReaderAction::None)
            }
            msg_type::WINDOW_ACK_SIZE => {
                self.peer_window_bytes = be_u32(payload)?;
                Ok(ReaderAction::None)
            }
            msg_type::USER_CONTROL => {
                let event = match payload.get(..2) {
                    Some(e) => u16::from_be_bytes([e[0], e[1]]),
                    None => return Err(RtmpError::Protocol("short user control message")),
                };
                if event == UC_PING_REQUEST {
                    let ts = be_u32(&payload[2..])?;
                    let mut resp = [0u8; 6];
                    resp[..2].copy_from_slice(&UC_PING_RESPONSE.to_be_bytes());
                    resp[2..].copy_from_slice(&ts.to_be_bytes());
                    if !self.queue_protocol(msg_type::USER_CONTROL, &resp) {
                        self.stats.dropped_pings += 1;
                    }
                }
                Ok(ReaderAction::None)
            }
            msg_type::COMMAND_AMF0 => {
                self.on_command(payload)?;
                Ok(ReaderAction::None)
            }
            msg_type::COMMAND_AMF3 => {
                // An AMF3 command message starts with a 0 byte, then AMF0 (spec 7.1.1).
                self.on_command(payload.get(1..).unwrap_or(&[]))?;
                Ok(ReaderAction::None)
            }
            // Set Peer Bandwidth, media, data and unknown types: nothing to do for a publisher.
            _ => Ok(ReaderAction::None),
        }
    }

    fn on_command(&mut self, payload: &[u8]) -> Result<(), RtmpError> {
        let mut d = Amf0Decoder::new(payload);
        let name = match d.expect_item()?.value {
            Amf0Value::String(s) => s,
            _ => return Err(amf0::Amf0Error::Unexpected.into()),
        };
        let txn = match d.next_item()? {
            Some(item) => match item.value {
                Amf0Value::Number(n) => n,
                other => {
                    d.skip(other)?;
                    0.0
                }
            },
            None => 0.0,
        };
        match name {
            "_result" => {
                if txn == TXN_CONNECT && self.phase == Phase::WaitConnect {
                    self.phase = Phase::WaitCreateStream;
                    self.queue_create_stream()?;
                } else if txn == TXN_CREATE_STREAM && self.phase == Phase::WaitCreateStream {
                    // Command object (null), then the stream id (spec 7.2.1.3).
                    if let Some(item) = d.next_item()? {
                        d.skip(item.value)?;
                    }
                    let id = match d.next_item()?.map(|i| i.value) {
                        Some(Amf0Value::Number(n)) if n >= 0.0 && n <= u32::MAX as f64 => n as u32,
                        _ => return Err(amf0::Amf0Error::Unexpected.into()),
                    };
                    self.stream_id = id;
                    self.phase = Phase::WaitPublish;
                    self.queue_publish()?;
                }
                Ok(())
            }
            "_error" | "onStatus" => {
                // Command object (null), then the info object.
                if let Some(item) = d.next_item()? {
                    d.skip(item.value)?;
                }
                let info = match d.next_item()? {
                    Some(item) => amf0::read_info(&mut d, item.value)?,
                    None => amf0::InfoObject::default(),
                };
                let text = || {
                    let desc = if info.description.is_empty() {
                        ""
                    } else {
                        info.description
                    };
                    OriginText::join(&[info.code, if desc.is_empty() { "" } else { ": " }, desc])
                };
                if name == "_error" {
                    // Like ffmpeg: some origins answer _error to releaseStream/FCPublish for a
                    // stream that does not exist yet; that is harmless.
                    if txn == TXN_RELEASE_STREAM || txn == TXN_FC_PUBLISH {
                        return Ok(());
                    }
                    let kind = if info.code == "NetConnection.Connect.Rejected" {
                        RejectKind::ConnectRejected
                    } else {
                        RejectKind::CommandError
                    };
                    self.fail(RtmpError::Rejected {
                        kind,
                        description: text(),
                    });
                    return Ok(());
                }
                match info.code {
                    "NetStream.Publish.Start" => {
                        if matches!(
                            self.phase,
                            Phase::WaitPublish | Phase::WaitCreateStream | Phase::WaitConnect
                        ) {
                            self.phase = Phase::Publishing;
                        }
                    }
                    "NetStream.Publish.BadName" => {
                        let e = RtmpError::Rejected {
                            kind: RejectKind::BadName,
                            description: text(),
                        };
                        self.fail(e);
                    }
                    "NetConnection.Connect.Rejected" => {
                        let e = RtmpError::Rejected {
                            kind: RejectKind::ConnectRejected,
                            description: text(),
                        };
                        self.fail(e);
                    }
                    _ if info.level == "error" => {
                        let e = RtmpError::Rejected {
                            kind: RejectKind::StatusError,
                            description: text(),
                        };
                        self.fail(e);
                    }
                    _ => {}
                }
                Ok(())
            }
            // onBWDone, onFCPublish, _checkbw, close, ...: informational for a publisher.
            _ => Ok(()),
        }
    }
}

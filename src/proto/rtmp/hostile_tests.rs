//! Scenario tests of [`RtmpPublisher`] against a scripted origin: the happy path byte by byte,
//! protocol control, queue overflow, and a hostile origin (bounded, typed errors, no panics).

use super::amf0::{self, Amf0Decoder, Amf0Value};
use super::chunk::{msg_type, ChunkReader, ChunkWriter, MessageHeader};
use super::publisher::{RtmpConfig, RtmpPublisher, RtmpState};
use super::{RejectKind, RtmpError, RtmpUrl};
use crate::media::{AudioParams, Codec, FrameMeta, Track, VideoParams};

const RANDOM: [u8; 1528] = [0x5A; 1528];

/// The origin side: its own chunk writer/reader, as nginx-rtmp would hold them.
struct Origin {
    w: ChunkWriter,
    r: ChunkReader,
}

type Msg = (MessageHeader, Vec<u8>);

impl Origin {
    fn new() -> Self {
        Origin {
            w: ChunkWriter::new(),
            r: ChunkReader::new(),
        }
    }

    fn msg(&mut self, csid: u32, type_id: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let h = MessageHeader {
            timestamp_ms: 0,
            len_bytes: payload.len() as u32,
            type_id,
            stream_id,
        };
        let mut out = Vec::new();
        self.w.write(&mut out, csid, &h, [payload]).unwrap();
        out
    }

    fn command(&mut self, build: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut b = Vec::new();
        build(&mut b);
        self.msg(3, msg_type::COMMAND_AMF0, 0, &b)
    }

    /// Parses what the client sent (applying its Set Chunk Size as the origin would).
    fn read(&mut self, bytes: &[u8]) -> Vec<Msg> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let (n, m) = self.r.push(rest).expect("client output must parse");
            rest = &rest[n..];
            if let Some(m) = m {
                let p = self.r.payload(&m).to_vec();
                if m.header.type_id == msg_type::SET_CHUNK_SIZE {
                    let v = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
                    self.r.set_chunk_size(v).unwrap();
                }
                out.push((m.header, p));
            }
        }
        out
    }
}

fn drain(p: &mut RtmpPublisher) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 700];
    loop {
        let n = p.poll_transmit(&mut buf);
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

fn server_handshake() -> Vec<u8> {
    let mut v = vec![3u8];
    v.extend((0..1536u32).map(|i| (i * 13 % 256) as u8));
    v.extend(std::iter::repeat_n(0u8, 1536));
    v
}

fn command_name(payload: &[u8]) -> (String, f64) {
    let mut d = Amf0Decoder::new(payload);
    let name = match d.expect_item().unwrap().value {
        Amf0Value::String(s) => s.to_string(),
        v => panic!("command name {v:?}"),
    };
    let txn = match d.expect_item().unwrap().value {
        Amf0Value::Number(n) => n,
        v => panic!("txn {v:?}"),
    };
    (name, txn)
}

fn result(o: &mut Origin, txn: f64, extra: Option<f64>) -> Vec<u8> {
    o.command(|b| {
        amf0::write_string(b, "_result");
        amf0::write_number(b, txn);
        amf0::write_null(b);
        match extra {
            Some(n) => amf0::write_number(b, n),
            None => {
                amf0::write_object_start(b);
                amf0::write_prop_string(b, "level", "status");
                amf0::write_prop_string(b, "code", "NetConnection.Connect.Success");
                amf0::write_object_end(b);
            }
        }
    })
}

fn on_status(o: &mut Origin, level: &str, code: &str, desc: &str) -> Vec<u8> {
    let mut b = Vec::new();
    amf0::write_string(&mut b, "onStatus");
    amf0::write_number(&mut b, 0.0);
    amf0::write_null(&mut b);
    amf0::write_object_start(&mut b);
    amf0::write_prop_string(&mut b, "level", level);
    amf0::write_prop_string(&mut b, "code", code);
    amf0::write_prop_string(&mut b, "description", desc);
    amf0::write_object_end(&mut b);
    o.msg(5, msg_type::COMMAND_AMF0, 1, &b)
}

fn publisher(config: RtmpConfig) -> RtmpPublisher {
    let url = RtmpUrl::parse_with_key("rtmp://127.0.0.1/live", Some("key1")).unwrap();
    RtmpPublisher::with_config(url, 0, RANDOM, config)
}

/// Runs the session up to `NetStream.Publish.Start`, checking every client message on the way.
fn to_publishing(config: RtmpConfig) -> (RtmpPublisher, Origin) {
    let mut p = publisher(config);
    let mut o = Origin::new();
    let c0c1 = drain(&mut p);
    assert_eq!(c0c1.len(), 1537);
    assert_eq!(&c0c1[..9], &[3, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(p.state(), RtmpState::Handshaking);
    let hs = server_handshake();
    p.handle_input(&hs, 1).unwrap();
    let out = drain(&mut p);
    assert_eq!(&out[..1536], &hs[1..1537], "C2 echoes S1");
    let msgs = o.read(&out[1536..]);
    assert_eq!(p.state(), RtmpState::Connecting);
    assert_eq!(msgs[0].0.type_id, msg_type::SET_CHUNK_SIZE);
    assert_eq!(msgs[0].1, 4096u32.to_be_bytes());
    assert_eq!(msgs[1].0.type_id, msg_type::WINDOW_ACK_SIZE);
    assert_eq!(command_name(&msgs[2].1), ("connect".to_string(), 1.0));
    let mut d = Amf0Decoder::new(&msgs[2].1);
    d.expect_item().unwrap();
    d.expect_item().unwrap();
    let mut props = Vec::new();
    assert_eq!(d.expect_item().unwrap().value, Amf0Value::ObjectStart);
    loop {
        let it = d.expect_item().unwrap();
        match (it.key, it.value) {
            (_, Amf0Value::End) => break,
            (Some(k), Amf0Value::String(v)) => props.push(format!("{k}={v}")),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        props,
        [
            "app=live",
            "type=nonprivate",
            "flashVer=FMLE/3.0 (compatible; rillcast)",
            "tcUrl=rtmp://127.0.0.1/live"
        ]
    );

    // nginx-rtmp's reply to connect: window, bandwidth, chunk size, _result.
    let mut input = o.msg(2, msg_type::WINDOW_ACK_SIZE, 0, &5_000_000u32.to_be_bytes());
    input.extend(o.msg(
        2,
        msg_type::SET_PEER_BANDWIDTH,
        0,
        &[0, 0x4C, 0x4B, 0x40, 2],
    ));
    input.extend(o.msg(2, msg_type::SET_CHUNK_SIZE, 0, &4096u32.to_be_bytes()));
    o.w.set_chunk_size(4096);
    input.extend(result(&mut o, 1.0, None));
    p.handle_input(&input, 2).unwrap();
    let msgs = o.read(&drain(&mut p));
    let names: Vec<_> = msgs.iter().map(|m| command_name(&m.1)).collect();
    assert_eq!(
        names,
        [
            ("releaseStream".to_string(), 2.0),
            ("FCPublish".to_string(), 3.0),
            ("createStream".to_string(), 4.0)
        ]
    );
    let r = result(&mut o, 4.0, Some(1.0));
    p.handle_input(&r, 3).unwrap();
    let msgs = o.read(&drain(&mut p));
    assert_eq!(msgs.len(), 1);
    assert_eq!(command_name(&msgs[0].1), ("publish".to_string(), 0.0));
    assert_eq!(msgs[0].0.stream_id, 1);
    assert_eq!(p.stream_id(), 1);
    let st = on_status(
        &mut o,
        "status",
        "NetStream.Publish.Start",
        "Start publishing",
    );
    p.handle_input(&st, 4).unwrap();
    assert_eq!(p.state(), RtmpState::Publishing);
    (p, o)
}

const SPS: [u8; 8] = [0x67, 0x42, 0xC0, 0x1E, 0xDA, 0x02, 0x80, 0xBF];
const PPS: [u8; 4] = [0x68, 0xCE, 0x3C, 0x80];

fn video_params() -> VideoParams {
    VideoParams {
        codec: Codec::H264,
        vps: Vec::new(),
        sps: SPS.to_vec(),
        pps: PPS.to_vec(),
        width: 320,
        height: 240,
        fps: Some((25, 1)),
    }
}

const AUDIO: AudioParams = AudioParams {
    object_type: 2,
    sample_rate_index: 4,
    sample_rate: 44100,
    channels: 1,
};

fn avcc(nals: &[&[u8]]) -> Vec<u8> {
    let mut f = Vec::new();
    for n in nals {
        f.extend_from_slice(&(n.len() as u32).to_be_bytes());
        f.extend_from_slice(n);
    }
    f
}

fn vmeta(pts_90k: u64, keyframe: bool) -> FrameMeta {
    FrameMeta {
        track: Track::Video,
        pts: pts_90k,
        dts: pts_90k,
        keyframe,
    }
}

fn ameta(pts: u64) -> FrameMeta {
    FrameMeta {
        track: Track::Audio,
        pts,
        dts: pts,
        keyframe: true,
    }
}

#[test]
fn media_tags_on_the_wire() {
    let (mut p, mut o) = to_publishing(RtmpConfig::default());
    let params = video_params();
    // Timeline starts at the first frame, whatever its absolute pts.
    let key = avcc(&[&[0x09, 0xF0], &SPS, &PPS, &[0x65, 0x88, 0x80]]);
    p.send_video(vmeta(900_000, true), &key, &params).unwrap();
    p.send_audio(ameta(441_000), &[0x21, 0x10], &AUDIO).unwrap();
    let mut b = vmeta(900_000 + 3600, false);
    b.pts += 7200; // pts 80 ms after dts → composition time 80
    p.send_video(b, &avcc(&[&[0x41, 0x9A]]), &params).unwrap();
    p.send_audio(ameta(441_000 + 1024), &[0x21, 0x11, 0x12], &AUDIO)
        .unwrap();
    let msgs = o.read(&drain(&mut p));
    let summary: Vec<(u8, u32, u32)> = msgs
        .iter()
        .map(|(h, _)| (h.type_id, h.timestamp_ms, h.stream_id))
        .collect();
    assert_eq!(
        summary,
        [
            (msg_type::DATA_AMF0, 0, 1),
            (msg_type::VIDEO, 0, 1),
            (msg_type::VIDEO, 0, 1),
            (msg_type::AUDIO, 0, 1),
            (msg_type::AUDIO, 0, 1),
            (msg_type::VIDEO, 40, 1),
            (msg_type::AUDIO, 23, 1),
        ]
    );
    let mut seq = vec![0x17, 0, 0, 0, 0, 1, 0x42, 0xC0, 0x1E, 0xFF, 0xE1, 0, 8];
    seq.extend_from_slice(&SPS);
    seq.extend_from_slice(&[1, 0, 4]);
    seq.extend_from_slice(&PPS);
    assert_eq!(msgs[1].1, seq, "AVC sequence header");
    assert_eq!(
        msgs[2].1,
        [0x17, 1, 0, 0, 0, 0, 0, 0, 3, 0x65, 0x88, 0x80],
        "AUD/SPS/PPS dropped"
    );
    assert_eq!(
        msgs[3].1,
        [0xAF, 0, 0x12, 0x08],
        "AudioSpecificConfig: AAC LC, 44.1 kHz, mono"
    );
    assert_eq!(msgs[4].1, [0xAF, 1, 0x21, 0x10]);
    assert_eq!(msgs[5].1, [0x27, 1, 0, 0, 80, 0, 0, 0, 2, 0x41, 0x9A]);
    assert_eq!(msgs[6].1, [0xAF, 1, 0x21, 0x11, 0x12]);
    // onMetaData carries the announced fields.
    let mut d = Amf0Decoder::new(&msgs[0].1);
    assert_eq!(
        d.expect_item().unwrap().value,
        Amf0Value::String("@setDataFrame")
    );
    assert_eq!(
        d.expect_item().unwrap().value,
        Amf0Value::String("onMetaData")
    );
    assert!(matches!(
        d.expect_item().unwrap().value,
        Amf0Value::EcmaArrayStart { .. }
    ));
    let mut keys = Vec::new();
    while let Some(k) = d.expect_item().unwrap().key {
        keys.push(k.to_string());
    }
    assert_eq!(
        keys,
        ["width", "height", "framerate", "videocodecid", "encoder"]
    );
    let st = p.stats();
    assert_eq!(
        (st.video_frames_sent, st.audio_frames_sent, st.dropped_gops),
        (2, 2, 0)
    );
    // A second keyframe with unchanged parameters sends no new sequence header.
    p.send_video(vmeta(900_000 + 90_000, true), &key, &params)
        .unwrap();
    let msgs = o.read(&drain(&mut p));
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].0.timestamp_ms, 1000);
}

#[test]
fn media_before_publish_is_refused_and_h265_unsupported() {
    let mut p = publisher(RtmpConfig::default());
    let f = avcc(&[&[0x65, 1]]);
    assert_eq!(
        p.send_video(vmeta(0, true), &f, &video_params()),
        Err(RtmpError::NotPublishing)
    );
    let (mut p, _) = to_publishing(RtmpConfig::default());
    let mut hevc = video_params();
    hevc.codec = Codec::H265;
    assert_eq!(
        p.send_video(vmeta(0, true), &f, &hevc),
        Err(RtmpError::UnsupportedCodec)
    );
    assert_eq!(
        p.send_video(vmeta(0, true), &[0, 0, 0, 9, 1], &video_params()),
        Err(RtmpError::BadFrame)
    );
    assert_eq!(
        p.state(),
        RtmpState::Publishing,
        "frame errors are not fatal"
    );
}

#[test]
fn full_queue_drops_until_next_keyframe_and_counts_gops() {
    let config = RtmpConfig {
        media_queue_bytes: 3000,
        ..RtmpConfig::default()
    };
    let (mut p, mut o) = to_publishing(config);
    let params = video_params();
    let big = vec![0x41u8; 900];
    let key = avcc(&[&SPS, &PPS, &[0x65; 900]]);
    let inter = avcc(&[&big]);
    p.send_video(vmeta(0, true), &key, &params).unwrap();
    // Without draining, inter frames fill the 3000-byte ring; the rest of the GOP is dropped.
    for i in 1..6 {
        p.send_video(vmeta(i * 3600, false), &inter, &params)
            .unwrap();
    }
    let st = p.stats();
    assert_eq!(st.dropped_gops, 1);
    assert!(st.queued_media_bytes <= 3000);
    assert_eq!(st.video_frames_sent + st.dropped_video_frames, 6);
    let sent_before = st.video_frames_sent;
    // Drain: still no inter frames until a keyframe arrives.
    o.read(&drain(&mut p));
    p.send_video(vmeta(6 * 3600, false), &inter, &params)
        .unwrap();
    assert_eq!(p.stats().video_frames_sent, sent_before);
    p.send_video(vmeta(7 * 3600, true), &key, &params).unwrap();
    p.send_video(vmeta(8 * 3600, false), &inter, &params)
        .unwrap();
    assert_eq!(p.stats().video_frames_sent, sent_before + 2);
    let msgs = o.read(&drain(&mut p));
    assert_eq!(msgs[0].1[0], 0x17, "resumes on a keyframe");
    // A keyframe that cannot fit is itself a dropped GOP.
    let huge = avcc(&[&[0x65; 4000]]);
    p.send_video(vmeta(9 * 3600, true), &huge, &params).unwrap();
    assert_eq!(p.stats().dropped_gops, 2);
}

#[test]
fn ping_request_gets_ping_response() {
    let (mut p, mut o) = to_publishing(RtmpConfig::default());
    let ping = o.msg(
        2,
        msg_type::USER_CONTROL,
        0,
        &[0, 6, 0x12, 0x34, 0x56, 0x78],
    );
    p.handle_input(&ping, 10).unwrap();
    let msgs = o.read(&drain(&mut p));
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].0.type_id, msg_type::USER_CONTROL);
    assert_eq!(msgs[0].1, [0, 7, 0x12, 0x34, 0x56, 0x78]);
}

#[test]
fn acknowledgement_when_peer_window_crossed_and_watchdog_counts_acks() {
    let (mut p, mut o) = to_publishing(RtmpConfig::default());
    let mut input = o.msg(2, msg_type::WINDOW_ACK_SIZE, 0, &4000u32.to_be_bytes());
    // Unknown message types are read and ignored.
    input.extend(o.msg(7, 0x63, 0, &[0xEE; 3000]));
    p.handle_input(&input, 5).unwrap();
    let total = p.stats().bytes_received;
    assert!(
        (4000..8000).contains(&total),
        "exactly one window crossed: {total}"
    );
    let msgs = o.read(&drain(&mut p));
    let acks: Vec<_> = msgs
        .iter()
        .filter(|m| m.0.type_id == msg_type::ACKNOWLEDGEMENT)
        .collect();
    assert_eq!(acks.len(), 1, "{} bytes received, window 4000", total);
    assert_eq!(acks[0].1, (total as u32).to_be_bytes());

    let sent = p.stats().bytes_sent;
    let ack = o.msg(
        2,
        msg_type::ACKNOWLEDGEMENT,
        0,
        &(sent as u32).to_be_bytes(),
    );
    p.handle_input(&ack, 6).unwrap();
    assert_eq!(p.stats().bytes_acked, sent);
    assert_eq!(p.unacked_bytes(), 0);
}

#[test]
fn ack_stall_fails_a_half_open_connection() {
    let config = RtmpConfig {
        window_ack_bytes: 1000,
        ack_stall_timeout_ms: 5000,
        ..Default::default()
    };
    let (mut p, _o) = to_publishing(config);
    let params = video_params();
    p.send_video(vmeta(0, true), &avcc(&[&[0x65; 5000]]), &params)
        .unwrap();
    drain(&mut p);
    assert!(p.unacked_bytes() > 2000);
    let t0 = p.poll_timeout().unwrap();
    p.handle_timeout(t0);
    assert_eq!(p.poll_timeout(), Some(t0 + 5000));
    p.handle_timeout(t0 + 4999);
    assert_eq!(p.state(), RtmpState::Publishing);
    p.handle_timeout(t0 + 5000);
    assert_eq!(
        p.state(),
        RtmpState::Failed {
            reason: RtmpError::AckStall
        }
    );
}

// ---------------- hostile origin ----------------

/// A publisher past the handshake, waiting for the connect `_result`.
fn connecting() -> (RtmpPublisher, Origin) {
    let mut p = publisher(RtmpConfig::default());
    drain(&mut p);
    p.handle_input(&server_handshake(), 1).unwrap();
    drain(&mut p);
    (p, Origin::new())
}

fn failed_with(p: &RtmpPublisher) -> RtmpError {
    match p.state() {
        RtmpState::Failed { reason } => reason,
        s => panic!("expected Failed, got {s:?}"),
    }
}

#[test]
fn hostile_chunk_size_one_still_works() {
    let (mut p, mut o) = connecting();
    let mut input = o.msg(2, msg_type::SET_CHUNK_SIZE, 0, &1u32.to_be_bytes());
    o.w.set_chunk_size(1);
    input.extend(result(&mut o, 1.0, None));
    // Byte by byte, too.
    for b in input.chunks(1) {
        p.handle_input(b, 2).unwrap();
    }
    assert_eq!(p.state(), RtmpState::Connecting);
    assert!(!drain(&mut p).is_empty(), "createStream sequence queued");
}

#[test]
fn hostile_chunk_size_2_pow_31_and_zero_are_errors() {
    for bad in [0x8000_0000u32, 0, 0xFFFF_FFFF] {
        let (mut p, mut o) = connecting();
        let input = o.msg(2, msg_type::SET_CHUNK_SIZE, 0, &bad.to_be_bytes());
        assert_eq!(
            p.handle_input(&input, 2),
            Err(RtmpError::InvalidChunkSize(bad))
        );
        assert_eq!(failed_with(&p), RtmpError::InvalidChunkSize(bad));
        // Failed is sticky.
        assert_eq!(
            p.handle_input(&[0], 3),
            Err(RtmpError::InvalidChunkSize(bad))
        );
    }
    // 0x7FFFFFFF is legal and costs nothing: memory is bounded by message size, not chunk size.
    let (mut p, mut o) = connecting();
    let mut input = o.msg(
        2,
        msg_type::SET_CHUNK_SIZE,
        0,
        &0x7FFF_FFFFu32.to_be_bytes(),
    );
    o.w.set_chunk_size(0x7FFF_FFFF);
    input.extend(result(&mut o, 1.0, None));
    p.handle_input(&input, 2).unwrap();
    assert_eq!(p.state(), RtmpState::Connecting);
}

#[test]
fn hostile_huge_or_never_ending_messages_are_bounded() {
    // Declared 16 MiB: refused before any byte is buffered.
    let (mut p, _) = connecting();
    let hdr = [0x03, 0, 0, 0, 0xFF, 0xFF, 0xFF, 20, 0, 0, 0, 0];
    assert_eq!(
        p.handle_input(&hdr, 2),
        Err(RtmpError::MessageTooLarge {
            len_bytes: 0xFF_FFFF
        })
    );
    // Declared 60000 and never finished: buffered up to 60000, then the connect timeout fires.
    let (mut p, _) = connecting();
    let mut input = vec![0x03, 0, 0, 0, 0, 0xEA, 0x60, 20, 0, 0, 0, 0];
    input.extend([0x02; 128]);
    p.handle_input(&input, 2).unwrap();
    for _ in 0..400 {
        // Continuation chunks of the default 128 bytes, stopping ~8 KB short of the end.
        let mut c = vec![0xC3];
        c.extend([0u8; 128]);
        p.handle_input(&c, 3).unwrap();
    }
    assert_eq!(p.state(), RtmpState::Connecting);
    let deadline = p.poll_timeout().unwrap();
    p.handle_timeout(deadline);
    assert_eq!(failed_with(&p), RtmpError::ConnectTimeout);
}

#[test]
fn hostile_interleaved_chunk_streams_are_bounded() {
    // Many chunk streams each with a partial message (one full 128-byte chunk each, so the
    // next chunk header may switch streams).
    let (mut p, _) = connecting();
    let mut err = None;
    for csid in 3..40u8 {
        let mut input = vec![csid, 0, 0, 0, 0, 0x10, 0, 20, 0, 0, 0, 0];
        input.extend([1u8; 128]);
        if let Err(e) = p.handle_input(&input, 2) {
            err = Some((csid, e));
            break;
        }
    }
    assert_eq!(
        err,
        Some((3 + 8, RtmpError::TooManyChunkStreams)),
        "8 streams tracked"
    );
    // A few streams whose partial messages together exceed the buffered-bytes cap.
    let (mut p, _) = connecting();
    let mut err = None;
    for csid in 3..8u8 {
        let mut input = vec![csid, 0, 0, 0, 0, 0xF0, 0, 20, 0, 0, 0, 0];
        input.extend([1u8; 128]);
        if let Err(e) = p.handle_input(&input, 2) {
            err = Some((csid, e));
            break;
        }
    }
    assert_eq!(
        err,
        Some((5, RtmpError::TooManyChunkStreams)),
        "3 x 61440 > 128 KiB"
    );
    // Compressed header on a chunk stream never opened with fmt 0.
    let (mut p, _) = connecting();
    assert!(matches!(
        p.handle_input(&[0x47, 0, 0, 1, 0, 0, 1, 20], 2),
        Err(RtmpError::Protocol(_))
    ));
}

#[test]
fn hostile_deep_amf_is_an_error() {
    let (mut p, mut o) = connecting();
    let mut b = Vec::new();
    amf0::write_string(&mut b, "onStatus");
    amf0::write_number(&mut b, 0.0);
    amf0::write_null(&mut b);
    b.push(amf0::marker::OBJECT);
    for _ in 0..1000 {
        b.extend_from_slice(&[0, 1, b'x', amf0::marker::OBJECT]);
    }
    let input = o.command(|c| c.extend_from_slice(&b));
    assert_eq!(
        p.handle_input(&input, 2),
        Err(RtmpError::Amf(amf0::Amf0Error::TooDeep))
    );
    assert!(matches!(p.state(), RtmpState::Failed { .. }));
}

#[test]
fn hostile_error_replies_become_typed_errors() {
    // _error to connect, with the origin's description.
    let (mut p, mut o) = connecting();
    let input = o.command(|b| {
        amf0::write_string(b, "_error");
        amf0::write_number(b, 1.0);
        amf0::write_null(b);
        amf0::write_object_start(b);
        amf0::write_prop_string(b, "level", "error");
        amf0::write_prop_string(b, "code", "NetConnection.Connect.Rejected");
        amf0::write_prop_string(b, "description", "Connection failed: Application not found");
        amf0::write_object_end(b);
    });
    assert!(p.handle_input(&input, 2).is_err());
    match failed_with(&p) {
        RtmpError::Rejected { kind, description } => {
            assert_eq!(kind, RejectKind::ConnectRejected);
            assert_eq!(
                description.as_str(),
                "NetConnection.Connect.Rejected: Connection failed: Application not found"
            );
        }
        e => panic!("{e:?}"),
    }

    // _error to releaseStream is ignored (ffmpeg does the same), _error to createStream is not.
    let (mut p, mut o) = connecting();
    p.handle_input(&result(&mut o, 1.0, None), 2).unwrap();
    for txn in [2.0, 4.0] {
        let input = o.command(|b| {
            amf0::write_string(b, "_error");
            amf0::write_number(b, txn);
            amf0::write_null(b);
            amf0::write_object_start(b);
            amf0::write_prop_string(b, "code", "NetConnection.Call.Failed");
            amf0::write_object_end(b);
        });
        let r = p.handle_input(&input, 3);
        assert_eq!(r.is_err(), txn == 4.0, "txn {txn}");
    }
    assert!(matches!(
        failed_with(&p),
        RtmpError::Rejected {
            kind: RejectKind::CommandError,
            ..
        }
    ));

    // NetStream.Publish.BadName after publish.
    let (mut p, mut o) = connecting();
    p.handle_input(&result(&mut o, 1.0, None), 2).unwrap();
    p.handle_input(&result(&mut o, 4.0, Some(1.0)), 3).unwrap();
    let st = on_status(
        &mut o,
        "error",
        "NetStream.Publish.BadName",
        "Already publishing",
    );
    assert!(p.handle_input(&st, 4).is_err());
    match failed_with(&p) {
        RtmpError::Rejected {
            kind: RejectKind::BadName,
            description,
        } => {
            assert_eq!(
                description.as_str(),
                "NetStream.Publish.BadName: Already publishing"
            )
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(p.poll_timeout(), None);
}

#[test]
fn hostile_bad_handshake_and_eof() {
    let mut p = publisher(RtmpConfig::default());
    assert_eq!(
        p.handle_input(&[0x06; 10], 1),
        Err(RtmpError::BadHandshakeVersion(6))
    );
    let mut p = publisher(RtmpConfig::default());
    p.handle_eof();
    assert_eq!(failed_with(&p), RtmpError::PeerClosed);
}

/// Deterministic garbage after the handshake, in many seeds and splits: never a panic, and the
/// reader never holds more than its caps.
#[test]
fn hostile_garbage_never_panics() {
    let mut seed = 0x1234_5678u32;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    for round in 0..300 {
        let (mut p, mut o) = connecting();
        let mut input = Vec::new();
        // Start from valid messages now and then, so deeper states get garbage too.
        if round % 3 == 0 {
            input.extend(result(&mut o, 1.0, None));
        }
        let len = (rnd() % 3000) as usize;
        input.extend((0..len).map(|_| {
            let r = rnd();
            // Bias toward small header-ish bytes.
            if r % 4 == 0 {
                (r >> 8) as u8 & 0x47
            } else {
                (r >> 16) as u8
            }
        }));
        let step = 1 + (rnd() % 97) as usize;
        for piece in input.chunks(step) {
            if p.handle_input(piece, 2).is_err() {
                break;
            }
            drain(&mut p);
        }
    }
}

/// After ~4.7 hours the timestamps need the extended field (spec 5.3.1.3); an origin-side reader
/// must still see the exact millisecond values.
#[test]
fn long_running_timestamps_use_extended_field() {
    let (mut p, mut o) = to_publishing(RtmpConfig::default());
    let params = video_params();
    let key = avcc(&[&SPS, &PPS, &[0x65; 10]]);
    let base = 1_000_000u64;
    p.send_video(vmeta(base, true), &key, &params).unwrap();
    o.read(&drain(&mut p));
    let mut seen = Vec::new();
    for ms in [
        0x00FF_FFFEu64,
        0x00FF_FFFF,
        0x0100_0027,
        0x0100_004F,
        0x0100_0077,
    ] {
        let inter = avcc(&[&[0x41; 5000]]); // larger than one chunk: continuation chunks too
        p.send_video(vmeta(base + ms * 90, false), &inter, &params)
            .unwrap();
        let msgs = o.read(&drain(&mut p));
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].1.len(), 5 + 4 + 5000);
        seen.push(msgs[0].0.timestamp_ms as u64);
    }
    assert_eq!(
        seen,
        [
            0x00FF_FFFE,
            0x00FF_FFFF,
            0x0100_0027,
            0x0100_004F,
            0x0100_0077
        ]
    );
}

/// A ping flood while the shell is not writing: responses beyond the control queue's fixed
/// capacity are dropped and counted, never buffered without bound.
#[test]
fn hostile_ping_flood_is_bounded() {
    let (mut p, mut o) = to_publishing(RtmpConfig::default());
    let mut flood = Vec::new();
    for i in 0..5000u32 {
        let mut ev = vec![0, 6];
        ev.extend_from_slice(&i.to_be_bytes());
        flood.extend(o.msg(2, msg_type::USER_CONTROL, 0, &ev));
    }
    p.handle_input(&flood, 10).unwrap();
    let dropped = p.stats().dropped_pings;
    let wire = drain(&mut p);
    assert!(
        wire.len() <= 16 * 1024,
        "at most the control queue's capacity: {}",
        wire.len()
    );
    let responses = o.read(&wire);
    assert!(dropped > 0, "the control queue must fill");
    assert_eq!(responses.len() as u64 + dropped, 5000);
    assert_eq!(p.state(), RtmpState::Publishing);
}

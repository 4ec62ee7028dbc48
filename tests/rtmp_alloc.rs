//! Checks the RTMP core's "no heap allocation per frame in steady state" claim with a counting
//! global allocator (per thread, so parallel tests do not disturb the count): after warm-up,
//! hundreds of video/audio frames, keyframes, acknowledgements and pings allocate nothing.

mod common;

use rillcast::media::{AudioParams, Codec, FrameMeta, Track, VideoParams};
use rillcast::proto::rtmp::amf0;
use rillcast::proto::rtmp::chunk::{msg_type, ChunkWriter, MessageHeader};
use rillcast::proto::rtmp::{RtmpPublisher, RtmpState};

#[global_allocator]
static GLOBAL: common::alloc::CountingAlloc = common::alloc::CountingAlloc;

fn msg(w: &mut ChunkWriter, csid: u32, type_id: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let h = MessageHeader {
        timestamp_ms: 0,
        len_bytes: payload.len() as u32,
        type_id,
        stream_id,
    };
    let mut out = Vec::new();
    w.write(&mut out, csid, &h, [payload]).unwrap();
    out
}

fn command(w: &mut ChunkWriter, stream_id: u32, build: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut b = Vec::new();
    build(&mut b);
    msg(w, 3, msg_type::COMMAND_AMF0, stream_id, &b)
}

fn avcc(nals: &[&[u8]]) -> Vec<u8> {
    let mut f = Vec::new();
    for n in nals {
        f.extend_from_slice(&(n.len() as u32).to_be_bytes());
        f.extend_from_slice(n);
    }
    f
}

#[test]
fn steady_state_media_allocates_nothing() {
    let mut p = RtmpPublisher::new("rtmp://127.0.0.1/live/key", None, 0, [7; 1528]).unwrap();
    let mut buf = vec![0u8; 8192];
    let mut drain = |p: &mut RtmpPublisher| while p.poll_transmit(&mut buf) > 0 {};
    drain(&mut p);
    let mut hs = vec![3u8];
    hs.extend(std::iter::repeat_n(1u8, 3072));
    p.handle_input(&hs, 1).unwrap();
    let mut o = ChunkWriter::new();
    let connect_ok = command(&mut o, 0, |b| {
        amf0::write_string(b, "_result");
        amf0::write_number(b, 1.0);
        amf0::write_null(b);
        amf0::write_null(b);
    });
    let stream = command(&mut o, 0, |b| {
        amf0::write_string(b, "_result");
        amf0::write_number(b, 4.0);
        amf0::write_null(b);
        amf0::write_number(b, 1.0);
    });
    let start = command(&mut o, 1, |b| {
        amf0::write_string(b, "onStatus");
        amf0::write_number(b, 0.0);
        amf0::write_null(b);
        amf0::write_object_start(b);
        amf0::write_prop_string(b, "code", "NetStream.Publish.Start");
        amf0::write_object_end(b);
    });
    for m in [&connect_ok, &stream, &start] {
        p.handle_input(m, 2).unwrap();
        drain(&mut p);
    }
    assert_eq!(p.state(), RtmpState::Publishing);

    let sps = [0x67, 0x42, 0xC0, 0x1E, 0xDA, 0x02, 0x80, 0xBF];
    let pps = [0x68, 0xCE, 0x3C, 0x80];
    let params = VideoParams {
        codec: Codec::H264,
        vps: Vec::new(),
        sps: sps.to_vec(),
        pps: pps.to_vec(),
        width: 320,
        height: 240,
        fps: Some((25, 1)),
    };
    let audio = AudioParams {
        object_type: 2,
        sample_rate_index: 4,
        sample_rate: 44100,
        channels: 2,
    };
    let key = avcc(&[&[0x09, 0x10], &sps, &pps, &[0x65; 6000]]);
    let inter = avcc(&[&[0x41; 1500]]);
    let aac = vec![0x21u8; 300];
    // Origin traffic during steady state, built before measuring.
    let control: Vec<Vec<u8>> = (0..40u32)
        .map(|i| {
            if i.is_multiple_of(2) {
                msg(
                    &mut o,
                    2,
                    msg_type::ACKNOWLEDGEMENT,
                    0,
                    &(i * 1000).to_be_bytes(),
                )
            } else {
                msg(
                    &mut o,
                    2,
                    msg_type::USER_CONTROL,
                    0,
                    &[0, 6, 0, 0, 0, i as u8],
                )
            }
        })
        .collect();

    let send = |p: &mut RtmpPublisher, i: u64| {
        let vm = FrameMeta {
            track: Track::Video,
            pts: i * 3600,
            dts: i * 3600,
            keyframe: i.is_multiple_of(25),
        };
        let f = if vm.keyframe { &key } else { &inter };
        p.send_video(vm, f, &params).unwrap();
        let am = FrameMeta {
            track: Track::Audio,
            pts: i * 1764,
            dts: i * 1764,
            keyframe: true,
        };
        p.send_audio(am, &aac, &audio).unwrap();
    };
    // Warm-up: first keyframe, sequence headers, metadata, buffers at their working size.
    for i in 0..30 {
        send(&mut p, i);
        drain(&mut p);
    }
    let mut next_control = control.iter();
    let before = common::alloc::this_thread_total();
    for i in 30..430 {
        send(&mut p, i);
        if i.is_multiple_of(10) {
            // In order: the origin's chunk header compression depends on it.
            let m = next_control.next().unwrap();
            p.handle_input(m, i).unwrap();
        }
        drain(&mut p);
    }
    let after = common::alloc::this_thread_total();
    let st = p.stats();
    assert_eq!(st.video_frames_sent, 430);
    assert_eq!(st.audio_frames_sent, 430);
    assert_eq!(
        after - before,
        0,
        "heap allocations during 400 steady-state frames"
    );
}

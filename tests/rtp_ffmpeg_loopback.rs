//! End-to-end check against a real client: ffmpeg reads our SDP (with the ports filled in),
//! receives our RTP over loopback UDP, and writes the elementary streams back out with
//! `-c copy`; the NAL units / AUs must come back byte-identical. Ends with our SR + BYE, which
//! ffmpeg's RTP demuxer treats as end of stream.
//!
//! Fixtures (tests/fixtures), made with ffmpeg 5.1:
//! - `ffmpeg_testsrc_160x120_x264.h264`: `ffmpeg -f lavfi -i testsrc=size=160x120:rate=25
//!   -frames:v 12 -c:v libx264 -preset veryfast -bf 0 -g 6 -pix_fmt yuv420p -f h264`
//! - `ffmpeg_testsrc_160x120_x265.h265`: same with `-c:v libx265
//!   -x265-params bframes=0:keyint=6 -f hevc`
//! - `ffmpeg_sine_44100_stereo_aac.adts`: `ffmpeg -f lavfi -i sine=frequency=440:sample_rate=44100
//!   -ac 2 -t 0.5 -c:a aac -b:a 64k -f adts`
//!
//! Requires `ffmpeg` on PATH; fails (does not skip) when it is missing.

mod common;

use rillcast::media::{AudioParams, Codec, VideoParams};
use rillcast::proto::rtp::rtcp::{write_bye, write_sender_report};
use rillcast::proto::rtp::*;
use rillcast::proto::sdp::{write_describe, SdpSession};
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn fixture(name: &str) -> Vec<u8> {
    let p = common::fixture(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()))
}

fn is_vcl(codec: Codec, nal: &[u8]) -> bool {
    match codec {
        Codec::H264 => matches!(nal[0] & 0x1f, 1..=5),
        _ => (nal[0] >> 1) & 0x3f < 32,
    }
}

/// Groups NALs into access units (one slice per picture in the fixtures): non-VCL NALs attach
/// to the next VCL NAL. Returns ring-format frames and the parameter sets.
fn video_frames(codec: Codec, es: &[u8]) -> (Vec<Vec<u8>>, VideoParams) {
    let mut params = VideoParams {
        codec,
        vps: vec![],
        sps: vec![],
        pps: vec![],
        width: 160,
        height: 120,
        fps: Some((25, 1)),
    };
    let mut frames = Vec::new();
    let mut cur = Vec::new();
    for nal in common::media::annexb_nals(es) {
        let slot = match (codec, nal[0]) {
            (Codec::H264, h) if h & 0x1f == 7 => Some(&mut params.sps),
            (Codec::H264, h) if h & 0x1f == 8 => Some(&mut params.pps),
            (Codec::H265, h) if (h >> 1) & 0x3f == 32 => Some(&mut params.vps),
            (Codec::H265, h) if (h >> 1) & 0x3f == 33 => Some(&mut params.sps),
            (Codec::H265, h) if (h >> 1) & 0x3f == 34 => Some(&mut params.pps),
            _ => None,
        };
        if let Some(slot) = slot {
            if slot.is_empty() {
                *slot = nal.to_vec();
            }
        }
        cur.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        cur.extend_from_slice(nal);
        if is_vcl(codec, nal) {
            frames.push(std::mem::take(&mut cur));
        }
    }
    assert!(
        cur.is_empty() && frames.len() == 12,
        "fixture has 12 pictures"
    );
    (frames, params)
}

/// Raw AUs of an ADTS stream (ISO 14496-3 1.A.2) and the config of the first header.
fn adts_aus(data: &[u8]) -> (Vec<&[u8]>, AudioParams) {
    let mut aus = Vec::new();
    let mut params = None;
    let mut i = 0;
    while i + 7 <= data.len() {
        let h = &data[i..i + 7];
        assert_eq!((h[0], h[1] & 0xf0), (0xff, 0xf0), "ADTS sync at {i}");
        let hdr_len = if h[1] & 1 == 1 { 7 } else { 9 };
        let len = ((h[3] as usize & 3) << 11) | (h[4] as usize) << 3 | (h[5] as usize) >> 5;
        let sr_index = (h[2] >> 2) & 0xf;
        params.get_or_insert(AudioParams {
            object_type: (h[2] >> 6) + 1,
            sample_rate_index: sr_index,
            sample_rate: [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050]
                [sr_index as usize],
            channels: ((h[2] & 1) << 2) | (h[3] >> 6),
        });
        aus.push(&data[i + hdr_len..i + len]);
        i += len;
    }
    (aus, params.expect("ADTS frames"))
}

/// Two consecutive free loopback UDP ports (RTP, RTCP) found by binding and releasing.
/// Whole-packet bound for the audio track: 12 + 4 + 100 bytes of AU per packet.
const AUDIO_MAX_PACKET_LEN: usize = 116;

/// The receive-queue length of the UDP socket bound to `port` on loopback, from
/// /proc/net/udp (`None` while nothing is bound). Reading /proc never races the client for the
/// port the way a probe bind would.
fn udp_rx_queue(port: u16) -> Option<u64> {
    let local = format!("0100007F:{port:04X}");
    let table = std::fs::read_to_string("/proc/net/udp").expect("read /proc/net/udp");
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.get(1) != Some(&local.as_str()) {
            return None;
        }
        let rx = f.get(4)?.split(':').nth(1)?;
        u64::from_str_radix(rx, 16).ok()
    })
}

struct Outputs {
    video: Vec<u8>,
    audio: Vec<u8>,
}

fn run_loopback(
    codec: Codec,
    video_fixture: &str,
    max_packet_len: usize,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>, Outputs) {
    let es = fixture(video_fixture);
    let (frames, vparams) = video_frames(codec, &es);
    let adts = fixture("ffmpeg_sine_44100_stereo_aac.adts");
    let (aus, aparams) = adts_aus(&adts);

    let (vport, aport) = (common::free_port(), common::free_port());
    let session = SdpSession {
        stream_name: "loopback",
        server_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
        session_id: 1,
        session_version: 1,
    };
    let sdp = write_describe(&session, Some(&vparams), Some(&aparams))
        .unwrap()
        .replace("c=IN IP4 0.0.0.0", "c=IN IP4 127.0.0.1")
        .replace("m=video 0 ", &format!("m=video {vport} "))
        .replace("m=audio 0 ", &format!("m=audio {aport} "));
    let dir = std::env::temp_dir().join(format!(
        "rillcast-rtp-{}-{}",
        std::process::id(),
        codec.name()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let sdp_path = dir.join("in.sdp");
    std::fs::write(&sdp_path, &sdp).unwrap();
    let (vout, aout) = (dir.join("out.video"), dir.join("out.adts"));
    let vfmt = if codec == Codec::H264 { "h264" } else { "hevc" };

    let mut child = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args([
            "-protocol_whitelist",
            "file,udp,rtp",
            "-localaddr",
            "127.0.0.1",
        ])
        .args(["-listen_timeout", "10", "-i"])
        .arg(&sdp_path)
        .args(["-map", "0:v", "-c", "copy", "-f", vfmt])
        .arg(&vout)
        .args(["-map", "0:a", "-c", "copy", "-f", "adts"])
        .arg(&aout)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run ffmpeg (is it installed and on PATH?): {e}"));

    let deadline = Instant::now() + Duration::from_secs(20);
    while udp_rx_queue(vport).is_none() || udp_rx_queue(aport).is_none() {
        if let Some(st) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "ffmpeg exited early ({st}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ffmpeg did not bind its RTP ports");
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let vpk = RtpPacketizer::new(codec, max_packet_len).unwrap();
    // Audio packets are kept small enough that every AU (130..230 bytes) is fragmented.
    let apk = RtpPacketizer::new(Codec::Aac, AUDIO_MAX_PACKET_LEN).unwrap();
    let mut vst = RtpTrackState::new(VIDEO_PAYLOAD_TYPE, 0x1111_0001, 0xfff0);
    let mut ast = RtpTrackState::new(AUDIO_PAYLOAD_TYPE, 0x2222_0002, 0x7ff0);
    let mut buf = vec![0u8; max_packet_len];
    // Interleave by presentation time: video 3600 ticks/frame at 90 kHz, audio 1024 samples.
    let (mut vi, mut ai) = (0usize, 0usize);
    let mut sent_packets = 0;
    let (mut aggregated, mut fragmented) = (0, 0);
    while vi < frames.len() || ai < aus.len() {
        let vt = vi as f64 / 25.0;
        let at = ai as f64 * 1024.0 / aparams.sample_rate as f64;
        let video_next = ai >= aus.len() || (vi < frames.len() && vt <= at);
        let (p, frame, ts, st, port) = if video_next {
            vi += 1;
            (
                &vpk,
                &frames[vi - 1][..],
                1000 + (vi as u32 - 1) * 3600,
                &mut vst,
                vport,
            )
        } else {
            ai += 1;
            (
                &apk,
                aus[ai - 1],
                500 + (ai as u32 - 1) * 1024,
                &mut ast,
                aport,
            )
        };
        let mut c = PacketizerCursor::default();
        while let Some(n) = p.next_packet(frame, ts, &mut c, st, &mut buf).unwrap() {
            tx.send_to(&buf[..n], ("127.0.0.1", port)).unwrap();
            if port == vport {
                match (codec, buf[RTP_HEADER_LEN]) {
                    (Codec::H264, b) if b & 0x1f == h264::STAP_A => aggregated += 1,
                    (Codec::H264, b) if b & 0x1f == h264::FU_A => fragmented += 1,
                    (Codec::H265, b) if (b >> 1) & 0x3f == h265::AP => aggregated += 1,
                    (Codec::H265, b) if (b >> 1) & 0x3f == h265::FU => fragmented += 1,
                    _ => {}
                }
            }
            sent_packets += 1;
            // Loopback does not drop, but a burst could overrun the receiver's socket buffer.
            if sent_packets % 16 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
    // ffmpeg's rtp_read polls RTCP before RTP, so a BYE that arrives while RTP packets still
    // sit in the socket would end the stream before them. Wait until it has read every packet.
    while udp_rx_queue(vport) != Some(0) || udp_rx_queue(aport) != Some(0) {
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "ffmpeg stopped reading RTP: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for (st, port) in [(&vst, vport), (&ast, aport)] {
        let n = write_sender_report(
            &mut buf,
            st.ssrc,
            0,
            0,
            st.packets_sent,
            st.octets_sent,
            "rillcast@test",
        )
        .unwrap();
        let m = write_bye(&mut buf[n..], st.ssrc).unwrap();
        tx.send_to(&buf[..n + m], ("127.0.0.1", port + 1)).unwrap();
    }

    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            assert!(
                st.success(),
                "ffmpeg failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "ffmpeg did not end on RTCP BYE: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let outputs = Outputs {
        video: std::fs::read(&vout).unwrap(),
        audio: std::fs::read(&aout).unwrap(),
    };
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        aggregated > 0 && fragmented > 0,
        "fixture must exercise aggregation and FUs"
    );
    (frames, aus.iter().map(|a| a.to_vec()).collect(), outputs)
}

/// The NAL unit whose 4-byte big-endian length prefix starts at `pos` (the ring's frame format),
/// and the offset past it; written here independently of the packetizer under test.
fn length_prefixed_nal(frame: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let prefix: [u8; 4] = frame.get(pos..pos + 4)?.try_into().ok()?;
    let end = pos + 4 + u32::from_be_bytes(prefix) as usize;
    Some((frame.get(pos + 4..end)?, end))
}

fn check(codec: Codec, fixture_name: &str) {
    // 300-byte packets force FU fragmentation of slices and STAP-A/AP for parameter sets.
    let (frames, aus, out) = run_loopback(codec, fixture_name, 300);
    let sent: Vec<&[u8]> = frames
        .iter()
        .flat_map(|f| {
            let mut v = Vec::new();
            let mut pos = 0;
            while let Some((nal, next)) = length_prefixed_nal(f, pos) {
                v.push(nal);
                pos = next;
            }
            v
        })
        .collect();
    let got = common::media::annexb_nals(&out.video);
    assert_eq!(got.len(), sent.len(), "NAL count through ffmpeg");
    assert!(got == sent, "NAL bytes differ after ffmpeg round trip");
    let (got_aus, got_params) = adts_aus(&out.audio);
    assert_eq!(got_params.sample_rate, 44_100);
    assert_eq!(got_params.channels, 2);
    assert_eq!(got_aus.len(), aus.len(), "AAC AU count through ffmpeg");
    assert!(
        got_aus.iter().zip(&aus).all(|(a, b)| a == b),
        "AAC AUs differ"
    );
}

#[test]
fn ffmpeg_receives_h264_and_aac() {
    check(Codec::H264, "ffmpeg_testsrc_160x120_x264.h264");
}

#[test]
fn ffmpeg_receives_h265_and_aac() {
    check(Codec::H265, "ffmpeg_testsrc_160x120_x265.h265");
}

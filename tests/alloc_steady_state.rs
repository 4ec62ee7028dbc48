//! Zero heap allocations per frame in steady state, counted.
//!
//! The daemon runs in this process (on its own media thread) with a counting global allocator.
//! A TCP source is fed H.264 from the built-in test pattern at a high rate; ten viewers (five
//! RTSP-over-TCP, five UDP) read with fixed buffers so the clients themselves allocate nothing
//! in their loops. After a warm-up, the allocation counter must not move while ≥ 10,000 frames
//! go from the source to every viewer.

mod common;

use common::{RtspClient, RtspPacketCounter};
use rillcast::config::Config;
use rillcast::daemon::{spawn_thread, BoardLimits};
use rillcast::ingest::testsrc::TestPattern;
use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: common::alloc::CountingAlloc = common::alloc::CountingAlloc;

const VIEWERS_TCP: usize = 5;
const VIEWERS_UDP: usize = 5;
const MEASURED_FRAMES: u64 = 10_000;

#[test]
fn no_allocation_per_frame_with_ten_viewers() {
    // The counter works: a Vec is counted.
    let before = common::alloc::process_total();
    let v: Vec<u8> = Vec::with_capacity(10);
    drop(v);
    assert!(common::alloc::process_total() > before);

    // Pre-generate 10 GOPs of 320x240 frames; the writer loops over them.
    let mut pattern = TestPattern::new(320, 240, 30, 30).unwrap();
    let mut buf = vec![0u8; pattern.max_frame_len()];
    let mut frames: Vec<Vec<u8>> = Vec::new();
    for _ in 0..300 {
        let (n, _) = pattern.next_frame(&mut buf).unwrap();
        frames.push(buf[..n].to_vec());
    }
    let source = TcpListener::bind("127.0.0.1:0").unwrap();
    let src_addr = source.local_addr().unwrap();
    let rtsp_port = common::free_port();
    let udp_port = common::free_port();
    let cfg = Config::parse(
        &format!(
            "[rtsp]\nport = {rtsp_port}\nbind = \"127.0.0.1\"\nudp_port = {udp_port}\n\
             [http]\nport = {}\nbind = \"127.0.0.1\"\n\
             [streams.live]\nbuffer_ms = 4000\n\
             [streams.live.source]\nkind = \"tcp\"\naddress = \"{src_addr}\"\nfps = 30.0\n",
            common::free_port()
        ),
        "alloc-test",
    )
    .unwrap();
    let daemon = spawn_thread(cfg, BoardLimits::default()).unwrap();
    let rtsp_port = daemon.bound.rtsp.port();

    // The source: write frames as fast as the daemon takes them, ~1000 fps.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let (mut conn, _) = source.accept().unwrap();
    let writer = {
        let (stop, written) = (stop.clone(), written.clone());
        std::thread::spawn(move || {
            let mut i = 0usize;
            while !stop.load(Relaxed) {
                if conn.write_all(&frames[i % frames.len()]).is_err() {
                    break;
                }
                i += 1;
                written.store(i as u64, Relaxed);
                if i.is_multiple_of(10) {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        })
    };

    // Wait until the stream is live.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut c = RtspClient::connect(rtsp_port).unwrap();
        if c.request(
            "DESCRIBE",
            &format!("rtsp://127.0.0.1:{rtsp_port}/live"),
            &[],
        )
        .unwrap()
        .0 == 200
        {
            break;
        }
        assert!(Instant::now() < deadline, "stream never went live");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Ten viewers; each counts complete video frames (marker bits) and sequence gaps.
    let url = format!("rtsp://127.0.0.1:{rtsp_port}/live");
    let mut counters = Vec::new();
    let mut threads = Vec::new();
    for i in 0..VIEWERS_TCP + VIEWERS_UDP {
        let counter = Arc::new(RtspPacketCounter::default());
        counters.push(counter.clone());
        let mut c = RtspClient::connect(rtsp_port).unwrap();
        let stop = stop.clone();
        if i < VIEWERS_TCP {
            c.play_tcp(&url).unwrap();
            let mut s = c.stream.try_clone().unwrap();
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            threads.push(std::thread::spawn(move || {
                // Fixed buffer; parse `$` framing in place: no allocation in this loop.
                let mut buf = vec![0u8; 256 * 1024];
                let mut have = 0usize;
                let _keep = c;
                while !stop.load(Relaxed) {
                    let n = match s.read(&mut buf[have..]) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(_) => continue,
                    };
                    have += n;
                    let mut at = 0;
                    while have - at >= 4 {
                        assert_eq!(buf[at], b'$', "interleaved framing");
                        let len = u16::from_be_bytes([buf[at + 2], buf[at + 3]]) as usize;
                        if have - at < 4 + len {
                            break;
                        }
                        if buf[at + 1] == 0 {
                            counter.rtp(&buf[at + 4..at + 4 + len]);
                        }
                        at += 4 + len;
                    }
                    buf.copy_within(at..have, 0);
                    have -= at;
                }
            }));
        } else {
            let socks: Vec<(UdpSocket, UdpSocket)> = c.play_udp(&url).unwrap();
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                let _keep = c;
                let rtp = &socks[0].0;
                rtp.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                while !stop.load(Relaxed) {
                    if let Ok(n) = rtp.recv(&mut buf) {
                        counter.rtp(&buf[..n]);
                    }
                }
            }));
        }
    }

    let min_frames =
        |cs: &[Arc<RtspPacketCounter>]| cs.iter().map(|c| c.frames.load(Relaxed)).min().unwrap();
    let wait_frames = |target: u64, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while min_frames(&counters) < target {
            assert!(
                Instant::now() < deadline,
                "{what}: viewers reached only {} frames (source wrote {})",
                min_frames(&counters),
                written.load(Relaxed)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // Warm-up: every viewer past its first GOP burst and a few housekeeping ticks.
    wait_frames(1_000, "warm-up");
    std::thread::sleep(Duration::from_millis(1500));
    let f0 = min_frames(&counters);
    let a0 = common::alloc::process_total();
    wait_frames(f0 + MEASURED_FRAMES, "measurement");
    let a1 = common::alloc::process_total();
    let f1 = min_frames(&counters);
    stop.store(true, Relaxed);
    let gaps: u64 = counters[..VIEWERS_TCP]
        .iter()
        .map(|c| c.gaps.load(Relaxed))
        .sum();
    for t in threads {
        t.join().unwrap();
    }
    writer.join().unwrap();
    let frames_measured = f1 - f0;
    println!(
        "allocations: {} over {frames_measured} frames x {} viewers ({:.4} per frame)",
        a1 - a0,
        VIEWERS_TCP + VIEWERS_UDP,
        (a1 - a0) as f64 / frames_measured as f64
    );
    assert_eq!(gaps, 0, "TCP viewers keep up on loopback: no gaps");
    assert_eq!(
        a1 - a0,
        0,
        "heap allocations during {frames_measured} steady-state frames"
    );
}

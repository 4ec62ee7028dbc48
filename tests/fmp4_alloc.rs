//! The allocation story with 20 MSE viewers: frames published through a stream hub reach the
//! fMP4 store (`net::fmp4::Fmp4Stream`: one mux per frame into the fragment ring), and the
//! store writes every fragment to 20 WebSocket viewers' real loopback sockets on the same
//! thread; after warm-up, 10,000+ frames cost zero heap allocations on the publishing thread.
//! Each viewer's socket is drained by a reader thread, and every viewer must have received
//! nearly everything (none blocked or dropped), so the count covers the real send path.
//!
//! This test crate needs `unsafe` for the `GlobalAlloc` impl (the library keeps
//! `#![deny(unsafe_code)]`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rillcast::ingest::source::video_params;
use rillcast::media::fanout::{FrameCursor, StreamHub};
use rillcast::media::ring::MediaRing;
use rillcast::media::{AudioParams, Codec, FrameMeta, Track};
use rillcast::net::fmp4::{Fmp4Stream, Fmp4StreamConfig};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
// Counted on the publishing thread only: the readers (the "browsers") allocate freely.
thread_local! {
    static COUNTING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}
fn counting_here() -> bool {
    COUNTING.try_with(|c| c.get()).unwrap_or(false)
}

// SAFETY: forwards every call unchanged to the system allocator; only adds a counter.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counting_here() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counting_here() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn count_allocs(f: impl FnOnce()) -> usize {
    ALLOCS.store(0, Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCS.load(Ordering::Relaxed)
}

const AAC: AudioParams = AudioParams {
    object_type: 2,
    sample_rate_index: 3,
    sample_rate: 48_000,
    channels: 1,
};

fn video_au(len: usize, nal: u8) -> Vec<u8> {
    let mut au = ((len - 4) as u32).to_be_bytes().to_vec();
    au.push(nal);
    au.resize(len, 0x5a);
    au
}

/// 30 fps video (GOP 30) interleaved with 48 kHz AAC, as the hub would get it from ingest.
struct Feeder {
    video: u64,
    audio: u64,
    key: Vec<u8>,
    delta: Vec<u8>,
    aac: Vec<u8>,
}

impl Feeder {
    fn publish(&mut self, hub: &mut StreamHub, n: u64) {
        for i in 0..n {
            let v_90k = self.video * 3000;
            let a_90k = self.audio * 1024 * 90_000 / 48_000;
            let now_ms = v_90k.min(a_90k) / 90;
            if v_90k <= a_90k {
                let key = self.video.is_multiple_of(30);
                let meta = FrameMeta {
                    track: Track::Video,
                    pts: v_90k,
                    dts: v_90k,
                    keyframe: key,
                };
                let data = if key { &self.key } else { &self.delta };
                hub.publish(meta, data, now_ms).unwrap();
                self.video += 1;
            } else {
                let meta = FrameMeta {
                    track: Track::Audio,
                    pts: self.audio * 1024,
                    dts: self.audio * 1024,
                    keyframe: true,
                };
                hub.publish(meta, &self.aac, now_ms).unwrap();
                self.audio += 1;
            }
            // Real time is ~77 frames/s; this is ~50x that, with pauses in which the readers
            // catch up (sleeping does not allocate).
            if i % 64 == 63 {
                std::thread::sleep(Duration::from_millis(15));
            }
        }
    }
}

const VIEWERS: usize = 20;

// A single test function so no other test thread allocates while counting.
#[test]
fn twenty_mse_viewers_cost_no_allocation_per_frame() {
    assert_eq!(
        count_allocs(|| drop(std::hint::black_box(vec![1u8; 10]))),
        1
    );
    let mut hub = StreamHub::new("live", MediaRing::new(1 << 20, 1024), 8);
    hub.set_video_params(video_params(
        Codec::H264,
        &[],
        &[0x67, 0x42, 0xc0, 0x1e, 0xda, 0x05, 0x07, 0xe8, 0x40],
        &[0x68, 0xce, 0x3c, 0x80],
    ));
    hub.set_audio_params(AAC);
    let cursor = FrameCursor::start(&hub.ring, [true, true], 1 << 19);
    let store = Arc::new(Mutex::new(Fmp4Stream::new(
        Fmp4StreamConfig {
            name: "live".into(),
            arena_bytes: 1 << 20,
            slots: 512,
            max_au_bytes: 1 << 18,
            max_viewers: VIEWERS,
            expect_audio: true,
            epoch_unix_ms: 1_735_689_600_000,
        },
        cursor,
    )));
    assert!(hub.add_consumer(store.clone()));
    // 20 real loopback connections; each client side is drained by a thread.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let received: Arc<Vec<AtomicU64>> = Arc::new((0..VIEWERS).map(|_| AtomicU64::new(0)).collect());
    let mut readers = Vec::new();
    for i in 0..VIEWERS {
        let mut client = TcpStream::connect(addr).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let socket = Arc::new(smol::Async::new(server).unwrap());
        assert!(store.lock().unwrap().add_viewer(socket).is_some());
        let rx = received.clone();
        readers.push(std::thread::spawn(move || {
            client
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut buf = vec![0u8; 1 << 16];
            while let Ok(n) = client.read(&mut buf) {
                if n == 0 {
                    break;
                }
                rx[i].fetch_add(n as u64, Ordering::Relaxed);
            }
            let _ = client.flush();
        }));
    }
    let mut f = Feeder {
        video: 0,
        audio: 0,
        key: video_au(8_000, 0x65),
        delta: video_au(1_500, 0x41),
        aac: vec![0x21; 200],
    };
    // Warm-up: the init segment goes out, the hub's ring and the fragment ring wrap.
    f.publish(&mut hub, 3000);
    let before = store.lock().unwrap().stats();
    let frames = 10_000;
    let n = count_allocs(|| f.publish(&mut hub, frames));
    std::thread::sleep(Duration::from_millis(300));
    let after = store.lock().unwrap().stats();
    assert_eq!(
        n, 0,
        "{n} allocations in {frames} frames through hub + fMP4 + {VIEWERS} viewers"
    );
    assert_eq!(
        after.fragments - before.fragments,
        frames,
        "one fragment per frame"
    );
    assert_eq!(after.refused_frames, 0);
    assert_eq!(after.viewers, VIEWERS);
    assert_eq!(after.viewers_blocked, 0, "a reader fell behind: {after:?}");
    // Every viewer got (nearly) everything the store sent to anyone.
    let sent = after.sent_bytes - before.sent_bytes;
    let per_viewer = sent / VIEWERS as u64;
    // ~39% of the frames are video (1.7 KB average), the rest 200-byte AAC, each + 112 + 2.
    assert!(
        per_viewer > frames * 800,
        "only {per_viewer} bytes per viewer"
    );
    let total: Vec<u64> = received.iter().map(|r| r.load(Ordering::Relaxed)).collect();
    for (i, t) in total.iter().enumerate() {
        assert!(
            *t >= per_viewer,
            "viewer {i} received {t} bytes, expected > {per_viewer}"
        );
    }
    drop(store);
    drop(hub);
    for r in readers {
        let _ = r.join();
    }
}

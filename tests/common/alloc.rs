//! One counting global allocator for every allocation test (it was copied into five test
//! crates). A test crate registers it with
//!
//! ```ignore
//! #[global_allocator]
//! static GLOBAL: common::alloc::CountingAlloc = common::alloc::CountingAlloc;
//! ```
//!
//! and then reads either the process-wide count (the daemon under test runs on threads of its
//! own: [`process_total`]) or the count of the calling thread alone, which libtest's own threads
//! cannot disturb on a loaded machine ([`this_thread_total`], [`count_on_this_thread`]).
//!
//! The bookkeeping touches only an atomic and const-initialised thread-locals, which never
//! allocate, so the allocator cannot recurse into itself.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Forwards to the system allocator and counts every `alloc`, `alloc_zeroed` and `realloc`.
pub struct CountingAlloc;

static PROCESS_TOTAL: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static THREAD_TOTAL: Cell<u64> = const { Cell::new(0) };
}

fn note_alloc() {
    PROCESS_TOTAL.fetch_add(1, Relaxed);
    // try_with: the slot may already be gone while a thread is being torn down.
    let _ = THREAD_TOTAL.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: forwards every call unchanged to the system allocator; only adds counters.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_alloc();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations made by every thread of this process so far.
pub fn process_total() -> u64 {
    PROCESS_TOTAL.load(Relaxed)
}

/// Allocations made by the calling thread so far.
pub fn this_thread_total() -> u64 {
    THREAD_TOTAL.with(|n| n.get())
}

/// Allocations made by the calling thread while `f` runs.
pub fn count_on_this_thread(f: impl FnOnce()) -> u64 {
    let before = this_thread_total();
    f();
    this_thread_total() - before
}

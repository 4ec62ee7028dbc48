//! Network shells on the daemon's single media thread.
//!
//! Owns: the thread-local executor every shell spawns on. The media path is single-threaded by
//! design (`Rc<RefCell<_>>`, no locks): one core runs ingest, fan-out and every viewer, which
//! is what lets a frame reach all viewers without a wake-up or an allocation.

pub mod fmp4;
pub mod hls;
pub mod http;
pub mod media_auth;
pub mod rtmp_push;
pub mod rtsp;

use smol::{LocalExecutor, Task};
use std::future::Future;

thread_local! {
    static EXECUTOR: LocalExecutor<'static> = const { LocalExecutor::new() };
}

/// Spawns a task on this thread's executor.
pub fn spawn<F: Future + 'static>(f: F) -> Task<F::Output> {
    EXECUTOR.with(|ex| ex.spawn(f))
}

/// Runs this thread's executor until `f` completes.
pub fn block_on<F: Future>(f: F) -> F::Output {
    EXECUTOR.with(|ex| smol::block_on(ex.run(f)))
}

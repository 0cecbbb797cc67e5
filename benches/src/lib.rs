//! Shared helpers of the steadfast benchmarks.
//!
//! Run them with `cargo bench -p steadfast-benches`; each group puts
//! steadfast and the crate people would pick instead side by side, with the
//! same inputs, in the same run.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// Polls a future that completes without waiting, on the caller's thread,
/// with no runtime: the cheapest executor there is, the same for every
/// contender, so the differences measured are the middleware's own.
///
/// # Panics
///
/// If the future is not ready on its first poll (a bench bug).
pub fn now_or_never<F: Future>(future: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a benchmarked future must complete without waiting"),
    }
}

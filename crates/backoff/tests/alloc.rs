//! The happy path allocates nothing: counted by a global allocator that
//! tallies the current thread's allocations (so tests running in parallel
//! on other threads do not interfere).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use steadfast_backoff::{HttpPolicy, Jitter, Retrier, RetryLayer, Schedule};
use tower::{Layer, Service};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter is a const-initialised thread-local without a destructor, so
// touching it never allocates or re-enters the allocator.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Polls a future that must complete at once, without a runtime.
fn now_or_never<F: Future>(future: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the happy path must not wait"),
    }
}

#[test]
fn the_counter_counts() {
    let before = allocations();
    let v: Vec<u8> = Vec::with_capacity(std::hint::black_box(64));
    assert_eq!(allocations() - before, 1);
    drop(v);
}

fn schedule() -> Schedule {
    Schedule::exponential(Duration::from_millis(100), 2.0)
        .expect("valid")
        .jitter(Jitter::Full)
        .max_retries(5)
}

#[test]
fn a_first_time_success_through_the_layer_allocates_nothing() {
    let inner = tower::service_fn(|req: u64| std::future::ready(Ok::<_, ()>(req + 1)));
    let mut service = RetryLayer::new(Retrier::new(schedule())).layer(inner);
    // Warm up (thread-locals, lazy statics), then count.
    assert_eq!(now_or_never(service.call(1)).ok(), Some(2));
    let before = allocations();
    for i in 0..1_000 {
        assert!(now_or_never(std::future::poll_fn(|cx| service.poll_ready(cx))).is_ok());
        assert_eq!(now_or_never(service.call(i)).ok(), Some(i + 1));
    }
    assert_eq!(allocations() - before, 0);
}

#[test]
fn a_first_time_http_success_allocates_nothing_beyond_the_request_copy() {
    // The response carries no RetryInfo when no retry was needed, so the
    // policy's bookkeeping costs nothing; the copy of a request with no
    // headers and a `Bytes` body costs nothing either.
    let inner = tower::service_fn(|_req: http::Request<bytes::Bytes>| {
        std::future::ready(Ok::<_, std::io::Error>(http::Response::new(())))
    });
    let mut service =
        RetryLayer::new(Retrier::new(schedule()).policy(HttpPolicy::new())).layer(inner);
    let body = bytes::Bytes::from_static(&[0u8; 1024]);
    let make = || http::Request::get("/").body(body.clone()).expect("valid");
    let request = make();
    assert!(now_or_never(service.call(request)).is_ok());
    for _ in 0..100 {
        let request = make();
        let before = allocations();
        let response = now_or_never(service.call(request)).expect("accepted");
        assert_eq!(allocations() - before, 0);
        drop(response);
    }
}

#[test]
fn a_first_time_success_of_the_plain_driver_allocates_nothing() {
    let retrier = Retrier::new(schedule());
    assert_eq!(
        now_or_never(retrier.run(|| async { Ok::<_, ()>(1) })).ok(),
        Some(1)
    );
    let before = allocations();
    for _ in 0..1_000 {
        assert_eq!(
            now_or_never(retrier.run(|| async { Ok::<_, ()>(1) })).ok(),
            Some(1)
        );
    }
    assert_eq!(allocations() - before, 0);
}

//! The trait and the tower layer's contract: dyn-compatible limiters,
//! owned acquisitions, a typed store error, waiting in `poll_ready`, the
//! fast path unboxed, weights per request.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::{Request, Response};
use steadfast_ratelimit::{
    AcquireError, Admission, BackendError, BackendErrorKind, Feedback, LimitFuture, Limiter,
    RateLimitError, RateLimitLayer, Status, TokenBucket, TryAcquireError,
};
use tokio::time::Instant;
use tower::{service_fn, BoxError, Layer, Service, ServiceExt};

type Ready = std::future::Ready<Result<Response<()>, BoxError>>;

fn ok(_: Request<u32>) -> Ready {
    std::future::ready(Ok(Response::new(())))
}

fn ok_service() -> tower::util::ServiceFn<fn(Request<u32>) -> Ready> {
    service_fn(ok as fn(Request<u32>) -> Ready)
}

fn poll_ready<S: Service<R>, R>(service: &mut S) -> Poll<Result<(), S::Error>> {
    service.poll_ready(&mut Context::from_waker(Waker::noop()))
}

#[tokio::test(start_paused = true)]
async fn poll_ready_is_pending_until_a_permit_is_held() {
    let limiter = TokenBucket::new("1/s".parse().expect("rate"));
    let mut service = RateLimitLayer::new(limiter.clone()).layer(ok_service());
    assert!(matches!(poll_ready(&mut service), Poll::Ready(Ok(()))));
    service.call(Request::new(1)).await.expect("first");
    // The next permit is a second away: not ready, and nothing is called.
    assert!(poll_ready(&mut service).is_pending());
    tokio::time::advance(Duration::from_millis(999)).await;
    assert!(poll_ready(&mut service).is_pending());
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(matches!(poll_ready(&mut service), Poll::Ready(Ok(()))));
    service.call(Request::new(1)).await.expect("second");
    assert_eq!(limiter.status().admitted, 2);
}

#[tokio::test(start_paused = true)]
async fn load_shed_sheds_while_the_limiter_makes_callers_wait() {
    let limiter = TokenBucket::new("1/s".parse().expect("rate"));
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let inner = service_fn(move |_: Request<u32>| {
        counted.fetch_add(1, Ordering::Relaxed);
        async { Ok::<_, std::convert::Infallible>(Response::new(())) }
    });
    let service = tower::ServiceBuilder::new()
        .load_shed()
        .layer(RateLimitLayer::new(limiter.clone()))
        .service(inner);
    let mut shed = 0;
    for _ in 0..5 {
        match service.clone().oneshot(Request::new(1)).await {
            Ok(_) => {}
            Err(error) if error.is::<tower::load_shed::error::Overloaded>() => shed += 1,
            Err(error) => panic!("unexpected: {error}"),
        }
    }
    assert_eq!((calls.load(Ordering::Relaxed), shed), (1, 4));
}

#[tokio::test(start_paused = true)]
async fn the_fast_path_is_ready_without_a_box_and_a_wait_is_not() {
    let limiter = TokenBucket::new("1/s".parse().expect("rate"));
    let first = Limiter::acquire(&limiter, 1);
    assert!(first.is_ready(), "{first:?}");
    first.await.expect("free");
    let second = Limiter::acquire(&limiter, 1);
    assert!(!second.is_ready(), "{second:?}");
    let start = Instant::now();
    second.await.expect("after a second");
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    // And the owned one.
    let shared = Arc::new(TokenBucket::new("1/s".parse().expect("rate")));
    assert!(Arc::clone(&shared).acquire_owned(1).is_ready());
    assert!(!Arc::clone(&shared).acquire_owned(1).is_ready());
}

#[tokio::test(start_paused = true)]
async fn a_dyn_limiter_behind_the_layer_and_owned_acquisitions_in_tasks() {
    let limiter: Arc<dyn Limiter> = Arc::new(TokenBucket::new("10/s".parse().expect("rate")));
    let service = RateLimitLayer::shared(Arc::clone(&limiter)).layer(ok_service());
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let service = service.clone();
        tasks.spawn(async move { service.oneshot(Request::new(1)).await.map(|_| ()) });
        let owned = Arc::clone(&limiter).acquire_owned(1);
        tasks.spawn(async move { owned.await.map(|_| ()).map_err(RateLimitError::Limit) });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("joined")
            .map_err(|e| e.into_boxed())
            .expect("admitted");
    }
    // Twenty permits at 10/s, burst 1: the last at 1.9 s.
    assert_eq!(start.elapsed(), Duration::from_millis(1_900));
    assert_eq!(limiter.status().admitted, 20);
}

#[tokio::test(start_paused = true)]
async fn heavier_requests_wait_for_their_weight() {
    let limiter = TokenBucket::new("10/s burst 10".parse().expect("rate"));
    let service = RateLimitLayer::new(limiter.clone())
        .weigh(|request: &Request<u32>| *request.body())
        .layer(ok_service());
    let start = Instant::now();
    service
        .clone()
        .oneshot(Request::new(5))
        .await
        .expect("5 of 10");
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(limiter.status().admitted, 5);
    // Ten more: the five left now, the other five refill in 0.5 s.
    service.clone().oneshot(Request::new(10)).await.expect("10");
    assert_eq!(start.elapsed(), Duration::from_millis(500));
    assert_eq!(limiter.status().admitted, 15);
    // Eleven, over the burst: the first permit, then the other ten (never
    // faster than the rate): the first at 0.6 s, the ten at 1.6 s.
    service.clone().oneshot(Request::new(11)).await.expect("11");
    assert_eq!(start.elapsed(), Duration::from_millis(1_600));
    assert_eq!(limiter.status().admitted, 26);
    // The rest over the burst is a typed refusal, not a hang.
    match service.oneshot(Request::new(12)).await {
        Err(RateLimitError::Limit(AcquireError::Insufficient { requested, burst })) => {
            assert_eq!(
                (requested, burst),
                (11, 10),
                "the 11 beyond the first permit"
            );
        }
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
}

/// A limiter whose store is down: every acquisition fails, typed.
struct Down;

fn down() -> BackendError {
    BackendError::new(
        "redis",
        BackendErrorKind::Unavailable,
        "connection refused at 127.0.0.1:1",
    )
    .with_source(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
}

impl Limiter for Down {
    fn acquire(&self, _: u32) -> LimitFuture<'_, Result<Admission, AcquireError>> {
        LimitFuture::boxed(async { Err(AcquireError::Backend(down())) })
    }

    fn try_acquire(&self, _: u32) -> LimitFuture<'_, Result<(), TryAcquireError>> {
        LimitFuture::ready(Err(TryAcquireError::Backend(down())))
    }

    fn feedback(&self, _: &Feedback) {}

    fn status(&self) -> Status {
        TokenBucket::new("1/s".parse().expect("rate")).status()
    }
}

#[tokio::test(start_paused = true)]
async fn a_store_that_is_down_is_a_typed_error_through_the_layer() {
    let limiter: Arc<dyn Limiter> = Arc::new(Down);
    let error = RateLimitLayer::shared(limiter)
        .layer(ok_service())
        .oneshot(Request::new(1))
        .await
        .expect_err("the store is down");
    let RateLimitError::Limit(AcquireError::Backend(backend)) = &error else {
        panic!("expected a backend error, got {error}");
    };
    assert_eq!(backend.kind(), BackendErrorKind::Unavailable);
    assert_eq!(backend.store(), "redis");
    let message = error.to_string();
    assert!(
        message.contains("redis") && message.contains("connection refused"),
        "{message}"
    );
    assert!(
        message.contains("failure policy"),
        "says what to do: {message}"
    );
    let source = std::error::Error::source(backend).expect("the io error");
    assert!(source.to_string().contains("refused"), "{source}");
    assert!(matches!(
        Down.try_acquire(1).await,
        Err(TryAcquireError::Backend(e)) if e.kind() == BackendErrorKind::Unavailable
    ));
}

//! The tower `Retry` service around in-process services.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use steadfast_backoff::{
    ErrorKind, FailFast, HttpPolicy, NoRetry, Replay, Retrier, RetryBudget, RetryInfo, RetryLayer,
    Schedule,
};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

fn schedule(retries: u32) -> Schedule {
    Schedule::exponential(Duration::from_secs(1), 2.0)
        .expect("valid")
        .max_retries(retries)
}

/// A service answering with `statuses` in turn (then 200), counting calls.
fn scripted(
    statuses: &'static [u16],
) -> (
    impl Service<
            Request<String>,
            Response = Response<()>,
            Error = std::io::Error,
            Future = impl Send,
        > + Clone,
    Arc<AtomicUsize>,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let svc = tower::service_fn(move |_req: Request<String>| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let status = statuses.get(n).copied().unwrap_or(200);
        let response = Response::builder().status(status).body(()).expect("valid");
        std::future::ready(Ok::<_, std::io::Error>(response))
    });
    (svc, calls)
}

fn get() -> Request<String> {
    Request::get("http://example.invalid/a")
        .body(String::new())
        .expect("valid")
}

#[tokio::test(start_paused = true)]
async fn retries_until_accepted_and_records_the_count() {
    let (svc, calls) = scripted(&[503, 502, 500]);
    let layer = RetryLayer::new(Retrier::new(schedule(5)).policy(HttpPolicy::new()));
    let start = Instant::now();
    let response = layer
        .layer(svc)
        .oneshot(get())
        .await
        .expect("accepted after 3 retries");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(RetryInfo::of(&response).retries, 3);
    assert_eq!(start.elapsed(), Duration::from_secs(1 + 2 + 4));
}

#[tokio::test(start_paused = true)]
async fn exhaustion_hands_back_the_last_response() {
    let (svc, calls) = scripted(&[503, 503, 503]);
    let layer = RetryLayer::new(Retrier::new(schedule(2)).policy(HttpPolicy::new()));
    let err = layer.layer(svc).oneshot(get()).await.unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(err.kind(), ErrorKind::Exhausted);
    assert_eq!(
        err.to_string(),
        "HTTP 503 after 2 retries in 3s; try again later"
    );
    let last = err.into_last().expect("the last outcome was a response");
    assert_eq!(last.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(start_paused = true)]
async fn non_idempotent_requests_are_sent_once_unless_keyed_or_allowed() {
    let post = || {
        Request::post("http://example.invalid/")
            .body(String::from("x"))
            .expect("valid")
    };

    let (svc, calls) = scripted(&[503]);
    let layer = RetryLayer::new(Retrier::new(schedule(5)).policy(HttpPolicy::new()));
    let err = layer.layer(svc).oneshot(post()).await.unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(err.kind(), ErrorKind::NotRetried(NoRetry::NotIdempotent));
    assert!(err.to_string().contains("Idempotency-Key"), "{err}");

    let (svc, calls) = scripted(&[503]);
    let mut keyed = post();
    keyed
        .headers_mut()
        .insert("idempotency-key", "k-1".parse().expect("valid"));
    let response = layer.layer(svc).oneshot(keyed).await.expect("retried");
    assert_eq!(
        (calls.load(Ordering::SeqCst), response.status()),
        (2, StatusCode::OK)
    );

    let (svc, calls) = scripted(&[503]);
    let allowed = RetryLayer::new(
        Retrier::new(schedule(5)).policy(HttpPolicy::new().retry_non_idempotent(true)),
    );
    allowed.layer(svc).oneshot(post()).await.expect("retried");
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // A success of a non-idempotent request is just a success.
    let (svc, _) = scripted(&[201]);
    let created = layer.layer(svc).oneshot(post()).await.expect("accepted");
    assert_eq!(created.status(), StatusCode::CREATED);
}

#[tokio::test(start_paused = true)]
async fn replayed_requests_are_faithful_copies() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let svc = tower::service_fn(move |req: Request<String>| {
        let mut log = log.lock().expect("not poisoned");
        log.push((
            req.method().clone(),
            req.uri().to_string(),
            req.headers().clone(),
            req.body().clone(),
        ));
        let status = if log.len() < 3 { 500 } else { 200 };
        std::future::ready(Ok::<_, std::io::Error>(
            Response::builder().status(status).body(()).expect("valid"),
        ))
    });
    let request = Request::put("http://example.invalid/x?y=1")
        .header("x-trace", "abc")
        .body(String::from("payload"))
        .expect("valid");
    let layer = RetryLayer::new(Retrier::new(schedule(5)).policy(HttpPolicy::new()));
    layer.layer(svc).oneshot(request).await.expect("accepted");
    let seen = seen.lock().expect("not poisoned");
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter().all(|s| s == &seen[0]),
        "every attempt sends the same request"
    );
    assert_eq!(seen[0].3, "payload");
}

/// A request whose body is a one-shot stream.
struct Streaming;

impl Replay for Streaming {
    fn replay(&self) -> Option<Self> {
        None
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_that_cannot_be_replayed_is_a_clear_error_not_a_silent_single_try() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let svc = tower::service_fn(move |_req: Streaming| {
        counter.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Err::<(), _>("reset"))
    });
    let err = RetryLayer::new(Retrier::new(schedule(5)))
        .layer(svc)
        .oneshot(Streaming)
        .await
        .unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(err.kind(), ErrorKind::NotRetried(NoRetry::NotReplayable));
    assert!(err.to_string().contains("cannot be replayed"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn fail_fast_sends_once_and_says_so() {
    let (svc, calls) = scripted(&[429]);
    let layer = RetryLayer::new(Retrier::new(schedule(5)).policy(FailFast(HttpPolicy::new())));
    let err = layer.layer(svc).oneshot(get()).await.unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(err.kind(), ErrorKind::NotRetried(NoRetry::Disabled));
    assert_eq!(err.reason().to_string(), "rate limited");
}

#[tokio::test(start_paused = true)]
async fn clones_of_the_service_share_one_budget() {
    let budget = RetryBudget::new(Duration::from_secs(10), 0, 0.5).expect("valid");
    let (svc, calls) = scripted(&[503; 64]);
    let layer = RetryLayer::new(
        Retrier::new(Schedule::constant(Duration::from_millis(1)).max_retries(10))
            .policy(HttpPolicy::new())
            .budget(budget),
    );
    let service = layer.layer(svc);
    let tasks: Vec<_> = (0..6)
        .map(|_| tokio::spawn(service.clone().oneshot(get())))
        .collect();
    for task in tasks {
        let err = task.await.expect("no panic").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BudgetExhausted);
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        6 + 3,
        "six requests earn three retries"
    );
}

/// A service whose readiness fails.
#[derive(Clone)]
struct Broken;

impl Service<u32> for Broken {
    type Response = ();
    type Error = &'static str;
    type Future = std::future::Ready<Result<(), &'static str>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Err("pool closed"))
    }

    fn call(&mut self, _req: u32) -> Self::Future {
        std::future::ready(Ok(()))
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_poll_ready_is_fatal_and_keeps_the_error() {
    let err = RetryLayer::new(Retrier::new(schedule(3)))
        .layer(Broken)
        .oneshot(1)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Fatal);
    assert_eq!(err.inner_error(), Some(&"pool closed"));
}

#[test]
fn public_types_are_send_sync_and_the_error_is_an_error() {
    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_error<T: std::error::Error + Send + Sync + 'static>() {}
    assert_send_sync::<Retrier<Schedule, HttpPolicy>>();
    assert_send_sync::<RetryLayer<Schedule, HttpPolicy>>();
    assert_send_sync::<RetryBudget>();
    assert_error::<steadfast_backoff::RetryError<Response<()>, std::io::Error>>();
    assert_error::<steadfast_backoff::ConfigError>();
    assert_eq!(
        std::mem::size_of::<steadfast_backoff::RetryError<Response<()>, std::io::Error>>(),
        std::mem::size_of::<usize>(),
        "the error is one pointer, whatever it carries"
    );
}

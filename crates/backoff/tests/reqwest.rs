//! The HTTP integration tests again, through `reqwest::Client` (as a tower
//! service under `RetryLayer`) and through reqwest-middleware
//! (`RetryMiddleware`): a real server on 127.0.0.1 started by each test,
//! tokio's paused clock, exact virtual delays.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use reqwest_middleware::ClientBuilder;
use steadfast_backoff::{
    Action, ErrorKind, HttpPolicy, NoRetry, Reason, Retrier, RetryError, RetryInfo, RetryLayer,
    RetryMiddleware, Schedule,
};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

type Log = Arc<Mutex<Vec<(Method, Instant)>>>;

/// How the n-th request (0-based) is answered: after a delay, with a
/// response.
type Script = fn(usize) -> (Duration, Response<Full<Bytes>>);

async fn serve(script: Script) -> (SocketAddr, Log) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("bound");
    let log: Log = Arc::default();
    let seen = Arc::clone(&log);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = Arc::clone(&seen);
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let n = {
                    let mut seen = seen.lock().expect("not poisoned");
                    seen.push((req.method().clone(), Instant::now()));
                    seen.len() - 1
                };
                async move {
                    let (delay, response) = script(n);
                    tokio::time::sleep(delay).await;
                    Ok::<_, Infallible>(response)
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, log)
}

fn now(status: u16, headers: &[(&str, &str)]) -> (Duration, Response<Full<Bytes>>) {
    let mut r = Response::builder().status(status);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let body = Full::new(Bytes::from_static(b"body"));
    (Duration::ZERO, r.body(body).expect("valid response"))
}

fn schedule(retries: u32) -> Schedule {
    Schedule::exponential(Duration::from_secs(1), 2.0)
        .expect("valid")
        .max_retries(retries)
}

fn arrivals(log: &Log) -> Vec<Duration> {
    let log = log.lock().expect("not poisoned");
    log.iter().map(|(_, t)| *t - log[0].1).collect()
}

fn count(log: &Log) -> usize {
    log.lock().expect("not poisoned").len()
}

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}/v1/files/abc")
}

fn twice_429_then_200(n: usize) -> (Duration, Response<Full<Bytes>>) {
    match n {
        0 | 1 => now(429, &[("retry-after", "7")]),
        _ => now(200, &[]),
    }
}

// ---- reqwest::Client under RetryLayer (tower) ----

fn tower_client(retries: u32) -> steadfast_backoff::Retry<reqwest::Client, Schedule, HttpPolicy> {
    RetryLayer::new(Retrier::new(schedule(retries)).policy(HttpPolicy::new()))
        .layer(reqwest::Client::new())
}

fn get(addr: SocketAddr) -> reqwest::Request {
    reqwest::Client::new()
        .get(url(addr))
        .build()
        .expect("valid request")
}

#[tokio::test(start_paused = true)]
async fn tower_retry_after_7_twice_then_200() {
    let (addr, log) = serve(twice_429_then_200).await;
    let start = Instant::now();
    let response = tower_client(5)
        .oneshot(get(addr))
        .await
        .expect("third try succeeds");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.extensions().get::<RetryInfo>().map(|i| i.retries),
        Some(2)
    );
    assert_eq!(response.text().await.expect("body"), "body");
    assert_eq!(count(&log), 3);
    assert!(start.elapsed() >= Duration::from_secs(14));
    assert_eq!(arrivals(&log), [0, 7, 14].map(Duration::from_secs));
}

#[tokio::test(start_paused = true)]
async fn tower_not_found_is_one_request() {
    let (addr, log) = serve(|_| now(404, &[])).await;
    let response = tower_client(5)
        .oneshot(get(addr))
        .await
        .expect("a 404 is an answer");
    assert_eq!(response.status(), 404);
    assert!(response.extensions().get::<RetryInfo>().is_none());
    assert_eq!(count(&log), 1);
}

#[tokio::test(start_paused = true)]
async fn tower_post_is_not_retried() {
    let (addr, log) = serve(|_| now(503, &[])).await;
    let post = reqwest::Client::new()
        .post(url(addr))
        .body("{}")
        .build()
        .expect("valid request");
    let error = tower_client(5)
        .oneshot(post)
        .await
        .expect_err("503 is not accepted");
    assert_eq!(error.kind(), ErrorKind::NotRetried(NoRetry::NotIdempotent));
    assert_eq!(count(&log), 1);
}

#[tokio::test(start_paused = true)]
async fn tower_builder_error_is_one_attempt_and_fatal() {
    // reqwest refuses the scheme before connecting anywhere.
    let request = reqwest::Request::new(
        Method::GET,
        "ftp://127.0.0.1:9/file".parse().expect("a URL"),
    );
    let retries = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&retries);
    let retrier = Retrier::new(schedule(3))
        .policy(HttpPolicy::new())
        .on_retry(move |_| {
            seen.fetch_add(1, Ordering::Relaxed);
        });
    let start = Instant::now();
    let error = RetryLayer::new(retrier)
        .layer(reqwest::Client::new())
        .oneshot(request)
        .await
        .expect_err("a bad scheme cannot succeed");
    assert_eq!(error.kind(), ErrorKind::Fatal);
    assert_eq!(error.reason(), Reason::Invalid);
    assert!(error.inner_error().is_some_and(reqwest::Error::is_builder));
    assert_eq!(retries.load(Ordering::Relaxed), 0);
    assert_eq!(start.elapsed(), Duration::ZERO, "no sleep");
}

#[tokio::test(start_paused = true)]
async fn tower_timeout_is_labelled_a_timeout() {
    let (addr, log) = serve(|_| (Duration::from_secs(30), now(200, &[]).1)).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let error = RetryLayer::new(Retrier::new(schedule(2)).policy(HttpPolicy::new()))
        .layer(client)
        .oneshot(get(addr))
        .await
        .expect_err("every attempt times out");
    assert_eq!(error.reason(), Reason::Timeout);
    assert_eq!(error.kind(), ErrorKind::Exhausted);
    assert_eq!(error.retries(), 2);
    assert_eq!(count(&log), 3);
    // 2 s per attempt, 1 s and 2 s between.
    assert_eq!(arrivals(&log), [0, 3, 7].map(Duration::from_secs));
    assert_eq!(
        error.to_string(),
        "timed out after 2 retries in 7s; try again later"
    );
}

#[tokio::test(start_paused = true)]
async fn tower_streaming_body_is_one_attempt_not_replayable() {
    let (addr, log) = serve(|_| now(503, &[])).await;
    let put = reqwest::Client::new()
        .put(url(addr))
        .body(streaming_body())
        .build()
        .expect("valid request");
    assert!(put.try_clone().is_none());
    let error = tower_client(5).oneshot(put).await.expect_err("503");
    assert_eq!(error.kind(), ErrorKind::NotRetried(NoRetry::NotReplayable));
    assert_eq!(count(&log), 1);
}

/// A one-chunk streaming body: no copy of it can be made.
fn streaming_body() -> reqwest::Body {
    let chunk = http_body::Frame::data(Bytes::from_static(b"{}"));
    let frames = [Ok::<_, std::io::Error>(chunk)];
    reqwest::Body::wrap(http_body_util::StreamBody::new(Iter(frames.into_iter())))
}

/// An iterator as a stream, without pulling in `futures`.
struct Iter<I>(I);

impl<I: Iterator + Unpin> futures_core::Stream for Iter<I> {
    type Item = I::Item;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<I::Item>> {
        std::task::Poll::Ready(self.0.next())
    }
}

// ---- reqwest-middleware: RetryMiddleware ----

fn middleware_client(retries: u32) -> reqwest_middleware::ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(RetryMiddleware::new(schedule(retries)))
        .build()
}

#[tokio::test(start_paused = true)]
async fn middleware_retry_after_7_twice_then_200() {
    let (addr, log) = serve(twice_429_then_200).await;
    let start = Instant::now();
    let response = middleware_client(5)
        .get(url(addr))
        .send()
        .await
        .expect("third try succeeds");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.extensions().get::<RetryInfo>().map(|i| i.retries),
        Some(2)
    );
    assert_eq!(count(&log), 3);
    assert!(start.elapsed() >= Duration::from_secs(14));
    assert_eq!(arrivals(&log), [0, 7, 14].map(Duration::from_secs));
}

#[tokio::test(start_paused = true)]
async fn middleware_not_found_is_one_request() {
    let (addr, log) = serve(|_| now(404, &[])).await;
    let response = middleware_client(5)
        .get(url(addr))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 404);
    assert_eq!(count(&log), 1);
}

#[tokio::test(start_paused = true)]
async fn middleware_post_is_not_retried() {
    let (addr, log) = serve(|_| now(503, &[])).await;
    let response = middleware_client(5)
        .post(url(addr))
        .body("{}")
        .send()
        .await
        .expect("the 503 comes back as reqwest returns it");
    assert_eq!(response.status(), 503);
    assert_eq!(count(&log), 1);
}

#[tokio::test(start_paused = true)]
async fn middleware_gives_back_the_last_response_when_retries_run_out() {
    let (addr, log) = serve(|_| now(503, &[])).await;
    let response = middleware_client(2)
        .get(url(addr))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.extensions().get::<RetryInfo>().map(|i| i.retries),
        Some(2)
    );
    assert_eq!(arrivals(&log), [0, 1, 3].map(Duration::from_secs));
}

#[tokio::test(start_paused = true)]
async fn middleware_builder_error_is_one_attempt_and_unchanged() {
    let calls = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&calls);
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(RetryMiddleware::new(schedule(3)).on_retry(move |_, _| {
            seen.fetch_add(1, Ordering::Relaxed);
        }))
        .build();
    let error = client
        .get("ftp://127.0.0.1:9/file")
        .send()
        .await
        .expect_err("a bad scheme cannot succeed");
    match &error {
        reqwest_middleware::Error::Reqwest(e) => assert!(e.is_builder(), "{e}"),
        other => panic!("expected reqwest's own error, got {other:?}"),
    }
    assert_eq!(calls.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn middleware_timeout_is_labelled_a_timeout() {
    let (addr, log) = serve(|_| (Duration::from_secs(30), now(200, &[]).1)).await;
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(RetryMiddleware::new(schedule(2)).attempt_timeout(Duration::from_secs(2)))
        .build();
    let error = client
        .get(url(addr))
        .send()
        .await
        .expect_err("every attempt times out");
    let reqwest_middleware::Error::Middleware(inner) = &error else {
        panic!("expected the retry error, got {error:?}");
    };
    let retry = inner
        .downcast_ref::<RetryError<reqwest::Response, reqwest_middleware::Error>>()
        .expect("a RetryError");
    assert_eq!(retry.reason(), Reason::Timeout);
    assert_eq!(retry.kind(), ErrorKind::Exhausted);
    assert_eq!(count(&log), 3);
    assert_eq!(arrivals(&log), [0, 3, 7].map(Duration::from_secs));
    assert_eq!(
        error.to_string(),
        "timed out after 2 retries in 7s; try again later"
    );
}

#[tokio::test(start_paused = true)]
async fn middleware_reqwest_timeout_is_labelled_a_timeout_too() {
    let (addr, _log) = serve(|_| (Duration::from_secs(30), now(200, &[]).1)).await;
    let client = ClientBuilder::new(
        reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("client"),
    )
    .with(RetryMiddleware::new(schedule(1)))
    .build();
    let error = client.get(url(addr)).send().await.expect_err("times out");
    assert_eq!(
        error.to_string(),
        "timed out after 1 retry in 3s; try again later"
    );
}

#[tokio::test(start_paused = true)]
async fn middleware_closure_policy_and_hook_see_the_outcome() {
    let (addr, log) = serve(|n| match n {
        0 => now(409, &[]),
        _ => now(200, &[]),
    })
    .await;
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&statuses);
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(
            RetryMiddleware::new(schedule(3))
                .policy(|outcome| match outcome {
                    Ok(r) if r.status() == 409 => Action::retry(Reason::Status(409)),
                    Ok(_) => Action::Done,
                    Err(_) => Action::fail(Reason::Error),
                })
                .on_retry(move |outcome, event| {
                    let status = outcome.as_ref().map(|r| r.status().as_u16()).ok();
                    seen.lock()
                        .expect("not poisoned")
                        .push((status, event.retry));
                }),
        )
        .build();
    let response = client.get(url(addr)).send().await.expect("answer");
    assert_eq!(response.status(), 200);
    assert_eq!(count(&log), 2);
    assert_eq!(*statuses.lock().expect("not poisoned"), [(Some(409), 1)]);
}

#[tokio::test(start_paused = true)]
async fn tower_closure_override_infers_its_types() {
    let (addr, log) = serve(|n| match n {
        0 => now(409, &[]),
        _ => now(200, &[]),
    })
    .await;
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&attempts);
    let policy = HttpPolicy::new().when(move |outcome| {
        seen.lock().expect("not poisoned").push(outcome.attempt());
        (outcome.status()? == 409).then(|| Action::retry(Reason::Status(409)))
    });
    let service =
        RetryLayer::new(Retrier::new(schedule(3)).policy(policy)).layer(reqwest::Client::new());
    let response = service
        .oneshot(get(addr))
        .await
        .expect("second try succeeds");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.extensions().get::<RetryInfo>().map(|i| i.retries),
        Some(1)
    );
    assert_eq!(arrivals(&log), [0, 1].map(Duration::from_secs));
    assert_eq!(*attempts.lock().expect("not poisoned"), [1, 2]);
}

#[tokio::test(start_paused = true)]
async fn tower_closure_sees_errors_and_can_stop_them() {
    let policy = HttpPolicy::new().when(|outcome| {
        let error = outcome.error()?;
        // Refuse to retry connection failures to this (closed) port.
        error
            .downcast_ref::<reqwest::Error>()
            .is_some_and(reqwest::Error::is_connect)
            .then(|| Action::fail(Reason::Connection))
    });
    let service =
        RetryLayer::new(Retrier::new(schedule(3)).policy(policy)).layer(reqwest::Client::new());
    // Port 9 (discard) on loopback: nothing listens, the connect is refused.
    let request = reqwest::Client::new()
        .get("http://127.0.0.1:9/")
        .build()
        .expect("request");
    let error = service.oneshot(request).await.expect_err("refused");
    assert_eq!(error.kind(), ErrorKind::Fatal);
    assert_eq!(error.reason(), Reason::Connection);
    assert_eq!(error.retries(), 0);
}

#[tokio::test(start_paused = true)]
async fn tower_timeout_layer_is_labelled_a_timeout() {
    let (addr, log) = serve(|_| (Duration::from_secs(30), now(200, &[]).1)).await;
    // tower's TimeoutLayer inside the retry layer: its errors are BoxError,
    // and its `Elapsed` is a timeout (before: "request failed").
    let service = tower::ServiceBuilder::new()
        .layer(RetryLayer::new(
            Retrier::new(schedule(1)).policy(HttpPolicy::boxed_errors()),
        ))
        .layer(tower::timeout::TimeoutLayer::new(Duration::from_secs(2)))
        .service(reqwest::Client::new());
    let error = service.oneshot(get(addr)).await.expect_err("times out");
    assert_eq!(error.reason(), Reason::Timeout);
    assert_eq!(error.kind(), ErrorKind::Exhausted);
    assert_eq!(arrivals(&log), [0, 3].map(Duration::from_secs));
}

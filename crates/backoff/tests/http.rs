//! End to end: a real HTTP server on 127.0.0.1 started by each test, and a
//! real HTTP client (hyper-util's) wrapped in `RetryLayer`, on tokio's paused
//! clock, so a 14 s wait takes microseconds and is measured exactly.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use steadfast_backoff::{ErrorKind, HttpPolicy, NoRetry, Retrier, RetryInfo, RetryLayer, Schedule};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

/// What the server saw: method and arrival time of each request.
type Log = Arc<Mutex<Vec<(Method, Instant)>>>;

/// Starts a server on an ephemeral loopback port that answers the n-th
/// request (0-based) with `reply(n)`. It lives as long as the test's
/// runtime.
async fn serve(reply: fn(usize) -> Response<Full<Bytes>>) -> (SocketAddr, Log) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("bound");
    let log: Log = Arc::default();
    let seen = Arc::clone(&log);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let seen = Arc::clone(&seen);
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let mut seen = seen.lock().expect("not poisoned");
                let n = seen.len();
                seen.push((req.method().clone(), Instant::now()));
                std::future::ready(Ok::<_, Infallible>(reply(n)))
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, log)
}

fn reply(status: u16, headers: &[(&str, &str)]) -> Response<Full<Bytes>> {
    let mut r = Response::builder().status(status);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(Full::new(Bytes::from_static(b"body")))
        .expect("valid response")
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn request(method: Method, addr: SocketAddr) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(format!("http://{addr}/v1/files/abc"))
        .body(Full::new(Bytes::from_static(b"{}")))
        .expect("valid request")
}

fn retrier(retries: u32) -> Retrier<Schedule, HttpPolicy> {
    let schedule = Schedule::exponential(Duration::from_secs(1), 2.0)
        .expect("valid")
        .max_retries(retries);
    Retrier::new(schedule).policy(HttpPolicy::new())
}

fn arrivals(log: &Log) -> Vec<Duration> {
    let log = log.lock().expect("not poisoned");
    log.iter().map(|(_, t)| *t - log[0].1).collect()
}

#[tokio::test(start_paused = true)]
async fn retry_after_7_twice_then_200_is_three_requests_and_14_seconds() {
    let (addr, log) = serve(|n| match n {
        0 | 1 => reply(429, &[("retry-after", "7")]),
        _ => reply(200, &[]),
    })
    .await;
    let service = RetryLayer::new(retrier(5)).layer(client());
    let start = Instant::now();
    let response = service
        .oneshot(request(Method::GET, addr))
        .await
        .expect("third try succeeds");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(RetryInfo::of(&response).retries, 2);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(&body[..], b"body");
    assert_eq!(log.lock().expect("not poisoned").len(), 3);
    assert!(
        start.elapsed() >= Duration::from_secs(14),
        "{:?}",
        start.elapsed()
    );
    // The hint (7 s) is above the backoff (1 s, 2 s): it sets both waits.
    assert_eq!(arrivals(&log), [0, 7, 14].map(Duration::from_secs));
}

#[tokio::test(start_paused = true)]
async fn not_found_is_one_request_and_returned_as_is() {
    let (addr, log) = serve(|_| reply(404, &[])).await;
    let service = RetryLayer::new(retrier(5)).layer(client());
    let response = service
        .oneshot(request(Method::GET, addr))
        .await
        .expect("404 is a response");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(log.lock().expect("not poisoned").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn unavailable_without_a_hint_follows_the_schedule() {
    let (addr, log) = serve(|_| reply(503, &[])).await;
    let service = RetryLayer::new(retrier(4)).layer(client());
    let err = service
        .oneshot(request(Method::GET, addr))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Exhausted);
    assert_eq!(err.retries(), 4);
    assert_eq!(arrivals(&log), [0, 1, 3, 7, 15].map(Duration::from_secs));
    let last = err
        .into_last()
        .expect("the last outcome was a 503 response");
    assert_eq!(last.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(start_paused = true)]
async fn post_is_not_retried_by_default() {
    let (addr, log) = serve(|_| reply(503, &[])).await;
    let service = RetryLayer::new(retrier(5)).layer(client());
    let err = service
        .oneshot(request(Method::POST, addr))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotRetried(NoRetry::NotIdempotent));
    let log = log.lock().expect("not poisoned");
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].0, Method::POST);
}

#[tokio::test(start_paused = true)]
async fn a_hint_over_the_ceiling_fails_at_once() {
    // Figma has answered with this.
    let (addr, log) = serve(|_| reply(429, &[("retry-after", "396749")])).await;
    let service = RetryLayer::new(retrier(5)).layer(client());
    let start = Instant::now();
    let err = service
        .oneshot(request(Method::GET, addr))
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO, "no sleep");
    assert_eq!(log.lock().expect("not poisoned").len(), 1);
    assert_eq!(err.kind(), ErrorKind::RetryAfterTooLong);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(396_749)));
    assert_eq!(
        err.to_string(),
        "rate limited; the server asked to wait 4d 14h, longer than the 5m allowed; try again in 4d 14h or raise the limit"
    );
}

#[tokio::test(start_paused = true)]
async fn hostile_headers_never_fail_a_request() {
    let (addr, log) = serve(|n| match n {
        0 => reply(503, &[("retry-after", "-1"), ("x-ratelimit-reset", "NaN")]),
        1 => reply(429, &[("retry-after", "99999999999999999999999999")]),
        2 => reply(429, &[("ratelimit", "\"p\";r=0;t=1e9")]),
        _ => reply(200, &[]),
    })
    .await;
    let service = RetryLayer::new(retrier(5)).layer(client());
    let response = service
        .oneshot(request(Method::GET, addr))
        .await
        .expect("retried past garbage");
    assert_eq!(response.status(), StatusCode::OK);
    // Garbage is ignored: the plain schedule applies.
    assert_eq!(arrivals(&log), [0, 1, 3, 7].map(Duration::from_secs));
}

#[tokio::test(start_paused = true)]
async fn connection_refused_is_retried_then_reported() {
    // Bind and drop a listener so the port is (almost certainly) closed.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    let service = RetryLayer::new(retrier(2)).layer(client());
    let err = service
        .oneshot(request(Method::GET, addr))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Exhausted);
    assert_eq!(err.retries(), 2);
    assert_eq!(err.reason().to_string(), "connection failed");
    assert!(
        std::error::Error::source(&err).is_some(),
        "the client's error is the source"
    );
}

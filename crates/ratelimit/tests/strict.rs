//! End to end against a strict server: `RateLimitLayer` around hyper-util's
//! client, four concurrent callers, and a loopback server that admits 4
//! requests per second with a burst of 1 (millisecond granularity) and
//! answers the rest 429, with or without `Retry-After: 1`. On the paused
//! clock: two simulated minutes take a fraction of a second.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use steadfast_ratelimit::{RateLimitLayer, RateSource, TokenBucket};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};

/// Seconds since the start and whether it was admitted, per request.
type Log = Arc<Mutex<Vec<(f64, bool)>>>;

/// A leaky bucket of capacity 1 draining at `rate`: a request is admitted
/// only if the last admitted one was at least `1/rate` earlier, counted in
/// whole milliseconds.
async fn serve(rate: f64, retry_after: bool, start: Instant) -> (SocketAddr, Log) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("bound");
    let log: Log = Arc::default();
    let seen = Arc::clone(&log);
    let next_ms = Arc::new(Mutex::new(0.0_f64));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (seen, next_ms) = (Arc::clone(&seen), Arc::clone(&next_ms));
            let service = hyper::service::service_fn(move |_req: Request<Incoming>| {
                let at = (Instant::now() - start).as_secs_f64();
                let ms = (at * 1000.0).floor();
                let mut next = next_ms.lock().expect("not poisoned");
                let ok = ms >= *next;
                if ok {
                    *next = ms + 1000.0 / rate;
                }
                seen.lock().expect("not poisoned").push((at, ok));
                let mut response = Response::builder().status(if ok { 200 } else { 429 });
                if !ok && retry_after {
                    response = response.header("retry-after", "1");
                }
                let response = response.body(Empty::<Bytes>::new());
                std::future::ready(Ok::<_, Infallible>(response.expect("valid response")))
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

/// Four callers for `seconds` through the limiter (ceiling 12/s, 3× the
/// server's 4/s); returns the 429 share and the goodput as a share of
/// 4/s, after the first 10 s.
async fn run(retry_after: bool, seconds: u64) -> (f64, f64) {
    let start = Instant::now();
    let (addr, log) = serve(4.0, retry_after, start).await;
    let limiter = TokenBucket::new("12/s".parse().expect("rate"));
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let service = ServiceBuilder::new()
        .layer(RateLimitLayer::new(limiter.clone()))
        .service(client.map_err(BoxError::from));
    let end = start + Duration::from_secs(seconds);
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let mut service = service.clone();
        callers.spawn(async move {
            while Instant::now() < end {
                let request = Request::get(format!("http://{addr}/v1/files/abc"))
                    .body(Empty::new())
                    .expect("request");
                let response = service.ready().await.expect("ready").call(request).await;
                let status = response.expect("a response").status().as_u16();
                assert!(status == 200 || status == 429, "{status}");
            }
        });
    }
    callers.join_all().await;
    let status = limiter.status();
    assert_eq!(status.source, RateSource::Adaptation, "{status}");
    let log = log.lock().expect("not poisoned").clone();
    let window: Vec<_> = log
        .iter()
        .filter(|(at, _)| *at >= 10.0 && *at < seconds as f64)
        .collect();
    let ok = window.iter().filter(|(_, ok)| *ok).count() as f64;
    let share = 1.0 - ok / window.len() as f64;
    let goodput = ok / (seconds as f64 - 10.0) / 4.0;
    (share, goodput)
}

/// Runs it and checks the goal: at most 2 % 429s, and goodput at least
/// `goodput` of the server's 4/s.
async fn check(retry_after: bool, least: f64) {
    let (share, goodput) = run(retry_after, 130).await;
    eprintln!(
        "Retry-After {retry_after}: 429s {:.2} %, goodput {:.1} %",
        share * 100.0,
        goodput * 100.0
    );
    assert!(share <= 0.02, "{:.2} % got 429", share * 100.0);
    assert!(goodput >= least, "goodput {:.1} % of 4/s", goodput * 100.0);
}

#[tokio::test(start_paused = true)]
async fn a_strict_server_without_a_hint_over_loopback() {
    check(false, 0.95).await;
}

#[tokio::test(start_paused = true)]
async fn a_strict_server_with_retry_after_1_over_loopback() {
    check(true, 0.90).await;
}

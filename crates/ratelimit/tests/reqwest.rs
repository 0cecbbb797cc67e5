//! `RateLimitLayer` around `reqwest::Client` (as a tower service) and
//! `RateLimitMiddleware` in reqwest-middleware, against a loopback server,
//! on tokio's paused clock.

use std::time::Duration;

use reqwest_middleware::ClientBuilder;
use steadfast_backoff::{RetryInfo, RetryMiddleware, Schedule};
use steadfast_ratelimit::{
    AcquireError, RateLimitError, RateLimitLayer, RateLimitMiddleware, TokenBucket,
};
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

use crate::http::{serve, Log};

fn arrivals(log: &Log) -> Vec<Duration> {
    let log = log.lock().expect("not poisoned");
    log.iter().map(|(t, _)| *t - log[0].0).collect()
}

fn get(url: &str) -> reqwest::Request {
    reqwest::Client::new()
        .get(url)
        .build()
        .expect("valid request")
}

#[tokio::test(start_paused = true)]
async fn the_layer_wraps_reqwest_and_obeys_retry_after() {
    let (addr, log) = serve(&[(0, 30)]).await;
    let limiter = TokenBucket::new("10/s".parse().expect("rate"));
    let service = RateLimitLayer::new(limiter.clone()).layer(reqwest::Client::new());
    let url = format!("http://{addr}/v1/files/abc");
    let first = service.clone().oneshot(get(&url)).await.expect("answer");
    assert_eq!(first.status(), 429);
    assert!(
        limiter
            .status()
            .to_string()
            .contains("paused 30s (Retry-After)"),
        "{}",
        limiter.status()
    );
    let second = service.oneshot(get(&url)).await.expect("answer");
    assert_eq!(second.status(), 200);
    assert_eq!(arrivals(&log), [0, 30].map(Duration::from_secs));
}

#[tokio::test(start_paused = true)]
async fn the_layer_keeps_reqwest_errors_typed() {
    let limiter = TokenBucket::new("10/s".parse().expect("rate"));
    let service = RateLimitLayer::new(limiter).layer(reqwest::Client::new());
    let request = reqwest::Request::new(
        http::Method::GET,
        "ftp://127.0.0.1:9/x".parse().expect("url"),
    );
    match service.oneshot(request).await {
        Err(RateLimitError::Service(e)) => assert!(e.is_builder(), "{e}"),
        other => panic!("expected reqwest's error, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_refusal_of_the_limiter_is_its_own_variant() {
    let limiter = TokenBucket::builder("1/s".parse().expect("rate"))
        .max_wait(Duration::from_millis(100))
        .build();
    let service = RateLimitLayer::new(limiter.clone()).layer(reqwest::Client::new());
    limiter.try_acquire(1).expect("the burst");
    let url = "http://127.0.0.1:9/never-sent";
    match service.oneshot(get(url)).await {
        Err(RateLimitError::Limit(AcquireError::WaitTooLong { .. })) => {}
        other => panic!("expected WaitTooLong, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn the_middleware_paces_and_pauses_and_composes_with_retry() {
    // Request 0 is throttled for 7 s; the retry then waits for the pause.
    let (addr, log) = serve(&[(0, 7), (1, 7)]).await;
    let limiter = TokenBucket::new("2/s".parse().expect("rate"));
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(RetryMiddleware::new(
            Schedule::exponential(Duration::from_secs(1), 2.0)
                .expect("valid")
                .max_retries(5),
        ))
        .with(RateLimitMiddleware::new(limiter.clone()))
        .build();
    let url = format!("http://{addr}/v1/files/abc");
    let start = Instant::now();
    let response = client.get(&url).send().await.expect("answer");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.extensions().get::<RetryInfo>().map(|i| i.retries),
        Some(2)
    );
    assert!(start.elapsed() >= Duration::from_secs(14));
    assert_eq!(arrivals(&log), [0, 7, 14].map(Duration::from_secs));
    // The limiter heard both throttles: its rate is cut below the 2/s.
    assert!(limiter.status().effective < 2.0, "{}", limiter.status());
}

#[tokio::test(start_paused = true)]
async fn a_refusal_in_the_middleware_is_a_middleware_error() {
    let limiter = TokenBucket::builder("1/s".parse().expect("rate"))
        .max_wait(Duration::from_millis(100))
        .build();
    limiter.try_acquire(1).expect("the burst");
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(RateLimitMiddleware::new(limiter))
        .build();
    let error = client
        .get("http://127.0.0.1:9/never-sent")
        .send()
        .await
        .expect_err("refused");
    let reqwest_middleware::Error::Middleware(inner) = &error else {
        panic!("expected a middleware error, got {error:?}");
    };
    assert!(inner.downcast_ref::<AcquireError>().is_some(), "{inner}");
    assert!(error.to_string().starts_with("rate limited"), "{error}");
}

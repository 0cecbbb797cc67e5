//! steadfast-backoff against tower's retry and backon.
//!
//! Groups (names are read by scripts; keep them):
//! - `retry_success_path`: `bare`, `steadfast`, `tower_retry`, `backon`
//!   around a trivial service (`u64` in, `u64` out) that succeeds at once.
//! - `retry_success_path_http`: the same four around a service taking an
//!   `http::Request<Bytes>` with headers and a 1 KiB body, so the cost of
//!   keeping a replayable copy shows.
//! - `retry_schedule`: 1,000 jittered, capped exponential delays.
//!
//! Every contender retries errors up to 5 times with exponential backoff,
//! is built once outside the timed loop, and is driven by the same
//! no-runtime executor (`now_or_never`).

use std::hint::black_box;
use std::task::{Context, Poll};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder, Retryable};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response, StatusCode};
use steadfast_backoff::{HttpPolicy, Jitter, Retrier, RetryLayer, Schedule};
use steadfast_benches::now_or_never;
use tower::retry::backoff::{
    Backoff as _, ExponentialBackoff, ExponentialBackoffMaker, MakeBackoff as _,
};
use tower::util::rng::HasherRng;
use tower::{Layer, Service};

/// The inner service: always ready, answers at once.
#[derive(Clone, Copy)]
struct Echo;

impl Service<u64> for Echo {
    type Response = u64;
    type Error = &'static str;
    type Future = std::future::Ready<Result<u64, &'static str>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u64) -> Self::Future {
        std::future::ready(Ok(req.wrapping_add(1)))
    }
}

/// The HTTP inner service: reads the request, answers 200.
#[derive(Clone, Copy)]
struct HttpEcho;

impl Service<Request<Bytes>> for HttpEcho {
    type Response = Response<()>;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<Response<()>, std::io::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        black_box(req.body().len());
        std::future::ready(Ok(Response::new(())))
    }
}

/// tower's retry with the equivalent policy, as a tower user writes it:
/// up to 5 retries of errors, tower's own jittered exponential backoff.
#[derive(Clone)]
struct TowerPolicy {
    retries_left: u32,
    backoff: ExponentialBackoff,
}

impl TowerPolicy {
    fn new() -> Self {
        let mut maker = ExponentialBackoffMaker::new(
            Duration::from_millis(100),
            Duration::from_secs(60),
            1.0,
            HasherRng::default(),
        )
        .expect("valid backoff");
        Self {
            retries_left: 5,
            backoff: maker.make_backoff(),
        }
    }

    fn again(&mut self) -> Option<tokio::time::Sleep> {
        if self.retries_left == 0 {
            return None;
        }
        self.retries_left -= 1;
        Some(self.backoff.next_backoff())
    }
}

impl<Res, E> tower::retry::Policy<u64, Res, E> for TowerPolicy {
    type Future = tokio::time::Sleep;

    fn retry(&mut self, _req: &mut u64, result: &mut Result<Res, E>) -> Option<Self::Future> {
        match result {
            Ok(_) => None,
            Err(_) => self.again(),
        }
    }

    fn clone_request(&mut self, req: &u64) -> Option<u64> {
        Some(*req)
    }
}

impl<E> tower::retry::Policy<Request<Bytes>, Response<()>, E> for TowerPolicy {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        _req: &mut Request<Bytes>,
        result: &mut Result<Response<()>, E>,
    ) -> Option<Self::Future> {
        match result {
            Ok(r) if !matches!(r.status().as_u16(), 408 | 429 | 500 | 502 | 503 | 504) => None,
            _ => self.again(),
        }
    }

    fn clone_request(&mut self, req: &Request<Bytes>) -> Option<Request<Bytes>> {
        Some(req.clone())
    }
}

fn schedule() -> Schedule {
    Schedule::exponential(Duration::from_millis(100), 2.0)
        .expect("valid")
        .jitter(Jitter::Full)
        .max_retries(5)
}

fn backon_builder() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_jitter()
        .with_max_times(5)
}

fn success_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("retry_success_path");
    let mut i = 0u64;

    let mut bare = Echo;
    group.bench_function("bare", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            now_or_never(std::future::poll_fn(|cx| bare.poll_ready(cx))).expect("ready");
            now_or_never(bare.call(black_box(i)))
        });
    });

    let mut steadfast = RetryLayer::new(Retrier::new(schedule())).layer(Echo);
    group.bench_function("steadfast", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            now_or_never(std::future::poll_fn(|cx| steadfast.poll_ready(cx))).expect("ready");
            now_or_never(steadfast.call(black_box(i)))
        });
    });

    let mut tower_retry = tower::retry::RetryLayer::new(TowerPolicy::new()).layer(Echo);
    group.bench_function("tower_retry", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            now_or_never(std::future::poll_fn(|cx| tower_retry.poll_ready(cx))).expect("ready");
            now_or_never(tower_retry.call(black_box(i)))
        });
    });

    let builder = backon_builder();
    let service = Echo;
    group.bench_function("backon", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let req = black_box(i);
            let op = || {
                let mut svc = service;
                async move { svc.call(req).await }
            };
            now_or_never(op.retry(builder))
        });
    });
    group.finish();
}

fn http_request() -> Request<Bytes> {
    Request::put("https://api.example.com/v1/files/abc123/nodes?ids=1:2,3:4")
        .header("authorization", "Bearer 0123456789abcdef0123456789abcdef")
        .header("accept", "application/json")
        .header("content-type", "application/octet-stream")
        .header("user-agent", "steadfast-bench/0.1")
        .header("x-request-id", "5f0c3a1e-8d3b-4d7e-9c52-6b1f0f4e2a77")
        .body(Bytes::from(vec![0x5a; 1024]))
        .expect("valid request")
}

fn success_path_http(c: &mut Criterion) {
    let mut group = c.benchmark_group("retry_success_path_http");
    let template = http_request();

    let mut bare = HttpEcho;
    group.bench_function("bare", |b| {
        b.iter_batched(
            || template.clone(),
            |req| {
                now_or_never(std::future::poll_fn(|cx| bare.poll_ready(cx))).expect("ready");
                now_or_never(bare.call(req))
            },
            criterion::BatchSize::SmallInput,
        );
    });

    let mut steadfast =
        RetryLayer::new(Retrier::new(schedule()).policy(HttpPolicy::new())).layer(HttpEcho);
    group.bench_function("steadfast", |b| {
        b.iter_batched(
            || template.clone(),
            |req| {
                now_or_never(std::future::poll_fn(|cx| steadfast.poll_ready(cx))).expect("ready");
                now_or_never(steadfast.call(req))
            },
            criterion::BatchSize::SmallInput,
        );
    });

    let mut tower_retry = tower::retry::RetryLayer::new(TowerPolicy::new()).layer(HttpEcho);
    group.bench_function("tower_retry", |b| {
        b.iter_batched(
            || template.clone(),
            |req| {
                now_or_never(std::future::poll_fn(|cx| tower_retry.poll_ready(cx))).expect("ready");
                now_or_never(tower_retry.call(req))
            },
            criterion::BatchSize::SmallInput,
        );
    });

    let builder = backon_builder();
    group.bench_function("backon", |b| {
        b.iter_batched(
            || template.clone(),
            |req| {
                // backon re-runs a closure; each attempt needs its own request.
                let op = || {
                    let attempt = req.clone();
                    async move {
                        let response = HttpEcho.call(attempt).await?;
                        if response.status() == StatusCode::OK {
                            Ok(response)
                        } else {
                            Err(std::io::Error::other("retryable status"))
                        }
                    }
                };
                now_or_never(op.retry(builder))
            },
            criterion::BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn schedule_1000(c: &mut Criterion) {
    let mut group = c.benchmark_group("retry_schedule");
    let ours = Schedule::exponential(Duration::from_secs(1), 2.0)
        .expect("valid")
        .jitter(Jitter::Full)
        .cap(Duration::from_secs(60))
        .max_retries(1_000);
    group.bench_function("steadfast", |b| {
        b.iter(|| {
            black_box(&ours)
                .preview()
                .fold(Duration::ZERO, |a, d| a + d)
        });
    });
    let theirs = ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_factor(2.0)
        .with_max_delay(Duration::from_secs(60))
        .with_jitter()
        .with_max_times(1_000);
    group.bench_function("backon", |b| {
        b.iter(|| black_box(theirs).build().fold(Duration::ZERO, |a, d| a + d));
    });
    group.finish();
}

criterion_group!(benches, success_path, success_path_http, schedule_1000);
criterion_main!(benches);

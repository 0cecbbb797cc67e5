//! steadfast-backoff against reqwest-retry, through a real reqwest client.
//!
//! Group (the name is read by scripts; keep it):
//! - `retry_success_path_reqwest`: a GET to a local HTTP server on
//!   127.0.0.1 that answers 200 at once, through
//!   - `bare`: reqwest-middleware with no middleware (the floor),
//!   - `steadfast`: reqwest-middleware with `RetryMiddleware`,
//!   - `reqwest_retry`: reqwest-middleware with reqwest-retry's
//!     `RetryTransientMiddleware`,
//!   - `steadfast_tower`: `RetryLayer` around `reqwest::Client` as a tower
//!     service.
//!
//! Every contender retries up to 5 times with exponential backoff from 1 s,
//! is built once outside the timed loop, shares one keep-alive connection
//! pool per client, and runs on the same single-threaded tokio runtime as
//! the server, so the differences are the middleware's own (the
//! request's round trip over loopback is in all four).

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use reqwest_retry::policies::ExponentialBackoff;
use reqwest_retry::RetryTransientMiddleware;
use steadfast_backoff::{HttpPolicy, Retrier, RetryLayer, RetryMiddleware, Schedule};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tower::{Layer, ServiceExt};

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A keep-alive HTTP/1 server on 127.0.0.1 that answers every request with
/// 200 and a short body.
async fn serve() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(|_req: http::Request<Incoming>| {
                std::future::ready(Ok::<_, Infallible>(http::Response::new(Full::new(
                    Bytes::from_static(b"{\"ok\":true}"),
                ))))
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn schedule() -> Schedule {
    Schedule::exponential(Duration::from_secs(1), 2.0)
        .expect("a valid schedule")
        .max_retries(5)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a reqwest client")
}

async fn get(client: &ClientWithMiddleware, url: &str) -> u16 {
    let response = client.get(url).send().await.expect("the server answers");
    response.status().as_u16()
}

fn success_path_reqwest(c: &mut Criterion) {
    let rt = runtime();
    let addr = rt.block_on(serve());
    let url = format!("http://{addr}/v1/files/abc");
    let mut group = c.benchmark_group("retry_success_path_reqwest");

    let bare = ClientBuilder::new(client()).build();
    group.bench_function("bare", |b| {
        b.iter(|| rt.block_on(get(&bare, black_box(&url))))
    });

    let steadfast = ClientBuilder::new(client())
        .with(RetryMiddleware::new(schedule()))
        .build();
    group.bench_function("steadfast", |b| {
        b.iter(|| rt.block_on(get(&steadfast, black_box(&url))))
    });

    let policy = ExponentialBackoff::builder()
        .retry_bounds(Duration::from_secs(1), Duration::from_secs(60))
        .build_with_max_retries(5);
    let reqwest_retry = ClientBuilder::new(client())
        .with(RetryTransientMiddleware::new_with_policy(policy))
        .build();
    group.bench_function("reqwest_retry", |b| {
        b.iter(|| rt.block_on(get(&reqwest_retry, black_box(&url))))
    });

    let tower = RetryLayer::new(Retrier::new(schedule()).policy(HttpPolicy::new())).layer(client());
    let plain = client();
    group.bench_function("steadfast_tower", |b| {
        b.iter(|| {
            rt.block_on(async {
                let request = plain.get(black_box(&url)).build().expect("a request");
                let response = tower
                    .clone()
                    .oneshot(request)
                    .await
                    .expect("the server answers");
                response.status().as_u16()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, success_path_reqwest);
criterion_main!(benches);

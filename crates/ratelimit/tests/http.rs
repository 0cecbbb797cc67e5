//! End to end: `RateLimitLayer` around hyper-util's client, 50 concurrent
//! callers, and a loopback server that answers 429 with `Retry-After`.

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
use steadfast_ratelimit::{RateLimitLayer, TokenBucket};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};

/// Arrival time and status sent, per request, in arrival order.
pub(crate) type Log = Arc<Mutex<Vec<(Instant, u16)>>>;

/// A loopback server answering the requests numbered in `throttle` (0-based
/// arrival order) with 429 and their `Retry-After`, the rest with 200.
pub(crate) async fn serve(throttle: &'static [(usize, u64)]) -> (SocketAddr, Log) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("bound");
    let log: Log = Arc::default();
    let seen = Arc::clone(&log);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = Arc::clone(&seen);
            let service = hyper::service::service_fn(move |_req: Request<Incoming>| {
                let mut seen = seen.lock().expect("not poisoned");
                let n = seen.len();
                let mut response = Response::builder();
                let status = match throttle.iter().find(|(i, _)| *i == n) {
                    Some((_, secs)) => {
                        response = response.header("retry-after", secs.to_string());
                        429
                    }
                    None => 200,
                };
                seen.push((Instant::now(), status));
                let response = response.status(status).body(Empty::<Bytes>::new());
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

#[tokio::test(start_paused = true)]
async fn no_request_reaches_the_server_during_a_pause() {
    const THROTTLE: &[(usize, u64)] = &[(0, 3), (120, 5)];
    let (addr, log) = serve(THROTTLE).await;
    let limiter = TokenBucket::new("40/s burst 5".parse().expect("rate"));
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let service = ServiceBuilder::new()
        .layer(RateLimitLayer::new(limiter.clone()))
        .service(client.map_err(BoxError::from));
    let start = Instant::now();
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let mut service = service.clone();
        callers.spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..4 {
                let request = Request::get(format!("http://{addr}/v1/images/abc"))
                    .body(Empty::new())
                    .expect("request");
                let response = service.ready().await.expect("ready").call(request).await;
                statuses.push(response.expect("response").status().as_u16());
            }
            statuses
        });
    }
    let statuses: Vec<u16> = callers.join_all().await.into_iter().flatten().collect();
    assert_eq!(statuses.len(), 200);
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 2);

    let log = log.lock().expect("not poisoned").clone();
    assert_eq!(log.len(), 200, "every request reached the server once");
    for (index, secs) in THROTTLE {
        let (at, status) = log[*index];
        assert_eq!(status, 429);
        let pause_end = at + Duration::from_secs(*secs);
        // Requests already on the wire at that instant arrive at it; none
        // arrives after it and before the pause ends.
        let during: Vec<Duration> = log
            .iter()
            .map(|(t, _)| *t)
            .filter(|t| *t > at && *t < pause_end)
            .map(|t| t - start)
            .collect();
        assert!(
            during.is_empty(),
            "requests during the pause after #{index}: {during:?}"
        );
        let next = log.iter().map(|(t, _)| *t).find(|t| *t >= pause_end);
        assert_eq!(next, Some(pause_end), "traffic resumes when the pause ends");
    }
    let status = limiter.status();
    assert_eq!(status.throttled, 2);
    assert_eq!(status.admitted, 200);
    assert!(
        status.effective <= 40.0,
        "never above the configured rate: {status}"
    );
    assert_eq!(status.pause_cause, None, "the pause is over");
}

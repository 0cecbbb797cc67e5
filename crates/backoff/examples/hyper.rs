//! Retry and rate limiting around hyper-util's client, in one
//! `tower::ServiceBuilder`.
//!
//! ```text
//! cargo run -p steadfast-backoff --all-features --example hyper
//! ```
//!
//! It talks to a scripted server it starts on 127.0.0.1 (a 429 with
//! `Retry-After: 1`, then a 503, then 200s).

#[path = "support/server.rs"]
mod server;

use std::error::Error;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use steadfast_backoff::{HttpPolicy, Retrier, RetryInfo, RetryLayer, Schedule};
use steadfast_ratelimit::{RateLimitLayer, TokenBucket};
use tower::{ServiceBuilder, ServiceExt};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    run().await
}

async fn run() -> Result<(), Box<dyn Error + Send + Sync>> {
    let (addr, seen) = server::start(server::flaky).await?;
    let limiter = TokenBucket::new("5/s".parse()?);
    let retrier =
        Retrier::new(Schedule::exponential(Duration::from_millis(200), 2.0)?.max_retries(4))
            .policy(HttpPolicy::new())
            .on_retry(|event| println!("  {event}"));

    let client = ServiceBuilder::new()
        .layer(RetryLayer::new(retrier))
        .layer(RateLimitLayer::new(limiter.clone()))
        .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());

    for path in ["/a", "/b", "/c"] {
        // A cloneable body, so the request can be sent again.
        let request = Request::get(format!("http://{addr}{path}")).body(Full::new(Bytes::new()))?;
        let response = client.clone().oneshot(request).await?;
        let retries = RetryInfo::of(&response).retries;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        println!(
            "GET {path}: {status} after {retries} retries: {}",
            String::from_utf8_lossy(&body).trim()
        );
        assert!(status.is_success());
    }
    println!(
        "server saw {} requests; limiter: {}",
        seen.load(std::sync::atomic::Ordering::SeqCst),
        limiter.status()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[tokio::test(start_paused = true)]
    async fn the_example_runs() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        super::run().await
    }
}

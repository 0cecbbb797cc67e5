//! Retry and rate limiting around `reqwest::Client`, in one
//! `tower::ServiceBuilder`: the client as it is, no adapter, no `map_err`.
//!
//! ```text
//! cargo run -p steadfast-backoff --all-features --example reqwest
//! ```
//!
//! It talks to a scripted server it starts on 127.0.0.1 (a 429 with
//! `Retry-After: 1`, then a 503, then 200s).

#[path = "support/server.rs"]
mod server;

use std::error::Error;
use std::time::Duration;

use steadfast_backoff::{HttpPolicy, Jitter, Retrier, RetryInfo, RetryLayer, Schedule};
use steadfast_ratelimit::{RateLimitLayer, TokenBucket};
use tower::{ServiceBuilder, ServiceExt};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    run().await
}

async fn run() -> Result<(), Box<dyn Error + Send + Sync>> {
    let (addr, seen) = server::start(server::flaky).await?;

    // One limiter for the whole program: 5 requests a second, slowing down
    // when the server says 429.
    let limiter = TokenBucket::new("5/s".parse()?);
    let retrier = Retrier::new(
        Schedule::exponential(Duration::from_millis(200), 2.0)?
            .jitter(Jitter::Full)
            .max_retries(4),
    )
    .policy(HttpPolicy::new())
    .on_retry(|event| println!("  {event}"));

    let client = ServiceBuilder::new()
        .layer(RetryLayer::new(retrier))
        .layer(RateLimitLayer::new(limiter.clone()))
        .service(reqwest::Client::new());

    for path in ["/a", "/b", "/c"] {
        let request = reqwest::Client::new()
            .get(format!("http://{addr}{path}"))
            .build()?;
        let response = client.clone().oneshot(request).await?;
        let retries = response
            .extensions()
            .get::<RetryInfo>()
            .map_or(0, |i| i.retries);
        println!("GET {path}: {} after {retries} retries", response.status());
        assert!(response.status().is_success());
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

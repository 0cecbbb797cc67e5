//! Retry and rate limiting for `reqwest_middleware::ClientBuilder`: one
//! line each.
//!
//! ```text
//! cargo run -p steadfast-backoff --all-features --example reqwest_middleware
//! ```
//!
//! It talks to a scripted server it starts on 127.0.0.1 (a 429 with
//! `Retry-After: 1`, then a 503, then 200s).

#[path = "support/server.rs"]
mod server;

use std::error::Error;
use std::time::Duration;

use reqwest_middleware::ClientBuilder;
use steadfast_backoff::{RetryInfo, RetryMiddleware, Schedule};
use steadfast_ratelimit::{RateLimitMiddleware, TokenBucket};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    run().await
}

async fn run() -> Result<(), Box<dyn Error + Send + Sync>> {
    let (addr, seen) = server::start(server::flaky).await?;
    let limiter = TokenBucket::new("5/s".parse()?);

    let client = ClientBuilder::new(reqwest::Client::new())
        // Outermost: each retry goes through the limiter again.
        .with(
            RetryMiddleware::new(
                Schedule::exponential(Duration::from_millis(200), 2.0)?.max_retries(4),
            )
            .attempt_timeout(Duration::from_secs(10))
            .on_retry(|outcome, event| {
                let what = match outcome {
                    Ok(response) => response.status().to_string(),
                    Err(error) => error.to_string(),
                };
                println!("  {what}: {event}");
            }),
        )
        .with(RateLimitMiddleware::new(limiter.clone()))
        .build();

    for path in ["/a", "/b", "/c"] {
        let response = client.get(format!("http://{addr}{path}")).send().await?;
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

//! Retries against a flaky local server, as they happen.
//!
//! Starts an HTTP server on 127.0.0.1 that fails in the ways real APIs do
//! (503, 429 with `Retry-After`, 500, a 429 asking for an hour), and sends
//! requests to it through a `RetryLayer` around hyper's client:
//!
//! ```text
//! cargo run -p steadfast-backoff --example demo
//! ```

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use steadfast_backoff::{HttpPolicy, Jitter, Retrier, RetryInfo, RetryLayer, Schedule};
use tokio::net::TcpListener;
use tower::{Layer, ServiceExt};

/// The server's script: what the n-th request gets.
fn script(n: usize) -> Response<Full<Bytes>> {
    let (status, retry_after) = match n {
        0 => (503, None),
        1 => (429, Some("1")),
        2 => (500, None),
        3 => (200, None),
        _ => (429, Some("3600")),
    };
    let mut response = Response::builder().status(status);
    if let Some(seconds) = retry_after {
        response = response.header("retry-after", seconds);
    }
    let body = Full::new(Bytes::from(format!("reply #{n}\n")));
    response.body(body).expect("a valid response")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let served = Arc::new(AtomicUsize::new(0));
    tokio::spawn(serve(listener, Arc::clone(&served)));
    println!("flaky server listening on http://{addr}\n");

    let schedule = Schedule::exponential(Duration::from_millis(200), 2.0)?
        .jitter(Jitter::proportional(0.5, 1.5)?)
        .max_retries(5);
    let retrier = Retrier::new(schedule)
        .policy(HttpPolicy::new())
        .max_retry_after(Duration::from_secs(60))
        .on_retry(|event| println!("  ↻ {event} (retry {}, from {})", event.retry, event.source));
    let client = RetryLayer::new(retrier).layer(Client::builder(TokioExecutor::new()).build_http());

    println!("GET /file: the server answers 503, 429 (Retry-After: 1), 500, then 200");
    let request = Request::get(format!("http://{addr}/file")).body(Full::new(Bytes::new()))?;
    let response = client.clone().oneshot(request).await?;
    println!(
        "  ✓ {} after {} retries\n",
        response.status(),
        RetryInfo::of(&response).retries
    );

    println!("GET /file again: the server now asks to come back in an hour");
    let request = Request::get(format!("http://{addr}/file")).body(Full::new(Bytes::new()))?;
    match client.oneshot(request).await {
        Ok(response) => println!("  unexpected success: {}", response.status()),
        Err(error) => {
            println!("  ✗ {error}");
            println!(
                "    kind {:?}, recoverable: {}, come back in {:?}",
                error.kind(),
                error.is_recoverable(),
                error.retry_after().unwrap_or_default()
            );
        }
    }
    println!(
        "\nthe server saw {} requests",
        served.load(Ordering::SeqCst)
    );
    Ok(())
}

async fn serve(listener: TcpListener, served: Arc<AtomicUsize>) {
    while let Ok((stream, _)) = listener.accept().await {
        let served = Arc::clone(&served);
        let service = hyper::service::service_fn(move |_req: Request<Incoming>| {
            let n = served.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok::<_, Infallible>(script(n)))
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

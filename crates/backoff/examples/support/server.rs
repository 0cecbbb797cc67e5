//! A scripted HTTP server on 127.0.0.1 for the examples: the n-th request
//! (0-based) gets `script(n)`, a status and an optional `Retry-After`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What the n-th request gets: a status and a `Retry-After`, if any.
pub(crate) type Script = fn(usize) -> (u16, Option<&'static str>);

/// Starts the server on an ephemeral loopback port; returns its address
/// and the number of requests it has seen so far.
pub(crate) async fn start(script: Script) -> std::io::Result<(SocketAddr, Arc<AtomicUsize>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let seen = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let count = Arc::clone(&count);
            let service = hyper::service::service_fn(move |_req: Request<Incoming>| {
                let n = count.fetch_add(1, Ordering::SeqCst);
                let (status, retry_after) = script(n);
                let mut response = Response::builder().status(status);
                if let Some(seconds) = retry_after {
                    response = response.header("retry-after", seconds);
                }
                let body = Full::new(Bytes::from(format!("reply #{n}\n")));
                std::future::ready(Ok::<_, Infallible>(response.body(body).unwrap_or_default()))
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((addr, seen))
}

/// A server that throttles the first request for 1 s, fails the second
/// with a 503, and answers the rest.
pub(crate) fn flaky(n: usize) -> (u16, Option<&'static str>) {
    match n {
        0 => (429, Some("1")),
        1 => (503, None),
        _ => (200, None),
    }
}

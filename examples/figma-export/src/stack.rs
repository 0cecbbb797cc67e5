//! The tower stacks: the API's (retry → rate limit → fetch) and the
//! downloads' innermost service, on one HTTP client.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use steadfast_backoff::{
    Action, HttpPolicy, Reason, Replay, Retrier, RetryError, RetryLayer, Schedule,
};
use steadfast_ratelimit::{Limiter, RateLimitError, RateLimitLayer};
use tower::{BoxError, Layer, Service};

use crate::export::Format;

/// The HTTP client: HTTPS (rustls, Mozilla's roots) for Figma, plain HTTP
/// for `--api-url http://…` (proxies, the demo, tests).
pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

pub(crate) fn http_client() -> HttpClient {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Sends a request and reads the whole body, within the timeout.
pub(crate) async fn fetch(
    client: HttpClient,
    request: Request<Empty<Bytes>>,
    timeout: Duration,
) -> Result<Response<Bytes>, BoxError> {
    let exchange = async {
        let response = client.request(request).await?;
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await?.to_bytes();
        Ok::<_, BoxError>(Response::from_parts(parts, bytes))
    };
    tokio::time::timeout(timeout, exchange).await?
}

/// One file to download and write.
#[derive(Clone, Debug)]
pub(crate) struct Download {
    pub(crate) key: String,
    pub(crate) url: String,
    pub(crate) path: PathBuf,
    pub(crate) format: Format,
}

impl Replay for Download {
    fn replay(&self) -> Option<Self> {
        Some(self.clone())
    }
}

/// Why a download failed.
#[derive(Debug)]
pub(crate) enum DownloadError {
    Status(u16),
    Magic,
    Transport(BoxError),
}

impl fmt::Display for DownloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(code) => write!(f, "the image server answered {code}"),
            Self::Magic => f.write_str("the downloaded file is not the format asked for"),
            Self::Transport(e) => write!(f, "download failed: {e}"),
        }
    }
}

impl std::error::Error for DownloadError {}

/// The retry policy of downloads.
pub(crate) fn classify_download(outcome: &Result<Bytes, DownloadError>) -> Action {
    match outcome {
        Ok(_) => Action::Done,
        Err(DownloadError::Status(code)) if *code >= 500 || *code == 429 => {
            Action::retry(Reason::Status(*code))
        }
        Err(DownloadError::Status(code)) => Action::fail(Reason::Status(*code)),
        Err(DownloadError::Magic) => Action::retry(Reason::Other("wrong bytes")),
        Err(DownloadError::Transport(_)) => Action::retry(Reason::Connection),
    }
}

/// What the API stack's calls end in.
pub(crate) type ApiError = RetryError<Response<Bytes>, RateLimitError<BoxError>>;

/// The API stack: retry → rate limit (shared limiter) → fetch.
pub(crate) fn api_stack<P>(
    client: HttpClient,
    limiter: Arc<dyn Limiter>,
    retrier: Retrier<Schedule, HttpPolicy<P>>,
    timeout: Duration,
) -> impl Service<
    Request<Empty<Bytes>>,
    Response = Response<Bytes>,
    Error = ApiError,
    Future = impl Future<Output = Result<Response<Bytes>, ApiError>> + Send,
> + Clone
       + Send
where
    P: Fn(&RateLimitError<BoxError>) -> Action + Clone + Send + 'static,
{
    RetryLayer::new(retrier).layer(RateLimitLayer::shared(limiter).layer(tower::service_fn(
        move |request: Request<Empty<Bytes>>| fetch(client.clone(), request, timeout),
    )))
}

/// The innermost download service: GET the render's URL (no token), check
/// the status and the format's magic bytes.
pub(crate) fn download_service(
    client: HttpClient,
    timeout: Duration,
) -> impl Service<
    Download,
    Response = Bytes,
    Error = DownloadError,
    Future = impl Future<Output = Result<Bytes, DownloadError>> + Send,
> + Clone
       + Send {
    tower::service_fn(move |d: Download| {
        let client = client.clone();
        async move {
            let request = Request::get(&d.url)
                .body(Empty::new())
                .map_err(|e| DownloadError::Transport(e.into()))?;
            let response = fetch(client, request, timeout)
                .await
                .map_err(DownloadError::Transport)?;
            if response.status() != StatusCode::OK {
                return Err(DownloadError::Status(response.status().as_u16()));
            }
            let body = response.into_body();
            if !body.starts_with(d.format.magic()) {
                return Err(DownloadError::Magic);
            }
            Ok(body)
        }
    })
}

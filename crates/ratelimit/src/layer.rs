//! The tower middleware (feature `tower`).

use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use crate::limiter::{AcquireError, Feedback, Limiter};

/// Turns a response into [`Feedback`] for the limiter (`None`: say
/// nothing). Implemented by closures `Fn(&Response) -> Option<Feedback>`
/// and, with the `http` feature, by [`HttpFeedback`](crate::HttpFeedback)
/// for `http::Response`s.
pub trait Classify<R> {
    /// The feedback for `response`.
    fn classify(&self, response: &R) -> Option<Feedback>;
}

impl<R, F: Fn(&R) -> Option<Feedback>> Classify<R> for F {
    fn classify(&self, response: &R) -> Option<Feedback> {
        self(response)
    }
}

/// Waits for a permit from a shared [`Limiter`] before each call, and
/// feeds each response back to it.
///
/// The service is `Clone` and every clone shares the one limiter (no
/// `Buffer` needed). Its error is a [`RateLimitError`]: the inner
/// service's own error, or the limiter's [`AcquireError`] (which only
/// occurs when the limiter has a bound on the wait or the queue, or a
/// request asks for more than the burst). Any inner error type works,
/// `reqwest::Error` included, with no `map_err`.
///
/// ```
/// use steadfast_ratelimit::{RateLimitLayer, TokenBucket};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let limiter = TokenBucket::new("2/s".parse()?);
/// let client = ServiceBuilder::new()
///     .layer(RateLimitLayer::new(limiter.clone()))
///     .service(service_fn(|_: http::Request<()>| async {
///         Ok::<_, tower::BoxError>(http::Response::builder().status(429).header("retry-after", "30").body(())?)
///     }));
/// let response = client.clone().oneshot(http::Request::new(())).await.map_err(|e| e.into_boxed())?;
/// assert_eq!(response.status(), 429);
/// assert!(limiter.status().to_string().contains("paused 30s (Retry-After)"));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct RateLimitLayer<L, C> {
    limiter: L,
    classify: C,
}

#[cfg(feature = "http")]
impl<L> RateLimitLayer<L, crate::HttpFeedback> {
    /// Limits with `limiter`, reading feedback from `http::Response`s (and
    /// `reqwest::Response`s, feature `reqwest`) with [`HttpFeedback`](crate::HttpFeedback).
    pub fn new(limiter: L) -> Self {
        Self {
            limiter,
            classify: crate::HttpFeedback::new(),
        }
    }
}

impl<L, C> RateLimitLayer<L, C> {
    /// Limits with `limiter`, reading feedback with `classify`.
    pub fn with_classifier(limiter: L, classify: C) -> Self {
        Self { limiter, classify }
    }
}

impl<S, L: Clone, C: Clone> Layer<S> for RateLimitLayer<L, C> {
    type Service = RateLimit<S, L, C>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            limiter: self.limiter.clone(),
            classify: self.classify.clone(),
        }
    }
}

/// The service of a [`RateLimitLayer`].
#[derive(Clone, Debug)]
pub struct RateLimit<S, L, C> {
    inner: S,
    limiter: L,
    classify: C,
}

impl<S, L, C> RateLimit<S, L, C> {
    /// The limiter shared by every clone.
    pub fn limiter(&self) -> &L {
        &self.limiter
    }
}

/// The response future of [`RateLimit`].
pub type ResponseFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, RateLimitError<E>>> + Send>>;

/// Why a [`RateLimit`] call failed: the limiter refused to wait, or the
/// inner service failed.
///
/// `Display` is the cause's own message; `source()` is the cause, so that
/// error classifiers walking the chain (the retry policy's) see the inner
/// service's error as it is.
#[derive(Debug)]
#[non_exhaustive]
pub enum RateLimitError<E> {
    /// The limiter gave up without waiting.
    Limit(AcquireError),
    /// The inner service failed.
    Service(E),
}

impl<E> RateLimitError<E> {
    /// The inner service's error, if that is what this is.
    pub fn service_error(&self) -> Option<&E> {
        match self {
            Self::Service(e) => Some(e),
            Self::Limit(_) => None,
        }
    }

    /// The inner service's error, or the limiter's, boxed: for stacks
    /// whose errors are tower's `BoxError`.
    pub fn into_boxed(self) -> Box<dyn std::error::Error + Send + Sync>
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        match self {
            Self::Service(e) => e.into(),
            Self::Limit(e) => Box::new(e),
        }
    }
}

impl<E: fmt::Display> fmt::Display for RateLimitError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Limit(e) => e.fmt(f),
            Self::Service(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for RateLimitError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Limit(e) => Some(e),
            Self::Service(e) => Some(e),
        }
    }
}

impl<S, L, C, Req> Service<Req> for RateLimit<S, L, C>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    L: Limiter + Clone + 'static,
    C: Classify<S::Response> + Clone + Send + 'static,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = RateLimitError<S::Error>;
    type Future = ResponseFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(RateLimitError::Service)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        // The ready instance goes into the future; this one stays behind
        // for the next `poll_ready`.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limiter = self.limiter.clone();
        let classify = self.classify.clone();
        Box::pin(async move {
            let admission = limiter.acquire(1).await.map_err(RateLimitError::Limit)?;
            // Readiness may have lapsed while waiting: check again.
            poll_fn(|cx| inner.poll_ready(cx))
                .await
                .map_err(RateLimitError::Service)?;
            let result = inner.call(request).await.map_err(RateLimitError::Service);
            if let Ok(response) = &result {
                if let Some(feedback) = classify.classify(response) {
                    limiter.feedback(&feedback.sent_at(admission.at));
                }
            }
            result
        })
    }
}

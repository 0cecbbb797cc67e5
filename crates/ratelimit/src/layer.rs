//! The tower middleware (feature `tower`).

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

/// Reads status and rate-limit headers of `http::Response`s with
/// [`Feedback::from_response`].
#[cfg(feature = "http")]
#[derive(Clone, Copy, Debug, Default)]
pub struct HttpFeedback;

#[cfg(feature = "http")]
impl<B> Classify<http::Response<B>> for HttpFeedback {
    fn classify(&self, response: &http::Response<B>) -> Option<Feedback> {
        Some(Feedback::from_response(response))
    }
}

/// Waits for a permit from a shared [`Limiter`] before each call, and
/// feeds each response back to it.
///
/// The service is `Clone` and every clone shares the one limiter (no
/// `Buffer` needed); the inner service's error type is kept (it must
/// convert from [`AcquireError`], which only occurs when the limiter has a
/// bound on the wait or the queue, or a request asks for more than the
/// burst; `BoxError` stacks get that for free).
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
/// let response = client.clone().oneshot(http::Request::new(())).await?;
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
impl<L> RateLimitLayer<L, HttpFeedback> {
    /// Limits with `limiter`, reading feedback from `http::Response`s.
    pub fn new(limiter: L) -> Self {
        Self {
            limiter,
            classify: HttpFeedback,
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
pub type ResponseFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, L, C, Req> Service<Req> for RateLimit<S, L, C>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: From<AcquireError>,
    L: Limiter + Clone + 'static,
    C: Classify<S::Response> + Clone + Send + 'static,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        // The ready instance goes into the future; this one stays behind
        // for the next `poll_ready`.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limiter = self.limiter.clone();
        let classify = self.classify.clone();
        Box::pin(async move {
            let admission = limiter.acquire(1).await?;
            // Readiness may have lapsed while waiting: check again.
            poll_fn(|cx| inner.poll_ready(cx)).await?;
            let result = inner.call(request).await;
            if let Ok(response) = &result {
                if let Some(feedback) = classify.classify(response) {
                    limiter.feedback(&feedback.sent_at(admission.at));
                }
            }
            result
        })
    }
}

//! The tower middleware (feature `tower`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::limiter::{AcquireError, Admission, Feedback, LimitFuture, Limiter};

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

/// How many permits a request costs, beyond the ones
/// [`RateLimitLayer::permits`] takes in `poll_ready`. Implemented by
/// closures `Fn(&Request) -> u32` (the request's whole weight) and by
/// [`Flat`] (nothing more).
pub trait Weigh<Req> {
    /// The request's weight in permits.
    fn weigh(&self, request: &Req) -> u32;
}

impl<Req, F: Fn(&Req) -> u32> Weigh<Req> for F {
    fn weigh(&self, request: &Req) -> u32 {
        self(request)
    }
}

/// Every request costs the same: [`RateLimitLayer::permits`] (default 1).
#[derive(Clone, Copy, Debug, Default)]
pub struct Flat;

impl<Req> Weigh<Req> for Flat {
    fn weigh(&self, _: &Req) -> u32 {
        0
    }
}

/// Waits for a permit from a shared [`Limiter`] before each call, and
/// feeds each response back to it.
///
/// It follows tower's contract: `poll_ready` is `Pending` until a permit is
/// held (so `load_shed` sheds, and the inner service's readiness is not held
/// during the wait), then asks the inner service; `call` passes the inner
/// service's future through unboxed, adding only the feedback when it
/// completes. A permit taken by `poll_ready` and never used by a `call` is
/// spent.
///
/// The service is `Clone` and every clone shares the one limiter (no
/// `Buffer` needed). Its error is a [`RateLimitError`]: the inner
/// service's own error, or the limiter's [`AcquireError`] (a bound on the
/// wait or the queue, a request for more than the burst, or a store that is
/// down). Any inner error type works, `reqwest::Error` included, with no
/// `map_err`.
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
///
/// Requests of different weights (an API that counts a batch of 50 as 50):
///
/// ```
/// use steadfast_ratelimit::{RateLimitLayer, TokenBucket};
///
/// # fn main() -> Result<(), steadfast_ratelimit::RateError> {
/// let limiter = TokenBucket::new("100/s burst 100".parse()?);
/// let layer = RateLimitLayer::new(limiter)
///     .weigh(|request: &http::Request<Vec<u64>>| request.body().len() as u32);
/// # drop(layer);
/// # Ok(())
/// # }
/// ```
pub struct RateLimitLayer<C, W = Flat> {
    limiter: Arc<dyn Limiter>,
    classify: C,
    permits: u32,
    weigh: W,
}

impl<C: Clone, W: Clone> Clone for RateLimitLayer<C, W> {
    fn clone(&self) -> Self {
        Self {
            limiter: Arc::clone(&self.limiter),
            classify: self.classify.clone(),
            permits: self.permits,
            weigh: self.weigh.clone(),
        }
    }
}

impl<C: fmt::Debug, W> fmt::Debug for RateLimitLayer<C, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("classify", &self.classify)
            .field("permits", &self.permits)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "http")]
impl RateLimitLayer<crate::HttpFeedback> {
    /// Limits with `limiter`, reading feedback from `http::Response`s (and
    /// `reqwest::Response`s, feature `reqwest`) with [`HttpFeedback`](crate::HttpFeedback).
    pub fn new(limiter: impl Limiter + 'static) -> Self {
        Self::with_classifier(limiter, crate::HttpFeedback::new())
    }

    /// Limits with a limiter already shared: an `Arc<dyn Limiter>`, or an
    /// `Arc` of any limiter.
    pub fn shared(limiter: Arc<dyn Limiter>) -> Self {
        Self::shared_with_classifier(limiter, crate::HttpFeedback::new())
    }
}

impl<C> RateLimitLayer<C> {
    /// Limits with `limiter`, reading feedback with `classify`.
    pub fn with_classifier(limiter: impl Limiter + 'static, classify: C) -> Self {
        Self::shared_with_classifier(Arc::new(limiter), classify)
    }

    /// Limits with a shared limiter, reading feedback with `classify`.
    pub fn shared_with_classifier(limiter: Arc<dyn Limiter>, classify: C) -> Self {
        Self {
            limiter,
            classify,
            permits: 1,
            weigh: Flat,
        }
    }
}

impl<C, W> RateLimitLayer<C, W> {
    /// Takes `n` permits per request in `poll_ready` (default 1).
    #[must_use]
    pub fn permits(mut self, n: u32) -> Self {
        self.permits = n;
        self
    }

    /// Weighs each request: a request heavier than [`permits`](Self::permits)
    /// waits for the rest inside its response future before it is sent
    /// (that wait, unlike the one in `poll_ready`, is boxed). The two parts
    /// are separate acquisitions, so a weight up to `permits` + the burst
    /// goes through, never faster than the rate; beyond that the rest is
    /// refused with [`AcquireError::Insufficient`].
    pub fn weigh<V>(self, weigh: V) -> RateLimitLayer<C, V> {
        RateLimitLayer {
            limiter: self.limiter,
            classify: self.classify,
            permits: self.permits,
            weigh,
        }
    }
}

impl<S, C: Clone, W: Clone> Layer<S> for RateLimitLayer<C, W> {
    type Service = RateLimit<S, C, W>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            limiter: Arc::clone(&self.limiter),
            classify: self.classify.clone(),
            permits: self.permits,
            weigh: self.weigh.clone(),
            permit: Permit::None,
        }
    }
}

/// The service of a [`RateLimitLayer`].
pub struct RateLimit<S, C, W = Flat> {
    inner: S,
    limiter: Arc<dyn Limiter>,
    classify: C,
    permits: u32,
    weigh: W,
    permit: Permit,
}

/// Where `poll_ready` is with its permit.
enum Permit {
    None,
    Waiting(LimitFuture<'static, Result<Admission, AcquireError>>),
    Held(Admission),
}

impl<S: Clone, C: Clone, W: Clone> Clone for RateLimit<S, C, W> {
    /// A clone shares the limiter, not the permit.
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            limiter: Arc::clone(&self.limiter),
            classify: self.classify.clone(),
            permits: self.permits,
            weigh: self.weigh.clone(),
            permit: Permit::None,
        }
    }
}

impl<S: fmt::Debug, C: fmt::Debug, W> fmt::Debug for RateLimit<S, C, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let permit = match self.permit {
            Permit::None => "none",
            Permit::Waiting(_) => "waiting",
            Permit::Held(_) => "held",
        };
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("classify", &self.classify)
            .field("permits", &self.permits)
            .field("permit", &permit)
            .finish_non_exhaustive()
    }
}

impl<S, C, W> RateLimit<S, C, W> {
    /// The limiter shared by every clone.
    pub fn limiter(&self) -> &dyn Limiter {
        &self.limiter
    }
}

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

impl<S, C, W, Req> Service<Req> for RateLimit<S, C, W>
where
    S: Service<Req> + Clone,
    C: Classify<S::Response> + Clone,
    W: Weigh<Req>,
{
    type Response = S::Response;
    type Error = RateLimitError<S::Error>;
    type Future = ResponseFuture<S, Req, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        loop {
            match &mut self.permit {
                Permit::Held(_) => {
                    return self.inner.poll_ready(cx).map_err(RateLimitError::Service);
                }
                Permit::Waiting(acquire) => match ready!(Pin::new(acquire).poll(cx)) {
                    Ok(admission) => self.permit = Permit::Held(admission),
                    Err(error) => {
                        self.permit = Permit::None;
                        return Poll::Ready(Err(RateLimitError::Limit(error)));
                    }
                },
                Permit::None => {
                    let acquire = Arc::clone(&self.limiter).acquire_owned(self.permits);
                    self.permit = Permit::Waiting(acquire);
                }
            }
        }
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let held = match std::mem::replace(&mut self.permit, Permit::None) {
            Permit::Held(admission) => Some(admission),
            // Called without a ready `poll_ready` (against tower's
            // contract): wait for the permits in the future instead of
            // panicking.
            Permit::None | Permit::Waiting(_) => None,
        };
        let extra = match held {
            Some(_) => self.weigh.weigh(&request).saturating_sub(self.permits),
            None => self.weigh.weigh(&request).max(self.permits),
        };
        let limiter = Arc::clone(&self.limiter);
        let classify = self.classify.clone();
        match held {
            Some(admission) if extra == 0 => ResponseFuture {
                state: State::Calling {
                    future: self.inner.call(request),
                },
                sent: Some(admission.at),
                limiter,
                classify,
            },
            _ => {
                // The ready instance goes into the future (it is polled
                // again there: readiness may lapse during the wait); this
                // one stays behind for the next `poll_ready`.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture {
                    state: State::Waiting {
                        acquire: Some(Arc::clone(&limiter).acquire_owned(extra)),
                        inner: Some(inner),
                        request: Some(request),
                    },
                    sent: held.map(|admission| admission.at),
                    limiter,
                    classify,
                }
            }
        }
    }
}

pin_project! {
    /// The response future of [`RateLimit`]: the inner service's future,
    /// with the feedback to the limiter when it completes (and, for a
    /// request heavier than the permits taken in `poll_ready`, the wait for
    /// the rest first).
    pub struct ResponseFuture<S, Req, C>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req>,
        sent: Option<Instant>,
        limiter: Arc<dyn Limiter>,
        classify: C,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req>
    where
        S: Service<Req>,
    {
        Waiting {
            acquire: Option<LimitFuture<'static, Result<Admission, AcquireError>>>,
            inner: Option<S>,
            request: Option<Req>,
        },
        Calling {
            #[pin]
            future: S::Future,
        },
    }
}

impl<S, Req, C> Future for ResponseFuture<S, Req, C>
where
    S: Service<Req>,
    C: Classify<S::Response>,
{
    type Output = Result<S::Response, RateLimitError<S::Error>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Waiting {
                    acquire,
                    inner,
                    request,
                } => {
                    if let Some(pending) = acquire {
                        let admission =
                            ready!(Pin::new(pending).poll(cx)).map_err(RateLimitError::Limit)?;
                        *acquire = None;
                        // The request goes with its last permit.
                        *this.sent = Some(admission.at);
                    }
                    let service = inner.as_mut().expect("the service until it is called");
                    ready!(service.poll_ready(cx)).map_err(RateLimitError::Service)?;
                    let mut service = inner.take().expect("the service until it is called");
                    let request = request.take().expect("the request until it is sent");
                    let future = service.call(request);
                    this.state.set(State::Calling { future });
                }
                StateProj::Calling { future } => {
                    let result = ready!(future.poll(cx)).map_err(RateLimitError::Service);
                    if let Ok(response) = &result {
                        if let Some(feedback) = this.classify.classify(response) {
                            let feedback = match *this.sent {
                                Some(at) => feedback.sent_at(at),
                                None => feedback,
                            };
                            this.limiter.feedback(&feedback);
                        }
                    }
                    return Poll::Ready(result);
                }
            }
        }
    }
}

impl<S, Req, C> fmt::Debug for ResponseFuture<S, Req, C>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

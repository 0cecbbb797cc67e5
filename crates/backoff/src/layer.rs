//! The tower middleware: [`RetryLayer`] and its [`Retry`] service.

use std::fmt;
use std::task::{Context, Poll};
use std::time::Duration;

use tower_layer::Layer;
use tower_service::Service;

use crate::error::{ErrorKind, NoRetry, RetryError};
use crate::policy::{Policy, Reason};
use crate::replay::Replay;
use crate::retrier::Retrier;
use crate::schedule::Backoff;

/// Wraps services in [`Retry`].
///
/// ```
/// use std::time::Duration;
/// use steadfast_backoff::{HttpPolicy, Retrier, RetryLayer, Schedule};
/// use tower::ServiceBuilder;
///
/// # fn main() -> Result<(), steadfast_backoff::ConfigError> {
/// let retrier = Retrier::new(Schedule::exponential(Duration::from_secs(1), 2.0)?.max_retries(5))
///     .policy(HttpPolicy::new());
/// let client = tower::service_fn(|_req: http::Request<String>| async {
///     Ok::<_, std::io::Error>(http::Response::new(()))
/// });
/// let service = ServiceBuilder::new().layer(RetryLayer::new(retrier)).service(client);
/// # drop(service);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RetryLayer<B, P> {
    retrier: Retrier<B, P>,
}

impl<B, P> RetryLayer<B, P> {
    /// A layer that retries as `retrier` says.
    pub fn new(retrier: Retrier<B, P>) -> Self {
        Self { retrier }
    }
}

impl<B, P> From<Retrier<B, P>> for RetryLayer<B, P> {
    fn from(retrier: Retrier<B, P>) -> Self {
        Self::new(retrier)
    }
}

impl<S, B: Clone, P: Clone> Layer<S> for RetryLayer<B, P> {
    type Service = Retry<S, B, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry {
            inner,
            retrier: self.retrier.clone(),
        }
    }
}

impl<B: fmt::Debug, P: fmt::Debug> fmt::Debug for RetryLayer<B, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("retrier", &self.retrier)
            .finish()
    }
}

/// Retries the calls of an inner service as its [`Retrier`] says.
///
/// Each request is copied with [`Replay`] before the first attempt (unless
/// the policy rules out retrying it, e.g. a `POST`), and the copy is sent
/// again after each sleep. The response is `Ok` when the policy accepts an
/// outcome, and a [`RetryError`] carrying the last outcome otherwise.
///
/// The inner service is cloned into each call's future, as tower's own
/// `Retry` does, so it should be cheap to clone. A call that succeeds first
/// time allocates nothing and reads no clock (unless a budget or an
/// elapsed-time limit needs it).
#[derive(Clone)]
pub struct Retry<S, B, P> {
    inner: S,
    retrier: Retrier<B, P>,
}

impl<S, B, P> Retry<S, B, P> {
    /// Wraps `inner`.
    pub fn new(inner: S, retrier: Retrier<B, P>) -> Self {
        Self { inner, retrier }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug, B: fmt::Debug, P: fmt::Debug> fmt::Debug for Retry<S, B, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("retrier", &self.retrier)
            .finish()
    }
}

impl<S, B, P, Req> Service<Req> for Retry<S, B, P>
where
    S: Service<Req> + Clone,
    B: Backoff + Clone,
    P: Policy<Req, S::Response, S::Error> + Clone,
    Req: Replay,
{
    type Response = S::Response;
    type Error = RetryError<S::Response, S::Error>;
    type Future = future::ResponseFuture<S, B, P, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(not_ready)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let started = self.retrier.begin();
        let (copy, no_retry) = match self.retrier.policy.check_request(&request) {
            Ok(()) => match request.replay() {
                Some(copy) => (Some(copy), None),
                None => (None, Some(NoRetry::NotReplayable)),
            },
            Err(why) => (None, Some(why)),
        };
        // The clone waits for a retry; the instance that was polled ready
        // takes this call.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        future::ResponseFuture::new(
            ready,
            self.retrier.clone(),
            request,
            copy,
            no_retry,
            started,
        )
    }
}

/// A `poll_ready` failure: the inner service is broken, not the request.
fn not_ready<T, E>(error: E) -> RetryError<T, E> {
    RetryError::new(
        ErrorKind::Fatal,
        Reason::Error,
        0,
        Duration::ZERO,
        Err(error),
    )
}

/// The future of a [`Retry`] call.
pub mod future {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{ready, Context, Poll};

    use pin_project_lite::pin_project;
    use tokio::time::{Instant, Sleep};
    use tower_service::Service;

    use super::not_ready;
    use crate::error::{NoRetry, RetryError};
    use crate::policy::{Action, Policy};
    use crate::replay::Replay;
    use crate::retrier::{Attempts, Retrier, Step};
    use crate::schedule::Backoff;

    pin_project! {
        /// The response future of [`Retry`](super::Retry).
        pub struct ResponseFuture<S, B, P, Req>
        where
            S: Service<Req>,
            B: Backoff,
        {
            #[pin]
            state: State<S::Future>,
            service: S,
            retrier: Retrier<B, P>,
            request: Option<Req>,
            no_retry: Option<NoRetry>,
            attempts: Attempts<B::Delays>,
        }
    }

    pin_project! {
        #[project = StateProj]
        enum State<F> {
            Calling { #[pin] future: F },
            // The sleep is boxed: it exists only on the retry path, and
            // keeping it out of line keeps the happy path's future small.
            Sleeping { sleep: Pin<Box<Sleep>> },
        }
    }

    impl<S, B, P, Req> ResponseFuture<S, B, P, Req>
    where
        S: Service<Req>,
        B: Backoff,
    {
        pub(super) fn new(
            mut service: S,
            retrier: Retrier<B, P>,
            request: Req,
            copy: Option<Req>,
            no_retry: Option<NoRetry>,
            started: Option<Instant>,
        ) -> Self {
            let future = service.call(request);
            Self {
                state: State::Calling { future },
                service,
                retrier,
                request: copy,
                no_retry,
                attempts: Attempts::new(started),
            }
        }
    }

    impl<S, B, P, Req> Future for ResponseFuture<S, B, P, Req>
    where
        S: Service<Req>,
        B: Backoff,
        P: Policy<Req, S::Response, S::Error>,
        Req: Replay,
    {
        type Output = Result<S::Response, RetryError<S::Response, S::Error>>;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let mut this = self.project();
            loop {
                match this.state.as_mut().project() {
                    StateProj::Calling { future } => {
                        let outcome = ready!(future.poll(cx));
                        let retrier = &*this.retrier;
                        let action = retrier
                            .policy
                            .classify_attempt(&outcome, this.attempts.retries + 1);
                        if action == Action::Done {
                            let on_done = |r: &mut S::Response, n| retrier.policy.on_done(r, n);
                            return Poll::Ready(this.attempts.finish(retrier, outcome, on_done));
                        }
                        // With no copy left to send, a transient failure
                        // ends here instead of being silently unretried.
                        let no_retry = this
                            .no_retry
                            .or(this.request.is_none().then_some(NoRetry::NotReplayable));
                        let step = this
                            .attempts
                            .decide(retrier, action, no_retry, Instant::now());
                        let event = match step {
                            Step::Sleep(event) => event,
                            Step::Stop(stop) => {
                                return Poll::Ready(Err(this
                                    .attempts
                                    .error(retrier, stop, outcome)))
                            }
                        };
                        retrier.announce(&event);
                        this.state.set(State::Sleeping {
                            sleep: Box::pin(tokio::time::sleep(event.delay)),
                        });
                    }
                    StateProj::Sleeping { sleep } => {
                        // A finished sleep stays ready, so polling it again
                        // while the service gets ready is fine.
                        ready!(sleep.as_mut().poll(cx));
                        if let Err(e) = ready!(this.service.poll_ready(cx)) {
                            return Poll::Ready(Err(not_ready(e)));
                        }
                        // Send a copy while one can be made, else the kept
                        // original as the last try (the check above then
                        // stops further retries).
                        let copy = this.request.as_ref().and_then(Req::replay);
                        let Some(request) = copy.or_else(|| this.request.take()) else {
                            unreachable!("no sleep starts without a request to send after it")
                        };
                        let future = this.service.call(request);
                        this.state.set(State::Calling { future });
                    }
                }
            }
        }
    }
}

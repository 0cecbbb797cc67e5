//! The reqwest-middleware glue (feature `reqwest-middleware`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest_middleware::{Middleware, Next};
use tokio::time::Instant;

use crate::error::{AttemptTimedOut, ErrorKind, NoRetry, RetryError};
use crate::event::{RetryEvent, RetryInfo};
use crate::http_policy::HttpPolicy;
use crate::policy::{Action, Policy};
use crate::retrier::{Attempts, Retrier, Step};
use crate::schedule::Backoff;

/// The outcome of one attempt through reqwest-middleware, as policies and
/// hooks of [`RetryMiddleware`] see it.
pub type Outcome = Result<reqwest::Response, reqwest_middleware::Error>;

type Inspect = Arc<dyn Fn(&Outcome, &RetryEvent) + Send + Sync>;

/// Retries for `reqwest_middleware::ClientBuilder`, obeying the server:
/// `Retry-After` (and its vendor forms) and rate-limit headers, with the
/// verdicts of [`HttpPolicy`] by default.
///
/// ```
/// use std::time::Duration;
/// use steadfast_backoff::{RetryMiddleware, Schedule};
///
/// # fn main() -> Result<(), steadfast_backoff::ConfigError> {
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(RetryMiddleware::new(Schedule::exponential(Duration::from_millis(500), 2.0)?.max_retries(4)))
///     .build();
/// # drop(client);
/// # Ok(())
/// # }
/// ```
///
/// What comes back when retrying stops:
///
/// * a response the policy accepted, or the last response when retries
///   ran out (a 503, say, as `Ok`, like any reqwest call: use
///   `error_for_status`); when it took retries, a [`RetryInfo`] in its
///   extensions says how many;
/// * an error that ended the first attempt for good (a builder error, a
///   redirect loop) exactly as reqwest returned it;
/// * any other error as `reqwest_middleware::Error::Middleware` holding the
///   [`RetryError`], whose message says why retrying stopped ("timed out
///   after 3 retries in 7s; try again later") and whose `source()` is the
///   last attempt's error.
///
/// Only idempotent requests are retried (see [`HttpPolicy`]); a request
/// with a streaming body is sent once.
pub struct RetryMiddleware<B, P = HttpPolicy> {
    retrier: Retrier<B, P>,
    attempt_timeout: Option<Duration>,
    inspect: Option<Inspect>,
}

impl<B> RetryMiddleware<B, HttpPolicy> {
    /// Retries along `backoff` with the default [`HttpPolicy`].
    pub fn new(backoff: B) -> Self {
        Self::from_retrier(Retrier::new(backoff).policy(HttpPolicy::new()))
    }
}

impl<B, P> RetryMiddleware<B, P> {
    /// Retries as `retrier` says: its schedule, policy, hint ceiling,
    /// budget and `on_retry` hook.
    pub fn from_retrier(retrier: Retrier<B, P>) -> Self {
        Self {
            retrier,
            attempt_timeout: None,
            inspect: None,
        }
    }

    /// Decides with a closure over each attempt's [`Outcome`] (its types
    /// are known, so `|outcome| ...` needs no annotation). A closure policy
    /// retries any request, idempotent or not.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use steadfast_backoff::{Action, Reason, RetryMiddleware, Schedule};
    ///
    /// let middleware = RetryMiddleware::new(Schedule::constant(Duration::from_secs(1)))
    ///     .policy(|outcome| match outcome {
    ///         Ok(response) if response.status() == 409 => Action::retry(Reason::Status(409)),
    ///         Ok(_) => Action::Done,
    ///         Err(_) => Action::retry(Reason::Error),
    ///     });
    /// # drop(middleware);
    /// ```
    #[must_use]
    pub fn policy<F>(self, policy: F) -> RetryMiddleware<B, F>
    where
        F: Fn(&Outcome) -> Action,
    {
        self.with_policy(policy)
    }

    /// Decides with any [`Policy`] over reqwest's types (an [`HttpPolicy`]
    /// with other settings, say).
    #[must_use]
    pub fn with_policy<Q>(self, policy: Q) -> RetryMiddleware<B, Q> {
        RetryMiddleware {
            retrier: self.retrier.policy(policy),
            attempt_timeout: self.attempt_timeout,
            inspect: self.inspect,
        }
    }

    /// Ends an attempt that takes longer than `timeout` with an
    /// [`AttemptTimedOut`] error, which is retried as a timeout. (reqwest's
    /// own `timeout` is per request, not per attempt.)
    #[must_use]
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// Calls `hook` before each retry's sleep with the failed attempt's
    /// outcome (the response or the error) and the [`RetryEvent`] (the
    /// retry's number, reason and delay).
    #[must_use]
    pub fn on_retry(
        mut self,
        hook: impl Fn(&Outcome, &RetryEvent) + Send + Sync + 'static,
    ) -> Self {
        self.inspect = Some(Arc::new(hook));
        self
    }

    /// The retrier.
    pub fn retrier(&self) -> &Retrier<B, P> {
        &self.retrier
    }
}

impl<B: fmt::Debug, P: fmt::Debug> fmt::Debug for RetryMiddleware<B, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryMiddleware")
            .field("retrier", &self.retrier)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("on_retry", &self.inspect.as_ref().map(|_| "<hook>"))
            .finish()
    }
}

impl<B, P> RetryMiddleware<B, P> {
    async fn attempt(
        &self,
        request: reqwest::Request,
        extensions: &mut http::Extensions,
        next: Next<'_>,
    ) -> Outcome {
        let call = next.run(request, extensions);
        match self.attempt_timeout {
            None => call.await,
            Some(after) => tokio::time::timeout(after, call).await.unwrap_or_else(|_| {
                Err(reqwest_middleware::Error::middleware(AttemptTimedOut {
                    after,
                }))
            }),
        }
    }
}

#[async_trait::async_trait]
impl<B, P> Middleware for RetryMiddleware<B, P>
where
    B: Backoff + Send + Sync + 'static,
    B::Delays: Send,
    P: Policy<reqwest::Request, reqwest::Response, reqwest_middleware::Error>
        + Send
        + Sync
        + 'static,
{
    async fn handle(
        &self,
        request: reqwest::Request,
        extensions: &mut http::Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let retrier = &self.retrier;
        let mut attempts = Attempts::new(retrier.begin());
        // The spare copy is cloned for each retry and sent itself last.
        let (mut spare, no_retry) = match retrier.policy.check_request(&request) {
            Ok(()) => match request.try_clone() {
                Some(copy) => (Some(copy), None),
                None => (None, Some(NoRetry::NotReplayable)),
            },
            Err(why) => (None, Some(why)),
        };
        let mut request = Some(request);
        loop {
            let Some(this) = request.take() else {
                unreachable!("no retry starts without a request to send")
            };
            let outcome = self.attempt(this, extensions, next.clone()).await;
            let action = retrier
                .policy
                .classify_attempt(&outcome, attempts.retries + 1);
            if action == Action::Done {
                return match attempts.finish(retrier, outcome, |r, n| retrier.policy.on_done(r, n))
                {
                    Ok(response) => Ok(response),
                    Err(error) => give_up(error),
                };
            }
            let no_retry = no_retry.or(spare.is_none().then_some(NoRetry::NotReplayable));
            match attempts.decide(retrier, action, no_retry, Instant::now()) {
                Step::Sleep(event) => {
                    retrier.announce(&event);
                    if let Some(hook) = &self.inspect {
                        hook(&outcome, &event);
                    }
                    drop(outcome);
                    tokio::time::sleep(event.delay).await;
                    request = spare
                        .as_ref()
                        .and_then(reqwest::Request::try_clone)
                        .or_else(|| spare.take());
                }
                Step::Stop(stop) => return give_up(attempts.error(retrier, stop, outcome)),
            }
        }
    }
}

/// What the caller gets when retrying stops short of an accepted outcome.
fn give_up(
    error: RetryError<reqwest::Response, reqwest_middleware::Error>,
) -> reqwest_middleware::Result<reqwest::Response> {
    let retries = error.retries();
    if error.last().is_ok() {
        let Ok(mut response) = error.into_last() else {
            unreachable!("checked just above")
        };
        if retries > 0 {
            response.extensions_mut().insert(RetryInfo::new(retries));
        }
        return Ok(response);
    }
    if retries == 0 && error.kind() == ErrorKind::Fatal {
        return error.into_last();
    }
    Err(reqwest_middleware::Error::middleware(error))
}

//! The HTTP policy: safe defaults for `http::Request` / `http::Response`.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::time::SystemTime;

use http::{HeaderMap, Method, Request, Response, StatusCode};
use steadfast_http::{Classifier, Verdict};

use crate::error::NoRetry;
use crate::event::RetryInfo;
use crate::policy::{Action, Policy, Reason};
use crate::when::{HttpOutcome, When};

/// Retries what is safe to retry over HTTP, and obeys the server's hints.
///
/// Responses are judged by [`steadfast_http::Classifier`], the same rules
/// the rate limiter reads them by:
///
/// | outcome | verdict |
/// |---|---|
/// | 429; 503 with `Retry-After`; 403 with no quota left or a `Retry-After` | retry, reason "rate limited", with the server's hint |
/// | 408, 500, 502, 503, 504 (configurable with [`classifier`](Self::classifier)) | retry, with the server's `Retry-After` if any |
/// | any other status (2xx, 3xx, 400, 401, 404, 422, ...) | done: returned as `Ok` |
/// | connection errors, timeouts, other transport errors | retry |
/// | errors that cannot heal (permission denied, invalid input or data, not found, unsupported) | fail |
///
/// Only idempotent requests are sent twice: `GET`, `HEAD`, `OPTIONS`,
/// `TRACE`, `PUT` and `DELETE`, or any request with an `Idempotency-Key`
/// header, unless [`retry_non_idempotent`](Self::retry_non_idempotent) says
/// otherwise. A response accepted after retries carries a [`RetryInfo`] in
/// its extensions.
///
/// Hints (`Retry-After` in all its forms and its millisecond vendor forms,
/// `RateLimit`, `RateLimit-Reset`, `X-RateLimit-Reset`, ...) are parsed by
/// [`steadfast_http::hint`]; dates are measured against the response's
/// `Date` header, else the policy's clock.
///
/// Errors are classified through `C`, a [`ClassifyError`]: [`DefaultErrors`]
/// walks the error's `source()` chain for I/O error kinds and timeouts, and
/// works with any `E: Error + 'static`. For a stack whose error is tower's
/// `BoxError`, use [`HttpPolicy::boxed_errors`].
#[derive(Clone, Copy)]
pub struct HttpPolicy<C = DefaultErrors> {
    retry_non_idempotent: bool,
    clock: fn() -> SystemTime,
    classifier: Classifier,
    errors: C,
}

impl HttpPolicy {
    /// The defaults in the table above.
    #[must_use]
    pub fn new() -> Self {
        Self {
            retry_non_idempotent: false,
            clock: SystemTime::now,
            classifier: Classifier::new(),
            errors: DefaultErrors,
        }
    }

    /// The same, for services whose error is `Box<dyn Error + Send + Sync>`
    /// (tower's `BoxError`).
    #[must_use]
    pub fn boxed_errors() -> HttpPolicy<BoxedErrors> {
        Self::new().classify_errors(BoxedErrors)
    }
}

impl Default for HttpPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl<C> HttpPolicy<C> {
    /// Retries `POST`, `PATCH` and other non-idempotent requests too. Only
    /// for servers that tolerate duplicates.
    #[must_use]
    pub fn retry_non_idempotent(mut self, yes: bool) -> Self {
        self.retry_non_idempotent = yes;
        self
    }

    /// The wall clock for HTTP-dates in responses without a `Date` header
    /// (default [`SystemTime::now`]); for tests.
    #[must_use]
    pub fn clock(mut self, clock: fn() -> SystemTime) -> Self {
        self.clock = clock;
        self
    }

    /// Classifies transport errors with `errors` instead.
    #[must_use]
    pub fn classify_errors<D>(self, errors: D) -> HttpPolicy<D> {
        HttpPolicy {
            retry_non_idempotent: self.retry_non_idempotent,
            clock: self.clock,
            classifier: self.classifier,
            errors,
        }
    }

    /// Decides which statuses are retried and which are throttles with
    /// `classifier` (default [`Classifier::new`]): e.g.
    /// `Classifier::new().never_retry(500)`.
    #[must_use]
    pub fn classifier(mut self, classifier: Classifier) -> Self {
        self.classifier = classifier;
        self
    }

    /// Overrides verdicts with `adjust`, which sees each outcome's status
    /// and headers or its error, and the verdict so far; `None` keeps the
    /// verdict. Its argument's type is known, so no annotation is needed.
    ///
    /// ```
    /// use steadfast_backoff::{Action, HttpPolicy, Reason, Retrier, Schedule};
    /// # use std::time::Duration;
    ///
    /// // This API answers 409 while a resource is being created: retry it.
    /// let policy = HttpPolicy::new().when(|outcome| {
    ///     (outcome.status()? == 409).then(|| Action::retry(Reason::Status(409)))
    /// });
    /// let retrier = Retrier::new(Schedule::constant(Duration::from_secs(1))).policy(policy);
    /// # drop(retrier);
    /// ```
    #[must_use]
    pub fn when<F>(self, adjust: F) -> When<Self, F>
    where
        F: Fn(&HttpOutcome<'_>) -> Option<Action>,
    {
        When {
            policy: self,
            adjust,
        }
    }

    /// The shared [`Verdict`] on a response, as the rate limiter sees it too.
    pub fn verdict(&self, status: StatusCode, headers: &HeaderMap) -> Verdict {
        self.classifier.classify(status, headers, (self.clock)())
    }

    /// The error classification.
    #[cfg(feature = "reqwest")]
    pub(crate) fn errors(&self) -> &C {
        &self.errors
    }

    /// Whether a request with `method` and `headers` may be sent twice.
    pub(crate) fn check(&self, method: &Method, headers: &HeaderMap) -> Result<(), NoRetry> {
        if self.retry_non_idempotent
            || is_idempotent(method)
            || headers.contains_key("idempotency-key")
        {
            Ok(())
        } else {
            Err(NoRetry::NotIdempotent)
        }
    }

    /// The verdict on a response alone.
    pub fn classify_response<B>(&self, response: &Response<B>) -> Action {
        self.response_action(response.status(), response.headers())
    }

    /// The action for a response's status and headers. A success or a
    /// redirect is done at once: the hot path reads no clock and no header.
    pub(crate) fn response_action(&self, status: StatusCode, headers: &HeaderMap) -> Action {
        if status.as_u16() < 400 {
            return Action::Done;
        }
        action(&self.verdict(status, headers))
    }
}

/// The retry verdict that goes with a shared [`Verdict`].
pub(crate) fn action(verdict: &Verdict) -> Action {
    if !verdict.is_retryable() {
        return Action::Done;
    }
    let reason = if verdict.is_throttled() {
        Reason::RateLimited
    } else {
        Reason::Status(verdict.status().as_u16())
    };
    Action::Retry {
        reason,
        hint: verdict.hint(),
    }
}

impl<C: fmt::Debug> fmt::Debug for HttpPolicy<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpPolicy")
            .field("retry_non_idempotent", &self.retry_non_idempotent)
            .field("classifier", &self.classifier)
            .field("errors", &self.errors)
            .finish_non_exhaustive()
    }
}

/// Whether a method may be sent twice without doing its work twice
/// (RFC 9110 §9.2.2).
pub(crate) fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

impl<B, RB, E, C> Policy<Request<B>, Response<RB>, E> for HttpPolicy<C>
where
    C: ClassifyError<E>,
{
    fn classify(&self, outcome: &Result<Response<RB>, E>) -> Action {
        match outcome {
            Ok(response) => self.classify_response(response),
            Err(error) => self.errors.classify_error(error),
        }
    }

    fn check_request(&self, request: &Request<B>) -> Result<(), NoRetry> {
        self.check(request.method(), request.headers())
    }

    fn on_done(&self, response: &mut Response<RB>, retries: u32) {
        if retries > 0 {
            response.extensions_mut().insert(RetryInfo::new(retries));
        }
    }
}

/// Classifies a service's errors for [`HttpPolicy`].
///
/// Implemented by [`DefaultErrors`] and by closures `Fn(&E) -> Action`.
pub trait ClassifyError<E> {
    /// The verdict on one error.
    fn classify_error(&self, error: &E) -> Action;
}

impl<E, F> ClassifyError<E> for F
where
    F: Fn(&E) -> Action,
{
    fn classify_error(&self, error: &E) -> Action {
        self(error)
    }
}

/// The default error classification: walks the `source()` chain.
///
/// I/O errors of kind refused, reset, aborted, not connected, broken pipe,
/// unexpected EOF are connection failures; `TimedOut`, tokio's and tower's
/// `Elapsed` and [`AttemptTimedOut`](crate::AttemptTimedOut) are timeouts;
/// with the `reqwest` feature, `reqwest::Error`s are read by their kind
/// (builder, redirect, decode and body errors fail, timeouts are timeouts,
/// connect errors are connection failures), looking inside
/// `reqwest_middleware::Error` too; permission denied, not found, invalid input or data and
/// unsupported are permanent. Anything else is a transient transport
/// failure: an HTTP client's errors are, by nature, mostly about the
/// network (hyper's "connection closed before message completed", say).
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultErrors;

impl DefaultErrors {
    /// The verdict on any error, through its `source()` chain.
    pub fn classify_dyn(error: &(dyn StdError + 'static)) -> Action {
        let mut next = Some(error);
        while let Some(e) = next {
            if e.is::<tokio::time::error::Elapsed>() {
                return Action::retry(Reason::Timeout);
            }
            #[cfg(feature = "tower")]
            if e.is::<tower::timeout::error::Elapsed>() {
                return Action::retry(Reason::Timeout);
            }
            if e.is::<crate::AttemptTimedOut>() {
                return Action::retry(Reason::Timeout);
            }
            #[cfg(feature = "reqwest")]
            if let Some(r) = e.downcast_ref::<reqwest::Error>() {
                if let Some(verdict) = crate::reqwest::classify(r) {
                    return verdict;
                }
            }
            #[cfg(feature = "reqwest-middleware")]
            if let Some(m) = e.downcast_ref::<reqwest_middleware::Error>() {
                // Both variants are `#[error(transparent)]`: their
                // `source()` skips the wrapped error, so step into it.
                next = Some(match m {
                    reqwest_middleware::Error::Reqwest(r) => r,
                    reqwest_middleware::Error::Middleware(a) => {
                        let inner: &(dyn StdError + Send + Sync + 'static) = a.as_ref();
                        inner
                    }
                });
                continue;
            }
            if let Some(io) = e.downcast_ref::<io::Error>() {
                use io::ErrorKind as K;
                match io.kind() {
                    K::TimedOut | K::WouldBlock => return Action::retry(Reason::Timeout),
                    K::ConnectionRefused
                    | K::ConnectionReset
                    | K::ConnectionAborted
                    | K::NotConnected
                    | K::BrokenPipe
                    | K::UnexpectedEof
                    | K::AddrNotAvailable => return Action::retry(Reason::Connection),
                    K::PermissionDenied
                    | K::NotFound
                    | K::InvalidInput
                    | K::InvalidData
                    | K::Unsupported => return Action::fail(Reason::Error),
                    _ => {}
                }
            }
            next = e.source();
        }
        Action::retry(Reason::Error)
    }
}

impl<E: StdError + 'static> ClassifyError<E> for DefaultErrors {
    fn classify_error(&self, error: &E) -> Action {
        Self::classify_dyn(error)
    }
}

/// [`DefaultErrors`] for boxed errors, which do not implement `Error`
/// themselves.
#[derive(Clone, Copy, Debug, Default)]
pub struct BoxedErrors;

impl ClassifyError<Box<dyn StdError + Send + Sync>> for BoxedErrors {
    fn classify_error(&self, error: &Box<dyn StdError + Send + Sync>) -> Action {
        DefaultErrors::classify_dyn(&**error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Hint, HintSource};
    use std::time::Duration;

    type Outcome = Result<Response<()>, io::Error>;

    fn response(status: u16, headers: &[(&str, &str)]) -> Outcome {
        let mut r = Response::builder().status(status);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        Ok(r.body(()).unwrap())
    }

    fn classify(outcome: &Outcome) -> Action {
        Policy::<Request<()>, _, _>::classify(&HttpPolicy::new(), outcome)
    }

    #[test]
    fn statuses() {
        for code in [408, 500, 502, 503, 504] {
            assert_eq!(
                classify(&response(code, &[])),
                Action::retry(Reason::Status(code)),
                "{code}"
            );
        }
        for code in [200, 201, 204, 301, 304, 400, 401, 403, 404, 409, 422, 501] {
            assert_eq!(classify(&response(code, &[])), Action::Done, "{code}");
        }
        let hint = Hint {
            delay: Duration::from_secs(7),
            source: HintSource::RetryAfter,
        };
        assert_eq!(
            classify(&response(429, &[("retry-after", "7")])),
            Action::retry_after(Reason::RateLimited, hint)
        );
        assert_eq!(
            classify(&response(503, &[("retry-after", "7")])),
            Action::retry_after(Reason::RateLimited, hint)
        );
        assert_eq!(
            classify(&response(429, &[("retry-after", "-7")])),
            Action::retry(Reason::RateLimited)
        );
    }

    #[test]
    fn errors_through_the_source_chain() {
        #[derive(Debug)]
        struct Wrapper(io::Error);
        impl fmt::Display for Wrapper {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("client error")
            }
        }
        impl StdError for Wrapper {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let p = HttpPolicy::new();
        let verdict = |e: Wrapper| Policy::<Request<()>, Response<()>, _>::classify(&p, &Err(e));
        assert_eq!(
            verdict(Wrapper(io::ErrorKind::ConnectionRefused.into())),
            Action::retry(Reason::Connection)
        );
        assert_eq!(
            verdict(Wrapper(io::ErrorKind::TimedOut.into())),
            Action::retry(Reason::Timeout)
        );
        assert_eq!(
            verdict(Wrapper(io::ErrorKind::PermissionDenied.into())),
            Action::fail(Reason::Error)
        );
        assert_eq!(
            verdict(Wrapper(io::Error::other("?"))),
            Action::retry(Reason::Error)
        );

        let boxed: Box<dyn StdError + Send + Sync> =
            Box::new(io::Error::from(io::ErrorKind::ConnectionReset));
        let p = HttpPolicy::boxed_errors();
        assert_eq!(
            Policy::<Request<()>, Response<()>, _>::classify(&p, &Err(boxed)),
            Action::retry(Reason::Connection)
        );
    }

    #[test]
    fn only_idempotent_requests_are_replayed() {
        let p = HttpPolicy::new();
        let check = |p: &HttpPolicy, method: Method, key: bool| {
            let mut r = Request::builder().method(method);
            if key {
                r = r.header("Idempotency-Key", "abc");
            }
            Policy::<_, Response<()>, io::Error>::check_request(p, &r.body(()).unwrap())
        };
        for m in [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::PUT,
            Method::DELETE,
        ] {
            assert_eq!(check(&p, m, false), Ok(()));
        }
        assert_eq!(check(&p, Method::POST, false), Err(NoRetry::NotIdempotent));
        assert_eq!(check(&p, Method::PATCH, false), Err(NoRetry::NotIdempotent));
        assert_eq!(check(&p, Method::POST, true), Ok(()));
        assert_eq!(
            check(&p.retry_non_idempotent(true), Method::POST, false),
            Ok(())
        );
    }
}

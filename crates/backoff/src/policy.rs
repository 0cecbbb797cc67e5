//! Policies: which outcomes are done, which are worth another try, which
//! are hopeless.

use std::fmt;

pub use steadfast_http::{Hint, HintSource};

use crate::error::NoRetry;

/// Why an attempt failed, as a policy sees it. Small and `Copy`, so that
/// events and errors carry it for free.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The server is shedding load: HTTP 429, or 503 with a `Retry-After`.
    RateLimited,
    /// An HTTP status code that is not success.
    Status(u16),
    /// The attempt timed out.
    Timeout,
    /// The connection failed: refused, reset, closed early.
    Connection,
    /// The operation returned an error.
    Error,
    /// The request itself is malformed (a relative URL, a bad header):
    /// sending it again cannot help.
    Invalid,
    /// A reason named by a custom policy.
    Other(&'static str),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RateLimited => f.write_str("rate limited"),
            Self::Status(code) => write!(f, "HTTP {code}"),
            Self::Timeout => f.write_str("timed out"),
            Self::Connection => f.write_str("connection failed"),
            Self::Error => f.write_str("request failed"),
            Self::Invalid => f.write_str("invalid request"),
            Self::Other(s) => f.write_str(s),
        }
    }
}

/// A policy's verdict on one outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Accept the outcome: the driver returns it as `Ok`.
    Done,
    /// A transient failure: try again after the schedule's delay (and not
    /// before the server's hint, if any).
    Retry {
        /// Why, for events and errors.
        reason: Reason,
        /// When the server said to come back.
        hint: Option<Hint>,
    },
    /// A permanent failure: stop with [`ErrorKind::Fatal`](crate::ErrorKind::Fatal).
    Fail {
        /// Why, for the error.
        reason: Reason,
    },
}

impl Action {
    /// Retry, with no server hint.
    pub fn retry(reason: Reason) -> Self {
        Self::Retry { reason, hint: None }
    }

    /// Retry, no sooner than `hint`.
    pub fn retry_after(reason: Reason, hint: Hint) -> Self {
        Self::Retry {
            reason,
            hint: Some(hint),
        }
    }

    /// Give up: the failure is permanent.
    pub fn fail(reason: Reason) -> Self {
        Self::Fail { reason }
    }
}

/// Decides, for each outcome of an operation, whether it is done, worth
/// another try, or hopeless.
///
/// `Req` is the request type (`()` for the plain [`retry`](crate::retry)
/// driver), `T` and `E` the operation's `Ok` and `Err` types. The policy sees
/// the whole outcome, so an `Ok` HTTP response with status 503 can be
/// retried.
///
/// Closures `Fn(&Result<T, E>) -> Action` are policies:
///
/// ```
/// use steadfast_backoff::{Action, Policy, Reason};
///
/// let retry_busy = |outcome: &Result<u16, ()>| match outcome {
///     Ok(503) => Action::retry(Reason::Status(503)),
///     Ok(_) => Action::Done,
///     Err(()) => Action::fail(Reason::Error),
/// };
/// assert_eq!(Policy::<(), _, _>::classify(&retry_busy, &Ok(200)), Action::Done);
/// ```
pub trait Policy<Req, T, E> {
    /// The verdict on one outcome.
    fn classify(&self, outcome: &Result<T, E>) -> Action;

    /// The verdict on the outcome of attempt number `attempt` (1 for the
    /// first); what the drivers call. The default ignores the number and
    /// asks [`classify`](Self::classify).
    fn classify_attempt(&self, outcome: &Result<T, E>, attempt: u32) -> Action {
        let _ = attempt;
        self.classify(outcome)
    }

    /// Whether this request may be sent more than once; asked once per
    /// request, before the first attempt. The default allows it.
    ///
    /// # Errors
    ///
    /// The reason it may not, e.g. [`NoRetry::NotIdempotent`] for a `POST`.
    /// A transient failure of such a request ends with
    /// [`ErrorKind::NotRetried`](crate::ErrorKind::NotRetried).
    fn check_request(&self, _request: &Req) -> Result<(), NoRetry> {
        Ok(())
    }

    /// Called on an outcome the policy accepted, before it is returned, with
    /// the number of retries it took (often 0). The HTTP policy records
    /// non-zero counts in the response's extensions.
    fn on_done(&self, _response: &mut T, _retries: u32) {}
}

impl<Req, T, E, F> Policy<Req, T, E> for F
where
    F: Fn(&Result<T, E>) -> Action,
{
    fn classify(&self, outcome: &Result<T, E>) -> Action {
        self(outcome)
    }
}

/// The default policy of the plain [`retry`](crate::retry) driver: every
/// `Ok` is done, every `Err` is retried.
#[derive(Clone, Copy, Debug, Default)]
pub struct RetryErrors;

impl<Req, T, E> Policy<Req, T, E> for RetryErrors {
    fn classify(&self, outcome: &Result<T, E>) -> Action {
        match outcome {
            Ok(_) => Action::Done,
            Err(_) => Action::retry(Reason::Error),
        }
    }
}

/// A policy that never retries, for a `--fail-fast` flag.
///
/// It keeps the wrapped policy's verdicts, so a failure is still reported as
/// "rate limited" or "timed out", but a transient failure ends at once with
/// [`ErrorKind::NotRetried`](crate::ErrorKind::NotRetried)`(`[`NoRetry::Disabled`]`)`,
/// which is recoverable: run again later.
#[derive(Clone, Copy, Debug, Default)]
pub struct FailFast<P>(pub P);

impl<Req, T, E, P> Policy<Req, T, E> for FailFast<P>
where
    P: Policy<Req, T, E>,
{
    fn classify(&self, outcome: &Result<T, E>) -> Action {
        self.0.classify(outcome)
    }

    fn classify_attempt(&self, outcome: &Result<T, E>, attempt: u32) -> Action {
        self.0.classify_attempt(outcome, attempt)
    }

    fn check_request(&self, request: &Req) -> Result<(), NoRetry> {
        self.0.check_request(request)?;
        Err(NoRetry::Disabled)
    }

    fn on_done(&self, response: &mut T, retries: u32) {
        self.0.on_done(response, retries);
    }
}

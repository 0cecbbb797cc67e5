//! Errors: what went wrong, whether waiting helps, and what to do next.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use crate::policy::Reason;

/// A schedule, jitter or budget setting that makes no sense.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    message: String,
}

impl ConfigError {
    pub(crate) fn new(message: String) -> Self {
        Self { message }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for ConfigError {}

/// Why a request was sent only once although its failure was transient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoRetry {
    /// The method is not idempotent (e.g. `POST`) and the request carries no
    /// `Idempotency-Key`: sending it twice could do the work twice.
    NotIdempotent,
    /// The request could not be copied for a replay (e.g. a streaming body).
    NotReplayable,
    /// Retries are switched off ([`FailFast`](crate::FailFast)).
    Disabled,
}

/// What kind of failure a [`RetryError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Every retry the schedule allows was used, or the next sleep would
    /// have ended past the elapsed-time limit.
    Exhausted,
    /// The server asked for a wait longer than the configured ceiling (or
    /// than the time left before the deadline).
    RetryAfterTooLong,
    /// The shared retry budget had no retry left: too many requests are
    /// being retried right now.
    BudgetExhausted,
    /// The failure was transient, but this request may not be retried.
    NotRetried(NoRetry),
    /// The policy judged the failure permanent: retrying cannot help.
    Fatal,
}

/// The error of a retried operation: the last outcome, and why retrying
/// stopped.
///
/// It carries the last outcome itself: the inner error, or the response the
/// policy did not accept (a `503`, say), so nothing the server said is lost
/// (`into_last`). Its `Display` says what happened and what to do; its
/// `source` is the inner error, if the last outcome was one.
pub struct RetryError<T, E> {
    inner: Box<Inner<T, E>>,
}

/// Boxed, so that `Result<T, RetryError<..>>` stays small however large the
/// response it carries: the allocation happens only on the failure path.
struct Inner<T, E> {
    kind: ErrorKind,
    reason: Reason,
    retries: u32,
    elapsed: Duration,
    retry_after: Option<Duration>,
    ceiling: Option<Duration>,
    last: Result<T, E>,
}

impl<T, E> RetryError<T, E> {
    pub(crate) fn new(
        kind: ErrorKind,
        reason: Reason,
        retries: u32,
        elapsed: Duration,
        last: Result<T, E>,
    ) -> Self {
        Self {
            inner: Box::new(Inner {
                kind,
                reason,
                retries,
                elapsed,
                retry_after: None,
                ceiling: None,
                last,
            }),
        }
    }

    pub(crate) fn with_retry_after(mut self, hint: Duration, ceiling: Duration) -> Self {
        self.inner.retry_after = Some(hint);
        self.inner.ceiling = Some(ceiling);
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// Why the last attempt failed, as the policy saw it.
    pub fn reason(&self) -> Reason {
        self.inner.reason
    }

    /// Whether trying again later (or resuming) can succeed: everything but
    /// [`ErrorKind::Fatal`].
    pub fn is_recoverable(&self) -> bool {
        !matches!(self.inner.kind, ErrorKind::Fatal)
    }

    /// How many retries were made (attempts minus one).
    pub fn retries(&self) -> u32 {
        self.inner.retries
    }

    /// Time from the first attempt to giving up. Measured from the start of
    /// the first attempt when the schedule has an elapsed-time limit, and
    /// from the end of the first failed attempt otherwise (the happy path
    /// does not read the clock).
    pub fn elapsed(&self) -> Duration {
        self.inner.elapsed
    }

    /// How long the server asked to wait, counted from when the last
    /// response arrived: when to come back. Set for
    /// [`ErrorKind::RetryAfterTooLong`].
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }

    /// The last outcome, borrowed.
    pub fn last(&self) -> &Result<T, E> {
        &self.inner.last
    }

    /// The last outcome: the inner error, or the response that was not
    /// accepted.
    pub fn into_last(self) -> Result<T, E> {
        self.inner.last
    }

    /// The inner error, if the last outcome was one.
    pub fn inner_error(&self) -> Option<&E> {
        self.inner.last.as_ref().err()
    }
}

impl<T, E: fmt::Debug> fmt::Debug for RetryError<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &*self.inner;
        let mut d = f.debug_struct("RetryError");
        d.field("kind", &e.kind)
            .field("reason", &e.reason)
            .field("retries", &e.retries)
            .field("elapsed", &e.elapsed);
        if let Some(hint) = e.retry_after {
            d.field("retry_after", &hint);
        }
        match &e.last {
            Ok(_) => d.field("last", &"Ok(<response>)"),
            Err(e) => d.field("last", e),
        };
        d.finish()
    }
}

impl<T, E> fmt::Display for RetryError<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &*self.inner;
        let reason = e.reason;
        match e.kind {
            ErrorKind::Exhausted => {
                let n = e.retries;
                let s = if n == 1 { "y" } else { "ies" };
                write!(
                    f,
                    "{reason} after {n} retr{s} in {}; try again later",
                    HumanDuration(e.elapsed)
                )
            }
            ErrorKind::RetryAfterTooLong => {
                let hint = e.retry_after.unwrap_or_default();
                write!(
                    f,
                    "{reason}; the server asked to wait {}",
                    HumanDuration(hint)
                )?;
                if let Some(ceiling) = e.ceiling {
                    write!(f, ", longer than the {} allowed", HumanDuration(ceiling))?;
                }
                write!(
                    f,
                    "; try again in {} or raise the limit",
                    HumanDuration(hint)
                )
            }
            ErrorKind::BudgetExhausted => write!(
                f,
                "{reason}; not retried because the retry budget is spent (too many requests are failing at once); try again later"
            ),
            ErrorKind::NotRetried(NoRetry::NotIdempotent) => write!(
                f,
                "{reason}; not retried because the request is not idempotent; add an Idempotency-Key header or allow retries of non-idempotent requests if the server tolerates duplicates"
            ),
            ErrorKind::NotRetried(NoRetry::NotReplayable) => write!(
                f,
                "{reason}; not retried because the request cannot be replayed; use a body that can be cloned, such as Bytes"
            ),
            ErrorKind::NotRetried(NoRetry::Disabled) => write!(
                f,
                "{reason}; not retried because retries are disabled (fail-fast); try again later"
            ),
            ErrorKind::Fatal => write!(f, "{reason}; the failure is permanent, retrying cannot help"),
        }
    }
}

impl<T, E> StdError for RetryError<T, E>
where
    E: StdError + 'static,
{
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match &self.inner.last {
            Ok(_) => None,
            Err(e) => Some(e),
        }
    }
}

/// A duration for people: `350ms`, `4s`, `1m 3s`, `4d 14h`.
///
/// The two largest non-zero units, rounded down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let secs = d.as_secs();
        if secs == 0 {
            return write!(f, "{}ms", d.subsec_millis());
        }
        let units = [
            (secs / 86_400, "d"),
            (secs / 3_600 % 24, "h"),
            (secs / 60 % 60, "m"),
            (secs % 60, "s"),
        ];
        let first = units.iter().position(|&(n, _)| n > 0).unwrap_or(3);
        let (n, unit) = units[first];
        write!(f, "{n}{unit}")?;
        if let Some(&(n, unit)) = units.get(first + 1) {
            if n > 0 {
                write!(f, " {n}{unit}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        let h = |s: u64| HumanDuration(Duration::from_secs(s)).to_string();
        assert_eq!(h(0), "0ms");
        assert_eq!(
            HumanDuration(Duration::from_millis(350)).to_string(),
            "350ms"
        );
        assert_eq!(h(4), "4s");
        assert_eq!(h(63), "1m 3s");
        assert_eq!(h(120), "2m");
        assert_eq!(h(3_600 + 5), "1h");
        assert_eq!(h(396_749), "4d 14h");
    }

    #[test]
    fn display_says_what_to_do() {
        let e: RetryError<(), std::io::Error> = RetryError::new(
            ErrorKind::Exhausted,
            Reason::RateLimited,
            5,
            Duration::from_secs(63),
            Ok(()),
        );
        assert_eq!(
            e.to_string(),
            "rate limited after 5 retries in 1m 3s; try again later"
        );
        assert!(e.is_recoverable());

        let e: RetryError<(), std::io::Error> = RetryError::new(
            ErrorKind::RetryAfterTooLong,
            Reason::RateLimited,
            0,
            Duration::ZERO,
            Ok(()),
        )
        .with_retry_after(Duration::from_secs(396_749), Duration::from_secs(300));
        assert_eq!(
            e.to_string(),
            "rate limited; the server asked to wait 4d 14h, longer than the 5m allowed; try again in 4d 14h or raise the limit"
        );
        assert_eq!(e.retry_after(), Some(Duration::from_secs(396_749)));
    }
}

/// An attempt that ran past the per-attempt timeout of
/// [`RetryMiddleware::attempt_timeout`](crate::RetryMiddleware::attempt_timeout).
/// Classified as a timeout, so it is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttemptTimedOut {
    /// The timeout.
    pub after: Duration,
}

impl fmt::Display for AttemptTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the attempt timed out after {}",
            HumanDuration(self.after)
        )
    }
}

impl StdError for AttemptTimedOut {}

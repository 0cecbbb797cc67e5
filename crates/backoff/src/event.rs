//! What a retry looks like from the outside: events for hooks and logs.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::HumanDuration;
use crate::policy::{HintSource, Reason};

/// Where a retry's delay came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DelaySource {
    /// The backoff schedule.
    Backoff,
    /// A server hint, longer than the schedule's delay (or used as is, in
    /// [`HintMode::Exact`](crate::HintMode::Exact)).
    Server(HintSource),
}

impl fmt::Display for DelaySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Backoff => f.write_str("backoff"),
            Self::Server(h) => write!(f, "{h}"),
        }
    }
}

/// One retry about to happen: passed to the hook set with
/// [`Retrier::on_retry`](crate::Retrier::on_retry) and logged as a `tracing`
/// event.
///
/// Its `Display` is a line for people: `rate limited, retrying in 4s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryEvent {
    /// The retry about to be made: 1 for the second attempt.
    pub retry: u32,
    /// Why the last attempt failed.
    pub reason: Reason,
    /// How long the driver sleeps before the retry.
    pub delay: Duration,
    /// Where the delay came from.
    pub source: DelaySource,
}

impl fmt::Display for RetryEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, retrying in {}",
            self.reason,
            HumanDuration(self.delay)
        )
    }
}

/// A shared retry hook.
pub(crate) type Notify = Arc<dyn Fn(&RetryEvent) + Send + Sync>;

/// The number of retries an accepted response needed. The HTTP policy puts
/// it in the response's extensions when it is not zero (a response without
/// it needed no retry, and the happy path allocates nothing).
///
/// ```
/// use steadfast_backoff::RetryInfo;
///
/// let response = http::Response::new(());
/// assert_eq!(RetryInfo::of(&response).retries, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryInfo {
    /// Retries made before the accepted outcome: attempts minus one.
    pub retries: u32,
}

impl RetryInfo {
    /// A record of `retries` retries.
    pub fn new(retries: u32) -> Self {
        Self { retries }
    }

    /// The record of a response: zero retries when it carries none.
    #[cfg(feature = "http")]
    pub fn of<B>(response: &http::Response<B>) -> Self {
        response
            .extensions()
            .get::<Self>()
            .copied()
            .unwrap_or_default()
    }
}

//! The crate's generic trait, and what flows through it.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::status::Status;

/// A rate limiter: something to wait on before each request, and to tell
/// how the server answered.
///
/// [`TokenBucket`](crate::TokenBucket) is the default. The trait is what the
/// tower [`RateLimitLayer`](crate::RateLimitLayer) is generic over, so a
/// shared (say, Redis-backed) limiter can replace it without touching the
/// stack.
pub trait Limiter: Send + Sync {
    /// Waits until `n` permits are available and takes them. Waiters are
    /// served in the order they called.
    ///
    /// # Errors
    ///
    /// [`AcquireError`] when `n` can never be granted (more than the burst)
    /// or a configured bound on the wait or the queue is hit.
    fn acquire(&self, n: u32) -> impl Future<Output = Result<Admission, AcquireError>> + Send + '_;

    /// Takes `n` permits if they are available now; never waits.
    ///
    /// # Errors
    ///
    /// [`TryAcquireError::Wait`] with the time until they would be, or
    /// [`TryAcquireError::Insufficient`] when they never will.
    fn try_acquire(&self, n: u32) -> Result<(), TryAcquireError>;

    /// What the server said about a request.
    fn feedback(&self, feedback: &Feedback);

    /// A snapshot of the limiter's state.
    fn status(&self) -> Status;
}

/// A granted acquisition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Admission {
    /// How long the caller waited (zero when permits were free).
    pub waited: Duration,
    /// When the permits were granted.
    pub at: Instant,
}

/// Why [`Limiter::try_acquire`] did not grant the permits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TryAcquireError {
    /// They will be available after this long (if nobody else takes them).
    Wait(Duration),
    /// More than the burst was asked for: never possible.
    Insufficient {
        /// Permits asked for.
        requested: u32,
        /// The most that can ever be granted at once.
        burst: u32,
    },
}

impl fmt::Display for TryAcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Wait(wait) => write!(f, "rate limited: permits free in {wait:?}"),
            Self::Insufficient { requested, burst } => insufficient(f, requested, burst),
        }
    }
}

impl std::error::Error for TryAcquireError {}

fn insufficient(f: &mut fmt::Formatter<'_>, requested: u32, burst: u32) -> fmt::Result {
    write!(
        f,
        "asked for {requested} permits at once, but the burst is {burst}; ask for fewer or raise the burst"
    )
}

/// Why [`Limiter::acquire`] gave up without waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AcquireError {
    /// More than the burst was asked for: never possible.
    Insufficient {
        /// Permits asked for.
        requested: u32,
        /// The most that can ever be granted at once.
        burst: u32,
    },
    /// The wait would exceed the configured maximum.
    WaitTooLong {
        /// How long it would have been.
        wait: Duration,
        /// The configured maximum.
        max: Duration,
    },
    /// The configured maximum of waiters are already queued.
    QueueFull {
        /// The configured maximum.
        max: usize,
    },
}

impl fmt::Display for AcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Insufficient { requested, burst } => insufficient(f, requested, burst),
            Self::WaitTooLong { wait, max } => write!(
                f,
                "rate limited: the next slot is {:.1}s away, over the {:.1}s limit; try again later or allow a longer wait",
                wait.as_secs_f64(),
                max.as_secs_f64()
            ),
            Self::QueueFull { max } => write!(
                f,
                "rate limited: {max} requests are already waiting; try again later or allow a longer queue"
            ),
        }
    }
}

impl std::error::Error for AcquireError {}

/// How the server answered, for the limiter to adapt to.
///
/// ```
/// use std::time::Duration;
/// use steadfast_ratelimit::Feedback;
///
/// let ok = Feedback::success();
/// let slow_down = Feedback::throttled().retry_after(Duration::from_secs(12));
/// let quota = Feedback::success().quota(0, Duration::from_secs(30));
/// # let _ = (ok, slow_down, quota);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Feedback {
    pub(crate) outcome: Outcome,
    pub(crate) retry_after: Option<Duration>,
    pub(crate) quota: Option<(u64, Duration)>,
    pub(crate) sent_at: Option<Instant>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    Throttled,
    Neutral,
}

impl Feedback {
    /// The request went through (2xx, 3xx, or any answer that was not a
    /// throttle): the rate may recover.
    pub fn success() -> Self {
        Self::of(Outcome::Success)
    }

    /// The server throttled the request (429, or 503 with `Retry-After`):
    /// the rate is cut.
    pub fn throttled() -> Self {
        Self::of(Outcome::Throttled)
    }

    /// Neither: says nothing about the rate (a transport error, a 404), but
    /// may carry a quota.
    pub fn neutral() -> Self {
        Self::of(Outcome::Neutral)
    }

    fn of(outcome: Outcome) -> Self {
        Self {
            outcome,
            retry_after: None,
            quota: None,
            sent_at: None,
        }
    }

    /// The server asked to wait this long before the next request: every
    /// waiter pauses until then.
    #[must_use]
    pub fn retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// The server's quota: `remaining` requests until it resets in `reset`.
    /// The rate is held to `remaining / reset` until then, and with nothing
    /// remaining every waiter pauses until the reset.
    #[must_use]
    pub fn quota(mut self, remaining: u64, reset: Duration) -> Self {
        self.quota = Some((remaining, reset));
        self
    }

    /// When the request was admitted: a throttle of a request sent before
    /// the last cut does not cut again (it answers the old rate).
    #[must_use]
    pub fn sent_at(mut self, at: Instant) -> Self {
        self.sent_at = Some(at);
        self
    }

    /// Whether this is a throttle.
    pub fn is_throttled(&self) -> bool {
        self.outcome == Outcome::Throttled
    }
}

//! The crate's generic trait, and what flows through it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use crate::status::Status;

/// A rate limiter: something to wait on before each request, and to tell
/// how the server answered.
///
/// [`TokenBucket`](crate::TokenBucket) is the default; a limiter held in a
/// shared store implements the same trait. It is dyn-compatible
/// (`Arc<dyn Limiter>` works, and `Arc<L>` is a limiter itself), its
/// acquisitions are fallible with a typed backend error
/// ([`AcquireError::Backend`]), and its futures are [`LimitFuture`]s: ready
/// at once, with no allocation, when a local limiter has the permits free,
/// boxed only when it must wait or ask a store.
///
/// ```
/// use std::sync::Arc;
/// use steadfast_ratelimit::{Limiter, TokenBucket};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let limiter: Arc<dyn Limiter> = Arc::new(TokenBucket::new("10/s".parse()?));
/// limiter.acquire(1).await?;
/// // An owned acquisition, for a future that outlives the borrow.
/// let later = Arc::clone(&limiter).acquire_owned(1);
/// tokio::spawn(later).await??;
/// assert_eq!(limiter.status().admitted, 2);
/// # Ok(())
/// # }
/// ```
pub trait Limiter: Send + Sync {
    /// Waits until `n` permits are available and takes them. Waiters are
    /// served in the order they called.
    ///
    /// # Errors
    ///
    /// [`AcquireError`] when `n` can never be granted (more than the burst),
    /// a configured bound on the wait or the queue is hit, or the store
    /// behind the limiter failed.
    fn acquire(&self, n: u32) -> LimitFuture<'_, Result<Admission, AcquireError>>;

    /// [`Limiter::acquire`] on a shared limiter, as a future that owns its
    /// handle (to spawn it, or keep it in a service), as tokio's
    /// `Semaphore::acquire_owned` does. The default boxes a future around
    /// `acquire`; [`TokenBucket`](crate::TokenBucket) answers its fast path
    /// without boxing.
    ///
    /// # Errors
    ///
    /// As [`Limiter::acquire`].
    fn acquire_owned(
        self: Arc<Self>,
        n: u32,
    ) -> LimitFuture<'static, Result<Admission, AcquireError>>
    where
        Self: 'static,
    {
        LimitFuture::boxed(async move { self.acquire(n).await })
    }

    /// Takes `n` permits if they are available now; never waits for them
    /// (a remote limiter still makes its round trip).
    ///
    /// # Errors
    ///
    /// [`TryAcquireError::Wait`] with the time until they would be,
    /// [`TryAcquireError::Insufficient`] when they never will, or
    /// [`TryAcquireError::Backend`] when the store failed.
    fn try_acquire(&self, n: u32) -> LimitFuture<'_, Result<(), TryAcquireError>>;

    /// What the server said about a request. Never blocks: a remote limiter
    /// sends it in the background.
    fn feedback(&self, feedback: &Feedback);

    /// A snapshot of the limiter's state (for a remote limiter, as last
    /// seen).
    fn status(&self) -> Status;
}

impl<L: Limiter + ?Sized> Limiter for Arc<L> {
    fn acquire(&self, n: u32) -> LimitFuture<'_, Result<Admission, AcquireError>> {
        (**self).acquire(n)
    }

    fn acquire_owned(
        self: Arc<Self>,
        n: u32,
    ) -> LimitFuture<'static, Result<Admission, AcquireError>>
    where
        Self: 'static,
    {
        L::acquire_owned(Arc::clone(&*self), n)
    }

    fn try_acquire(&self, n: u32) -> LimitFuture<'_, Result<(), TryAcquireError>> {
        (**self).try_acquire(n)
    }

    fn feedback(&self, feedback: &Feedback) {
        (**self).feedback(feedback);
    }

    fn status(&self) -> Status {
        (**self).status()
    }
}

/// The future of a [`Limiter`]'s methods: a value ready at once (the fast
/// path of a local limiter: no allocation) or a boxed future (a wait, or a
/// round trip to a store).
#[must_use = "futures do nothing unless polled"]
pub struct LimitFuture<'a, T>(Repr<'a, T>);

enum Repr<'a, T> {
    Ready(Option<T>),
    Boxed(Pin<Box<dyn Future<Output = T> + Send + 'a>>),
}

// The value is moved out, never pinned; the boxed future is pinned in its box.
impl<T> Unpin for LimitFuture<'_, T> {}

impl<'a, T> LimitFuture<'a, T> {
    /// A future that is ready with `value`.
    pub fn ready(value: T) -> Self {
        Self(Repr::Ready(Some(value)))
    }

    /// A future that runs `future`, boxed.
    pub fn boxed(future: impl Future<Output = T> + Send + 'a) -> Self {
        Self(Repr::Boxed(Box::pin(future)))
    }

    /// Whether it is ready without being polled (the fast path was taken).
    pub fn is_ready(&self) -> bool {
        matches!(self.0, Repr::Ready(_))
    }
}

impl<T> Future for LimitFuture<'_, T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match &mut self.get_mut().0 {
            Repr::Ready(value) => {
                Poll::Ready(value.take().expect("`LimitFuture` polled after completion"))
            }
            Repr::Boxed(future) => future.as_mut().poll(cx),
        }
    }
}

impl<T> fmt::Debug for LimitFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Repr::Ready(_) => "LimitFuture(ready)",
            Repr::Boxed(_) => "LimitFuture(pending)",
        })
    }
}

/// A store behind a limiter failed (a shared limiter's Redis, say).
///
/// It names the store, what went wrong and what to do; `source()` is the
/// client library's error, when there is one.
#[derive(Clone, Debug)]
pub struct BackendError {
    store: &'static str,
    kind: BackendErrorKind,
    message: String,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

/// What kind of failure a [`BackendError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackendErrorKind {
    /// The store cannot be reached (connection refused, dropped, not yet
    /// reconnected).
    Unavailable,
    /// The store did not answer in time.
    Timeout,
    /// The store answered something the limiter cannot use (a script error,
    /// a wrong type at the key).
    Protocol,
    /// The store's address or settings are invalid (a malformed URL).
    Invalid,
}

impl BackendError {
    /// A failure of `store` (its name, for messages: `"redis"`), with a
    /// message saying what went wrong.
    pub fn new(store: &'static str, kind: BackendErrorKind, message: impl Into<String>) -> Self {
        Self {
            store,
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// With the client library's error as the source.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// The store's name.
    pub fn store(&self) -> &'static str {
        self.store
    }

    /// What kind of failure.
    pub fn kind(&self) -> BackendErrorKind {
        self.kind
    }
}

impl PartialEq for BackendError {
    fn eq(&self, other: &Self) -> bool {
        (self.store, self.kind, &self.message) == (other.store, other.kind, &other.message)
    }
}

impl Eq for BackendError {}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            BackendErrorKind::Unavailable => "is unreachable",
            BackendErrorKind::Timeout => "did not answer in time",
            BackendErrorKind::Protocol => "answered something unexpected",
            BackendErrorKind::Invalid => "is misconfigured",
        };
        let todo = match self.kind {
            BackendErrorKind::Invalid => "fix the setting",
            _ => "check that it is up, or choose a failure policy that does not need it",
        };
        write!(
            f,
            "the rate limiter's store ({}) {what}: {}; {todo}",
            self.store, self.message
        )
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
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
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// The store behind the limiter failed.
    Backend(BackendError),
}

impl fmt::Display for TryAcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Wait(wait) => write!(f, "rate limited: permits free in {wait:?}"),
            Self::Insufficient { requested, burst } => insufficient(f, *requested, *burst),
            Self::Backend(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for TryAcquireError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Backend(e) => Some(e),
            _ => None,
        }
    }
}

fn insufficient(f: &mut fmt::Formatter<'_>, requested: u32, burst: u32) -> fmt::Result {
    write!(
        f,
        "asked for {requested} permits at once, but the burst is {burst}; ask for fewer or raise the burst"
    )
}

/// Why [`Limiter::acquire`] gave up.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// The store behind the limiter failed, and its failure policy is to
    /// fail closed.
    Backend(BackendError),
}

impl fmt::Display for AcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Backend(ref e) => e.fmt(f),
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

impl std::error::Error for AcquireError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Backend(e) => Some(e),
            _ => None,
        }
    }
}

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

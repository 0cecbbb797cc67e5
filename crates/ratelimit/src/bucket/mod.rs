//! The token bucket: GCRA in one atomic word for the fast path, FIFO
//! reservations for waiters, adaptive control and server hints on top.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::adaptive::Adaptive;
use crate::cell::{RateCell, RateNow, Timeline, COUNT_MASK};
use crate::limiter::{AcquireError, Admission, Feedback, LimitFuture, Limiter, TryAcquireError};
use crate::rate::Rate;
use crate::status::{RateSource, Status};

mod acquire;
mod clock;
mod control;
mod queue;

pub use acquire::Acquire;
use clock::ClockSource;
use control::Control;
use queue::{wake_front_if_due, Booking, Queue};

const TARGET: &str = "steadfast_ratelimit";

/// The default ceiling on a pause: a `Retry-After` longer than this is cut
/// to it (the retry layer above turns such hints into a "come back later"
/// error of its own).
pub const DEFAULT_MAX_PAUSE: Duration = Duration::from_secs(300);

/// A fair, adaptive token bucket; the default [`Limiter`].
///
/// * **Fast path.** The state is one "theoretical arrival time" (GCRA) in
///   an `AtomicU64`: [`try_acquire`](Limiter::try_acquire) and an
///   uncontended [`acquire`](Limiter::acquire) are a clock read and one
///   compare-and-swap, no lock.
/// * **Waiting.** A caller that must wait books its slot on the timeline
///   (advancing the arrival time) and sleeps once, on one timer, until
///   its slot: strict FIFO order, an exact ETA, no wake-ups of anyone
///   else. A waiter that is dropped hands its slot back and the ones
///   behind it move up.
/// * **Adaptation.** See [`Limiter::feedback`]: throttles bracket the
///   server's rate, the limiter settles just under it and probes above it
///   rarely, never above the configured rate; `Retry-After` pauses every
///   caller until one shared instant.
///
/// Clones share one bucket (an `Arc<`[`Bucket`]`>`; every method of
/// `Bucket` is reachable through it). Where no clonable handle is needed,
/// [`Builder::build_bucket`] gives the `Bucket` itself.
///
/// ```
/// use steadfast_ratelimit::{Limiter, TokenBucket};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let limiter = TokenBucket::new("5/s burst 2".parse()?);
/// limiter.try_acquire(2)?;                 // the burst, at once
/// assert!(limiter.try_acquire(1).is_err()); // next slot in 200 ms
/// let admission = limiter.acquire(1).await?; // waits for it
/// assert_eq!(admission.waited.as_millis(), 200);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct TokenBucket {
    shared: Arc<Bucket>,
}

/// Settings of a [`TokenBucket`] beyond its rate.
#[derive(Clone, Debug)]
pub struct Builder {
    rate: Rate,
    floor: Option<f64>,
    max_wait: Option<Duration>,
    max_waiters: Option<usize>,
    max_pause: Duration,
    adaptive: bool,
    #[cfg(feature = "tsc")]
    tsc: bool,
}

impl Builder {
    /// The lowest rate adaptation may reach, in permits per second (default:
    /// a twentieth of the configured rate).
    #[must_use]
    pub fn floor(mut self, floor: Rate) -> Self {
        self.floor = Some(floor.per_second());
        self
    }

    /// Fail [`acquire`](Limiter::acquire) at once with
    /// [`AcquireError::WaitTooLong`] when the wait would be longer.
    #[must_use]
    pub fn max_wait(mut self, max: Duration) -> Self {
        self.max_wait = Some(max);
        self
    }

    /// Fail [`acquire`](Limiter::acquire) at once with
    /// [`AcquireError::QueueFull`] when this many callers already wait.
    #[must_use]
    pub fn max_waiters(mut self, max: usize) -> Self {
        self.max_waiters = Some(max);
        self
    }

    /// The longest pause a server hint can impose (default
    /// [`DEFAULT_MAX_PAUSE`]).
    #[must_use]
    pub fn max_pause(mut self, max: Duration) -> Self {
        self.max_pause = max;
        self
    }

    /// Whether throttles cut the rate (default on). Off, the rate stays as
    /// configured and only pauses and quotas apply.
    #[must_use]
    pub fn adaptive(mut self, on: bool) -> Self {
        self.adaptive = on;
        self
    }

    /// Reads the CPU's time-stamp counter (through quanta, calibrated
    /// against the monotonic clock) instead of tokio's clock: about 10 ns
    /// less per call where `clock_gettime` is slow (virtual machines).
    /// Waiting still sleeps on tokio's timer. **Not for tests on tokio's
    /// paused clock**: this clock keeps real time.
    #[cfg(feature = "tsc")]
    #[must_use]
    pub fn tsc_clock(mut self) -> Self {
        self.tsc = true;
        self
    }

    /// The limiter as a clonable, shared handle; full (its burst is free
    /// at once).
    pub fn build(self) -> TokenBucket {
        TokenBucket {
            shared: Arc::new(self.build_bucket()),
        }
    }

    /// The limiter itself, to use by reference (or in your own `Arc`).
    pub fn build_bucket(self) -> Bucket {
        #[cfg(feature = "tsc")]
        let clock = if self.tsc {
            let clock = quanta::Clock::new();
            let origin = clock.raw();
            // Ticks per nanosecond, from quanta's calibration (1 where it
            // falls back to the monotonic clock).
            let span: u64 = 1 << 40;
            let per_ns = span as f64 / clock.delta_as_nanos(0, span).max(1) as f64;
            ClockSource::Tsc {
                clock,
                origin,
                per_ns,
            }
        } else {
            ClockSource::Tokio
        };
        #[cfg(not(feature = "tsc"))]
        let clock = ClockSource::Tokio;
        let ceiling = self.rate.per_second();
        let floor = self.floor.unwrap_or(ceiling / 20.0).min(ceiling);
        let interval = clock.ticks_of_ns(self.rate.interval_nanos());
        Bucket {
            hot: Hot {
                timeline: Timeline::new(),
                rate: RateCell::new(interval, self.rate.burst()),
                admitted: AtomicU64::new(0),
            },
            epoch: Instant::now(),
            clock,
            max_wait: self.max_wait,
            max_waiters: self.max_waiters,
            max_pause: self.max_pause,
            adaptive: self.adaptive,
            queue: Mutex::new(Queue::default()),
            control: Mutex::new(Control {
                configured: self.rate,
                adaptive: Adaptive::new(ceiling, floor),
                quota: None,
                effective: ceiling,
                source: RateSource::Configuration,
                logged: ceiling,
                pause_until: 0,
                pause_cause: None,
            }),
            waited: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
        }
    }
}

/// What the fast path touches, on its own cache lines.
#[repr(align(128))]
struct Hot {
    /// GCRA's theoretical arrival time and the low bits of the admission
    /// count, in one word.
    timeline: Timeline,
    /// The rate in force: interval, burst and their product (kept so the
    /// fast path needs no multiplication), read together, never torn.
    rate: RateCell,
    /// Admissions beyond the count kept in the timeline word: it moves by
    /// 64 every 64 fast-path admissions, and by `n` for each waiter.
    admitted: AtomicU64,
}

/// The limiter itself: what a [`TokenBucket`] shares between its clones.
/// Use it directly (by reference, or in your own `Arc`) where a clonable
/// handle is not needed; it has every method of [`TokenBucket`] and
/// implements [`Limiter`].
pub struct Bucket {
    hot: Hot,
    epoch: Instant,
    #[cfg_attr(not(feature = "tsc"), allow(dead_code))]
    clock: ClockSource,
    max_wait: Option<Duration>,
    max_waiters: Option<usize>,
    max_pause: Duration,
    adaptive: bool,
    /// Waiters, in booking order. Lock order: `control`, then `queue`.
    queue: Mutex<Queue>,
    control: Mutex<Control>,
    waited: AtomicU64,
    throttled: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the state inconsistent
    // in a way that matters more than stopping: carry on.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Nanoseconds per permit at `per_second`, rounded up.
fn interval_of(per_second: f64) -> u64 {
    (1e9 / per_second).ceil().clamp(1.0, u64::MAX as f64) as u64
}

impl Bucket {
    /// Permits admitted so far, given a read of the timeline word (a
    /// fast-path admission that just carried may be missing for an
    /// instant: the count never runs ahead).
    fn admitted_with(&self, word: u64) -> u64 {
        self.hot.admitted.load(Relaxed) + (word & COUNT_MASK)
    }

    /// Stores a new interval (and burst) with their product. Called with
    /// the control lock held, which serializes the writers.
    fn store_rate(&self, interval: u64, burst: u32) {
        self.hot.rate.store(interval, burst);
    }

    /// The length of `n` permits on the timeline, and the burst's; `None`
    /// when `n` exceeds the burst.
    fn cost(&self, n: u32) -> Option<(u64, u64)> {
        let RateNow {
            interval,
            tolerance,
            ..
        } = self.hot.rate.load();
        // One permit, the common case, skips the multiplication.
        let cost = if n == 1 {
            interval
        } else {
            u64::from(n) * interval
        };
        (cost <= tolerance).then_some((cost, tolerance))
    }

    /// GCRA: admit `n` now, or say when.
    fn try_admit(&self, n: u32, now: u64) -> Result<(), TryAcquireError> {
        let Some((cost, tolerance)) = self.cost(n) else {
            return Err(TryAcquireError::Insufficient {
                requested: n,
                burst: self.hot.rate.load().burst,
            });
        };
        match self.hot.timeline.admit(n, now, cost, tolerance) {
            Ok(carry) => {
                if carry != 0 {
                    self.hot.admitted.fetch_add(carry, Relaxed);
                }
                Ok(())
            }
            Err(ready) => Err(TryAcquireError::Wait(self.duration(ready - now))),
        }
    }
}

impl TokenBucket {
    /// A limiter at `rate`, with the defaults: adaptive, no bound on the
    /// wait or the queue, pauses of at most [`DEFAULT_MAX_PAUSE`].
    pub fn new(rate: Rate) -> Self {
        Self::builder(rate).build()
    }

    /// A limiter at `rate`, to configure further.
    pub fn builder(rate: Rate) -> Builder {
        Builder {
            rate,
            floor: None,
            max_wait: None,
            max_waiters: None,
            max_pause: DEFAULT_MAX_PAUSE,
            adaptive: true,
            #[cfg(feature = "tsc")]
            tsc: false,
        }
    }

    // The methods below are `Bucket`'s, repeated here so that they win over
    // the `Limiter` trait's (async) methods of the same names when the
    // trait is in scope: `bucket.try_acquire(1)` stays synchronous.

    /// Waits for `n` permits: see [`Limiter::acquire`].
    pub fn acquire(&self, n: u32) -> Acquire<'_> {
        Bucket::acquire(&self.shared, n)
    }

    /// Takes `n` permits if they are free now: see [`Bucket::try_acquire`].
    ///
    /// # Errors
    ///
    /// How long to wait, or that `n` exceeds the burst.
    pub fn try_acquire(&self, n: u32) -> Result<(), TryAcquireError> {
        Bucket::try_acquire(&self.shared, n)
    }

    /// Adapts to the server's answer: see [`Bucket::feedback`].
    pub fn feedback(&self, feedback: &Feedback) {
        Bucket::feedback(&self.shared, feedback);
    }

    /// A snapshot of the state: see [`Status`].
    pub fn status(&self) -> Status {
        Bucket::status(&self.shared)
    }
}

impl Bucket {
    /// Waits for `n` permits: see [`Limiter::acquire`].
    pub fn acquire(&self, n: u32) -> Acquire<'_> {
        Acquire {
            shared: self,
            n,
            state: acquire::State::Start,
        }
    }

    /// Takes `n` permits if they are free now: see [`Limiter::try_acquire`].
    ///
    /// # Errors
    ///
    /// How long to wait, or that `n` exceeds the burst.
    pub fn try_acquire(&self, n: u32) -> Result<(), TryAcquireError> {
        self.try_admit(n, self.now())
    }

    /// A snapshot of the state: see [`Status`].
    pub fn status(&self) -> Status {
        let shared = self;
        let control = lock(&shared.control);
        let queue = lock(&shared.queue);
        let now = shared.now();
        let interval = shared.hot.rate.load().interval;
        let burst = shared.hot.rate.load().burst;
        let word = shared.hot.timeline.load();
        let tat = Timeline::tat_of(word);
        let tolerance = u64::from(burst) * interval;
        let debt = tat.saturating_sub(now);
        let available = (tolerance.saturating_sub(debt) / interval).min(u64::from(burst));
        let next = (tat.max(now) + interval).saturating_sub(tolerance);
        let paused = control.pause_until > now;
        Status {
            configured: control.configured,
            effective: control.effective,
            source: control.source,
            available: u32::try_from(available).unwrap_or(u32::MAX),
            waiting: queue.entries.len(),
            next_free: shared.duration(next.saturating_sub(now)),
            paused_for: paused.then(|| shared.duration(control.pause_until - now)),
            pause_cause: if paused { control.pause_cause } else { None },
            admitted: shared.admitted_with(word),
            waited: shared.waited.load(Relaxed),
            throttled: shared.throttled.load(Relaxed),
            store: None,
        }
    }
}

impl Limiter for Bucket {
    fn acquire(&self, n: u32) -> LimitFuture<'_, Result<Admission, AcquireError>> {
        match self.acquire_now(n) {
            Some(result) => LimitFuture::ready(result),
            None => LimitFuture::boxed(Bucket::acquire(self, n)),
        }
    }

    fn acquire_owned(
        self: Arc<Self>,
        n: u32,
    ) -> LimitFuture<'static, Result<Admission, AcquireError>> {
        match self.acquire_now(n) {
            Some(result) => LimitFuture::ready(result),
            None => LimitFuture::boxed(async move { Bucket::acquire(&self, n).await }),
        }
    }

    fn try_acquire(&self, n: u32) -> LimitFuture<'_, Result<(), TryAcquireError>> {
        LimitFuture::ready(Bucket::try_acquire(self, n))
    }

    fn feedback(&self, feedback: &Feedback) {
        Bucket::feedback(self, feedback);
    }

    fn status(&self) -> Status {
        Bucket::status(self)
    }
}

impl Limiter for TokenBucket {
    fn acquire(&self, n: u32) -> LimitFuture<'_, Result<Admission, AcquireError>> {
        Limiter::acquire(&*self.shared, n)
    }

    fn acquire_owned(
        self: Arc<Self>,
        n: u32,
    ) -> LimitFuture<'static, Result<Admission, AcquireError>> {
        Arc::clone(&self.shared).acquire_owned(n)
    }

    fn try_acquire(&self, n: u32) -> LimitFuture<'_, Result<(), TryAcquireError>> {
        LimitFuture::ready(Bucket::try_acquire(&self.shared, n))
    }

    fn feedback(&self, feedback: &Feedback) {
        Bucket::feedback(&self.shared, feedback);
    }

    fn status(&self) -> Status {
        Bucket::status(&self.shared)
    }
}

impl std::ops::Deref for TokenBucket {
    type Target = Bucket;

    fn deref(&self) -> &Bucket {
        &self.shared
    }
}

impl fmt::Debug for TokenBucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TokenBucket").field(&self.status()).finish()
    }
}

impl fmt::Debug for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Bucket").field(&self.status()).finish()
    }
}

#[cfg(all(test, feature = "tsc"))]
mod tests {
    use super::*;

    #[test]
    fn tick_conversions_round_trip_and_round_intervals_up() {
        let clock = quanta::Clock::new();
        let tsc = ClockSource::Tsc {
            origin: clock.raw(),
            clock,
            per_ns: 3.0,
        };
        assert_eq!(tsc.ticks_of_ns(1_000), 3_000);
        assert_eq!(tsc.duration(3_000), Duration::from_nanos(1_000));
        let odd = ClockSource::Tsc {
            origin: 0,
            clock: quanta::Clock::new(),
            per_ns: 2.5,
        };
        // 333,333,334 ns × 2.5 = 833,333,335 ticks: rounded up, never down.
        assert_eq!(odd.ticks_of_ns(333_333_334), 833_333_335);
        assert_eq!(ClockSource::Tokio.ticks_of_ns(42), 42);
        assert_eq!(ClockSource::Tokio.duration(42), Duration::from_nanos(42));
    }
}

//! The token bucket: GCRA in one atomic word for the fast path, FIFO
//! reservations for waiters, adaptive control and server hints on top.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::adaptive::Adaptive;
use crate::cell::{RateCell, RateNow, Timeline, COUNT_MASK};
use crate::limiter::{AcquireError, Admission, Feedback, Limiter, Outcome, TryAcquireError};
use crate::rate::Rate;
use crate::status::{PauseCause, RateSource, Status};

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

/// Where the fast path reads the time.
enum ClockSource {
    /// `tokio::time::Instant`: exact on tokio's paused clock.
    Tokio,
    /// The time-stamp counter, in its own ticks since `origin`: the fast
    /// path reads it without scaling; `per_ns` converts at the edges.
    #[cfg(feature = "tsc")]
    Tsc {
        clock: quanta::Clock,
        origin: u64,
        per_ns: f64,
    },
}

impl ClockSource {
    /// Nanoseconds to ticks, rounded up (intervals never get shorter).
    fn ticks_of_ns(&self, ns: u64) -> u64 {
        match self {
            Self::Tokio => ns,
            #[cfg(feature = "tsc")]
            Self::Tsc { per_ns, .. } => (ns as f64 * per_ns).ceil().min(u64::MAX as f64) as u64,
        }
    }

    /// Ticks to a duration.
    fn duration(&self, ticks: u64) -> Duration {
        match self {
            Self::Tokio => Duration::from_nanos(ticks),
            #[cfg(feature = "tsc")]
            Self::Tsc { per_ns, .. } => Duration::from_nanos((ticks as f64 / per_ns) as u64),
        }
    }
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

#[derive(Default)]
struct Queue {
    entries: VecDeque<Entry>,
    next_id: u64,
}

struct Entry {
    id: u64,
    /// When its permits are due, in nanoseconds since `epoch`.
    ready_at: u64,
    /// The length of its slot on the timeline (refunded if it leaves).
    cost: u64,
    waker: Option<Waker>,
}

struct Control {
    configured: Rate,
    adaptive: Adaptive,
    /// A server quota: at most this rate until this instant.
    quota: Option<(f64, u64)>,
    effective: f64,
    source: RateSource,
    /// The last rate reported in a tracing event.
    logged: f64,
    pause_until: u64,
    pause_cause: Option<PauseCause>,
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

enum Booking {
    Now,
    Wait { id: u64, ready_at: u64 },
}

impl Bucket {
    /// The limiter's time: nanoseconds since `epoch` on tokio's clock, or
    /// time-stamp-counter ticks since `origin` (see [`ClockSource`]).
    fn now(&self) -> u64 {
        #[cfg(feature = "tsc")]
        if let ClockSource::Tsc { clock, origin, .. } = &self.clock {
            return clock.raw().saturating_sub(*origin);
        }
        let elapsed = Instant::now().saturating_duration_since(self.epoch);
        // Cheaper than `as_nanos` (a 128-bit multiply) on the fast path.
        elapsed
            .as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(elapsed.subsec_nanos()))
    }

    /// Permits admitted so far, given a read of the timeline word (a
    /// fast-path admission that just carried may be missing for an
    /// instant: the count never runs ahead).
    fn admitted_with(&self, word: u64) -> u64 {
        self.hot.admitted.load(Relaxed) + (word & COUNT_MASK)
    }

    /// A duration on the limiter's clock to ticks.
    fn ticks(&self, d: Duration) -> u64 {
        self.clock.ticks_of_ns(nanos(d))
    }

    /// Ticks to a duration.
    fn duration(&self, ticks: u64) -> Duration {
        self.clock.duration(ticks)
    }

    /// Ticks to seconds, for the adaptive controller.
    fn seconds(&self, ticks: u64) -> f64 {
        self.duration(ticks).as_secs_f64()
    }

    /// The tokio instant of a time on the limiter's clock, for its timer.
    fn instant(&self, ticks: u64) -> Instant {
        #[cfg(feature = "tsc")]
        if let ClockSource::Tsc { .. } = self.clock {
            let (now, at) = (self.now(), Instant::now());
            return match ticks.checked_sub(now) {
                Some(ahead) => at + self.duration(ahead),
                None => at.checked_sub(self.duration(now - ticks)).unwrap_or(at),
            };
        }
        self.epoch + Duration::from_nanos(ticks)
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

    /// Books `n` permits for a waiter: its slot is the next on the
    /// timeline, after every waiter already queued.
    fn book(&self, queue: &mut Queue, n: u32, now: u64) -> Result<Booking, AcquireError> {
        let Some((cost, tolerance)) = self.cost(n) else {
            return Err(AcquireError::Insufficient {
                requested: n,
                burst: self.hot.rate.load().burst,
            });
        };
        let ready = self.hot.timeline.book(now, cost, tolerance, |ready| {
            if ready > now {
                let wait = self.duration(ready - now);
                if let Some(max) = self.max_wait.filter(|max| wait > *max) {
                    return Err(AcquireError::WaitTooLong { wait, max });
                }
                if let Some(max) = self.max_waiters.filter(|max| queue.entries.len() >= *max) {
                    return Err(AcquireError::QueueFull { max });
                }
            }
            Ok(())
        })?;
        if ready <= now {
            self.hot.admitted.fetch_add(u64::from(n), Relaxed);
            return Ok(Booking::Now);
        }
        let id = queue.next_id;
        queue.next_id += 1;
        queue.entries.push_back(Entry {
            id,
            ready_at: ready,
            cost,
            waker: None,
        });
        Ok(Booking::Wait {
            id,
            ready_at: ready,
        })
    }

    /// Switches to `interval` nanoseconds per permit without letting a
    /// burst through: the permits owed (the debt on the timeline, and each
    /// waiter's distance to its slot) are kept and re-spaced at the new
    /// rate. A faster rate moves waiters up only when `respace_faster` (an
    /// explicit `set_rate`); adaptive recovery applies to new bookings, so
    /// it never wakes anyone.
    ///
    /// A pause is a fixed instant, not permits owed: only what lies beyond
    /// `paused_until` is re-spaced.
    fn set_interval(&self, interval: u64, respace_faster: bool, paused_until: u64) {
        let old = self.hot.rate.load().interval;
        if interval == old {
            return;
        }
        let faster = interval < old;
        let burst = self.hot.rate.load().burst;
        if faster && !respace_faster {
            self.store_rate(interval, burst);
            return;
        }
        let mut queue = lock(&self.queue);
        let base = self.now().max(paused_until);
        let ratio = interval as f64 / old as f64;
        let scale = |t: u64| {
            if t > base {
                base + ((t - base) as f64 * ratio).round() as u64
            } else {
                t
            }
        };
        self.hot.timeline.update(scale);
        self.store_rate(interval, burst);
        for entry in &mut queue.entries {
            entry.ready_at = scale(entry.ready_at);
            entry.cost = (entry.cost as f64 * ratio).round() as u64;
            if faster {
                if let Some(waker) = entry.waker.take() {
                    waker.wake();
                }
            }
        }
    }

    /// Nothing is admitted before `until`; queued waiters keep their order
    /// and spacing, shifted so the first goes at `until`.
    fn pause(&self, until: u64) {
        let mut queue = lock(&self.queue);
        let interval = self.hot.rate.load().interval;
        let burst = u64::from(self.hot.rate.load().burst);
        if let Some(front) = queue.entries.front() {
            let shift = until.saturating_sub(front.ready_at);
            if shift > 0 {
                for entry in &mut queue.entries {
                    entry.ready_at += shift;
                }
                self.hot.timeline.update(|tat| tat + shift);
            }
        }
        // One permit at `until`, then the rate: never the whole burst.
        let floor = until + burst.saturating_sub(1) * interval;
        self.hot.timeline.update(|tat| tat.max(floor));
    }

    /// Removes a waiter that left before its slot: the slot goes back, and
    /// everyone behind moves up by its length.
    fn cancel(&self, id: u64) {
        let mut queue = lock(&self.queue);
        let Some(position) = queue.entries.iter().position(|e| e.id == id) else {
            return;
        };
        let Some(entry) = queue.entries.remove(position) else {
            return;
        };
        let now = self.now();
        if entry.ready_at > now {
            self.hot
                .timeline
                .update(|tat| tat.saturating_sub(entry.cost));
            for behind in queue.entries.iter_mut().skip(position) {
                behind.ready_at = behind.ready_at.saturating_sub(entry.cost);
                if let Some(waker) = behind.waker.take() {
                    waker.wake();
                }
            }
        } else if position == 0 {
            wake_front_if_due(&mut queue, now);
        }
    }

    /// Applies the rate the control state calls for.
    fn apply(&self, control: &mut Control, now: u64, respace_faster: bool) {
        let configured = control.configured.per_second();
        let (mut rate, mut source) =
            if control.adaptive.adapted() && control.adaptive.rate() < configured {
                (control.adaptive.rate(), RateSource::Adaptation)
            } else {
                (configured, RateSource::Configuration)
            };
        match control.quota {
            Some((quota, until)) if now < until && quota < rate => {
                rate = quota;
                source = RateSource::ServerHint;
            }
            Some((_, until)) if now >= until => control.quota = None,
            _ => {}
        }
        control.effective = rate;
        control.source = source;
        let changed = (rate - control.logged).abs() / control.logged;
        if changed >= 0.05 {
            tracing::debug!(target: TARGET, from = control.logged, to = rate, ?source, "rate changed");
            control.logged = rate;
        }
        let interval = self.clock.ticks_of_ns(interval_of(rate));
        self.set_interval(interval, respace_faster, control.pause_until);
    }

    fn pause_until(&self, control: &mut Control, now: u64, delay: Duration, cause: PauseCause) {
        let delay = delay.min(self.max_pause);
        let until = now.saturating_add(self.ticks(delay));
        // A later answer never moves the pause earlier; repeats never stack.
        if until <= control.pause_until {
            return;
        }
        control.pause_until = until;
        control.pause_cause = Some(cause);
        control.adaptive.defer(self.seconds(until));
        tracing::warn!(target: TARGET, secs = delay.as_secs_f64(), %cause, "pausing every request");
        self.pause(until);
    }
}

/// Wakes the first waiter if its slot has come (it may be waiting for
/// the ones ahead of it to finish, to keep the order strict).
fn wake_front_if_due(queue: &mut Queue, now: u64) {
    if let Some(front) = queue.entries.front_mut() {
        if front.ready_at <= now {
            if let Some(waker) = front.waker.take() {
                waker.wake();
            }
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
}

impl Bucket {
    /// Waits for `n` permits: see [`Limiter::acquire`].
    pub fn acquire(&self, n: u32) -> Acquire<'_> {
        Acquire {
            shared: self,
            n,
            state: State::Start,
        }
    }

    /// Changes the configured rate (and burst) at runtime. What is owed is
    /// kept: permits taken at the old rate count against the new one, so
    /// a change never lets a burst through; waiters are re-spaced at the
    /// new rate. An adapted rate stays adapted, below the new ceiling.
    pub fn set_rate(&self, rate: Rate) {
        let mut control = lock(&self.control);
        control.configured = rate;
        control.adaptive.set_ceiling(rate.per_second());
        let now = self.now();
        let burst = self.hot.rate.load().burst;
        let interval = self.hot.rate.load().interval;
        self.store_rate(interval, rate.burst());
        if rate.burst() < burst {
            // A smaller burst: the permits beyond it are no longer free.
            let lost = u64::from(burst - rate.burst()) * interval;
            self.hot
                .timeline
                .update(|tat| tat.max(now.saturating_sub(u64::from(burst) * interval)) + lost);
        }
        self.apply(&mut control, now, true);
        tracing::info!(target: TARGET, %rate, "rate set");
    }

    /// Takes `n` permits if they are free now: see [`Limiter::try_acquire`].
    ///
    /// # Errors
    ///
    /// How long to wait, or that `n` exceeds the burst.
    pub fn try_acquire(&self, n: u32) -> Result<(), TryAcquireError> {
        self.try_admit(n, self.now())
    }

    /// Adapts to the server's answer:
    ///
    /// * a throttle lowers the rate: by 5 % if the rate had run clean
    ///   before, else to 0.7 × the rate in use or the rate the server was
    ///   seen admitting, whichever is lower; a failed probe goes back to
    ///   the last clean rate. A throttle of a request sent before the last
    ///   cut does nothing more (it answers the old rate);
    /// * a success, after a full busy window with no throttle, confirms the
    ///   rate; the limiter then probes above it by small steps (growing
    ///   while they pass, bisecting once one fails), and once settled again
    ///   every 80 requests' worth of time. Never above the configured
    ///   rate, and not at all while less than 80 % of the allowance is used
    ///   (see the crate's README, *The algorithm*);
    /// * a `Retry-After` pauses every caller until one shared instant
    ///   (capped at the maximum pause); a later answer never moves it
    ///   earlier and repeats never stack;
    /// * a quota holds the rate to `remaining / reset` until the reset, or
    ///   pauses until then when nothing remains.
    pub fn feedback(&self, feedback: &Feedback) {
        let shared = self;
        let now = shared.now();
        let mut control = lock(&shared.control);
        let admitted = shared.admitted_with(shared.hot.timeline.load());
        control.adaptive.observe(shared.seconds(now), admitted);
        match feedback.outcome {
            Outcome::Throttled => {
                shared.throttled.fetch_add(1, Relaxed);
                let sent = feedback
                    .sent_at
                    .map(|at| at.saturating_duration_since(shared.epoch).as_secs_f64());
                let stale = sent.is_some_and(|sent| sent < control.adaptive.last_cut());
                if shared.adaptive && !stale {
                    let before = control.effective;
                    let rate = control.adaptive.on_throttle(shared.seconds(now));
                    tracing::info!(target: TARGET, from = before, to = rate, "throttled by the server: rate cut");
                } else {
                    tracing::debug!(target: TARGET, stale, "throttled by the server");
                }
            }
            Outcome::Success if shared.adaptive => {
                control.adaptive.on_success(shared.seconds(now));
            }
            Outcome::Success | Outcome::Neutral => {}
        }
        match feedback.quota {
            Some((remaining, reset)) if remaining > 0 && !reset.is_zero() => {
                let until = now.saturating_add(shared.ticks(reset));
                control.quota = Some((remaining as f64 / reset.as_secs_f64(), until));
            }
            _ => {}
        }
        // The new rate first, then the pauses: a pause is an instant, not
        // something to re-space.
        shared.apply(&mut control, now, false);
        if let Some((0, reset)) = feedback.quota {
            shared.pause_until(&mut control, now, reset, PauseCause::QuotaExhausted);
        }
        if let Some(delay) = feedback.retry_after {
            shared.pause_until(&mut control, now, delay, PauseCause::RetryAfter);
        }
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
        }
    }
}

impl Limiter for Bucket {
    fn acquire(&self, n: u32) -> impl Future<Output = Result<Admission, AcquireError>> + Send + '_ {
        Bucket::acquire(self, n)
    }

    fn try_acquire(&self, n: u32) -> Result<(), TryAcquireError> {
        Bucket::try_acquire(self, n)
    }

    fn feedback(&self, feedback: &Feedback) {
        Bucket::feedback(self, feedback);
    }

    fn status(&self) -> Status {
        Bucket::status(self)
    }
}

impl Limiter for TokenBucket {
    fn acquire(&self, n: u32) -> impl Future<Output = Result<Admission, AcquireError>> + Send + '_ {
        Bucket::acquire(&self.shared, n)
    }

    fn try_acquire(&self, n: u32) -> Result<(), TryAcquireError> {
        self.shared.try_acquire(n)
    }

    fn feedback(&self, feedback: &Feedback) {
        self.shared.feedback(feedback);
    }

    fn status(&self) -> Status {
        self.shared.status()
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

/// The future of [`TokenBucket::acquire`]. Dropping it before it
/// completes hands its slot back.
#[must_use = "futures do nothing unless polled"]
pub struct Acquire<'a> {
    shared: &'a Bucket,
    n: u32,
    state: State,
}

enum State {
    Start,
    Waiting {
        id: u64,
        since: u64,
        sleep: Pin<Box<Sleep>>,
    },
    Done,
}

impl Future for Acquire<'_> {
    type Output = Result<Admission, AcquireError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let shared = this.shared;
        let mut fired = false;
        loop {
            match &mut this.state {
                State::Start => {
                    let now = shared.now();
                    match shared.try_admit(this.n, now) {
                        Ok(()) => return this.done(Duration::ZERO),
                        Err(TryAcquireError::Insufficient { requested, burst }) => {
                            this.state = State::Done;
                            return Poll::Ready(Err(AcquireError::Insufficient {
                                requested,
                                burst,
                            }));
                        }
                        Err(TryAcquireError::Wait(_)) => {}
                    }
                    let mut queue = lock(&shared.queue);
                    match shared.book(&mut queue, this.n, now) {
                        Ok(Booking::Now) => {
                            drop(queue);
                            return this.done(Duration::ZERO);
                        }
                        Ok(Booking::Wait { id, ready_at }) => {
                            let position = queue.entries.len() - 1;
                            drop(queue);
                            tracing::debug!(
                                target: TARGET,
                                wait_ms = shared.duration(ready_at - now).as_millis(),
                                position,
                                "waiting for a permit"
                            );
                            this.state = State::Waiting {
                                id,
                                since: now,
                                sleep: Box::pin(tokio::time::sleep_until(shared.instant(ready_at))),
                            };
                        }
                        Err(error) => {
                            drop(queue);
                            this.state = State::Done;
                            tracing::debug!(target: TARGET, %error, "not waiting");
                            return Poll::Ready(Err(error));
                        }
                    }
                }
                State::Waiting { id, since, sleep } => {
                    let mut queue = lock(&shared.queue);
                    let now = shared.now();
                    let Some(position) = queue.entries.iter().position(|e| e.id == *id) else {
                        unreachable!("a waiter stays queued until it completes or is dropped");
                    };
                    let entry = &mut queue.entries[position];
                    if entry.ready_at <= now {
                        if position == 0 {
                            queue.entries.pop_front();
                            wake_front_if_due(&mut queue, now);
                            drop(queue);
                            shared.hot.admitted.fetch_add(u64::from(this.n), Relaxed);
                            shared.waited.fetch_add(1, Relaxed);
                            let waited = shared.duration(now - *since);
                            this.state = State::Done;
                            return Poll::Ready(Ok(Admission {
                                waited,
                                at: shared.instant(now),
                            }));
                        }
                        // Due, but someone ahead is not done yet: the front
                        // wakes us when it completes or leaves.
                        entry.waker = Some(cx.waker().clone());
                        return Poll::Pending;
                    }
                    match &entry.waker {
                        Some(waker) if waker.will_wake(cx.waker()) => {}
                        _ => entry.waker = Some(cx.waker().clone()),
                    }
                    let deadline = shared.instant(entry.ready_at);
                    drop(queue);
                    if sleep.deadline() != deadline {
                        sleep.as_mut().reset(deadline);
                    }
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    if fired {
                        // The timer fired but the slot is not due by our
                        // clock: yield a turn rather than spin.
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    fired = true;
                }
                State::Done => panic!("`Acquire` polled after completion"),
            }
        }
    }
}

impl Acquire<'_> {
    fn done(&mut self, waited: Duration) -> Poll<Result<Admission, AcquireError>> {
        self.state = State::Done;
        Poll::Ready(Ok(Admission {
            waited,
            at: Instant::now(),
        }))
    }
}

impl Drop for Acquire<'_> {
    fn drop(&mut self) {
        if let State::Waiting { id, .. } = self.state {
            self.shared.cancel(id);
        }
    }
}

impl fmt::Debug for Acquire<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Start => "start",
            State::Waiting { .. } => "waiting",
            State::Done => "done",
        };
        f.debug_struct("Acquire")
            .field("n", &self.n)
            .field("state", &state)
            .finish()
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

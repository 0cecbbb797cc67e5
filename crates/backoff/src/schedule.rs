//! Delay schedules: how long to wait before each retry.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::ConfigError;
use crate::rng::{mix, SplitMix64};

/// A backoff schedule: a fresh sequence of delays for every operation.
///
/// This is the trait to implement for a schedule of your own. The drivers
/// call [`delays`](Backoff::delays) lazily, when an operation first fails,
/// and take one delay per retry; when the iterator ends, retrying stops.
///
/// [`Schedule`] is the built-in implementation. Any `Fn() -> impl
/// IntoIterator<Item = Duration>` is a schedule too:
///
/// ```
/// use std::time::Duration;
/// use steadfast_backoff::Backoff;
///
/// let fixed = || [1, 2, 5].map(Duration::from_secs);
/// let delays: Vec<_> = fixed.delays().collect();
/// assert_eq!(delays, [1, 2, 5].map(Duration::from_secs));
/// ```
pub trait Backoff {
    /// The per-operation state: the delays before retry 1, 2, 3, ...
    type Delays: Iterator<Item = Duration>;

    /// Starts a new sequence of delays for one operation.
    fn delays(&self) -> Self::Delays;

    /// The longest time one operation may take, all attempts and sleeps
    /// included; `None` for no limit.
    ///
    /// The drivers measure it on the runtime's clock and never start a sleep
    /// that would end past it.
    fn max_elapsed(&self) -> Option<Duration> {
        None
    }
}

impl<F, I> Backoff for F
where
    F: Fn() -> I,
    I: IntoIterator<Item = Duration>,
{
    type Delays = I::IntoIter;

    fn delays(&self) -> Self::Delays {
        self().into_iter()
    }
}

/// How each delay is randomised, so that clients that failed together do
/// not retry together.
///
/// The random draw is applied to the schedule's plain delay `d` for that
/// retry, and the schedule's cap is applied afterwards, so the cap always
/// holds.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Jitter {
    /// Exactly `d`.
    None,
    /// Uniform in `[0, d]`. Least total work under contention (the AWS
    /// simulation), at the price of occasionally very short waits.
    Full,
    /// Uniform in `[d/2, d]`.
    Equal,
    /// Uniform in `[base, 3 × previous delay]` (AWS's "decorrelated
    /// jitter"): it grows on its own, so the schedule's factor is not used.
    Decorrelated,
    /// Uniform in `[low × d, high × d]`. Build it with
    /// [`Jitter::proportional`].
    Proportional {
        /// The smallest multiplier.
        low: f64,
        /// The largest multiplier.
        high: f64,
    },
}

impl Jitter {
    /// Jitter that multiplies each delay by a uniform draw from
    /// `[low, high]`, e.g. `proportional(0.5, 1.5)` for ±50 %.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] unless `0 <= low <= high` and both are finite.
    pub fn proportional(low: f64, high: f64) -> Result<Self, ConfigError> {
        if !(low.is_finite() && high.is_finite() && 0.0 <= low && low <= high) {
            return Err(ConfigError::new(format!(
                "jitter range [{low}, {high}] is invalid; use finite multipliers with 0 <= low <= high, e.g. 0.5 and 1.5"
            )));
        }
        Ok(Self::Proportional { low, high })
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Shape {
    Exponential { base: Duration, factor: f64 },
    Constant(Duration),
}

/// A seed shared by all clones of a schedule: each operation draws its own
/// stream from `seed` and a counter, so operations are reproducible but
/// never jitter in lockstep.
#[derive(Clone, Debug)]
struct Seed {
    seed: u64,
    next: Arc<AtomicU64>,
}

/// The built-in schedule: exponential or constant delays, jitter, a cap and
/// limits on retries and elapsed time.
///
/// ```
/// use std::time::Duration;
/// use steadfast_backoff::{Backoff, Jitter, Schedule};
///
/// # fn main() -> Result<(), steadfast_backoff::ConfigError> {
/// // 1 s doubling, ±50 %, five retries: the ADR's schedule in one line.
/// let schedule = Schedule::exponential(Duration::from_secs(1), 2.0)?
///     .jitter(Jitter::proportional(0.5, 1.5)?)
///     .max_retries(5);
///
/// let delays: Vec<Duration> = schedule.preview().collect();
/// assert_eq!(delays.len(), 5);
/// for (delay, (low, high)) in delays.iter().zip([(0.5, 1.5), (1.0, 3.0), (2.0, 6.0), (4.0, 12.0), (8.0, 24.0)]) {
///     assert!(Duration::from_secs_f64(low) <= *delay && *delay <= Duration::from_secs_f64(high));
/// }
/// # Ok(())
/// # }
/// ```
///
/// Defaults: 3 retries, no elapsed-time limit, no jitter. An exponential
/// schedule is capped at 60 s unless told otherwise; a constant one is not
/// capped. All arithmetic saturates: a factor of 2 for a thousand retries
/// simply stays at the cap.
#[derive(Clone, Debug)]
pub struct Schedule {
    shape: Shape,
    jitter: Jitter,
    cap: Option<Duration>,
    max_retries: u32,
    max_elapsed: Option<Duration>,
    seed: Option<Seed>,
}

/// The default retry count of a [`Schedule`].
pub const DEFAULT_MAX_RETRIES: u32 = 3;
/// The default cap of an exponential [`Schedule`].
pub const DEFAULT_CAP: Duration = Duration::from_secs(60);

impl Schedule {
    /// Delays of `base × factorⁿ` before retry `n + 1`: `base`, `base ×
    /// factor`, `base × factor²`, ...
    ///
    /// # Errors
    ///
    /// [`ConfigError`] unless `factor` is finite and at least 1.
    pub fn exponential(base: Duration, factor: f64) -> Result<Self, ConfigError> {
        if !(factor.is_finite() && factor >= 1.0) {
            return Err(ConfigError::new(format!(
                "backoff factor {factor} is invalid; use a finite factor of at least 1, e.g. 2"
            )));
        }
        Ok(Self::with_shape(
            Shape::Exponential { base, factor },
            Some(DEFAULT_CAP),
        ))
    }

    /// The same delay before every retry.
    #[must_use]
    pub fn constant(delay: Duration) -> Self {
        Self::with_shape(Shape::Constant(delay), None)
    }

    fn with_shape(shape: Shape, cap: Option<Duration>) -> Self {
        Self {
            shape,
            jitter: Jitter::None,
            cap,
            max_retries: DEFAULT_MAX_RETRIES,
            max_elapsed: None,
            seed: None,
        }
    }

    /// Randomises each delay; see [`Jitter`].
    #[must_use]
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// No delay is longer than `cap`, jitter included.
    #[must_use]
    pub fn cap(mut self, cap: Duration) -> Self {
        self.cap = Some(cap);
        self
    }

    /// Removes the cap.
    #[must_use]
    pub fn uncapped(mut self) -> Self {
        self.cap = None;
        self
    }

    /// At most `n` retries after the first attempt (`0` never retries).
    #[must_use]
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// At most `limit` from the start of the first attempt to the end of the
    /// last; no sleep starts that would end past it. Set together with
    /// [`max_retries`](Self::max_retries), whichever comes first ends the
    /// retries.
    #[must_use]
    pub fn max_elapsed(mut self, limit: Duration) -> Self {
        self.max_elapsed = Some(limit);
        self
    }

    /// Makes the jitter reproducible: operation `k` started from this
    /// schedule (or its clones) draws from a stream derived from `seed` and
    /// `k`.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(Seed {
            seed,
            next: Arc::new(AtomicU64::new(0)),
        });
        self
    }

    /// The configured retry limit.
    #[must_use]
    pub fn retry_limit(&self) -> u32 {
        self.max_retries
    }

    /// The delays one operation would sleep if every attempt failed
    /// instantly, without sleeping: a fresh draw of [`Backoff::delays`].
    #[must_use]
    pub fn preview(&self) -> Delays {
        self.delays()
    }

    /// The uncapped bounds in nanoseconds. All arithmetic is `f64`: it
    /// saturates to infinity instead of overflowing, and the cap (or the
    /// `u64` nanosecond limit) brings it back.
    fn bounds_ns(&self, d: f64, previous_ns: f64) -> (f64, f64) {
        match self.jitter {
            Jitter::None => (d, d),
            Jitter::Full => (0.0, d),
            Jitter::Equal => (d / 2.0, d),
            Jitter::Proportional { low, high } => (d * low, d * high),
            Jitter::Decorrelated => {
                let base = self.base_ns();
                (base, (previous_ns * 3.0).max(base))
            }
        }
    }

    fn base_ns(&self) -> f64 {
        match self.shape {
            Shape::Exponential { base, .. } | Shape::Constant(base) => nanos(base),
        }
    }

    fn capped(&self, ns: f64) -> Duration {
        let d = saturating_from_nanos(ns);
        match self.cap {
            Some(cap) => d.min(cap),
            None => d,
        }
    }
}

/// A duration in nanoseconds, as `f64` (exact below 2^53 ns, 104 days),
/// without the slow `u128` conversion of `as_nanos() as f64`.
fn nanos(d: Duration) -> f64 {
    d.as_secs() as f64 * 1e9 + f64::from(d.subsec_nanos())
}

impl Backoff for Schedule {
    type Delays = Delays;

    fn delays(&self) -> Delays {
        let rng = match &self.seed {
            Some(seed) => {
                let k = seed.next.fetch_add(1, Ordering::Relaxed);
                SplitMix64::new(mix(seed.seed ^ mix(k)))
            }
            None => SplitMix64::from_entropy(),
        };
        Delays {
            schedule: Schedule {
                seed: None,
                ..self.clone()
            },
            retry: 0,
            plain: self.base_ns(),
            previous: Duration::ZERO,
            total: Duration::ZERO,
            rng,
        }
    }

    fn max_elapsed(&self) -> Option<Duration> {
        self.max_elapsed
    }
}

/// The delays of one operation under a [`Schedule`].
///
/// Ends after the retry limit, or before a delay that would take the sum of
/// delays past the elapsed-time limit.
#[derive(Clone)]
pub struct Delays {
    schedule: Schedule,
    retry: u32,
    /// The un-jittered delay of the next retry, in nanoseconds.
    plain: f64,
    previous: Duration,
    total: Duration,
    rng: SplitMix64,
}

impl fmt::Debug for Delays {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delays")
            .field("retry", &self.retry)
            .field("previous", &self.previous)
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl Iterator for Delays {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let s = &self.schedule;
        if self.retry >= s.max_retries {
            return None;
        }
        let retry = self.retry + 1;
        let previous_ns = if self.retry == 0 {
            0.0
        } else {
            nanos(self.previous)
        };
        let plain = self.plain;
        if let Shape::Exponential { factor, .. } = s.shape {
            // One multiply per retry; infinity once it overflows, which the
            // cap (or the u64-nanosecond ceiling) brings back.
            self.plain *= factor;
        }
        let (low, high) = s.bounds_ns(plain, previous_ns.max(s.base_ns()));
        let ns = if low < high {
            // Rounding must not step outside the bounds.
            self.rng.between(low, high).clamp(low, high)
        } else {
            low
        };
        let delay = s.capped(ns);
        let total = self.total.saturating_add(delay);
        if s.max_elapsed.is_some_and(|limit| total > limit) {
            self.retry = s.max_retries;
            return None;
        }
        self.retry = retry;
        self.previous = delay;
        self.total = total;
        Some(delay)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.schedule.max_retries.saturating_sub(self.retry) as usize;
        (0, Some(left))
    }
}

/// Nanoseconds to a `Duration`, saturating at `u64::MAX` ns (about 584
/// years) for huge, infinite or NaN inputs and at zero for negative ones.
fn saturating_from_nanos(ns: f64) -> Duration {
    if ns.is_nan() || ns <= 0.0 {
        Duration::ZERO
    } else if ns >= u64::MAX as f64 {
        Duration::from_nanos(u64::MAX)
    } else {
        Duration::from_nanos(ns as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn exponential_without_jitter_is_exact() {
        let s = Schedule::exponential(secs(1), 2.0).unwrap().max_retries(6);
        let d: Vec<_> = s.preview().collect();
        assert_eq!(d, [1, 2, 4, 8, 16, 32].map(secs));
    }

    #[test]
    fn cap_applies_and_factor_two_for_a_thousand_retries_saturates() {
        let s = Schedule::exponential(secs(1), 2.0)
            .unwrap()
            .max_retries(1000)
            .cap(secs(30));
        let d: Vec<_> = s.preview().collect();
        assert_eq!(d.len(), 1000);
        assert_eq!(d[4], secs(16));
        assert!(d[5..].iter().all(|&x| x == secs(30)));

        let uncapped: Vec<_> = s.uncapped().preview().collect();
        assert_eq!(uncapped[999], Duration::from_nanos(u64::MAX));
    }

    #[test]
    fn constant_is_constant_and_uncapped_by_default() {
        let d: Vec<_> = Schedule::constant(secs(90)).preview().collect();
        assert_eq!(d, [secs(90); 3]);
    }

    #[test]
    fn max_elapsed_stops_before_a_sleep_that_would_pass_it() {
        let s = Schedule::exponential(secs(1), 2.0)
            .unwrap()
            .max_retries(10)
            .max_elapsed(secs(10));
        // 1 + 2 + 4 = 7; the next (8) would end at 15 > 10.
        assert_eq!(s.preview().collect::<Vec<_>>(), [1, 2, 4].map(secs));
    }

    #[test]
    fn bad_factor_and_jitter_are_config_errors() {
        for f in [0.5, -1.0, f64::NAN, f64::INFINITY] {
            let err = Schedule::exponential(secs(1), f).unwrap_err();
            assert!(err.to_string().contains("factor"), "{err}");
        }
        assert!(Jitter::proportional(1.5, 0.5).is_err());
        assert!(Jitter::proportional(-0.1, 0.5).is_err());
        assert!(Jitter::proportional(0.0, f64::NAN).is_err());
        assert!(Jitter::proportional(1.0, 1.0).is_ok());
    }
}

//! Where the bucket reads the time, and the conversions between its ticks,
//! durations and tokio instants.

use std::time::Duration;

use tokio::time::Instant;

use super::{nanos, Bucket};

/// Where the fast path reads the time.
pub(super) enum ClockSource {
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
    pub(super) fn ticks_of_ns(&self, ns: u64) -> u64 {
        match self {
            Self::Tokio => ns,
            #[cfg(feature = "tsc")]
            Self::Tsc { per_ns, .. } => (ns as f64 * per_ns).ceil().min(u64::MAX as f64) as u64,
        }
    }

    /// Ticks to a duration.
    pub(super) fn duration(&self, ticks: u64) -> Duration {
        match self {
            Self::Tokio => Duration::from_nanos(ticks),
            #[cfg(feature = "tsc")]
            Self::Tsc { per_ns, .. } => Duration::from_nanos((ticks as f64 / per_ns) as u64),
        }
    }
}

impl Bucket {
    /// The limiter's time: nanoseconds since `epoch` on tokio's clock, or
    /// time-stamp-counter ticks since `origin` (see [`ClockSource`]).
    pub(super) fn now(&self) -> u64 {
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

    /// A duration on the limiter's clock to ticks.
    pub(super) fn ticks(&self, d: Duration) -> u64 {
        self.clock.ticks_of_ns(nanos(d))
    }

    /// Ticks to a duration.
    pub(super) fn duration(&self, ticks: u64) -> Duration {
        self.clock.duration(ticks)
    }

    /// Ticks to seconds, for the adaptive controller.
    pub(super) fn seconds(&self, ticks: u64) -> f64 {
        self.duration(ticks).as_secs_f64()
    }

    /// The tokio instant of a time on the limiter's clock, for its timer.
    pub(super) fn instant(&self, ticks: u64) -> Instant {
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
}

//! A plain snapshot of a limiter, with a one-line readout.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::rate::Rate;

/// Which source set the rate in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RateSource {
    /// The configured rate (the user's `--rate-limit`).
    Configuration,
    /// The adaptive controller, after the server throttled.
    Adaptation,
    /// The server's quota headers (`remaining` over `reset`).
    ServerHint,
}

/// Why the limiter is paused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PauseCause {
    /// A `Retry-After` from the server.
    RetryAfter,
    /// The server's quota is used up until its reset.
    QuotaExhausted,
}

impl fmt::Display for PauseCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::RetryAfter => "Retry-After",
            Self::QuotaExhausted => "quota used up",
        })
    }
}

/// A snapshot of a limiter's state, from
/// [`Limiter::status`](crate::Limiter::status).
///
/// Its `Display` is a one-line readout for a verbose mode:
///
/// ```
/// use std::time::Duration;
/// use steadfast_ratelimit::{PauseCause, RateSource, Status};
///
/// let status = Status {
///     configured: "10/min".parse()?,
///     effective: 7.0 / 60.0,
///     source: RateSource::Adaptation,
///     available: 0,
///     waiting: 3,
///     next_free: Duration::from_secs(12),
///     paused_for: Some(Duration::from_secs(12)),
///     pause_cause: Some(PauseCause::RetryAfter),
///     admitted: 41,
///     waited: 17,
///     throttled: 2,
///     store: None,
/// };
/// assert_eq!(
///     status.to_string(),
///     "rate 7.0/min (adapted from 10/min) · 0 free · 3 waiting · paused 12s (Retry-After)"
/// );
/// # Ok::<(), steadfast_ratelimit::RateError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Status {
    /// The configured rate: the ceiling.
    pub configured: Rate,
    /// The rate in force, in permits per second.
    pub effective: f64,
    /// Which source set `effective`.
    pub source: RateSource,
    /// Permits that could be taken right now.
    pub available: u32,
    /// Callers queued in `acquire`.
    pub waiting: usize,
    /// Time until the next permit is free for a new caller (after the
    /// queue and any pause); zero when one is free now.
    pub next_free: Duration,
    /// Time left in a pause that every caller obeys, if any.
    pub paused_for: Option<Duration>,
    /// What caused the pause.
    pub pause_cause: Option<PauseCause>,
    /// Permits granted so far.
    pub admitted: u64,
    /// Acquisitions that had to wait.
    pub waited: u64,
    /// Throttles the server reported.
    pub throttled: u64,
    /// For a limiter held in a shared store: the store's state as last
    /// seen. `None` for a local limiter.
    pub store: Option<StoreStatus>,
}

/// The shared store behind a limiter, as [`Status::store`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreStatus {
    /// The store's name (`"redis"`).
    pub name: &'static str,
    /// Whether the last round trip to it succeeded.
    pub reachable: bool,
    /// Which worker last changed the shared rate or pause, if any did.
    pub set_by: Option<Arc<str>>,
    /// While the store is unreachable: what the failure policy does
    /// (`"fail open"`, `"fail closed"`, `"local bucket at 1/4 of the rate"`).
    pub fallback: Option<Arc<str>>,
    /// The last error from the store, if the last round trip failed.
    pub last_error: Option<Arc<str>>,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.source {
            RateSource::Configuration => write!(f, "rate {}", self.configured)?,
            source => {
                let unit = self.configured.per();
                let per_unit = self.effective * unit.duration().as_secs_f64();
                let how = match source {
                    RateSource::ServerHint => "server quota, configured",
                    _ => "adapted from",
                };
                write!(
                    f,
                    "rate {per_unit:.1}/{} ({how} {})",
                    unit.symbol(),
                    self.configured
                )?;
            }
        }
        write!(f, " · {} free · {} waiting", self.available, self.waiting)?;
        match (self.paused_for, self.pause_cause) {
            (Some(left), Some(cause)) => write!(f, " · paused {} ({cause})", Secs(left)),
            (Some(left), None) => write!(f, " · paused {}", Secs(left)),
            _ if self.available == 0 && !self.next_free.is_zero() => {
                write!(f, " · next in {}", Secs(self.next_free))
            }
            _ => Ok(()),
        }?;
        if let Some(store) = &self.store {
            if store.reachable {
                write!(f, " · {} ok", store.name)?;
                if let Some(by) = &store.set_by {
                    write!(f, " (rate/pause set by {by})")?;
                }
            } else {
                write!(f, " · {} unreachable", store.name)?;
                if let Some(fallback) = &store.fallback {
                    write!(f, ": {fallback}")?;
                }
            }
        }
        Ok(())
    }
}

/// Whole seconds, rounded up (`12s`), or tenths under ten seconds.
struct Secs(Duration);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs_f64();
        if secs < 10.0 && self.0.subsec_nanos() != 0 {
            write!(f, "{:.1}s", (secs * 10.0).ceil() / 10.0)
        } else {
            write!(f, "{}s", secs.ceil())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> Status {
        Status {
            configured: "10/min".parse().expect("rate"),
            effective: 10.0 / 60.0,
            source: RateSource::Configuration,
            available: 1,
            waiting: 0,
            next_free: Duration::ZERO,
            paused_for: None,
            pause_cause: None,
            admitted: 0,
            waited: 0,
            throttled: 0,
            store: None,
        }
    }

    #[test]
    fn readouts() {
        assert_eq!(status().to_string(), "rate 10/min · 1 free · 0 waiting");
        let waiting = Status {
            available: 0,
            waiting: 2,
            next_free: Duration::from_millis(4_210),
            ..status()
        };
        assert_eq!(
            waiting.to_string(),
            "rate 10/min · 0 free · 2 waiting · next in 4.3s"
        );
        let hinted = Status {
            source: RateSource::ServerHint,
            effective: 0.05,
            ..status()
        };
        assert_eq!(
            hinted.to_string(),
            "rate 3.0/min (server quota, configured 10/min) · 1 free · 0 waiting"
        );
        let paused = Status {
            paused_for: Some(Duration::from_secs(90)),
            pause_cause: Some(PauseCause::QuotaExhausted),
            ..status()
        };
        assert!(paused.to_string().ends_with("paused 90s (quota used up)"));
        let shared = Status {
            store: Some(StoreStatus {
                name: "redis",
                reachable: false,
                set_by: None,
                fallback: Some("local bucket at 1/4 of the rate".into()),
                last_error: Some("connection refused".into()),
            }),
            ..status()
        };
        assert!(
            shared
                .to_string()
                .ends_with("· redis unreachable: local bucket at 1/4 of the rate"),
            "{shared}"
        );
    }
}

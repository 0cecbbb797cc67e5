//! `Rate`: how many permits per unit of time, and how many at once.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The unit a [`Rate`] is counted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Per {
    /// Per second (`/s`).
    Second,
    /// Per minute (`/min`).
    Minute,
    /// Per hour (`/h`).
    Hour,
    /// Per day (`/day`).
    Day,
}

impl Per {
    /// The unit's length.
    pub fn duration(self) -> Duration {
        Duration::from_secs(self.seconds())
    }

    fn seconds(self) -> u64 {
        match self {
            Self::Second => 1,
            Self::Minute => 60,
            Self::Hour => 3_600,
            Self::Day => 86_400,
        }
    }

    pub(crate) fn symbol(self) -> &'static str {
        match self {
            Self::Second => "s",
            Self::Minute => "min",
            Self::Hour => "h",
            Self::Day => "day",
        }
    }

    fn parse(unit: &str) -> Option<Self> {
        Some(match unit.to_ascii_lowercase().as_str() {
            "s" | "sec" | "secs" | "second" | "seconds" => Self::Second,
            "min" | "mins" | "minute" | "minutes" => Self::Minute,
            "h" | "hr" | "hrs" | "hour" | "hours" => Self::Hour,
            "d" | "day" | "days" => Self::Day,
            _ => return None,
        })
    }
}

/// A rate limit: `permits` per unit, of which up to `burst` may go at once.
///
/// Parses and prints the forms a `--rate-limit` flag takes:
///
/// ```
/// use steadfast_ratelimit::Rate;
///
/// let rate: Rate = "10/min".parse()?;
/// assert_eq!(rate.per_second(), 10.0 / 60.0);
/// assert_eq!(rate.burst(), 1);
/// assert_eq!(rate.to_string(), "10/min");
///
/// let rate: Rate = "5/s burst 20".parse()?;
/// assert_eq!((rate.permits(), rate.burst()), (5, 20));
/// assert_eq!("600/h,burst=10".parse::<Rate>()?.to_string(), "600/h burst 10");
///
/// let error = "10/fortnight".parse::<Rate>().unwrap_err();
/// assert!(error.to_string().contains("10/min"), "shows the accepted forms: {error}");
/// # Ok::<(), steadfast_ratelimit::RateError>(())
/// ```
///
/// The burst defaults to 1: permits come evenly spaced, one every
/// `unit / permits`, which never exceeds a server's limit in any window of
/// the unit's length. A larger burst lets that many go at once after a quiet
/// spell, at the price of exceeding a sliding-window limit by up to
/// `burst - 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rate {
    permits: u32,
    per: Per,
    burst: u32,
}

/// The most permits per second a [`Rate`] may have: one per nanosecond.
const MAX_PER_SECOND: u64 = 1_000_000_000;

impl Rate {
    /// `permits` per `per`, burst 1.
    ///
    /// # Errors
    ///
    /// [`RateError`] if `permits` is zero or more than one per nanosecond.
    pub fn new(permits: u32, per: Per) -> Result<Self, RateError> {
        if permits == 0 {
            return Err(RateError::new(
                RateErrorKind::Zero,
                format!("0/{}", per.symbol()),
            ));
        }
        if u64::from(permits) > MAX_PER_SECOND.saturating_mul(per.seconds()) {
            return Err(RateError::new(
                RateErrorKind::TooFast,
                format!("{permits}/{}", per.symbol()),
            ));
        }
        Ok(Self {
            permits,
            per,
            burst: 1,
        })
    }

    /// `n` per second, burst 1.
    ///
    /// # Errors
    ///
    /// As [`Rate::new`].
    pub fn per_second_n(n: u32) -> Result<Self, RateError> {
        Self::new(n, Per::Second)
    }

    /// With up to `burst` permits at once (at least 1).
    ///
    /// # Errors
    ///
    /// [`RateError`] if `burst` is zero.
    pub fn with_burst(self, burst: u32) -> Result<Self, RateError> {
        if burst == 0 {
            return Err(RateError::new(
                RateErrorKind::ZeroBurst,
                format!("{self} burst 0"),
            ));
        }
        Ok(Self { burst, ..self })
    }

    /// Permits per unit.
    pub fn permits(self) -> u32 {
        self.permits
    }

    /// The unit.
    pub fn per(self) -> Per {
        self.per
    }

    /// How many permits may go at once.
    pub fn burst(self) -> u32 {
        self.burst
    }

    /// Permits per second, as a float.
    pub fn per_second(self) -> f64 {
        f64::from(self.permits) / self.per.seconds() as f64
    }

    /// The time between two permits, rounded up to the nanosecond so the
    /// rate is never exceeded.
    pub fn interval(self) -> Duration {
        Duration::from_nanos(self.interval_nanos())
    }

    pub(crate) fn interval_nanos(self) -> u64 {
        (self.per.seconds() * 1_000_000_000).div_ceil(u64::from(self.permits))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.permits, self.per.symbol())?;
        if self.burst != 1 {
            write!(f, " burst {}", self.burst)?;
        }
        Ok(())
    }
}

impl FromStr for Rate {
    type Err = RateError;

    /// `N/UNIT`, optionally followed by a burst: `10/min`, `5/s`, `600/h`,
    /// `1000/day`, `5/s burst 20`, `5/s,burst=20`. Units: `s`, `sec`,
    /// `second`; `min`, `minute`; `h`, `hr`, `hour`; `d`, `day` (and
    /// plurals).
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |kind| RateError::new(kind, input.to_string());
        let (count, rest) = input
            .split_once('/')
            .ok_or_else(|| fail(RateErrorKind::Syntax))?;
        let permits = parse_count(count.trim()).map_err(fail)?;
        let rest = rest.trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let per = Per::parse(&rest[..unit_len]).ok_or_else(|| fail(RateErrorKind::Unit))?;
        let rate = Self::new(permits, per).map_err(|e| fail(e.kind))?;
        let rest = rest[unit_len..].trim();
        if rest.is_empty() {
            return Ok(rate);
        }
        let value = rest
            .trim_start_matches(',')
            .trim_start()
            .strip_prefix("burst")
            .map(|value| value.trim_start().trim_start_matches('=').trim())
            .ok_or_else(|| fail(RateErrorKind::Syntax))?;
        let burst = parse_count(value).map_err(fail)?;
        rate.with_burst(burst).map_err(|e| fail(e.kind))
    }
}

fn parse_count(text: &str) -> Result<u32, RateErrorKind> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RateErrorKind::Syntax);
    }
    text.parse().map_err(|_| RateErrorKind::Overflow)
}

/// What was wrong with a rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RateErrorKind {
    /// Not of the form `N/UNIT`.
    Syntax,
    /// A unit other than seconds, minutes, hours or days.
    Unit,
    /// Zero permits.
    Zero,
    /// A burst of zero.
    ZeroBurst,
    /// A number too large for 32 bits.
    Overflow,
    /// More than one permit per nanosecond.
    TooFast,
}

/// A rate that could not be parsed or built; its `Display` shows the input
/// and the accepted forms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateError {
    kind: RateErrorKind,
    input: String,
}

impl RateError {
    fn new(kind: RateErrorKind, input: String) -> Self {
        Self { kind, input }
    }

    /// What was wrong.
    pub fn kind(&self) -> RateErrorKind {
        self.kind
    }
}

impl fmt::Display for RateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            RateErrorKind::Syntax => "is not a rate",
            RateErrorKind::Unit => "has an unknown unit",
            RateErrorKind::Zero => "allows nothing (the rate must be at least 1)",
            RateErrorKind::ZeroBurst => "has a burst of 0 (it must be at least 1)",
            RateErrorKind::Overflow => "has a number too large",
            RateErrorKind::TooFast => "is faster than one per nanosecond",
        };
        write!(
            f,
            "rate {:?} {what}; use N/UNIT with a unit of s, min, h or day, and an optional burst: \
             10/min, 5/s, 600/h, 5/s burst 20",
            self.input
        )
    }
}

impl std::error::Error for RateError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_documented_forms() {
        for (input, printed, per_second, burst) in [
            ("10/min", "10/min", 10.0 / 60.0, 1),
            ("5/s", "5/s", 5.0, 1),
            ("600/h", "600/h", 600.0 / 3600.0, 1),
            (" 600 / hour ", "600/h", 600.0 / 3600.0, 1),
            ("1000/day", "1000/day", 1000.0 / 86400.0, 1),
            ("5/s burst 20", "5/s burst 20", 5.0, 20),
            ("5/sec,burst=20", "5/s burst 20", 5.0, 20),
            ("5/S, burst = 3", "5/s burst 3", 5.0, 3),
        ] {
            let rate: Rate = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(rate.to_string(), printed, "{input}");
            assert_eq!(rate.per_second(), per_second, "{input}");
            assert_eq!(rate.burst(), burst, "{input}");
            assert_eq!(printed.parse::<Rate>(), Ok(rate), "round trip of {input}");
        }
    }

    #[test]
    fn bad_input_names_the_problem_and_shows_the_forms() {
        for (input, kind) in [
            ("0/s", RateErrorKind::Zero),
            ("abc", RateErrorKind::Syntax),
            ("", RateErrorKind::Syntax),
            ("10", RateErrorKind::Syntax),
            ("-1/s", RateErrorKind::Syntax),
            ("1.5/s", RateErrorKind::Syntax),
            ("10/fortnight", RateErrorKind::Unit),
            ("10/", RateErrorKind::Unit),
            ("99999999999/s", RateErrorKind::Overflow),
            ("5/s burst 0", RateErrorKind::ZeroBurst),
            ("5/s burst", RateErrorKind::Syntax),
            ("5/s bust 3", RateErrorKind::Syntax),
            ("5/s burst 99999999999", RateErrorKind::Overflow),
        ] {
            let error = input.parse::<Rate>().expect_err(input);
            assert_eq!(error.kind(), kind, "{input}");
            let text = error.to_string();
            assert!(
                text.contains(&format!("{input:?}")),
                "names the input: {text}"
            );
            assert!(
                text.contains("10/min, 5/s, 600/h"),
                "shows the forms: {text}"
            );
        }
    }

    #[test]
    fn intervals_round_up_so_the_rate_is_never_exceeded() {
        let rate: Rate = "3/s".parse().expect("rate");
        assert_eq!(rate.interval(), Duration::from_nanos(333_333_334));
        assert_eq!(
            Rate::new(10, Per::Minute).expect("rate").interval(),
            Duration::from_secs(6)
        );
        assert_eq!(
            Rate::new(1_000_000_000, Per::Second)
                .expect("rate")
                .interval_nanos(),
            1
        );
        assert_eq!(
            Rate::new(u32::MAX, Per::Second).map_err(|e| e.kind()),
            Err(RateErrorKind::TooFast)
        );
        assert!(Rate::new(u32::MAX, Per::Day).is_ok());
    }
}

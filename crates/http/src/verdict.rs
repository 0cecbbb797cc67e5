//! The one verdict on a response: throttled? retryable? when to come back?

use std::fmt;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};

use crate::hint;
use crate::Hint;

/// The quota a server reported: `remaining` units until it resets in
/// `reset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Units (usually requests) left in the current window.
    pub remaining: u64,
    /// Time until the window resets, from when the response arrived.
    pub reset: Duration,
}

/// What a response says, for a retry policy and a rate limiter alike.
///
/// Made by [`Classifier::classify`]; see there for the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    status: StatusCode,
    throttled: bool,
    retryable: bool,
    hint: Option<Hint>,
    quota: Option<Quota>,
}

impl Verdict {
    /// The response's status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Whether the server is shedding load: the request was refused for the
    /// rate, not for what it asked. A rate limiter slows down on this.
    pub fn is_throttled(&self) -> bool {
        self.throttled
    }

    /// Whether sending the same request again may succeed: a throttle, or a
    /// status in the classifier's retry set.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// Whether the status is informational, success or redirection: the
    /// request did what it asked (or was told where to go).
    pub fn is_success(&self) -> bool {
        self.status.as_u16() < 400
    }

    /// When to come back: set only on retryable responses. A throttled one
    /// may take it from any hint header; another retryable one (a 503
    /// without a throttle, a 502) only from `Retry-After` and its vendor
    /// forms, since a quota's reset says nothing about when a crashed
    /// server is back.
    pub fn hint(&self) -> Option<Hint> {
        self.hint
    }

    /// The quota the response reported, on any status.
    pub fn quota(&self) -> Option<Quota> {
        self.quota
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.throttled {
            "throttled"
        } else if self.retryable {
            "retryable"
        } else if self.is_success() {
            "success"
        } else {
            "final"
        };
        write!(f, "HTTP {}: {what}", self.status.as_u16())?;
        if let Some(hint) = self.hint {
            write!(f, ", come back in {:?} ({})", hint.delay, hint.source)?;
        }
        if let Some(q) = self.quota {
            write!(f, ", {} left until reset in {:?}", q.remaining, q.reset)?;
        }
        Ok(())
    }
}

/// A status code that cannot be in a retry set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidStatus(pub u16);

impl fmt::Display for InvalidStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "status {} cannot be retried: only error statuses (400-599) can; a success or redirect is returned as it is",
            self.0
        )
    }
}

impl std::error::Error for InvalidStatus {}

/// The statuses retried by default: 408, 429, 500, 502, 503, 504.
const DEFAULT_RETRY: [u16; 6] = [408, 429, 500, 502, 503, 504];

/// Turns status + headers + the time into a [`Verdict`].
///
/// | response | throttled | retryable | hint from |
/// |---|---|---|---|
/// | 429 | yes | yes | any hint header |
/// | 503 with `Retry-After` (or a vendor form) | yes | yes | any hint header |
/// | 403 with a quota of 0 left, or with `Retry-After` (GitHub's rate limits) | yes | yes | any hint header |
/// | a status in the retry set (default 408, 500, 502, 503, 504) | no | yes | `Retry-After` and its vendor forms |
/// | any other status | no | no | none |
///
/// The quota (`RateLimit`, `X-RateLimit-Remaining` + reset, OpenAI's
/// per-resource pairs) is read on every response. Times are measured
/// against the response's `Date` header, else the `now` passed in; the
/// classifier reads no clock itself.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use steadfast_http::Classifier;
///
/// let response = http::Response::builder()
///     .status(429)
///     .header("retry-after", "7")
///     .body(())?;
/// let verdict = Classifier::new().classify(response.status(), response.headers(), SystemTime::now());
/// assert!(verdict.is_throttled() && verdict.is_retryable());
/// assert_eq!(verdict.hint().map(|h| h.delay), Some(Duration::from_secs(7)));
/// # Ok::<(), http::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Classifier {
    /// Bit `n` is status `400 + n`.
    retry: [u64; 4],
    github_403: bool,
}

impl Classifier {
    /// The defaults in the table above.
    #[must_use]
    pub fn new() -> Self {
        let mut classifier = Self {
            retry: [0; 4],
            github_403: true,
        };
        for code in DEFAULT_RETRY {
            classifier.set(code, true);
        }
        classifier
    }

    /// Retries exactly these statuses (throttles are retried whatever the
    /// set says).
    ///
    /// # Errors
    ///
    /// [`InvalidStatus`] for a status below 400: success and redirects are
    /// never retried.
    pub fn retry_statuses(
        mut self,
        statuses: impl IntoIterator<Item = u16>,
    ) -> Result<Self, InvalidStatus> {
        self.retry = [0; 4];
        for code in statuses {
            if !(400..=599).contains(&code) {
                return Err(InvalidStatus(code));
            }
            self.set(code, true);
        }
        Ok(self)
    }

    /// Adds `status` to the retry set.
    ///
    /// # Errors
    ///
    /// [`InvalidStatus`] for a status below 400.
    pub fn also_retry(mut self, status: u16) -> Result<Self, InvalidStatus> {
        if !(400..=599).contains(&status) {
            return Err(InvalidStatus(status));
        }
        self.set(status, true);
        Ok(self)
    }

    /// Removes `status` from the retry set (a 500 that never heals, say).
    #[must_use]
    pub fn never_retry(mut self, status: u16) -> Self {
        if (400..=599).contains(&status) {
            self.set(status, false);
        }
        self
    }

    /// Whether a 403 with a quota of 0 left or a `Retry-After` counts as a
    /// throttle (default yes: GitHub answers its rate limits so).
    #[must_use]
    pub fn throttle_on_403(mut self, yes: bool) -> Self {
        self.github_403 = yes;
        self
    }

    /// Whether `status` is in the retry set.
    pub fn retries(&self, status: StatusCode) -> bool {
        let code = status.as_u16();
        (400..=599).contains(&code) && {
            let bit = usize::from(code - 400);
            self.retry[bit / 64] & (1 << (bit % 64)) != 0
        }
    }

    fn set(&mut self, code: u16, on: bool) {
        let bit = usize::from(code - 400);
        if on {
            self.retry[bit / 64] |= 1 << (bit % 64);
        } else {
            self.retry[bit / 64] &= !(1 << (bit % 64));
        }
    }

    /// The verdict on a response with `status` and `headers`, received at
    /// `now` (used only when the response has no valid `Date`).
    pub fn classify(&self, status: StatusCode, headers: &HeaderMap, now: SystemTime) -> Verdict {
        let quota = hint::quota(headers, now).map(|(remaining, reset)| Quota { remaining, reset });
        let in_set = self.retries(status);
        let code = status.as_u16();
        // The cheap case first: a success reads no hint header.
        if code < 400 {
            return Verdict {
                status,
                throttled: false,
                retryable: false,
                hint: None,
                quota,
            };
        }
        let reference = hint::reference(headers, now);
        let retry_hint = hint::retry_hint(headers, reference);
        let throttled = match code {
            429 => true,
            503 => retry_hint.is_some(),
            403 => {
                self.github_403 && (retry_hint.is_some() || quota.is_some_and(|q| q.remaining == 0))
            }
            _ => false,
        };
        let retryable = throttled || in_set;
        let hint = if throttled {
            retry_hint.or_else(|| hint::reset_hint(headers, reference))
        } else if retryable {
            retry_hint
        } else {
            None
        };
        Verdict {
            status,
            throttled,
            retryable,
            hint,
            quota,
        }
    }
}

impl Default for Classifier {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Classifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let statuses: Vec<u16> = (400..=599)
            .filter(|&c| StatusCode::from_u16(c).is_ok_and(|s| self.retries(s)))
            .collect();
        f.debug_struct("Classifier")
            .field("retry_statuses", &statuses)
            .field("throttle_on_403", &self.github_403)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_set_is_configurable() {
        let c = Classifier::new();
        let s = |n| StatusCode::from_u16(n).unwrap();
        assert!(c.retries(s(503)) && !c.retries(s(501)) && !c.retries(s(200)));
        let c = c.never_retry(500).also_retry(409).unwrap();
        assert!(!c.retries(s(500)) && c.retries(s(409)));
        assert_eq!(
            Classifier::new().retry_statuses([503, 302]),
            Err(InvalidStatus(302))
        );
        assert_eq!(Classifier::new().also_retry(200), Err(InvalidStatus(200)));
        let only = Classifier::new().retry_statuses([599]).unwrap();
        assert!(only.retries(s(599)) && !only.retries(s(503)));
        assert_eq!(
            format!("{only:?}"),
            "Classifier { retry_statuses: [599], throttle_on_403: true }"
        );
    }
}

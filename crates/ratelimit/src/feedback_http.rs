//! Feedback read from HTTP responses (feature `http`), by the verdict of
//! `steadfast-http`, the same one the retry policy acts on.

use std::time::SystemTime;

use http::{HeaderMap, Response, StatusCode};
use steadfast_http::{Classifier, Verdict};

use crate::limiter::Feedback;

impl Feedback {
    /// The feedback that goes with a shared [`Verdict`]:
    ///
    /// * a throttle (429; 503 with `Retry-After`; 403 with no quota left):
    ///   [`throttled`](Feedback::throttled), with the verdict's hint as
    ///   [`retry_after`](Feedback::retry_after);
    /// * other `5xx`, and other retryable statuses (408):
    ///   [`neutral`](Feedback::neutral), since a server error says nothing
    ///   about the rate;
    /// * anything else: [`success`](Feedback::success);
    /// * on any of them, a reported quota becomes a [`quota`](Feedback::quota).
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use steadfast_ratelimit::Feedback;
    /// use steadfast_http::Classifier;
    ///
    /// let response = http::Response::builder()
    ///     .status(429)
    ///     .header("retry-after", "12")
    ///     .body(())?;
    /// let verdict = Classifier::new().classify(response.status(), response.headers(), SystemTime::now());
    /// let feedback = Feedback::from_verdict(&verdict);
    /// assert_eq!(feedback, Feedback::throttled().retry_after(Duration::from_secs(12)));
    /// # Ok::<(), http::Error>(())
    /// ```
    pub fn from_verdict(verdict: &Verdict) -> Self {
        let mut feedback = if verdict.is_throttled() {
            match verdict.hint() {
                Some(hint) => Self::throttled().retry_after(hint.delay),
                None => Self::throttled(),
            }
        } else if verdict.is_retryable() || verdict.status().is_server_error() {
            Self::neutral()
        } else {
            Self::success()
        };
        if let Some(q) = verdict.quota() {
            feedback = feedback.quota(q.remaining, q.reset);
        }
        feedback
    }

    /// The feedback for a response with `status` and `headers` received at
    /// `now`, under the default [`Classifier`].
    pub fn from_parts(status: StatusCode, headers: &HeaderMap, now: SystemTime) -> Self {
        Self::from_verdict(&Classifier::new().classify(status, headers, now))
    }

    /// [`from_parts`](Feedback::from_parts) of an `http::Response`.
    pub fn from_response<B>(response: &Response<B>, now: SystemTime) -> Self {
        Self::from_parts(response.status(), response.headers(), now)
    }
}

/// Reads the status and rate-limit headers of responses
/// (`http::Response`, and `reqwest::Response` with the `reqwest` feature)
/// with [`Feedback::from_verdict`].
///
/// Its clock (default [`SystemTime::now`]) is what HTTP-dates and Unix
/// times in responses without a `Date` header are measured against.
#[derive(Clone, Copy, Debug)]
pub struct HttpFeedback {
    classifier: Classifier,
    clock: fn() -> SystemTime,
}

impl HttpFeedback {
    /// The default [`Classifier`] and the system clock.
    #[must_use]
    pub fn new() -> Self {
        Self {
            classifier: Classifier::new(),
            clock: SystemTime::now,
        }
    }

    /// Judges responses with `classifier` (keep it the one the retry
    /// policy uses).
    #[must_use]
    pub fn classifier(mut self, classifier: Classifier) -> Self {
        self.classifier = classifier;
        self
    }

    /// The wall clock for hints in responses without a `Date`; for tests.
    #[must_use]
    pub fn clock(mut self, clock: fn() -> SystemTime) -> Self {
        self.clock = clock;
        self
    }

    /// The feedback for a response with `status` and `headers`.
    pub fn feedback(&self, status: StatusCode, headers: &HeaderMap) -> Feedback {
        Feedback::from_verdict(&self.classifier.classify(status, headers, (self.clock)()))
    }
}

impl Default for HttpFeedback {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "tower")]
impl<B> crate::Classify<Response<B>> for HttpFeedback {
    fn classify(&self, response: &Response<B>) -> Option<Feedback> {
        Some(self.feedback(response.status(), response.headers()))
    }
}

#[cfg(all(feature = "tower", feature = "reqwest"))]
impl crate::Classify<reqwest::Response> for HttpFeedback {
    fn classify(&self, response: &reqwest::Response) -> Option<Feedback> {
        Some(self.feedback(response.status(), response.headers()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn response(status: u16, headers: &[(&str, &str)]) -> Feedback {
        let mut builder = Response::builder().status(status);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let now = UNIX_EPOCH + Duration::from_secs(1_792_152_840);
        Feedback::from_response(&builder.body(()).expect("response"), now)
    }

    #[test]
    fn statuses() {
        assert_eq!(response(200, &[]), Feedback::success());
        assert_eq!(response(404, &[]), Feedback::success());
        assert_eq!(response(429, &[]), Feedback::throttled());
        assert_eq!(response(503, &[]), Feedback::neutral());
        assert_eq!(response(408, &[]), Feedback::neutral());
        assert_eq!(response(500, &[("retry-after", "3")]), Feedback::neutral());
        assert_eq!(
            response(503, &[("retry-after", "3")]),
            Feedback::throttled().retry_after(Duration::from_secs(3))
        );
        // The same rule as the retry policy: a reset alone makes a 503 no
        // throttle (before, the retrier said "rate limited" here and the
        // limiter did not slow down).
        assert_eq!(
            response(503, &[("x-ratelimit-reset", "30")]),
            Feedback::neutral()
        );
    }

    #[test]
    fn hints_and_quotas() {
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(
            response(
                429,
                &[
                    ("date", date),
                    ("retry-after", "Sun, 06 Nov 1994 08:50:07 GMT")
                ]
            ),
            Feedback::throttled().retry_after(Duration::from_secs(30))
        );
        assert_eq!(
            response(429, &[("x-ratelimit-reset", "20")]),
            Feedback::throttled().retry_after(Duration::from_secs(20))
        );
        assert_eq!(
            response(429, &[("retry-after-ms", "1500")]),
            Feedback::throttled().retry_after(Duration::from_millis(1500))
        );
        assert_eq!(
            response(
                200,
                &[("x-ratelimit-remaining", "7"), ("x-ratelimit-reset", "30")]
            ),
            Feedback::success().quota(7, Duration::from_secs(30))
        );
        // Garbage is ignored, never an error.
        assert_eq!(
            response(429, &[("retry-after", "soon")]),
            Feedback::throttled()
        );
        assert_eq!(
            response(
                200,
                &[("x-ratelimit-remaining", "-1"), ("x-ratelimit-reset", "30")]
            ),
            Feedback::success()
        );
    }
}

//! Feedback read from HTTP responses (feature `http`).

use std::time::{Duration, SystemTime};

use http::header::{HeaderMap, HeaderName, DATE};
use http::{Response, StatusCode};
use steadfast_backoff::hint;

use crate::limiter::Feedback;

const REMAINING: [&str; 2] = ["ratelimit-remaining", "x-ratelimit-remaining"];
const RESET: [&str; 2] = ["ratelimit-reset", "x-ratelimit-reset"];

impl Feedback {
    /// What an HTTP response says about the rate:
    ///
    /// * `429`, or `503` with a `Retry-After`: [`throttled`](Feedback::throttled),
    ///   with the delay from `Retry-After` (seconds or HTTP-date, against
    ///   the response's `Date`) or else from the `RateLimit` /
    ///   `RateLimit-Reset` / `X-RateLimit-Reset` headers;
    /// * other `5xx`: [`neutral`](Feedback::neutral) (a server error says
    ///   nothing about the rate);
    /// * anything else: [`success`](Feedback::success);
    /// * on any of them, `RateLimit-Remaining` / `X-RateLimit-Remaining`
    ///   with a reset header become a [`quota`](Feedback::quota).
    ///
    /// Malformed headers are ignored.
    ///
    /// ```
    /// use steadfast_ratelimit::Feedback;
    ///
    /// let response = http::Response::builder()
    ///     .status(429)
    ///     .header("retry-after", "12")
    ///     .body(())?;
    /// let feedback = Feedback::from_response(&response);
    /// assert!(feedback.is_throttled());
    /// assert_eq!(feedback, Feedback::throttled().retry_after(std::time::Duration::from_secs(12)));
    /// # Ok::<(), http::Error>(())
    /// ```
    pub fn from_response<B>(response: &Response<B>) -> Self {
        Self::from_parts(response.status(), response.headers())
    }

    /// [`from_response`](Feedback::from_response) from the status and the
    /// headers.
    pub fn from_parts(status: StatusCode, headers: &HeaderMap) -> Self {
        let now = SystemTime::now();
        let reference = headers
            .get(DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .unwrap_or(now);
        let hinted = || hint::from_headers(headers, now).map(|h| h.delay);
        let has_retry_after = headers.contains_key(http::header::RETRY_AFTER);
        let mut feedback = if status == StatusCode::TOO_MANY_REQUESTS
            || (status == StatusCode::SERVICE_UNAVAILABLE && has_retry_after)
        {
            let throttled = Self::throttled();
            match hinted() {
                Some(delay) => throttled.retry_after(delay),
                None => throttled,
            }
        } else if status.is_server_error() {
            Self::neutral()
        } else {
            Self::success()
        };
        if let Some((remaining, reset)) = quota(headers, reference) {
            feedback = feedback.quota(remaining, reset);
        }
        feedback
    }
}

/// `remaining` and time to reset from the draft and `X-` headers.
fn quota(headers: &HeaderMap, reference: SystemTime) -> Option<(u64, Duration)> {
    let remaining = REMAINING.iter().find_map(|name| {
        let value = headers.get(HeaderName::from_static(name))?;
        value.to_str().ok()?.trim().parse::<u64>().ok()
    })?;
    let reset = RESET.iter().find_map(|name| {
        let value = headers.get(HeaderName::from_static(name))?;
        hint::reset(value, reference)
    })?;
    (reset <= hint::MAX_PLAUSIBLE).then_some((remaining, reset))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, headers: &[(&str, &str)]) -> Feedback {
        let mut builder = Response::builder().status(status);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        Feedback::from_response(&builder.body(()).expect("response"))
    }

    #[test]
    fn statuses() {
        assert_eq!(response(200, &[]), Feedback::success());
        assert_eq!(response(404, &[]), Feedback::success());
        assert_eq!(response(429, &[]), Feedback::throttled());
        assert_eq!(response(503, &[]), Feedback::neutral());
        assert_eq!(response(500, &[("retry-after", "3")]), Feedback::neutral());
        assert_eq!(
            response(503, &[("retry-after", "3")]),
            Feedback::throttled().retry_after(Duration::from_secs(3))
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

//! Parsers for the headers in which servers say when to come back.
//!
//! Every function here is total: a malformed, negative, non-ASCII,
//! overflowing or absurdly large value is ignored (with a `debug` event),
//! never a panic and never a failed request.
//!
//! | header | forms understood |
//! |---|---|
//! | `Retry-After` | delay-seconds; HTTP-date as IMF-fixdate, RFC 850 and asctime (RFC 9110 §10.2.3) |
//! | `RateLimit` | the structured field's `t` parameter (IETF draft -11); with several policies, the longest `t` among those with `r=0` |
//! | `RateLimit-Reset` | delta-seconds (IETF drafts up to -06) |
//! | `X-RateLimit-Reset` | delta-seconds, or a Unix time in seconds or milliseconds |
//!
//! Dates are measured against the response's own `Date` header when it has
//! one (so a skewed local clock does not matter), and against the caller's
//! clock otherwise. `Retry-After` takes precedence, as RFC 9110 and the
//! RateLimit draft say, then `RateLimit`, `RateLimit-Reset` and
//! `X-RateLimit-Reset`.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use http::HeaderMap;
//! use steadfast_backoff::hint;
//!
//! let mut headers = HeaderMap::new();
//! headers.insert("date", "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap());
//! headers.insert("retry-after", "Sun, 06 Nov 1994 08:50:37 GMT".parse().unwrap());
//! let hint = hint::from_headers(&headers, SystemTime::now()).unwrap();
//! assert_eq!(hint.delay, Duration::from_secs(60));
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{HeaderMap, HeaderName, HeaderValue, DATE, RETRY_AFTER};

use crate::policy::{Hint, HintSource};

/// Hints beyond this are treated as garbage and ignored; hints below it but
/// above a retrier's ceiling fail fast with a "come back later" error.
pub const MAX_PLAUSIBLE: Duration = Duration::from_secs(366 * 86_400);

/// Unix times from here on (2001-09-09) are told apart from delays: nobody
/// asks to wait 31 years.
const EPOCH_SECONDS_FROM: u64 = 1_000_000_000;
/// ... and from here on they are milliseconds.
const EPOCH_MILLIS_FROM: u64 = 1_000_000_000_000;

/// The server's hint in `headers`, by precedence, measured against the
/// response's `Date` header or else `now`.
pub fn from_headers(headers: &HeaderMap, now: SystemTime) -> Option<Hint> {
    let reference = || response_date(headers).unwrap_or(now);
    let hint = |delay, source| Some(Hint { delay, source });
    if let Some(v) = headers.get(RETRY_AFTER) {
        if let Some(d) = checked(RETRY_AFTER.as_str(), v, retry_after(v, reference())) {
            return hint(d, HintSource::RetryAfter);
        }
    }
    if let Some(v) = headers.get("ratelimit") {
        if let Some(d) = checked("ratelimit", v, ratelimit_field(v)) {
            return hint(d, HintSource::RateLimit);
        }
    }
    for (name, source) in [
        ("ratelimit-reset", HintSource::RateLimitReset),
        ("x-ratelimit-reset", HintSource::XRateLimitReset),
    ] {
        if let Some(v) = headers.get(HeaderName::from_static(name)) {
            if let Some(d) = checked(name, v, reset(v, reference())) {
                return hint(d, source);
            }
        }
    }
    None
}

fn checked(name: &str, value: &HeaderValue, parsed: Option<Duration>) -> Option<Duration> {
    match parsed {
        Some(d) if d <= MAX_PLAUSIBLE => Some(d),
        _ => {
            tracing::debug!(target: "steadfast_backoff", header = name, ?value, "ignoring malformed server hint");
            None
        }
    }
}

/// The response's `Date`, if it has a valid one.
fn response_date(headers: &HeaderMap) -> Option<SystemTime> {
    let value = headers.get(DATE)?.to_str().ok()?;
    httpdate::parse_http_date(value.trim()).ok()
}

/// `Retry-After`: delay-seconds, or an HTTP-date in any of the three RFC
/// 9110 forms measured against `reference` (a date in the past means now).
pub fn retry_after(value: &HeaderValue, reference: SystemTime) -> Option<Duration> {
    let text = value.to_str().ok()?.trim_matches([' ', '\t']);
    if let Some(secs) = digits(text) {
        return Some(Duration::from_secs(secs));
    }
    let date = httpdate::parse_http_date(text).ok()?;
    Some(date.duration_since(reference).unwrap_or_default())
}

/// `RateLimit-Reset` / `X-RateLimit-Reset`: delta-seconds, or a Unix time in
/// seconds or milliseconds (told apart by size), measured against
/// `reference`.
pub fn reset(value: &HeaderValue, reference: SystemTime) -> Option<Duration> {
    let text = value.to_str().ok()?.trim_matches([' ', '\t']);
    let n = digits(text)?;
    let at = if n >= EPOCH_MILLIS_FROM {
        Duration::from_millis(n)
    } else if n >= EPOCH_SECONDS_FROM {
        Duration::from_secs(n)
    } else {
        return Some(Duration::from_secs(n));
    };
    let reference = reference.duration_since(UNIX_EPOCH).ok()?;
    Some(at.saturating_sub(reference))
}

/// The structured `RateLimit` field: `"name";r=0;t=30, ...` (RFC 8941
/// list). The longest `t` among the policies with no quota left (`r=0`), or
/// among all when none says so.
pub fn ratelimit_field(value: &HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?;
    let mut exhausted: Option<u64> = None;
    let mut any: Option<u64> = None;
    for member in split_top_level(text, ',') {
        let mut params = split_top_level(member, ';').skip(1);
        let (mut t, mut r) = (None, None);
        for param in params.by_ref() {
            let (key, val) = param.split_once('=').unwrap_or((param, ""));
            match key.trim() {
                "t" => t = Some(digits(val.trim())?),
                "r" => r = Some(digits(val.trim())?),
                _ => {}
            }
        }
        if let Some(t) = t {
            any = any.max(Some(t));
            if r == Some(0) {
                exhausted = exhausted.max(Some(t));
            }
        }
    }
    exhausted.or(any).map(Duration::from_secs)
}

/// Splits at `sep` outside double-quoted strings (with `\` escapes).
fn split_top_level(text: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let s = rest?;
        let (mut quoted, mut escaped) = (false, false);
        for (i, c) in s.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                c if c == sep && !quoted => {
                    rest = Some(&s[i + c.len_utf8()..]);
                    return Some(&s[..i]);
                }
                _ => {}
            }
        }
        rest = None;
        Some(s)
    })
}

/// A non-empty run of ASCII digits that fits a `u64`: no sign, no space, no
/// fraction.
fn digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    /// 1994-11-06 08:49:37 UTC, the RFC's example date.
    fn rfc_example() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(784_111_777)
    }

    #[test]
    fn retry_after_in_every_form() {
        let now = rfc_example();
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(retry_after(&hv("120"), now), secs(120));
        assert_eq!(retry_after(&hv(" 7\t"), now), secs(7));
        assert_eq!(retry_after(&hv("396749"), now), secs(396_749));
        // IMF-fixdate, RFC 850 and asctime, each a minute later.
        assert_eq!(
            retry_after(&hv("Sun, 06 Nov 1994 08:50:37 GMT"), now),
            secs(60)
        );
        assert_eq!(
            retry_after(&hv("Sunday, 06-Nov-94 08:50:37 GMT"), now),
            secs(60)
        );
        assert_eq!(retry_after(&hv("Sun Nov  6 08:50:37 1994"), now), secs(60));
        // A date in the past means "now".
        assert_eq!(
            retry_after(&hv("Sun, 06 Nov 1994 08:00:00 GMT"), now),
            secs(0)
        );
    }

    #[test]
    fn garbage_is_ignored() {
        let now = rfc_example();
        for bad in [
            "",
            "-5",
            "+5",
            "1.5",
            "5s",
            "soon",
            "0x10",
            "99999999999999999999999",
            "Sun, 32 Nov 1994 08:50:37 GMT",
            "Sun, 06 Nov 1994 25:50:37 GMT",
        ] {
            assert_eq!(retry_after(&hv(bad), now), None, "{bad:?}");
        }
        let non_ascii = HeaderValue::from_bytes("5 €".as_bytes()).unwrap();
        assert_eq!(retry_after(&non_ascii, now), None);
    }

    #[test]
    fn reset_tells_delays_from_epoch_seconds_and_millis() {
        let now = UNIX_EPOCH + Duration::from_secs(1_792_152_840);
        assert_eq!(reset(&hv("60"), now), Some(Duration::from_secs(60)));
        assert_eq!(reset(&hv("1792152900"), now), Some(Duration::from_secs(60)));
        assert_eq!(
            reset(&hv("1792152900500"), now),
            Some(Duration::from_millis(60_500))
        );
        assert_eq!(
            reset(&hv("1792152000"), now),
            Some(Duration::ZERO),
            "past reset"
        );
        assert_eq!(reset(&hv("-1"), now), None);
    }

    #[test]
    fn ratelimit_structured_field() {
        let d = |s| ratelimit_field(&hv(s));
        assert_eq!(d(r#""default";r=0;t=30"#), Some(Duration::from_secs(30)));
        assert_eq!(
            d(r#""burst";r=5;t=1, "day";r=0;t=3600"#),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            d(r#""a";r=3;t=10, "b";r=4;t=20"#),
            Some(Duration::from_secs(20))
        );
        assert_eq!(d(r#""quo;ted,name";r=0;t=9"#), Some(Duration::from_secs(9)));
        assert_eq!(d(r#""x";r=0"#), None);
        assert_eq!(d(r#""x";t=-3"#), None);
        assert_eq!(d("garbage"), None);
    }

    #[test]
    fn precedence_and_date_reference() {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-reset", hv("50"));
        h.insert("ratelimit-reset", hv("40"));
        let local = rfc_example();
        assert_eq!(
            from_headers(&h, local).unwrap().source,
            HintSource::RateLimitReset
        );
        h.insert("ratelimit", hv(r#""p";r=0;t=30"#));
        assert_eq!(
            from_headers(&h, local).unwrap().source,
            HintSource::RateLimit
        );
        // A skewed local clock (an hour fast) does not matter when the
        // response carries its own Date.
        h.insert(RETRY_AFTER, hv("Sun, 06 Nov 1994 08:49:47 GMT"));
        h.insert(DATE, hv("Sun, 06 Nov 1994 08:49:37 GMT"));
        let hint = from_headers(&h, local + Duration::from_secs(3600)).unwrap();
        assert_eq!(
            hint,
            Hint {
                delay: Duration::from_secs(10),
                source: HintSource::RetryAfter
            }
        );
        // A malformed Retry-After falls through to the next header.
        h.insert(RETRY_AFTER, hv("later"));
        assert_eq!(
            from_headers(&h, local).unwrap().source,
            HintSource::RateLimit
        );
        // An absurd hint is ignored.
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, hv("99999999999"));
        assert_eq!(from_headers(&h, local), None);
    }
}

//! Parsers for the headers in which servers say when to come back and how
//! much quota is left.
//!
//! Every function here is total: a malformed, negative, non-ASCII,
//! overflowing or absurdly large value is ignored (with a `debug` event),
//! never a panic and never a failed request.
//!
//! | header | forms understood |
//! |---|---|
//! | `retry-after-ms`, `x-ms-retry-after-ms`, `x-amz-retry-after`, `grpc-retry-pushback-ms` | milliseconds, integer or decimal |
//! | `Retry-After` | delay-seconds; HTTP-date as IMF-fixdate, RFC 850 and asctime (RFC 9110 §10.2.3) |
//! | `RateLimit` | the structured field (IETF draft -08 on): a list of policies `"name";r=0;t=30`, the longest `t` among those with `r=0`; and the older dictionary `limit=100, remaining=0, reset=30` |
//! | `RateLimit-Reset`, `X-RateLimit-Reset` | delta-seconds, a Unix time in seconds or milliseconds (told apart by size), with or without a fraction, or a duration string |
//! | `X-RateLimit-Reset-After` | seconds, with a fraction |
//! | `x-ratelimit-reset-requests`, `x-ratelimit-reset-tokens` | duration strings: `6m0s`, `1.5s`, `20ms`, `1h2m` |
//! | `RateLimit-Remaining`, `X-RateLimit-Remaining`, `x-ratelimit-remaining-requests` | a count, for [`quota`] |
//!
//! Dates and Unix times are measured against the response's own `Date`
//! header when it has one (so a skewed local clock does not matter), and
//! against the caller's `now` otherwise.
//!
//! Two kinds of hint are told apart: a *retry-after* hint (the first row
//! and `Retry-After`) says when to come back; a *reset* hint (the others)
//! says when a quota window ends, and means "come back then" only when the
//! server throttled the request. [`from_headers`] takes the first of
//! either, in the order of the table; the [`Classifier`](crate::Classifier)
//! uses a reset only for throttled responses.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use http::HeaderMap;
//! use steadfast_http::hint;
//!
//! let mut headers = HeaderMap::new();
//! headers.insert("date", "Sun, 06 Nov 1994 08:49:37 GMT".parse()?);
//! headers.insert("retry-after", "Sun, 06 Nov 1994 08:50:37 GMT".parse()?);
//! let hint = hint::from_headers(&headers, SystemTime::now()).ok_or("no hint")?;
//! assert_eq!(hint.delay, Duration::from_secs(60));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{HeaderMap, HeaderValue, DATE, RETRY_AFTER};

use crate::{Hint, HintSource};

/// Hints beyond this are treated as garbage and ignored; hints below it but
/// above a retrier's ceiling fail fast with a "come back later" error.
pub const MAX_PLAUSIBLE: Duration = Duration::from_secs(366 * 86_400);

/// Unix times from here on (2001-09-09) are told apart from delays: nobody
/// asks to wait 31 years.
const EPOCH_SECONDS_FROM: u64 = 1_000_000_000;
/// ... and from here on they are milliseconds.
const EPOCH_MILLIS_FROM: u64 = 1_000_000_000_000;

/// The millisecond headers, most precise first: servers that send one of
/// these send `Retry-After` rounded up to whole seconds beside it.
const MILLIS: [(&str, HintSource); 4] = [
    ("retry-after-ms", HintSource::RetryAfterMs),
    ("x-ms-retry-after-ms", HintSource::XMsRetryAfterMs),
    ("x-amz-retry-after", HintSource::XAmzRetryAfter),
    ("grpc-retry-pushback-ms", HintSource::GrpcRetryPushback),
];

/// The reset headers after `RateLimit`, by precedence.
const RESETS: [(&str, HintSource); 3] = [
    ("ratelimit-reset", HintSource::RateLimitReset),
    ("x-ratelimit-reset-after", HintSource::XRateLimitResetAfter),
    ("x-ratelimit-reset", HintSource::XRateLimitReset),
];

/// OpenAI's pairs: remaining and reset, per resource.
const OPENAI: [(&str, &str); 2] = [
    (
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
    ),
    ("x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"),
];

/// The server's hint in `headers`: the first retry-after hint, else the
/// first reset hint, measured against the response's `Date` or else `now`.
pub fn from_headers(headers: &HeaderMap, now: SystemTime) -> Option<Hint> {
    let reference = reference(headers, now);
    retry_hint(headers, reference).or_else(|| reset_hint(headers, reference))
}

/// The time against which a response's dates are measured: its `Date`
/// header if valid, else `now`.
pub fn reference(headers: &HeaderMap, now: SystemTime) -> SystemTime {
    headers
        .get(DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v.trim()).ok())
        .unwrap_or(now)
}

/// The first valid hint that says when to come back: the millisecond
/// headers, then `Retry-After`. `reference` is the response's time (see
/// [`reference()`]).
pub fn retry_hint(headers: &HeaderMap, reference: SystemTime) -> Option<Hint> {
    for (name, source) in MILLIS {
        if let Some(hint) = header(headers, name, source, millis) {
            return Some(hint);
        }
    }
    header(headers, RETRY_AFTER.as_str(), HintSource::RetryAfter, |v| {
        retry_after(v, reference)
    })
}

/// The first valid hint that says when a quota window resets: `RateLimit`,
/// `RateLimit-Reset`, `X-RateLimit-Reset-After`, `X-RateLimit-Reset`, then
/// the longest of OpenAI's per-resource resets.
pub fn reset_hint(headers: &HeaderMap, reference: SystemTime) -> Option<Hint> {
    if let Some(hint) = header(headers, "ratelimit", HintSource::RateLimit, ratelimit_field) {
        return Some(hint);
    }
    for (name, source) in RESETS {
        if let Some(hint) = header(headers, name, source, |v| reset(v, reference)) {
            return Some(hint);
        }
    }
    OPENAI
        .iter()
        .filter_map(|(_, name)| {
            header(headers, name, HintSource::XRateLimitResetRequests, |v| {
                reset(v, reference)
            })
        })
        .max_by_key(|hint| hint.delay)
}

/// One header, parsed and checked for plausibility.
fn header(
    headers: &HeaderMap,
    name: &str,
    source: HintSource,
    parse: impl Fn(&HeaderValue) -> Option<Duration>,
) -> Option<Hint> {
    let value = headers.get(name)?;
    match parse(value) {
        Some(delay) if delay <= MAX_PLAUSIBLE => Some(Hint { delay, source }),
        _ => {
            tracing::debug!(target: "steadfast_http", header = name, ?value, "ignoring malformed server hint");
            None
        }
    }
}

/// `Retry-After`: delay-seconds, or an HTTP-date in any of the three RFC
/// 9110 forms measured against `reference` (a date in the past means now).
pub fn retry_after(value: &HeaderValue, reference: SystemTime) -> Option<Duration> {
    let text = trimmed(value)?;
    if let Some(secs) = digits(text) {
        return Some(Duration::from_secs(secs));
    }
    let date = httpdate::parse_http_date(text).ok()?;
    Some(date.duration_since(reference).unwrap_or_default())
}

/// A delay in milliseconds, integer or decimal (`1500`, `1500.5`).
pub fn millis(value: &HeaderValue) -> Option<Duration> {
    let (whole, nanos) = decimal(trimmed(value)?, 1_000_000)?;
    Duration::from_millis(whole).checked_add(Duration::from_nanos(nanos))
}

/// `RateLimit-Reset` / `X-RateLimit-Reset` / `-Reset-After`: delta-seconds
/// or a Unix time in seconds or milliseconds (told apart by size), with an
/// optional fraction, measured against `reference`; or a duration string
/// (`6m0s`).
pub fn reset(value: &HeaderValue, reference: SystemTime) -> Option<Duration> {
    let text = trimmed(value)?;
    let Some((whole, nanos)) = decimal(text, 1_000_000_000) else {
        return duration_string(text);
    };
    let at = if whole >= EPOCH_MILLIS_FROM {
        Duration::from_millis(whole).checked_add(Duration::from_nanos(nanos / 1_000))?
    } else if whole >= EPOCH_SECONDS_FROM {
        Duration::new(whole, nanos as u32)
    } else {
        return Some(Duration::new(whole, nanos as u32));
    };
    let reference = reference.duration_since(UNIX_EPOCH).ok()?;
    Some(at.saturating_sub(reference))
}

/// A duration string as Go prints them: one or more decimal numbers, each
/// with a unit `h`, `m`, `s`, `ms`, `us` (or `µs`) or `ns`: `6m0s`, `1.5s`,
/// `20ms`, `1h2m3s`.
pub fn duration_string(text: &str) -> Option<Duration> {
    let mut rest = text;
    let mut total = Duration::ZERO;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let nanos_per_unit: u64 = match unit {
            "h" => 3_600_000_000_000,
            "m" => 60_000_000_000,
            "s" => 1_000_000_000,
            "ms" => 1_000_000,
            "us" | "µs" => 1_000,
            "ns" => 1,
            _ => return None,
        };
        let (whole, frac_nanos) = decimal(number, 1_000_000_000)?;
        // frac_nanos are billionths of one unit.
        let nanos = u128::from(whole) * u128::from(nanos_per_unit)
            + u128::from(frac_nanos) * u128::from(nanos_per_unit) / 1_000_000_000;
        let secs = u64::try_from(nanos / 1_000_000_000).ok()?;
        let part = Duration::new(secs, (nanos % 1_000_000_000) as u32);
        total = total.checked_add(part)?;
        rest = tail;
    }
    Some(total)
}

/// One policy of a structured `RateLimit` field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimitPolicy {
    /// The policy's name (`"default"`), empty in the dictionary form.
    pub name: String,
    /// Quota units left (`r`, or `remaining`), if valid.
    pub remaining: Option<u64>,
    /// Time until the quota resets (`t`, or `reset`), if valid.
    pub reset: Option<Duration>,
}

/// The policies of a structured `RateLimit` field.
///
/// Both forms the drafts have used are understood: the list of draft -08
/// on (`"burst";r=5;t=1, "day";r=0;t=3600`, RFC 8941) and the dictionary
/// of the earlier drafts (`limit=100, remaining=0, reset=30`, one policy).
/// A malformed parameter drops only that parameter: `"a";r=0;t=-3` keeps
/// `r=0`, and the policies beside it are unaffected.
pub fn ratelimit_policies(value: &HeaderValue) -> Vec<RateLimitPolicy> {
    let Ok(text) = value.to_str() else {
        return Vec::new();
    };
    let members: Vec<&str> = split_top_level(text, ',').map(str::trim).collect();
    let is_dictionary = members.iter().any(|m| {
        let key = m.split(['=', ';']).next().unwrap_or("").trim();
        matches!(key, "limit" | "remaining" | "reset")
    });
    if is_dictionary {
        let mut policy = RateLimitPolicy {
            name: String::new(),
            remaining: None,
            reset: None,
        };
        for member in members {
            let (key, val) = member.split_once('=').unwrap_or((member, ""));
            // Parameters after the value (`limit=100;w=60`) are ignored.
            let val = val.split(';').next().unwrap_or("").trim();
            match key.trim() {
                "remaining" => policy.remaining = digits(val),
                "reset" => policy.reset = digits(val).map(Duration::from_secs),
                _ => {}
            }
        }
        return vec![policy];
    }
    members
        .into_iter()
        .filter(|m| !m.is_empty())
        .map(|member| {
            let mut parts = split_top_level(member, ';');
            let name = parts
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches('"')
                .to_owned();
            let mut policy = RateLimitPolicy {
                name,
                remaining: None,
                reset: None,
            };
            for param in parts {
                let (key, val) = param.split_once('=').unwrap_or((param, ""));
                let val = val.trim();
                match key.trim() {
                    "r" => policy.remaining = digits(val),
                    "t" => policy.reset = digits(val).map(Duration::from_secs),
                    _ => {}
                }
            }
            policy
        })
        .collect()
}

/// The `RateLimit` field's delay: the longest reset among the policies with
/// no quota left (`r=0`), or among all when none says so.
pub fn ratelimit_field(value: &HeaderValue) -> Option<Duration> {
    let policies = ratelimit_policies(value);
    let exhausted = policies
        .iter()
        .filter(|p| p.remaining == Some(0))
        .filter_map(|p| p.reset)
        .max();
    exhausted.or_else(|| policies.iter().filter_map(|p| p.reset).max())
}

/// Quota left and time to its reset, from the first source that has both:
/// the `RateLimit` field (the policy with the least left), then
/// `RateLimit-Remaining` / `X-RateLimit-Remaining` with their reset
/// headers, then OpenAI's per-resource pairs (the scarcer one). Measured
/// against the response's `Date` or else `now`.
pub fn quota(headers: &HeaderMap, now: SystemTime) -> Option<(u64, Duration)> {
    // The `Date` header is parsed only if a reset needs it (a Unix time),
    // and once.
    let date = std::cell::OnceCell::new();
    let reference = || *date.get_or_init(|| reference(headers, now));
    let plausible = |(remaining, reset): (u64, Duration)| {
        (reset <= MAX_PLAUSIBLE).then_some((remaining, reset))
    };
    if let Some(value) = headers.get("ratelimit") {
        let least = ratelimit_policies(value)
            .into_iter()
            .filter_map(|p| Some((p.remaining?, p.reset?)))
            .filter_map(plausible)
            .min_by_key(|&(remaining, reset)| (remaining, std::cmp::Reverse(reset)));
        if least.is_some() {
            return least;
        }
    }
    let count = |name: &str| digits(trimmed(headers.get(name)?)?);
    let remaining = count("ratelimit-remaining").or_else(|| count("x-ratelimit-remaining"));
    if let Some(remaining) = remaining {
        let reset = RESETS
            .iter()
            .find_map(|(name, _)| reset(headers.get(*name)?, reference()));
        if let Some(quota) = reset.map(|reset| (remaining, reset)).and_then(plausible) {
            return Some(quota);
        }
    }
    OPENAI
        .iter()
        .filter_map(|(remaining, reset_name)| {
            let remaining = count(remaining)?;
            let reset = reset(headers.get(*reset_name)?, reference())?;
            plausible((remaining, reset))
        })
        .min_by_key(|&(remaining, reset)| (remaining, std::cmp::Reverse(reset)))
}

/// The value as text, without surrounding spaces and tabs.
fn trimmed(value: &HeaderValue) -> Option<&str> {
    Some(value.to_str().ok()?.trim_matches([' ', '\t']))
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

/// `123` or `123.456`: the whole part and the fraction in units of
/// `1 / scale` (truncated past nine digits).
fn decimal(text: &str, scale: u64) -> Option<(u64, u64)> {
    let (whole, frac) = match text.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (text, None),
    };
    let whole = digits(whole)?;
    let Some(frac) = frac else {
        return Some((whole, 0));
    };
    if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut value: u64 = 0;
    let mut unit = scale;
    for b in frac.bytes().take(9) {
        unit /= 10;
        value += u64::from(b - b'0') * unit;
    }
    Some((whole, value))
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

    fn secs(s: u64) -> Option<Duration> {
        Some(Duration::from_secs(s))
    }

    fn ms(m: u64) -> Option<Duration> {
        Some(Duration::from_millis(m))
    }

    #[test]
    fn retry_after_in_every_form() {
        let now = rfc_example();
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
        for bad in ["", "-1", "1e3", "1.", ".5", "12ms", "１２"] {
            assert_eq!(millis(&hv(bad)), None, "{bad:?}");
        }
        for bad in ["", "6m0", "m", "5x", "1..5s", "-1s", "1h-2m", "5 s"] {
            assert_eq!(duration_string(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn millisecond_headers() {
        assert_eq!(millis(&hv("1500")), ms(1500));
        assert_eq!(millis(&hv("0")), ms(0));
        assert_eq!(millis(&hv("2.5")), Some(Duration::from_micros(2500)));
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, hv("2"));
        h.insert("retry-after-ms", hv("1500"));
        assert_eq!(
            from_headers(&h, rfc_example()),
            Some(Hint {
                delay: Duration::from_millis(1500),
                source: HintSource::RetryAfterMs
            }),
            "the precise header wins over its rounded twin"
        );
        let mut h = HeaderMap::new();
        h.insert("x-amz-retry-after", hv("250"));
        assert_eq!(
            from_headers(&h, rfc_example()).map(|h| (h.delay, h.source)),
            Some((Duration::from_millis(250), HintSource::XAmzRetryAfter))
        );
        let mut h = HeaderMap::new();
        h.insert("x-ms-retry-after-ms", hv("soon"));
        h.insert(RETRY_AFTER, hv("3"));
        assert_eq!(
            from_headers(&h, rfc_example()).map(|h| h.source),
            Some(HintSource::RetryAfter),
            "a malformed header falls through to the next"
        );
    }

    #[test]
    fn duration_strings() {
        assert_eq!(duration_string("6m0s"), secs(360));
        assert_eq!(duration_string("1s"), secs(1));
        assert_eq!(duration_string("20ms"), ms(20));
        assert_eq!(duration_string("1.5s"), ms(1500));
        assert_eq!(duration_string("1h2m3s"), secs(3723));
        assert_eq!(duration_string("2m59.5s"), ms(179_500));
        assert_eq!(duration_string("7us"), Some(Duration::from_micros(7)));
        assert_eq!(duration_string("7µs"), Some(Duration::from_micros(7)));
        assert_eq!(duration_string("99999999999999999999h"), None);
    }

    #[test]
    fn reset_tells_delays_from_epoch_seconds_and_millis() {
        let now = UNIX_EPOCH + Duration::from_secs(1_792_152_840);
        assert_eq!(reset(&hv("60"), now), secs(60));
        assert_eq!(reset(&hv("1792152900"), now), secs(60));
        assert_eq!(reset(&hv("1792152900500"), now), ms(60_500));
        assert_eq!(reset(&hv("1792152900.25"), now), ms(60_250));
        assert_eq!(reset(&hv("1.234"), now), ms(1234));
        assert_eq!(reset(&hv("6m0s"), now), secs(360));
        assert_eq!(reset(&hv("1792152000"), now), secs(0), "past reset");
        assert_eq!(reset(&hv("-1"), now), None);
    }

    #[test]
    fn ratelimit_structured_field() {
        let d = |s| ratelimit_field(&hv(s));
        assert_eq!(d(r#""default";r=0;t=30"#), secs(30));
        assert_eq!(d(r#""burst";r=5;t=1, "day";r=0;t=3600"#), secs(3600));
        assert_eq!(d(r#""a";r=3;t=10, "b";r=4;t=20"#), secs(20));
        assert_eq!(d(r#""quo;ted,name";r=0;t=9"#), secs(9));
        assert_eq!(d(r#""x";r=0"#), None);
        assert_eq!(d(r#""x";t=-3"#), None);
        assert_eq!(d("garbage"), None);
        // The older dictionary form.
        assert_eq!(d("limit=100, remaining=0, reset=30"), secs(30));
        assert_eq!(d("limit=100, remaining=0, reset=soon"), None);
    }

    #[test]
    fn a_bad_ratelimit_parameter_drops_only_itself() {
        let policies = ratelimit_policies(&hv(r#""a";r=0;t=-3, "b";r=2;t=30, "c";r=x;t=5"#));
        assert_eq!(
            policies,
            vec![
                RateLimitPolicy {
                    name: "a".into(),
                    remaining: Some(0),
                    reset: None
                },
                RateLimitPolicy {
                    name: "b".into(),
                    remaining: Some(2),
                    reset: secs(30)
                },
                RateLimitPolicy {
                    name: "c".into(),
                    remaining: None,
                    reset: secs(5)
                },
            ]
        );
        // Before: the bad `t` of "a" threw the whole header away.
        assert_eq!(
            ratelimit_field(&hv(r#""a";r=0;t=-3, "b";r=0;t=30"#)),
            secs(30)
        );
        let mut h = HeaderMap::new();
        h.insert("ratelimit", hv(r#""a";r=0;t=-3, "b";r=2;t=30"#));
        assert_eq!(quota(&h, rfc_example()), Some((2, Duration::from_secs(30))));
    }

    #[test]
    fn quotas() {
        let now = UNIX_EPOCH + Duration::from_secs(1_792_152_840);
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-remaining", hv("7"));
        h.insert("x-ratelimit-reset", hv("1792152870"));
        assert_eq!(quota(&h, now), Some((7, Duration::from_secs(30))));
        h.insert("x-ratelimit-remaining", hv("-1"));
        assert_eq!(quota(&h, now), None);

        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-remaining-requests", hv("59"));
        h.insert("x-ratelimit-reset-requests", hv("1s"));
        h.insert("x-ratelimit-remaining-tokens", hv("0"));
        h.insert("x-ratelimit-reset-tokens", hv("6m0s"));
        assert_eq!(quota(&h, now), Some((0, Duration::from_secs(360))));
        assert_eq!(
            reset_hint(&h, now),
            Some(Hint {
                delay: Duration::from_secs(360),
                source: HintSource::XRateLimitResetRequests
            })
        );
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

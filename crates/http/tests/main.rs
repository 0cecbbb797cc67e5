//! The classifier's table: statuses × headers, and no header value panics it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use proptest::prelude::*;
use steadfast_http::{Classifier, HintSource, Quota};

/// 2026-10-16 09:34:00 UTC.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_792_152_840)
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            )
        })
        .collect()
}

/// (throttled, retryable, hint delay in ms and source, quota)
type Row = (bool, bool, Option<(u64, HintSource)>, Option<(u64, u64)>);

/// Header pairs.
type Pairs<'a> = &'a [(&'a str, &'a str)];

fn row(status: u16, pairs: &[(&str, &str)]) -> Row {
    let v = Classifier::new().classify(
        StatusCode::from_u16(status).unwrap(),
        &headers(pairs),
        now(),
    );
    (
        v.is_throttled(),
        v.is_retryable(),
        v.hint().map(|h| (h.delay.as_millis() as u64, h.source)),
        v.quota()
            .map(|Quota { remaining, reset }| (remaining, reset.as_secs())),
    )
}

#[test]
fn statuses_by_headers() {
    use HintSource as S;
    let none: &[(&str, &str)] = &[];
    let retry_after: &[(&str, &str)] = &[("retry-after", "7")];
    let ms: &[(&str, &str)] = &[("retry-after", "2"), ("retry-after-ms", "1500")];
    let reset_only: &[(&str, &str)] = &[("x-ratelimit-reset", "30")];
    let exhausted: &[(&str, &str)] = &[
        ("x-ratelimit-remaining", "0"),
        ("x-ratelimit-reset", "1792152900"),
    ];
    let structured: &[(&str, &str)] = &[("ratelimit", r#""burst";r=3;t=1, "day";r=0;t=3600"#)];
    let go: &[(&str, &str)] = &[
        ("x-ratelimit-remaining-requests", "0"),
        ("x-ratelimit-reset-requests", "6m0s"),
    ];
    let garbage: &[(&str, &str)] = &[("retry-after", "soon"), ("x-ratelimit-reset", "-3")];

    let table: &[(u16, Pairs<'_>, Row)] = &[
        (200, none, (false, false, None, None)),
        (200, exhausted, (false, false, None, Some((0, 60)))),
        (304, retry_after, (false, false, None, None)),
        (404, none, (false, false, None, None)),
        (404, retry_after, (false, false, None, None)),
        (400, structured, (false, false, None, Some((0, 3600)))),
        (429, none, (true, true, None, None)),
        (
            429,
            retry_after,
            (true, true, Some((7000, S::RetryAfter)), None),
        ),
        (429, ms, (true, true, Some((1500, S::RetryAfterMs)), None)),
        (
            429,
            reset_only,
            (true, true, Some((30_000, S::XRateLimitReset)), None),
        ),
        (
            429,
            exhausted,
            (
                true,
                true,
                Some((60_000, S::XRateLimitReset)),
                Some((0, 60)),
            ),
        ),
        (
            429,
            structured,
            (true, true, Some((3_600_000, S::RateLimit)), Some((0, 3600))),
        ),
        (
            429,
            go,
            (
                true,
                true,
                Some((360_000, S::XRateLimitResetRequests)),
                Some((0, 360)),
            ),
        ),
        (429, garbage, (true, true, None, None)),
        (503, none, (false, true, None, None)),
        (
            503,
            retry_after,
            (true, true, Some((7000, S::RetryAfter)), None),
        ),
        (
            503,
            &[("x-amz-retry-after", "250")],
            (true, true, Some((250, S::XAmzRetryAfter)), None),
        ),
        // The bug this crate fixes: a 503 with only a reset is a server
        // error, not a throttle, and the reset is no "come back" hint.
        (503, reset_only, (false, true, None, None)),
        (503, garbage, (false, true, None, None)),
        (
            500,
            retry_after,
            (false, true, Some((7000, S::RetryAfter)), None),
        ),
        (502, none, (false, true, None, None)),
        (504, none, (false, true, None, None)),
        (408, none, (false, true, None, None)),
        (501, none, (false, false, None, None)),
        (403, none, (false, false, None, None)),
        // GitHub: primary limit (remaining 0), secondary (Retry-After).
        (
            403,
            exhausted,
            (
                true,
                true,
                Some((60_000, S::XRateLimitReset)),
                Some((0, 60)),
            ),
        ),
        (
            403,
            retry_after,
            (true, true, Some((7000, S::RetryAfter)), None),
        ),
    ];
    for (status, pairs, want) in table {
        assert_eq!(&row(*status, pairs), want, "{status} {pairs:?}");
    }
}

#[test]
fn configured_sets() {
    let s = |n| StatusCode::from_u16(n).unwrap();
    let c = Classifier::new()
        .retry_statuses([500])
        .unwrap()
        .throttle_on_403(false);
    let h = headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "9")]);
    assert!(!c.classify(s(403), &h, now()).is_retryable());
    assert!(!c.classify(s(502), &HeaderMap::new(), now()).is_retryable());
    assert!(c.classify(s(500), &HeaderMap::new(), now()).is_retryable());
    // A throttle is retried whatever the set says.
    assert!(c.classify(s(429), &HeaderMap::new(), now()).is_retryable());
}

#[test]
fn dates_are_read_against_the_response() {
    let h = headers(&[
        ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ("retry-after", "Sun, 06 Nov 1994 08:50:37 GMT"),
    ]);
    // The local clock is 32 years off; the response's Date is used.
    let v = Classifier::new().classify(StatusCode::TOO_MANY_REQUESTS, &h, now());
    assert_eq!(v.hint().map(|h| h.delay), Some(Duration::from_secs(60)));
    assert_eq!(
        v.to_string(),
        "HTTP 429: throttled, come back in 60s (Retry-After)"
    );
}

const NAMES: [&str; 17] = [
    "retry-after",
    "retry-after-ms",
    "x-ms-retry-after-ms",
    "x-amz-retry-after",
    "grpc-retry-pushback-ms",
    "ratelimit",
    "ratelimit-reset",
    "ratelimit-remaining",
    "x-ratelimit-reset",
    "x-ratelimit-reset-after",
    "x-ratelimit-remaining",
    "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-remaining-tokens",
    "date",
    "x-ratelimit-limit",
];

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Anything a header value may hold.
        proptest::collection::vec(prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff], 0..40),
        // Near misses of the real forms.
        "[0-9]{0,25}(\\.[0-9]{0,12})?(h|m|s|ms|us|ns)?([0-9]{1,3}(m|s))?"
            .prop_map(String::into_bytes),
        "(\"[a-z;,]{0,5}\";)?(r|t|limit|remaining|reset)=-?[0-9]{0,22}(, ?[a-z]=[0-9x-]{0,4})*"
            .prop_map(String::into_bytes),
        "(Sun|Mon), [0-9]{1,2} (Nov|Feb) [0-9]{2,5} [0-9:]{0,9} GMT".prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn no_header_value_panics(
        status in 100u16..600,
        pairs in proptest::collection::vec((0..NAMES.len(), value()), 0..6),
        now_secs in 0u64..4_000_000_000,
    ) {
        let mut h = HeaderMap::new();
        for (name, bytes) in pairs {
            if let Ok(v) = HeaderValue::from_bytes(&bytes) {
                h.append(NAMES[name], v);
            }
        }
        let Ok(status) = StatusCode::from_u16(status) else { return Ok(()) };
        let v = Classifier::new().classify(status, &h, UNIX_EPOCH + Duration::from_secs(now_secs));
        // Whatever came in, what comes out is sane.
        if let Some(hint) = v.hint() {
            prop_assert!(hint.delay <= steadfast_http::hint::MAX_PLAUSIBLE);
            prop_assert!(v.is_retryable());
        }
        if let Some(q) = v.quota() {
            prop_assert!(q.reset <= steadfast_http::hint::MAX_PLAUSIBLE);
        }
        prop_assert!(!v.is_throttled() || v.is_retryable());
        prop_assert!(!(v.is_success() && v.is_retryable()));
        let _ = v.to_string();
    }
}

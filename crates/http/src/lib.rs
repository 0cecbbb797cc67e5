#![doc = include_str!("../README.md")]

use std::fmt;
use std::time::Duration;

#[cfg(feature = "http")]
pub mod hint;
#[cfg(feature = "http")]
mod verdict;

#[cfg(feature = "http")]
pub use verdict::{Classifier, InvalidStatus, Quota, Verdict};

/// Which server header a hint came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HintSource {
    /// `Retry-After` (RFC 9110): seconds or an HTTP-date.
    RetryAfter,
    /// `retry-after-ms` (OpenAI, Azure OpenAI): milliseconds.
    RetryAfterMs,
    /// `x-ms-retry-after-ms` (Azure): milliseconds.
    XMsRetryAfterMs,
    /// `x-amz-retry-after` (AWS): milliseconds.
    XAmzRetryAfter,
    /// `grpc-retry-pushback-ms` (gRPC over HTTP): milliseconds.
    GrpcRetryPushback,
    /// The `t` parameter (or `reset` key, in older drafts) of the
    /// structured `RateLimit` field (IETF draft).
    RateLimit,
    /// `RateLimit-Reset` (IETF drafts up to -06).
    RateLimitReset,
    /// `X-RateLimit-Reset-After` (Discord and others): seconds, with a
    /// fraction.
    XRateLimitResetAfter,
    /// `X-RateLimit-Reset` (GitHub, Twitter and others): a delay, or a
    /// Unix time in seconds or milliseconds.
    XRateLimitReset,
    /// `x-ratelimit-reset-requests` / `x-ratelimit-reset-tokens` (OpenAI):
    /// a duration string such as `6m0s`.
    XRateLimitResetRequests,
    /// A hint from a custom policy.
    Other,
}

impl HintSource {
    /// Whether the header says when to come back (`Retry-After` and its
    /// vendor forms), rather than when a quota window resets. A reset is a
    /// hint only when the server throttled the request.
    pub fn is_retry_after(self) -> bool {
        matches!(
            self,
            Self::RetryAfter
                | Self::RetryAfterMs
                | Self::XMsRetryAfterMs
                | Self::XAmzRetryAfter
                | Self::GrpcRetryPushback
        )
    }
}

impl fmt::Display for HintSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::RetryAfter => "Retry-After",
            Self::RetryAfterMs => "retry-after-ms",
            Self::XMsRetryAfterMs => "x-ms-retry-after-ms",
            Self::XAmzRetryAfter => "x-amz-retry-after",
            Self::GrpcRetryPushback => "grpc-retry-pushback-ms",
            Self::RateLimit => "RateLimit",
            Self::RateLimitReset => "RateLimit-Reset",
            Self::XRateLimitResetAfter => "X-RateLimit-Reset-After",
            Self::XRateLimitReset => "X-RateLimit-Reset",
            Self::XRateLimitResetRequests => "x-ratelimit-reset-requests",
            Self::Other => "server hint",
        })
    }
}

/// A server's word on when to come back: a delay counted from when the
/// response arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hint {
    /// How long to wait.
    pub delay: Duration,
    /// The header it came from.
    pub source: HintSource,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_types_are_send_sync_copy() {
        fn check<T: Send + Sync + Copy + fmt::Debug + 'static>() {}
        check::<Hint>();
        check::<HintSource>();
        #[cfg(feature = "http")]
        {
            check::<Verdict>();
            check::<Classifier>();
            check::<Quota>();
        }
    }
}

#![doc = include_str!("../README.md")]

mod budget;
mod error;
mod event;
#[cfg(feature = "http")]
mod http_policy;
#[cfg(feature = "tower")]
pub mod layer;
#[cfg(feature = "reqwest-middleware")]
mod middleware;
mod policy;
mod replay;
#[cfg(feature = "reqwest")]
mod reqwest;
mod retrier;
mod rng;
mod schedule;
#[cfg(feature = "http")]
mod when;

/// The parsers of `Retry-After` and rate-limit headers, from
/// [`steadfast_http`](https://docs.rs/steadfast-http).
#[cfg(feature = "http")]
pub use steadfast_http::hint;

pub use budget::RetryBudget;
pub use error::{AttemptTimedOut, ConfigError, ErrorKind, HumanDuration, NoRetry, RetryError};
pub use event::{DelaySource, RetryEvent, RetryInfo};
#[cfg(feature = "http")]
pub use http_policy::{BoxedErrors, ClassifyError, DefaultErrors, HttpPolicy};
#[cfg(feature = "tower")]
pub use layer::{Retry, RetryLayer};
#[cfg(feature = "reqwest-middleware")]
pub use middleware::{Outcome, RetryMiddleware};
pub use policy::{Action, FailFast, Hint, HintSource, Policy, Reason, RetryErrors};
pub use replay::Replay;
pub use retrier::{retry, HintMode, Retrier, DEFAULT_MAX_RETRY_AFTER};
pub use schedule::{Backoff, Delays, Jitter, Schedule, DEFAULT_CAP, DEFAULT_MAX_RETRIES};
#[cfg(feature = "http")]
pub use when::{HttpOutcome, ResponseParts, When};

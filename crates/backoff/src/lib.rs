#![doc = include_str!("../README.md")]

mod budget;
mod error;
mod event;
#[cfg(feature = "http")]
pub mod hint;
#[cfg(feature = "http")]
mod http_policy;
#[cfg(feature = "tower")]
pub mod layer;
mod policy;
mod replay;
mod retrier;
mod rng;
mod schedule;

pub use budget::RetryBudget;
pub use error::{ConfigError, ErrorKind, HumanDuration, NoRetry, RetryError};
pub use event::{DelaySource, RetryEvent, RetryInfo};
#[cfg(feature = "http")]
pub use http_policy::{BoxedErrors, ClassifyError, DefaultErrors, HttpPolicy};
#[cfg(feature = "tower")]
pub use layer::{Retry, RetryLayer};
pub use policy::{Action, FailFast, Hint, HintSource, Policy, Reason, RetryErrors};
pub use replay::Replay;
pub use retrier::{retry, HintMode, Retrier, DEFAULT_MAX_RETRY_AFTER};
pub use schedule::{Backoff, Delays, Jitter, Schedule, DEFAULT_CAP, DEFAULT_MAX_RETRIES};

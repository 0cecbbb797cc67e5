#![doc = include_str!("../README.md")]

mod adaptive;
mod bucket;
#[cfg(feature = "http")]
mod feedback_http;
#[cfg(feature = "tower")]
mod layer;
mod limiter;
mod rate;
mod status;

pub use bucket::{Acquire, Bucket, Builder, TokenBucket, DEFAULT_MAX_PAUSE};
#[cfg(all(feature = "tower", feature = "http"))]
pub use layer::HttpFeedback;
#[cfg(feature = "tower")]
pub use layer::{Classify, RateLimit, RateLimitLayer, ResponseFuture};
pub use limiter::{AcquireError, Admission, Feedback, Limiter, TryAcquireError};
pub use rate::{Per, Rate, RateError, RateErrorKind};
pub use status::{PauseCause, RateSource, Status};

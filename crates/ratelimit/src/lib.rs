#![doc = include_str!("../README.md")]

mod adaptive;
mod bucket;
mod cell;
#[cfg(feature = "http")]
mod feedback_http;
pub mod gcra;
#[cfg(feature = "tower")]
mod layer;
mod limiter;
#[cfg(feature = "reqwest-middleware")]
mod middleware;
mod rate;
#[cfg(feature = "redis")]
pub mod redis;
mod status;

pub use bucket::{Acquire, Bucket, Builder, TokenBucket, DEFAULT_MAX_PAUSE};
#[cfg(feature = "http")]
pub use feedback_http::HttpFeedback;
#[cfg(feature = "tower")]
pub use layer::{Classify, Flat, RateLimit, RateLimitError, RateLimitLayer, ResponseFuture, Weigh};
pub use limiter::{
    AcquireError, Admission, BackendError, BackendErrorKind, Feedback, LimitFuture, Limiter,
    TryAcquireError,
};
#[cfg(feature = "reqwest-middleware")]
pub use middleware::RateLimitMiddleware;
pub use rate::{Per, Rate, RateError, RateErrorKind};
pub use status::{PauseCause, RateSource, Status, StoreStatus};

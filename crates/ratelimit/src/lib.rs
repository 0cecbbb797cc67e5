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

/// Compile-time checks that the public types are `Send`, `Sync` and
/// `Clone` where a user needs them to be (shared across tasks, moved into
/// spawned futures).
#[allow(dead_code)]
fn _assert_auto_traits() {
    fn send_sync<T: Send + Sync>() {}
    fn send_sync_clone<T: Send + Sync + Clone>() {}
    fn send<T: Send>() {}
    send_sync_clone::<TokenBucket>();
    send_sync::<Bucket>();
    send_sync_clone::<Rate>();
    send_sync_clone::<Status>();
    send_sync_clone::<AcquireError>();
    send_sync_clone::<TryAcquireError>();
    send_sync_clone::<BackendError>();
    send_sync_clone::<Feedback>();
    send::<LimitFuture<'static, Result<Admission, AcquireError>>>();
    send::<Acquire<'static>>();
    send_sync::<std::sync::Arc<dyn Limiter>>();
    #[cfg(feature = "redis")]
    send_sync_clone::<redis::RedisLimiter>();
    #[cfg(feature = "tower")]
    send_sync_clone::<RateLimitLayer<(), Flat>>();
}

//! The reqwest-middleware glue (feature `reqwest-middleware`).

use reqwest_middleware::{Middleware, Next};

use crate::feedback_http::HttpFeedback;
use crate::limiter::Limiter;

/// Rate limiting for `reqwest_middleware::ClientBuilder`: waits for a
/// permit before each request and feeds each response back to the
/// limiter.
///
/// ```
/// use steadfast_ratelimit::{RateLimitMiddleware, TokenBucket};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let limiter = TokenBucket::new("10/s".parse()?);
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(RateLimitMiddleware::new(limiter.clone()))
///     .build();
/// # drop(client);
/// # Ok(())
/// # }
/// ```
///
/// A refusal of the limiter (a bound on the wait or the queue) is a
/// `reqwest_middleware::Error::Middleware` holding the
/// [`AcquireError`](crate::AcquireError).
#[derive(Clone, Debug)]
pub struct RateLimitMiddleware<L> {
    limiter: L,
    feedback: HttpFeedback,
}

impl<L> RateLimitMiddleware<L> {
    /// Limits with `limiter`, which may be shared with other clients.
    pub fn new(limiter: L) -> Self {
        Self {
            limiter,
            feedback: HttpFeedback::new(),
        }
    }

    /// Reads responses with `feedback` (to share a custom classifier with
    /// the retry policy).
    #[must_use]
    pub fn feedback(mut self, feedback: HttpFeedback) -> Self {
        self.feedback = feedback;
        self
    }

    /// The limiter.
    pub fn limiter(&self) -> &L {
        &self.limiter
    }
}

#[async_trait::async_trait]
impl<L: Limiter + 'static> Middleware for RateLimitMiddleware<L> {
    async fn handle(
        &self,
        request: reqwest::Request,
        extensions: &mut http::Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let admission = self
            .limiter
            .acquire(1)
            .await
            .map_err(reqwest_middleware::Error::middleware)?;
        let result = next.run(request, extensions).await;
        if let Ok(response) = &result {
            let feedback = self
                .feedback
                .feedback(response.status(), response.headers());
            self.limiter.feedback(&feedback.sent_at(admission.at));
        }
        result
    }
}

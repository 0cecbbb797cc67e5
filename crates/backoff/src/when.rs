//! Adjusting a policy's verdicts with a closure whose types are inferred.

use std::error::Error as StdError;
use std::fmt;

use http::{HeaderMap, StatusCode};

use crate::error::NoRetry;
use crate::policy::{Action, Policy};

/// One outcome, as a [`When`] closure sees it: the response's status and
/// headers, or the error, the attempt's number and the wrapped policy's
/// verdict.
///
/// It is one concrete type for every client (`http::Response`,
/// `reqwest::Response`), so `|outcome| ...` needs no annotation.
#[derive(Clone, Copy)]
pub struct HttpOutcome<'a> {
    response: Option<(StatusCode, &'a HeaderMap)>,
    error: Option<&'a (dyn StdError + 'static)>,
    verdict: Action,
    attempt: u32,
}

impl<'a> HttpOutcome<'a> {
    /// The response's status, if the attempt got a response.
    pub fn status(&self) -> Option<StatusCode> {
        self.response.map(|(status, _)| status)
    }

    /// The response's headers, if the attempt got a response.
    pub fn headers(&self) -> Option<&'a HeaderMap> {
        self.response.map(|(_, headers)| headers)
    }

    /// The attempt's error, if it failed without a response; walk its
    /// `source()` chain or downcast it as needed.
    pub fn error(&self) -> Option<&'a (dyn StdError + 'static)> {
        self.error
    }

    /// The attempt's number: 1 for the first, 2 for the first retry (0
    /// when the policy is asked outside a driver, through
    /// [`Policy::classify`]).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// What the wrapped policy decided.
    pub fn verdict(&self) -> Action {
        self.verdict
    }
}

impl fmt::Debug for HttpOutcome<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpOutcome")
            .field("status", &self.status())
            .field("error", &self.error.map(ToString::to_string))
            .field("verdict", &self.verdict)
            .field("attempt", &self.attempt)
            .finish()
    }
}

/// A response type whose status and headers a [`When`] closure can read.
pub trait ResponseParts {
    /// The status.
    fn status(&self) -> StatusCode;
    /// The headers.
    fn headers(&self) -> &HeaderMap;
}

impl<B> ResponseParts for http::Response<B> {
    fn status(&self) -> StatusCode {
        http::Response::status(self)
    }
    fn headers(&self) -> &HeaderMap {
        http::Response::headers(self)
    }
}

#[cfg(feature = "reqwest")]
impl ResponseParts for reqwest::Response {
    fn status(&self) -> StatusCode {
        reqwest::Response::status(self)
    }
    fn headers(&self) -> &HeaderMap {
        reqwest::Response::headers(self)
    }
}

/// A policy whose verdicts a closure may override: made by
/// [`HttpPolicy::when`](crate::HttpPolicy::when). The closure returns
/// `Some(action)` to override, `None` to keep the verdict; idempotency
/// checks and [`RetryInfo`](crate::RetryInfo) stay the wrapped policy's.
#[derive(Clone, Copy)]
pub struct When<P, F> {
    pub(crate) policy: P,
    pub(crate) adjust: F,
}

impl<P: fmt::Debug, F> fmt::Debug for When<P, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("When")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl<Req, T, E, P, F> Policy<Req, T, E> for When<P, F>
where
    P: Policy<Req, T, E>,
    T: ResponseParts,
    E: StdError + 'static,
    F: Fn(&HttpOutcome<'_>) -> Option<Action>,
{
    fn classify(&self, outcome: &Result<T, E>) -> Action {
        self.classify_attempt(outcome, 0)
    }

    fn classify_attempt(&self, outcome: &Result<T, E>, attempt: u32) -> Action {
        let verdict = self.policy.classify_attempt(outcome, attempt);
        let view = match outcome {
            Ok(response) => HttpOutcome {
                response: Some((response.status(), response.headers())),
                error: None,
                verdict,
                attempt,
            },
            Err(error) => HttpOutcome {
                response: None,
                error: Some(error),
                verdict,
                attempt,
            },
        };
        (self.adjust)(&view).unwrap_or(verdict)
    }

    fn check_request(&self, request: &Req) -> Result<(), NoRetry> {
        self.policy.check_request(request)
    }

    fn on_done(&self, response: &mut T, retries: u32) {
        self.policy.on_done(response, retries);
    }
}

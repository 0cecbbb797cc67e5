//! reqwest support (feature `reqwest`): replaying `reqwest::Request`s,
//! [`HttpPolicy`] over reqwest's types, and reqwest's error kinds.

use crate::error::NoRetry;
use crate::event::RetryInfo;
use crate::http_policy::{action, ClassifyError, HttpPolicy};
use crate::policy::{Action, Policy, Reason};
use crate::replay::Replay;

impl Replay for reqwest::Request {
    /// `try_clone`: `None` for a streaming body, so a transient failure of
    /// such a request ends with
    /// [`NoRetry::NotReplayable`](crate::NoRetry::NotReplayable).
    fn replay(&self) -> Option<Self> {
        self.try_clone()
    }
}

/// [`HttpPolicy`] for `reqwest::Client` as a tower service (and for
/// [`RetryMiddleware`](crate::RetryMiddleware)): the same verdicts as for
/// `http` types; reqwest's errors are read by their kind (see
/// [`DefaultErrors`](crate::DefaultErrors)).
impl<E, C> Policy<reqwest::Request, reqwest::Response, E> for HttpPolicy<C>
where
    C: ClassifyError<E>,
{
    fn classify(&self, outcome: &Result<reqwest::Response, E>) -> Action {
        match outcome {
            Ok(response) => self.response_action(response.status(), response.headers()),
            Err(error) => self.errors().classify_error(error),
        }
    }

    fn check_request(&self, request: &reqwest::Request) -> Result<(), NoRetry> {
        self.check(request.method(), request.headers())
    }

    fn on_done(&self, response: &mut reqwest::Response, retries: u32) {
        if retries > 0 {
            response.extensions_mut().insert(RetryInfo::new(retries));
        }
    }
}

/// The verdict on a reqwest error, when its kind settles it.
///
/// | kind | verdict |
/// |---|---|
/// | builder (a relative URL, a bad header) | fail: invalid request |
/// | redirect (a loop, too many) | fail |
/// | decode, body | fail |
/// | timeout (reqwest's own, or an I/O timeout below it) | retry: timed out |
/// | connect | retry: connection failed |
/// | status (from `error_for_status`) | the status's verdict |
///
/// Anything else (a request error: the connection closed mid-way, say) is
/// left to the source chain.
pub(crate) fn classify(error: &reqwest::Error) -> Option<Action> {
    if error.is_builder() {
        return Some(Action::fail(Reason::Invalid));
    }
    if error.is_timeout() {
        return Some(Action::retry(Reason::Timeout));
    }
    if error.is_redirect() || error.is_decode() || error.is_body() {
        return Some(Action::fail(Reason::Error));
    }
    if error.is_connect() {
        return Some(Action::retry(Reason::Connection));
    }
    if let Some(status) = error.status() {
        let verdict = steadfast_http::Classifier::new().classify(
            status,
            &http::HeaderMap::new(),
            std::time::UNIX_EPOCH,
        );
        return Some(match action(&verdict) {
            Action::Done => Action::fail(Reason::Status(status.as_u16())),
            retry => retry,
        });
    }
    None
}

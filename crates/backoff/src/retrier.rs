//! The retry configuration, its pure decision core, and the plain async
//! driver.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::budget::RetryBudget;
use crate::error::{ErrorKind, NoRetry, RetryError};
use crate::event::{DelaySource, Notify, RetryEvent};
use crate::policy::{Action, Hint, Policy, Reason, RetryErrors};
use crate::schedule::Backoff;

/// The default ceiling on a server's `Retry-After`: longer waits fail at
/// once with [`ErrorKind::RetryAfterTooLong`].
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(5 * 60);

/// How a server hint combines with the schedule's delay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum HintMode {
    /// Wait the longer of the two: the hint is a floor (the default). A
    /// server that says "1 s" cannot make an overloaded client hammer it,
    /// and one that says "30 s" is obeyed.
    #[default]
    Floor,
    /// Wait exactly what the server says, ignoring the schedule's delay.
    Exact,
    /// Ignore hints (the ceiling still applies).
    Ignore,
}

/// A complete retry configuration: a schedule, a policy and the limits
/// around them.
///
/// Run an async operation with [`run`](Self::run), or wrap a tower service
/// with [`RetryLayer`](crate::RetryLayer) (feature `tower`).
///
/// ```
/// use std::time::Duration;
/// use steadfast_backoff::{Retrier, Schedule};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let retrier = Retrier::new(Schedule::constant(Duration::from_millis(10)).max_retries(3))
///     .on_retry(|event| eprintln!("{event}")); // "request failed, retrying in 10ms"
///
/// let mut calls = 0;
/// let value = retrier
///     .run(|| {
///         calls += 1;
///         let n = calls;
///         async move { if n < 3 { Err(std::io::Error::other("flaky")) } else { Ok(n) } }
///     })
///     .await?;
/// assert_eq!(value, 3);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Retrier<B, P = RetryErrors> {
    pub(crate) backoff: B,
    pub(crate) policy: P,
    max_retry_after: Duration,
    hint_mode: HintMode,
    /// The budget and the hook, rarely set: one pointer, so that copying
    /// the retrier into each call's future stays cheap.
    extras: Option<Arc<Extras>>,
}

#[derive(Clone, Default)]
struct Extras {
    budget: Option<RetryBudget>,
    notify: Option<Notify>,
}

impl<B> Retrier<B> {
    /// A retrier that retries every error along `backoff`.
    pub fn new(backoff: B) -> Self {
        Self {
            backoff,
            policy: RetryErrors,
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
            hint_mode: HintMode::Floor,
            extras: None,
        }
    }
}

impl<B, P> Retrier<B, P> {
    /// Decides with `policy` which outcomes to retry.
    #[must_use]
    pub fn policy<Q>(self, policy: Q) -> Retrier<B, Q> {
        Retrier {
            backoff: self.backoff,
            policy,
            max_retry_after: self.max_retry_after,
            hint_mode: self.hint_mode,
            extras: self.extras,
        }
    }

    /// The longest server hint to obey (default 5 minutes). A longer one
    /// fails at once with [`ErrorKind::RetryAfterTooLong`], which carries
    /// the hint, instead of sleeping for days.
    #[must_use]
    pub fn max_retry_after(mut self, ceiling: Duration) -> Self {
        self.max_retry_after = ceiling;
        self
    }

    /// How hints combine with the schedule (default [`HintMode::Floor`]).
    #[must_use]
    pub fn hint_mode(mut self, mode: HintMode) -> Self {
        self.hint_mode = mode;
        self
    }

    /// Draws every retry from `budget`; when it is spent, the failure ends
    /// with [`ErrorKind::BudgetExhausted`]. Clones of the budget share it.
    #[must_use]
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.extras_mut().budget = Some(budget);
        self
    }

    fn extras_mut(&mut self) -> &mut Extras {
        Arc::make_mut(self.extras.get_or_insert_with(Arc::default))
    }

    fn budget_ref(&self) -> Option<&RetryBudget> {
        self.extras.as_ref()?.budget.as_ref()
    }

    /// Calls `hook` before each retry's sleep, e.g. to show "rate limited,
    /// retrying in 4s" in a progress bar. Keep it quick: it runs inline.
    #[must_use]
    pub fn on_retry(mut self, hook: impl Fn(&RetryEvent) + Send + Sync + 'static) -> Self {
        self.extras_mut().notify = Some(Arc::new(hook));
        self
    }

    /// The schedule.
    pub fn backoff(&self) -> &B {
        &self.backoff
    }

    /// The policy.
    pub fn policy_ref(&self) -> &P {
        &self.policy
    }

    /// Records the start of a request: returns the start instant when the
    /// schedule has an elapsed-time limit (the clock is not read otherwise),
    /// and pays into the budget.
    pub(crate) fn begin(&self) -> Option<Instant>
    where
        B: Backoff,
    {
        if let Some(budget) = self.budget_ref() {
            budget.deposit();
        }
        self.backoff.max_elapsed().map(|_| Instant::now())
    }

    pub(crate) fn announce(&self, event: &RetryEvent) {
        tracing::info!(
            target: "steadfast_backoff",
            attempt = event.retry + 1,
            retry = event.retry,
            delay_ms = event.delay.as_millis() as u64,
            source = %event.source,
            reason = %event.reason,
            "{event}"
        );
        if let Some(notify) = self.extras.as_ref().and_then(|e| e.notify.as_ref()) {
            notify(event);
        }
    }

    /// Runs `operation` until the policy accepts its outcome or retrying
    /// stops, sleeping on the tokio clock between attempts.
    ///
    /// # Errors
    ///
    /// A [`RetryError`] with the last outcome when the policy gives up or a
    /// limit is reached.
    pub async fn run<F, Fut, T, E>(&self, mut operation: F) -> Result<T, RetryError<T, E>>
    where
        B: Backoff,
        P: Policy<(), T, E>,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut attempts = Attempts::new(self.begin());
        let no_retry = self.policy.check_request(&()).err();
        loop {
            let outcome = operation().await;
            let action = self.policy.classify_attempt(&outcome, attempts.retries + 1);
            if action == Action::Done {
                let on_done = |v: &mut T, n| self.policy.on_done(v, n);
                return attempts.finish(self, outcome, on_done);
            }
            match attempts.decide(self, action, no_retry, Instant::now()) {
                Step::Sleep(event) => {
                    self.announce(&event);
                    tokio::time::sleep(event.delay).await;
                }
                Step::Stop(stop) => return Err(attempts.error(self, stop, outcome)),
            }
        }
    }
}

impl<B: fmt::Debug, P: fmt::Debug> fmt::Debug for Retrier<B, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retrier")
            .field("backoff", &self.backoff)
            .field("policy", &self.policy)
            .field("max_retry_after", &self.max_retry_after)
            .field("hint_mode", &self.hint_mode)
            .field("budget", &self.budget_ref())
            .field(
                "on_retry",
                &self
                    .extras
                    .as_ref()
                    .and_then(|e| e.notify.as_ref())
                    .map(|_| "<hook>"),
            )
            .finish()
    }
}

/// Retries `operation` along `backoff` while it returns `Err`.
///
/// The shortest form of [`Retrier::run`]; build a [`Retrier`] for a policy,
/// a hook or a budget.
///
/// ```
/// use std::time::Duration;
/// use steadfast_backoff::{retry, Schedule};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let schedule = Schedule::exponential(Duration::from_millis(100), 2.0).unwrap();
/// let result: Result<(), _> = retry(schedule, || async { Err("down") }).await;
/// let error = result.unwrap_err();
/// assert_eq!(error.retries(), 3);
/// assert_eq!(error.to_string(), "request failed after 3 retries in 700ms; try again later");
/// # }
/// ```
///
/// # Errors
///
/// A [`RetryError`] with the last error once the schedule ends.
pub async fn retry<B, F, Fut, T, E>(backoff: B, operation: F) -> Result<T, RetryError<T, E>>
where
    B: Backoff,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    Retrier::new(backoff).run(operation).await
}

/// What the driver does next.
#[derive(Debug)]
pub(crate) enum Step {
    Sleep(RetryEvent),
    Stop(Stop),
}

#[derive(Debug)]
pub(crate) struct Stop {
    kind: ErrorKind,
    reason: Reason,
    hint: Option<Hint>,
}

/// The state of one operation under a [`Retrier`]: the sans-IO core both
/// drivers share. It reads no clock and sleeps on nothing; it is told the
/// policy's verdict and the time, and answers with the next step.
#[derive(Debug)]
pub(crate) struct Attempts<D> {
    pub(crate) retries: u32,
    started: Option<Instant>,
    /// Made on the first failure, and boxed so that the state of an
    /// operation that never fails stays small.
    delays: Option<Box<D>>,
}

impl<D: Iterator<Item = Duration>> Attempts<D> {
    pub(crate) fn new(started: Option<Instant>) -> Self {
        Self {
            retries: 0,
            started,
            delays: None,
        }
    }

    pub(crate) fn decide<B, P>(
        &mut self,
        retrier: &Retrier<B, P>,
        action: Action,
        no_retry: Option<NoRetry>,
        now: Instant,
    ) -> Step
    where
        B: Backoff<Delays = D>,
    {
        // Without an elapsed-time limit the clock was not read at the
        // start: the first failure starts it.
        self.started.get_or_insert(now);
        let (reason, hint) = match action {
            // Callers handle `Done` first; should one slip through, stopping
            // is the safe answer.
            Action::Done => return self.stop(ErrorKind::Fatal, Reason::Error, None, now),
            Action::Fail { reason } => return self.stop(ErrorKind::Fatal, reason, None, now),
            Action::Retry { reason, hint } => (reason, hint),
        };
        let hint = hint.filter(|_| retrier.hint_mode != HintMode::Ignore);
        if let Some(h) = hint {
            if h.delay > retrier.max_retry_after {
                return self.stop(ErrorKind::RetryAfterTooLong, reason, hint, now);
            }
        }
        if let Some(why) = no_retry {
            return self.stop(ErrorKind::NotRetried(why), reason, hint, now);
        }
        let backoff = &retrier.backoff;
        let Some(scheduled) = self
            .delays
            .get_or_insert_with(|| Box::new(backoff.delays()))
            .next()
        else {
            return self.stop(ErrorKind::Exhausted, reason, hint, now);
        };
        let (delay, source) = match hint {
            Some(h) if retrier.hint_mode == HintMode::Exact || h.delay > scheduled => {
                (h.delay, DelaySource::Server(h.source))
            }
            _ => (scheduled, DelaySource::Backoff),
        };
        if let Some(limit) = backoff.max_elapsed() {
            let started = self.started.unwrap_or(now);
            let ends = now.saturating_duration_since(started).saturating_add(delay);
            if ends > limit {
                let kind = match source {
                    DelaySource::Server(_) => ErrorKind::RetryAfterTooLong,
                    DelaySource::Backoff => ErrorKind::Exhausted,
                };
                return self.stop(kind, reason, hint, now);
            }
        }
        if let Some(budget) = retrier.budget_ref() {
            if !budget.withdraw() {
                return self.stop(ErrorKind::BudgetExhausted, reason, hint, now);
            }
        }
        self.retries += 1;
        Step::Sleep(RetryEvent {
            retry: self.retries,
            reason,
            delay,
            source,
        })
    }

    fn stop(&mut self, kind: ErrorKind, reason: Reason, hint: Option<Hint>, now: Instant) -> Step {
        self.started.get_or_insert(now);
        Step::Stop(Stop { kind, reason, hint })
    }

    /// The result for an outcome the policy accepted. An accepted `Err`
    /// cannot become `Ok`: it ends as [`ErrorKind::Fatal`].
    pub(crate) fn finish<B, P, T, E>(
        &self,
        retrier: &Retrier<B, P>,
        outcome: Result<T, E>,
        on_done: impl FnOnce(&mut T, u32),
    ) -> Result<T, RetryError<T, E>> {
        match outcome {
            Ok(mut value) => {
                on_done(&mut value, self.retries);
                Ok(value)
            }
            Err(e) => {
                let stop = Stop {
                    kind: ErrorKind::Fatal,
                    reason: Reason::Error,
                    hint: None,
                };
                Err(self.error(retrier, stop, Err(e)))
            }
        }
    }

    /// The error for a stop, logged as the final word on the operation.
    pub(crate) fn error<B, P, T, E>(
        &self,
        retrier: &Retrier<B, P>,
        stop: Stop,
        last: Result<T, E>,
    ) -> RetryError<T, E> {
        let elapsed = self.started.map_or(Duration::ZERO, |s| {
            Instant::now().saturating_duration_since(s)
        });
        let mut error = RetryError::new(stop.kind, stop.reason, self.retries, elapsed, last);
        if let Some(hint) = stop
            .hint
            .filter(|_| stop.kind == ErrorKind::RetryAfterTooLong)
        {
            error = error.with_retry_after(hint.delay, retrier.max_retry_after);
        }
        if error.is_recoverable() {
            tracing::warn!(target: "steadfast_backoff", kind = ?stop.kind, retries = self.retries, "giving up: {error}");
        } else {
            tracing::debug!(target: "steadfast_backoff", retries = self.retries, "not retrying: {error}");
        }
        error
    }
}

//! The future of an acquisition that may wait.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::{lock, wake_front_if_due, Booking, Bucket, TARGET};
use crate::limiter::{AcquireError, Admission, TryAcquireError};

/// The future of [`TokenBucket::acquire`](crate::TokenBucket::acquire). Dropping it before it
/// completes hands its slot back.
#[must_use = "futures do nothing unless polled"]
pub struct Acquire<'a> {
    pub(super) shared: &'a Bucket,
    pub(super) n: u32,
    pub(super) state: State,
}

pub(super) enum State {
    Start,
    Waiting {
        id: u64,
        since: u64,
        sleep: Pin<Box<Sleep>>,
    },
    Done,
}

impl Future for Acquire<'_> {
    type Output = Result<Admission, AcquireError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let shared = this.shared;
        let mut fired = false;
        loop {
            match &mut this.state {
                State::Start => {
                    let now = shared.now();
                    match shared.try_admit(this.n, now) {
                        Ok(()) => return this.done(Duration::ZERO),
                        Err(TryAcquireError::Insufficient { requested, burst }) => {
                            this.state = State::Done;
                            return Poll::Ready(Err(AcquireError::Insufficient {
                                requested,
                                burst,
                            }));
                        }
                        Err(TryAcquireError::Wait(_) | TryAcquireError::Backend(_)) => {}
                    }
                    let mut queue = lock(&shared.queue);
                    match shared.book(&mut queue, this.n, now) {
                        Ok(Booking::Now) => {
                            drop(queue);
                            return this.done(Duration::ZERO);
                        }
                        Ok(Booking::Wait { id, ready_at }) => {
                            let position = queue.entries.len() - 1;
                            drop(queue);
                            tracing::debug!(
                                target: TARGET,
                                wait_ms = shared.duration(ready_at - now).as_millis(),
                                position,
                                "waiting for a permit"
                            );
                            this.state = State::Waiting {
                                id,
                                since: now,
                                sleep: Box::pin(tokio::time::sleep_until(shared.instant(ready_at))),
                            };
                        }
                        Err(error) => {
                            drop(queue);
                            this.state = State::Done;
                            tracing::debug!(target: TARGET, %error, "not waiting");
                            return Poll::Ready(Err(error));
                        }
                    }
                }
                State::Waiting { id, since, sleep } => {
                    let mut queue = lock(&shared.queue);
                    let now = shared.now();
                    let Some(position) = queue.entries.iter().position(|e| e.id == *id) else {
                        unreachable!("a waiter stays queued until it completes or is dropped");
                    };
                    let entry = &mut queue.entries[position];
                    if entry.ready_at <= now {
                        if position == 0 {
                            queue.entries.pop_front();
                            wake_front_if_due(&mut queue, now);
                            drop(queue);
                            shared.hot.admitted.fetch_add(u64::from(this.n), Relaxed);
                            shared.waited.fetch_add(1, Relaxed);
                            let waited = shared.duration(now - *since);
                            this.state = State::Done;
                            return Poll::Ready(Ok(Admission {
                                waited,
                                at: shared.instant(now),
                            }));
                        }
                        // Due, but someone ahead is not done yet: the front
                        // wakes us when it completes or leaves.
                        entry.waker = Some(cx.waker().clone());
                        return Poll::Pending;
                    }
                    match &entry.waker {
                        Some(waker) if waker.will_wake(cx.waker()) => {}
                        _ => entry.waker = Some(cx.waker().clone()),
                    }
                    let deadline = shared.instant(entry.ready_at);
                    drop(queue);
                    if sleep.deadline() != deadline {
                        sleep.as_mut().reset(deadline);
                    }
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    if fired {
                        // The timer fired but the slot is not due by our
                        // clock: yield a turn rather than spin.
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    fired = true;
                }
                State::Done => panic!("`Acquire` polled after completion"),
            }
        }
    }
}

impl Acquire<'_> {
    pub(super) fn done(&mut self, waited: Duration) -> Poll<Result<Admission, AcquireError>> {
        self.state = State::Done;
        Poll::Ready(Ok(Admission {
            waited,
            at: Instant::now(),
        }))
    }
}

impl Drop for Acquire<'_> {
    fn drop(&mut self) {
        if let State::Waiting { id, .. } = self.state {
            self.shared.cancel(id);
        }
    }
}

impl fmt::Debug for Acquire<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Start => "start",
            State::Waiting { .. } => "waiting",
            State::Done => "done",
        };
        f.debug_struct("Acquire")
            .field("n", &self.n)
            .field("state", &state)
            .finish()
    }
}

impl Bucket {
    /// The fast path of the trait's acquisitions: a ready answer when the
    /// permits are free now (or never will be), `None` when it must wait.
    pub(super) fn acquire_now(&self, n: u32) -> Option<Result<Admission, AcquireError>> {
        match self.try_admit(n, self.now()) {
            Ok(()) => Some(Ok(Admission {
                waited: Duration::ZERO,
                at: Instant::now(),
            })),
            Err(TryAcquireError::Insufficient { requested, burst }) => {
                Some(Err(AcquireError::Insufficient { requested, burst }))
            }
            Err(_) => None,
        }
    }
}

//! The waiter queue: FIFO reservations on the timeline, hand-backs, and
//! the shift of a pause.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::task::Waker;

use super::{lock, Bucket};
use crate::limiter::AcquireError;

#[derive(Default)]
pub(super) struct Queue {
    pub(super) entries: VecDeque<Entry>,
    pub(super) next_id: u64,
}

pub(super) struct Entry {
    pub(super) id: u64,
    /// When its permits are due, in nanoseconds since `epoch`.
    pub(super) ready_at: u64,
    /// The length of its slot on the timeline (refunded if it leaves).
    pub(super) cost: u64,
    pub(super) waker: Option<Waker>,
}

pub(super) enum Booking {
    Now,
    Wait { id: u64, ready_at: u64 },
}

/// Wakes the first waiter if its slot has come (it may be waiting for
/// the ones ahead of it to finish, to keep the order strict).
pub(super) fn wake_front_if_due(queue: &mut Queue, now: u64) {
    if let Some(front) = queue.entries.front_mut() {
        if front.ready_at <= now {
            if let Some(waker) = front.waker.take() {
                waker.wake();
            }
        }
    }
}

impl Bucket {
    /// Books `n` permits for a waiter: its slot is the next on the
    /// timeline, after every waiter already queued.
    pub(super) fn book(
        &self,
        queue: &mut Queue,
        n: u32,
        now: u64,
    ) -> Result<Booking, AcquireError> {
        let Some((cost, tolerance)) = self.cost(n) else {
            return Err(AcquireError::Insufficient {
                requested: n,
                burst: self.hot.rate.load().burst,
            });
        };
        let ready = self.hot.timeline.book(now, cost, tolerance, |ready| {
            if ready > now {
                let wait = self.duration(ready - now);
                if let Some(max) = self.max_wait.filter(|max| wait > *max) {
                    return Err(AcquireError::WaitTooLong { wait, max });
                }
                if let Some(max) = self.max_waiters.filter(|max| queue.entries.len() >= *max) {
                    return Err(AcquireError::QueueFull { max });
                }
            }
            Ok(())
        })?;
        if ready <= now {
            self.hot.admitted.fetch_add(u64::from(n), Relaxed);
            return Ok(Booking::Now);
        }
        let id = queue.next_id;
        queue.next_id += 1;
        queue.entries.push_back(Entry {
            id,
            ready_at: ready,
            cost,
            waker: None,
        });
        Ok(Booking::Wait {
            id,
            ready_at: ready,
        })
    }

    /// Nothing is admitted before `until`; queued waiters keep their order
    /// and spacing, shifted so the first goes at `until`.
    pub(super) fn pause(&self, until: u64) {
        let mut queue = lock(&self.queue);
        let interval = self.hot.rate.load().interval;
        let burst = u64::from(self.hot.rate.load().burst);
        if let Some(front) = queue.entries.front() {
            let shift = until.saturating_sub(front.ready_at);
            if shift > 0 {
                for entry in &mut queue.entries {
                    entry.ready_at += shift;
                }
                self.hot.timeline.update(|tat| tat + shift);
            }
        }
        // One permit at `until`, then the rate: never the whole burst.
        let floor = until + burst.saturating_sub(1) * interval;
        self.hot.timeline.update(|tat| tat.max(floor));
    }

    /// Removes a waiter that left before its slot: the slot goes back, and
    /// everyone behind moves up by its length.
    pub(super) fn cancel(&self, id: u64) {
        let mut queue = lock(&self.queue);
        let Some(position) = queue.entries.iter().position(|e| e.id == id) else {
            return;
        };
        let Some(entry) = queue.entries.remove(position) else {
            return;
        };
        let now = self.now();
        if entry.ready_at > now {
            self.hot
                .timeline
                .update(|tat| tat.saturating_sub(entry.cost));
            for behind in queue.entries.iter_mut().skip(position) {
                behind.ready_at = behind.ready_at.saturating_sub(entry.cost);
                if let Some(waker) = behind.waker.take() {
                    waker.wake();
                }
            }
        } else if position == 0 {
            wake_front_if_due(&mut queue, now);
        }
    }
}

//! The lock-free words of the bucket's fast path: the rate in force (a
//! seqlock over interval, burst and their product) and GCRA's timeline
//! (one compare-and-swap per admission). Kept apart so that loom can model
//! them: `RUSTFLAGS="--cfg steadfast_loom" cargo test -p steadfast-ratelimit
//! --lib --release loom_`. (Not `--cfg loom`: tokio reads that flag too, and
//! would then want loom itself.)

#[cfg(steadfast_loom)]
use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(not(steadfast_loom))]
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use Ordering::{Acquire, Relaxed, Release};

/// One consistent reading of the rate in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RateNow {
    /// Clock ticks per permit.
    pub(crate) interval: u64,
    pub(crate) burst: u32,
    /// `burst × interval`.
    pub(crate) tolerance: u64,
}

/// The rate in force, readable without a lock and never torn: a reader
/// never sees a new interval with an old tolerance (before, `set_rate`
/// stored three separate atomics, and a reader in between admitted against
/// a mix of the two rates). A sequence lock: the writer makes the sequence
/// odd, stores, makes it even again; a reader retries when the sequence
/// moved under it. Writers must be serialized by the caller (the bucket's
/// control mutex does it).
pub(crate) struct RateCell {
    seq: AtomicU64,
    interval: AtomicU64,
    burst: AtomicU32,
    tolerance: AtomicU64,
}

impl RateCell {
    pub(crate) fn new(interval: u64, burst: u32) -> Self {
        Self {
            seq: AtomicU64::new(0),
            interval: AtomicU64::new(interval),
            burst: AtomicU32::new(burst),
            tolerance: AtomicU64::new(u64::from(burst).saturating_mul(interval)),
        }
    }

    /// The rate in force.
    pub(crate) fn load(&self) -> RateNow {
        loop {
            let before = self.seq.load(Acquire);
            if before & 1 == 0 {
                let now = RateNow {
                    interval: self.interval.load(Relaxed),
                    burst: self.burst.load(Relaxed),
                    tolerance: self.tolerance.load(Relaxed),
                };
                fence(Acquire);
                if self.seq.load(Relaxed) == before {
                    return now;
                }
            }
            spin();
        }
    }

    /// Sets the rate. Callers serialize their calls.
    pub(crate) fn store(&self, interval: u64, burst: u32) {
        let seq = self.seq.load(Relaxed);
        self.seq.store(seq.wrapping_add(1), Relaxed);
        fence(Release);
        self.interval.store(interval, Relaxed);
        self.burst.store(burst, Relaxed);
        self.tolerance
            .store(u64::from(burst).saturating_mul(interval), Relaxed);
        self.seq.store(seq.wrapping_add(2), Release);
    }
}

#[cfg(not(steadfast_loom))]
fn spin() {
    std::hint::spin_loop();
}

#[cfg(steadfast_loom)]
fn spin() {
    loom::thread::yield_now();
}

/// Bits of the admission count kept in the timeline word.
pub(crate) const COUNT_BITS: u32 = 6;
pub(crate) const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
/// The latest arrival time the word holds: 2^58 ticks, about 9 years after
/// the limiter was made.
const MAX_TAT: u64 = u64::MAX >> COUNT_BITS;

/// GCRA's theoretical arrival time (ticks since the limiter's epoch) in
/// the high 58 bits of one word, and the admission count modulo 64 in the
/// low 6, so an admission is one compare-and-swap and no other
/// read-modify-write: the count carries into the bucket's `admitted` once
/// every 64 admissions.
pub(crate) struct Timeline(AtomicU64);

impl Timeline {
    pub(crate) fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    pub(crate) fn pack(tat: u64, count: u64) -> u64 {
        (tat.min(MAX_TAT) << COUNT_BITS) | (count & COUNT_MASK)
    }

    pub(crate) fn tat_of(word: u64) -> u64 {
        word >> COUNT_BITS
    }

    pub(crate) fn load(&self) -> u64 {
        self.0.load(Relaxed)
    }

    /// Sets the arrival time to `f(tat)`, keeping the count.
    pub(crate) fn update(&self, f: impl Fn(u64) -> u64) {
        let _ = self.0.fetch_update(Relaxed, Relaxed, |word| {
            Some(Self::pack(f(Self::tat_of(word)), word))
        });
    }

    /// Admits `n` permits costing `cost` at `now` if the timeline allows:
    /// `Ok(carry)` (admissions to add to the overflow count, a multiple of
    /// 64, usually 0), or `Err(ready)`, when they would be.
    pub(crate) fn admit(&self, n: u32, now: u64, cost: u64, tolerance: u64) -> Result<u64, u64> {
        let mut word = self.load();
        loop {
            let (next, ready) = gcra(word, now, cost, tolerance);
            if ready > now {
                return Err(ready);
            }
            let count = (word & COUNT_MASK) + u64::from(n);
            match self
                .0
                .compare_exchange_weak(word, Self::pack(next, count), Relaxed, Relaxed)
            {
                Ok(_) => return Ok(count & !COUNT_MASK),
                Err(actual) => word = actual,
            }
        }
    }

    /// Books a slot costing `cost` for a waiter, whenever it is (`check`
    /// sees when, and may refuse first): `Ok(ready)`. The count is not
    /// touched: a waiter is counted when it goes.
    pub(crate) fn book<E>(
        &self,
        now: u64,
        cost: u64,
        tolerance: u64,
        check: impl Fn(u64) -> Result<(), E>,
    ) -> Result<u64, E> {
        let mut word = self.load();
        loop {
            let (next, ready) = gcra(word, now, cost, tolerance);
            check(ready)?;
            match self
                .0
                .compare_exchange_weak(word, Self::pack(next, word), Relaxed, Relaxed)
            {
                Ok(_) => return Ok(ready),
                Err(actual) => word = actual,
            }
        }
    }
}

/// GCRA on one word: the new arrival time after `cost`, and when that is
/// allowed (`tolerance` before it).
pub(crate) fn gcra(word: u64, now: u64, cost: u64, tolerance: u64) -> (u64, u64) {
    crate::gcra::reserve(Timeline::tat_of(word), now, cost, tolerance)
}

#[cfg(all(test, steadfast_loom))]
mod loom_models {
    use super::*;
    use loom::sync::Arc;

    /// A reader racing `set_rate` sees the old rate or the new one, never
    /// a mix (tolerance is always burst × interval of one of them).
    #[test]
    fn loom_a_rate_is_never_read_torn() {
        loom::model(|| {
            let cell = Arc::new(RateCell::new(1_000, 10));
            let writer = {
                let cell = Arc::clone(&cell);
                loom::thread::spawn(move || cell.store(50, 2))
            };
            let seen = cell.load();
            let old = RateNow {
                interval: 1_000,
                burst: 10,
                tolerance: 10_000,
            };
            let new = RateNow {
                interval: 50,
                burst: 2,
                tolerance: 100,
            };
            assert!(seen == old || seen == new, "torn read: {seen:?}");
            writer.join().expect("writer");
            assert_eq!(cell.load(), new);
        });
    }

    /// Two threads admitting from a burst of 3 at the same instant: three
    /// admissions in all, never four, whatever the interleaving, and the
    /// count in the word matches.
    #[test]
    fn loom_concurrent_admissions_never_exceed_the_burst() {
        loom::model(|| {
            let timeline = Arc::new(Timeline::new());
            let (interval, tolerance) = (100, 300);
            let now = 1_000;
            let other = {
                let timeline = Arc::clone(&timeline);
                loom::thread::spawn(move || {
                    (0..2)
                        .filter(|_| timeline.admit(1, now, interval, tolerance).is_ok())
                        .count()
                })
            };
            let mine = (0..2)
                .filter(|_| timeline.admit(1, now, interval, tolerance).is_ok())
                .count();
            let total = mine + other.join().expect("other");
            assert_eq!(total, 3);
            let word = timeline.load();
            assert_eq!(word & COUNT_MASK, 3);
            assert_eq!(Timeline::tat_of(word), now + 3 * interval);
        });
    }
}

//! A retry budget: retries as a share of recent requests.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::ConfigError;

/// Number of slots the window is cut into. Old traffic leaves the window one
/// slot (a tenth of it) at a time.
const SLOTS: usize = 10;

/// Caps retries at a share of the requests seen over a sliding window, so
/// that retries cannot multiply the load on a struggling server (the
/// approach of Finagle's and tower's budgets).
///
/// Every request deposits one token's worth of `ratio`; every retry
/// withdraws a whole token. A retry is allowed while
/// `min_per_sec × window + ratio × requests − retries ≥ 1` over the last
/// `window`. The reserve lets a quiet client retry at all.
///
/// The budget is a handle: clones share one account, so one budget can
/// cover every clone of a service, or several services. Its state is a ring
/// of atomic counters: no lock on any path.
///
/// ```
/// use std::time::Duration;
/// use steadfast_backoff::RetryBudget;
///
/// # fn main() -> Result<(), steadfast_backoff::ConfigError> {
/// // Retries may add 20 % to the load, plus 1 retry a second in reserve.
/// let budget = RetryBudget::new(Duration::from_secs(10), 1, 0.2)?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<Inner>,
}

struct Inner {
    origin: Instant,
    slot: Duration,
    /// The reserve, in thousandths of a token.
    reserve_milli: u64,
    /// Tokens per request, in thousandths.
    ratio_milli: u64,
    deposits: [AtomicU64; SLOTS],
    withdrawals: [AtomicU64; SLOTS],
}

impl RetryBudget {
    /// A budget over a sliding `window`, with `min_per_sec` retries a second
    /// always allowed and `ratio` retries per request on top.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] if the window is shorter than 10 ms or longer than a
    /// day, or `ratio` is not within `0.0..=1000.0`.
    pub fn new(window: Duration, min_per_sec: u32, ratio: f64) -> Result<Self, ConfigError> {
        if window < Duration::from_millis(10) || window > Duration::from_secs(86_400) {
            return Err(ConfigError::new(format!(
                "retry budget window {window:?} is invalid; use between 10ms and 1 day, e.g. 10s"
            )));
        }
        if !(ratio.is_finite() && (0.0..=1000.0).contains(&ratio)) {
            return Err(ConfigError::new(format!(
                "retry budget ratio {ratio} is invalid; use a share between 0 and 1000, e.g. 0.2 for 20 %"
            )));
        }
        let reserve_milli =
            (u64::from(min_per_sec) * 1000).saturating_mul(window.as_millis() as u64) / 1000;
        Ok(Self {
            inner: Arc::new(Inner {
                origin: Instant::now(),
                slot: window / SLOTS as u32,
                reserve_milli,
                ratio_milli: (ratio * 1000.0).round() as u64,
                deposits: Default::default(),
                withdrawals: Default::default(),
            }),
        })
    }

    /// Records one request.
    pub fn deposit(&self) {
        let epoch = self.inner.epoch();
        add(&self.inner.deposits, epoch);
    }

    /// Takes one retry from the budget; `false` if none is left.
    pub fn withdraw(&self) -> bool {
        let inner = &self.inner;
        let epoch = inner.epoch();
        if inner.balance_milli(epoch) < 1000 {
            return false;
        }
        add(&inner.withdrawals, epoch);
        true
    }

    /// Retries left right now, rounded down.
    pub fn remaining(&self) -> u64 {
        let inner = &self.inner;
        inner.balance_milli(inner.epoch()).max(0) as u64 / 1000
    }
}

impl Inner {
    /// The index of the current slot since `origin`.
    fn epoch(&self) -> u32 {
        let elapsed = Instant::now().saturating_duration_since(self.origin);
        (elapsed.as_nanos() / self.slot.as_nanos().max(1)) as u32
    }

    fn balance_milli(&self, epoch: u32) -> i64 {
        let deposits = sum(&self.deposits, epoch);
        let withdrawals = sum(&self.withdrawals, epoch);
        let earned = self
            .reserve_milli
            .saturating_add(deposits.saturating_mul(self.ratio_milli));
        earned as i64 - withdrawals.saturating_mul(1000) as i64
    }
}

/// A slot packs the epoch it counts for (high 32 bits) and its count (low
/// 32 bits), so a stale slot is recognised and restarted in one CAS.
fn add(slots: &[AtomicU64; SLOTS], epoch: u32) {
    let slot = &slots[epoch as usize % SLOTS];
    let mut current = slot.load(Ordering::Relaxed);
    loop {
        let next = if (current >> 32) as u32 == epoch {
            current.saturating_add(1).min(current | 0xFFFF_FFFF)
        } else {
            (u64::from(epoch) << 32) | 1
        };
        match slot.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(actual) => current = actual,
        }
    }
}

/// The counts of the slots that belong to the last `SLOTS` epochs.
fn sum(slots: &[AtomicU64; SLOTS], epoch: u32) -> u64 {
    slots
        .iter()
        .map(|slot| slot.load(Ordering::Relaxed))
        .filter(|v| epoch.wrapping_sub((v >> 32) as u32) < SLOTS as u32)
        .map(|v| v & 0xFFFF_FFFF)
        .sum()
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("window", &(self.inner.slot * SLOTS as u32))
            .field("remaining", &self.remaining())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn reserve_then_ratio_then_recovery() {
        let budget = RetryBudget::new(Duration::from_secs(10), 1, 0.5).unwrap();
        // The reserve: 1/s over 10 s.
        assert_eq!(budget.remaining(), 10);
        for _ in 0..10 {
            assert!(budget.withdraw());
        }
        assert!(!budget.withdraw(), "reserve spent");
        // Four requests earn two retries.
        for _ in 0..4 {
            budget.deposit();
        }
        assert!(budget.withdraw());
        assert!(budget.withdraw());
        assert!(!budget.withdraw());
        // Once the window has passed, the spent retries are forgotten.
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(budget.remaining(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn clones_share_one_account() {
        let a = RetryBudget::new(Duration::from_secs(1), 0, 1.0).unwrap();
        let b = a.clone();
        a.deposit();
        assert!(b.withdraw());
        assert!(!a.withdraw());
    }

    #[test]
    fn bad_settings_are_errors() {
        assert!(RetryBudget::new(Duration::ZERO, 1, 0.2).is_err());
        assert!(RetryBudget::new(Duration::from_secs(10), 1, -0.2).is_err());
        assert!(RetryBudget::new(Duration::from_secs(10), 1, f64::NAN).is_err());
    }
}

//! GCRA (the generic cell rate algorithm) as pure functions of its one
//! piece of state, the *theoretical arrival time*, and the time now.
//!
//! Every limiter in this crate decides with these: the local bucket on its
//! atomic word, the Redis backend in its Lua script (whose semantics a
//! property test checks against these functions). Times are in any one unit
//! (the bucket uses clock ticks, the Redis script microseconds).
//!
//! A rate of one permit per `interval` with a burst of `b` has a
//! `tolerance` of `b × interval`: `n` permits cost `n × interval`, and are
//! allowed once the arrival time they would leave is no more than
//! `tolerance` ahead of now.
//!
//! ```
//! use steadfast_ratelimit::gcra;
//!
//! // 10/s (100 ms per permit), burst 2, in milliseconds.
//! let (interval, tolerance) = (100, 200);
//! let first = gcra::decide(0, 1_000, interval, tolerance);
//! let second = gcra::decide(first.tat, 1_000, interval, tolerance);
//! let third = gcra::decide(second.tat, 1_000, interval, tolerance);
//! assert!(first.admitted && second.admitted && !third.admitted);
//! assert_eq!(third.ready_at, 1_100); // one interval later
//! ```

/// What [`decide`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the permits are granted now.
    pub admitted: bool,
    /// The arrival time to keep: advanced by the cost if admitted,
    /// unchanged if not.
    pub tat: u64,
    /// When the permits are (or would have been) allowed.
    pub ready_at: u64,
}

/// Admits permits costing `cost` at `now` if the arrival time `tat`
/// allows, with `tolerance` of burst.
#[must_use]
pub fn decide(tat: u64, now: u64, cost: u64, tolerance: u64) -> Decision {
    let (next, ready_at) = reserve(tat, now, cost, tolerance);
    if ready_at <= now {
        Decision {
            admitted: true,
            tat: next,
            ready_at,
        }
    } else {
        Decision {
            admitted: false,
            tat,
            ready_at,
        }
    }
}

/// Books permits costing `cost` whenever they are allowed (a reservation:
/// the waiter sleeps until `ready_at`): the new arrival time and that
/// instant.
#[must_use]
pub fn reserve(tat: u64, now: u64, cost: u64, tolerance: u64) -> (u64, u64) {
    let next = tat.max(now).saturating_add(cost);
    (next, next.saturating_sub(tolerance))
}

//! Invariants of the token bucket under random use.

use std::time::Duration;

use proptest::prelude::*;
use steadfast_ratelimit::{TokenBucket, TryAcquireError};
use tokio::time::Instant;

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever the pattern of calls: no interval `[a, b]` admits more than
    /// `burst + rate × (b − a)` permits, every `Wait(d)` is honest (after
    /// `d` the same request succeeds), and the counters add up.
    #[test]
    fn no_window_exceeds_burst_plus_rate(
        per_second in 1u32..50,
        burst in 1u32..8,
        ops in prop::collection::vec((0u64..400, 1u32..8), 1..120),
    ) {
        let runtime = paused_runtime();
        let (admissions, admitted) = runtime.block_on(async {
            let rate = format!("{per_second}/s burst {burst}").parse().expect("rate");
            let limiter = TokenBucket::new(rate);
            let start = Instant::now();
            let mut admissions: Vec<(Duration, u32)> = Vec::new();
            for (advance_ms, n) in &ops {
                tokio::time::advance(Duration::from_millis(*advance_ms)).await;
                match limiter.try_acquire(*n) {
                    Ok(()) => admissions.push((Instant::now() - start, *n)),
                    Err(TryAcquireError::Wait(wait)) => {
                        tokio::time::advance(wait).await;
                        limiter.try_acquire(*n).expect("free after the announced wait");
                        admissions.push((Instant::now() - start, *n));
                    }
                    Err(TryAcquireError::Insufficient { requested, burst: b }) => {
                        assert!(requested > b && b == burst);
                    }
                    Err(other) => panic!("unexpected {other:?}"),
                }
            }
            (admissions, limiter.status().admitted)
        });
        let total: u64 = admissions.iter().map(|(_, n)| u64::from(*n)).sum();
        prop_assert_eq!(total, admitted);
        let interval = 1.0 / f64::from(per_second);
        for i in 0..admissions.len() {
            let mut sum = 0u64;
            for j in i..admissions.len() {
                sum += u64::from(admissions[j].1);
                let span = (admissions[j].0 - admissions[i].0).as_secs_f64();
                let allowed = f64::from(burst) + span / interval;
                prop_assert!(
                    sum as f64 <= allowed + 1e-6,
                    "{} permits in {:.3}s, allowed {:.3}", sum, span, allowed
                );
            }
        }
    }
}

//! Schedules: exact sequences, the ADR's bounds, and invariants under
//! proptest.

use std::time::Duration;

use proptest::prelude::*;
use steadfast_backoff::{Backoff, Jitter, Schedule};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn exp(base: f64, factor: f64) -> Schedule {
    Schedule::exponential(secs(base), factor).expect("valid schedule")
}

/// The ADR's schedule, as one expression.
fn adr() -> Schedule {
    Schedule::exponential(Duration::from_secs(1), 2.0)
        .expect("valid factor")
        .jitter(Jitter::proportional(0.5, 1.5).expect("valid range"))
        .max_retries(5)
}

#[test]
fn adr_schedule_stays_in_its_table() {
    let table = [(0.5, 1.5), (1.0, 3.0), (2.0, 6.0), (4.0, 12.0), (8.0, 24.0)];
    let schedule = adr();
    let (mut low_seen, mut high_seen) = ([f64::MAX; 5], [0.0f64; 5]);
    for _ in 0..2_000 {
        let delays: Vec<Duration> = schedule.preview().collect();
        assert_eq!(delays.len(), 5);
        for (i, (d, (low, high))) in delays.iter().zip(table).enumerate() {
            assert!(
                secs(low) <= *d && *d <= secs(high),
                "retry {}: {d:?}",
                i + 1
            );
            low_seen[i] = low_seen[i].min(d.as_secs_f64() / low);
            high_seen[i] = high_seen[i].max(d.as_secs_f64() / high);
        }
    }
    // The draws spread over the whole range, not a corner of it.
    for i in 0..5 {
        assert!(low_seen[i] < 1.02 && high_seen[i] > 0.98, "retry {}", i + 1);
    }
}

/// Golden sequences: a seeded schedule is reproducible, draw for draw. If
/// the generator or the jitter arithmetic changes, these change, and the
/// change must be deliberate.
#[test]
fn seeded_sequences_are_exact() {
    let ms = |v: &[u64]| {
        v.iter()
            .map(|&m| Duration::from_millis(m))
            .collect::<Vec<_>>()
    };
    let run = |jitter| -> Vec<Duration> {
        exp(1.0, 2.0)
            .jitter(jitter)
            .max_retries(5)
            .seed(42)
            .preview()
            .map(|d| Duration::from_millis(d.as_millis() as u64))
            .collect()
    };
    assert_eq!(run(Jitter::None), ms(&[1000, 2000, 4000, 8000, 16000]));
    assert_eq!(run(Jitter::Full), ms(&GOLDEN_FULL));
    assert_eq!(run(Jitter::Equal), ms(&GOLDEN_EQUAL));
    assert_eq!(run(Jitter::Decorrelated), ms(&GOLDEN_DECORRELATED));
    assert_eq!(
        run(Jitter::proportional(0.5, 1.5).unwrap()),
        ms(&GOLDEN_PROPORTIONAL)
    );
    let constant: Vec<_> = Schedule::constant(secs(2.0))
        .max_retries(4)
        .preview()
        .collect();
    assert_eq!(constant, [secs(2.0); 4]);
}

// Checked by hand against the bounds: full in [0, d], equal in [d/2, d],
// decorrelated in [1 s, 3 × previous], proportional in [d/2, 3d/2].
const GOLDEN_FULL: [u64; 5] = [596, 320, 665, 384, 15_693];
const GOLDEN_EQUAL: [u64; 5] = [798, 1_160, 2_332, 4_192, 15_846];
const GOLDEN_DECORRELATED: [u64; 5] = [2_192, 1_894, 1_779, 1_208, 3_574];
const GOLDEN_PROPORTIONAL: [u64; 5] = [1_096, 1_320, 2_665, 4_384, 23_693];

#[test]
fn seeds_reproduce_and_operations_differ() {
    let a = exp(1.0, 2.0).jitter(Jitter::Full).seed(7);
    let b = exp(1.0, 2.0).jitter(Jitter::Full).seed(7);
    let first_a: Vec<_> = a.delays().collect();
    let first_b: Vec<_> = b.delays().collect();
    assert_eq!(first_a, first_b, "same seed, same first operation");
    let second_a: Vec<_> = a.clone().delays().collect();
    assert_ne!(first_a, second_a, "clones share the stream counter");
    let unseeded = exp(1.0, 2.0).jitter(Jitter::Full);
    assert_ne!(
        unseeded.delays().collect::<Vec<_>>(),
        unseeded.delays().collect::<Vec<_>>()
    );
}

#[test]
fn decorrelated_grows_from_base_to_three_times_the_previous() {
    let s = exp(0.1, 1.0)
        .jitter(Jitter::Decorrelated)
        .max_retries(50)
        .cap(secs(30.0))
        .seed(3);
    let mut previous = Duration::ZERO;
    let mut seen_cap = false;
    for (i, d) in s.preview().enumerate() {
        let high = (previous.max(secs(0.1)) * 3).min(secs(30.0));
        assert!(
            secs(0.1) <= d && d <= high,
            "retry {}: {d:?} > {high:?}",
            i + 1
        );
        seen_cap |= d > secs(10.0);
        previous = d;
    }
    assert!(seen_cap, "decorrelated jitter grows on its own");
}

fn jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![
        Just(Jitter::None),
        Just(Jitter::Full),
        Just(Jitter::Equal),
        Just(Jitter::Decorrelated),
        (0.0..3.0f64, 0.0..3.0f64).prop_map(|(a, b)| {
            Jitter::proportional(a.min(b), a.max(b)).expect("ordered range")
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// For any schedule: every delay within its bounds, the cap held, the
    /// sum within the elapsed limit, the count within the retry limit,
    /// nothing panics.
    #[test]
    fn every_delay_within_bounds_and_limits(
        base_ms in 0u64..=1_000_000_000,
        factor in 1.0..64.0f64,
        constant in any::<bool>(),
        cap_ms in proptest::option::of(0u64..=10_000_000_000),
        jitter in jitter(),
        max_retries in 0u32..=1_500,
        max_elapsed_ms in proptest::option::of(0u64..=u64::MAX / 2),
        seed in any::<u64>(),
    ) {
        let base = Duration::from_millis(base_ms);
        let mut s = if constant {
            Schedule::constant(base)
        } else {
            Schedule::exponential(base, factor).unwrap()
        };
        s = s.jitter(jitter).max_retries(max_retries).seed(seed);
        s = match cap_ms {
            Some(c) => s.cap(Duration::from_millis(c)),
            None => s.uncapped(),
        };
        if let Some(limit) = max_elapsed_ms {
            s = s.max_elapsed(Duration::from_millis(limit));
        }
        // The oracle: the documented definitions, computed independently.
        let ns = |d: Duration| d.as_secs() as f64 * 1e9 + f64::from(d.subsec_nanos());
        let to_delay = |x: f64| {
            let d = if x.is_nan() || x <= 0.0 {
                Duration::ZERO
            } else if x >= u64::MAX as f64 {
                Duration::from_nanos(u64::MAX)
            } else {
                Duration::from_nanos(x as u64)
            };
            cap_ms.map_or(d, |c| d.min(Duration::from_millis(c)))
        };
        let base_ns = ns(base);
        let mut plain = base_ns;
        let mut total = Duration::ZERO;
        let mut previous = base_ns;
        let mut count = 0u32;
        for d in s.preview() {
            count += 1;
            let (low, high) = match jitter {
                Jitter::Full => (0.0, plain),
                Jitter::Equal => (plain / 2.0, plain),
                Jitter::Proportional { low, high } => (plain * low, plain * high),
                Jitter::Decorrelated => (base_ns, (previous * 3.0).max(base_ns)),
                _ => (plain, plain),
            };
            let (low, high) = (to_delay(low), to_delay(high));
            prop_assert!(low <= d && d <= high, "retry {count}: {d:?} not in [{low:?}, {high:?}]");
            if let Some(c) = cap_ms {
                prop_assert!(d <= Duration::from_millis(c));
            }
            total = total.saturating_add(d);
            previous = ns(d).max(base_ns);
            if !constant {
                plain *= factor;
            }
        }
        prop_assert!(count <= max_retries);
        if let Some(limit) = max_elapsed_ms {
            prop_assert!(total <= Duration::from_millis(limit));
        }
        if max_elapsed_ms.is_none() {
            prop_assert_eq!(count, max_retries, "without a deadline every retry is scheduled");
        }
    }
}

//! The adaptive controller against simulated servers (steadfast-testkit's
//! `sim`): a token bucket, a strict leaky bucket with and without
//! `Retry-After: 1`, and rates that change mid-run. Over four seeds each,
//! after the first 10 s (30 s after a change): at most 2 % of requests get
//! 429, and goodput is at least 95 % of the server's rate (90 % when each
//! 429 costs a one-second pause).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use steadfast_ratelimit::{Feedback, RateSource, TokenBucket};
use steadfast_testkit::sim::{simulate, Client, Model, Run};
use tokio::time::Instant;

/// The limiter under test, as the simulation's client.
struct Steadfast(TokenBucket);

impl Client for Steadfast {
    fn acquire(&self) -> Pin<Box<dyn Future<Output = Instant> + Send + '_>> {
        Box::pin(async move { self.0.acquire(1).await.expect("acquire").at })
    }

    fn answer(&self, sent: Instant, ok: bool, retry_after: Option<Duration>) {
        let mut feedback = if ok {
            Feedback::success()
        } else {
            Feedback::throttled()
        };
        if let Some(delay) = retry_after {
            feedback = feedback.retry_after(delay);
        }
        self.0.feedback(&feedback.sent_at(sent));
    }
}

const SEEDS: [u64; 4] = [1, 2, 3, 4];

/// Runs the limiter (ceiling `ceiling`) against `model` once per seed,
/// and checks the goal over every window `[from, to)`: at most 2 % of
/// requests throttled and goodput at least `efficiency` of the server's
/// rate. Returns the worst figures.
async fn check(model: &Model, ceiling: &str, run: Run, windows: &[(f64, f64)], efficiency: f64) {
    for seed in SEEDS {
        let limiter = Arc::new(Steadfast(TokenBucket::new(ceiling.parse().expect("rate"))));
        let run = Run { seed, ..run };
        let log = simulate(limiter.clone(), model, &run).await;
        for &(from, to) in windows {
            let share = log.throttled_share(from, to);
            let got = log.efficiency(model, from, to);
            eprintln!(
                "{} seed {seed} [{from}, {to}): 429s {:.2} %, goodput {:.1} %",
                model.name,
                share * 100.0,
                got * 100.0
            );
            assert!(
                share <= 0.02,
                "{} seed {seed}: {:.2} % got 429 in [{from}, {to})",
                model.name,
                share * 100.0
            );
            assert!(
                got >= efficiency,
                "{} seed {seed}: goodput {:.1} % of the server's rate in [{from}, {to})",
                model.name,
                got * 100.0
            );
        }
        let status = limiter.0.status();
        assert_eq!(status.source, RateSource::Adaptation);
        assert!(status.throttled > 0);
    }
}

/// Eight workers, 20 ms + up to 5 ms each way.
fn run(seconds: f64) -> Run {
    Run {
        seconds,
        ..Run::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_strict_server_without_a_hint() {
    // Burst 1, millisecond granularity, 4/s; the caller allows 3× that.
    let model = Model::strict("strict, no hint", 4.0, None);
    check(&model, "12/s", run(300.0), &[(10.0, 300.0)], 0.95).await;
}

#[tokio::test(start_paused = true)]
async fn a_strict_server_with_retry_after_1() {
    let model = Model::strict("strict, Retry-After: 1", 4.0, Some(Duration::from_secs(1)));
    check(&model, "12/s", run(300.0), &[(10.0, 300.0)], 0.90).await;
}

#[tokio::test(start_paused = true)]
async fn a_token_bucket_server() {
    // Half a second's burst, 40/s; the caller allows 100/s.
    let model = Model::token_bucket("token bucket", 40.0, 0.5);
    check(&model, "100/s", run(300.0), &[(10.0, 300.0)], 0.95).await;
}

#[tokio::test(start_paused = true)]
async fn a_server_whose_rate_halves_and_doubles() {
    // Strict, 8/s, then 4/s from 120 s, then 8/s again from 240 s: each
    // phase meets the goal from 30 s after its change.
    let model = Model::strict("halves and doubles", 8.0, None).changing(
        "halves and doubles",
        &[(0.0, 8.0), (120.0, 4.0), (240.0, 8.0)],
    );
    let windows = [(10.0, 120.0), (150.0, 240.0), (270.0, 360.0)];
    // Less jitter than the other runs (2 ms, 1.6 % of the interval at 8/s,
    // against 5 ms, 2 % at 4/s): a client pacing evenly cannot beat
    // 1 − jitter/interval, and 95 % at 8/s with 5 ms is past that.
    let run = Run {
        jitter: Duration::from_millis(2),
        ..run(360.0)
    };
    check(&model, "24/s", run, &windows, 0.95).await;
}

#[tokio::test(start_paused = true)]
async fn a_token_bucket_server_whose_rate_changes() {
    // The simulation this crate started with: 40/s, 20/s, 40/s.
    let model = Model::token_bucket("token bucket 40/20/40", 40.0, 0.5).changing(
        "token bucket 40/20/40",
        &[(0.0, 40.0), (180.0, 20.0), (360.0, 40.0)],
    );
    let windows = [(10.0, 180.0), (210.0, 360.0), (390.0, 540.0)];
    check(&model, "100/s", run(540.0), &windows, 0.95).await;
}

#[tokio::test(start_paused = true)]
async fn never_above_the_ceiling_and_no_climb_while_idle() {
    let limiter = TokenBucket::new("10/s".parse().expect("rate"));
    let start = Instant::now();
    // Busy at the full rate, then one throttle.
    for _ in 0..50 {
        let admission = limiter.acquire(1).await.expect("acquire");
        limiter.feedback(&Feedback::success().sent_at(admission.at));
    }
    limiter.feedback(&Feedback::throttled());
    let cut = limiter.status().effective;
    assert!(cut < 10.0 * 0.75, "cut to {cut}");
    // Now the caller sends one request every two seconds for two minutes,
    // all successful: far below its allowance, so the rate stays put.
    while Instant::now() - start < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let admission = limiter.acquire(1).await.expect("acquire");
        limiter.feedback(&Feedback::success().sent_at(admission.at));
        assert!(limiter.status().effective <= cut + 1e-9);
    }
    // Busy again: it recovers, but never above the ceiling.
    for _ in 0..2_000 {
        let admission = limiter.acquire(1).await.expect("acquire");
        limiter.feedback(&Feedback::success().sent_at(admission.at));
        assert!(limiter.status().effective <= 10.0);
    }
    let status = limiter.status();
    assert_eq!(status.effective, 10.0);
    assert_eq!(status.source, RateSource::Configuration);
}

#[tokio::test(start_paused = true)]
async fn a_throttle_for_a_request_sent_before_the_cut_does_not_cut_again() {
    let limiter = TokenBucket::new("10/s burst 10".parse().expect("rate"));
    let sent = limiter.acquire(1).await.expect("acquire").at;
    tokio::time::advance(Duration::from_millis(10)).await;
    limiter.feedback(&Feedback::throttled().sent_at(sent));
    let once = limiter.status().effective;
    tokio::time::advance(Duration::from_millis(10)).await;
    // Nine more answers to requests sent at the old rate: no further cuts.
    for _ in 0..9 {
        limiter.feedback(&Feedback::throttled().sent_at(sent));
    }
    assert_eq!(limiter.status().effective, once);
    assert_eq!(limiter.status().throttled, 10);
}

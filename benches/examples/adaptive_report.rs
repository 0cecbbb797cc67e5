//! How well the adaptive limiter finds a server's rate, against a plain
//! AIMD limiter, in the same run: per server model, the share of requests
//! answered 429 and the goodput as a share of the server's rate, measured
//! after the first 10 s (and from 30 s after each change of rate).
//!
//! `cargo run --release -p steadfast-benches --example adaptive_report`
//!
//! Simulated on tokio's paused clock (steadfast-testkit's `sim`): eight
//! workers, 20 ms + up to 5 ms of jitter each way, four seeds per model;
//! the figures are the mean over the seeds, and the worst seed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use steadfast_ratelimit::{Feedback, TokenBucket};
use steadfast_testkit::sim::{simulate, Aimd, Client, Model, Run};
use tokio::time::Instant;

/// The limiter under test, as the simulation's client.
struct Steadfast(TokenBucket);

impl Client for Steadfast {
    fn acquire(&self) -> Pin<Box<dyn Future<Output = Instant> + Send + '_>> {
        Box::pin(async move {
            match self.0.acquire(1).await {
                Ok(admission) => admission.at,
                // Unbounded queue and waits: cannot fail here.
                Err(error) => panic!("acquire: {error}"),
            }
        })
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

struct Case {
    model: Model,
    /// The client's ceiling, requests per second.
    ceiling: u32,
    run: Run,
    /// Where the figures are read.
    windows: Vec<(f64, f64)>,
}

#[derive(Default)]
struct Figures {
    share: Vec<f64>,
    goodput: Vec<f64>,
}

impl Figures {
    fn line(&self) -> String {
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let worst_share = self.share.iter().copied().fold(0.0, f64::max);
        let worst_goodput = self.goodput.iter().copied().fold(f64::INFINITY, f64::min);
        format!(
            "429s {:5.2} % (worst {:5.2} %)  goodput {:5.1} % (worst {:5.1} %)",
            mean(&self.share) * 100.0,
            worst_share * 100.0,
            mean(&self.goodput) * 100.0,
            worst_goodput * 100.0
        )
    }
}

async fn measure(case: &Case, make: impl Fn() -> Arc<dyn Client>) -> Figures {
    let mut figures = Figures::default();
    for seed in 1..=4 {
        let run = Run { seed, ..case.run };
        let log = simulate(make(), &case.model, &run).await;
        for &(from, to) in &case.windows {
            figures.share.push(log.throttled_share(from, to));
            figures.goodput.push(log.efficiency(&case.model, from, to));
        }
    }
    figures
}

fn cases() -> Vec<Case> {
    let run = |seconds| Run {
        seconds,
        ..Run::default()
    };
    vec![
        Case {
            model: Model::token_bucket("token bucket 40/s, burst 0.5 s", 40.0, 0.5),
            ceiling: 100,
            run: run(300.0),
            windows: vec![(10.0, 300.0)],
        },
        Case {
            model: Model::token_bucket("token bucket 40 → 20 → 40/s", 40.0, 0.5).changing(
                "token bucket 40 → 20 → 40/s",
                &[(0.0, 40.0), (180.0, 20.0), (360.0, 40.0)],
            ),
            ceiling: 100,
            run: run(540.0),
            windows: vec![(10.0, 180.0), (210.0, 360.0), (390.0, 540.0)],
        },
        Case {
            model: Model::strict("strict 4/s, burst 1, no hint", 4.0, None),
            ceiling: 12,
            run: run(300.0),
            windows: vec![(10.0, 300.0)],
        },
        Case {
            model: Model::strict(
                "strict 4/s, burst 1, Retry-After: 1",
                4.0,
                Some(Duration::from_secs(1)),
            ),
            ceiling: 12,
            run: run(300.0),
            windows: vec![(10.0, 300.0)],
        },
        Case {
            model: Model::strict("strict 8 → 4 → 8/s (2 ms jitter)", 8.0, None).changing(
                "strict 8 → 4 → 8/s (2 ms jitter)",
                &[(0.0, 8.0), (120.0, 4.0), (240.0, 8.0)],
            ),
            ceiling: 24,
            run: Run {
                jitter: Duration::from_millis(2),
                ..run(360.0)
            },
            windows: vec![(10.0, 120.0), (150.0, 240.0), (270.0, 360.0)],
        },
    ]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    println!("adaptive limiters against simulated servers (4 seeds; after 10 s, and 30 s after a change)\n");
    for case in cases() {
        let ceiling = case.ceiling;
        let steadfast = runtime.block_on(measure(&case, || {
            let rate = steadfast_ratelimit::Rate::per_second_n(ceiling).expect("a rate");
            Arc::new(Steadfast(TokenBucket::new(rate)))
        }));
        let aimd = runtime.block_on(measure(&case, || {
            Arc::new(Aimd::new(f64::from(ceiling), 1.0))
        }));
        println!("{} (client ceiling {ceiling}/s)", case.model.name);
        println!("  steadfast  {}", steadfast.line());
        println!("  aimd       {}", aimd.line());
    }
    println!("\naimd: evenly paced, +1/s per second of successes, halved on a 429 (once per round trip), Retry-After honoured as a pause");
}

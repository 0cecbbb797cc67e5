//! A simulated rate-limited server and the clients that hit it, on tokio's
//! clock (run it on the paused clock: a ten-minute run takes milliseconds).
//!
//! The server is one of three models: a token bucket with a burst, a strict
//! leaky bucket (burst 1, millisecond granularity, optionally answering
//! `Retry-After: 1`), either with a rate that changes mid-run. Workers
//! loop: take a permit from the client's limiter, travel to the server
//! (latency with seeded jitter), get an answer, travel back, report it.
//! Everything is seeded: the same seed gives the same run.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::rng::Rng;

/// How the server decides.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// GCRA with a tolerance of `burst` seconds' worth of requests.
    TokenBucket {
        /// Seconds of the rate that may arrive at once.
        burst: f64,
    },
    /// Burst 1: a request is admitted only if the previous admitted one
    /// was at least one interval earlier, in whole milliseconds.
    Strict,
}

/// A server model: its kind, its rate over time, its answer to a throttle.
#[derive(Clone, Debug)]
pub struct Model {
    /// For reports.
    pub name: &'static str,
    /// The admission rule.
    pub kind: Kind,
    /// `(from second, requests per second)`, in order; the first from 0.
    pub phases: Vec<(f64, f64)>,
    /// Sent with every 429.
    pub retry_after: Option<Duration>,
}

impl Model {
    /// A token bucket at `rate` with `burst` seconds' worth of burst.
    pub fn token_bucket(name: &'static str, rate: f64, burst: f64) -> Self {
        Self {
            name,
            kind: Kind::TokenBucket { burst },
            phases: vec![(0.0, rate)],
            retry_after: None,
        }
    }

    /// A strict leaky bucket at `rate`, burst 1.
    pub fn strict(name: &'static str, rate: f64, retry_after: Option<Duration>) -> Self {
        Self {
            name,
            kind: Kind::Strict,
            phases: vec![(0.0, rate)],
            retry_after,
        }
    }

    /// The same model with its rate changing at the given seconds.
    #[must_use]
    pub fn changing(mut self, name: &'static str, phases: &[(f64, f64)]) -> Self {
        self.name = name;
        self.phases = phases.to_vec();
        self
    }

    /// The rate at second `t`.
    pub fn rate_at(&self, t: f64) -> f64 {
        self.phases
            .iter()
            .rev()
            .find(|(from, _)| t >= *from)
            .map_or(self.phases[0].1, |(_, rate)| *rate)
    }
}

/// The server's state: one GCRA timeline, in milliseconds.
struct Server {
    model: Model,
    tat: f64,
}

impl Server {
    /// Whether a request arriving at second `t` is admitted.
    fn admit(&mut self, t: f64) -> bool {
        let ms = (t * 1000.0).floor();
        let interval = 1000.0 / self.model.rate_at(t);
        let tolerance = match self.model.kind {
            Kind::TokenBucket { burst } => burst * 1000.0,
            Kind::Strict => interval,
        };
        let next = self.tat.max(ms) + interval;
        if next - ms <= tolerance + 1e-9 {
            self.tat = next;
            true
        } else {
            false
        }
    }
}

/// What a worker does with its limiter: the limiter under test, or a
/// baseline.
pub trait Client: Send + Sync + 'static {
    /// Waits for a permit; returns when it was granted.
    fn acquire(&self) -> Pin<Box<dyn Future<Output = Instant> + Send + '_>>;
    /// The server's answer to a request sent at `sent`.
    fn answer(&self, sent: Instant, ok: bool, retry_after: Option<Duration>);
}

/// How a run goes.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    /// Requests in flight at most.
    pub workers: usize,
    /// Length of the run.
    pub seconds: f64,
    /// One-way latency, before jitter.
    pub latency: Duration,
    /// Up to this much more, uniformly, each way.
    pub jitter: Duration,
    /// Seeds the jitter.
    pub seed: u64,
}

impl Default for Run {
    fn default() -> Self {
        Self {
            workers: 8,
            seconds: 300.0,
            latency: Duration::from_millis(20),
            jitter: Duration::from_millis(5),
            seed: 1,
        }
    }
}

/// One request as the server saw it.
#[derive(Clone, Copy, Debug)]
pub struct Request {
    /// Seconds since the start, at the server.
    pub at: f64,
    /// Whether it was admitted.
    pub ok: bool,
}

/// Every request of a run, in arrival order.
#[derive(Clone, Debug, Default)]
pub struct Log {
    /// The requests.
    pub requests: Vec<Request>,
}

impl Log {
    fn window(&self, from: f64, to: f64) -> impl Iterator<Item = &Request> {
        self.requests
            .iter()
            .filter(move |r| r.at >= from && r.at < to)
    }

    /// Admitted requests per second in `[from, to)`.
    pub fn goodput(&self, from: f64, to: f64) -> f64 {
        self.window(from, to).filter(|r| r.ok).count() as f64 / (to - from)
    }

    /// The share of requests in `[from, to)` that got a 429 (0 if none were sent).
    pub fn throttled_share(&self, from: f64, to: f64) -> f64 {
        let (mut all, mut throttled) = (0_u32, 0_u32);
        for r in self.window(from, to) {
            all += 1;
            throttled += u32::from(!r.ok);
        }
        if all == 0 {
            0.0
        } else {
            f64::from(throttled) / f64::from(all)
        }
    }

    /// Goodput in `[from, to)` as a share of what the model admits there.
    pub fn efficiency(&self, model: &Model, from: f64, to: f64) -> f64 {
        // The model's capacity over the window, integrated per 10 ms.
        let steps = ((to - from) * 100.0).round().max(1.0);
        let capacity = (0..steps as u64)
            .map(|i| model.rate_at(from + (i as f64 + 0.5) / 100.0))
            .sum::<f64>()
            / steps;
        self.goodput(from, to) / capacity
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `run.workers` workers through `client` against `model` for
/// `run.seconds`, and returns what the server saw. Needs a tokio runtime
/// (current-thread with the paused clock, for exact and fast runs).
pub async fn simulate(client: Arc<dyn Client>, model: &Model, run: &Run) -> Log {
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(run.seconds);
    let server = Arc::new(Mutex::new(Server {
        model: model.clone(),
        tat: 0.0,
    }));
    let log = Arc::new(Mutex::new(Log::default()));
    let rng = Arc::new(Mutex::new(Rng::new(run.seed)));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..run.workers {
        let (client, server, log, rng) = (client.clone(), server.clone(), log.clone(), rng.clone());
        let retry_after = model.retry_after;
        let run = *run;
        workers.spawn(async move {
            let delay = |rng: &Mutex<Rng>| run.latency + run.jitter.mul_f64(lock(rng).unit());
            loop {
                let sent = client.acquire().await;
                if sent >= end {
                    return;
                }
                tokio::time::sleep(delay(&rng)).await;
                let at = (Instant::now() - start).as_secs_f64();
                let ok = lock(&server).admit(at);
                lock(&log).requests.push(Request { at, ok });
                tokio::time::sleep(delay(&rng)).await;
                client.answer(sent, ok, if ok { None } else { retry_after });
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let mut log = std::mem::take(&mut *lock(&log));
    log.requests.sort_by(|a, b| a.at.total_cmp(&b.at));
    log
}

/// A plain AIMD limiter, the baseline: evenly paced at a rate that grows by
/// `increase` per second of successes and halves on a throttle (once per
/// round of requests in flight); honours `Retry-After` as a pause.
pub struct Aimd {
    state: Mutex<AimdState>,
    increase: f64,
}

struct AimdState {
    rate: f64,
    ceiling: f64,
    next: Instant,
    last_cut: Instant,
}

impl Aimd {
    /// Starts at `ceiling` requests per second, and never goes above it.
    pub fn new(ceiling: f64, increase: f64) -> Self {
        let now = Instant::now();
        Self {
            state: Mutex::new(AimdState {
                rate: ceiling,
                ceiling,
                next: now,
                last_cut: now,
            }),
            increase,
        }
    }
}

impl Client for Aimd {
    fn acquire(&self) -> Pin<Box<dyn Future<Output = Instant> + Send + '_>> {
        // No booking ahead: each caller checks the spacing when it wakes,
        // so a cut applies to everyone waiting at once.
        Box::pin(async move {
            loop {
                let next = {
                    let mut state = lock(&self.state);
                    let now = Instant::now();
                    if now >= state.next {
                        state.next = now + Duration::from_secs_f64(1.0 / state.rate);
                        return now;
                    }
                    state.next
                };
                tokio::time::sleep_until(next).await;
            }
        })
    }

    fn answer(&self, sent: Instant, ok: bool, retry_after: Option<Duration>) {
        let mut state = lock(&self.state);
        if ok {
            // Additive: `increase` per second at full use.
            state.rate = (state.rate + self.increase / state.rate).min(state.ceiling);
        } else if sent >= state.last_cut {
            state.rate = (state.rate / 2.0).max(0.01);
            state.last_cut = Instant::now();
        }
        if let Some(delay) = retry_after {
            let until = Instant::now() + delay;
            state.next = state.next.max(until);
        }
    }
}

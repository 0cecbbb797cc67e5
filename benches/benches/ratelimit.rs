//! steadfast-ratelimit against governor and leaky-bucket.
//!
//! Groups (names are read by scripts; keep them):
//! - `ratelimit_try_acquire`: one thread, the allowed path (a rate so high
//!   that every call is admitted): `steadfast` (`TokenBucket::try_acquire`)
//!   vs `governor` (its direct, unkeyed limiter's `check`), both used by
//!   reference (steadfast's `Bucket`, the limiter a `TokenBucket` handle
//!   shares through an `Arc`) and both reading the CPU's time-stamp counter
//!   through quanta (governor's default clock; steadfast's `tsc_clock()`),
//!   so the limiters are compared, not the clocks or the sharing.
//!   `steadfast_tokio_clock` is steadfast's default: a `TokenBucket` on
//!   tokio's clock (`clock_gettime`), which tokio's paused test clock
//!   controls.
//! - `ratelimit_contended`: the same, from two threads on one shared
//!   limiter; time per operation (same clocks and names).
//! - `ratelimit_waiters`: 1,000 tokio tasks each acquiring one permit from
//!   a 1,000/s limiter (burst 1), until the queue is drained: `steadfast`
//!   (`acquire`), `governor` (`until_ready`), `leaky_bucket`
//!   (`acquire_one`). Measured is the process's CPU time (all threads,
//!   governor's timer thread included), not the ~1 s of wall time the
//!   rate dictates. The polls per admitted permit (the wake-ups) are
//!   printed after the group.

use std::future::Future;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use steadfast_ratelimit::{Bucket, TokenBucket};

fn unlimited() -> steadfast_ratelimit::Rate {
    "1000000000/s burst 1000000000".parse().expect("valid rate")
}

/// On the TSC and used by reference, like governor's direct limiter.
fn steadfast_unlimited() -> Bucket {
    TokenBucket::builder(unlimited()).tsc_clock().build_bucket()
}

/// The default: tokio's clock.
fn steadfast_unlimited_tokio_clock() -> TokenBucket {
    TokenBucket::new(unlimited())
}

fn governor_unlimited() -> DefaultDirectRateLimiter {
    RateLimiter::direct(Quota::per_second(NonZeroU32::MAX))
}

fn try_acquire(c: &mut Criterion) {
    let mut group = c.benchmark_group("ratelimit_try_acquire");
    let steadfast = steadfast_unlimited();
    group.bench_function("steadfast", |b| {
        b.iter(|| black_box(steadfast.try_acquire(black_box(1))).is_ok());
    });
    let governor = governor_unlimited();
    group.bench_function("governor", |b| {
        b.iter(|| black_box(governor.check()).is_ok());
    });
    let tokio_clock = steadfast_unlimited_tokio_clock();
    group.bench_function("steadfast_tokio_clock", |b| {
        b.iter(|| black_box(tokio_clock.try_acquire(black_box(1))).is_ok());
    });
    group.finish();
}

/// Runs `op` `iters` times on each of two threads at once and returns the
/// wall time. The callers hand criterion half of it: `2 × iters`
/// operations took that long, so the time per operation is
/// `wall / (2 × iters)`.
fn two_threads(iters: u64, op: &(dyn Fn() + Sync)) -> Duration {
    let barrier = Barrier::new(3);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                barrier.wait();
                for _ in 0..iters {
                    op();
                }
            });
        }
        barrier.wait();
        let start = Instant::now();
        // The scope joins both threads before returning.
        start
    })
    .elapsed()
}

fn contended(c: &mut Criterion) {
    let mut group = c.benchmark_group("ratelimit_contended");
    let steadfast = steadfast_unlimited();
    group.bench_function("steadfast", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, &|| {
                black_box(steadfast.try_acquire(1)).ok();
            }) / 2
        });
    });
    let governor = governor_unlimited();
    group.bench_function("governor", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, &|| {
                black_box(governor.check()).ok();
            }) / 2
        });
    });
    let tokio_clock = steadfast_unlimited_tokio_clock();
    group.bench_function("steadfast_tokio_clock", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, &|| {
                black_box(tokio_clock.try_acquire(1)).ok();
            }) / 2
        });
    });
    group.finish();
}

/// Counts the polls of a future.
struct Counted<F> {
    inner: Pin<Box<F>>,
    polls: Arc<AtomicU64>,
}

impl<F: Future> Future for Counted<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.polls.fetch_add(1, Ordering::Relaxed);
        self.inner.as_mut().poll(cx)
    }
}

const TASKS: usize = 1_000;

/// The process's CPU time so far (every thread).
fn cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Spawns `TASKS` tasks each awaiting `acquire()`, waits for all, and
/// returns the CPU time it took and the polls per task.
fn drain<F, Fut>(runtime: &tokio::runtime::Runtime, acquire: F) -> (Duration, f64)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let polls = Arc::new(AtomicU64::new(0));
    let start = cpu_time();
    runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..TASKS {
            tasks.spawn(Counted {
                inner: Box::pin(acquire()),
                polls: Arc::clone(&polls),
            });
        }
        while tasks.join_next().await.is_some() {}
    });
    let spent = cpu_time() - start;
    (spent, polls.load(Ordering::Relaxed) as f64 / TASKS as f64)
}

fn waiters(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let steadfast = || {
        let limiter = TokenBucket::new("1000/s".parse().expect("rate"));
        move || {
            let limiter = limiter.clone();
            async move {
                limiter.acquire(1).await.expect("admitted");
            }
        }
    };
    let governor = || {
        let limiter = Arc::new(RateLimiter::direct(
            Quota::per_second(NonZeroU32::new(1_000).expect("non-zero"))
                .allow_burst(NonZeroU32::MIN),
        ));
        move || {
            let limiter = Arc::clone(&limiter);
            async move {
                limiter.until_ready().await;
            }
        }
    };
    let leaky_bucket = || {
        let limiter = Arc::new(
            leaky_bucket::RateLimiter::builder()
                .max(1)
                .initial(1)
                .refill(1)
                .interval(Duration::from_millis(1))
                .build(),
        );
        move || {
            let limiter = Arc::clone(&limiter);
            async move {
                limiter.acquire_one().await;
            }
        }
    };

    let mut group = c.benchmark_group("ratelimit_waiters");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(5));
    let mut wakeups = Vec::new();
    macro_rules! contender {
        ($name:literal, $make:expr) => {
            group.bench_function($name, |b| {
                b.iter_custom(|iters| (0..iters).map(|_| drain(&runtime, $make()).0).sum());
            });
            wakeups.push(($name, drain(&runtime, $make()).1));
        };
    }
    contender!("steadfast", steadfast);
    contender!("governor", governor);
    contender!("leaky_bucket", leaky_bucket);
    group.finish();
    for (name, polls) in wakeups {
        eprintln!("ratelimit_waiters/{name}: {polls:.2} polls per admitted permit");
    }
}

criterion_group!(benches, try_acquire, contended, waiters);
criterion_main!(benches);

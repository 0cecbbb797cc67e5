//! The shared limiter's cost per permit, on loopback to a `redis-server`
//! this benchmark starts itself (127.0.0.1, a free port, no persistence):
//!
//! - `ratelimit_redis/steadfast_acquire`: `RedisLimiter::acquire(1)`, one
//!   round trip (the GCRA script), at a rate high enough never to wait;
//! - `ratelimit_redis/steadfast_lease_16`: the same with `.lease(16)`: one
//!   round trip per 16 permits;
//! - `ratelimit_redis/naive_incr_expire`: the fixed window people write by
//!   hand, `INCR` + `EXPIRE` pipelined in one round trip, compared with the
//!   window's limit.
//!
//! Criterion's time per iteration is the time per permit. Needs
//! `redis-server` (`.ci/test` installs it).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use steadfast_ratelimit::redis::RedisLimiter;
use steadfast_ratelimit::Limiter;
use steadfast_testkit::redis::RedisServer;

fn ratelimit_redis(c: &mut Criterion) {
    let server = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let rate = "1000000/s burst 1000000".parse().expect("rate");
    let mut group = c.benchmark_group("ratelimit_redis");
    group.measurement_time(Duration::from_secs(5));

    let limiter = runtime.block_on(async {
        let limiter = RedisLimiter::builder(server.url(), "bench", rate)
            .build()
            .expect("limiter");
        limiter.ping().await.expect("redis answers");
        limiter
    });
    group.bench_function("steadfast_acquire", |b| {
        b.iter(|| {
            runtime.block_on(async { black_box(limiter.acquire(1).await.expect("admitted")) })
        });
    });

    let leased = runtime.block_on(async {
        RedisLimiter::builder(server.url(), "bench-lease", rate)
            .lease(16)
            .build()
            .expect("limiter")
    });
    group.bench_function("steadfast_lease_16", |b| {
        b.iter(|| {
            runtime.block_on(async { black_box(leased.acquire(1).await.expect("admitted")) })
        });
    });

    let mut connection = runtime.block_on(async {
        redis::Client::open(server.url())
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect")
    });
    group.bench_function("naive_incr_expire", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let window = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .expect("after 1970")
                    .as_secs();
                let key = format!("naive:{window}");
                let (count,): (u64,) = redis::pipe()
                    .incr(&key, 1)
                    .expire(&key, 2)
                    .ignore()
                    .query_async(&mut connection)
                    .await
                    .expect("incr");
                black_box(count <= 1_000_000)
            })
        });
    });
    group.finish();
    drop(server);
}

criterion_group!(benches, ratelimit_redis);
criterion_main!(benches);

//! The Redis backend against a real `redis-server` that each test starts
//! on 127.0.0.1 on a free port (steadfast-testkit's `RedisServer`). Time is
//! real here (the server's clock decides): the assertions are the ones a
//! limiter must never break (never faster than the quota, never during a
//! pause), with small allowances for recording, never upper bounds on how
//! long something took.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use steadfast_ratelimit::redis::{FailurePolicy, RedisLimiter};
use steadfast_ratelimit::{gcra, AcquireError, Feedback, Limiter, Rate, RateSource};
use steadfast_testkit::redis::RedisServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn wall_micros() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_micros(),
    )
    .expect("fits")
}

fn rate(text: &str) -> Rate {
    text.parse().expect("rate")
}

async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

/// At most `limit` of `times` (µs) in any window of `window` µs.
fn max_in_window(times: &mut [u64], window: u64) -> usize {
    times.sort_unstable();
    let mut most = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= window {
            start += 1;
        }
        most = most.max(end - start + 1);
    }
    most
}

/// Workers taking permits as fast as they are given, each admission's
/// wall-clock time logged, until stopped.
struct Busy {
    admitted: Arc<Mutex<Vec<u64>>>,
    stop: Arc<AtomicUsize>,
    tasks: tokio::task::JoinSet<()>,
}

impl Busy {
    fn start(workers: &[RedisLimiter]) -> Self {
        let admitted = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for worker in workers {
            let worker = worker.clone();
            let (admitted, stop) = (Arc::clone(&admitted), Arc::clone(&stop));
            tasks.spawn(async move {
                while stop.load(Ordering::Relaxed) == 0 {
                    worker.acquire(1).await.expect("admitted");
                    admitted.lock().expect("log").push(wall_micros());
                }
            });
        }
        Self {
            admitted,
            stop,
            tasks,
        }
    }

    /// Stops them; every admission's time (µs since the epoch).
    async fn stop(mut self) -> Vec<u64> {
        self.stop.store(1, Ordering::Relaxed);
        while self.tasks.join_next().await.is_some() {}
        let admitted = self.admitted.lock().expect("log").clone();
        admitted
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_limiters_share_one_timeline_and_the_script_reloads_after_a_flush() {
    let server = RedisServer::start();
    let a = RedisLimiter::builder(server.url(), "shared", rate("20/s"))
        .worker("a")
        .build()
        .expect("limiter");
    let b = RedisLimiter::builder(server.url(), "shared", rate("20/s"))
        .worker("b")
        .build()
        .expect("limiter");
    let mut times = Vec::new();
    for i in 0..30 {
        let limiter = if i % 2 == 0 { &a } else { &b };
        limiter.acquire(1).await.expect("admitted");
        times.push(wall_micros());
        if i == 10 {
            // Scripts are gone after a restart or a flush: EVALSHA's
            // NOSCRIPT makes the client load them again.
            let mut connection = raw(&server).await;
            let _: () = redis::cmd("SCRIPT")
                .arg("FLUSH")
                .query_async(&mut connection)
                .await
                .expect("flush");
        }
    }
    // 20/s, burst 1: never more than 20 (+1 for recording) in a second.
    assert!(max_in_window(&mut times, 1_000_000) <= 21, "{times:?}");
    // 30 permits at 20/s from one timeline: at least 1.45 s from first to last.
    assert!(
        times[29] - times[0] >= 1_400_000,
        "{}",
        times[29] - times[0]
    );
    assert_eq!(a.status().admitted + b.status().admitted, 30);
    let (tat, state) = a.keys();
    assert_eq!(
        (tat, state),
        ("steadfast:{shared}:tat", "steadfast:{shared}:state")
    );
    let mut connection = raw(&server).await;
    let ttl: i64 = redis::cmd("PTTL")
        .arg(tat)
        .query_async(&mut connection)
        .await
        .expect("pttl");
    assert!(ttl > 0, "the timeline key expires once idle: {ttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_waiter_hands_its_slot_back() {
    let server = RedisServer::start();
    let limiter = Arc::new(
        RedisLimiter::builder(server.url(), "handback", rate("1/s"))
            .build()
            .expect("limiter"),
    );
    limiter.acquire(1).await.expect("free");
    let mut connection = raw(&server).await;
    let (tat_key, _) = limiter.keys();
    let before: u64 = redis::cmd("GET")
        .arg(tat_key)
        .query_async(&mut connection)
        .await
        .expect("tat");
    let waiter = tokio::spawn(Arc::clone(&limiter).acquire_owned(1));
    // Asleep until its slot (its booking's answer is in hand: a waiter
    // dropped while the booking is on the wire cannot hand it back).
    for _ in 0..1_000 {
        if limiter.status().waiting == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(limiter.status().waiting, 1, "the waiter sleeps");
    let booked: u64 = redis::cmd("GET")
        .arg(tat_key)
        .query_async(&mut connection)
        .await
        .expect("tat");
    assert_eq!(
        booked,
        before + 1_000_000,
        "the waiter booked the next slot"
    );
    waiter.abort();
    let mut after = booked;
    for _ in 0..200 {
        after = redis::cmd("GET")
            .arg(tat_key)
            .query_async(&mut connection)
            .await
            .expect("tat");
        if after != booked {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(after, before, "the slot went back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_seen_by_one_worker_pauses_every_worker() {
    let server = RedisServer::start();
    let workers: Vec<RedisLimiter> = (0..3)
        .map(|i| {
            RedisLimiter::builder(server.url(), "pause", rate("50/s"))
                .worker(format!("worker {i}"))
                .build()
                .expect("limiter")
        })
        .collect();
    let busy = Busy::start(&workers[1..]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Worker 0 is told to wait two seconds.
    workers[0].feedback(&Feedback::throttled().retry_after(Duration::from_secs(2)));
    let mut connection = raw(&server).await;
    let (_, state_key) = workers[0].keys();
    let mut pause_until = 0_u64;
    for _ in 0..400 {
        let value: Option<u64> = redis::cmd("HGET")
            .arg(state_key)
            .arg("pause_until")
            .query_async(&mut connection)
            .await
            .expect("hget");
        if let Some(value) = value {
            pause_until = value;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(pause_until > 0, "the pause reached the store");
    let set_by: String = redis::cmd("HGET")
        .arg(state_key)
        .arg("set_by")
        .query_async(&mut connection)
        .await
        .expect("hget");
    assert_eq!(set_by, "worker 0");
    // The others see it in their status as soon as they next ask the store.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let status = workers[1].status();
    assert_eq!(
        status.pause_cause,
        Some(steadfast_ratelimit::PauseCause::RetryAfter),
        "{status}"
    );
    assert!(status.paused_for.is_some(), "{status}");
    tokio::time::sleep(Duration::from_micros(
        pause_until.saturating_sub(wall_micros()) + 500_000,
    ))
    .await;
    let admitted = busy.stop().await;
    let pause_start = pause_until - 2_000_000;
    // Requests already confirmed when the pause was set may be recorded a
    // little after it (50 ms for recording); none later, until it ends.
    let during: Vec<u64> = admitted
        .iter()
        .copied()
        .filter(|t| *t > pause_start + 50_000 && *t < pause_until)
        .collect();
    assert!(
        during.is_empty(),
        "{} admitted during the pause",
        during.len()
    );
    assert!(
        admitted.iter().any(|t| *t >= pause_until),
        "traffic resumed"
    );
    assert!(admitted.iter().any(|t| *t < pause_start), "traffic before");
    // Everyone sees the cut and who made it.
    let status = workers[2].status();
    assert_eq!(status.source, RateSource::Adaptation, "{status}");
    assert!(status.effective < 50.0 * 0.75, "{status}");
    let store = status.store.expect("a store status");
    assert!(store.reachable);
    assert_eq!(store.set_by.as_deref(), Some("worker 0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_take_one_round_trip_per_k_permits_and_overshoot_a_pause_by_at_most_k_per_worker() {
    let server = RedisServer::start();
    const K: u32 = 8;
    let workers: Vec<RedisLimiter> = (0..3)
        .map(|i| {
            RedisLimiter::builder(server.url(), "lease", rate("200/s"))
                .lease(K)
                .worker(format!("worker {i}"))
                .build()
                .expect("limiter")
        })
        .collect();
    let busy = Busy::start(&workers);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A pause set straight in the store (as another worker's 429 would):
    // the workers learn it at their next lease.
    let mut connection = raw(&server).await;
    let (_, state_key) = workers[0].keys();
    let time: (u64, u64) = redis::cmd("TIME")
        .query_async(&mut connection)
        .await
        .expect("time");
    let now = time.0 * 1_000_000 + time.1;
    let pause_until = now + 1_000_000;
    let _: () = redis::cmd("HSET")
        .arg(state_key)
        .arg("pause_until")
        .arg(pause_until)
        .query_async(&mut connection)
        .await
        .expect("hset");
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let mut admitted = busy.stop().await;
    let during = admitted
        .iter()
        .filter(|t| **t > now + 20_000 && **t < pause_until)
        .count();
    assert!(
        during <= (K as usize) * workers.len(),
        "{during} admitted during the pause, more than lease × workers"
    );
    // Outside the pause the aggregate stays within the rate (+ one lease's
    // worth per worker at the edges, + 1 for recording).
    assert!(
        max_in_window(&mut admitted, 1_000_000) <= 200 + 1,
        "over the rate"
    );
}

/// What a worker process does: take permits from the shared limiter and
/// call the API server, for `STEADFAST_SECONDS`. Run by the test below in
/// separate processes; on its own it does nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a worker process of four_processes_share_one_quota"]
async fn redis_worker_process() {
    let (Ok(url), Ok(api), Ok(seconds)) = (
        std::env::var("STEADFAST_REDIS_URL"),
        std::env::var("STEADFAST_API"),
        std::env::var("STEADFAST_SECONDS"),
    ) else {
        return;
    };
    let seconds: u64 = seconds.parse().expect("seconds");
    let limiter = RedisLimiter::builder(url, "api-token", rate("20/s"))
        .worker(format!("process {}", std::process::id()))
        .build()
        .expect("limiter");
    let end = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let (mut ok, mut throttled) = (0, 0);
    while tokio::time::Instant::now() < end {
        let admission = limiter.acquire(1).await.expect("admitted");
        let mut stream = tokio::net::TcpStream::connect(&api).await.expect("api");
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
            .await
            .expect("request");
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.expect("response");
        if response.starts_with(b"HTTP/1.1 200") {
            ok += 1;
            limiter.feedback(&Feedback::success().sent_at(admission.at));
        } else {
            throttled += 1;
            limiter.feedback(&Feedback::throttled().sent_at(admission.at));
        }
    }
    println!("worker done: {ok} ok, {throttled} throttled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_share_one_quota() {
    const SECONDS: u64 = 60;
    const QUOTA: u64 = 20;
    let server = RedisServer::start();
    // The API: a token bucket of 20/s with a burst of 2, answering 429
    // above it; it logs every arrival.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let api = listener.local_addr().expect("addr").to_string();
    let log: Arc<Mutex<Vec<(u64, bool)>>> = Arc::default();
    let seen = Arc::clone(&log);
    let serving = tokio::spawn(async move {
        let tat = Arc::new(Mutex::new(0_u64));
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let (seen, tat) = (Arc::clone(&seen), Arc::clone(&tat));
            tokio::spawn(async move {
                let mut request = [0_u8; 1024];
                let _ = stream.read(&mut request).await;
                let now = wall_micros();
                let ok = {
                    let mut tat = tat.lock().expect("tat");
                    let decision =
                        gcra::decide(*tat, now, 1_000_000 / QUOTA, 2 * 1_000_000 / QUOTA);
                    *tat = decision.tat;
                    decision.admitted
                };
                seen.lock().expect("log").push((now, ok));
                let response: &[u8] = if ok {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                } else {
                    b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                };
                let _ = stream.write_all(response).await;
            });
        }
    });
    let exe = std::env::current_exe().expect("the test binary");
    let mut children: Vec<_> = (0..4)
        .map(|_| {
            std::process::Command::new(&exe)
                .args([
                    "--ignored",
                    "--exact",
                    "redis::redis_worker_process",
                    "--nocapture",
                ])
                .env("STEADFAST_REDIS_URL", server.url())
                .env("STEADFAST_API", &api)
                .env("STEADFAST_SECONDS", SECONDS.to_string())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("a worker process")
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(SECONDS + 60);
    for child in &mut children {
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                assert!(status.success(), "a worker failed: {status}");
                break;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("a worker did not finish");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for child in children {
        let output = child.wait_with_output().expect("output");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains("worker done"), "{text}");
    }
    serving.abort();
    let log = log.lock().expect("log").clone();
    let first = log.iter().map(|(t, _)| *t).min().expect("requests");
    let throttled_late = log
        .iter()
        .filter(|(t, ok)| !ok && *t >= first + 1_000_000)
        .count();
    let mut times: Vec<u64> = log.iter().map(|(t, _)| *t).collect();
    let most = max_in_window(&mut times, 1_000_000);
    let total = log.len() as f64;
    let span = (times[times.len() - 1] - times[0]) as f64 / 1e6;
    eprintln!(
        "4 processes: {total} requests in {span:.1} s ({:.2}/s), most in one second {most}, 429s after the first second {throttled_late}",
        total / span
    );
    assert_eq!(
        throttled_late, 0,
        "429s from the server after the first window"
    );
    assert!(
        most <= (QUOTA + 1) as usize,
        "{most} in one second, quota {QUOTA}"
    );
    assert!(
        total / span > QUOTA as f64 * 0.8,
        "the quota was used: {:.2}/s",
        total / span
    );
}

async fn outage(policy: FailurePolicy) -> (usize, usize, usize, Vec<String>) {
    let mut server = RedisServer::start();
    let limiter = RedisLimiter::builder(server.url(), "outage", rate("40/s"))
        .failure_policy(policy)
        .timeout(Duration::from_millis(200))
        .retry_after(Duration::from_millis(100))
        .build()
        .expect("limiter");
    let (mut before, mut during, mut after, mut errors) = (0, 0, 0, Vec::new());
    let phase = |start: std::time::Instant| start.elapsed();
    let start = std::time::Instant::now();
    let mut killed = false;
    let mut restarted = false;
    let mut statuses = Vec::new();
    while phase(start) < Duration::from_secs(3) {
        let t = phase(start);
        if !killed && t >= Duration::from_secs(1) {
            server.kill();
            killed = true;
        }
        if !restarted && t >= Duration::from_secs(2) {
            statuses.push(limiter.status().to_string());
            server.restart();
            restarted = true;
        }
        match limiter.acquire(1).await {
            Ok(_) => match (killed, restarted) {
                (false, _) => before += 1,
                (true, false) => during += 1,
                (true, true) => after += 1,
            },
            Err(AcquireError::Backend(e)) => {
                errors.push(e.to_string());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(other) => panic!("unexpected: {other}"),
        }
        // Fail open admits without limit: keep the loop finite.
        if policy == FailurePolicy::FailOpen && killed && !restarted {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    statuses.push(limiter.status().to_string());
    let mut all = errors;
    all.extend(statuses);
    (before, during, after, all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_dies_and_comes_back_under_each_failure_policy() {
    // Fail closed: typed errors during the outage, admissions before and
    // after (the connection comes back without a restart).
    let (before, during, after, notes) = outage(FailurePolicy::FailClosed).await;
    eprintln!("fail closed: {before} / {during} / {after}");
    assert!(before >= 30 && after >= 10, "{before} {after}: {notes:?}");
    assert_eq!(during, 0, "nothing admitted while the store was down");
    assert!(
        notes
            .iter()
            .any(|n| n.contains("redis") && n.contains("failure policy")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.contains("redis unreachable: fail closed")),
        "{notes:?}"
    );
    // Fail open: no errors, admissions throughout, many during.
    let (before, during, after, notes) = outage(FailurePolicy::FailOpen).await;
    eprintln!("fail open: {before} / {during} / {after}");
    assert!(
        notes.iter().all(|n| !n.contains("failure policy")),
        "no errors: {notes:?}"
    );
    assert!(during > 40 && after >= 10, "{during} {after}");
    // A local bucket at a quarter of the rate: 10/s during the outage.
    let (before, during, after, notes) = outage(FailurePolicy::LocalBucket { share: 4 }).await;
    eprintln!("local bucket: {before} / {during} / {after}");
    assert!(
        notes.iter().all(|n| !n.contains("failure policy")),
        "no errors: {notes:?}"
    );
    assert!(
        (5..=12).contains(&during),
        "≈ 10 in the one-second outage: {during}"
    );
    assert!(after >= 10, "{after}");
    assert!(
        notes
            .iter()
            .any(|n| n.contains("redis unreachable: local bucket at 1/4 of the rate")),
        "{notes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_is_shared_too() {
    let server = RedisServer::start();
    let a = RedisLimiter::builder(server.url(), "recovery", rate("100/s"))
        .worker("a")
        .build()
        .expect("limiter");
    let b = RedisLimiter::builder(server.url(), "recovery", rate("100/s"))
        .worker("b")
        .build()
        .expect("limiter");
    a.acquire(1).await.expect("admitted");
    a.feedback(&Feedback::throttled());
    // B sees the cut at its next round trip.
    let mut cut = 100.0;
    for _ in 0..100 {
        b.acquire(1).await.expect("admitted");
        cut = b.status().effective;
        if cut < 100.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        (69.0..=71.0).contains(&cut),
        "0.7 × 100/s for everyone: {cut}"
    );
    // A's successes bring the shared rate back, 10 % per quiet second.
    let mut recovered = cut;
    for _ in 0..1_000 {
        let admission = a.acquire(1).await.expect("admitted");
        a.feedback(&Feedback::success().sent_at(admission.at));
        b.acquire(1).await.expect("admitted");
        recovered = b.status().effective;
        if recovered >= 100.0 {
            break;
        }
    }
    assert_eq!(recovered, 100.0, "back to the configured rate for B too");
    assert_eq!(b.status().source, RateSource::Configuration);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_quota_pauses_everyone_and_client_time_shares_a_timeline_too() {
    let server = RedisServer::start();
    let build = |worker: &str| {
        RedisLimiter::builder(server.url(), "quota", rate("20/s"))
            .client_time()
            .worker(worker)
            .build()
            .expect("limiter")
    };
    let (a, b) = (build("a"), build("b"));
    let mut times = Vec::new();
    for i in 0..20 {
        let limiter = if i % 2 == 0 { &a } else { &b };
        limiter.acquire(1).await.expect("admitted");
        times.push(wall_micros());
    }
    // One timeline on the machines' own clocks: 20 permits at 20/s.
    assert!(times[19] - times[0] >= 900_000, "{}", times[19] - times[0]);
    assert!(max_in_window(&mut times, 1_000_000) <= 21);
    // A quota used up, seen by A: B waits for the reset.
    a.feedback(&Feedback::success().quota(0, Duration::from_millis(800)));
    let mut paused = None;
    for _ in 0..100 {
        // Asks the store without waiting for the pause to end.
        let refused = b.try_acquire(1).await;
        let status = b.status();
        if status.pause_cause.is_some() {
            assert!(
                matches!(refused, Err(steadfast_ratelimit::TryAcquireError::Wait(_))),
                "{refused:?}"
            );
            paused = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = paused.expect("B saw the pause");
    assert_eq!(
        status.pause_cause,
        Some(steadfast_ratelimit::PauseCause::QuotaExhausted),
        "{status}"
    );
    assert_eq!(status.store.expect("store").set_by.as_deref(), Some("a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_store_times_out_into_the_failure_policy_and_recovers() {
    let server = RedisServer::start();
    let limiter = RedisLimiter::builder(server.url(), "slow", rate("100/s"))
        .timeout(Duration::from_millis(100))
        .retry_after(Duration::from_millis(50))
        .build()
        .expect("limiter");
    limiter.acquire(1).await.expect("admitted");
    // The server stops answering for a second (as under a long command).
    let mut connection = raw(&server).await;
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1_000)
        .arg("ALL")
        .query_async(&mut connection)
        .await
        .expect("pause");
    let error = limiter.acquire(1).await.expect_err("no answer in time");
    let AcquireError::Backend(backend) = &error else {
        panic!("expected a backend error, got {error}");
    };
    assert_eq!(
        backend.kind(),
        steadfast_ratelimit::BackendErrorKind::Timeout,
        "{error}"
    );
    assert!(error.to_string().contains("100ms"), "{error}");
    let status = limiter.status();
    let store = status.store.clone().expect("store status");
    assert!(!store.reachable, "{status}");
    assert!(store.last_error.is_some());
    // Once the server answers again, so does the limiter.
    let mut admitted = false;
    for _ in 0..100 {
        if limiter.acquire(1).await.is_ok() {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(admitted, "the limiter came back with the store");
    assert!(limiter.status().store.expect("store").reachable);
}

#[test]
fn outside_a_runtime_build_is_a_typed_error_not_a_panic() {
    let error = RedisLimiter::builder("redis://127.0.0.1:1/0", "x", rate("1/s"))
        .build()
        .expect_err("no runtime");
    assert_eq!(error.kind(), steadfast_ratelimit::BackendErrorKind::Invalid);
    assert!(error.to_string().contains("inside one"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_url_is_a_typed_error_that_says_what_to_use() {
    let error = RedisLimiter::builder("http://example", "x", rate("1/s"))
        .build()
        .expect_err("not a redis url");
    assert_eq!(error.kind(), steadfast_ratelimit::BackendErrorKind::Invalid);
    assert!(
        error.to_string().contains("redis://host:port/db"),
        "{error}"
    );
}

/// The Lua script decides as `gcra::decide` / `gcra::reserve` do, for the
/// same arrivals (client time, so both see the same `now`): a property
/// over random rates, bursts and arrival sequences, on one server.
#[test]
fn the_script_decides_as_the_local_gcra() {
    use proptest::test_runner::{Config, TestRunner};
    let server = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let case = AtomicUsize::new(0);
    let strategy = (
        1_u32..2_000,
        1_u32..8,
        proptest::collection::vec((0_u64..400_000, 1_u32..4, any::<bool>()), 1..40),
    );
    let mut runner = TestRunner::new(Config {
        cases: 48,
        ..Config::default()
    });
    runner
        .run(&strategy, |(per_second, burst, steps)| {
            runtime.block_on(async {
                let name = format!("model-{}", case.fetch_add(1, Ordering::Relaxed));
                let rate = Rate::per_second_n(per_second)
                    .expect("rate")
                    .with_burst(burst)
                    .expect("burst");
                let limiter = RedisLimiter::builder(server.url(), name, rate)
                    .client_time()
                    .build()
                    .expect("limiter");
                let interval = (1e6 / f64::from(per_second)).ceil() as u64;
                let tolerance = u64::from(burst) * interval;
                let (mut now, mut tat) = (1_000_000_u64, 0_u64);
                for (dt, n, book) in steps {
                    now += dt;
                    let cost = u64::from(n) * interval;
                    if cost > tolerance {
                        continue;
                    }
                    if book {
                        let (next, ready) = gcra::reserve(tat, now, cost, tolerance);
                        let got = limiter.reserve_at(now, n).await.expect("script");
                        prop_assert!(got.admitted);
                        prop_assert_eq!(got.wait_us, ready.saturating_sub(now));
                        prop_assert_eq!(got.tat_us, next);
                        tat = next;
                    } else {
                        let model = gcra::decide(tat, now, cost, tolerance);
                        let got = limiter.try_at(now, n).await.expect("script");
                        prop_assert_eq!(got.admitted, model.admitted, "at {}", now);
                        prop_assert_eq!(got.wait_us, model.ready_at.saturating_sub(now));
                        tat = model.tat;
                    }
                }
                Ok(())
            })
        })
        .expect("the script agrees with the model");
}

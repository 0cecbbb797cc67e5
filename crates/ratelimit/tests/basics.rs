//! Accuracy, FIFO order, cancellation, bounds, pauses, set_rate.

use std::time::Duration;

use steadfast_ratelimit::{
    AcquireError, Feedback, PauseCause, RateSource, TokenBucket, TryAcquireError,
};
use tokio::time::Instant;

fn bucket(rate: &str) -> TokenBucket {
    TokenBucket::new(rate.parse().expect("rate"))
}

#[tokio::test(start_paused = true)]
async fn ten_minutes_at_10_per_second_with_burst_5() {
    let limiter = bucket("10/s burst 5");
    let start = Instant::now();
    let end = start + Duration::from_secs(600);
    let mut times = Vec::new();
    loop {
        let admission = limiter.acquire(1).await.expect("acquire");
        if admission.at > end {
            break;
        }
        times.push(admission.at - start);
    }
    let admitted = times.len() as i64;
    assert!(
        (admitted - 6_005).abs() <= 1,
        "admitted {admitted}, want 5 + 6,000 ± 1"
    );
    // No sliding one-second window holds more than burst + rate.
    let window = Duration::from_secs(1);
    let mut first = 0;
    for last in 0..times.len() {
        while times[last] - times[first] >= window {
            first += 1;
        }
        assert!(
            last - first < 15,
            "{} in the window ending at {:?}",
            last - first + 1,
            times[last]
        );
    }
    assert_eq!(limiter.status().admitted, times.len() as u64 + 1);
}

#[tokio::test(start_paused = true)]
async fn many_callers_share_the_rate_exactly() {
    let limiter = bucket("10/s burst 5");
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let limiter = limiter.clone();
        tasks.spawn(async move {
            let mut mine = 0u32;
            loop {
                let admission = limiter.acquire(1).await.expect("acquire");
                if admission.at - start > Duration::from_secs(600) {
                    return mine;
                }
                mine += 1;
            }
        });
    }
    let total: u32 = tasks.join_all().await.into_iter().sum();
    assert!((i64::from(total) - 6_005).abs() <= 1, "admitted {total}");
}

#[tokio::test(start_paused = true)]
async fn try_acquire_says_how_long_to_wait() {
    let limiter = bucket("4/s burst 2");
    assert_eq!(limiter.try_acquire(2), Ok(()));
    assert_eq!(
        limiter.try_acquire(1),
        Err(TryAcquireError::Wait(Duration::from_millis(250)))
    );
    assert_eq!(
        limiter.try_acquire(2),
        Err(TryAcquireError::Wait(Duration::from_millis(500)))
    );
    assert_eq!(
        limiter.try_acquire(3),
        Err(TryAcquireError::Insufficient {
            requested: 3,
            burst: 2
        })
    );
    tokio::time::advance(Duration::from_millis(250)).await;
    assert_eq!(limiter.try_acquire(1), Ok(()));
    assert_eq!(
        limiter.try_acquire(0),
        Ok(()),
        "zero permits are always free"
    );
}

#[tokio::test(start_paused = true)]
async fn waiting_callers_get_exact_etas_and_one_wake_up_each() {
    let limiter = bucket("2/s");
    limiter.try_acquire(1).expect("first");
    let start = Instant::now();
    let a = limiter.acquire(1);
    let b = limiter.acquire(1);
    let (a, b) = tokio::join!(a, b);
    assert_eq!(a.expect("a").at - start, Duration::from_millis(500));
    assert_eq!(b.expect("b").at - start, Duration::from_millis(1_000));
    let status = limiter.status();
    assert_eq!((status.admitted, status.waited), (3, 2));
}

#[tokio::test(start_paused = true)]
async fn bounds_on_the_wait_and_the_queue_fail_fast() {
    let limiter = TokenBucket::builder("1/s".parse().expect("rate"))
        .max_wait(Duration::from_secs(2))
        .max_waiters(2)
        .build();
    limiter.try_acquire(1).expect("first");
    let one = limiter.acquire(1);
    let two = limiter.acquire(1);
    tokio::pin!(one, two);
    // Book both slots (1 s and 2 s away).
    assert!(futures_poll(&mut one).await.is_none());
    assert!(futures_poll(&mut two).await.is_none());
    match limiter.acquire(1).await {
        Err(AcquireError::WaitTooLong { wait, max }) => {
            assert_eq!(
                (wait, max),
                (Duration::from_secs(3), Duration::from_secs(2))
            );
        }
        other => panic!("expected WaitTooLong, got {other:?}"),
    }
    let roomy = TokenBucket::builder("1/s".parse().expect("rate"))
        .max_waiters(1)
        .build();
    roomy.try_acquire(1).expect("first");
    let held = roomy.acquire(1);
    tokio::pin!(held);
    assert!(futures_poll(&mut held).await.is_none());
    let error = roomy.acquire(1).await.expect_err("queue full");
    assert_eq!(error, AcquireError::QueueFull { max: 1 });
    assert!(
        error.to_string().contains("1 requests are already waiting"),
        "{error}"
    );
    assert_eq!(
        limiter.acquire(2).await,
        Err(AcquireError::Insufficient {
            requested: 2,
            burst: 1
        })
    );
}

/// Polls a future once; `Some` if it completed.
async fn futures_poll<F: std::future::Future + Unpin>(future: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut *future).poll(cx) {
            std::task::Poll::Ready(output) => Some(output),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_hands_its_slot_back() {
    let limiter = bucket("10/s");
    limiter.try_acquire(1).expect("first");
    let start = Instant::now();
    let mut first = Box::pin(limiter.acquire(1));
    let mut second = Box::pin(limiter.acquire(1));
    let mut third = Box::pin(limiter.acquire(1));
    assert!(futures_poll(&mut first).await.is_none());
    assert!(futures_poll(&mut second).await.is_none());
    assert!(futures_poll(&mut third).await.is_none());
    assert_eq!(limiter.status().waiting, 3);
    drop(second);
    assert_eq!(limiter.status().waiting, 2);
    assert_eq!(
        first.await.expect("first").at - start,
        Duration::from_millis(100)
    );
    assert_eq!(
        third.await.expect("third").at - start,
        Duration::from_millis(200),
        "moved up into the dropped slot"
    );
    // And nothing leaked: the next slot is right after.
    assert_eq!(
        limiter.try_acquire(1),
        Err(TryAcquireError::Wait(Duration::from_millis(100)))
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_pauses_everyone_until_one_instant() {
    let limiter = bucket("10/s burst 3");
    let start = Instant::now();
    limiter.feedback(&Feedback::throttled().retry_after(Duration::from_secs(10)));
    let status = limiter.status();
    assert_eq!(status.paused_for, Some(Duration::from_secs(10)));
    assert_eq!(status.pause_cause, Some(PauseCause::RetryAfter));
    assert_eq!(status.throttled, 1);
    assert!(
        matches!(limiter.try_acquire(1), Err(TryAcquireError::Wait(w)) if w == Duration::from_secs(10))
    );
    // A shorter hint later never moves the pause earlier; a repeat of the
    // same hint a second later extends it to its own end, never stacks.
    tokio::time::advance(Duration::from_secs(1)).await;
    limiter.feedback(&Feedback::throttled().retry_after(Duration::from_secs(2)));
    assert_eq!(limiter.status().paused_for, Some(Duration::from_secs(9)));
    limiter.feedback(&Feedback::throttled().retry_after(Duration::from_secs(10)));
    assert_eq!(limiter.status().paused_for, Some(Duration::from_secs(10)));
    // Waiters go at the pause's end, one at a time at the rate (no burst).
    let times: Vec<_> = futures_join3(&limiter).await;
    let rate_now = limiter.status().effective;
    let spacing = Duration::from_secs_f64(1.0 / rate_now);
    assert_eq!(times[0] - start, Duration::from_secs(11));
    assert!(times[1] - times[0] >= spacing.saturating_sub(Duration::from_millis(1)));
    assert!(times[2] > times[1]);
}

async fn futures_join3(limiter: &TokenBucket) -> Vec<Instant> {
    let (a, b, c) = tokio::join!(limiter.acquire(1), limiter.acquire(1), limiter.acquire(1));
    vec![a.expect("a").at, b.expect("b").at, c.expect("c").at]
}

#[tokio::test(start_paused = true)]
async fn set_rate_never_lets_a_burst_through() {
    let limiter = bucket("10/s burst 10");
    for _ in 0..10 {
        limiter.try_acquire(1).expect("burst");
    }
    // Slower: what was taken still counts; the next permit is one new
    // interval away, not a fresh burst.
    limiter.set_rate("1/s burst 10".parse().expect("rate"));
    match limiter.try_acquire(1) {
        Err(TryAcquireError::Wait(wait)) => assert_eq!(wait, Duration::from_secs(1)),
        other => panic!("expected a wait, got {other:?}"),
    }
    // Faster again: still no burst, only the rate's spacing.
    limiter.set_rate("100/s burst 10".parse().expect("rate"));
    match limiter.try_acquire(1) {
        Err(TryAcquireError::Wait(wait)) => assert_eq!(wait, Duration::from_millis(10)),
        other => panic!("expected a wait, got {other:?}"),
    }
    let status = limiter.status();
    assert_eq!(status.source, RateSource::Configuration);
    assert_eq!(status.configured.to_string(), "100/s burst 10");
}

#[tokio::test(start_paused = true)]
async fn set_rate_moves_waiters_up_when_faster() {
    let limiter = bucket("1/s");
    limiter.try_acquire(1).expect("first");
    let start = Instant::now();
    let mut waiter = Box::pin(limiter.acquire(1));
    assert!(futures_poll(&mut waiter).await.is_none());
    limiter.set_rate("10/s".parse().expect("rate"));
    assert_eq!(
        waiter.await.expect("waiter").at - start,
        Duration::from_millis(100)
    );
}

#[tokio::test(start_paused = true)]
async fn quotas_hold_the_rate_and_pause_when_used_up() {
    let limiter = bucket("10/s");
    limiter.feedback(&Feedback::success().quota(30, Duration::from_secs(60)));
    let status = limiter.status();
    assert_eq!(status.source, RateSource::ServerHint);
    assert!(
        (status.effective - 0.5).abs() < 1e-9,
        "{}",
        status.effective
    );
    limiter.feedback(&Feedback::success().quota(0, Duration::from_secs(20)));
    let status = limiter.status();
    assert_eq!(status.pause_cause, Some(PauseCause::QuotaExhausted));
    assert_eq!(status.paused_for, Some(Duration::from_secs(20)));
    // After the quota's window the configured rate is back.
    tokio::time::advance(Duration::from_secs(61)).await;
    limiter.feedback(&Feedback::success());
    assert_eq!(limiter.status().source, RateSource::Configuration);
}

#[tokio::test(start_paused = true)]
async fn the_status_line_reads_like_the_docs() {
    let limiter = bucket("10/min");
    assert_eq!(
        limiter.status().to_string(),
        "rate 10/min · 1 free · 0 waiting"
    );
    limiter.try_acquire(1).expect("first");
    limiter.feedback(&Feedback::throttled().retry_after(Duration::from_secs(12)));
    let mut waiters: Vec<_> = (0..3).map(|_| Box::pin(limiter.acquire(1))).collect();
    for waiter in &mut waiters {
        assert!(futures_poll(waiter).await.is_none());
    }
    assert_eq!(
        limiter.status().to_string(),
        "rate 7.0/min (adapted from 10/min) · 0 free · 3 waiting · paused 12s (Retry-After)"
    );
}

/// The TSC clock keeps real time, so this test only checks what does not
/// depend on how fast it runs.
#[cfg(feature = "tsc")]
#[tokio::test(flavor = "current_thread")]
async fn the_tsc_clock_limits_too() {
    let limiter = TokenBucket::builder("1/s burst 2".parse().expect("rate"))
        .tsc_clock()
        .build();
    limiter.try_acquire(2).expect("the burst");
    match limiter.try_acquire(1) {
        Err(TryAcquireError::Wait(wait)) => {
            assert!(
                !wait.is_zero() && wait <= Duration::from_secs(1),
                "{wait:?}"
            );
        }
        other => panic!("expected a wait, got {other:?}"),
    }
    assert_eq!(limiter.status().admitted, 2);
    assert_eq!(limiter.status().available, 0);
    // Waiting maps the counter's time onto tokio's timer: at 10/s the
    // waiter's slot is 100 ms of real time away (a stall that long between
    // the two calls would make it free at once; nothing else can).
    let fast = TokenBucket::builder("10/s".parse().expect("rate"))
        .tsc_clock()
        .build();
    fast.try_acquire(1).expect("first");
    let admission = fast.acquire(1).await.expect("second");
    assert!(!admission.waited.is_zero());
    assert_eq!(fast.status().admitted, 2);
}

//! The plain async driver, on tokio's paused clock: every sleep is exact
//! and takes no real time.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use steadfast_backoff::{
    retry, Action, DelaySource, ErrorKind, FailFast, Hint, HintMode, HintSource, NoRetry, Reason,
    Retrier, RetryBudget, RetryErrors, RetryEvent, Schedule,
};
use tokio::time::Instant;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn doubling(retries: u32) -> Schedule {
    Schedule::exponential(secs(1), 2.0)
        .expect("valid")
        .max_retries(retries)
}

/// An operation that fails `failures` times, recording when each attempt
/// started (on the virtual clock).
fn flaky(
    failures: usize,
    log: &RefCell<Vec<Instant>>,
) -> impl FnMut() -> std::future::Ready<Result<usize, &'static str>> + '_ {
    move || {
        let mut log = log.borrow_mut();
        log.push(Instant::now());
        let n = log.len();
        std::future::ready(if n <= failures { Err("boom") } else { Ok(n) })
    }
}

fn gaps(log: &[Instant]) -> Vec<Duration> {
    log.windows(2).map(|w| w[1] - w[0]).collect()
}

#[tokio::test(start_paused = true)]
async fn sleeps_follow_the_schedule_exactly() {
    let log = RefCell::new(Vec::new());
    let value = retry(doubling(5), flaky(4, &log))
        .await
        .expect("fifth attempt succeeds");
    assert_eq!(value, 5);
    assert_eq!(gaps(&log.borrow()), [1, 2, 4, 8].map(secs));
}

#[tokio::test(start_paused = true)]
async fn exhaustion_reports_retries_elapsed_and_the_last_error() {
    let log = RefCell::new(Vec::new());
    let start = Instant::now();
    let err = retry(doubling(3), flaky(usize::MAX, &log))
        .await
        .unwrap_err();
    assert_eq!(log.borrow().len(), 4, "one attempt plus three retries");
    assert_eq!(err.kind(), ErrorKind::Exhausted);
    assert_eq!(err.retries(), 3);
    assert_eq!(err.inner_error(), Some(&"boom"));
    assert!(err.is_recoverable());
    assert_eq!(start.elapsed(), secs(7));
    assert_eq!(err.elapsed(), secs(7));
    assert_eq!(
        err.to_string(),
        "request failed after 3 retries in 7s; try again later"
    );
}

#[tokio::test(start_paused = true)]
async fn no_sleep_starts_that_would_end_past_the_deadline() {
    let log = RefCell::new(Vec::new());
    let start = Instant::now();
    let schedule = doubling(100).max_elapsed(secs(20));
    let slow_then_fail = || {
        log.borrow_mut().push(Instant::now());
        async {
            tokio::time::sleep(secs(1)).await; // each attempt takes 1 s
            Err::<(), _>("slow")
        }
    };
    let err = retry(schedule, slow_then_fail).await.unwrap_err();
    // Attempts start at 0, 2, 5, 10 (1 s each, sleeps 1, 2, 4); after the
    // fourth ends at 11, a sleep of 8 would end at 19 <= 20: allowed, the
    // fifth runs 19..20; the next sleep (16) would end past 20.
    let starts: Vec<_> = log.borrow().iter().map(|t| *t - start).collect();
    assert_eq!(starts, [0, 2, 5, 10, 19].map(secs));
    assert_eq!(err.kind(), ErrorKind::Exhausted);
    assert!(start.elapsed() <= secs(20));
}

#[tokio::test(start_paused = true)]
async fn hook_and_events_say_why_and_how_long() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let retrier = Retrier::new(doubling(3))
        .policy(|outcome: &Result<u16, ()>| match outcome {
            Ok(429) => Action::retry_after(
                Reason::RateLimited,
                Hint {
                    delay: secs(4),
                    source: HintSource::RetryAfter,
                },
            ),
            Ok(503) => Action::retry(Reason::Status(503)),
            _ => Action::Done,
        })
        .on_retry(move |event: &RetryEvent| sink.lock().unwrap().push(*event));
    let mut responses = vec![200, 503, 429]; // popped from the end
    let value = retrier
        .run(|| std::future::ready(Ok(responses.pop().unwrap_or(200))))
        .await
        .expect("third attempt accepted");
    assert_eq!(value, 200);
    let events = events.lock().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].retry, 1);
    assert_eq!(
        events[0].delay,
        secs(4),
        "the hint is a floor above the 1 s backoff"
    );
    assert_eq!(
        events[0].source,
        DelaySource::Server(HintSource::RetryAfter)
    );
    assert_eq!(events[0].to_string(), "rate limited, retrying in 4s");
    assert_eq!(events[1].delay, secs(2));
    assert_eq!(events[1].source, DelaySource::Backoff);
    assert_eq!(events[1].to_string(), "HTTP 503, retrying in 2s");
}

fn hinted(delay: Duration) -> impl Fn(&Result<(), ()>) -> Action + Clone {
    move |_: &Result<(), ()>| {
        Action::retry_after(
            Reason::RateLimited,
            Hint {
                delay,
                source: HintSource::RetryAfter,
            },
        )
    }
}

#[tokio::test(start_paused = true)]
async fn a_hint_below_the_backoff_does_not_shorten_it() {
    let log = RefCell::new(Vec::new());
    let retrier = Retrier::new(Schedule::constant(secs(10)).max_retries(1)).policy(hinted(secs(3)));
    let _ = retrier
        .run(|| {
            log.borrow_mut().push(Instant::now());
            std::future::ready(Err(()))
        })
        .await;
    assert_eq!(gaps(&log.borrow()), [secs(10)]);

    log.borrow_mut().clear();
    let exact = retrier.clone().hint_mode(HintMode::Exact);
    let _ = exact
        .run(|| {
            log.borrow_mut().push(Instant::now());
            std::future::ready(Err(()))
        })
        .await;
    assert_eq!(gaps(&log.borrow()), [secs(3)]);

    log.borrow_mut().clear();
    let ignore = Retrier::new(Schedule::constant(secs(1)).max_retries(1))
        .policy(hinted(secs(30)))
        .hint_mode(HintMode::Ignore);
    let _ = ignore
        .run(|| {
            log.borrow_mut().push(Instant::now());
            std::future::ready(Err(()))
        })
        .await;
    assert_eq!(gaps(&log.borrow()), [secs(1)]);
}

#[tokio::test(start_paused = true)]
async fn a_hint_over_the_ceiling_fails_at_once_with_when_to_come_back() {
    let start = Instant::now();
    let mut calls = 0;
    let retrier = Retrier::new(doubling(5)).policy(hinted(secs(396_749)));
    let err = retrier
        .run(|| {
            calls += 1;
            std::future::ready(Err(()))
        })
        .await
        .unwrap_err();
    assert_eq!(calls, 1);
    assert_eq!(start.elapsed(), Duration::ZERO, "no sleep at all");
    assert_eq!(err.kind(), ErrorKind::RetryAfterTooLong);
    assert_eq!(err.retry_after(), Some(secs(396_749)));
    assert!(err.is_recoverable());
    assert!(err.to_string().contains("wait 4d 14h"), "{err}");

    // A hint within the ceiling but past the deadline fails the same way.
    let retrier = Retrier::new(doubling(5).max_elapsed(secs(60))).policy(hinted(secs(120)));
    let err = retrier
        .run(|| std::future::ready(Err(())))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RetryAfterTooLong);
    assert_eq!(err.retry_after(), Some(secs(120)));

    // A raised ceiling obeys it.
    let start = Instant::now();
    let retrier = Retrier::new(doubling(1))
        .policy(hinted(secs(600)))
        .max_retry_after(secs(900));
    let _ = retrier.run(|| std::future::ready(Err(()))).await;
    assert_eq!(start.elapsed(), secs(600));
}

#[tokio::test(start_paused = true)]
async fn fatal_outcomes_and_fail_fast_stop_after_one_attempt() {
    let mut calls = 0;
    let fatal = |_: &Result<(), &str>| Action::fail(Reason::Other("bad token"));
    let err = Retrier::new(doubling(5))
        .policy(fatal)
        .run(|| {
            calls += 1;
            std::future::ready(Err("403"))
        })
        .await
        .unwrap_err();
    assert_eq!(
        (calls, err.kind(), err.is_recoverable()),
        (1, ErrorKind::Fatal, false)
    );
    assert_eq!(
        err.to_string(),
        "bad token; the failure is permanent, retrying cannot help"
    );

    let mut calls = 0;
    let err = Retrier::new(doubling(5))
        .policy(FailFast(RetryErrors))
        .run(|| {
            calls += 1;
            std::future::ready(Err::<(), _>("503"))
        })
        .await
        .unwrap_err();
    assert_eq!(calls, 1);
    assert_eq!(err.kind(), ErrorKind::NotRetried(NoRetry::Disabled));
    assert!(err.is_recoverable());
    assert!(err.to_string().contains("fail-fast"), "{err}");

    // Fail-fast still accepts successes.
    let ok = Retrier::new(doubling(5))
        .policy(FailFast(RetryErrors))
        .run(|| std::future::ready(Ok::<_, ()>(7)))
        .await;
    assert_eq!(ok.ok(), Some(7));
}

#[tokio::test(start_paused = true)]
async fn the_budget_caps_retries_across_operations() {
    // No reserve; each request earns half a retry.
    let budget = RetryBudget::new(secs(10), 0, 0.5).expect("valid");
    let retrier = Retrier::new(Schedule::constant(Duration::from_millis(1)).max_retries(10))
        .budget(budget.clone());
    let mut attempts = 0;
    let mut kinds = Vec::new();
    for _ in 0..4 {
        let err = retrier
            .run(|| {
                attempts += 1;
                std::future::ready(Err::<(), _>("down"))
            })
            .await
            .unwrap_err();
        kinds.push(err.kind());
    }
    // Four requests earn two retries in total, whoever spends them.
    assert_eq!(attempts, 4 + 2);
    assert!(
        kinds.iter().all(|k| *k == ErrorKind::BudgetExhausted),
        "{kinds:?}"
    );
    assert!(retrier
        .clone()
        .run(|| std::future::ready(Err::<(), _>("x")))
        .await
        .unwrap_err()
        .to_string()
        .contains("retry budget"));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn one_tracing_event_per_retry_with_attempt_delay_source_and_reason() {
    use steadfast_testkit::Capture;

    Capture::start();
    let retrier = Retrier::new(doubling(2)).policy(|outcome: &Result<(), ()>| match outcome {
        Ok(()) => Action::Done,
        Err(()) => Action::retry_after(
            Reason::RateLimited,
            Hint {
                delay: secs(4),
                source: HintSource::RetryAfter,
            },
        ),
    });
    let _ = retrier.run(|| std::future::ready(Err(()))).await;
    let events = Capture::take();
    let retries: Vec<_> = events
        .iter()
        .filter(|e| e.iter().any(|f| f == "level=INFO"))
        .collect();
    assert_eq!(retries.len(), 2, "{events:?}");
    for (i, fields) in retries.iter().enumerate() {
        let has = |want: &str| fields.iter().any(|f| f == want);
        assert!(has(&format!("attempt={}", i + 2)), "{fields:?}");
        assert!(has(&format!("retry={}", i + 1)), "{fields:?}");
        assert!(has("delay_ms=4000"), "{fields:?}");
        assert!(has("source=Retry-After"), "{fields:?}");
        assert!(has("reason=rate limited"), "{fields:?}");
    }
    let give_up: Vec<_> = events
        .iter()
        .filter(|e| e.iter().any(|f| f == "level=WARN"))
        .collect();
    assert_eq!(
        give_up.len(),
        1,
        "one warning when retrying stops: {events:?}"
    );
}

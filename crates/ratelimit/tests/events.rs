//! The tracing events: waits, throttles, pauses, rate changes.

use std::time::Duration;

use steadfast_ratelimit::{Feedback, TokenBucket};
use steadfast_testkit::Capture;

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn waits_throttles_pauses_and_rate_changes_are_traced() {
    Capture::start();
    let limiter = TokenBucket::new("2/s".parse().expect("rate"));
    limiter.acquire(1).await.expect("free");
    limiter.acquire(1).await.expect("waits 500 ms");
    limiter.feedback(&Feedback::throttled().retry_after(Duration::from_secs(3)));
    limiter.set_rate("4/s".parse().expect("rate"));
    let events: Vec<String> = Capture::take().into_iter().map(|e| e.join(" ")).collect();
    let find = |needle: &str| {
        events
            .iter()
            .find(|e| e.contains(needle))
            .unwrap_or_else(|| panic!("no event with {needle:?} in {events:#?}"))
            .clone()
    };
    let wait = find("waiting for a permit");
    assert!(
        wait.starts_with("level=DEBUG target=steadfast_ratelimit") && wait.contains("wait_ms=500"),
        "{wait}"
    );
    let cut = find("rate cut");
    assert!(
        cut.starts_with("level=INFO") && cut.contains("from=2.0") && cut.contains("to=1.4"),
        "{cut}"
    );
    let pause = find("pausing every request");
    assert!(
        pause.starts_with("level=WARN")
            && pause.contains("secs=3.0")
            && pause.contains("cause=Retry-After"),
        "{pause}"
    );
    let changed = find("rate changed");
    assert!(changed.contains("to=1.4"), "{changed}");
    assert!(find("rate set").contains("rate=4/s"));
}

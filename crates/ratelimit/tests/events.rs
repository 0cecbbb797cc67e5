//! The tracing events: waits, throttles, pauses, rate changes.

use std::cell::RefCell;
use std::time::Duration;

use steadfast_ratelimit::{Feedback, TokenBucket};

thread_local! {
    static CAPTURED: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// One global subscriber for this test binary (a scoped one races other
/// test threads over callsite interest); it keeps the events of the
/// threads that capture.
struct Capture;

impl Capture {
    fn start() {
        static INSTALL: std::sync::Once = std::sync::Once::new();
        INSTALL.call_once(|| {
            tracing::subscriber::set_global_default(Capture).expect("the only global subscriber");
        });
        CAPTURED.with(|c| *c.borrow_mut() = Some(Vec::new()));
    }

    fn take() -> Vec<String> {
        CAPTURED.with(|c| c.borrow_mut().take().unwrap_or_default())
    }
}

impl tracing::Subscriber for Capture {
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::always()
    }
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Line(String);
        impl tracing::field::Visit for Line {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!(" {}={:?}", field.name(), value));
            }
        }
        CAPTURED.with(|c| {
            if let Some(events) = c.borrow_mut().as_mut() {
                let mut line = Line(format!(
                    "{} {}:",
                    event.metadata().level(),
                    event.metadata().target()
                ));
                event.record(&mut line);
                events.push(line.0);
            }
        });
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn waits_throttles_pauses_and_rate_changes_are_traced() {
    Capture::start();
    let limiter = TokenBucket::new("2/s".parse().expect("rate"));
    limiter.acquire(1).await.expect("free");
    limiter.acquire(1).await.expect("waits 500 ms");
    limiter.feedback(&Feedback::throttled().retry_after(Duration::from_secs(3)));
    limiter.set_rate("4/s".parse().expect("rate"));
    let events = Capture::take();
    let find = |needle: &str| {
        events
            .iter()
            .find(|e| e.contains(needle))
            .unwrap_or_else(|| panic!("no event with {needle:?} in {events:#?}"))
            .clone()
    };
    let wait = find("waiting for a permit");
    assert!(
        wait.starts_with("DEBUG steadfast_ratelimit:") && wait.contains("wait_ms=500"),
        "{wait}"
    );
    let cut = find("rate cut");
    assert!(
        cut.starts_with("INFO") && cut.contains("from=2.0") && cut.contains("to=1.4"),
        "{cut}"
    );
    let pause = find("pausing every request");
    assert!(
        pause.starts_with("WARN")
            && pause.contains("secs=3.0")
            && pause.contains("cause=Retry-After"),
        "{pause}"
    );
    let changed = find("rate changed");
    assert!(changed.contains("to=1.4"), "{changed}");
    assert!(find("rate set").contains("rate=4/s"));
}

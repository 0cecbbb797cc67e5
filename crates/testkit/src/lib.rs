//! Test helpers shared by the steadfast crates' own tests.

pub mod redis;
pub mod rng;
pub mod sim;

use std::cell::RefCell;
use std::sync::Once;

thread_local! {
    /// This thread's captured events, while a test captures.
    static CAPTURED: RefCell<Option<Vec<Vec<String>>>> = const { RefCell::new(None) };
}

/// Captures `tracing` events, per thread.
///
/// It is the process-wide subscriber of the test binary (installed once),
/// handing each event to the capture of the thread that emitted it, if
/// that thread captures. Being global rather than a scoped default, its
/// interest in every callsite is fixed, so no other test's thread can cache
/// a "never" that hides events from a capturing test (the race a scoped
/// subscriber has when tests run in parallel).
///
/// Each event is its fields as `name=value` strings, after `level=…` and
/// `target=…`; `message=…` holds the message.
pub struct Capture;

impl Capture {
    /// Captures this thread's events until [`Capture::take`].
    ///
    /// # Panics
    ///
    /// If another global subscriber was installed first (a test bug).
    pub fn start() {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            tracing::subscriber::set_global_default(Capture)
                .expect("the only global subscriber of the test binary");
        });
        CAPTURED.with(|c| *c.borrow_mut() = Some(Vec::new()));
    }

    /// Stops capturing and returns this thread's events.
    pub fn take() -> Vec<Vec<String>> {
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
        struct Fields(Vec<String>);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push(format!("{}={:?}", field.name(), value));
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                self.0.push(format!("{}={}", field.name(), value));
            }
        }
        CAPTURED.with(|c| {
            if let Some(events) = c.borrow_mut().as_mut() {
                let meta = event.metadata();
                let mut fields = Fields(vec![
                    format!("level={}", meta.level()),
                    format!("target={}", meta.target()),
                ]);
                event.record(&mut fields);
                events.push(fields.0);
            }
        });
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

//! The seeded schedule of faults the fake server injects.

use std::time::Duration;

/// The seeded generator of the fake file and its faults (the same seed,
/// the same file and the same faults): steadfast-testkit's SplitMix64.
pub use steadfast_testkit::rng::Rng;

/// What goes wrong, and how often. All draws come from the seed.
#[derive(Clone, Debug)]
pub struct Faults {
    /// The seed of the fault draws.
    pub seed: u64,
    /// Share of requests answered 500/502/503.
    pub server_errors: f64,
    /// Share of requests whose connection is dropped without an answer.
    pub drops: f64,
    /// Share of requests answered late.
    pub slow: f64,
    /// How late.
    pub slow_by: Duration,
    /// The API's own limit on `/v1/files` and `/v1/images` (per minute,
    /// burst): above it, 429 with `Retry-After`.
    pub rate_limit: Option<(u32, u32)>,
    /// A fixed `Retry-After` for every 429, instead of the time to the
    /// next free slot.
    pub retry_after: Option<u64>,
    /// More ids than this in one `/v1/images` call: a render-timeout 400.
    pub render_limit: usize,
    /// Node ids whose render is `null`.
    pub null_renders: Vec<String>,
    /// Faults only hit API requests with a number (0-based, API requests
    /// only) in this range; `None`: all.
    pub api_window: Option<std::ops::Range<usize>>,
    /// After this many API requests the designers save the file: its
    /// `version` changes. Earlier versions stay servable, as Figma's do;
    /// a `version=` it never had is a 400.
    pub new_version_after: Option<usize>,
}

impl Faults {
    /// No faults at all.
    pub fn none() -> Self {
        Self {
            seed: 0,
            server_errors: 0.0,
            drops: 0.0,
            slow: 0.0,
            slow_by: Duration::ZERO,
            rate_limit: None,
            retry_after: None,
            render_limit: usize::MAX,
            null_renders: Vec::new(),
            api_window: None,
            new_version_after: None,
        }
    }

    /// The demo's mix: Figma's Tier-1 limit scaled up so the demo finishes
    /// in seconds, a few 5xx, dropped connections and slow replies.
    pub fn demo(seed: u64) -> Self {
        Self {
            seed,
            server_errors: 0.04,
            drops: 0.02,
            slow: 0.03,
            slow_by: Duration::from_millis(1_500),
            rate_limit: Some((60, 3)),
            retry_after: None,
            render_limit: 100,
            null_renders: Vec::new(),
            api_window: None,
            new_version_after: None,
        }
    }
}

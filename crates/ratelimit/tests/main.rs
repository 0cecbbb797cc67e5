//! Integration tests of steadfast-ratelimit, on tokio's paused clock.

mod adaptive;
mod basics;
mod events;
mod fairness;
mod http;
mod layer;
mod properties;
#[cfg(feature = "reqwest-middleware")]
mod reqwest;
mod strict;

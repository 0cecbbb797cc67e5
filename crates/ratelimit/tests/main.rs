//! Integration tests of steadfast-ratelimit, on tokio's paused clock.

mod adaptive;
mod basics;
mod events;
mod fairness;
mod http;
mod layer;
mod properties;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "reqwest-middleware")]
mod reqwest;
mod strict;

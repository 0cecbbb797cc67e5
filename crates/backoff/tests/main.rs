//! Integration tests of steadfast-backoff: one binary, one module per area.

mod alloc;
mod driver;
mod http;
mod layer;
#[cfg(feature = "reqwest-middleware")]
mod reqwest;
mod schedules;

//! Integration tests of steadfast-backoff: one binary, one module per area.

mod alloc;
mod driver;
mod http;
mod layer;
mod schedules;

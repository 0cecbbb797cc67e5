//! Integration tests of steadfast-ratelimit, on tokio's paused clock.

mod basics;

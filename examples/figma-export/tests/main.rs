//! End-to-end tests of figma-export against the fake Figma server on
//! 127.0.0.1.

mod e2e;

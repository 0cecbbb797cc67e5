//! figma-export: a fault-tolerant Figma exporter built on the steadfast
//! crates, and the fake Figma server its demo and tests run against.
//!
//! The binary's `--help` lists the flags; the workspace README shows the
//! two commands (the demo, the tests).

pub mod export;
pub mod fake;
pub mod filter;
pub mod manifest;
pub mod names;
pub mod tokens;

pub use export::{
    run, CheckpointUse, ExportError, Format, Options, Resume, Summary, Token, FIGMA_API,
};

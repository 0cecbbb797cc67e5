//! figma-export: a fault-tolerant Figma exporter built on the steadfast
//! crates, and the fake Figma server its demo and tests run against.
//!
//! The binary's `--help` lists the flags; the workspace README shows the
//! two commands (the demo, the tests).

mod error;
pub mod export;
pub mod fake;
mod figma;
pub mod filter;
pub mod manifest;
pub mod names;
mod plan;
mod progress;
mod resume;
mod stack;
pub mod tokens;

pub use error::{ExitKind, ExportError};
pub use export::{run, Format, Options, Summary, Token, FIGMA_API};
pub use resume::{CheckpointUse, Resume};

//! The `figma-export` command line.
//!
//! Exit codes: 0 success, 2 usage, 3 recoverable (run again later, or with
//! `--resume`), 4 fatal (fix the token, the file key, the output path).

use std::process::ExitCode;

use clap::Parser;

mod cli;

use cli::{async_main, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.verbose {
        // The crates' structured events (retries, waits, rate cuts, pauses,
        // file steps) on stderr; everything else stays quiet.
        use tracing_subscriber::prelude::*;
        let targets = tracing_subscriber::filter::Targets::new()
            .with_target("steadfast_backoff", tracing::Level::INFO)
            .with_target("steadfast_ratelimit", tracing::Level::INFO)
            .with_target("steadfast_atomicfs", tracing::Level::INFO)
            .with_target("steadfast_checkpoint", tracing::Level::INFO)
            .with_target("steadfast_http", tracing::Level::INFO);
        let _ = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(false)
                    .without_time()
                    .with_filter(targets),
            )
            .try_init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("✗ cannot start: {e}");
            return ExitCode::from(4);
        }
    };
    runtime.block_on(async_main(cli))
}

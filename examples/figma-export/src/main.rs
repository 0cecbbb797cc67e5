//! The `figma-export` command line.
//!
//! Exit codes: 0 success, 2 usage, 3 recoverable (run again later, or with
//! `--resume`), 4 fatal (fix the token, the file key, the output path).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use figma_export::fake::{FakeFile, FakeServer, Faults, FILE_KEY, TOKEN};
use figma_export::{run, Format, Options, Token, FIGMA_API};
use steadfast_ratelimit::{Per, Rate};

/// Export colors, icons and images from a Figma file, surviving 429s,
/// flaky networks and crashes.
#[derive(Debug, Parser)]
#[command(name = "figma-export", version, after_help = EXIT_CODES)]
struct Cli {
    /// The file key (from the file's URL: figma.com/design/<KEY>/...).
    #[arg(long = "file", value_name = "KEY", required_unless_present = "demo")]
    file: Option<String>,
    /// Output directory.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Formats: svg and pdf for icons, png for images.
    #[arg(long, value_delimiter = ',', default_value = "svg,png")]
    formats: Vec<Format>,
    /// PNG scales.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    scales: Vec<u32>,
    /// Node ids per /v1/images call.
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Downloads at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// The API rate, e.g. 10/min (Figma's Tier 1 on a Pro plan) or "25/min burst 3".
    #[arg(long, value_name = "RATE")]
    rate_limit: Option<Rate>,
    /// Retries per request.
    #[arg(long, default_value_t = 5)]
    max_retries: u32,
    /// The longest Retry-After to wait for, in seconds; a longer one stops the export (exit 3).
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    max_retry_after: u64,
    /// Per-request timeout, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    timeout: u64,
    /// Stop at the first fault (exit 3, checkpoint saved).
    #[arg(long)]
    fail_fast: bool,
    /// Continue an export that stopped, skipping what is done.
    #[arg(long, conflicts_with = "restart")]
    resume: bool,
    /// Discard an earlier export's checkpoint and start over.
    #[arg(long)]
    restart: bool,
    /// Show the rate limiter's status line.
    #[arg(long, short)]
    verbose: bool,
    /// No progress output.
    #[arg(long, short, conflicts_with = "verbose")]
    quiet: bool,
    /// List what would be exported; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// The API's base URL (for proxies and tests).
    #[arg(long, value_name = "URL", default_value = FIGMA_API)]
    api_url: String,
    /// Run against a built-in fake Figma server (no token needed).
    #[arg(long)]
    demo: bool,
    /// The demo server's seed.
    #[arg(long, default_value_t = 7, requires = "demo")]
    seed: u64,
}

const EXIT_CODES: &str = "\
Exit codes: 0 success · 2 usage · 3 recoverable (try again later, or run again with --resume) · 4 fatal (fix the token, the file key or the output path)

The token comes from the FIGMA_TOKEN environment variable.";

fn main() -> ExitCode {
    let cli = Cli::parse();
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

async fn async_main(cli: Cli) -> ExitCode {
    let (api_url, file_key, token, default_rate) = if cli.demo {
        let faults = Faults::demo(cli.seed);
        let server = match FakeServer::start(FakeFile::generate(cli.seed), faults).await {
            Ok(server) => server,
            Err(e) => {
                eprintln!("✗ cannot start the demo server: {e}");
                return ExitCode::from(4);
            }
        };
        if !cli.quiet {
            eprintln!(
                "demo: a fake Figma API on {} (30 requests/min, burst 2; seeded 5xx, dropped connections, slow replies)",
                server.url()
            );
        }
        // Faster than the server allows: the limiter meets 429s and adapts.
        let rate = Rate::new(120, Per::Minute).and_then(|r| r.with_burst(4));
        (server.url(), FILE_KEY.to_string(), TOKEN.to_string(), rate)
    } else {
        let Ok(token) = std::env::var("FIGMA_TOKEN") else {
            eprintln!("✗ FIGMA_TOKEN is not set: create a personal access token in Figma (Settings → Security) and export FIGMA_TOKEN=...");
            return ExitCode::from(2);
        };
        let file = cli.file.clone().unwrap_or_default();
        // Figma's Tier 1 on a Pro plan.
        (cli.api_url.clone(), file, token, Rate::new(10, Per::Minute))
    };
    let Some(out) = cli
        .out
        .clone()
        .or_else(|| cli.demo.then(|| PathBuf::from("figma-demo-export")))
    else {
        eprintln!("✗ --out DIR is required: where should the files go?");
        return ExitCode::from(2);
    };
    let rate = match (cli.rate_limit, default_rate) {
        (Some(rate), _) | (None, Ok(rate)) => rate,
        (None, Err(e)) => {
            eprintln!("✗ {e}");
            return ExitCode::from(2);
        }
    };
    let options = Options {
        file_key,
        out: out.clone(),
        formats: cli.formats,
        scales: cli.scales,
        batch_size: cli.batch_size,
        concurrency: cli.concurrency,
        rate_limit: rate,
        max_retries: cli.max_retries,
        max_retry_after: Duration::from_secs(cli.max_retry_after),
        timeout: Duration::from_secs(cli.timeout.max(1)),
        fail_fast: cli.fail_fast,
        resume: cli.resume,
        restart: cli.restart,
        verbose: cli.verbose,
        quiet: cli.quiet,
        dry_run: cli.dry_run,
        api_url,
        token: Token::new(token),
    };
    match run(options).await {
        Ok(summary) => {
            if !cli.quiet {
                let failed = if summary.failed.is_empty() {
                    String::new()
                } else {
                    format!(", {} failed", summary.failed.len())
                };
                eprintln!(
                    "✓ Exported {} files and {} colors to {} ({} skipped from the checkpoint{failed}; {} retried, {} throttled) in {:.1}s",
                    summary.exported,
                    summary.colors,
                    out.display(),
                    summary.skipped,
                    summary.retried,
                    summary.throttled,
                    summary.elapsed.as_secs_f64()
                );
            }
            if summary.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                eprintln!("  {} items could not be rendered; run again with --resume to retry only those.", summary.failed.len());
                ExitCode::from(3)
            }
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::from(u8::try_from(error.code).unwrap_or(4))
        }
    }
}

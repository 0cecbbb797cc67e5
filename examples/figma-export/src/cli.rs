//! The flags and the config file, merged into the export's options.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use figma_export::fake::{FakeFile, FakeServer, Faults, FILE_KEY, TOKEN};
use figma_export::filter::{Filters, Globs};
use figma_export::tokens::TokensFormat;
use figma_export::{run, Format, Options, Resume, Token, FIGMA_API};
use steadfast_ratelimit::{Per, Rate};

/// Export colors, icons and images from a Figma file, surviving 429s,
/// flaky networks and crashes.
#[derive(Debug, Parser)]
#[command(name = "figma-export", version, after_help = EXIT_CODES)]
pub(crate) struct Cli {
    /// The file key (from the file's URL: figma.com/design/<KEY>/...).
    #[arg(long = "file", value_name = "KEY")]
    file: Option<String>,
    /// A TOML file holding any of these settings (flags win over it).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Output directory.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// The colors.json format: dtcg (DTCG 2025.10, nested groups,
    /// structured colors) or legacy (the flat draft) [default: dtcg].
    #[arg(long, value_enum, value_name = "FORMAT")]
    tokens_format: Option<TokensArg>,
    /// Pages whose components are icons: globs, comma-separated, matched
    /// case-insensitively [default: Icons].
    #[arg(long, value_delimiter = ',', value_name = "GLOB")]
    icons_page: Option<Vec<String>>,
    /// Frames or sections (at any depth) whose components are icons [default: *, any or none].
    #[arg(long, value_delimiter = ',', value_name = "GLOB")]
    icons_frame: Option<Vec<String>>,
    /// Pages whose frames are images [default: Images].
    #[arg(long, value_delimiter = ',', value_name = "GLOB")]
    images_page: Option<Vec<String>>,
    /// Formats: svg and pdf for icons, png for images [default: svg,png].
    #[arg(long, value_delimiter = ',')]
    formats: Option<Vec<Format>>,
    /// PNG scales [default: 1,2,3].
    #[arg(long, value_delimiter = ',')]
    scales: Option<Vec<u32>>,
    /// Node ids per /v1/images call [default: 100].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Downloads at once [default: 16].
    #[arg(long)]
    concurrency: Option<usize>,
    /// The API rate, e.g. 10/min (Figma's Tier 1 on a Pro plan) or "25/min burst 3".
    #[arg(long, value_name = "RATE")]
    rate_limit: Option<Rate>,
    /// Share the rate limit through Redis with every exporter using the same token (redis://host:port/db).
    #[arg(long, value_name = "URL")]
    rate_limit_redis: Option<String>,
    /// Retries per request [default: 5].
    #[arg(long)]
    max_retries: Option<u32>,
    /// The longest Retry-After to wait for, in seconds; a longer one stops the export (exit 3) [default: 300].
    #[arg(long, value_name = "SECS")]
    max_retry_after: Option<u64>,
    /// Per-request timeout, in seconds [default: 30].
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
    /// Stop at the first fault (exit 3, checkpoint saved).
    #[arg(long)]
    fail_fast: bool,
    /// Continue an export that stopped, skipping what is done;
    /// `--resume=auto` continues when the checkpoint is valid and starts
    /// over (saying why) when it is not, e.g. after the file changed.
    #[arg(
        long,
        value_name = "auto",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "on",
        conflicts_with = "restart"
    )]
    resume: Option<ResumeArg>,
    /// Discard an earlier export's checkpoint and start over.
    #[arg(long)]
    restart: bool,
    /// Show the rate limiter's status line.
    #[arg(long, short)]
    pub(crate) verbose: bool,
    /// No progress output.
    #[arg(long, short, conflicts_with = "verbose")]
    quiet: bool,
    /// List what would be exported; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// The API's base URL, for proxies and tests [default: https://api.figma.com].
    #[arg(long, value_name = "URL")]
    api_url: Option<String>,
    /// Run against a built-in fake Figma server (no token needed).
    #[arg(long)]
    demo: bool,
    /// The demo server's seed.
    #[arg(long, default_value_t = 8, requires = "demo")]
    seed: u64,
}

const EXIT_CODES: &str = "\
Exit codes: 0 success · 2 usage · 3 recoverable (try again later, or run again with --resume) · 4 fatal (fix the token, the file key or the output path)

The token comes from the FIGMA_TOKEN environment variable.";

/// `--tokens-format`.
#[derive(Clone, Copy, Debug, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
enum TokensArg {
    /// DTCG 2025.10.
    Dtcg,
    /// The flat draft format of earlier versions.
    Legacy,
}

/// `--resume` (on) or `--resume=auto`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ResumeArg {
    /// Continue the checkpoint; refuse one that cannot be continued.
    On,
    /// Continue when valid, else start over.
    Auto,
}

/// What a `--config` file may hold: the flags' settings, in kebab-case.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    file: Option<String>,
    out: Option<PathBuf>,
    formats: Option<Vec<String>>,
    scales: Option<Vec<u32>>,
    batch_size: Option<usize>,
    concurrency: Option<usize>,
    rate_limit: Option<String>,
    rate_limit_redis: Option<String>,
    max_retries: Option<u32>,
    max_retry_after: Option<u64>,
    timeout: Option<u64>,
    fail_fast: Option<bool>,
    api_url: Option<String>,
    icons_page: Option<Vec<String>>,
    icons_frame: Option<Vec<String>>,
    images_page: Option<Vec<String>>,
    tokens_format: Option<TokensArg>,
}

fn load_config(path: &std::path::Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("✗ cannot read the config file {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("✗ {}: {e}", path.display()))
}

/// The usage error of exit code 2.
fn usage(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("{message}");
    ExitCode::from(2)
}

pub(crate) async fn async_main(cli: Cli) -> ExitCode {
    let config = match &cli.config {
        Some(path) => match load_config(path) {
            Ok(config) => config,
            Err(message) => return usage(message),
        },
        None => FileConfig::default(),
    };
    let formats = match (cli.formats.clone(), &config.formats) {
        (Some(formats), _) => formats,
        (None, Some(names)) => match names
            .iter()
            .map(|n| n.parse())
            .collect::<Result<Vec<Format>, _>>()
        {
            Ok(formats) => formats,
            Err(e) => return usage(format!("✗ formats in the config file: {e}")),
        },
        (None, None) => vec![Format::Svg, Format::Png],
    };
    let configured_rate = match (cli.rate_limit, &config.rate_limit) {
        (Some(rate), _) => Some(rate),
        (None, Some(text)) => match text.parse::<Rate>() {
            Ok(rate) => Some(rate),
            Err(e) => return usage(format!("✗ rate-limit in the config file: {e}")),
        },
        (None, None) => None,
    };
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
                "demo: a fake Figma API on {} (60 requests/min, burst 3; seeded 5xx, dropped connections, slow replies)",
                server.url()
            );
        }
        // Faster than the server allows: the limiter meets 429s and adapts.
        let rate = Rate::new(180, Per::Minute).and_then(|r| r.with_burst(4));
        (server.url(), FILE_KEY.to_string(), TOKEN.to_string(), rate)
    } else {
        let Some(file) = cli.file.clone().or(config.file.clone()) else {
            return usage("✗ --file KEY is required (the key in the file's URL: figma.com/design/<KEY>/...), or --demo");
        };
        let Ok(token) = std::env::var("FIGMA_TOKEN") else {
            return usage("✗ FIGMA_TOKEN is not set: create a personal access token in Figma (Settings → Security) and export FIGMA_TOKEN=...");
        };
        let api_url = cli
            .api_url
            .clone()
            .or(config.api_url.clone())
            .unwrap_or_else(|| FIGMA_API.to_string());
        // Figma's Tier 1 on a Pro plan.
        (api_url, file, token, Rate::new(10, Per::Minute))
    };
    let Some(out) = cli
        .out
        .clone()
        .or(config.out.clone())
        .or_else(|| cli.demo.then(|| PathBuf::from("figma-demo-export")))
    else {
        return usage("✗ --out DIR is required: where should the files go?");
    };
    let rate = match (configured_rate, default_rate) {
        (Some(rate), _) | (None, Ok(rate)) => rate,
        (None, Err(e)) => return usage(format!("✗ {e}")),
    };
    let options = Options {
        file_key,
        out: out.clone(),
        formats,
        scales: cli
            .scales
            .clone()
            .or(config.scales)
            .unwrap_or_else(|| vec![1, 2, 3]),
        // The demo asks for smaller batches: more API calls, so the rate
        // limit and its 429s show.
        batch_size: cli
            .batch_size
            .or(config.batch_size)
            .unwrap_or(if cli.demo { 25 } else { 100 }),
        concurrency: cli.concurrency.or(config.concurrency).unwrap_or(16),
        rate_limit: rate,
        rate_limit_redis: cli.rate_limit_redis.clone().or(config.rate_limit_redis),
        max_retries: cli.max_retries.or(config.max_retries).unwrap_or(5),
        max_retry_after: Duration::from_secs(
            cli.max_retry_after
                .or(config.max_retry_after)
                .unwrap_or(300),
        ),
        timeout: Duration::from_secs(cli.timeout.or(config.timeout).unwrap_or(30).max(1)),
        fail_fast: cli.fail_fast || config.fail_fast.unwrap_or(false),
        resume: match cli.resume {
            None => Resume::Off,
            Some(ResumeArg::On) => Resume::On,
            Some(ResumeArg::Auto) => Resume::Auto,
        },
        restart: cli.restart,
        verbose: cli.verbose,
        quiet: cli.quiet,
        dry_run: cli.dry_run,
        tokens_format: match cli.tokens_format.or(config.tokens_format) {
            Some(TokensArg::Legacy) => TokensFormat::Legacy,
            Some(TokensArg::Dtcg) | None => TokensFormat::Dtcg2025,
        },
        filters: {
            let defaults = Filters::default();
            let pick = |flag: Option<Vec<String>>, file: Option<Vec<String>>, default: Globs| {
                flag.or(file).map_or(default, Globs::new)
            };
            Filters {
                icons_page: pick(cli.icons_page, config.icons_page, defaults.icons_page),
                icons_frame: pick(cli.icons_frame, config.icons_frame, defaults.icons_frame),
                images_page: pick(cli.images_page, config.images_page, defaults.images_page),
            }
        },
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

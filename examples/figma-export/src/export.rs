//! The export: fetch the file, write the colors, render and download the
//! icons and images through one tower stack per kind of request, sharing
//! one rate limiter, checkpointed item by item.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use steadfast_atomicfs::{Disk, PersistError, PersistLayer, Persisted};
use steadfast_backoff::{HttpPolicy, Jitter, Retrier, RetryError, RetryLayer, Schedule};
use steadfast_checkpoint::{CheckpointError, CheckpointLayer, Checkpointed, FileStore};
use steadfast_ratelimit::redis::{FailurePolicy, RedisLimiter};
use steadfast_ratelimit::{Limiter, Rate, TokenBucket};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

use crate::error::{
    api_failure, download_failure, stopped, write_failure, Cause, ExportError, RESUME_HINT,
};
use crate::figma::{
    api_errors, check_status, parse_color_nodes, parse_file, FileInfo, ImagesResponse,
};
use crate::plan::{checkpoint_config, plan_items, prepare_folders, write_colors};
use crate::progress::{Counters, Progress};
use crate::resume::{open_checkpoint, CheckpointUse, Resume};
use crate::stack::{
    api_stack, classify_download, download_service, http_client, Download, DownloadError,
};
use crate::tokens::{Color, TokensFormat};

/// The Figma API.
pub const FIGMA_API: &str = "https://api.figma.com";

/// A secret: never printed, not even by `Debug`.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    /// Wraps a token.
    pub fn new(token: String) -> Self {
        Self(token)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// An output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Format {
    /// Icons as SVG.
    Svg,
    /// Icons as PDF.
    Pdf,
    /// Images as PNG, at each scale.
    Png,
}

impl Format {
    /// The name in URLs and file extensions.
    pub fn name(self) -> &'static str {
        match self {
            Self::Svg => "svg",
            Self::Pdf => "pdf",
            Self::Png => "png",
        }
    }

    pub(crate) fn magic(self) -> &'static [u8] {
        match self {
            Self::Svg => b"<svg",
            Self::Pdf => b"%PDF",
            Self::Png => b"\x89PNG\r\n\x1a\n",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "svg" => Ok(Self::Svg),
            "pdf" => Ok(Self::Pdf),
            "png" => Ok(Self::Png),
            other => Err(format!("unknown format {other:?}; use svg, pdf or png")),
        }
    }
}

/// Everything an export needs.
#[derive(Clone, Debug)]
pub struct Options {
    /// The Figma file key.
    pub file_key: String,
    /// Where the files go.
    pub out: PathBuf,
    /// Formats: svg/pdf for icons, png for images.
    pub formats: Vec<Format>,
    /// PNG scales.
    pub scales: Vec<u32>,
    /// Ids per `/v1/images` call.
    pub batch_size: usize,
    /// Downloads at once.
    pub concurrency: usize,
    /// The API rate (the ceiling the limiter adapts under).
    pub rate_limit: Rate,
    /// Share the rate through this Redis (`redis://host:port/db`) with every
    /// exporter using the same token; `None`: this process alone.
    pub rate_limit_redis: Option<String>,
    /// Retries per request.
    pub max_retries: u32,
    /// The longest `Retry-After` to wait for; longer ones stop the export.
    pub max_retry_after: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Stop at the first fault.
    pub fail_fast: bool,
    /// What to do with an earlier run's checkpoint.
    pub resume: Resume,
    /// Discard a checkpoint and start over.
    pub restart: bool,
    /// Show the limiter's status line.
    pub verbose: bool,
    /// No progress output.
    pub quiet: bool,
    /// List what would be exported, write nothing.
    pub dry_run: bool,
    /// Which `colors.json` to write.
    pub tokens_format: TokensFormat,
    /// Which pages and frames hold icons and images.
    pub filters: crate::filter::Filters,
    /// The API's base URL.
    pub api_url: String,
    /// The token.
    pub token: Token,
}

/// What an export did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// What became of an earlier run's checkpoint.
    pub checkpoint: CheckpointUse,
    /// Files an earlier complete export wrote that this one did not
    /// (renamed or deleted in Figma), removed.
    pub removed: Vec<PathBuf>,
    /// Files written by this run.
    pub exported: u64,
    /// Items skipped because an earlier run had done them.
    pub skipped: u64,
    /// Items that failed (null renders); the checkpoint is kept.
    pub failed: Vec<String>,
    /// Requests retried.
    pub retried: u64,
    /// 429s met.
    pub throttled: u64,
    /// Colors written.
    pub colors: usize,
    /// Wall time.
    pub elapsed: Duration,
}

/// One item of the export.
#[derive(Clone, Debug)]
pub(crate) struct Item {
    pub(crate) node: String,
    pub(crate) format: Format,
    pub(crate) scale: u32,
    pub(crate) path: PathBuf,
}

impl Item {
    fn key(&self) -> String {
        format!("{}/{}@{}", self.node, self.format.name(), self.scale)
    }
}

/// The rate limiter: this process's own, or one shared through Redis by
/// every exporter using the same token (keyed by a hash of the token, never
/// the token itself). If Redis is unreachable, each exporter falls back to
/// a local bucket at the full rate, which adapts to the 429s that follow.
fn limiter(options: &Options) -> Result<Arc<dyn Limiter>, ExportError> {
    let Some(url) = &options.rate_limit_redis else {
        return Ok(Arc::new(TokenBucket::new(options.rate_limit)));
    };
    let name = format!(
        "figma-export:{:016x}",
        crate::names::fnv1a(options.token.0.as_bytes())
    );
    let limiter = RedisLimiter::builder(url.as_str(), name, options.rate_limit)
        .failure_policy(FailurePolicy::LocalBucket { share: 1 })
        .build()
        .map_err(|e| ExportError::usage(format!("✗ --rate-limit-redis: {e}")))?;
    Ok(Arc::new(limiter))
}

/// Runs an export.
///
/// # Errors
///
/// [`ExportError`] with the exit code and the message.
pub async fn run(options: Options) -> Result<Summary, ExportError> {
    let started = Instant::now();
    let progress = Progress::new(options.quiet);
    let counters = Arc::new(Counters::default());

    // The HTTP client, the shared limiter and the API stack:
    // retry → rate limit → fetch.
    let client = http_client();
    let limiter = limiter(&options)?;
    let retries = if options.fail_fast {
        0
    } else {
        options.max_retries
    };
    let schedule = Schedule::exponential(Duration::from_secs(1), 2.0)
        .map(|s| {
            s.jitter(Jitter::Full)
                .cap(Duration::from_secs(30))
                .max_retries(retries)
        })
        .map_err(|e| ExportError::usage(format!("✗ {e}")))?;
    let hook = {
        let progress = progress.clone();
        let counters = Arc::clone(&counters);
        move |event: &steadfast_backoff::RetryEvent| {
            counters.retried.fetch_add(1, Ordering::Relaxed);
            progress.say(event.to_string());
        }
    };
    let api_retrier = Retrier::new(schedule.clone())
        .policy(HttpPolicy::new().classify_errors(api_errors))
        .max_retry_after(options.max_retry_after)
        .on_retry(hook.clone());
    let timeout = options.timeout;
    let api = api_stack(client.clone(), limiter.clone(), api_retrier, timeout);
    let api_get = |path: String| {
        let mut api = api.clone();
        let token = options.token.0.clone();
        let url = format!("{}{path}", options.api_url.trim_end_matches('/'));
        async move {
            let request = Request::get(&url)
                .header("x-figma-token", token)
                .body(Empty::new())
                .map_err(|e| ExportError::usage(format!("✗ bad --api-url {url:?}: {e}")))?;
            let response = api
                .ready()
                .await
                .map_err(|e| api_failure(&e))?
                .call(request)
                .await
                .map_err(|e| api_failure(&e))?;
            check_status(&response)?;
            Ok::<_, ExportError>(response.into_body())
        }
    };

    // 1. The file, and its color styles' values.
    let (file, colors) = read_file(&api_get, &options, &progress).await?;
    if options.verbose {
        progress.println(format!("  · {}", limiter.status()));
    }

    // 2. The items, with safe, unique paths.
    let items = plan_items(&file, &options, &progress);
    if options.dry_run {
        list_items(&items);
        return Ok(Summary {
            colors: colors.len(),
            elapsed: started.elapsed(),
            ..Summary::default()
        });
    }

    // 3. The checkpoint: always on, keyed by node, format and scale.
    std::fs::create_dir_all(&options.out).map_err(|e| {
        ExportError::fatal(format!(
            "✗ cannot create {}: {e}; choose another --out",
            options.out.display()
        ))
    })?;
    let config = checkpoint_config(&options, &file.version)?;
    let (store, checkpoint_use) = open_checkpoint(config, &options)?;
    checkpoint_use.announce(&progress);
    let store = Arc::new(Mutex::new(store));

    prepare_folders(&items, &options.out, &progress)?;

    // 4. Colors: two small files, written atomically.
    write_colors(&colors, &options, &progress)?;

    // 5. Renders and downloads. The download stack:
    // checkpoint → persist → retry → download (no token).
    let download_retrier = Retrier::new(schedule)
        .policy(|outcome: &Result<Bytes, DownloadError>| classify_download(outcome))
        .on_retry(hook);
    let fetch_file = download_service(client.clone(), timeout);
    let out = options.out.clone();
    let stack = CheckpointLayer::new(Arc::clone(&store), |d: &Download| d.key.clone()).layer(
        PersistLayer::new(Disk::new(), move |d: &Download| out.join(&d.path))
            .layer(RetryLayer::new(download_retrier).layer(fetch_file)),
    );

    let mut summary = Summary {
        colors: colors.len(),
        checkpoint: checkpoint_use,
        ..Summary::default()
    };
    // What this export writes, for the manifest.
    let mut written: BTreeSet<PathBuf> = items.iter().map(|item| item.path.clone()).collect();
    written.extend(["colors.json", "colors.css"].map(PathBuf::from));
    let mut groups: BTreeMap<(Format, u32), Vec<Item>> = BTreeMap::new();
    for item in items {
        groups
            .entry((item.format, item.scale))
            .or_default()
            .push(item);
    }
    let group_ctx = GroupContext {
        options: &options,
        version: &file.version,
        limiter: &*limiter,
        progress: &progress,
        store: &store,
    };
    for ((format, scale), group) in groups {
        download_group(
            &group_ctx,
            format,
            scale,
            group,
            &stack,
            &api_get,
            &mut summary,
        )
        .await?;
    }

    drop(stack);
    summary.retried = counters.retried.load(Ordering::Relaxed);
    summary.throttled = limiter.status().throttled;
    summary.elapsed = started.elapsed();
    let store = Arc::try_unwrap(store)
        .map_err(|_| ExportError::fatal("✗ internal: the checkpoint is still shared"))?
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if summary.failed.is_empty() {
        summary.removed = finish_complete(store, &written, &options.out, &progress)?;
    }
    Ok(summary)
}

/// Reads the file (`/v1/files`) and its color styles' values from their
/// nodes (`/nodes`, in batches, pinned to the file's version).
async fn read_file<G, Fut>(
    api_get: &G,
    options: &Options,
    progress: &Progress,
) -> Result<(FileInfo, BTreeMap<String, Color>), ExportError>
where
    G: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<Bytes, ExportError>>,
{
    let spinner = progress.phase("file", 1);
    progress.println(format!("GET /v1/files/{}", options.file_key));
    spinner.set_message(format!("GET /v1/files/{}", options.file_key));
    let body = api_get(format!("/v1/files/{}", options.file_key)).await?;
    let file = parse_file(&body, &options.filters)?;
    for warning in &file.warnings {
        progress.println(format!("  ! {warning}"));
        tracing::warn!(target: "figma_export", "{warning}");
    }
    // The color styles' values, from their nodes (`/nodes`, in batches).
    let mut colors = BTreeMap::new();
    let color_ids: Vec<(String, String)> = file.color_nodes.clone().into_iter().collect();
    for chunk in color_ids.chunks(options.batch_size.max(1)) {
        let wanted: BTreeMap<String, String> = chunk.iter().cloned().collect();
        let ids: Vec<&str> = wanted.keys().map(String::as_str).collect();
        let body = api_get(format!(
            "/v1/files/{}/nodes?ids={}&version={}",
            options.file_key,
            ids.join(","),
            file.version
        ))
        .await?;
        for id in parse_color_nodes(&body, &wanted, &mut colors)? {
            progress.println(format!(
                "  ! color node {id} is gone or has no solid fill; skipped"
            ));
        }
    }
    spinner.inc(1);
    spinner.finish_with_message(format!(
        "version {}: {} colors, {} icons, {} images",
        file.version,
        colors.len(),
        file.icons.len(),
        file.images.len()
    ));
    Ok((file, colors))
}

/// `--dry-run`: each file that would be written, and from what.
fn list_items(items: &[Item]) {
    for item in items {
        println!(
            "{} ← {} {}@{}x",
            item.path.display(),
            item.node,
            item.format.name(),
            item.scale
        );
    }
}

/// What every group's downloads read.
struct GroupContext<'a> {
    options: &'a Options,
    version: &'a str,
    limiter: &'a dyn Limiter,
    progress: &'a Progress,
    store: &'a Mutex<FileStore<()>>,
}

/// Renders and downloads one group (one format at one scale): skips what
/// the checkpoint has, renders in batches (halving a batch Figma cannot
/// render in time), downloads with bounded concurrency while the next batch
/// renders, and lets the downloads under way land before stopping.
async fn download_group<S, G, Fut>(
    ctx: &GroupContext<'_>,
    format: Format,
    scale: u32,
    group: Vec<Item>,
    stack: &S,
    api_get: &G,
    summary: &mut Summary,
) -> Result<(), ExportError>
where
    S: Service<
            Download,
            Response = Checkpointed<Persisted>,
            Error = CheckpointError<PersistError<RetryError<Bytes, DownloadError>>>,
        > + Clone
        + Send
        + 'static,
    S::Future: Send,
    G: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<Bytes, ExportError>>,
{
    let label = if format == Format::Png {
        format!("images @{scale}x")
    } else {
        format!("icons {}", format.name())
    };
    let bar = ctx.progress.phase(&label, group.len() as u64);
    let (done, todo): (Vec<Item>, Vec<Item>) = {
        let store = ctx
            .store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        group
            .into_iter()
            .partition(|item| store.is_done(&item.key()))
    };
    summary.skipped += done.len() as u64;
    bar.inc(done.len() as u64);
    let mut batches: VecDeque<Vec<Item>> = todo
        .chunks(ctx.options.batch_size.max(1))
        .map(<[Item]>::to_vec)
        .collect();
    let mut downloads = tokio::task::JoinSet::new();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(ctx.options.concurrency.max(1)));
    while let Some(batch) = batches.pop_front() {
        if ctx.options.verbose {
            let status = ctx.limiter.status().to_string();
            if bar.is_hidden() && !ctx.options.quiet {
                eprintln!("  · {status}");
            }
            bar.set_message(status);
        }
        let ids: Vec<&str> = batch.iter().map(|i| i.node.as_str()).collect();
        let path = format!(
            "/v1/images/{}?ids={}&format={}&scale={scale}&version={}",
            ctx.options.file_key,
            ids.join(","),
            format.name(),
            ctx.version
        );
        let body = match api_get(path).await {
            Ok(body) => body,
            Err(e) if e.cause == Some(Cause::RenderTimeout) && batch.len() > 1 => {
                let half = batch.len() / 2;
                batches.push_front(batch[half..].to_vec());
                batches.push_front(batch[..half].to_vec());
                ctx.progress.println(format!(
                    "  ! render timeout: splitting a batch of {} ids",
                    batch.len()
                ));
                continue;
            }
            Err(e) => {
                // Let the downloads already under way land (and be
                // recorded) before stopping.
                while let Some(joined) = downloads.join_next().await {
                    if tally(joined, summary).is_ok() {
                        bar.inc(1);
                    }
                }
                return Err(stopped(e, summary));
            }
        };
        let rendered: ImagesResponse = serde_json::from_slice(&body).map_err(|e| {
            ExportError::recoverable(format!(
                "✗ /v1/images answered something else than JSON ({e}). {RESUME_HINT}"
            ))
        })?;
        for item in batch {
            let Some(url) = rendered.images.get(&item.node).cloned().flatten() else {
                ctx.progress.println(format!(
                    "  ! {} could not be rendered by Figma (null); skipped",
                    item.node
                ));
                summary.failed.push(item.key());
                bar.inc(1);
                continue;
            };
            let download = Download {
                key: item.key(),
                url: url.to_string(),
                path: item.path.clone(),
                format,
            };
            let stack = stack.clone();
            let permit = Arc::clone(&semaphore);
            downloads.spawn(async move {
                let _permit = permit.acquire_owned().await;
                stack.oneshot(download).await
            });
        }
        // Downloads overlap with the next batch's render call; count
        // the ones already done.
        while let Some(joined) = downloads.try_join_next() {
            tally(joined, summary).map_err(|e| stopped(e, summary))?;
            bar.inc(1);
        }
    }
    while let Some(joined) = downloads.join_next().await {
        tally(joined, summary).map_err(|e| stopped(e, summary))?;
        bar.inc(1);
    }
    bar.finish_with_message("done");
    ctx.progress.println(format!("  {label}: done"));
    Ok(())
}

/// After a complete export: removes what the last complete export wrote and
/// this one did not, records what this one wrote, and deletes the
/// checkpoint. Returns the stale files removed.
fn finish_complete(
    store: FileStore<()>,
    written: &BTreeSet<PathBuf>,
    out: &std::path::Path,
    progress: &Progress,
) -> Result<Vec<PathBuf>, ExportError> {
    let (earlier, warning) = crate::manifest::read(out);
    if let Some(warning) = warning {
        progress.println(format!("  ! {warning}"));
    }
    let (removed, failed) = crate::manifest::remove_stale(out, &earlier, written);
    for (path, e) in failed {
        progress.println(format!(
            "  ! could not remove the stale {}: {e}",
            path.display()
        ));
    }
    if !removed.is_empty() {
        progress.println(format!(
            "  removed {} files an earlier export wrote that this one did not",
            removed.len()
        ));
    }
    crate::manifest::write(out, written).map_err(|e| write_failure(&e))?;
    store.remove().map_err(|e| {
        ExportError::recoverable(format!(
            "✗ the export is complete but its checkpoint could not be removed: {e}"
        ))
    })?;
    Ok(removed)
}

type Finished = Result<
    Result<
        Checkpointed<Persisted>,
        CheckpointError<PersistError<RetryError<Bytes, DownloadError>>>,
    >,
    tokio::task::JoinError,
>;

/// Counts a finished download, or turns its failure into the export's.
fn tally(joined: Finished, summary: &mut Summary) -> Result<(), ExportError> {
    match joined {
        Ok(Ok(Checkpointed::Done(Persisted { .. }))) => summary.exported += 1,
        Ok(Ok(Checkpointed::Skipped)) => summary.skipped += 1,
        Ok(Err(e)) => return Err(download_failure(e)),
        Err(join) => {
            return Err(ExportError::recoverable(format!(
                "✗ a download task failed: {join}. {RESUME_HINT}"
            )))
        }
    }
    Ok(())
}

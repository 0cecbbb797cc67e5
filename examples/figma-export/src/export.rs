//! The export: fetch the file, write the colors, render and download the
//! icons and images through one tower stack per kind of request, sharing
//! one rate limiter, checkpointed item by item.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;
use steadfast_atomicfs::{Disk, PersistError, PersistLayer, Persisted};
use steadfast_backoff::{
    Action, DefaultErrors, ErrorKind as RetryKind, HttpPolicy, Jitter, Reason, Replay, Retrier,
    RetryError, RetryLayer, Schedule,
};
use steadfast_checkpoint::{
    config_hash, CheckpointError, CheckpointLayer, Checkpointed, Config, FileStore, Opened,
};
use steadfast_http::{Classifier, Verdict};
use steadfast_ratelimit::{Rate, RateLimitError, RateLimitLayer, TokenBucket};
use tokio::time::Instant;
use tower::{BoxError, Layer, Service, ServiceExt};

use crate::names::Names;
use crate::tokens::{color_files, Color, TokensFormat};

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
    fn name(self) -> &'static str {
        match self {
            Self::Svg => "svg",
            Self::Pdf => "pdf",
            Self::Png => "png",
        }
    }

    fn magic(self) -> &'static [u8] {
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

/// What to do with an earlier run's checkpoint (`--resume`, `--resume=auto`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Resume {
    /// Refuse to run over one, saying how to go on (the default).
    #[default]
    Off,
    /// Continue it (`--resume`); one that cannot be continued is refused.
    On,
    /// Continue it when valid, else start over, saying why (`--resume=auto`,
    /// for CI loops).
    Auto,
}

/// What became of an earlier run's checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CheckpointUse {
    /// There was none.
    #[default]
    Fresh,
    /// It was continued: `done` items were already exported.
    Resumed {
        /// Items the earlier run finished.
        done: usize,
    },
    /// It was discarded (`--restart`, or `--resume=auto` on one that could
    /// not be continued).
    StartedOver {
        /// Why: "--restart", or the reason it could not be continued.
        reason: String,
    },
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

/// Why an export stopped, with its exit code.
#[derive(Debug)]
pub struct ExportError {
    /// 2 usage, 3 recoverable (resume later), 4 fatal.
    pub code: i32,
    /// What to tell the user, with the next step.
    pub message: String,
}

impl ExportError {
    fn usage(message: impl Into<String>) -> Self {
        Self {
            code: 2,
            message: message.into(),
        }
    }

    fn recoverable(message: impl Into<String>) -> Self {
        Self {
            code: 3,
            message: message.into(),
        }
    }

    fn fatal(message: impl Into<String>) -> Self {
        Self {
            code: 4,
            message: message.into(),
        }
    }
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

const RESUME_HINT: &str = "Try again later, or run again with --resume";

/// The HTTP client: HTTPS (rustls, Mozilla's roots) for Figma, plain HTTP
/// for `--api-url http://…` (proxies, the demo, tests).
type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

fn http_client() -> HttpClient {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Sends a request and reads the whole body, within the timeout.
async fn fetch(
    client: HttpClient,
    request: Request<Empty<Bytes>>,
    timeout: Duration,
) -> Result<Response<Bytes>, BoxError> {
    let exchange = async {
        let response = client.request(request).await?;
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await?.to_bytes();
        Ok::<_, BoxError>(Response::from_parts(parts, bytes))
    };
    tokio::time::timeout(timeout, exchange).await?
}

/// One file to download and write.
#[derive(Clone, Debug)]
struct Download {
    key: String,
    url: String,
    path: PathBuf,
    format: Format,
}

impl Replay for Download {
    fn replay(&self) -> Option<Self> {
        Some(self.clone())
    }
}

/// Why a download failed.
#[derive(Debug)]
enum DownloadError {
    Status(u16),
    Magic,
    Transport(BoxError),
}

impl fmt::Display for DownloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(code) => write!(f, "the image server answered {code}"),
            Self::Magic => f.write_str("the downloaded file is not the format asked for"),
            Self::Transport(e) => write!(f, "download failed: {e}"),
        }
    }
}

impl std::error::Error for DownloadError {}

/// The retry policy of downloads.
fn classify_download(outcome: &Result<Bytes, DownloadError>) -> Action {
    match outcome {
        Ok(_) => Action::Done,
        Err(DownloadError::Status(code)) if *code >= 500 || *code == 429 => {
            Action::retry(Reason::Status(*code))
        }
        Err(DownloadError::Status(code)) => Action::fail(Reason::Status(*code)),
        Err(DownloadError::Magic) => Action::retry(Reason::Other("wrong bytes")),
        Err(DownloadError::Transport(_)) => Action::retry(Reason::Connection),
    }
}

/// Counters shared with the retry hooks.
#[derive(Default)]
struct Counters {
    retried: AtomicU64,
}

/// The progress line that says why it waits.
#[derive(Clone)]
struct Progress {
    bar: Arc<Mutex<ProgressBar>>,
    quiet: bool,
}

impl Progress {
    fn new(quiet: bool) -> Self {
        Self {
            bar: Arc::new(Mutex::new(ProgressBar::hidden())),
            quiet,
        }
    }

    fn phase(&self, label: &str, len: u64) -> ProgressBar {
        let bar = if self.quiet {
            ProgressBar::hidden()
        } else {
            let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("{prefix:>14} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(label.to_string());
            bar
        };
        *self
            .bar
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = bar.clone();
        bar
    }

    /// Why it waits: on the bar's message, and as a line of its own when
    /// there is no terminal to draw the bar on.
    fn say(&self, message: String) {
        let bar = self
            .bar
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !self.quiet && bar.is_hidden() {
            eprintln!("  ↻ {message}");
        }
        bar.set_message(message);
    }

    fn println(&self, line: String) {
        if self.quiet {
            return;
        }
        let bar = self
            .bar
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if bar.is_hidden() {
            eprintln!("{line}");
        } else {
            bar.println(line);
        }
    }
}

/// One item of the export.
#[derive(Clone, Debug)]
struct Item {
    node: String,
    format: Format,
    scale: u32,
    path: PathBuf,
}

impl Item {
    fn key(&self) -> String {
        format!("{}/{}@{}", self.node, self.format.name(), self.scale)
    }
}

/// The file's parts the export uses.
struct FileInfo {
    /// What the filters found nothing for, with the file's pages.
    warnings: Vec<String>,
    version: String,
    /// Nodes carrying a FILL style: node id → style name.
    color_nodes: BTreeMap<String, String>,
    icons: Vec<(String, String)>,
    images: Vec<(String, String)>,
}

fn parse_file(body: &[u8], filters: &crate::filter::Filters) -> Result<FileInfo, ExportError> {
    let file: Value = serde_json::from_slice(body).map_err(|e| {
        ExportError::fatal(format!(
            "✗ Figma's answer is not JSON ({e}); check --api-url"
        ))
    })?;
    let version = file["version"].as_str().unwrap_or("").to_string();
    let styles = file["styles"].as_object().cloned().unwrap_or_default();
    let mut color_nodes = BTreeMap::new();
    let mut icons = Vec::new();
    let mut images = Vec::new();
    // Each node with its page's name, the names of the frames (and
    // sections) around it and, inside a component set, the set's name.
    let mut stack: Vec<(&Value, String, Vec<String>, Option<String>)> =
        vec![(&file["document"], String::new(), Vec::new(), None)];
    let mut pages = Vec::new();
    while let Some((node, page, frames, set)) = stack.pop() {
        let kind = node["type"].as_str().unwrap_or("");
        let id = node["id"].as_str().unwrap_or("").to_string();
        let name = node["name"].as_str().unwrap_or("").to_string();
        if let Some(style) = node["styles"]["fill"].as_str() {
            let fill_style = styles
                .get(style)
                .filter(|s| s["styleType"].as_str() == Some("FILL"));
            if let Some(definition) = fill_style {
                let style_name = definition["name"].as_str().unwrap_or(&name).to_string();
                color_nodes.insert(id.clone(), style_name);
            }
        }
        let icon_here = filters.icons_page.matches(&page)
            && (filters.icons_frame.is_any()
                || frames.iter().any(|f| filters.icons_frame.matches(f)));
        if kind == "COMPONENT" && icon_here {
            // A variant is named by its properties only ("Size=24,
            // State=Default"): put its set's name first, so that the file
            // is `button/size-24-state-default`.
            let full = match &set {
                Some(set) => format!("{set}/{name}"),
                None => name.clone(),
            };
            icons.push((id.clone(), full));
        } else if kind == "FRAME" && filters.images_page.matches(&page) {
            images.push((id.clone(), name.clone()));
        }
        if kind == "CANVAS" {
            pages.push(name.clone());
        }
        let frames = if matches!(kind, "FRAME" | "SECTION") {
            let mut inner = frames.clone();
            inner.push(name.clone());
            inner
        } else {
            frames
        };
        let set = if kind == "COMPONENT_SET" {
            Some(name.clone())
        } else {
            set
        };
        let page = if kind == "CANVAS" { name } else { page };
        if let Some(children) = node["children"].as_array() {
            for child in children.iter().rev() {
                stack.push((child, page.clone(), frames.clone(), set.clone()));
            }
        }
    }
    icons.sort_by(|a, b| node_order(&a.0, &b.0));
    images.sort_by(|a, b| node_order(&a.0, &b.0));
    let mut warnings = Vec::new();
    if icons.is_empty() {
        warnings.push(format!(
            "no icons: no components on pages matching --icons-page {} (and frames matching --icons-frame {}); the file's pages are: {}",
            filters.icons_page,
            filters.icons_frame,
            pages.join(", ")
        ));
    }
    if images.is_empty() {
        warnings.push(format!(
            "no images: no frames on pages matching --images-page {}; the file's pages are: {}",
            filters.images_page,
            pages.join(", ")
        ));
    }
    Ok(FileInfo {
        warnings,
        version,
        color_nodes,
        icons,
        images,
    })
}

/// The colors from a `/v1/files/:key/nodes` answer: each node's first
/// SOLID fill, under its style's name. A `null` node (deleted since) is
/// skipped.
fn parse_color_nodes(
    body: &[u8],
    wanted: &BTreeMap<String, String>,
    colors: &mut BTreeMap<String, Color>,
) -> Result<Vec<String>, ExportError> {
    let answer: Value = serde_json::from_slice(body).map_err(|e| {
        ExportError::recoverable(format!(
            "✗ /v1/files/…/nodes answered something else than JSON ({e}). {RESUME_HINT}"
        ))
    })?;
    let mut missing = Vec::new();
    for (id, style) in wanted {
        let paint = &answer["nodes"][id]["document"]["fills"][0];
        if paint["type"].as_str() == Some("SOLID") {
            colors.insert(id.clone(), solid_color(style, paint));
        } else {
            missing.push(id.clone());
        }
    }
    Ok(missing)
}

/// Node ids in numeric order ("2:10" after "2:9").
fn node_order(a: &str, b: &str) -> std::cmp::Ordering {
    let parse = |s: &str| -> (u64, u64) {
        let (x, y) = s.split_once(':').unwrap_or((s, "0"));
        (x.parse().unwrap_or(0), y.parse().unwrap_or(0))
    };
    parse(a).cmp(&parse(b)).then_with(|| a.cmp(b))
}

/// A SOLID paint as a [`Color`]: alpha = color.a × opacity.
fn solid_color(name: &str, paint: &Value) -> Color {
    let channel = |v: &Value| v.as_f64().unwrap_or(0.0).clamp(0.0, 1.0);
    let c = &paint["color"];
    let alpha = c["a"].as_f64().unwrap_or(1.0) * paint["opacity"].as_f64().unwrap_or(1.0);
    Color {
        name: name.to_string(),
        rgb: [channel(&c["r"]), channel(&c["g"]), channel(&c["b"])],
        alpha: alpha.clamp(0.0, 1.0),
    }
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
    let limiter = TokenBucket::new(options.rate_limit);
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
    let fetch_client = client.clone();
    let api = RetryLayer::new(api_retrier).layer(RateLimitLayer::new(limiter.clone()).layer(
        tower::service_fn(move |request: Request<Empty<Bytes>>| {
            fetch(fetch_client.clone(), request, timeout)
        }),
    ));
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

    // 1. The file.
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

    // 2. The items, with safe, unique paths.
    let icon_names = Names::plan(
        file.icons
            .iter()
            .map(|(id, name)| (id.as_str(), name.as_str())),
    );
    let image_names = Names::plan(
        file.images
            .iter()
            .map(|(id, name)| (id.as_str(), name.as_str())),
    );
    let mut items: Vec<Item> = Vec::new();
    for format in [Format::Svg, Format::Pdf] {
        if options.formats.contains(&format) {
            for (id, _) in &file.icons {
                let path =
                    Path::new("icons").join(icon_names.path(id, &format!(".{}", format.name())));
                items.push(Item {
                    node: id.clone(),
                    format,
                    scale: 1,
                    path,
                });
            }
        }
    }
    if options.formats.contains(&Format::Png) {
        for scale in &options.scales {
            for (id, _) in &file.images {
                let suffix = if *scale == 1 {
                    ".png".to_string()
                } else {
                    format!("@{scale}x.png")
                };
                let path = Path::new("images").join(image_names.path(id, &suffix));
                items.push(Item {
                    node: id.clone(),
                    format: Format::Png,
                    scale: *scale,
                    path,
                });
            }
        }
    }
    for (name, id, path) in icon_names.collisions.iter().chain(&image_names.collisions) {
        progress.println(format!(
            "  ! {name:?} ({id}) collides with another name; written as {}",
            path.display()
        ));
        tracing::warn!(name, id, path = %path.display(), "name collision");
    }
    if options.dry_run {
        for item in &items {
            println!(
                "{} ← {} {}@{}x",
                item.path.display(),
                item.node,
                item.format.name(),
                item.scale
            );
        }
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
    let hash = config_hash(&serde_json::json!({
        "file": options.file_key,
        "version": file.version,
        "formats": options.formats,
        "scales": options.scales,
        "naming": 2,
        "icons_page": options.filters.icons_page.to_string(),
        "icons_frame": options.filters.icons_frame.to_string(),
        "images_page": options.filters.images_page.to_string(),
    }))
    .map_err(|e| ExportError::fatal(format!("✗ {e}")))?;
    let config = Config::new(&options.out, &options.file_key, hash)
        .tool("figma-export", env!("CARGO_PKG_VERSION"));
    let (store, checkpoint_use) = open_checkpoint(config, &options)?;
    match &checkpoint_use {
        CheckpointUse::Fresh => {}
        CheckpointUse::Resumed { done } => {
            progress.println(format!(
                "Resuming: {done} items were done by an earlier run."
            ));
        }
        CheckpointUse::StartedOver { reason } => {
            progress.println(format!("Starting over: {reason}."));
        }
    }
    let store = Arc::new(Mutex::new(store));

    // Every folder the names call for, once.
    let mut folders: Vec<PathBuf> = items
        .iter()
        .filter_map(|item| item.path.parent().map(|p| options.out.join(p)))
        .collect();
    folders.sort();
    folders.dedup();
    folders.push(options.out.clone());
    let mut orphans = 0;
    for folder in folders {
        std::fs::create_dir_all(&folder).map_err(|e| {
            ExportError::fatal(format!(
                "✗ cannot create {}: {e}; check --out",
                folder.display()
            ))
        })?;
        // Temp files of an earlier run that was killed mid-write.
        if let Ok(report) = steadfast_atomicfs::cleanup_orphans(&folder) {
            orphans += report.removed.len();
        }
    }
    if orphans > 0 {
        progress.println(format!(
            "  removed {orphans} temp files left by an interrupted run"
        ));
    }

    // 4. Colors: two small files, written atomically.
    // By name, then by node: a stable order, duplicates kept.
    let mut palette: Vec<(&String, &Color)> = colors.iter().collect();
    palette
        .sort_by(|(a_id, a), (b_id, b)| a.name.cmp(&b.name).then_with(|| node_order(a_id, b_id)));
    let palette: Vec<Color> = palette.into_iter().map(|(_, c)| c.clone()).collect();
    let files = color_files(&palette, options.tokens_format);
    for warning in &files.warnings {
        progress.println(format!("  ! {warning}"));
    }
    let (json, css) = (files.json, files.css);
    for (name, bytes) in [("colors.json", json), ("colors.css", css)] {
        steadfast_atomicfs::write(options.out.join(name), bytes).map_err(|e| write_failure(&e))?;
    }

    // 5. Renders and downloads. The download stack:
    // checkpoint → persist → retry → download (no token).
    let download_retrier = Retrier::new(schedule)
        .policy(|outcome: &Result<Bytes, DownloadError>| classify_download(outcome))
        .on_retry(hook);
    let download_client = client.clone();
    let fetch_file = tower::service_fn(move |d: Download| {
        let client = download_client.clone();
        async move {
            let request = Request::get(&d.url)
                .body(Empty::new())
                .map_err(|e| DownloadError::Transport(e.into()))?;
            let response = fetch(client, request, timeout)
                .await
                .map_err(DownloadError::Transport)?;
            if response.status() != StatusCode::OK {
                return Err(DownloadError::Status(response.status().as_u16()));
            }
            let body = response.into_body();
            if !body.starts_with(d.format.magic()) {
                return Err(DownloadError::Magic);
            }
            Ok(body)
        }
    });
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
    for ((format, scale), group) in groups {
        let label = if format == Format::Png {
            format!("images @{scale}x")
        } else {
            format!("icons {}", format.name())
        };
        let bar = progress.phase(&label, group.len() as u64);
        let (done, todo): (Vec<Item>, Vec<Item>) = {
            let store = store
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            group
                .into_iter()
                .partition(|item| store.is_done(&item.key()))
        };
        summary.skipped += done.len() as u64;
        bar.inc(done.len() as u64);
        let mut batches: VecDeque<Vec<Item>> = todo
            .chunks(options.batch_size.max(1))
            .map(<[Item]>::to_vec)
            .collect();
        let mut downloads = tokio::task::JoinSet::new();
        let semaphore = Arc::new(tokio::sync::Semaphore::new(options.concurrency.max(1)));
        while let Some(batch) = batches.pop_front() {
            if options.verbose {
                let status = limiter.status().to_string();
                if bar.is_hidden() && !options.quiet {
                    eprintln!("  · {status}");
                }
                bar.set_message(status);
            }
            let ids: Vec<&str> = batch.iter().map(|i| i.node.as_str()).collect();
            let path = format!(
                "/v1/images/{}?ids={}&format={}&scale={scale}&version={}",
                options.file_key,
                ids.join(","),
                format.name(),
                file.version
            );
            let body = match api_get(path).await {
                Ok(body) => body,
                Err(e) if e.message.contains("Render timeout") && batch.len() > 1 => {
                    let half = batch.len() / 2;
                    batches.push_front(batch[half..].to_vec());
                    batches.push_front(batch[..half].to_vec());
                    progress.println(format!(
                        "  ! render timeout: splitting a batch of {} ids",
                        batch.len()
                    ));
                    continue;
                }
                Err(e) => {
                    // Let the downloads already under way land (and be
                    // recorded) before stopping.
                    while let Some(joined) = downloads.join_next().await {
                        if tally(joined, &mut summary).is_ok() {
                            bar.inc(1);
                        }
                    }
                    return Err(stopped(e, &summary));
                }
            };
            let rendered: Value = serde_json::from_slice(&body).map_err(|e| {
                ExportError::recoverable(format!(
                    "✗ /v1/images answered something else than JSON ({e}). {RESUME_HINT}"
                ))
            })?;
            for item in batch {
                let Some(url) = rendered["images"][&item.node].as_str() else {
                    progress.println(format!(
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
                tally(joined, &mut summary).map_err(|e| stopped(e, &summary))?;
                bar.inc(1);
            }
        }
        while let Some(joined) = downloads.join_next().await {
            tally(joined, &mut summary).map_err(|e| stopped(e, &summary))?;
            bar.inc(1);
        }
        bar.finish_with_message("done");
        progress.println(format!("  {label}: done"));
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
        // Complete: what the last complete export wrote and this one did
        // not is stale. Remove it, then record what this one wrote.
        let (earlier, warning) = crate::manifest::read(&options.out);
        if let Some(warning) = warning {
            progress.println(format!("  ! {warning}"));
        }
        let (removed, failed) = crate::manifest::remove_stale(&options.out, &earlier, &written);
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
        summary.removed = removed;
        crate::manifest::write(&options.out, &written).map_err(|e| write_failure(&e))?;
        store.remove().map_err(|e| {
            ExportError::recoverable(format!(
                "✗ the export is complete but its checkpoint could not be removed: {e}"
            ))
        })?;
    }
    Ok(summary)
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

/// The checkpoint is kept (every finished item is already recorded): say
/// how far it got.
fn stopped(error: ExportError, summary: &Summary) -> ExportError {
    if error.code == 3 {
        ExportError::recoverable(format!(
            "{}\n  {} files written before stopping; the checkpoint is saved.",
            error.message, summary.exported
        ))
    } else {
        error
    }
}

/// Opens the checkpoint as `--resume` / `--restart` say: every combination
/// of {none, valid, rejected} × {plain, `--resume`, `--resume=auto`,
/// `--restart`} ends here.
fn open_checkpoint(
    config: Config,
    options: &Options,
) -> Result<(FileStore<()>, CheckpointUse), ExportError> {
    let locked = |holder: Option<steadfast_checkpoint::Holder>| {
        let who = holder.map(|h| format!(" ({h})")).unwrap_or_default();
        ExportError::recoverable(format!(
            "✗ Another export{who} is writing to {}. Wait for it to finish, or use another --out.",
            options.out.display()
        ))
    };
    let open = |config: Config| match FileStore::<()>::open(config) {
        Err(steadfast_checkpoint::Error::Locked { holder, .. }) => Err(locked(holder)),
        Err(e) => Err(ExportError::recoverable(format!("✗ {e}"))),
        Ok(opened) => Ok(opened),
    };
    let discard_error = |e: steadfast_checkpoint::Error| {
        ExportError::recoverable(format!("✗ could not discard the earlier checkpoint: {e}"))
    };
    match open(config.clone())? {
        Opened::Fresh(store) => Ok((store, CheckpointUse::Fresh)),
        Opened::Resumed { store, .. } if options.restart => {
            // Discard it (snapshot, journal, lock) and take a fresh one.
            store.remove().map_err(discard_error)?;
            match open(config)? {
                Opened::Fresh(store) => Ok((
                    store,
                    CheckpointUse::StartedOver {
                        reason: "--restart discarded the earlier checkpoint".into(),
                    },
                )),
                _ => Err(ExportError::recoverable(
                    "✗ Another export recreated the checkpoint while this one discarded it; run again.",
                )),
            }
        }
        Opened::Resumed { store, .. } if options.resume != Resume::Off => {
            let done = store.completed().len();
            Ok((store, CheckpointUse::Resumed { done }))
        }
        Opened::Resumed { store, .. } => {
            let done = store.completed().len();
            Err(ExportError::usage(format!(
                "✗ An earlier export to {} stopped after {done} items. Run again with --resume to continue, --resume=auto to continue when possible, or --restart to start over.",
                options.out.display()
            )))
        }
        Opened::Rejected(rejected) if options.restart || options.resume == Resume::Auto => {
            let reason = if options.restart {
                "--restart discarded the earlier checkpoint".to_string()
            } else {
                format!(
                    "the earlier checkpoint cannot be continued ({})",
                    rejected.reason()
                )
            };
            Ok((
                rejected.discard().map_err(discard_error)?,
                CheckpointUse::StartedOver { reason },
            ))
        }
        Opened::Rejected(rejected) => Err(ExportError::usage(format!(
            "✗ Cannot resume: {}",
            rejected.reason()
        ))),
        _ => Err(ExportError::fatal("✗ unexpected checkpoint state")),
    }
}

/// 403, 404 and other client errors are fatal, with what to fix.
fn check_status(response: &Response<Bytes>) -> Result<(), ExportError> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let err = serde_json::from_slice::<Value>(response.body())
        .ok()
        .and_then(|v| {
            v["err"]
                .as_str()
                .or(v["message"].as_str())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let verdict = verdict(response);
    if verdict.is_throttled() {
        let wait = verdict
            .hint()
            .map(|h| {
                format!(
                    "; Figma asks to wait {} ({})",
                    steadfast_backoff::HumanDuration(h.delay),
                    h.source
                )
            })
            .unwrap_or_default();
        return Err(ExportError::recoverable(format!(
            "✗ Export failed: rate limited (HTTP {}){wait}.{}\n  {RESUME_HINT}",
            status.as_u16(),
            figma_limits(response)
        )));
    }
    Err(match status.as_u16() {
        403 => ExportError::fatal(format!(
            "✗ Export failed: Figma refused the token ({err}). Set FIGMA_TOKEN to a valid personal access token with file read access."
        )),
        404 => ExportError::fatal(format!(
            "✗ Export failed: file not found ({err}). Check --file (the key in the file's URL) and that the token's owner can open it."
        )),
        400 => ExportError::fatal(format!("✗ Export failed: Figma rejected the request: {err}")),
        code => ExportError::recoverable(format!("✗ Export failed: Figma answered {code} {err}. {RESUME_HINT}")),
    })
}

/// How the API stack's errors are retried: the limiter's refusals are final
/// (waiting longer is what it refused), the transport's by their kind.
fn api_errors(error: &RateLimitError<BoxError>) -> Action {
    match error {
        RateLimitError::Service(e) => DefaultErrors::classify_dyn(&**e),
        _ => Action::fail(Reason::Other("the rate limiter refused to wait")),
    }
}

/// The shared verdict on a response: the same rules the retry policy and
/// the rate limiter apply.
fn verdict(response: &Response<Bytes>) -> Verdict {
    Classifier::new().classify(
        response.status(),
        response.headers(),
        std::time::SystemTime::now(),
    )
}

/// A request the retry layer gave up on.
fn api_failure(error: &RetryError<Response<Bytes>, RateLimitError<BoxError>>) -> ExportError {
    let figma = match error.last() {
        Ok(response) => figma_limits(response),
        Err(_) => String::new(),
    };
    match error.kind() {
        RetryKind::RetryAfterTooLong => ExportError::recoverable(format!(
            "✗ Export failed: rate limited; Figma asks to wait {}, more than --max-retry-after allows.{figma}\n  {RESUME_HINT} once the wait is over.",
            error
                .retry_after()
                .map(|d| steadfast_backoff::HumanDuration(d).to_string())
                .unwrap_or_else(|| "long".into())
        )),
        RetryKind::Fatal => match error.last() {
            Ok(response) => check_status(response)
                .err()
                .unwrap_or_else(|| ExportError::fatal(format!("✗ Export failed: {error}"))),
            Err(e) => ExportError::fatal(format!("✗ Export failed: {e}")),
        },
        _ => match error.last() {
            Ok(response) if verdict(response).is_throttled() => ExportError::recoverable(format!(
                "✗ Export failed: rate limited after {} retries.{figma}\n  {RESUME_HINT}",
                error.retries()
            )),
            Ok(response) if response.status().is_client_error() => check_status(response)
                .err()
                .unwrap_or_else(|| ExportError::fatal(format!("✗ Export failed: {error}"))),
            _ => ExportError::recoverable(format!("✗ Export failed: {error}, or run again with --resume")),
        },
    }
}

/// Figma's plan tier, limit type and upgrade link from a 429.
fn figma_limits(response: &Response<Bytes>) -> String {
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok());
    let mut out = String::new();
    if let Some(tier) = header("x-figma-plan-tier") {
        out.push_str(&format!("\n  Figma plan tier: {tier}"));
        if let Some(kind) = header("x-figma-rate-limit-type") {
            out.push_str(&format!(", limit type: {kind}"));
        }
    }
    if let Some(link) = header("x-figma-upgrade-link") {
        out.push_str(&format!("\n  Higher limits: {link}"));
    }
    out
}

fn write_failure(error: &steadfast_atomicfs::Error) -> ExportError {
    if error.is_recoverable() {
        ExportError::recoverable(format!("✗ Export failed: {error}. {RESUME_HINT}"))
    } else {
        ExportError::fatal(format!("✗ Export failed: {error}"))
    }
}

fn download_failure(
    error: CheckpointError<PersistError<RetryError<Bytes, DownloadError>>>,
) -> ExportError {
    match error {
        CheckpointError::Service(PersistError::Service(e)) => {
            ExportError::recoverable(format!("✗ Export failed: {e}. {RESUME_HINT}"))
        }
        CheckpointError::Service(PersistError::Persist(e)) => write_failure(&e),
        CheckpointError::Record(e) => {
            ExportError::recoverable(format!("✗ Export failed: {e}. {RESUME_HINT}"))
        }
        #[allow(unreachable_patterns)]
        _ => ExportError::recoverable(format!("✗ Export failed. {RESUME_HINT}")),
    }
}

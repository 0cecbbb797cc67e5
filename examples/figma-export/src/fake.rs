//! A fake Figma REST API on 127.0.0.1: a realistic, seeded file, the
//! endpoints the exporter uses, its own rate limit answering 429 with
//! `Retry-After` and Figma's headers, and a seeded schedule of faults
//! (5xx, dropped connections, slow replies). It logs every request it
//! receives. `--demo` runs against it; so do the end-to-end tests.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::time::Instant;

/// The token the fake server accepts.
pub const TOKEN: &str = "figd_demo-token";
/// The file key it serves.
pub const FILE_KEY: &str = "DemoFileKey123";

/// A small seeded generator (SplitMix64): the same seed, the same file and
/// the same faults.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A float in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What goes wrong, and how often. All draws come from the seed.
#[derive(Clone, Debug)]
pub struct Faults {
    /// The seed of the fault draws.
    pub seed: u64,
    /// Share of requests answered 500/502/503.
    pub server_errors: f64,
    /// Share of requests whose connection is dropped without an answer.
    pub drops: f64,
    /// Share of requests answered late.
    pub slow: f64,
    /// How late.
    pub slow_by: Duration,
    /// The API's own limit on `/v1/files` and `/v1/images` (per minute,
    /// burst): above it, 429 with `Retry-After`.
    pub rate_limit: Option<(u32, u32)>,
    /// A fixed `Retry-After` for every 429, instead of the time to the
    /// next free slot.
    pub retry_after: Option<u64>,
    /// More ids than this in one `/v1/images` call: a render-timeout 400.
    pub render_limit: usize,
    /// Node ids whose render is `null`.
    pub null_renders: Vec<String>,
    /// Faults only hit API requests with a number (0-based, API requests
    /// only) in this range; `None`: all.
    pub api_window: Option<std::ops::Range<usize>>,
}

impl Faults {
    /// No faults at all.
    pub fn none() -> Self {
        Self {
            seed: 0,
            server_errors: 0.0,
            drops: 0.0,
            slow: 0.0,
            slow_by: Duration::ZERO,
            rate_limit: None,
            retry_after: None,
            render_limit: usize::MAX,
            null_renders: Vec::new(),
            api_window: None,
        }
    }

    /// The demo's mix: Figma's Tier-1 limit scaled up so the demo finishes
    /// in seconds, a few 5xx, dropped connections and slow replies.
    pub fn demo(seed: u64) -> Self {
        Self {
            seed,
            server_errors: 0.04,
            drops: 0.02,
            slow: 0.03,
            slow_by: Duration::from_millis(1_500),
            rate_limit: Some((60, 3)),
            retry_after: None,
            render_limit: 100,
            null_renders: Vec::new(),
            api_window: None,
        }
    }
}

/// One request the server received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    /// When it arrived.
    pub at: Instant,
    /// Path and query.
    pub uri: String,
    /// What the server answered (0: dropped).
    pub status: u16,
    /// Whether it carried the token.
    pub with_token: bool,
}

/// A node of the generated file.
#[derive(Clone, Debug)]
pub struct FakeNode {
    /// Node id (`"12:34"`).
    pub id: String,
    /// Its (often awkward) name.
    pub name: String,
}

/// The generated file.
#[derive(Clone, Debug)]
pub struct FakeFile {
    /// Its `version`.
    pub version: String,
    /// Color swatches: node, style name, RGBA.
    pub colors: Vec<(FakeNode, String, [f64; 4])>,
    /// Icon components (variants included).
    pub icons: Vec<FakeNode>,
    /// Component sets: the set's node, and the ids of its variants (which
    /// are also in `icons`, named by their properties, as Figma names them).
    pub sets: Vec<(FakeNode, Vec<String>)>,
    /// Image frames.
    pub images: Vec<FakeNode>,
}

const AWKWARD: &[&str] = &[
    "../../etc/passwd",
    "..",
    ".",
    "",
    "CON",
    "nul.txt",
    "Size=24, Style=Filled",
    "🔥 Fire / Hot",
    "with/trailing/",
    "/leading",
    "Ünïcødé Ärrow",
    "icons/Arrow Left",
    "Icons/arrow left",
    "tab\tand\nnewline",
    "back\\slash",
    "question?star*colon:",
];

impl FakeFile {
    /// A realistic file: 56 colors, 304 icons (three of them variants of a component set), 20 images, with awkward
    /// names mixed in.
    pub fn generate(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let groups = [
            "Brand", "Neutral", "Success", "Warning", "Danger", "Info", "Accent",
        ];
        let mut colors = Vec::new();
        for (g, group) in groups.iter().enumerate() {
            for shade in 1..=8 {
                let id = format!("1:{}", g * 10 + shade);
                let name = format!("{group}/{}00", shade);
                let rgba = [
                    (rng.unit() * 255.0).round() / 255.0,
                    (rng.unit() * 255.0).round() / 255.0,
                    (rng.unit() * 255.0).round() / 255.0,
                    if shade == 8 { 0.5 } else { 1.0 },
                ];
                colors.push((
                    FakeNode {
                        id,
                        name: name.clone(),
                    },
                    name,
                    rgba,
                ));
            }
        }
        let sets = [
            "Navigation",
            "Actions",
            "Media",
            "Status",
            "Social",
            "Files",
        ];
        let words = [
            "Arrow", "Close", "Menu", "Play", "Pause", "Star", "Heart", "Check", "Plus", "Minus",
        ];
        let mut icons = Vec::new();
        for i in 0..300 {
            let name = if i % 19 == 0 {
                AWKWARD[(i / 19) % AWKWARD.len()].to_string()
            } else {
                let set = sets[(rng.next_u64() % sets.len() as u64) as usize];
                let word = words[(rng.next_u64() % words.len() as u64) as usize];
                format!("Icons/{set}/{word} {i}")
            };
            icons.push(FakeNode {
                id: format!("2:{i}"),
                name,
            });
        }
        // A component set: variants named by their properties only.
        let mut variants = Vec::new();
        for (i, variant) in [
            "Size=16, State=Default",
            "Size=16, State=Hover",
            "Size=24, State=Default",
        ]
        .into_iter()
        .enumerate()
        {
            let id = format!("4:{}", i + 1);
            icons.push(FakeNode {
                id: id.clone(),
                name: variant.into(),
            });
            variants.push(id);
        }
        let sets = vec![(
            FakeNode {
                id: "4:0".into(),
                name: "Button".into(),
            },
            variants,
        )];
        let mut long = "Very long name ".repeat(30);
        long.push_str("end");
        icons.push(FakeNode {
            id: "2:300".into(),
            name: long,
        });
        let images = (0..20)
            .map(|i| FakeNode {
                id: format!("3:{i}"),
                name: if i == 7 {
                    "Hero/Banner 7".into()
                } else if i == 8 {
                    "hero/banner 7".into()
                } else {
                    format!("Hero/Banner {i}")
                },
            })
            .collect();
        Self {
            version: format!("{}", 4_000_000_000u64 + seed % 1_000),
            colors,
            icons,
            sets,
            images,
        }
    }

    /// The `GET /v1/files/:key` body.
    pub fn document(&self) -> Value {
        let color_nodes: Vec<Value> = self
            .colors
            .iter()
            .enumerate()
            .map(|(i, (node, _, [r, g, b, a]))| {
                json!({
                    "id": node.id, "name": node.name, "type": "RECTANGLE",
                    "fills": [{"type": "SOLID", "blendMode": "NORMAL", "color": {"r": r, "g": g, "b": b, "a": 1.0}, "opacity": a}],
                    "styles": {"fill": format!("S:{i}")}
                })
            })
            .collect();
        let in_set = |id: &str| self.sets.iter().any(|(_, v)| v.iter().any(|x| x == id));
        let component =
            |n: &FakeNode| json!({"id": n.id, "name": n.name, "type": "COMPONENT", "children": []});
        let mut icon_nodes: Vec<Value> = self
            .icons
            .iter()
            .filter(|n| !in_set(&n.id))
            .map(component)
            .collect();
        for (set, variants) in &self.sets {
            let children: Vec<Value> = self
                .icons
                .iter()
                .filter(|n| variants.contains(&n.id))
                .map(component)
                .collect();
            icon_nodes.push(json!({"id": set.id, "name": set.name, "type": "COMPONENT_SET", "children": children}));
        }
        let image_nodes: Vec<Value> = self
            .images
            .iter()
            .map(|n| json!({"id": n.id, "name": n.name, "type": "FRAME", "children": []}))
            .collect();
        let styles: BTreeMap<String, Value> = self
            .colors
            .iter()
            .enumerate()
            .map(|(i, (_, name, _))| {
                (
                    format!("S:{i}"),
                    json!({"key": format!("k{i}"), "name": name, "description": "", "remote": false, "styleType": "FILL"}),
                )
            })
            .collect();
        let components: BTreeMap<String, Value> = self
            .icons
            .iter()
            .map(|n| {
                (
                    n.id.clone(),
                    json!({"key": format!("c{}", n.id), "name": n.name, "description": ""}),
                )
            })
            .collect();
        json!({
            "name": "Demo Design System",
            "role": "viewer",
            "lastModified": "2026-11-20T10:00:00Z",
            "editorType": "figma",
            "version": self.version,
            "schemaVersion": 0,
            "document": {"id": "0:0", "name": "Document", "type": "DOCUMENT", "children": [
                {"id": "0:1", "name": "Colors", "type": "CANVAS", "children": color_nodes},
                {"id": "0:2", "name": "Icons", "type": "CANVAS", "children": icon_nodes},
                {"id": "0:3", "name": "Images", "type": "CANVAS", "children": image_nodes},
                // Documentation: components and frames that are neither
                // icons nor images by default.
                {"id": "0:4", "name": "Docs", "type": "CANVAS", "children": [
                    {"id": "5:1", "name": "Usage card", "type": "COMPONENT", "children": []},
                    {"id": "5:2", "name": "Examples", "type": "FRAME", "children": [
                        {"id": "5:3", "name": "Example button", "type": "COMPONENT", "children": []},
                    ]},
                ]},
            ]},
            "components": components,
            "styles": styles,
        })
    }
}

/// The bytes the fake CDN serves for a render: deterministic, with the
/// right magic bytes for the format.
pub fn render(id: &str, format: &str, scale: &str) -> Vec<u8> {
    match format {
        "svg" => format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" data-node=\"{id}\" viewBox=\"0 0 24 24\"><path d=\"M0 0h24v24H0z\"/></svg>\n"
        )
        .into_bytes(),
        "pdf" => format!("%PDF-1.4\n% node {id}\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n").into_bytes(),
        _ => {
            let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
            png.extend_from_slice(format!("node {id} at {scale}x").as_bytes());
            png.extend(std::iter::repeat_n(0xA5, 64));
            png
        }
    }
}

struct State {
    file: FakeFile,
    faults: Faults,
    rng: Rng,
    log: Vec<Logged>,
    api_requests: usize,
    /// GCRA state of the API's own limit.
    tat: Option<Instant>,
    addr: SocketAddr,
}

/// A running fake server. It stops when the runtime that started it does.
#[derive(Clone)]
pub struct FakeServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for FakeServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

enum Reply {
    Answer(Response<Full<Bytes>>),
    Drop,
}

fn json_reply(status: u16, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

impl FakeServer {
    /// Starts a server for `file` with `faults` on an ephemeral port of
    /// 127.0.0.1.
    ///
    /// # Errors
    ///
    /// The port could not be bound.
    pub async fn start(file: FakeFile, faults: Faults) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            rng: Rng::new(faults.seed ^ 0xFA17),
            file,
            faults,
            log: Vec::new(),
            api_requests: 0,
            tat: None,
            addr,
        }));
        let server = Self {
            addr,
            state: Arc::clone(&state),
        };
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = Arc::clone(&state);
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let state = Arc::clone(&state);
                    async move {
                        let (reply, delay) = handle(&state, &request);
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        match reply {
                            Reply::Answer(response) => Ok(response),
                            Reply::Drop => Err(std::io::Error::other("dropped on purpose")),
                        }
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(server)
    }

    /// `http://127.0.0.1:port`: the `--api-url` to use.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far.
    pub fn log(&self) -> Vec<Logged> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .log
            .clone()
    }

    /// Replaces the faults (e.g. a storm for the second half of a test).
    pub fn set_faults(&self, faults: Faults) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.rng = Rng::new(faults.seed ^ 0xFA17);
        state.faults = faults;
    }

    /// The file it serves.
    pub fn file(&self) -> FakeFile {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .file
            .clone()
    }
}

fn handle(state: &Mutex<State>, request: &Request<Incoming>) -> (Reply, Duration) {
    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let uri = request.uri().to_string();
    let with_token = request.headers().get("x-figma-token").is_some();
    let now = Instant::now();
    let is_api = path.starts_with("/v1/");
    let number = if is_api {
        state.api_requests += 1;
        state.api_requests - 1
    } else {
        usize::MAX
    };
    let in_window = state
        .faults
        .api_window
        .as_ref()
        .is_none_or(|w| is_api && w.contains(&number));
    let (reply, delay) = answer(&mut state, &path, &query, request, now, in_window);
    let status = match &reply {
        Reply::Answer(r) => r.status().as_u16(),
        Reply::Drop => 0,
    };
    state.log.push(Logged {
        at: now,
        uri,
        status,
        with_token,
    });
    (reply, delay)
}

fn answer(
    state: &mut State,
    path: &str,
    query: &str,
    request: &Request<Incoming>,
    now: Instant,
    faulty: bool,
) -> (Reply, Duration) {
    let params: BTreeMap<&str, &str> = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .collect();
    // Faults first: they hit any request, API or CDN.
    let draw = state.rng.unit();
    let slow = state.rng.unit() < state.faults.slow;
    let delay = if slow && faulty {
        state.faults.slow_by
    } else {
        Duration::ZERO
    };
    if faulty && draw < state.faults.drops {
        return (Reply::Drop, delay);
    }
    if faulty && draw < state.faults.drops + state.faults.server_errors {
        let status = [500, 502, 503][(state.rng.next_u64() % 3) as usize];
        return (
            Reply::Answer(json_reply(
                status,
                &json!({"status": status, "err": "Internal server error"}),
            )),
            delay,
        );
    }
    if let Some(rest) = path.strip_prefix("/cdn/") {
        let mut parts = rest.splitn(3, '/');
        let (id, format, scale) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or("png"),
            parts.next().unwrap_or("1"),
        );
        let id = id.replace('_', ":");
        let body = Full::new(Bytes::from(render(&id, format, scale)));
        return (Reply::Answer(Response::new(body)), delay);
    }
    let token = request
        .headers()
        .get("x-figma-token")
        .and_then(|v| v.to_str().ok());
    if token != Some(TOKEN) {
        return (
            Reply::Answer(json_reply(
                403,
                &json!({"status": 403, "err": "Invalid token"}),
            )),
            delay,
        );
    }
    // The API's own rate limit (GCRA).
    if let Some((per_minute, burst)) = state.faults.rate_limit {
        let interval = Duration::from_secs(60) / per_minute.max(1);
        let tolerance = interval * burst.max(1);
        let tat = state.tat.unwrap_or(now).max(now);
        let next = tat + interval;
        if next > now + tolerance {
            let wait = next - tolerance - now;
            let secs = state
                .faults
                .retry_after
                .unwrap_or(wait.as_secs_f64().ceil() as u64)
                .max(1);
            let response = Response::builder()
                .status(StatusCode::TOO_MANY_REQUESTS)
                .header("content-type", "application/json")
                .header("retry-after", secs.to_string())
                .header("x-figma-plan-tier", "pro")
                .header("x-figma-rate-limit-type", "high")
                .header("x-figma-upgrade-link", "https://www.figma.com/pricing")
                .body(Full::new(Bytes::from(
                    r#"{"status":429,"err":"Rate limit exceeded"}"#,
                )))
                .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())));
            return (Reply::Answer(response), delay);
        }
        state.tat = Some(next);
    }
    let key = FILE_KEY;
    if path == format!("/v1/files/{key}") {
        return (
            Reply::Answer(json_reply(200, &state.file.document())),
            delay,
        );
    }
    if path == format!("/v1/files/{key}/nodes") {
        let document = state.file.document();
        let mut index = BTreeMap::new();
        let mut stack = vec![&document["document"]];
        while let Some(node) = stack.pop() {
            if let Some(id) = node["id"].as_str() {
                index.insert(id.to_string(), node.clone());
            }
            if let Some(children) = node["children"].as_array() {
                stack.extend(children.iter());
            }
        }
        let nodes: BTreeMap<String, Value> = params
            .get("ids")
            .map(|s| s.split(',').collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .map(|raw| {
                let id = raw.replace("%3A", ":");
                let node = match index.get(&id) {
                    Some(node) => json!({"document": node, "components": {}, "styles": {}}),
                    None => Value::Null,
                };
                (id, node)
            })
            .collect();
        let body =
            json!({"name": "Demo Design System", "version": state.file.version, "nodes": nodes});
        return (Reply::Answer(json_reply(200, &body)), delay);
    }
    if path == format!("/v1/images/{key}") {
        let ids: Vec<&str> = params
            .get("ids")
            .map(|s| s.split(',').collect())
            .unwrap_or_default();
        let format = params.get("format").copied().unwrap_or("png");
        let scale = params.get("scale").copied().unwrap_or("1");
        if ids.len() > state.faults.render_limit {
            return (
                Reply::Answer(json_reply(
                    400,
                    &json!({"status": 400, "err": "Render timeout, try requesting fewer or smaller images"}),
                )),
                delay,
            );
        }
        let images: BTreeMap<String, Value> = ids
            .iter()
            .map(|raw| {
                let id = raw.replace("%3A", ":");
                let url = if state.faults.null_renders.contains(&id) {
                    Value::Null
                } else {
                    Value::String(format!(
                        "http://{}/cdn/{}/{format}/{scale}",
                        state.addr,
                        id.replace(':', "_")
                    ))
                };
                (id, url)
            })
            .collect();
        return (
            Reply::Answer(json_reply(200, &json!({"err": null, "images": images}))),
            delay,
        );
    }
    if path.starts_with("/v1/files/") || path.starts_with("/v1/images/") {
        return (
            Reply::Answer(json_reply(404, &json!({"status": 404, "err": "Not found"}))),
            delay,
        );
    }
    (
        Reply::Answer(json_reply(404, &json!({"status": 404, "err": "Not found"}))),
        delay,
    )
}

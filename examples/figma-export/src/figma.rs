//! What Figma's answers mean: the file's parts, the colors, the statuses.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::Response;
use serde_json::Value;
use steadfast_backoff::{Action, DefaultErrors, Reason};
use steadfast_http::{Classifier, Verdict};
use steadfast_ratelimit::RateLimitError;
use tower::BoxError;

use crate::error::{Cause, ExportError, RESUME_HINT};
use crate::tokens::Color;

/// `GET /v1/files/:key`, the parts the export reads (Figma's REST API;
/// unknown fields are ignored, missing optional ones default).
#[derive(serde::Deserialize)]
struct FileResponse {
    #[serde(default)]
    version: String,
    document: Node,
    #[serde(default)]
    styles: BTreeMap<String, StyleMeta>,
}

/// A node of the document tree.
#[derive(serde::Deserialize)]
struct Node {
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    children: Vec<Node>,
    #[serde(default)]
    styles: NodeStyles,
}

/// The styles a node uses, by role.
#[derive(serde::Deserialize, Default)]
struct NodeStyles {
    fill: Option<String>,
}

/// A style's metadata in the file's `styles` map.
#[derive(serde::Deserialize)]
struct StyleMeta {
    name: Option<String>,
    #[serde(rename = "styleType")]
    style_type: Option<String>,
}

/// The file's parts the export uses.
pub(crate) struct FileInfo {
    /// What the filters found nothing for, with the file's pages.
    pub(crate) warnings: Vec<String>,
    pub(crate) version: String,
    /// Nodes carrying a FILL style: node id → style name.
    pub(crate) color_nodes: BTreeMap<String, String>,
    pub(crate) icons: Vec<(String, String)>,
    pub(crate) images: Vec<(String, String)>,
}

pub(crate) fn parse_file(
    body: &[u8],
    filters: &crate::filter::Filters,
) -> Result<FileInfo, ExportError> {
    let file: FileResponse = serde_json::from_slice(body).map_err(|e| {
        ExportError::fatal(format!(
            "✗ Figma's answer is not the file JSON expected ({e}); check --api-url"
        ))
    })?;
    let styles = &file.styles;
    let mut color_nodes = BTreeMap::new();
    let mut icons = Vec::new();
    let mut images = Vec::new();
    // Each node with its page's name, the names of the frames (and
    // sections) around it and, inside a component set, the set's name.
    let mut stack: Vec<(&Node, &str, Vec<&str>, Option<&str>)> =
        vec![(&file.document, "", Vec::new(), None)];
    let mut pages = Vec::new();
    while let Some((node, page, frames, set)) = stack.pop() {
        let (kind, id, name) = (node.kind.as_str(), &node.id, node.name.as_str());
        if let Some(style) = &node.styles.fill {
            let fill_style = styles
                .get(style)
                .filter(|s| s.style_type.as_deref() == Some("FILL"));
            if let Some(definition) = fill_style {
                let style_name = definition.name.clone().unwrap_or_else(|| name.to_string());
                color_nodes.insert(id.clone(), style_name);
            }
        }
        let icon_here = filters.icons_page.matches(page)
            && (filters.icons_frame.is_any()
                || frames.iter().any(|f| filters.icons_frame.matches(f)));
        if kind == "COMPONENT" && icon_here {
            // A variant is named by its properties only ("Size=24,
            // State=Default"): put its set's name first, so that the file
            // is `button/size-24-state-default`.
            let full = match set {
                Some(set) => format!("{set}/{name}"),
                None => name.to_string(),
            };
            icons.push((id.clone(), full));
        } else if kind == "FRAME" && filters.images_page.matches(page) {
            images.push((id.clone(), name.to_string()));
        }
        if kind == "CANVAS" {
            pages.push(name.to_string());
        }
        let frames = if matches!(kind, "FRAME" | "SECTION") {
            let mut inner = frames.clone();
            inner.push(name);
            inner
        } else {
            frames
        };
        let set = if kind == "COMPONENT_SET" {
            Some(name)
        } else {
            set
        };
        let page = if kind == "CANVAS" { name } else { page };
        for child in node.children.iter().rev() {
            stack.push((child, page, frames.clone(), set));
        }
    }
    let version = file.version.clone();
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
pub(crate) fn parse_color_nodes(
    body: &[u8],
    wanted: &BTreeMap<String, String>,
    colors: &mut BTreeMap<String, Color>,
) -> Result<Vec<String>, ExportError> {
    let answer: NodesResponse = serde_json::from_slice(body).map_err(|e| {
        ExportError::recoverable(format!(
            "✗ /v1/files/…/nodes answered something else than the nodes JSON ({e}). {RESUME_HINT}"
        ))
    })?;
    let mut missing = Vec::new();
    for (id, style) in wanted {
        let paint = answer
            .nodes
            .get(id)
            .and_then(Option::as_ref)
            .and_then(|n| n.document.fills.first());
        match paint {
            Some(paint) if paint.kind == "SOLID" => {
                colors.insert(id.clone(), solid_color(style, paint));
            }
            _ => missing.push(id.clone()),
        }
    }
    Ok(missing)
}

/// `GET /v1/files/:key/nodes`: each asked-for node, or `null` if it is gone.
#[derive(serde::Deserialize)]
struct NodesResponse {
    #[serde(default)]
    nodes: BTreeMap<String, Option<NodeEntry>>,
}

#[derive(serde::Deserialize)]
struct NodeEntry {
    document: PaintedNode,
}

#[derive(serde::Deserialize)]
struct PaintedNode {
    #[serde(default)]
    fills: Vec<Paint>,
}

/// A fill: only SOLID ones are colors.
#[derive(serde::Deserialize)]
pub(crate) struct Paint {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    color: Rgba,
    opacity: Option<f64>,
}

#[derive(serde::Deserialize, Default)]
struct Rgba {
    #[serde(default)]
    r: f64,
    #[serde(default)]
    g: f64,
    #[serde(default)]
    b: f64,
    a: Option<f64>,
}

/// `GET /v1/images/:key`: a URL per node, `null` where Figma could not
/// render it.
#[derive(serde::Deserialize)]
pub(crate) struct ImagesResponse {
    #[serde(default)]
    pub(crate) images: BTreeMap<String, Option<String>>,
}

/// Node ids in numeric order ("2:10" after "2:9").
pub(crate) fn node_order(a: &str, b: &str) -> std::cmp::Ordering {
    let parse = |s: &str| -> (u64, u64) {
        let (x, y) = s.split_once(':').unwrap_or((s, "0"));
        (x.parse().unwrap_or(0), y.parse().unwrap_or(0))
    };
    parse(a).cmp(&parse(b)).then_with(|| a.cmp(b))
}

/// A SOLID paint as a [`Color`]: alpha = color.a × opacity.
pub(crate) fn solid_color(name: &str, paint: &Paint) -> Color {
    let c = &paint.color;
    let alpha = c.a.unwrap_or(1.0) * paint.opacity.unwrap_or(1.0);
    Color {
        name: name.to_string(),
        rgb: [c.r, c.g, c.b].map(|v| v.clamp(0.0, 1.0)),
        alpha: alpha.clamp(0.0, 1.0),
    }
}

/// 403, 404 and other client errors are fatal, with what to fix.
pub(crate) fn check_status(response: &Response<Bytes>) -> Result<(), ExportError> {
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
        // Figma's one way of saying it: the only place its text is read.
        400 if err.contains("Render timeout") => {
            ExportError::fatal(format!("✗ Export failed: Figma could not render in time: {err}"))
                .because(Cause::RenderTimeout)
        }
        400 => ExportError::fatal(format!("✗ Export failed: Figma rejected the request: {err}")),
        code => ExportError::recoverable(format!("✗ Export failed: Figma answered {code} {err}. {RESUME_HINT}")),
    })
}

/// How the API stack's errors are retried: the limiter's refusals are final
/// (waiting longer is what it refused), the transport's by their kind.
pub(crate) fn api_errors(error: &RateLimitError<BoxError>) -> Action {
    match error {
        RateLimitError::Service(e) => DefaultErrors::classify_dyn(&**e),
        _ => Action::fail(Reason::Other("the rate limiter refused to wait")),
    }
}

/// The shared verdict on a response: the same rules the retry policy and
/// the rate limiter apply.
pub(crate) fn verdict(response: &Response<Bytes>) -> Verdict {
    Classifier::new().classify(
        response.status(),
        response.headers(),
        std::time::SystemTime::now(),
    )
}

/// Figma's plan tier, limit type and upgrade link from a 429.
pub(crate) fn figma_limits(response: &Response<Bytes>) -> String {
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

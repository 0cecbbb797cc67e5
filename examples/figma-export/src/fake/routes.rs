//! The endpoints: what each request gets, after the rate limit and the
//! faults have had their say.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::{render, FakeFile, Faults, Logged, Rng, FILE_KEY, TOKEN};

pub(super) struct State {
    pub(super) file: FakeFile,
    pub(super) faults: Faults,
    pub(super) rng: Rng,
    pub(super) log: Vec<Logged>,
    pub(super) api_requests: usize,
    /// Every version the file has had, the current one last.
    pub(super) versions: Vec<String>,
    /// GCRA state of the API's own limit.
    pub(super) tat: Option<Instant>,
    pub(super) addr: SocketAddr,
}

pub(super) enum Reply {
    Answer(Response<Full<Bytes>>),
    Drop,
}

pub(super) fn json_reply(status: u16, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

pub(super) fn handle(state: &Mutex<State>, request: &Request<Incoming>) -> (Reply, Duration) {
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
    if state.faults.new_version_after == Some(number) {
        let next = format!("{}1", state.file.version);
        state.versions.push(next.clone());
        state.file.version = next;
    }
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

pub(super) fn answer(
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
    // A pinned version must be one the file has had.
    if let Some(version) = params.get("version") {
        if !state.versions.iter().any(|v| v == version) {
            return (
                Reply::Answer(json_reply(
                    400,
                    &json!({"status": 400, "err": "Invalid version"}),
                )),
                delay,
            );
        }
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

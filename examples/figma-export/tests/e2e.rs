//! Export runs against the fake server, on loopback only, bounded in time
//! (tokio's paused clock where the exporter runs in-process).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figma_export::fake::{render, FakeFile, FakeServer, Faults, FILE_KEY, TOKEN};
use figma_export::filter::{Filters, Globs};
use figma_export::manifest;
use figma_export::{run, CheckpointUse, ExportError, Format, Options, Resume, Summary, Token};

/// A fresh directory under the target dir, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("figma-export-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch dir");
        Self(dir)
    }

    fn out(&self) -> PathBuf {
        self.0.join("out")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

const SEED: u64 = 11;

fn options(server: &FakeServer, out: &Path) -> Options {
    Options {
        file_key: FILE_KEY.into(),
        out: out.to_path_buf(),
        formats: vec![Format::Svg, Format::Png],
        scales: vec![1, 2, 3],
        batch_size: 100,
        concurrency: 8,
        rate_limit: "120/min burst 4".parse().expect("rate"),
        rate_limit_redis: None,
        max_retries: 6,
        max_retry_after: Duration::from_secs(300),
        timeout: Duration::from_secs(30),
        fail_fast: false,
        resume: Resume::Off,
        restart: false,
        verbose: false,
        quiet: true,
        dry_run: false,
        filters: Filters::default(),
        tokens_format: figma_export::tokens::TokensFormat::default(),
        api_url: server.url(),
        token: Token::new(TOKEN.into()),
    }
}

async fn server(faults: Faults) -> FakeServer {
    FakeServer::start(FakeFile::generate(SEED), faults)
        .await
        .expect("fake server")
}

/// Every file under `dir` (relative path → bytes), never following links.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).expect("list") {
            let entry = entry.expect("entry");
            let kind = entry.file_type().expect("type");
            assert!(!kind.is_symlink(), "no symlinks: {:?}", entry.path());
            if kind.is_dir() {
                stack.push(entry.path());
            } else {
                let rel = entry
                    .path()
                    .strip_prefix(dir)
                    .expect("inside")
                    .to_path_buf();
                files.insert(rel, fs::read(entry.path()).expect("read"));
            }
        }
    }
    files
}

/// Checks the exported tree: each render present once, byte-identical to
/// what the server serves; `colors.json` exact.
fn check_clean_export(out: &Path, file: &FakeFile) {
    let files = tree(out);
    let mut seen = HashSet::new();
    for (path, bytes) in &files {
        let name = path.to_string_lossy();
        if name == "colors.json" || name == "colors.css" || name == manifest::MANIFEST {
            continue;
        }
        assert!(
            !name.starts_with(".checkpoint"),
            "checkpoint removed on success: {name}"
        );
        let (format, scale) = if name.ends_with(".svg") {
            ("svg", "1".to_string())
        } else {
            let scale = name
                .rsplit_once('@')
                .and_then(|(_, s)| s.strip_suffix("x.png"))
                .unwrap_or("1");
            ("png", scale.to_string())
        };
        let text = String::from_utf8_lossy(bytes);
        let id = text
            .split("node")
            .nth(1)
            .map(|rest| rest.trim_start_matches(['=', '"', ' ']))
            .and_then(|rest| rest.split(['"', ' ']).next())
            .expect("the render names its node")
            .to_string();
        assert_eq!(
            bytes,
            &render(&id, format, &scale),
            "{name}: the bytes served"
        );
        assert!(seen.insert((id, format, scale)), "{name}: exported once");
    }
    let expected = file.icons.len() + 3 * file.images.len();
    assert_eq!(seen.len(), expected, "every icon and image at every scale");
    // The manifest lists exactly what the export wrote.
    let listed = manifest::read(out).0;
    let on_disk: BTreeSet<PathBuf> = files
        .keys()
        .filter(|p| p.as_os_str() != manifest::MANIFEST)
        .cloned()
        .collect();
    assert_eq!(listed, on_disk, "the manifest lists what was written");
    let colors: serde_json::Value =
        serde_json::from_slice(&files[Path::new("colors.json")]).expect("colors.json");
    // DTCG 2025.10: nested by the `/` in the style names, structured values;
    // a duplicate name kept as "<name> 2" (styles sorted by name, then node).
    let mut want = serde_json::Map::new();
    let mut styles: Vec<&(figma_export::fake::FakeNode, String, [f64; 4])> =
        file.colors.iter().collect();
    styles.sort_by_key(|(node, name, _)| {
        let (a, b) = node.id.split_once(':').unwrap_or(("0", "0"));
        (
            name.clone(),
            a.parse::<u64>().unwrap_or(0),
            b.parse::<u64>().unwrap_or(0),
        )
    });
    let mut taken = HashSet::new();
    for (_, name, [r, g, b, a]) in styles {
        let hex = |v: f64| format!("{:02x}", (v * 255.0).round() as u8);
        let round = |v: f64| (v * 10_000.0).round() / 10_000.0;
        let token = serde_json::json!({"$type": "color", "$value": {
            "colorSpace": "srgb",
            "components": [round(*r), round(*g), round(*b)],
            "alpha": round(*a),
            "hex": format!("#{}{}{}", hex(*r), hex(*g), hex(*b)),
        }});
        let mut path: Vec<String> = name.split('/').map(str::to_string).collect();
        let last = path.last().cloned().unwrap_or_default();
        let mut n = 1;
        while !taken.insert(path.join("/")) {
            n += 1;
            *path.last_mut().expect("a name") = format!("{last} {n}");
        }
        let (leaf, groups) = path.split_last().expect("a name");
        let mut here = &mut want;
        for group in groups {
            here = here
                .entry(group.clone())
                .or_insert_with(|| serde_json::json!({}))
                .as_object_mut()
                .expect("a group");
        }
        here.insert(leaf.clone(), token);
    }
    assert_eq!(colors, serde_json::Value::Object(want), "colors.json exact");
}

#[tokio::test(start_paused = true)]
async fn a_clean_export_is_complete_and_byte_identical() {
    let scratch = Scratch::new("clean");
    let server = server(Faults::none()).await;
    let summary = run(options(&server, &scratch.out())).await.expect("export");
    let file = server.file();
    assert_eq!(
        summary.exported as usize,
        file.icons.len() + 3 * file.images.len()
    );
    assert_eq!(
        (summary.skipped, summary.retried, summary.throttled),
        (0, 0, 0)
    );
    check_clean_export(&scratch.out(), &file);
    // Hostile names: nothing outside --out (the scratch dir holds only it).
    let outside: Vec<_> = fs::read_dir(&scratch.0)
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(outside, ["out"]);
    assert!(
        server
            .log()
            .iter()
            .all(|r| r.uri.starts_with("/cdn/") != r.with_token),
        "the token goes to the API only"
    );
}

#[tokio::test(start_paused = true)]
async fn a_429_storm_finishes_and_nothing_arrives_during_a_pause() {
    let scratch = Scratch::new("storm");
    // The server takes 20 API requests a minute (burst 3) and answers the
    // rest 429 with the time to its next free slot; the user asked for 60.
    let server = server(Faults {
        rate_limit: Some((20, 3)),
        ..Faults::none()
    })
    .await;
    let mut options = options(&server, &scratch.out());
    options.batch_size = 25;
    options.rate_limit = "60/min burst 4".parse().expect("rate");
    let summary = run(options).await.expect("export finishes");
    check_clean_export(&scratch.out(), &server.file());
    let api: Vec<_> = server
        .log()
        .into_iter()
        .filter(|r| r.uri.starts_with("/v1/"))
        .collect();
    let throttled: Vec<_> = api.iter().filter(|r| r.status == 429).collect();
    assert!(!throttled.is_empty(), "the storm happened");
    for hit in &throttled {
        let end = hit.at + Duration::from_secs(1);
        let during = api.iter().filter(|r| r.at > hit.at && r.at < end).count();
        assert_eq!(during, 0, "no request during the pause after {:?}", hit.uri);
    }
    eprintln!(
        "storm: {} of {} API requests got 429",
        throttled.len(),
        api.len()
    );
    // The first 429 (the user's burst of 4 against the server's 3) cuts the
    // rate and pauses; after it, at most one request in six is throttled
    // (at its own 60/min, two in three would be).
    assert!(
        (throttled.len() - 1) * 6 <= api.len(),
        "{} of {} API requests got 429",
        throttled.len(),
        api.len()
    );
    assert_eq!(summary.throttled as usize, throttled.len());
}

#[tokio::test(start_paused = true)]
async fn server_errors_and_dropped_connections_are_retried_through() {
    let scratch = Scratch::new("faults");
    let server = server(Faults {
        seed: 5,
        server_errors: 0.15,
        drops: 0.1,
        slow: 0.05,
        slow_by: Duration::from_secs(3),
        ..Faults::none()
    })
    .await;
    // A quarter of all requests fail: with 6 retries, one of the ~370 fails
    // seven times in a row in about 2 % of runs (seen once here). Ten
    // retries make that about one run in a million.
    let mut options = options(&server, &scratch.out());
    options.max_retries = 10;
    let summary = run(options).await.expect("export finishes");
    assert!(summary.retried > 20, "retried {}", summary.retried);
    check_clean_export(&scratch.out(), &server.file());
}

/// A server whose fourth API request (the second /v1/images batch, after
/// the file and its color nodes) fails once, with a 5xx.
async fn fourth_api_call_fails() -> FakeServer {
    server(Faults {
        server_errors: 1.0,
        api_window: Some(3..4),
        ..Faults::none()
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn fail_fast_stops_at_the_first_fault_with_the_checkpoint_saved() {
    let scratch = Scratch::new("fail-fast");
    let server = fourth_api_call_fails().await;
    let mut options = options(&server, &scratch.out());
    options.fail_fast = true;
    let error = run(options.clone()).await.expect_err("stops");
    assert_eq!(error.code, 3, "{error}");
    assert!(error.message.contains("--resume"), "{error}");
    assert!(scratch.out().join(".checkpoint/snapshot.json").exists());
    // And it resumes to a complete export.
    server.set_faults(Faults::none());
    options.fail_fast = false;
    options.resume = Resume::On;
    let summary = run(options).await.expect("resumed");
    assert!(summary.skipped > 0, "skipped what was done: {summary:?}");
    check_clean_export(&scratch.out(), &server.file());
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_beyond_the_limit_exits_3_at_once() {
    let scratch = Scratch::new("too-long");
    let server = server(Faults {
        rate_limit: Some((1, 1)),
        retry_after: Some(396_749),
        ..Faults::none()
    })
    .await;
    let started = tokio::time::Instant::now();
    let error = run(options(&server, &scratch.out()))
        .await
        .expect_err("stops");
    assert_eq!(error.code, 3);
    assert!(started.elapsed() < Duration::from_secs(1), "at once");
    for needle in [
        "rate limited",
        "--max-retry-after",
        "--resume",
        "plan tier: pro",
        "figma.com/pricing",
    ] {
        assert!(error.message.contains(needle), "{needle:?} in {error}");
    }
    let throttled = server.log().iter().filter(|r| r.status == 429).count();
    assert_eq!(throttled, 1, "no retry of a days-long wait");
}

#[tokio::test(start_paused = true)]
async fn a_bad_token_and_an_unknown_file_are_fatal_with_what_to_fix() {
    let scratch = Scratch::new("fatal");
    let server = server(Faults::none()).await;
    let mut bad_token = options(&server, &scratch.out());
    bad_token.token = Token::new("wrong".into());
    let error: ExportError = run(bad_token).await.expect_err("403");
    assert_eq!(error.code, 4);
    assert!(error.message.contains("FIGMA_TOKEN"), "{error}");
    let mut unknown = options(&server, &scratch.out());
    unknown.file_key = "NoSuchFile".into();
    let error = run(unknown).await.expect_err("404");
    assert_eq!(error.code, 4);
    assert!(
        error.message.contains("file not found") && error.message.contains("--file"),
        "{error}"
    );
    assert!(
        !format!("{:?}", Token::new(TOKEN.into())).contains(TOKEN),
        "Debug hides the token"
    );
}

/// The exporter as a child process, killed with SIGKILL mid-export, then
/// resumed: only what the checkpoint lacks is downloaded again, and the
/// tree is byte-identical to a clean export.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_export_then_resumed() {
    let scratch = Scratch::new("sigkill");
    let server = server(Faults {
        seed: 3,
        slow: 0.3,
        slow_by: Duration::from_millis(40),
        ..Faults::none()
    })
    .await;
    let out = scratch.out();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_figma-export"))
        .args([
            "--file",
            FILE_KEY,
            "--api-url",
            &server.url(),
            "--quiet",
            "--concurrency",
            "4",
        ])
        .arg("--out")
        .arg(&out)
        .args(["--rate-limit", "600/min burst 10"])
        .env("FIGMA_TOKEN", TOKEN)
        .spawn()
        .expect("spawn the exporter");
    // Kill it once a good part of the downloads went through.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let downloads = server
            .log()
            .iter()
            .filter(|r| r.uri.starts_with("/cdn/"))
            .count();
        if downloads >= 120 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the exporter made no progress"
        );
        assert!(
            child.try_wait().expect("poll").is_none(),
            "the exporter finished before the kill"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let first_run = server.log().len();

    // What the checkpoint recorded (read straight from its files).
    let recorded = recorded_keys(&out.join(".checkpoint"));
    assert!(recorded.len() >= 60, "recorded {}", recorded.len());

    let mut options = options(&server, &out);
    options.resume = Resume::On;
    options.concurrency = 4;
    let summary: Summary = run(options).await.expect("resume");
    let second: Vec<String> = server.log()[first_run..]
        .iter()
        .filter_map(|r| r.uri.strip_prefix("/cdn/").map(cdn_key))
        .collect();
    for key in &second {
        assert!(
            !recorded.contains(key),
            "{key} was recorded, yet downloaded again"
        );
    }
    // Nor rendered again: the /v1/images calls of the second run ask only
    // for what the checkpoint lacks.
    let prefix = format!("/v1/images/{FILE_KEY}?");
    let rendered: Vec<String> = server.log()[first_run..]
        .iter()
        .filter_map(|r| r.uri.strip_prefix(&prefix).map(str::to_owned))
        .flat_map(|query| {
            let param = |name: &str| {
                query
                    .split('&')
                    .find_map(|p| p.strip_prefix(&format!("{name}=")))
                    .unwrap_or("")
                    .to_string()
            };
            let (format, scale) = (param("format"), param("scale"));
            param("ids")
                .split(',')
                .map(|id| format!("{id}/{format}@{scale}"))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(!rendered.is_empty());
    for key in &rendered {
        assert!(
            !recorded.contains(key),
            "{key} was recorded, yet rendered again"
        );
    }
    let file = server.file();
    let all = file.icons.len() + 3 * file.images.len();
    assert_eq!(
        second.len() + recorded.len(),
        all,
        "every missing item, once"
    );
    assert_eq!(summary.skipped as usize, recorded.len());
    check_clean_export(&out, &file);
}

/// `/cdn/2_17/svg/1` → `2:17/svg@1`.
fn cdn_key(rest: &str) -> String {
    let mut parts = rest.splitn(3, '/');
    let (id, format, scale) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    format!("{}/{format}@{scale}", id.replace('_', ":"))
}

/// The keys in a checkpoint's snapshot and journal.
fn recorded_keys(dir: &Path) -> BTreeSet<String> {
    let snapshot: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("snapshot.json")).expect("snapshot"))
            .expect("json");
    let mut keys: BTreeSet<String> = snapshot["completed"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k.as_str().map(str::to_owned))
        .collect();
    let journal = fs::read_to_string(dir.join("journal")).unwrap_or_default();
    for line in journal.lines() {
        if let Some(record) = line
            .get(9..)
            .and_then(|json| serde_json::from_str::<serde_json::Value>(json).ok())
        {
            keys.extend(
                record["keys"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|k| k.as_str().map(str::to_owned)),
            );
        }
    }
    keys
}

#[test]
fn usage_errors_exit_2_and_say_what_is_accepted() {
    let run = |args: &[&str], token: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_figma-export"));
        command.args(args).env_remove("FIGMA_TOKEN");
        if let Some(token) = token {
            command.env("FIGMA_TOKEN", token);
        }
        let output = command.output().expect("run");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, err) = run(
        &["--file", "k", "--out", "x", "--rate-limit", "10/fortnight"],
        Some("t"),
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("10/min, 5/s, 600/h"), "{err}");
    let (code, err) = run(&["--file", "k", "--out", "x"], None);
    assert_eq!(code, Some(2));
    assert!(err.contains("FIGMA_TOKEN"), "{err}");
    let (code, err) = run(&["--out", "x"], Some("t"));
    assert_eq!(code, Some(2));
    assert!(err.contains("--file"), "{err}");
    let (code, _) = run(
        &["--formats", "gif", "--file", "k", "--out", "x"],
        Some("t"),
    );
    assert_eq!(code, Some(2));
    let scratch = Scratch::new("bad-config");
    let config = scratch.0.join("figma-export.toml");
    fs::write(&config, "file = \"k\"\nsurprise = 1\n").expect("write");
    let (code, err) = run(&["--config", config.to_str().expect("utf-8")], Some("t"));
    assert_eq!(code, Some(2));
    assert!(err.contains("surprise"), "names the unknown key: {err}");
}

/// `figma-export --config <config> --dry-run --quiet`, off the runtime.
async fn dry_run_with_config(config: PathBuf) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_figma-export"))
            .arg("--config")
            .arg(&config)
            .args(["--dry-run", "--quiet"])
            .env("FIGMA_TOKEN", TOKEN)
            .output()
            .expect("run")
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_holds_what_the_flags_hold() {
    let scratch = Scratch::new("config");
    let server = server(Faults::none()).await;
    let config = scratch.0.join("figma-export.toml");
    fs::write(
        &config,
        format!(
            "file = \"{FILE_KEY}\"\nout = \"{}\"\nformats = [\"pdf\"]\nscales = [2]\napi-url = \"{}\"\nrate-limit = \"600/min burst 5\"\n",
            scratch.out().display(),
            server.url()
        ),
    )
    .expect("write config");
    let output = dry_run_with_config(config.clone()).await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listing = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(
        lines.len(),
        304,
        "304 icons as PDF, no PNG (formats from the file)"
    );
    assert!(lines.iter().all(|l| l.contains(".pdf ← ")), "{}", lines[0]);
    assert!(!scratch.out().exists(), "a dry run writes nothing");

    // The filters too.
    let mut text = fs::read_to_string(&config).expect("read config");
    text.push_str("icons-page = [\"Do*\"]\nicons-frame = [\"Examples\"]\n");
    fs::write(&config, text).expect("write config");
    let output = dry_run_with_config(config).await;
    let listing = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        listing.lines().collect::<Vec<_>>(),
        ["icons/example-button.pdf ← 5:3 pdf@1x"],
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(start_paused = true)]
async fn a_render_timeout_splits_the_batch_and_a_null_render_fails_only_its_item() {
    let scratch = Scratch::new("split");
    let server = server(Faults {
        render_limit: 30,
        null_renders: vec!["2:5".into(), "3:4".into()],
        ..Faults::none()
    })
    .await;
    let summary = run(options(&server, &scratch.out())).await.expect("export");
    let file = server.file();
    // 2:5 is an icon (one SVG); 3:4 an image (three scales).
    assert_eq!(summary.failed.len(), 4, "{:?}", summary.failed);
    assert_eq!(
        summary.exported as usize,
        file.icons.len() + 3 * file.images.len() - 4
    );
    let timeouts = server.log().iter().filter(|r| r.status == 400).count();
    assert!(timeouts >= 1, "the batch of 100 hit the render limit");
    assert!(
        scratch.out().join(".checkpoint").exists(),
        "failed items keep the checkpoint, for a --resume"
    );
}

#[tokio::test(start_paused = true)]
async fn a_changed_file_version_is_refused_with_the_way_out() {
    let scratch = Scratch::new("version");
    let server = fourth_api_call_fails().await;
    let mut first = options(&server, &scratch.out());
    first.fail_fast = true;
    assert_eq!(run(first).await.expect_err("stops").code, 3);
    // The designers edited the file: a new version.
    let edited = FakeServer::start(FakeFile::generate(SEED + 1), Faults::none())
        .await
        .expect("server");
    assert_ne!(edited.file().version, server.file().version);
    let mut again = options(&edited, &scratch.out());
    again.resume = Resume::On;
    let error = run(again.clone()).await.expect_err("refused");
    assert_eq!(error.code, 2, "{error}");
    assert!(
        error.message.contains("another configuration") && error.message.contains("--restart"),
        "{error}"
    );
    // A plain run (no flag) is told about --resume and --restart too.
    let mut plain = again.clone();
    plain.resume = Resume::Off;
    assert_eq!(run(plain).await.expect_err("refused").code, 2);
    again.resume = Resume::Off;
    again.restart = true;
    let summary = run(again).await.expect("restarted");
    let file = edited.file();
    assert_eq!(summary.skipped, 0);
    assert_eq!(
        summary.exported as usize,
        file.icons.len() + 3 * file.images.len()
    );
    // The first run never completed, so it left no manifest: files of the
    // old version stay (nothing says the export wrote them).
}

/// Renamed or deleted icons do not stay on disk forever: a complete export
/// removes what the last complete one wrote and it did not, and nothing
/// else (a file the user put in the output stays).
#[tokio::test(start_paused = true)]
async fn a_complete_export_removes_what_the_last_one_wrote_and_it_did_not() {
    let scratch = Scratch::new("stale");
    let before = server(Faults::none()).await;
    run(options(&before, &scratch.out()))
        .await
        .expect("first export");
    let first: BTreeSet<PathBuf> = tree(&scratch.out()).into_keys().collect();
    fs::write(scratch.out().join("icons").join("notes.txt"), b"mine").expect("a user file");
    // The designers renamed and deleted things: another file.
    let after = FakeServer::start(FakeFile::generate(SEED + 1), Faults::none())
        .await
        .expect("server");
    let summary = run(options(&after, &scratch.out()))
        .await
        .expect("second export");
    let mut now: BTreeSet<PathBuf> = tree(&scratch.out()).into_keys().collect();
    assert!(
        now.remove(Path::new("icons/notes.txt")),
        "the user's file stays"
    );
    let stale: BTreeSet<PathBuf> = first.difference(&now).cloned().collect();
    assert!(!stale.is_empty(), "the two files differ in names");
    assert_eq!(
        summary.removed.iter().cloned().collect::<BTreeSet<_>>(),
        stale
    );
    fs::remove_file(scratch.out().join("icons").join("notes.txt")).expect("clean");
    check_clean_export(&scratch.out(), &after.file());
}

/// The checkpoint states a user meets, made on disk by a real stopped run.
#[derive(Clone, Copy, Debug)]
enum Earlier {
    None,
    Valid,
    ConfigChanged,
    Expired,
    FromTheFuture,
    UnsupportedVersion,
    Corrupt,
}

/// Edits the stopped run's snapshot: `edit` gets its JSON.
fn edit_snapshot(out: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = out.join(".checkpoint/snapshot.json");
    let mut snapshot: serde_json::Value =
        serde_json::from_slice(&fs::read(&path).expect("snapshot")).expect("json");
    edit(&mut snapshot);
    fs::write(&path, serde_json::to_vec(&snapshot).expect("json")).expect("write");
}

/// Leaves the checkpoint of a stopped run in `out` (the server's fourth
/// API call fails), then makes it `state`.
async fn make_earlier(state: Earlier, server: &FakeServer, out: &Path) {
    if matches!(state, Earlier::None) {
        server.set_faults(Faults::none());
        return;
    }
    let mut first = options(server, out);
    first.fail_fast = true;
    assert_eq!(run(first).await.expect_err("stops").code, 3);
    server.set_faults(Faults::none());
    let unix_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    match state {
        Earlier::None | Earlier::Valid => {}
        Earlier::ConfigChanged => edit_snapshot(out, |s| s["config_hash"] = "sha256:0".into()),
        Earlier::Expired => {
            // A journal's records are dated too: without it, only the
            // snapshot's dates count.
            let _ = fs::remove_file(out.join(".checkpoint/journal"));
            edit_snapshot(out, |s| {
                s["created_at"] = (unix_now - 3 * 86_400).into();
                s["updated_at"] = (unix_now - 2 * 86_400).into();
            });
        }
        Earlier::FromTheFuture => {
            edit_snapshot(out, |s| s["updated_at"] = (unix_now + 86_400).into())
        }
        Earlier::UnsupportedVersion => edit_snapshot(out, |s| s["version"] = 999.into()),
        Earlier::Corrupt => {
            fs::write(out.join(".checkpoint/snapshot.json"), b"{ torn").expect("corrupt");
        }
    }
}

/// How a run ends, for the matrix: exported or exit code, and what became
/// of the checkpoint.
#[derive(Debug, PartialEq)]
enum Ends {
    Exported(CheckpointUse),
    Exit(i32),
}

/// Every earlier state × every flag: what a user gets, and never
/// "internal" (before, `--restart` on a valid checkpoint exited 2 with
/// "✗ internal: restart of a valid checkpoint").
#[tokio::test(start_paused = true)]
async fn every_checkpoint_state_by_every_restart_flag() {
    use Earlier as E;
    let states = [
        E::None,
        E::Valid,
        E::ConfigChanged,
        E::Expired,
        E::FromTheFuture,
        E::UnsupportedVersion,
        E::Corrupt,
    ];
    for state in states {
        for flag in ["plain", "--resume", "--resume=auto", "--restart"] {
            // A server whose fourth API call fails once: the stopped run.
            let server = fourth_api_call_fails().await;
            let scratch = Scratch::new(&format!("matrix-{state:?}-{flag}"));
            make_earlier(state, &server, &scratch.out()).await;
            let mut options = options(&server, &scratch.out());
            match flag {
                "--resume" => options.resume = Resume::On,
                "--resume=auto" => options.resume = Resume::Auto,
                "--restart" => options.restart = true,
                _ => {}
            }
            let case = format!("{state:?} × {flag}");
            let ends = match run(options).await {
                Ok(summary) => {
                    check_clean_export(&scratch.out(), &server.file());
                    assert!(
                        !scratch.out().join(".checkpoint").exists(),
                        "{case}: a finished export removes its checkpoint"
                    );
                    Ends::Exported(summary.checkpoint)
                }
                Err(error) => {
                    assert!(!error.message.contains("internal"), "{case}: {error}");
                    if error.code == 2 {
                        assert!(
                            error.message.contains("--restart")
                                || error.message.contains("Cannot resume"),
                            "{case}: says the way out: {error}"
                        );
                    }
                    Ends::Exit(error.code)
                }
            };
            let started_over =
                |ends: &Ends| matches!(ends, Ends::Exported(CheckpointUse::StartedOver { .. }));
            match (state, flag) {
                (E::None, _) => assert_eq!(ends, Ends::Exported(CheckpointUse::Fresh), "{case}"),
                (E::Valid, "plain") => assert_eq!(ends, Ends::Exit(2), "{case}"),
                (E::Valid, "--resume" | "--resume=auto") => assert!(
                    matches!(ends, Ends::Exported(CheckpointUse::Resumed { done }) if done > 0),
                    "{case}: {ends:?}"
                ),
                (E::Valid, _) => assert!(started_over(&ends), "{case}: {ends:?}"),
                (_, "plain" | "--resume") => assert_eq!(ends, Ends::Exit(2), "{case}"),
                (_, "--resume=auto") => match &ends {
                    Ends::Exported(CheckpointUse::StartedOver { reason }) => {
                        assert!(reason.contains("cannot be continued"), "{case}: {reason}");
                    }
                    other => panic!("{case}: {other:?}"),
                },
                (_, _) => assert!(started_over(&ends), "{case}: {ends:?}"),
            }
        }
    }
}

/// `/nodes` and `/images` name the version the file was read at, so one
/// run never mixes two versions of the file.
#[tokio::test(start_paused = true)]
async fn every_node_and_image_request_pins_the_file_version() {
    let scratch = Scratch::new("pinned");
    let server = server(Faults::none()).await;
    run(options(&server, &scratch.out())).await.expect("export");
    let version = server.file().version;
    let pinned: Vec<String> = server
        .log()
        .into_iter()
        .map(|l| l.uri)
        .filter(|uri| uri.contains("/nodes?") || uri.contains("/v1/images/"))
        .collect();
    assert!(!pinned.is_empty());
    for uri in pinned {
        assert!(uri.contains(&format!("version={version}")), "{uri}");
    }
}

/// A file-layer failure names the file the user asked for and the OS's
/// cause, never the hidden temp file (before: "could not rename into place
/// …/.colors.css.sfatomic-….tmp", no cause).
#[tokio::test(start_paused = true)]
async fn a_write_failure_names_the_target_and_the_cause() {
    let scratch = Scratch::new("write-failure");
    let server = server(Faults::none()).await;
    // Something the export cannot replace: a directory where colors.css goes.
    fs::create_dir_all(scratch.out().join("colors.css")).expect("plant a directory");
    let error = run(options(&server, &scratch.out()))
        .await
        .expect_err("cannot replace a directory");
    let target = scratch.out().join("colors.css");
    assert!(
        error.message.contains(&target.display().to_string()),
        "{error}"
    );
    assert!(error.message.contains("Is a directory"), "{error}");
    assert!(!error.message.contains(".sfatomic-"), "{error}");
}

/// `--verbose` shows the crates' structured events (before, no subscriber
/// was installed and they went nowhere); without it they stay quiet. The
/// binary's own demo server, on loopback; a dry run takes about a second.
#[test]
fn verbose_shows_the_crates_events() {
    let scratch = Scratch::new("verbose");
    let run = |verbose: bool| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_figma-export"));
        command
            .args(["--demo", "--dry-run", "--out"])
            .arg(scratch.out());
        if verbose {
            command.arg("--verbose");
        }
        let output = command.output().expect("run the exporter");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let loud = run(true);
    assert!(loud.contains("steadfast_ratelimit:"), "{loud}");
    assert!(loud.contains("throttled by the server"), "{loud}");
    // And the limiter's status line.
    assert!(loud.contains("  · rate "), "{loud}");
    let quiet = run(false);
    assert!(!quiet.contains("steadfast_"), "{quiet}");
}

/// Variants (a COMPONENT_SET's children, named by their properties) are
/// named `set/property-value…`, not by their properties alone.
#[tokio::test(start_paused = true)]
async fn variants_are_named_after_their_set() {
    let scratch = Scratch::new("variants");
    let server = server(Faults::none()).await;
    run(options(&server, &scratch.out())).await.expect("export");
    let files = tree(&scratch.out());
    for variant in [
        "icons/button/size-16-state-default.svg",
        "icons/button/size-16-state-hover.svg",
        "icons/button/size-24-state-default.svg",
    ] {
        assert!(
            files.contains_key(Path::new(variant)),
            "{variant}: {:?}",
            files
                .keys()
                .filter(|p| p.to_string_lossy().contains("size"))
                .collect::<Vec<_>>()
        );
    }
}

/// Icons come from the page named "Icons" by default (a documentation
/// page's components are not icons); `--icons-page`, `--icons-frame` and
/// `--images-page` choose others, with globs.
#[tokio::test(start_paused = true)]
async fn page_and_frame_filters_choose_what_is_exported() {
    let server = server(Faults::none()).await;
    let file = server.file();
    let icons_of = |out: &Path| -> BTreeSet<PathBuf> {
        tree(out)
            .into_keys()
            .filter(|p| p.starts_with("icons") && p.extension().is_some_and(|e| e == "svg"))
            .collect()
    };
    // Default: the Docs page's components are left out.
    let scratch = Scratch::new("filters-default");
    run(options(&server, &scratch.out())).await.expect("export");
    let default_icons = icons_of(&scratch.out());
    assert_eq!(default_icons.len(), file.icons.len());
    assert!(!default_icons.contains(Path::new("icons/usage-card.svg")));

    // Every page.
    let scratch = Scratch::new("filters-any");
    let mut any = options(&server, &scratch.out());
    any.filters.icons_page = Globs::new(["*"]);
    run(any).await.expect("export");
    let all = icons_of(&scratch.out());
    assert_eq!(all.len(), file.icons.len() + 2);
    assert!(all.contains(Path::new("icons/usage-card.svg")));

    // One page, one frame, with globs and any case.
    let scratch = Scratch::new("filters-frame");
    let mut framed = options(&server, &scratch.out());
    framed.filters.icons_page = Globs::new(["do*"]);
    framed.filters.icons_frame = Globs::new(["EXAMPLE?"]);
    framed.filters.images_page = Globs::new(["Docs"]);
    run(framed).await.expect("export");
    assert_eq!(
        icons_of(&scratch.out()),
        BTreeSet::from([PathBuf::from("icons/example-button.svg")])
    );
    let images: BTreeSet<PathBuf> = tree(&scratch.out())
        .into_keys()
        .filter(|p| p.starts_with("images"))
        .collect();
    assert_eq!(
        images,
        BTreeSet::from(
            [
                "images/examples.png",
                "images/examples@2x.png",
                "images/examples@3x.png"
            ]
            .map(PathBuf::from)
        )
    );

    // Nothing found: a warning naming the pages, not a silent empty export.
    let scratch = Scratch::new("filters-none");
    let mut none = options(&server, &scratch.out());
    none.filters.icons_page = Globs::new(["Nope"]);
    let summary = run(none).await.expect("an export of images only");
    assert_eq!(summary.exported as usize, 3 * file.images.len());
}

/// The designers save the file while an export runs: every later request
/// still names the version the export started from, so the output is one
/// version of the file, not a mix.
#[tokio::test(start_paused = true)]
async fn a_version_saved_mid_run_does_not_mix_into_the_export() {
    let scratch = Scratch::new("mid-run-version");
    let server = server(Faults {
        new_version_after: Some(2),
        ..Faults::none()
    })
    .await;
    let started_at = server.file().version;
    run(options(&server, &scratch.out())).await.expect("export");
    assert_ne!(
        server.file().version,
        started_at,
        "the file changed mid-run"
    );
    let later: Vec<String> = server
        .log()
        .into_iter()
        .skip(3)
        .map(|l| l.uri)
        .filter(|uri| uri.starts_with("/v1/"))
        .collect();
    assert!(!later.is_empty());
    for uri in later {
        assert!(uri.contains(&format!("version={started_at}")), "{uri}");
    }
    check_clean_export(&scratch.out(), &server.file());
}

/// Names that collide once slugged ("Hero/Banner 7" and "hero/banner 7")
/// keep their files when the nodes move: the same paths from a file whose
/// nodes come in another order with other ids (before, the suffix was the
/// node id and the plain name went to whichever came first).
#[tokio::test(start_paused = true)]
async fn collision_suffixes_survive_moved_nodes() {
    let paths_of = |out: &Path| -> BTreeSet<PathBuf> { tree(out).into_keys().collect() };
    let original = FakeFile::generate(SEED);
    let mut moved = original.clone();
    moved.images.reverse();
    for (i, node) in moved.images.iter_mut().enumerate() {
        node.id = format!("7:{i}");
    }
    let mut exported = Vec::new();
    for (name, file) in [("collide-a", original), ("collide-b", moved)] {
        let scratch = Scratch::new(name);
        let server = FakeServer::start(file, Faults::none())
            .await
            .expect("server");
        run(options(&server, &scratch.out())).await.expect("export");
        exported.push(paths_of(&scratch.out()));
    }
    assert_eq!(exported[0], exported[1]);
    assert!(exported[0].contains(Path::new("images/hero/banner-7.png")));
}

/// Two exporters with one token and one Redis, at once, against one server
/// that allows 4 API calls per second: together they keep under it (no
/// 429), where each on its own limiter would send up to 8 per second. Real
/// time (the Redis server's clock decides), against a `redis-server` the
/// test starts on 127.0.0.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_exporters_share_one_quota_through_redis() {
    let redis = steadfast_testkit::redis::RedisServer::start();
    let server = server(Faults {
        rate_limit: Some((240, 2)),
        ..Faults::none()
    })
    .await;
    let (a, b) = (Scratch::new("redis-a"), Scratch::new("redis-b"));
    let shared = |out: PathBuf| Options {
        rate_limit: "240/min".parse().expect("rate"),
        rate_limit_redis: Some(redis.url()),
        ..options(&server, &out)
    };
    let (first, second) = tokio::join!(run(shared(a.out())), run(shared(b.out())));
    let (first, second) = (first.expect("first export"), second.expect("second export"));
    assert_eq!(first.exported, second.exported);
    assert!(first.exported > 0);
    let limited: Vec<_> = server
        .log()
        .into_iter()
        .filter(|r| r.uri.starts_with("/v1/files") || r.uri.starts_with("/v1/images"))
        .collect();
    assert!(limited.len() >= 4, "{} limited calls", limited.len());
    let throttled = limited.iter().filter(|r| r.status == 429).count();
    assert_eq!(throttled, 0, "the server's limit was hit: {limited:?}");
    // Any second holds at most the rate plus the server's burst.
    for (i, r) in limited.iter().enumerate() {
        let in_second = limited[i..]
            .iter()
            .take_while(|later| later.at - r.at < Duration::from_secs(1))
            .count();
        assert!(in_second <= 5, "{in_second} calls within a second from {i}");
    }
    assert_eq!(first.throttled + second.throttled, 0);
}

//! Save, resume, validation, locks, removal, permissions, compaction.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use steadfast_checkpoint::{Error, FileStore, Opened, Rejection, DEFAULT_MAX_AGE};

use crate::{config, Scratch, TestClock};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Progress {
    pages: u32,
}

const T0: u64 = 1_790_000_000;

fn fresh(opened: Opened<Progress>) -> FileStore<Progress> {
    match opened {
        Opened::Fresh(store) => store,
        other => panic!("expected a fresh checkpoint, got {other:?}"),
    }
}

fn resumed(opened: Opened<Progress>) -> FileStore<Progress> {
    match opened {
        Opened::Resumed { store, torn: None } => store,
        other => panic!("expected a clean resume, got {other:?}"),
    }
}

fn rejected(opened: Opened<Progress>) -> Rejection {
    match opened {
        Opened::Rejected(rejected) => rejected.reason().clone(),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn keys(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("1:{i}/svg@1")).collect()
}

#[test]
fn save_crash_resume_then_finish() {
    let out = Scratch::new("flow");
    let clock = TestClock::at(T0);
    let mut store = fresh(FileStore::open(config(&out.0, &["svg"], &clock)).expect("open"));
    store.record(&keys(0..100)).expect("batch 1");
    clock.advance(Duration::from_secs(30));
    store
        .record_with_state(&keys(100..150), Progress { pages: 2 })
        .expect("batch 2");
    store.record(&keys(140..160)).expect("overlapping batch");
    // A crash: the store is dropped without `remove`.
    drop(store);

    let store = resumed(FileStore::open(config(&out.0, &["svg"], &clock)).expect("reopen"));
    let want: HashSet<String> = keys(0..160).into_iter().collect();
    assert_eq!(store.completed(), &want);
    assert!(store.is_done("1:7/svg@1") && !store.is_done("1:999/svg@1"));
    assert_eq!(store.state(), &Progress { pages: 2 });
    assert_eq!(store.updated_at(), clock.now());
    assert_eq!(store.created_at(), clock.now() - Duration::from_secs(30));

    // Success: everything is removed and the directory flushed.
    let dir = store.dir().to_path_buf();
    assert!(dir.starts_with(&out.0) && dir.ends_with(".checkpoint"));
    store.remove().expect("remove");
    assert!(!dir.exists());
    assert_eq!(fs::read_dir(&out.0).expect("ls").count(), 0);
}

#[test]
fn the_files_are_what_the_readme_says_and_private() {
    let out = Scratch::new("files");
    let clock = TestClock::at(T0);
    let mut store = fresh(FileStore::open(config(&out.0, &["svg"], &clock)).expect("open"));
    store.record(&["a", "b"]).expect("record");
    let dir = out.0.join(".checkpoint");
    let mode = |p: &std::path::Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    for name in ["snapshot.json", "journal", "lock"] {
        assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
    }
    let snapshot: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("snapshot.json")).expect("read")).expect("json");
    assert_eq!(snapshot["format"], "steadfast-checkpoint");
    assert_eq!(snapshot["version"], 1);
    assert_eq!(snapshot["tool"]["name"], "figma-export");
    assert_eq!(snapshot["job"], "file-abc");
    assert!(snapshot["config_hash"]
        .as_str()
        .expect("hash")
        .starts_with("sha256:"));
    let journal = fs::read_to_string(dir.join("journal")).expect("read");
    let line = journal.lines().next().expect("one record");
    assert_eq!(&line[8..9], " ");
    assert_eq!(
        &line[9..],
        format!(r#"{{"seq":1,"at":{T0},"keys":["a","b"]}}"#)
    );
    let lock: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("lock")).expect("read")).expect("json");
    assert_eq!(lock["pid"], std::process::id());
}

#[test]
fn a_changed_config_is_rejected_with_both_hashes_and_nothing_deleted() {
    let out = Scratch::new("config");
    let clock = TestClock::at(T0);
    let mut store = fresh(FileStore::open(config(&out.0, &["svg"], &clock)).expect("open"));
    store.record(&keys(0..10)).expect("record");
    drop(store);
    let old = steadfast_checkpoint::config_hash(&["svg"]).expect("hash");
    let new = steadfast_checkpoint::config_hash(&["svg", "pdf"]).expect("hash");
    let opened =
        FileStore::<Progress>::open(config(&out.0, &["svg", "pdf"], &clock)).expect("open");
    assert_eq!(
        rejected(opened),
        Rejection::ConfigChanged {
            saved: old.clone(),
            current: new.clone()
        }
    );
    let text = Rejection::ConfigChanged {
        saved: old,
        current: new,
    }
    .to_string();
    assert!(text.contains("--restart"), "says the way out: {text}");
    // Still there: the old config resumes it.
    let store = resumed(FileStore::open(config(&out.0, &["svg"], &clock)).expect("open"));
    assert_eq!(store.completed().len(), 10);
    drop(store);
    // Discarding is explicit, and starts a fresh checkpoint.
    let Opened::Rejected(rejected) =
        FileStore::<Progress>::open(config(&out.0, &["pdf"], &clock)).expect("open")
    else {
        panic!("expected a rejection")
    };
    let store = rejected.discard().expect("discard");
    assert!(store.completed().is_empty());
    drop(store);
    fresh_or_resumed_empty(FileStore::open(config(&out.0, &["pdf"], &clock)).expect("open"));
}

fn fresh_or_resumed_empty(opened: Opened<Progress>) {
    match opened {
        Opened::Resumed { store, torn: None } => assert!(store.completed().is_empty()),
        other => panic!("expected the discarded-then-fresh checkpoint, got {other:?}"),
    }
}

#[test]
fn expiry_counts_from_the_last_update_and_the_future_is_rejected() {
    let out = Scratch::new("expiry");
    let clock = TestClock::at(T0);
    let mut store = fresh(FileStore::open(config(&out.0, &["svg"], &clock)).expect("open"));
    clock.advance(Duration::from_secs(20 * 3600));
    store.record(&keys(0..5)).expect("record at 20 h");
    drop(store);
    // 23 h after the last update (43 h after creation): still fine.
    clock.advance(Duration::from_secs(23 * 3600));
    drop(resumed(
        FileStore::open(config(&out.0, &["svg"], &clock)).expect("open"),
    ));
    // 25 h after it: expired.
    clock.advance(Duration::from_secs(2 * 3600));
    let reason = rejected(FileStore::open(config(&out.0, &["svg"], &clock)).expect("open"));
    assert_eq!(
        reason,
        Rejection::Expired {
            age: Duration::from_secs(25 * 3600),
            limit: DEFAULT_MAX_AGE
        }
    );
    assert!(reason.to_string().contains("25.0 h old"), "{reason}");
    // A clock set back two hours before the last update: from the future.
    clock.set(T0 + 18 * 3600);
    let reason = rejected(FileStore::open(config(&out.0, &["svg"], &clock)).expect("open"));
    assert!(
        matches!(reason, Rejection::FromTheFuture { .. }),
        "{reason:?}"
    );
    // A custom limit.
    clock.set(T0 + 21 * 3600);
    let short = config(&out.0, &["svg"], &clock).max_age(Duration::from_secs(600));
    assert!(matches!(
        rejected(FileStore::open(short).expect("open")),
        Rejection::Expired { .. }
    ));
}

#[test]
fn a_torn_last_record_is_dropped_and_reported_and_nothing_before_it_lost() {
    let out = Scratch::new("torn");
    let clock = TestClock::at(T0);
    let mut store = fresh(FileStore::open(config(&out.0, &["svg"], &clock)).expect("open"));
    store.record(&keys(0..3)).expect("one");
    store.record(&keys(3..6)).expect("two");
    drop(store);
    let journal = out.0.join(".checkpoint/journal");
    let mut bytes = fs::read(&journal).expect("read");
    let good = bytes.len();
    bytes.extend_from_slice(b"1234abcd {\"seq\":3,\"at\":1,\"ke");
    fs::write(&journal, &bytes).expect("tear");
    match FileStore::<Progress>::open(config(&out.0, &["svg"], &clock)).expect("open") {
        Opened::Resumed {
            store,
            torn: Some(torn),
        } => {
            assert_eq!(torn.line, 3);
            assert_eq!(torn.bytes, bytes.len() - good);
            assert_eq!(store.completed().len(), 6);
            let mut store = store;
            store
                .record(&keys(6..7))
                .expect("records after the torn one");
        }
        other => panic!("expected a resume with a torn record, got {other:?}"),
    }
    let store = resumed(FileStore::open(config(&out.0, &["svg"], &clock)).expect("open"));
    assert_eq!(store.completed().len(), 7);
}

#[test]
fn a_bad_record_in_the_middle_is_corrupt_with_its_place() {
    let out = Scratch::new("corrupt");
    let clock = TestClock::at(T0);
    let mut store = fresh(FileStore::open(config(&out.0, &["svg"], &clock)).expect("open"));
    for i in 0..3 {
        store.record(&keys(i * 2..i * 2 + 2)).expect("record");
    }
    drop(store);
    let journal = out.0.join(".checkpoint/journal");
    let text = fs::read_to_string(&journal).expect("read");
    let first_len = text.lines().next().expect("line").len() + 1;
    let broken = text.replacen("\"seq\":2", "\"seq\":9", 1);
    fs::write(&journal, broken).expect("corrupt");
    match rejected(FileStore::open(config(&out.0, &["svg"], &clock)).expect("open")) {
        Rejection::Corrupt { what, location } => {
            assert!(what.contains("checksum"), "{what}");
            assert!(
                location.ends_with(&format!("line 2 (byte {first_len})")),
                "{location}"
            );
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    fs::write(
        out.0.join(".checkpoint/snapshot.json"),
        b"{\"format\": \"steadfast-checkpoint\", \"version\": 7}",
    )
    .expect("future version");
    assert_eq!(
        rejected(FileStore::open(config(&out.0, &["svg"], &clock)).expect("open")),
        Rejection::UnsupportedVersion {
            found: 7,
            supported: 1
        }
    );
}

#[test]
fn a_second_opener_gets_locked_with_the_holders_identity() {
    let out = Scratch::new("lock");
    let clock = TestClock::at(T0);
    let store = fresh(FileStore::open(config(&out.0, &["svg"], &clock)).expect("open"));
    match FileStore::<Progress>::open(config(&out.0, &["svg"], &clock)) {
        Err(Error::Locked {
            holder: Some(holder),
            path,
        }) => {
            assert_eq!(holder.pid, std::process::id());
            assert!(!holder.host.is_empty());
            assert_eq!(holder.started_at, clock.now());
            assert!(path.ends_with(".checkpoint/lock"));
            let error = Error::Locked {
                holder: Some(holder),
                path,
            };
            assert!(error.to_string().contains("another run (pid"), "{error}");
            assert!(error.is_recoverable());
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(store);
    drop(resumed(
        FileStore::open(config(&out.0, &["svg"], &clock)).expect("free again"),
    ));
}

#[test]
fn the_journal_is_folded_into_the_snapshot_when_it_grows() {
    let out = Scratch::new("compact");
    let clock = TestClock::at(T0);
    let small = || config(&out.0, &["svg"], &clock).compact_at(2_048);
    let mut store = fresh(FileStore::open(small()).expect("open"));
    for batch in 0..60 {
        store
            .record(&keys(batch * 10..batch * 10 + 10))
            .expect("record");
    }
    let journal = out.0.join(".checkpoint/journal");
    let journal_len = fs::metadata(&journal).expect("stat").len();
    let snapshot_len = fs::metadata(out.0.join(".checkpoint/snapshot.json"))
        .expect("stat")
        .len();
    assert!(
        journal_len <= 2_048.max(snapshot_len) + 512,
        "journal {journal_len} B, snapshot {snapshot_len} B: folded"
    );
    drop(store);
    let store = resumed(FileStore::open(small()).expect("reopen"));
    assert_eq!(store.completed().len(), 600);
}

#[test]
fn a_journal_left_by_an_interrupted_removal_counts_as_nothing() {
    let out = Scratch::new("half-removed");
    let clock = TestClock::at(T0);
    let mut store = fresh(FileStore::open(config(&out.0, &["svg"], &clock)).expect("open"));
    store.record(&["x"]).expect("record");
    drop(store);
    fs::remove_file(out.0.join(".checkpoint/snapshot.json")).expect("half a removal");
    let store = fresh(FileStore::open(config(&out.0, &["svg"], &clock)).expect("open"));
    assert!(store.completed().is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn the_layer_skips_done_keys_and_records_successes() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use steadfast_checkpoint::{CheckpointError, CheckpointLayer, Checkpointed};
    use tower::{service_fn, Layer, ServiceExt};

    let out = Scratch::new("layer");
    let clock = TestClock::at(T0);
    let mut store = fresh(FileStore::open(config(&out.0, &["svg"], &clock)).expect("open"));
    store.record(&["done-before"]).expect("an earlier run");
    let store = Arc::new(Mutex::new(store));
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let inner = service_fn(move |id: String| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move {
            if id == "broken" {
                Err("render failed")
            } else {
                Ok(format!("<svg id='{id}'/>"))
            }
        }
    });
    let service = CheckpointLayer::new(Arc::clone(&store), |id: &String| id.clone()).layer(inner);

    let skipped = service
        .clone()
        .oneshot("done-before".into())
        .await
        .expect("skip");
    assert_eq!(skipped, Checkpointed::Skipped);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "the inner service was not called"
    );

    let done = service.clone().oneshot("new".into()).await.expect("done");
    assert_eq!(done, Checkpointed::Done("<svg id='new'/>".to_string()));
    assert!(store.lock().expect("lock").is_done("new"));

    match service.clone().oneshot("broken".into()).await {
        Err(CheckpointError::Service(e)) => assert_eq!(e, "render failed"),
        other => panic!("expected the inner error, got {other:?}"),
    }
    assert!(
        !store.lock().expect("lock").is_done("broken"),
        "failures are not recorded"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    drop(service);

    // Recorded durably: a reopened store has it.
    let store = Arc::into_inner(store)
        .expect("sole owner")
        .into_inner()
        .expect("lock");
    drop(store);
    let store = resumed(FileStore::open(config(&out.0, &["svg"], &clock)).expect("reopen"));
    assert!(store.is_done("new") && store.is_done("done-before"));
}

/// A store that counts its `record` calls (flushes), over a real one.
struct Counting<St> {
    inner: St,
    records: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    keys: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl<St: steadfast_checkpoint::Store> steadfast_checkpoint::Store for Counting<St> {
    fn is_done(&self, key: &str) -> bool {
        self.inner.is_done(key)
    }
    fn record(&mut self, keys: &[&str]) -> Result<(), Error> {
        use std::sync::atomic::Ordering;
        self.records.fetch_add(1, Ordering::SeqCst);
        self.keys.fetch_add(keys.len(), Ordering::SeqCst);
        // Slow enough that requests pile up behind each flush.
        std::thread::sleep(Duration::from_millis(2));
        self.inner.record(keys)
    }
    fn flush(&mut self) -> Result<(), Error> {
        self.inner.flush()
    }
    fn remove(self) -> Result<(), Error> {
        self.inner.remove()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_commits_records_in_groups_and_every_one_is_durable() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use steadfast_checkpoint::{CheckpointLayer, Checkpointed};
    use tower::{service_fn, Layer, ServiceExt};

    let out = Scratch::new("layer-group");
    let clock = TestClock::at(T0);
    let store = fresh(FileStore::open(config(&out.0, &["svg"], &clock)).expect("open"));
    let (records, recorded_keys) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let store = Arc::new(Mutex::new(Counting {
        inner: store,
        records: Arc::clone(&records),
        keys: Arc::clone(&recorded_keys),
    }));
    let inner = service_fn(|id: String| async move { Ok::<_, std::io::Error>(id.len()) });
    let service = CheckpointLayer::new(Arc::clone(&store), |id: &String| id.clone()).layer(inner);

    const N: usize = 300;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..N {
        let service = service.clone();
        tasks.spawn(async move { service.oneshot(format!("item-{i}")).await });
    }
    while let Some(joined) = tasks.join_next().await {
        assert!(matches!(joined.expect("task"), Ok(Checkpointed::Done(_))));
    }
    let flushes = records.load(Ordering::SeqCst);
    assert_eq!(recorded_keys.load(Ordering::SeqCst), N, "each key once");
    assert!(
        flushes < N / 2,
        "{flushes} record calls for {N} items: records are not grouped"
    );
    // Asked again: from memory, no new record.
    assert_eq!(
        service
            .clone()
            .oneshot("item-7".into())
            .await
            .expect("skip"),
        Checkpointed::Skipped
    );
    assert_eq!(records.load(Ordering::SeqCst), flushes);
    drop(service);

    // Every answered item is durable: a reopened store has all of them.
    let store = Arc::into_inner(store)
        .expect("the writer let go of the store")
        .into_inner()
        .expect("lock");
    drop(store);
    let store = resumed(FileStore::open(config(&out.0, &["svg"], &clock)).expect("reopen"));
    assert!((0..N).all(|i| store.is_done(&format!("item-{i}"))));
}

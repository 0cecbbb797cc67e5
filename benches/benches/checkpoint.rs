//! steadfast-checkpoint's cost per batch, against rewriting everything.
//!
//! Group (names are read by scripts; keep them): `checkpoint_record_batch`,
//! recording one batch of 100 new keys, durably, on the real disk (a
//! directory under cargo's target dir):
//! - `done_1k`: with 1,000 keys already recorded;
//! - `done_100k`: with 100,000 already recorded;
//! - `full_rewrite_100k`: the naive approach, rewriting one JSON file with
//!   all 100,000+ keys per batch (atomically and durably, through
//!   steadfast-atomicfs, so the durability is the same).
//!
//! Every iteration records new keys, so the stores keep growing as the
//! bench runs, and the journal's occasional fold into a new snapshot is
//! part of what is measured.
//!
//! Group `checkpoint_layer_1000_items`: 1,000 concurrent requests through
//! `CheckpointLayer` around a service that answers at once, on a 2-worker
//! tokio runtime, each answered only once its key is durable:
//! - `steadfast`: the layer (group commit: one writer, one `record` and one
//!   flush per group of keys that finished meanwhile);
//! - `per_item`: what the layer did before, as a baseline: a `std` mutex
//!   around the store for "done?", then one `spawn_blocking` and one
//!   `record` (one flush) per item.

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::{Arc, Mutex};

use criterion::{criterion_group, criterion_main, Criterion};
use steadfast_checkpoint::{config_hash, CheckpointLayer, Config, FileStore, Opened};
use tower::{service_fn, Layer, ServiceExt};

fn bench_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("bench-checkpoint-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create bench dir");
    dir
}

fn key(i: u64) -> String {
    format!("1:{i}/svg@2x")
}

/// A store with `done` keys recorded (and folded into its snapshot).
fn store_with(dir: &Path, done: u64) -> FileStore<()> {
    let config = Config::new(dir, "bench", config_hash("bench").expect("hash"));
    let Opened::Fresh(mut store) = FileStore::open(config).expect("open") else {
        panic!("a fresh bench directory")
    };
    let keys: Vec<String> = (0..done).map(key).collect();
    for chunk in keys.chunks(10_000) {
        store.record(chunk).expect("seed");
    }
    store.flush().expect("fold");
    store
}

fn record_batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("checkpoint_record_batch");
    group.measurement_time(Duration::from_secs(10));
    for (name, done) in [("done_1k", 1_000u64), ("done_100k", 100_000)] {
        let dir = bench_dir(name);
        let mut store = store_with(&dir, done);
        let mut next = done;
        group.bench_function(name, |b| {
            b.iter(|| {
                let batch: Vec<String> = (next..next + 100).map(key).collect();
                next += 100;
                store.record(&batch).expect("record");
            });
        });
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    let dir = bench_dir("full-rewrite");
    let path = dir.join("checkpoint.json");
    let mut keys: Vec<String> = (0..100_000).map(key).collect();
    let mut next = 100_000u64;
    group.sample_size(20);
    group.bench_function("full_rewrite_100k", |b| {
        b.iter(|| {
            keys.extend((next..next + 100).map(key));
            next += 100;
            let bytes = serde_json::to_vec(&keys).expect("serialize");
            steadfast_atomicfs::write(&path, bytes).expect("write");
        });
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The layer's former per-item path: "done?" under the mutex, then one
/// blocking-pool hop and one durable record per item.
async fn per_item(store: Arc<Mutex<FileStore<()>>>, key: String) -> usize {
    if store.lock().expect("lock").is_done(&key) {
        return 0;
    }
    let response = key.len();
    tokio::task::spawn_blocking(move || store.lock().expect("lock").record(&[key.as_str()]))
        .await
        .expect("join")
        .expect("record");
    response
}

/// Runs 1,000 calls at once, with keys never used before, and waits for
/// them all.
async fn thousand<F, Fut>(next: &mut u64, call: F)
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let first = *next;
    *next += 1000;
    let mut tasks = tokio::task::JoinSet::new();
    for i in first..first + 1000 {
        tasks.spawn(call(key(i)));
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task");
    }
}

fn layer_1000_items(c: &mut Criterion) {
    let mut group = c.benchmark_group("checkpoint_layer_1000_items");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    let store = Arc::new(Mutex::new(store_with(&bench_dir("layer-steadfast"), 0)));
    let service = CheckpointLayer::new(Arc::clone(&store), |k: &String| k.clone()).layer(
        service_fn(|k: String| async move { Ok::<_, std::io::Error>(k.len()) }),
    );
    let mut next = 0u64;
    group.bench_function("steadfast", |b| {
        b.iter(|| {
            rt.block_on(thousand(&mut next, |key| {
                let call = service.clone().oneshot(key);
                async move {
                    call.await.expect("recorded");
                }
            }))
        });
    });

    let store = Arc::new(Mutex::new(store_with(&bench_dir("layer-per-item"), 0)));
    let mut next = 0u64;
    group.bench_function("per_item", |b| {
        b.iter(|| {
            rt.block_on(thousand(&mut next, |key| {
                let call = per_item(Arc::clone(&store), key);
                async move {
                    call.await;
                }
            }))
        });
    });
    group.finish();
}

criterion_group!(benches, record_batch, layer_1000_items);
criterion_main!(benches);

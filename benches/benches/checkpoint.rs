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

use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use steadfast_checkpoint::{config_hash, Config, FileStore, Opened};

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

criterion_group!(benches, record_batch);
criterion_main!(benches);

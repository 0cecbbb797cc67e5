//! steadfast-atomicfs against atomic-write-file, tempfile, and the minimal
//! durable sequence written by hand.
//!
//! Groups (names are read by scripts; keep them):
//! - `atomicfs_write_4k`: one durable 4 KiB replace. `floor` is the least
//!   that is crash-safe (create temp, write, `fdatasync`, rename, `fsync`
//!   the directory), `steadfast` is `steadfast_atomicfs::write` (full
//!   durability), `atomic_write_file` the atomic-write-file crate,
//!   `tempfile_persist` tempfile's `NamedTempFile` with `sync_all`,
//!   `persist` and a directory `fsync`.
//! - `atomicfs_batch_100x4k`: 100 such files into one directory:
//!   `steadfast_batch` (one directory flush), `steadfast_each` (100 calls
//!   of `write`), `atomic_write_file` (100 commits).
//!
//! Everything runs in a directory under cargo's target dir, on the real
//! disk (not tmpfs: flushes there cost nothing and would measure nothing).
//! Each iteration overwrites existing files, as an exporter re-run does.

use std::fs::{self, File, OpenOptions};
use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};

const PAYLOAD: [u8; 4096] = [0x5a; 4096];

/// A fresh bench directory on the real disk.
fn bench_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("bench-atomicfs-{name}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create bench dir");
    dir
}

/// The minimal durable replace, by hand.
fn floor(dir: &Path, target: &Path, bytes: &[u8]) {
    let temp = dir.join(".floor.tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .expect("create");
    file.write_all(bytes).expect("write");
    file.sync_data().expect("fdatasync");
    drop(file);
    fs::rename(&temp, target).expect("rename");
    File::open(dir)
        .expect("open dir")
        .sync_all()
        .expect("fsync dir");
}

fn atomic_write_file(target: &Path, bytes: &[u8]) {
    let mut file = atomic_write_file::AtomicWriteFile::open(target).expect("open");
    file.write_all(bytes).expect("write");
    file.commit().expect("commit");
}

fn tempfile_persist(dir: &Path, target: &Path, bytes: &[u8]) {
    let mut file = tempfile::NamedTempFile::new_in(dir).expect("create");
    file.write_all(bytes).expect("write");
    file.as_file().sync_all().expect("sync");
    file.persist(target).expect("persist");
    File::open(dir)
        .expect("open dir")
        .sync_all()
        .expect("fsync dir");
}

fn write_4k(c: &mut Criterion) {
    let dir = bench_dir("write-4k");
    let target = dir.join("target.bin");
    fs::write(&target, PAYLOAD).expect("seed");
    let mut group = c.benchmark_group("atomicfs_write_4k");
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("floor", |b| {
        b.iter(|| floor(&dir, black_box(&target), black_box(&PAYLOAD)));
    });
    group.bench_function("steadfast", |b| {
        b.iter(|| {
            steadfast_atomicfs::write(black_box(&target), black_box(&PAYLOAD)).expect("write")
        });
    });
    group.bench_function("atomic_write_file", |b| {
        b.iter(|| atomic_write_file(black_box(&target), black_box(&PAYLOAD)));
    });
    group.bench_function("tempfile_persist", |b| {
        b.iter(|| tempfile_persist(&dir, black_box(&target), black_box(&PAYLOAD)));
    });
    group.finish();
    let _ = fs::remove_dir_all(&dir);
}

fn batch_100x4k(c: &mut Criterion) {
    let dir = bench_dir("batch-100x4k");
    let targets: Vec<PathBuf> = (0..100)
        .map(|i| dir.join(format!("icon-{i:03}.svg")))
        .collect();
    for target in &targets {
        fs::write(target, PAYLOAD).expect("seed");
    }
    let mut group = c.benchmark_group("atomicfs_batch_100x4k");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("steadfast_batch", |b| {
        b.iter(|| {
            let mut batch = steadfast_atomicfs::Batch::new();
            for target in &targets {
                batch.add(target, black_box(&PAYLOAD)).expect("stage");
            }
            batch.commit().expect("commit")
        });
    });
    group.bench_function("steadfast_each", |b| {
        b.iter(|| {
            for target in &targets {
                steadfast_atomicfs::write(target, black_box(&PAYLOAD)).expect("write");
            }
        });
    });
    group.bench_function("atomic_write_file", |b| {
        b.iter(|| {
            for target in &targets {
                atomic_write_file(target, black_box(&PAYLOAD));
            }
        });
    });
    group.finish();
    let _ = fs::remove_dir_all(&dir);
}

criterion_group!(benches, write_4k, batch_100x4k);
criterion_main!(benches);

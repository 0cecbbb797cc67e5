//! Fault injection at every step, batch commits, the sink trait and the
//! tower layer.

use std::fs;
use std::path::PathBuf;

use steadfast_atomicfs::testing::{Fault, FaultySink};
use steadfast_atomicfs::{
    Batch, Disk, Durability, ErrorKind, FileSink, Op, Options, PersistError, PersistLayer,
};
use tower::{service_fn, Layer, ServiceExt};

use crate::Scratch;

const STEPS: [Op; 5] = [Op::Create, Op::Write, Op::Sync, Op::Rename, Op::SyncDir];
const FAULTS: [Fault; 3] = [Fault::NoSpace, Fault::Io, Fault::PermissionDenied];

/// The kind each fault must surface as, at each step.
fn expected_kind(op: Op, fault: Fault) -> ErrorKind {
    match (op, fault) {
        (_, Fault::NoSpace) => ErrorKind::InsufficientSpace,
        (Op::Sync | Op::SyncDir, _) => ErrorKind::SyncFailed,
        (_, Fault::PermissionDenied) => ErrorKind::PermissionDenied,
        _ => ErrorKind::Other,
    }
}

#[test]
fn a_fault_at_any_step_keeps_the_old_bytes_and_leaves_no_temp() {
    let dir = Scratch::new("faults");
    for op in STEPS {
        for fault in FAULTS {
            for existed in [true, false] {
                let target = dir.path("target.bin");
                let _ = fs::remove_file(&target);
                if existed {
                    fs::write(&target, b"old bytes").expect("seed");
                }
                let sink = FaultySink::new(op, fault);
                let error = sink
                    .write(&target, b"new bytes, never seen")
                    .expect_err("the step fails");
                let case = format!("{op:?} × {fault:?} (target existed: {existed})");
                assert_eq!(sink.injected(), 1, "{case}: fault fired once");
                assert_eq!(error.op(), op, "{case}: error names the step");
                assert_eq!(error.kind(), expected_kind(op, fault), "{case}");
                assert!(!error.is_in_place(), "{case}");
                let named = if op == Op::SyncDir {
                    dir.0.clone()
                } else if op == Op::Rename {
                    target.clone()
                } else {
                    // Create, write and sync name the temp file.
                    error.path().to_path_buf()
                };
                assert_eq!(error.path(), named, "{case}");
                assert!(
                    error.path().starts_with(&dir.0),
                    "{case}: path {:?}",
                    error.path()
                );
                if existed {
                    assert_eq!(fs::read(&target).expect("read"), b"old bytes", "{case}");
                } else {
                    assert!(!target.exists(), "{case}: no new file appeared");
                }
                let left: Vec<_> = dir
                    .entries()
                    .into_iter()
                    .filter(|n| n != "target.bin")
                    .collect();
                assert!(left.is_empty(), "{case}: left behind {left:?}");
            }
        }
    }
}

#[test]
fn a_failed_flush_is_never_retried() {
    let dir = Scratch::new("no-retry");
    let sink = FaultySink::new(Op::Sync, Fault::Io);
    let error = sink.write(&dir.path("a"), b"x").expect_err("fails");
    assert_eq!(sink.runs(), 1, "exactly one flush attempt");
    assert!(!error.is_recoverable());
    assert!(
        error.to_string().contains("abandoned"),
        "says what happened: {error}"
    );
}

#[test]
fn a_batch_flushes_each_directory_once_and_commits_everything() {
    let dir = Scratch::new("batch");
    fs::create_dir_all(dir.path("a")).expect("mkdir");
    fs::create_dir_all(dir.path("b")).expect("mkdir");
    // Count directory flushes with a fault that never fires (run u64::MAX).
    let counter = FaultySink::new(Op::SyncDir, Fault::Io).on_run(u64::MAX);
    let mut batch = counter.batch();
    let mut expected = Vec::new();
    // 40 files: enough for the flushes to run on several threads.
    for i in 0..40 {
        let sub = if i % 2 == 0 { "a" } else { "b" };
        let path = dir.path(sub).join(format!("{i}.txt"));
        batch.add(&path, format!("file {i}")).expect("stage");
        expected.push(path);
    }
    assert_eq!(batch.len(), 40);
    let committed = batch.commit().expect("commit");
    assert_eq!(committed, expected, "all committed, in staging order");
    assert_eq!(counter.runs(), 2, "one flush per directory, not per file");
    for (i, path) in expected.iter().enumerate() {
        assert_eq!(fs::read_to_string(path).expect("read"), format!("file {i}"));
    }
    assert_eq!(dir.entries(), ["a", "b"]);
    assert_eq!(fs::read_dir(dir.path("a")).expect("ls").count(), 20);
}

#[test]
fn a_batch_that_fails_mid_rename_reports_exactly_what_was_committed() {
    let dir = Scratch::new("batch-partial");
    let paths: Vec<PathBuf> = (0..6).map(|i| dir.path(&format!("{i}.txt"))).collect();
    for path in &paths {
        fs::write(path, b"old").expect("seed");
    }
    let sink = FaultySink::new(Op::Rename, Fault::NoSpace).on_run(4);
    let files: Vec<(&std::path::Path, &[u8])> =
        paths.iter().map(|p| (p.as_path(), &b"new"[..])).collect();
    let error = sink.write_batch(&files).expect_err("the 4th rename fails");
    assert_eq!(error.committed(), &paths[..3]);
    assert_eq!(error.failed().len(), 1);
    assert_eq!(error.failed()[0].0, paths[3]);
    assert_eq!(error.failed()[0].1.op(), Op::Rename);
    assert_eq!(error.not_attempted(), &paths[4..]);
    for (i, path) in paths.iter().enumerate() {
        let want: &[u8] = if i < 3 { b"new" } else { b"old" };
        assert_eq!(fs::read(path).expect("read"), want, "file {i}");
    }
    let names = dir.entries();
    assert_eq!(names.len(), 6, "no temp or backup left: {names:?}");
    assert!(
        error.to_string().contains("3 of 6 files committed"),
        "{error}"
    );
}

#[test]
fn a_batch_whose_flush_fails_commits_nothing() {
    let dir = Scratch::new("batch-sync");
    let paths: Vec<PathBuf> = (0..4).map(|i| dir.path(&format!("{i}"))).collect();
    fs::write(&paths[0], b"old").expect("seed");
    let sink = FaultySink::new(Op::Sync, Fault::Io).on_run(3);
    let mut batch = sink.batch();
    for path in &paths {
        batch.add(path, b"new").expect("stage");
    }
    let error = batch.commit().expect_err("third flush fails");
    assert!(error.committed().is_empty());
    assert_eq!(error.failed()[0].0, paths[2]);
    assert_eq!(error.not_attempted().len(), 3);
    assert_eq!(fs::read(&paths[0]).expect("read"), b"old");
    assert_eq!(dir.entries(), ["0"], "nothing new, no temp files");
}

#[test]
fn a_batch_whose_directory_flush_fails_puts_the_old_files_back() {
    let dir = Scratch::new("batch-dir");
    fs::create_dir_all(dir.path("ok")).expect("mkdir");
    fs::create_dir_all(dir.path("bad")).expect("mkdir");
    let good = dir.path("ok").join("x");
    let old = dir.path("bad").join("y");
    let new = dir.path("bad").join("z");
    fs::write(&old, b"old").expect("seed");
    // Directories are flushed in sorted order: "bad" first.
    let sink = FaultySink::new(Op::SyncDir, Fault::Io).on_run(1);
    let files: Vec<(&std::path::Path, &[u8])> =
        vec![(&good, b"new"), (&old, b"new"), (&new, b"new")];
    let error = sink.write_batch(&files).expect_err("dir flush fails");
    assert_eq!(error.committed(), std::slice::from_ref(&good));
    let failed: Vec<_> = error.failed().iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(failed, [old.clone(), new.clone()]);
    assert!(error.failed().iter().all(|(_, e)| e.op() == Op::SyncDir));
    assert_eq!(fs::read(&good).expect("read"), b"new");
    assert_eq!(fs::read(&old).expect("read"), b"old", "old file put back");
    assert!(!new.exists(), "a new file is taken back");
    assert_eq!(fs::read_dir(dir.path("bad")).expect("ls").count(), 1);
}

#[test]
fn disk_batches_and_durability_levels() {
    let dir = Scratch::new("disk");
    for durability in [Durability::None, Durability::File, Durability::Full] {
        let sink = Disk::with_options(Options::new().durability(durability));
        let a = dir.path("a");
        let b = dir.path("b");
        let files: Vec<(&std::path::Path, &[u8])> = vec![(&a, b"1"), (&b, b"2")];
        assert_eq!(
            sink.write_batch(&files).expect("batch"),
            [a.clone(), b.clone()]
        );
        assert_eq!(fs::read(&b).expect("read"), b"2");
    }
    // Dropping a staged batch removes its temp files.
    let mut batch = Batch::new();
    batch.add(dir.path("c"), b"3").expect("stage");
    drop(batch);
    assert_eq!(dir.entries(), ["a", "b"]);
    // An unstageable file (missing directory) fails the batch before any
    // commit, and names the file.
    let missing = dir.path("nope/d");
    let a = dir.path("a");
    let files: Vec<(&std::path::Path, &[u8])> = vec![(&a, b"changed"), (&missing, b"4")];
    let error = Disk::new().write_batch(&files).expect_err("missing dir");
    assert_eq!(error.failed()[0].1.kind(), ErrorKind::NotFound);
    assert_eq!(error.not_attempted(), std::slice::from_ref(&a));
    assert_eq!(fs::read(&a).expect("read"), b"1");
    assert_eq!(dir.entries(), ["a", "b"]);
}

#[tokio::test(flavor = "current_thread")]
async fn persist_layer_writes_the_inner_services_bytes() {
    let dir = Scratch::new("layer");
    let out = dir.0.clone();
    let layer = PersistLayer::new(Disk::new(), move |id: &u32| out.join(format!("{id}.svg")));
    let inner = service_fn(|id: u32| async move {
        if id == 0 {
            Err("render failed")
        } else {
            Ok(format!("<svg id='{id}'/>").into_bytes())
        }
    });
    let service = layer.layer(inner);
    let saved = service.clone().oneshot(7).await.expect("written");
    assert_eq!(saved.path, dir.path("7.svg"));
    assert_eq!(saved.bytes, 13);
    assert_eq!(
        fs::read_to_string(dir.path("7.svg")).expect("read"),
        "<svg id='7'/>"
    );
    // The inner error comes back as it was, and nothing is written.
    match service.clone().oneshot(0).await {
        Err(PersistError::Service(e)) => assert_eq!(e, "render failed"),
        other => panic!("expected the inner error, got {other:?}"),
    }
    assert!(!dir.path("0.svg").exists());
    // A failing write is a typed error; the file keeps its old bytes.
    fs::write(dir.path("8.svg"), b"old").expect("seed");
    let out = dir.0.clone();
    let faulty = FaultySink::new(Op::Rename, Fault::NoSpace);
    let layer = PersistLayer::new(faulty, move |id: &u32| out.join(format!("{id}.svg")));
    match layer.layer(inner_ok()).oneshot(8).await {
        Err(PersistError::Persist(e)) => {
            assert_eq!(e.kind(), ErrorKind::InsufficientSpace);
            assert_eq!(e.path(), dir.path("8.svg"));
        }
        other => panic!("expected a write error, got {other:?}"),
    }
    assert_eq!(fs::read(dir.path("8.svg")).expect("read"), b"old");
}

fn inner_ok(
) -> impl tower::Service<u32, Response = Vec<u8>, Error = &'static str, Future: Send> + Clone {
    service_fn(|_id: u32| async { Ok::<_, &'static str>(b"new".to_vec()) })
}

/// Leftover temp names in `dir` (this crate's marker).
fn temp_files(dir: &std::path::Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .expect("list")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().contains(".sfatomic-"))
        .collect()
}

#[test]
fn a_file_system_that_cannot_flush_directories_is_not_an_error() {
    // FUSE, vboxsf and some network file systems answer a directory fsync
    // with EINVAL (or EBADF, EISDIR); before, every Full write failed there.
    let dir = Scratch::new("dirsync-unsupported");
    for errno in [
        rustix::io::Errno::INVAL,
        rustix::io::Errno::BADF,
        rustix::io::Errno::ISDIR,
    ] {
        let target = dir.path("colors.json");
        fs::write(&target, b"old").expect("seed");
        let sink = FaultySink::new(Op::SyncDir, Fault::Os(errno.raw_os_error()));
        sink.write(&target, b"new")
            .expect("not supported is not a failure");
        assert_eq!(sink.injected(), 1, "{errno:?}: the flush was tried");
        assert_eq!(fs::read(&target).expect("read"), b"new", "{errno:?}");
        assert!(temp_files(&dir.0).is_empty(), "{errno:?}: no backup left");
    }
    // A batch too.
    let sink = FaultySink::new(
        Op::SyncDir,
        Fault::Os(rustix::io::Errno::INVAL.raw_os_error()),
    );
    let (a, b) = (dir.path("a"), dir.path("b"));
    sink.write_batch(&[(&a, b"1"), (&b, b"2")])
        .expect("batch commits");
    assert_eq!(fs::read(&b).expect("read"), b"2");
    // A real failure (EIO) still rolls back.
    let target = dir.path("colors.json");
    let error = FaultySink::new(Op::SyncDir, Fault::Io)
        .write(&target, b"newer")
        .expect_err("EIO is a failure");
    assert_eq!(error.kind(), ErrorKind::SyncFailed);
    assert_eq!(fs::read(&target).expect("read"), b"new");
}

#[test]
fn a_failed_rollback_never_deletes_the_old_bytes_and_says_where_they_are() {
    let dir = Scratch::new("double-fault");
    for fault in FAULTS {
        // The target existed: its old bytes must survive somewhere, and the
        // error must say the new ones are in place.
        let target = dir.path("icon.svg");
        for leftover in temp_files(&dir.0) {
            fs::remove_file(leftover).expect("clean");
        }
        fs::write(&target, b"old bytes").expect("seed");
        let sink = FaultySink::new(Op::SyncDir, Fault::Io).also(Op::Restore, fault);
        let error = sink.write(&target, b"new bytes").expect_err("flush fails");
        let case = format!("{fault:?}");
        assert_eq!(error.op(), Op::SyncDir, "{case}");
        assert!(
            error.is_in_place(),
            "{case}: the new bytes are at the target"
        );
        assert_eq!(fs::read(&target).expect("read"), b"new bytes", "{case}");
        let kept = error
            .kept_old_file()
            .expect("the old bytes' place is named");
        assert_eq!(fs::read(kept).expect("kept"), b"old bytes", "{case}");
        assert!(
            error
                .to_string()
                .contains("could not be put back: it is kept at"),
            "{case}: {error}"
        );
        fs::remove_file(kept).expect("clean");

        // The target did not exist: removing the new file fails, so the
        // error must not claim the target is untouched.
        let fresh = dir.path("fresh.svg");
        let _ = fs::remove_file(&fresh);
        let error = FaultySink::new(Op::SyncDir, Fault::Io)
            .also(Op::Restore, fault)
            .write(&fresh, b"new")
            .expect_err("flush fails");
        assert!(error.is_in_place(), "{case}: fresh target");
        assert_eq!(error.kept_old_file(), None);
        assert_eq!(fs::read(&fresh).expect("read"), b"new");
        assert!(temp_files(&dir.0).is_empty(), "{case}: nothing else left");
    }
}

#[test]
fn a_rollback_that_works_on_the_second_way_keeps_the_target_untouched() {
    // The swap back fails, moving the old file back works (or, where there
    // is no swap, the first restore is the move back and the error says
    // the new bytes are in place).
    let dir = Scratch::new("half-fault");
    let target = dir.path("icon.svg");
    fs::write(&target, b"old bytes").expect("seed");
    let sink = FaultySink::new(Op::Restore, Fault::Io)
        .on_run(1)
        .also(Op::SyncDir, Fault::Io);
    let error = sink.write(&target, b"new bytes").expect_err("flush fails");
    if error.is_in_place() {
        // No RENAME_EXCHANGE here: the one way back failed.
        let kept = error.kept_old_file().expect("named");
        assert_eq!(fs::read(kept).expect("kept"), b"old bytes");
    } else {
        assert_eq!(fs::read(&target).expect("read"), b"old bytes");
        assert!(temp_files(&dir.0).is_empty());
    }
}

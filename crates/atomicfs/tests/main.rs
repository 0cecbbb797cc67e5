//! Integration tests of steadfast-atomicfs, on the real file system.
//!
//! Unix only: they check modes, symlinks and SIGKILL. On Windows the crate
//! itself is checked to build (`cargo check --target x86_64-pc-windows-gnu`).
#![cfg(unix)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use steadfast_atomicfs::{
    cleanup_orphans, cleanup_orphans_older_than, write, write_with, AtomicFile, Durability,
    ErrorKind, Op, Options,
};

mod faults;

/// A fresh directory under the target dir (on the real disk, not tmpfs),
/// removed when dropped.
struct Scratch(pub(crate) PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("atomicfs-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create scratch dir");
        Self(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Every entry's name, sorted.
    fn entries(&self) -> Vec<String> {
        let mut names: Vec<_> = fs::read_dir(&self.0)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn commit_replaces_the_target_and_leaves_nothing_else() {
    let dir = Scratch::new("commit");
    let target = dir.path("a.json");
    fs::write(&target, b"old").expect("seed");
    let mut file = AtomicFile::create(&target).expect("create");
    file.write_all(b"new bytes").expect("write");
    // Until the commit, readers see the old file.
    assert_eq!(fs::read(&target).expect("read"), b"old");
    let temp = file.temp_path().to_path_buf();
    assert_eq!(
        temp.parent(),
        target.parent(),
        "temp file in the target's directory"
    );
    file.commit().expect("commit");
    assert_eq!(fs::read(&target).expect("read"), b"new bytes");
    assert!(!temp.exists());
    assert_eq!(dir.entries(), ["a.json"]);
}

#[test]
fn every_durability_level_commits() {
    let dir = Scratch::new("durability");
    for (i, d) in [Durability::None, Durability::File, Durability::Full]
        .into_iter()
        .enumerate()
    {
        let target = dir.path(&format!("{i}.bin"));
        write_with(&target, [i as u8; 4096], Options::new().durability(d)).expect("write");
        assert_eq!(fs::read(&target).expect("read"), vec![i as u8; 4096]);
    }
    assert_eq!(dir.entries(), ["0.bin", "1.bin", "2.bin"]);
}

#[test]
fn drop_and_discard_remove_the_temp_and_keep_the_target() {
    let dir = Scratch::new("drop");
    let target = dir.path("keep.txt");
    fs::write(&target, b"old").expect("seed");
    {
        let mut file = AtomicFile::create(&target).expect("create");
        file.write_all(b"half").expect("write");
    }
    let mut file = AtomicFile::create(&target).expect("create");
    file.write_all(b"other half").expect("write");
    file.discard().expect("discard");
    assert_eq!(fs::read(&target).expect("read"), b"old");
    assert_eq!(dir.entries(), ["keep.txt"]);
}

#[test]
fn the_temp_file_is_private_and_the_result_gets_the_right_mode() {
    let dir = Scratch::new("mode");
    let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;

    let target = dir.path("existing");
    fs::write(&target, b"old").expect("seed");
    fs::set_permissions(&target, fs::Permissions::from_mode(0o640)).expect("chmod");
    let file = AtomicFile::create(&target).expect("create");
    assert_eq!(mode(file.temp_path()), 0o600, "private until commit");
    file.commit().expect("commit");
    assert_eq!(mode(&target), 0o640, "a replaced file keeps its mode");

    let fresh = dir.path("fresh");
    write(&fresh, b"x").expect("write");
    let reference = dir.path("reference");
    fs::File::create(&reference).expect("create");
    assert_eq!(
        mode(&fresh),
        mode(&reference),
        "a new file gets what File::create gives"
    );

    let chosen = dir.path("chosen");
    write_with(&chosen, b"x", Options::new().mode(0o604)).expect("write");
    assert_eq!(mode(&chosen), 0o604);
}

#[test]
fn a_symlink_at_the_target_is_replaced_not_followed() {
    let dir = Scratch::new("symlink-target");
    let elsewhere = dir.path("elsewhere");
    fs::write(&elsewhere, b"precious").expect("seed");
    let link = dir.path("link");
    symlink(&elsewhere, &link).expect("symlink");
    write(&link, b"new").expect("write");
    assert_eq!(
        fs::read(&elsewhere).expect("read"),
        b"precious",
        "the link's target is untouched"
    );
    assert!(fs::symlink_metadata(&link)
        .expect("stat")
        .file_type()
        .is_file());
    assert_eq!(fs::read(&link).expect("read"), b"new");
}

#[test]
fn a_symlink_planted_at_a_temp_name_is_never_followed() {
    // Exclusive creation (O_CREAT | O_EXCL | O_NOFOLLOW) refuses any name
    // that exists, a symlink included. Plant links at every name the
    // writer could pick next is impossible (they are random), so plant one
    // at a name taken from a real temp file, then make the writer meet it:
    // creating over it must fail, never write through it.
    let dir = Scratch::new("symlink-temp");
    let victim = dir.path("victim");
    fs::write(&victim, b"precious").expect("seed");
    let probe = AtomicFile::create(dir.path("t")).expect("create");
    let name = probe.temp_path().to_path_buf();
    probe.discard().expect("discard");
    symlink(&victim, &name).expect("plant");
    let err = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&name)
        .expect_err("exclusive create refuses a planted link");
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
    // The writer itself just picks another name and never touches the link.
    write(dir.path("t"), b"fine").expect("write");
    assert_eq!(fs::read(&victim).expect("read"), b"precious");
    assert!(fs::symlink_metadata(&name)
        .expect("stat")
        .file_type()
        .is_symlink());
    // Clean-up never follows (or removes) a link either.
    let report = cleanup_orphans(&dir.0).expect("cleanup");
    assert!(report.removed.is_empty());
    assert_eq!(fs::read(&victim).expect("read"), b"precious");
}

#[test]
fn errors_name_the_operation_and_the_path() {
    let dir = Scratch::new("errors");
    let missing = dir.path("no/such/dir/file.txt");
    let err = write(&missing, b"x").expect_err("no directory");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(
        err.op(),
        Op::CheckSpace,
        "the space check meets the missing directory first"
    );
    let err = AtomicFile::create(&missing).expect_err("no directory");
    assert_eq!(err.op(), Op::Create);
    assert!(
        err.path().starts_with(dir.path("no/such/dir")),
        "{:?}",
        err.path()
    );
    assert!(
        err.to_string().contains("create the directory first"),
        "{err}"
    );
}

#[test]
fn an_expected_size_larger_than_the_disk_fails_before_writing() {
    let dir = Scratch::new("space");
    let target = dir.path("huge.bin");
    let err = AtomicFile::with_options(&target, Options::new().expected_size(u64::MAX / 2))
        .expect_err("no disk is that large");
    assert_eq!(err.kind(), ErrorKind::InsufficientSpace);
    assert_eq!(err.op(), Op::CheckSpace);
    assert_eq!(err.path(), target);
    let (needed, available) = err.space().expect("sizes");
    assert!(needed > available);
    assert!(err.is_recoverable());
    assert!(err.to_string().contains("needed"), "{err}");
    assert!(dir.entries().is_empty(), "nothing was created");
}

#[test]
fn cleanup_removes_only_dead_writers_temp_files() {
    let dir = Scratch::new("orphans");
    // A dead writer's file: Linux pids stay below 2^22, so this pid cannot
    // be running.
    let dead = dir.path(".a.png.sfatomic-4194304-0123456789abcdef.tmp");
    fs::write(&dead, b"partial").expect("plant");
    // A live writer's file: ours, still open and locked.
    let mut live = AtomicFile::create(dir.path("b.png")).expect("create");
    live.write_all(b"in progress").expect("write");
    // Look-alikes that are not ours.
    for other in ["c.tmp", ".c.sfatomic-1-xyz.tmp", "notes.txt"] {
        fs::write(dir.path(other), b"user data").expect("plant");
    }
    let report = cleanup_orphans(&dir.0).expect("cleanup");
    assert_eq!(report.removed, std::slice::from_ref(&dead));
    assert_eq!(report.kept, [live.temp_path().to_path_buf()]);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    for other in ["c.tmp", ".c.sfatomic-1-xyz.tmp", "notes.txt"] {
        assert_eq!(fs::read(dir.path(other)).expect("kept"), b"user data");
    }
    // Past the maximum age, even a locked file goes (for file systems
    // without working locks).
    let report = cleanup_orphans_older_than(&dir.0, std::time::Duration::ZERO).expect("cleanup");
    assert_eq!(report.removed, [live.temp_path().to_path_buf()]);
    drop(live);
}

/// A commit's backup is the old file under a temp name, with the old
/// file's mtime (here two days old). Another process's clean-up must not
/// take it for a day-old orphan while its writer is mid-commit: before, it
/// went by the mtime and deleted the only copy of the old bytes.
#[test]
fn cleanup_in_another_process_keeps_a_live_commits_backup() {
    let dir = Scratch::new("live-backup");
    let target = dir.path("icon.svg");
    fs::write(&target, b"old bytes").expect("seed");
    let two_days = std::time::Duration::from_secs(2 * 24 * 3600);
    fs::File::options()
        .write(true)
        .open(&target)
        .and_then(|f| f.set_modified(std::time::SystemTime::now() - two_days))
        .expect("age the old file");
    // The writer: another live process, mid-commit, whose backup link
    // names it.
    let mut writer = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("spawn a stand-in writer");
    let backup = dir.path(&format!(
        ".icon.svg.sfatomic-{}-00112233445566ff.tmp",
        writer.id()
    ));
    fs::hard_link(&target, &backup).expect("the commit's backup link");
    // Clean-up, by this (another) process, with the default one-day age.
    let report = cleanup_orphans(&dir.0).expect("cleanup");
    assert!(
        report.removed.is_empty(),
        "removed a live backup: {:?}",
        report.removed
    );
    assert_eq!(report.kept, std::slice::from_ref(&backup));
    assert_eq!(fs::read(&backup).expect("backup"), b"old bytes");
    writer.kill().expect("stop the stand-in");
    writer.wait().expect("reap");
    // Once its writer is gone, it is an orphan like any other.
    let report = cleanup_orphans(&dir.0).expect("cleanup");
    assert_eq!(report.removed, [backup]);
}

const CHILD_ENV: &str = "STEADFAST_ATOMICFS_CRASH_CHILD";
const PAYLOAD: usize = 1 << 20;

fn payload(i: usize) -> Vec<u8> {
    vec![if i.is_multiple_of(2) { 0xAA } else { 0x55 }; PAYLOAD]
}

/// The child of `sigkill_mid_write_leaves_old_or_new_and_no_orphans`:
/// overwrites the target in a loop, printing a line after each commit,
/// until it is killed. Not a test of its own (hence ignored): the crash
/// test starts it with `--ignored` and the environment variable set.
#[test]
#[ignore = "child process of the SIGKILL test, started by it"]
fn crash_child() {
    let Some(target) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let mut out = std::io::stdout();
    for i in 0.. {
        write(&target, payload(i)).expect("child write");
        let _ = writeln!(out, "{i}");
        let _ = out.flush();
    }
}

#[test]
fn sigkill_mid_write_leaves_old_or_new_and_no_orphans() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = Scratch::new("crash");
    let target = dir.path("target.bin");
    write(&target, payload(0)).expect("seed");
    let (a, b) = (payload(0), payload(1));
    // A small LCG: the test's randomness is seeded, so a failure replays.
    let mut seed: u64 = 0x5EED_CAFE;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as usize
    };
    let mut mid_write = 0;
    for round in 0..200 {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &target)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        // Let it commit once or twice, so it is inside its write loop,
        // then kill it at a seeded point within the next write.
        let commits = 1 + next() % 2;
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        for _ in 0..commits {
            assert!(
                lines.next().is_some(),
                "round {round}: the child died on its own"
            );
        }
        let spin = next() % 200_000;
        for i in 0..spin {
            std::hint::black_box(i);
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");

        let bytes = fs::read(&target).expect("target exists");
        assert!(
            bytes == a || bytes == b,
            "round {round}: torn target ({} bytes)",
            bytes.len()
        );
        let report = cleanup_orphans(&dir.0).expect("cleanup");
        mid_write += usize::from(!report.removed.is_empty());
        assert!(
            report.failed.is_empty(),
            "round {round}: {:?}",
            report.failed
        );
        assert!(
            report.kept.is_empty(),
            "round {round}: kept {:?}",
            report.kept
        );
        assert_eq!(dir.entries(), ["target.bin"], "round {round}");
    }
    // The kills must really land mid-write, or the test proves nothing.
    assert!(
        mid_write >= 20,
        "only {mid_write} of 200 kills interrupted a write"
    );
    eprintln!("{mid_write} of 200 kills interrupted a write and left a temp file, all cleaned up");
}

#[cfg(feature = "tokio")]
#[tokio::test(flavor = "current_thread")]
async fn async_helpers_write_off_the_runtime_thread() {
    let dir = Scratch::new("async");
    let target = dir.path("a.bin");
    steadfast_atomicfs::write_async(&target, vec![7u8; 4096], Options::new())
        .await
        .expect("write");
    assert_eq!(fs::read(&target).expect("read"), vec![7u8; 4096]);
    let err =
        steadfast_atomicfs::write_async(dir.path("missing/a.bin"), b"x".to_vec(), Options::new())
            .await
            .expect_err("no directory");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let report = steadfast_atomicfs::cleanup_orphans_async(&dir.0)
        .await
        .expect("cleanup");
    assert!(report.removed.is_empty() && report.kept.is_empty());
}

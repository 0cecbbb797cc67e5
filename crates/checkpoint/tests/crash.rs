//! Crashes: SIGKILL mid-record, the lock across processes, and damaged
//! files (proptest).

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use proptest::prelude::*;
use steadfast_checkpoint::{Error, FileStore, Opened, Rejection};

use crate::{config, Scratch, TestClock};

const DIR_ENV: &str = "STEADFAST_CHECKPOINT_CHILD_DIR";
const RUN_ENV: &str = "STEADFAST_CHECKPOINT_CHILD_RUN";
const T0: u64 = 1_790_000_000;

/// Starts this test binary again, running only the ignored test `name`.
fn spawn_child(name: &str, dir: &Path, run: usize) -> Child {
    Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            name,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_ENV, dir)
        .env(RUN_ENV, run.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child")
}

/// The child's own lines (from the `@` marker on: the harness prints
/// `test … ... ` before the first), skipping the harness's.
fn ours(stdout: std::process::ChildStdout) -> impl Iterator<Item = String> {
    BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| line.find('@').map(|at| line[at + 1..].to_owned()))
}

fn batch_keys(run: usize, batch: usize) -> Vec<String> {
    (0..7)
        .map(|i| format!("run{run}/batch{batch}/item{i}"))
        .collect()
}

/// Child: opens the checkpoint and records batches forever, printing each
/// batch's number once its `record` call has returned. (Ignored: only the
/// crash test starts it.)
#[test]
#[ignore = "started by records_survive_sigkill as a child process"]
fn crash_child_records() {
    let Some(dir) = std::env::var_os(DIR_ENV) else {
        return;
    };
    let run: usize = std::env::var(RUN_ENV)
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let clock = TestClock::at(T0);
    // A small compaction threshold, so kills also land mid-fold.
    let config = config(Path::new(&dir), &["svg"], &clock).compact_at(4_096);
    let mut store = match FileStore::<u64>::open(config).expect("child open") {
        Opened::Fresh(store) | Opened::Resumed { store, .. } => store,
        Opened::Rejected(rejected) => panic!("child: {}", rejected.reason()),
        _ => panic!("child: unexpected open outcome"),
    };
    let mut out = std::io::stdout();
    for batch in 0.. {
        store
            .record_with_state(&batch_keys(run, batch), batch as u64)
            .expect("child record");
        let _ = writeln!(out, "@batch {batch}");
        let _ = out.flush();
    }
}

/// Child: takes the lock, says so, and waits to be killed.
#[test]
#[ignore = "started by the lock test as a child process"]
fn lock_child_holds() {
    let Some(dir) = std::env::var_os(DIR_ENV) else {
        return;
    };
    let clock = TestClock::at(T0);
    let opened =
        FileStore::<u64>::open(config(Path::new(&dir), &["svg"], &clock)).expect("child open");
    let mut out = std::io::stdout();
    let _ = writeln!(out, "@locked");
    let _ = out.flush();
    std::thread::sleep(std::time::Duration::from_secs(60));
    drop(opened);
}

#[test]
fn records_survive_sigkill() {
    let out = Scratch::new("sigkill");
    let clock = TestClock::at(T0);
    // A seeded LCG: a failure replays.
    let mut seed: u64 = 0xC0FF_EE00_D15E_A5E5;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as usize
    };
    let mut promised: Vec<(usize, usize)> = Vec::new();
    let mut torn = 0;
    for run in 0..100 {
        let mut child = spawn_child("crash::crash_child_records", &out.0, run);
        let mut lines = ours(child.stdout.take().expect("stdout"));
        // Let it record a batch, then kill it at a seeded moment.
        let first = lines.next().expect("the child died on its own");
        promised.push((run, first["batch ".len()..].parse().expect("batch number")));
        let spin = next() % 3_000_000;
        for i in 0..spin {
            std::hint::black_box(i);
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        // Every batch whose `record` returned was printed before the kill.
        for line in lines {
            promised.push((run, line["batch ".len()..].parse().expect("batch number")));
        }
        // The kernel freed the lock; reopening validates and loads.
        let store = match FileStore::<u64>::open(config(&out.0, &["svg"], &clock).compact_at(4_096))
            .expect("reopen after the kill")
        {
            Opened::Resumed { store, torn: t } => {
                torn += usize::from(t.is_some());
                store
            }
            other => panic!("run {run}: expected a resume, got {other:?}"),
        };
        for (r, batch) in &promised {
            for key in batch_keys(*r, *batch) {
                assert!(store.is_done(&key), "run {run}: lost {key}");
            }
        }
    }
    eprintln!(
        "100 kills: {} batches promised and found; {torn} torn records dropped",
        promised.len()
    );
}

#[test]
fn a_second_process_is_locked_out_until_the_holder_dies() {
    let out = Scratch::new("lock-process");
    let clock = TestClock::at(T0);
    let mut child = spawn_child("crash::lock_child_holds", &out.0, 0);
    let mut lines = ours(child.stdout.take().expect("stdout"));
    assert_eq!(lines.next().expect("child output"), "locked");
    match FileStore::<u64>::open(config(&out.0, &["svg"], &clock)) {
        Err(Error::Locked {
            holder: Some(holder),
            ..
        }) => assert_eq!(holder.pid, child.id()),
        other => panic!("expected Locked by the child, got {other:?}"),
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    assert!(matches!(
        FileStore::<u64>::open(config(&out.0, &["svg"], &clock)).expect("free after the kill"),
        Opened::Resumed { .. }
    ));
}

/// A real checkpoint: a snapshot (after a fold) and a journal.
fn real_files() -> (Vec<u8>, Vec<u8>) {
    let out = Scratch::new("real-files");
    let clock = TestClock::at(T0);
    let small = config(&out.0, &["svg"], &clock).compact_at(600);
    let Opened::Fresh(mut store) = FileStore::<u64>::open(small).expect("open") else {
        panic!("fresh")
    };
    for batch in 0..12 {
        store
            .record_with_state(&batch_keys(0, batch), batch as u64)
            .expect("record");
    }
    drop(store);
    let dir = out.0.join(".checkpoint");
    (
        fs::read(dir.join("snapshot.json")).expect("snapshot"),
        fs::read(dir.join("journal")).expect("journal"),
    )
}

fn open_damaged(dir: &Path, snapshot: &[u8], journal: &[u8]) -> Result<Opened<u64>, Error> {
    let ckpt: PathBuf = dir.join(".checkpoint");
    let _ = fs::remove_dir_all(&ckpt);
    fs::create_dir_all(&ckpt).expect("mkdir");
    fs::write(ckpt.join("snapshot.json"), snapshot).expect("write snapshot");
    fs::write(ckpt.join("journal"), journal).expect("write journal");
    let clock = TestClock::at(T0);
    FileStore::<u64>::open(config(dir, &["svg"], &clock))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Damage never panics: a truncated or garbage snapshot is `Corrupt`;
    /// a truncated or garbage journal gives a resumed state (a torn tail
    /// dropped) or `Corrupt`.
    #[test]
    fn damaged_files_give_a_state_or_corrupt(
        snapshot_cut in prop::option::of(0.0f64..1.0),
        journal_cut in prop::option::of(0.0f64..1.0),
        garbage_snapshot in prop::option::weighted(0.15, prop::collection::vec(any::<u8>(), 0..300)),
        garbage_journal in prop::option::weighted(0.15, prop::collection::vec(any::<u8>(), 0..300)),
    ) {
        thread_local! {
            static REAL: (Vec<u8>, Vec<u8>) = real_files();
        }
        let (snapshot, journal) = REAL.with(|r| r.clone());
        let cut = |bytes: &[u8], at: Option<f64>| match at {
            Some(f) => bytes[..(bytes.len() as f64 * f) as usize].to_vec(),
            None => bytes.to_vec(),
        };
        let snapshot = garbage_snapshot.unwrap_or_else(|| cut(&snapshot, snapshot_cut));
        let journal = garbage_journal.unwrap_or_else(|| cut(&journal, journal_cut));
        let out = Scratch::new("damaged");
        match open_damaged(&out.0, &snapshot, &journal).expect("open") {
            Opened::Resumed { store, .. } => {
                // Whatever survived is a prefix of what was recorded.
                let batches = store.completed().len() / 7;
                for batch in 0..batches {
                    for key in batch_keys(0, batch) {
                        prop_assert!(store.is_done(&key), "lost {} but kept later batches", key);
                    }
                }
            }
            Opened::Rejected(rejected) => {
                prop_assert!(
                    matches!(rejected.reason(), Rejection::Corrupt { .. }),
                    "{:?}", rejected.reason()
                );
            }
            Opened::Fresh(_) => prop_assert!(false, "a damaged checkpoint is never silently fresh"),
            _ => prop_assert!(false, "unexpected outcome"),
        }
    }
}

//! The file store: a snapshot, an append-only journal, a lock.

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use steadfast_atomicfs::{Durability, Options};

use crate::error::{Error, Holder, Rejection};
use crate::hash::crc32;

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The marker in every snapshot.
const FORMAT: &str = "steadfast-checkpoint";
/// The directory, inside the job's output directory, holding the files.
pub const DIR_NAME: &str = ".checkpoint";
const SNAPSHOT: &str = "snapshot.json";
const JOURNAL: &str = "journal";
const LOCK: &str = "lock";
/// How many times (5 ms apart) a lock held by this very process is tried
/// again before `Locked`; see `take_lock`.
const OWN_LOCK_RETRIES: u32 = 40;
/// The default limit on a checkpoint's age (since its last update).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Timestamps up to this far ahead of the clock are tolerated (clock
/// adjustments); beyond it they are rejected.
const FUTURE_TOLERANCE: Duration = Duration::from_secs(60);
/// The journal is folded into a new snapshot once it is larger than the
/// snapshot and than this.
const COMPACT_MIN: u64 = 1 << 20;

/// A clock for the timestamps (injectable for tests).
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Who is checkpointing what: written into the snapshot and checked on
/// resume.
#[derive(Clone)]
pub struct Config {
    dir: PathBuf,
    tool: String,
    tool_version: String,
    job: String,
    config_hash: String,
    max_age: Duration,
    compact_at: u64,
    clock: Clock,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("dir", &self.dir)
            .field("tool", &self.tool)
            .field("tool_version", &self.tool_version)
            .field("job", &self.job)
            .field("config_hash", &self.config_hash)
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// A checkpoint for `job` (e.g. the Figma file key) whose output goes
    /// to `output_dir`; the checkpoint lives in `output_dir/.checkpoint/`.
    /// `config_hash` is [`config_hash`](crate::config_hash) of everything
    /// that changes the output.
    pub fn new(
        output_dir: impl Into<PathBuf>,
        job: impl Into<String>,
        config_hash: impl Into<String>,
    ) -> Self {
        Self {
            dir: output_dir.into().join(DIR_NAME),
            tool: String::from("steadfast"),
            tool_version: String::from(env!("CARGO_PKG_VERSION")),
            job: job.into(),
            config_hash: config_hash.into(),
            max_age: DEFAULT_MAX_AGE,
            compact_at: COMPACT_MIN,
            clock: Arc::new(SystemTime::now),
        }
    }

    /// The tool's name and version, recorded in the snapshot; a checkpoint
    /// of another tool is rejected.
    #[must_use]
    pub fn tool(mut self, name: impl Into<String>, version: impl Into<String>) -> Self {
        self.tool = name.into();
        self.tool_version = version.into();
        self
    }

    /// How long after its last update a checkpoint stays resumable
    /// (default 24 h).
    #[must_use]
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Fold the journal into a new snapshot once it is larger than this
    /// many bytes and than the snapshot (default 1 MiB). Folding costs a
    /// snapshot write; doing it only when the journal outgrows the
    /// snapshot keeps the cost per recorded key constant.
    #[must_use]
    pub fn compact_at(mut self, bytes: u64) -> Self {
        self.compact_at = bytes;
        self
    }

    /// The clock for timestamps (default `SystemTime::now`).
    #[must_use]
    pub fn clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The directory holding the checkpoint's files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn identity(&self) -> String {
        format!("{} job {:?}", self.tool, self.job)
    }
}

#[derive(Serialize, Deserialize)]
struct Tool {
    name: String,
    version: String,
}

/// The snapshot file, as written.
#[derive(Serialize)]
struct SnapshotOut<'a, S> {
    format: &'static str,
    version: u32,
    tool: Tool,
    job: &'a str,
    config_hash: &'a str,
    created_at: u64,
    updated_at: u64,
    journal_seq: u64,
    state: &'a S,
    completed: Vec<&'a str>,
}

/// The snapshot file, as read (after its version was checked).
#[derive(Deserialize)]
struct SnapshotIn<S> {
    tool: Tool,
    job: String,
    config_hash: String,
    created_at: u64,
    updated_at: u64,
    journal_seq: u64,
    state: S,
    completed: Vec<String>,
}

#[derive(Serialize)]
struct RecordOut<'a, S> {
    seq: u64,
    at: u64,
    keys: &'a [&'a str],
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'a S>,
}

#[derive(Deserialize)]
struct RecordIn<S> {
    seq: u64,
    at: u64,
    keys: Vec<String>,
    state: Option<S>,
}

#[derive(Serialize, Deserialize)]
struct LockInfo {
    pid: u32,
    host: String,
    started_at: u64,
}

/// A torn last journal record, dropped on load: the crash it came from
/// interrupted that record's `record` call, which therefore never
/// returned. Nothing before it is lost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Torn {
    /// Its line number in the journal (1-based).
    pub line: usize,
    /// Its length in bytes.
    pub bytes: usize,
}

/// What [`FileStore::open`] found.
#[derive(Debug)]
#[non_exhaustive]
pub enum Opened<S> {
    /// No checkpoint: a fresh one was started.
    Fresh(FileStore<S>),
    /// A valid checkpoint, loaded.
    Resumed {
        /// The store, holding the loaded state.
        store: FileStore<S>,
        /// A torn last record that was dropped, if any.
        torn: Option<Torn>,
    },
    /// A checkpoint that cannot be resumed; nothing was changed.
    Rejected(Rejected<S>),
}

/// A checkpoint that cannot be resumed: the lock is held, the files are
/// untouched. [`discard`](Rejected::discard) it to start over, or drop it
/// to leave it as it is.
pub struct Rejected<S> {
    reason: Rejection,
    config: Config,
    lock: File,
    _state: std::marker::PhantomData<fn() -> S>,
}

impl<S> fmt::Debug for Rejected<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejected")
            .field("reason", &self.reason)
            .field("dir", &self.config.dir)
            .finish_non_exhaustive()
    }
}

impl<S: Serialize + DeserializeOwned + Default> Rejected<S> {
    /// Why it was rejected.
    pub fn reason(&self) -> &Rejection {
        &self.reason
    }

    /// Deletes the old checkpoint and starts a fresh one (for a `--restart`
    /// flag). The only way this crate deletes a checkpoint that was not
    /// finished.
    ///
    /// # Errors
    ///
    /// The old files could not be removed, or the new snapshot written.
    pub fn discard(self) -> Result<FileStore<S>, Error> {
        tracing::warn!(target: "steadfast_checkpoint", dir = %self.config.dir.display(), reason = %self.reason, "discarding the checkpoint");
        remove_data(&self.config.dir)?;
        FileStore::fresh(self.config, self.lock)
    }
}

/// The default [`Store`](crate::Store): a snapshot written atomically
/// through steadfast-atomicfs, an append-only journal of completed
/// batches (each record checksummed and flushed before `record` returns),
/// folded into a new snapshot when it grows, and a lock file held for the
/// store's lifetime. See the crate documentation for the files and rules.
pub struct FileStore<S> {
    config: Config,
    _lock: File,
    journal: Option<File>,
    journal_len: u64,
    snapshot_len: u64,
    seq: u64,
    created_at: u64,
    updated_at: u64,
    completed: HashSet<String>,
    state: S,
    poisoned: bool,
}

impl<S> fmt::Debug for FileStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileStore")
            .field("dir", &self.config.dir)
            .field("completed", &self.completed.len())
            .field("seq", &self.seq)
            .field("journal_len", &self.journal_len)
            .finish_non_exhaustive()
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn from_unix(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn host_name() -> String {
    #[cfg(unix)]
    {
        rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned()
    }
    #[cfg(not(unix))]
    {
        std::env::var("COMPUTERNAME").unwrap_or_else(|_| String::from("unknown"))
    }
}

fn create_private_dir(dir: &Path) -> Result<(), Error> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| Error::io("create the checkpoint directory", dir, e))
}

/// The directory flush atomicfs uses (a file system that cannot flush
/// directories is no error there either).
fn sync_dir(dir: &Path) -> Result<(), Error> {
    steadfast_atomicfs::sync_dir(dir).map_err(|e| Error::io("flush the directory", dir, e))
}

/// Takes the lock, or says who holds it.
fn take_lock(dir: &Path, now: SystemTime) -> Result<File, Error> {
    take_lock_with(dir, now, &|| {})
}

/// How often a lock taken on a lock file that was replaced meanwhile is
/// tried again.
const STALE_LOCK_RETRIES: u32 = 16;

/// [`take_lock`], with a hook run between opening the lock file and locking
/// it (where a race with [`FileStore::remove`] of another process lies).
fn take_lock_with(dir: &Path, now: SystemTime, between: &dyn Fn()) -> Result<File, Error> {
    let path = dir.join(LOCK);
    for _ in 0..STALE_LOCK_RETRIES {
        let file = steadfast_atomicfs::private_file_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io("open the lock file", &path, e))?;
        between();
        let file = lock_opened(file, &path)?;
        // The holder we waited for may have removed the checkpoint (and
        // its lock file) before we locked: then we hold a lock on a file
        // nobody else can see, while a newcomer locks a new one. Only a
        // lock on the file still at `path` counts.
        if same_file(&file, &path) {
            return write_lock_info(file, &path, now);
        }
    }
    Err(Error::io(
        "lock",
        &path,
        io::Error::other(
            "the lock file keeps being replaced; is another run removing the checkpoint in a loop?",
        ),
    ))
}

/// Whether `file` is (still) the file at `path`.
fn same_file(file: &File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        // Windows does not let a locked, open file be deleted.
        let _ = (file, path);
        true
    }
}

/// Locks an open lock file, or says who holds it.
fn lock_opened(mut file: File, path: &Path) -> Result<File, Error> {
    let path = path.to_path_buf();
    // A lock that names this very process may be held only by a copy of
    // its descriptor in a child being forked (the copy lives until the
    // child's exec closes it): give that a moment before saying Locked.
    let mut own_tries = 0;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.seek(io::SeekFrom::Start(0));
                let _ = file.read_to_string(&mut text);
                let holder = serde_json::from_str::<LockInfo>(&text)
                    .ok()
                    .map(|info| Holder {
                        pid: info.pid,
                        host: info.host,
                        started_at: from_unix(info.started_at),
                    });
                let ours = holder
                    .as_ref()
                    .is_some_and(|h| h.pid == std::process::id() && h.host == host_name());
                if ours && own_tries < OWN_LOCK_RETRIES {
                    own_tries += 1;
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                return Err(Error::Locked { path, holder });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io("lock", &path, e));
            }
        }
    }
    Ok(file)
}

/// Writes who holds the lock into the lock file.
fn write_lock_info(mut file: File, path: &Path, now: SystemTime) -> Result<File, Error> {
    let info = LockInfo {
        pid: std::process::id(),
        host: host_name(),
        started_at: unix(now),
    };
    let text = serde_json::to_vec(&info).map_err(Error::config)?;
    file.set_len(0)
        .and_then(|()| file.write_all(&text))
        .map_err(|e| Error::io("write the lock file", path, e))?;
    Ok(file)
}

/// Removes the snapshot, then the journal (a journal without a snapshot is
/// the trace of an interrupted removal and is treated as nothing).
fn remove_data(dir: &Path) -> Result<(), Error> {
    for name in [SNAPSHOT, JOURNAL] {
        let path = dir.join(name);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &path, e)),
        }
    }
    sync_dir(dir)
}

fn corrupt(what: impl Into<String>, location: impl Into<String>) -> Rejection {
    Rejection::Corrupt {
        what: what.into(),
        location: location.into(),
    }
}

/// The journal's good records and the length they span.
struct Journal<S> {
    records: Vec<RecordIn<S>>,
    good_len: u64,
    torn: Option<Torn>,
}

fn parse_journal<S: DeserializeOwned>(bytes: &[u8], path: &Path) -> Result<Journal<S>, Rejection> {
    let mut records = Vec::new();
    let mut offset = 0usize;
    let mut line_no = 0usize;
    while offset < bytes.len() {
        line_no += 1;
        let rest = &bytes[offset..];
        let (line, complete) = match rest.iter().position(|b| *b == b'\n') {
            Some(end) => (&rest[..end], true),
            None => (rest, false),
        };
        let next = offset + line.len() + usize::from(complete);
        let parsed = complete.then(|| parse_record::<S>(line)).flatten();
        match parsed {
            Some(record) => records.push(record),
            None if next >= bytes.len() => {
                // The last record, torn by a crash mid-append.
                return Ok(Journal {
                    records,
                    good_len: offset as u64,
                    torn: Some(Torn {
                        line: line_no,
                        bytes: rest.len(),
                    }),
                });
            }
            None => {
                return Err(corrupt(
                    "a journal record fails its checksum",
                    format!("{} line {line_no} (byte {offset})", path.display()),
                ));
            }
        }
        offset = next;
    }
    Ok(Journal {
        records,
        good_len: offset as u64,
        torn: None,
    })
}

/// `<crc32 as 8 hex digits> <json>`; `None` if anything is off.
fn parse_record<S: DeserializeOwned>(line: &[u8]) -> Option<RecordIn<S>> {
    let (crc, json) = (line.get(..8)?, line.get(9..)?);
    if line.get(8) != Some(&b' ') {
        return None;
    }
    let crc = u32::from_str_radix(std::str::from_utf8(crc).ok()?, 16).ok()?;
    if crc != crc32(json) {
        return None;
    }
    serde_json::from_slice(json).ok()
}

impl<S: Serialize + DeserializeOwned + Default> FileStore<S> {
    /// Opens the checkpoint of `config`: takes the lock (or fails with
    /// [`Error::Locked`] naming the holder), then loads and validates what
    /// is there.
    ///
    /// * nothing there: a fresh checkpoint is started ([`Opened::Fresh`]);
    /// * a valid checkpoint: [`Opened::Resumed`], with a torn last journal
    ///   record dropped (and reported) if a crash cut one short;
    /// * anything else: [`Opened::Rejected`] with the reason (config
    ///   changed, other job, expired, from the future, newer version,
    ///   corrupt). Nothing is deleted.
    ///
    /// # Errors
    ///
    /// Locked, or the directory cannot be created or read.
    pub fn open(config: Config) -> Result<Opened<S>, Error> {
        let now = (config.clock)();
        create_private_dir(&config.dir)?;
        let lock = take_lock(&config.dir, now)?;
        let snapshot_path = config.dir.join(SNAPSHOT);
        let snapshot = match fs::read(&snapshot_path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let journal = config.dir.join(JOURNAL);
                if journal.exists() {
                    tracing::info!(target: "steadfast_checkpoint", path = %journal.display(), "removing the journal of an interrupted clean-up");
                    remove_data(&config.dir)?;
                }
                return Self::fresh(config, lock).map(Opened::Fresh);
            }
            Err(e) => return Err(Error::io("read", &snapshot_path, e)),
        };
        let journal_path = config.dir.join(JOURNAL);
        let journal = match fs::read(&journal_path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io("read", &journal_path, e)),
        };
        match Self::load(&config, now, &snapshot, &journal) {
            Ok((mut store_parts, parsed)) => {
                let torn = parsed.torn.clone();
                if let Some(torn) = &torn {
                    tracing::warn!(target: "steadfast_checkpoint", line = torn.line, bytes = torn.bytes, "dropping a torn last journal record");
                    let file = OpenOptions::new()
                        .write(true)
                        .open(&journal_path)
                        .map_err(|e| Error::io("open", &journal_path, e))?;
                    file.set_len(parsed.good_len)
                        .and_then(|()| file.sync_data())
                        .map_err(|e| Error::io("truncate the torn record of", &journal_path, e))?;
                }
                store_parts.snapshot_len = snapshot.len() as u64;
                store_parts.journal_len = parsed.good_len;
                Ok(Opened::Resumed {
                    store: store_parts.into_store(config, lock),
                    torn,
                })
            }
            Err(reason) => {
                tracing::warn!(target: "steadfast_checkpoint", dir = %config.dir.display(), %reason, "checkpoint not resumable");
                Ok(Opened::Rejected(Rejected {
                    reason,
                    config,
                    lock,
                    _state: std::marker::PhantomData,
                }))
            }
        }
    }

    /// Validates and folds the snapshot and the journal.
    fn load(
        config: &Config,
        now: SystemTime,
        snapshot: &[u8],
        journal: &[u8],
    ) -> Result<(Parts<S>, Journal<S>), Rejection> {
        let path = config.dir.join(SNAPSHOT);
        let where_ = |e: &serde_json::Error| {
            format!("{} line {} column {}", path.display(), e.line(), e.column())
        };
        let header: serde_json::Value = serde_json::from_slice(snapshot)
            .map_err(|e| corrupt(format!("the snapshot is not JSON ({e})"), where_(&e)))?;
        if header.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
            return Err(corrupt(
                "the snapshot lacks the steadfast-checkpoint marker",
                path.display().to_string(),
            ));
        }
        let version = header.get("version").and_then(serde_json::Value::as_u64);
        match version {
            Some(v) if v == u64::from(FORMAT_VERSION) => {}
            Some(v) if v > u64::from(FORMAT_VERSION) => {
                return Err(Rejection::UnsupportedVersion {
                    found: u32::try_from(v).unwrap_or(u32::MAX),
                    supported: FORMAT_VERSION,
                });
            }
            _ => {
                return Err(corrupt(
                    "the snapshot has no valid format version",
                    path.display().to_string(),
                ))
            }
        }
        let snap: SnapshotIn<S> = serde_json::from_value(header).map_err(|e| {
            corrupt(
                format!("the snapshot does not match its format ({e})"),
                path.display().to_string(),
            )
        })?;
        if snap.tool.name != config.tool || snap.job != config.job {
            return Err(Rejection::OtherJob {
                saved: format!("{} job {:?}", snap.tool.name, snap.job),
                current: config.identity(),
            });
        }
        if snap.config_hash != config.config_hash {
            return Err(Rejection::ConfigChanged {
                saved: snap.config_hash,
                current: config.config_hash.clone(),
            });
        }
        let journal_path = config.dir.join(JOURNAL);
        let Journal {
            records,
            good_len,
            torn,
        } = parse_journal::<S>(journal, &journal_path)?;
        let mut completed: HashSet<String> = snap.completed.into_iter().collect();
        let mut state = snap.state;
        let mut seq = snap.journal_seq;
        let mut updated_at = snap.updated_at;
        for record in records {
            if record.seq <= snap.journal_seq {
                continue; // already folded into the snapshot
            }
            if record.seq != seq + 1 {
                return Err(corrupt(
                    format!("journal record {} follows record {seq}", record.seq),
                    journal_path.display().to_string(),
                ));
            }
            seq = record.seq;
            updated_at = updated_at.max(record.at);
            completed.extend(record.keys);
            if let Some(s) = record.state {
                state = s;
            }
        }
        let newest = from_unix(updated_at.max(snap.created_at));
        if newest > now + FUTURE_TOLERANCE {
            return Err(Rejection::FromTheFuture {
                updated_at: newest,
                now,
            });
        }
        let age = now
            .duration_since(from_unix(updated_at))
            .unwrap_or_default();
        if age > config.max_age {
            return Err(Rejection::Expired {
                age,
                limit: config.max_age,
            });
        }
        Ok((
            Parts {
                seq,
                created_at: snap.created_at,
                updated_at,
                completed,
                state,
                snapshot_len: 0,
                journal_len: 0,
            },
            Journal {
                records: Vec::new(),
                good_len,
                torn,
            },
        ))
    }

    /// Starts a fresh checkpoint: writes its first snapshot at once, so
    /// the identity is on disk before any record.
    fn fresh(config: Config, lock: File) -> Result<Self, Error> {
        let now = unix((config.clock)());
        let mut store = Parts {
            seq: 0,
            created_at: now,
            updated_at: now,
            completed: HashSet::new(),
            state: S::default(),
            snapshot_len: 0,
            journal_len: 0,
        }
        .into_store(config, lock);
        store.write_snapshot()?;
        Ok(store)
    }

    /// Whether `key` was recorded as completed (by this run or an earlier
    /// one).
    pub fn is_done(&self, key: &str) -> bool {
        self.completed.contains(key)
    }

    /// The completed keys.
    pub fn completed(&self) -> &HashSet<String> {
        &self.completed
    }

    /// The user's state, as last saved.
    pub fn state(&self) -> &S {
        &self.state
    }

    /// When the checkpoint was started.
    pub fn created_at(&self) -> SystemTime {
        from_unix(self.created_at)
    }

    /// When it was last updated.
    pub fn updated_at(&self) -> SystemTime {
        from_unix(self.updated_at)
    }

    /// The directory holding its files.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// Records a completed batch: once this returns, the keys survive a
    /// crash. Keys already recorded are skipped. One appended, checksummed
    /// journal line and one `fdatasync`, whatever the number of keys
    /// already recorded (now and then the journal is folded into a new
    /// snapshot).
    ///
    /// # Errors
    ///
    /// The append or the flush failed; the batch is then not recorded. A
    /// failed flush makes the store refuse further records (the journal's
    /// state is unknown): reopen it to recover.
    pub fn record<K: AsRef<str>>(&mut self, keys: &[K]) -> Result<(), Error> {
        self.append(keys, None)
    }

    /// [`record`](FileStore::record) with a new user state.
    ///
    /// # Errors
    ///
    /// As `record`.
    pub fn record_with_state<K: AsRef<str>>(&mut self, keys: &[K], state: S) -> Result<(), Error> {
        self.append(keys, Some(state))
    }

    fn append<K: AsRef<str>>(&mut self, keys: &[K], state: Option<S>) -> Result<(), Error> {
        let path = self.config.dir.join(JOURNAL);
        if self.poisoned {
            return Err(Error::io(
                "append to",
                &path,
                io::Error::other("an earlier flush failed, so the journal's state is unknown; reopen the checkpoint"),
            ));
        }
        let mut seen = HashSet::new();
        let new: Vec<&str> = keys
            .iter()
            .map(AsRef::as_ref)
            .filter(|k| !self.completed.contains(*k) && seen.insert(*k))
            .collect();
        if new.is_empty() && state.is_none() {
            return Ok(());
        }
        let now = unix((self.config.clock)());
        let record = RecordOut {
            seq: self.seq + 1,
            at: now,
            keys: &new,
            state: state.as_ref(),
        };
        let json = serde_json::to_vec(&record).map_err(Error::config)?;
        let mut line = format!("{:08x} ", crc32(&json)).into_bytes();
        line.extend_from_slice(&json);
        line.push(b'\n');

        let journal = match &mut self.journal {
            Some(file) => file,
            None => {
                let created = !path.exists();
                let file = steadfast_atomicfs::private_file_options()
                    .append(true)
                    .create(true)
                    .open(&path)
                    .map_err(|e| Error::io("open", &path, e))?;
                if created {
                    sync_dir(&self.config.dir)?;
                }
                self.journal.insert(file)
            }
        };
        if let Err(e) = journal.write_all(&line) {
            // Take back a partial line, so the next record starts clean.
            let _ = journal.set_len(self.journal_len);
            return Err(Error::io("append to", &path, e));
        }
        if let Err(e) = journal.sync_data() {
            self.poisoned = true;
            return Err(Error::io("flush", &path, e));
        }
        self.journal_len += line.len() as u64;
        self.seq += 1;
        self.updated_at = now;
        self.completed.extend(new.into_iter().map(str::to_owned));
        if let Some(state) = state {
            self.state = state;
        }
        if self.journal_len > self.config.compact_at.max(self.snapshot_len) {
            self.flush()?;
        }
        Ok(())
    }

    /// Folds the journal into a new snapshot (written atomically) and
    /// empties the journal.
    ///
    /// # Errors
    ///
    /// The snapshot could not be written (the old one and the journal are
    /// intact), or the journal not emptied (harmless: its records are in
    /// the snapshot and are skipped on load).
    pub fn flush(&mut self) -> Result<(), Error> {
        self.write_snapshot()?;
        if let Some(journal) = &self.journal {
            let path = self.config.dir.join(JOURNAL);
            journal
                .set_len(0)
                .and_then(|()| journal.sync_data())
                .map_err(|e| Error::io("empty", &path, e))?;
        }
        self.journal_len = 0;
        Ok(())
    }

    fn write_snapshot(&mut self) -> Result<(), Error> {
        let mut completed: Vec<&str> = self.completed.iter().map(String::as_str).collect();
        completed.sort_unstable();
        let snapshot = SnapshotOut {
            format: FORMAT,
            version: FORMAT_VERSION,
            tool: Tool {
                name: self.config.tool.clone(),
                version: self.config.tool_version.clone(),
            },
            job: &self.config.job,
            config_hash: &self.config.config_hash,
            created_at: self.created_at,
            updated_at: self.updated_at,
            journal_seq: self.seq,
            state: &self.state,
            completed,
        };
        let bytes = serde_json::to_vec_pretty(&snapshot).map_err(Error::config)?;
        let options = Options::new()
            .durability(Durability::Full)
            .mode(0o600)
            .expected_size(bytes.len() as u64);
        steadfast_atomicfs::write_with(self.config.dir.join(SNAPSHOT), &bytes, options)?;
        self.snapshot_len = bytes.len() as u64;
        Ok(())
    }

    /// The job is done: deletes the checkpoint (snapshot, journal, lock,
    /// directory) and flushes the output directory.
    ///
    /// # Errors
    ///
    /// A file could not be removed; what is left is harmless (a journal
    /// without a snapshot counts as nothing).
    pub fn remove(self) -> Result<(), Error> {
        let dir = self.config.dir.clone();
        drop(self.journal);
        remove_data(&dir)?;
        let lock = dir.join(LOCK);
        fs::remove_file(&lock).map_err(|e| Error::io("remove", &lock, e))?;
        drop(self._lock);
        fs::remove_dir(&dir).map_err(|e| Error::io("remove", &dir, e))?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        Ok(())
    }
}

/// A store's fields before it owns its config and lock.
struct Parts<S> {
    seq: u64,
    created_at: u64,
    updated_at: u64,
    completed: HashSet<String>,
    state: S,
    snapshot_len: u64,
    journal_len: u64,
}

impl<S> Parts<S> {
    fn into_store(self, config: Config, lock: File) -> FileStore<S> {
        FileStore {
            config,
            _lock: lock,
            journal: None,
            journal_len: self.journal_len,
            snapshot_len: self.snapshot_len,
            seq: self.seq,
            created_at: self.created_at,
            updated_at: self.updated_at,
            completed: self.completed,
            state: self.state,
            poisoned: false,
        }
    }
}

/// A checkpoint store: what the [`CheckpointLayer`](crate::CheckpointLayer)
/// is generic over. Opening and validating is the store's own constructor
/// ([`FileStore::open`]); this is what a running job needs.
pub trait Store: Send + 'static {
    /// Whether `key` is recorded as completed.
    fn is_done(&self, key: &str) -> bool;

    /// Records a completed batch; durable once it returns.
    ///
    /// # Errors
    ///
    /// The batch could not be recorded.
    fn record(&mut self, keys: &[&str]) -> Result<(), Error>;

    /// Saves everything in its compact form.
    ///
    /// # Errors
    ///
    /// The save failed; what was recorded is still there.
    fn flush(&mut self) -> Result<(), Error>;

    /// Deletes the checkpoint: the job is done.
    ///
    /// # Errors
    ///
    /// Something could not be removed.
    fn remove(self) -> Result<(), Error>
    where
        Self: Sized;
}

impl<S: Serialize + DeserializeOwned + Default + Send + 'static> Store for FileStore<S> {
    fn is_done(&self, key: &str) -> bool {
        FileStore::is_done(self, key)
    }

    fn record(&mut self, keys: &[&str]) -> Result<(), Error> {
        FileStore::record(self, keys)
    }

    fn flush(&mut self) -> Result<(), Error> {
        FileStore::flush(self)
    }

    fn remove(self) -> Result<(), Error> {
        FileStore::remove(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sf-ckpt-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("mkdir");
        dir
    }

    /// Three lockers: A holds the lock; B opens the lock file; A removes
    /// the checkpoint (unlinking the lock file) and lets go; C creates and
    /// locks a new lock file; B then locks the old, unlinked one. Before,
    /// B and C both held "the" lock; now B sees the file was replaced, tries
    /// the new one and is told C holds it.
    #[test]
    fn a_lock_on_a_removed_lock_file_does_not_count() {
        let dir = scratch("lock-race");
        let now = SystemTime::now();
        let a = std::cell::RefCell::new(Some(take_lock(&dir, now).expect("A locks")));
        let c = std::cell::RefCell::new(None);
        let race = || {
            if let Some(a) = a.borrow_mut().take() {
                fs::remove_file(dir.join(LOCK)).expect("A's remove() unlinks");
                drop(a);
                *c.borrow_mut() = Some(take_lock(&dir, now).expect("C locks the new file"));
            }
        };
        match take_lock_with(&dir, now, &race) {
            Err(Error::Locked { holder, .. }) => {
                assert_eq!(holder.map(|h| h.pid), Some(std::process::id()));
            }
            Ok(_) => panic!("B and C would both hold the lock"),
            Err(other) => panic!("expected Locked, got {other}"),
        }
        assert!(c.borrow().is_some());
        let _ = fs::remove_dir_all(&dir);
    }
}

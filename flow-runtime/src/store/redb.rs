//! The embedded store: runs and checkpoints in one redb file.
//!
//! This module owns the file: opening it safely (lock, damage, foreign file, schema version),
//! the table layout, the group-commit writer thread and the MVCC reads. It must not interpret
//! records beyond what listing needs (status, workflow, creation time) and must never write to a
//! file it has not recognised as a flow store.
//!
//! # Sharing the file
//!
//! By default ([`Sharing::Shared`]) the file is opened in redb's
//! [`ConcurrencyMode::MultiWriter`], so the operator CLI of the same binary can open it while a
//! worker runs, to list runs or to write a cancel request. The price: in every multi-process
//! mode redb makes a two-phase commit, two fsyncs instead of one. [`Sharing::Exclusive`] opens
//! the file in redb's default `ExclusiveWriter` mode instead: one fsync per commit, and every
//! other process is refused ([`StoreError::Locked`]) until this one closes the store.
//! What redb 4.6 requires and allows in the shared mode (read in its `page_manager.rs` and
//! checked by experiment):
//!
//! - Every process sharing the file must open it in `MultiWriter` mode, with a redb that speaks
//!   the same locking-protocol generation. A program holding the file in the default
//!   `ExclusiveWriter` mode excludes us (`DatabaseAlreadyOpen`, reported as
//!   [`StoreError::Locked`]) and we exclude it.
//! - The locks are byte-range locks (OFD locks on Linux), so they are only available on Linux,
//!   the Apple platforms and Windows; elsewhere the open fails.
//! - Only one write transaction runs at a time across all processes; a write waits for the
//!   writer byte of the file. Our group commit keeps our write transactions few and short.
//! - Two handles in the *same* process on the same file are allowed: OFD locks belong to an open
//!   file description, so redb treats the second handle like another process. Each sees the
//!   other's commits. (The unit tests use this; production code keeps one handle per file.)
//! - Commits must be durable (`Durability::None` is refused in this mode), which we want anyway.
//!
//! # Damaged and foreign files
//!
//! redb initialises only a missing or *empty* file. A non-empty file without redb's magic number
//! is refused before anything is written (`InvalidData`), and a truncated file fails while its
//! header is read (`UnexpectedEof`) or against its recorded layout (`Corrupted`); both become
//! [`StoreError::Corrupt`] and the file is left byte for byte as it was. A file whose pages were
//! altered may open "successfully" and then panic (redb's debug assertions) or return wrong
//! data, so the store opens with `set_check_integrity_on_open(true)`: every page checksum of
//! the committed trees is verified and the allocator state rebuilt on each open. Measured in
//! the dev profile: about 1.0 ms → 1.7 ms to open a 0.6 MiB store and 5.5 ms → 8.3 ms for a
//! 17 MiB store, i.e. roughly 0.15 ms per extra MiB, which is cheap next to a run. The open is
//! also wrapped in `catch_unwind` so a damage the check misses is still an error, not a crash.

use super::redb_index::{
    Indexes, LazyIndexes, RunKeys, HELD, IN_FLIGHT, QUEUED, RUNS_BY_CREATION, STARTS, TIMERS,
};
mod alerts;
mod prune;
mod schedules;
mod step_record;

use super::{
    BoxFuture, Claim, ClaimOutcome, ClaimRequest, CreateRun, PruneRequest, Pruned, RunFilter,
    RunId, RunRecord, StepId, StepRecord, Store, StoreError, StoreStats, Write, SCHEMA_VERSION,
};
use super::{QueueStanding, QueueTake, RunStatus, Taken};
use redb::{
    Builder, CommitError, ConcurrencyMode, Database, DatabaseError, Durability,
    MultimapTableHandle, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    SetDurabilityError, StorageError, TableDefinition, TableError, TableHandle, TransactionError,
    WriteTransaction,
};
use std::collections::HashMap;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// `format` → `flow`, `schema_version` → [`SCHEMA_VERSION`], `flow_version` → the version of
/// flow that created the file (since schema 2; named in the error for an older store).
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
/// Run id → JSON [`RunRecord`].
const RUNS: TableDefinition<&str, &[u8]> = TableDefinition::new("runs");
/// (run id, [`StepId::storage_key`]) → JSON [`StepRecord`].
const STEPS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("steps");
/// Run id → when the cancel was requested, ms since the epoch.
const CANCELS: TableDefinition<&str, u64> = TableDefinition::new("cancels");
/// Run id → the fencing token of its latest claim. Kept apart from the run record so that
/// checking a checkpoint's claim reads one integer, not a whole run.
const CLAIMS: TableDefinition<&str, u64> = TableDefinition::new("claims");

const FORMAT: &str = "flow";
const FORMAT_KEY: &str = "format";
const VERSION_KEY: &str = "schema_version";
const FLOW_VERSION_KEY: &str = "flow_version";

/// The most requests one durable commit takes: a bound on the latency a burst adds to its
/// first waiter (about 50 ms where the writer applies 300,000–400,000 checkpoints a second,
/// about 150 ms on the slower 2-core machines that reach 110,000).
///
/// With a window, steps do not wait for their checkpoints, so 1,024 runs of no-op steps queue
/// far more than one commit takes in: at 4,096 the cap was reached at almost every commit, and
/// a commit's pages were rewritten for fewer checkpoints each. 16,384 made 1,024 runs in waves
/// 5–12% faster (BENCHMARKS.md, "A sixth machine").
const MAX_BATCH: usize = 16384;

/// How long a batch of deferred commits waits for more ([`Writer::gather_deferred`]), and
/// how many it gathers at most that way.
const GATHER: std::time::Duration = std::time::Duration::from_micros(500);
const GATHER_BATCH: usize = 1024;

/// How long the writer polls for the next request before it blocks.
const WRITER_SPIN: std::time::Duration = std::time::Duration::from_micros(100);

/// redb refuses values over 3 GiB inside the transaction; refusing them before keeps one huge
/// checkpoint from failing the other requests of its batch.
const MAX_VALUE_LEN: usize = 3 * 1024 * 1024 * 1024;

/// The redb store: one file, one writer thread that group-commits, MVCC reads.
///
/// ```no_run
/// # async fn demo() -> Result<(), flow_runtime::store::StoreError> {
/// use flow_runtime::store::{RedbStore, RunFilter, Store};
/// let store = RedbStore::open("flow.redb")?;
/// for run in store.runs(&RunFilter::default()).await? {
///     println!("{} {} {}", run.id, run.workflow, run.status);
/// }
/// # Ok(()) }
/// ```
pub struct RedbStore {
    /// Reads go through this handle: the writable database, or a read-only one
    /// ([`RedbStore::open_read_only`]), which has no writer.
    db: Arc<dyn ReadableDatabase + Send + Sync>,
    /// The same database where it is writable: prunes take their own write transactions, in
    /// batches, between the writer's group commits.
    writable: Option<Arc<Database>>,
    path: PathBuf,
    stats: Arc<Counters>,
    state: Arc<WriterState>,
    /// `None` only while dropping: closing the channel is what stops the writer.
    requests: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Whether other processes may open the store while this one has it open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sharing {
    /// Other processes (an operator's `runs list`, a cancel) may open the store while this one
    /// runs workflows. Each durable commit costs two fsyncs.
    #[default]
    Shared,
    /// This process holds the file alone: one fsync per commit, and any other process that
    /// opens the store gets [`StoreError::Locked`] until this one closes it.
    Exclusive,
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    deferred_commits: AtomicU64,
    writes: AtomicU64,
}

/// What the writer shares with the handle: the durability window and the first failure of a
/// deferred commit.
#[derive(Default)]
struct WriterState {
    /// The window in microseconds; 0 is strict.
    window_us: AtomicU64,
    /// Set once a batch with a deferred commit failed: every later write is refused.
    broken: std::sync::Mutex<Option<String>>,
    /// redb's multi-process mode has no non-durable commits: a shared store is strict.
    shared: bool,
}

impl WriterState {
    fn broken(&self) -> Option<String> {
        self.broken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn window(&self) -> Option<std::time::Duration> {
        match self.window_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(std::time::Duration::from_micros(us)),
        }
    }
}

impl RedbStore {
    /// Opens the store at `path`, creating it if the file is missing or empty.
    ///
    /// The parent directory must exist. Fails with [`StoreError::Locked`],
    /// [`StoreError::Corrupt`], [`StoreError::Foreign`], [`StoreError::NewerVersion`] or
    /// [`StoreError::OlderVersion`] rather than touching a file that is not a usable flow store.
    pub fn open(path: impl AsRef<Path>) -> Result<RedbStore, StoreError> {
        RedbStore::open_with(path, Sharing::Shared)
    }

    /// Like [`RedbStore::open`], choosing whether other processes may share the file.
    pub fn open_with(path: impl AsRef<Path>, sharing: Sharing) -> Result<RedbStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            return Err(StoreError::Io {
                source: io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "the directory {} does not exist; create it, or choose a store path in an existing directory",
                        dir.display()
                    ),
                ),
                path,
            });
        }
        create_complete(&path, dir).map_err(|fault| fault.at(&path))?;
        let db = open_database(&path, false, sharing)?;
        init_or_check_meta(&db).map_err(|fault| fault.at(&path))?;
        Ok(RedbStore::start(db, path, sharing))
    }

    /// Opens an existing store for reading only: the file is opened read-only and never
    /// written, so an operator can inspect a store they may not write (mode 444, another user's
    /// file) and inspecting leaves its bytes and mtime as they were. Writes answer
    /// [`StoreError::Closed`].
    ///
    /// The file is opened in redb's multi-process mode, so a process running workflows on it
    /// (shared, the default) keeps running and its commits are seen. A store whose writer was
    /// killed must first be recovered, which writes: then, and only then, the store is opened
    /// writable as by [`RedbStore::open_existing`] (and that fails if the file is not writable,
    /// with an error saying so).
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<RedbStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        check_existing(&path)?;
        let mut builder = Builder::new();
        builder.set_concurrency_mode(ConcurrencyMode::MultiWriter);
        let opened = catch_unwind(AssertUnwindSafe(|| builder.open_read_only(&path)));
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(DatabaseError::RepairAborted)) => {
                tracing::debug!(path = %path.display(), "the store needs recovery; opening it writable");
                return RedbStore::open_existing(&path).map_err(|err| match err {
                    StoreError::Io { path, source }
                        if source.kind() == io::ErrorKind::PermissionDenied =>
                    {
                        StoreError::Io {
                            source: io::Error::new(
                                source.kind(),
                                "a process was killed while writing it, so it must be recovered \
                                 before it can be read, and recovering writes; run this command \
                                 once as a user who can write the file",
                            ),
                            path,
                        }
                    }
                    other => other,
                });
            }
            Ok(Err(err)) => return Err(Fault::from(err).at(&path)),
            Err(panic) => {
                return Err(StoreError::Corrupt {
                    path,
                    detail: format!("the database engine panicked: {}", panic_message(&*panic)),
                })
            }
        };
        let checked = catch_unwind(AssertUnwindSafe(|| check_meta_readable(&db)));
        match checked {
            Ok(Ok(())) => {}
            Ok(Err(fault)) => return Err(fault.at(&path)),
            Err(panic) => {
                return Err(StoreError::Corrupt {
                    path,
                    detail: format!("the database engine panicked: {}", panic_message(&*panic)),
                })
            }
        }
        Ok(RedbStore {
            db: Arc::new(db),
            writable: None,
            path,
            stats: Arc::new(Counters::default()),
            state: Arc::new(WriterState::default()),
            requests: None,
            writer: None,
        })
    }

    /// Opens an existing store, failing with [`StoreError::Missing`] instead of creating one.
    /// For operator commands, which must not leave an empty store behind a mistyped path.
    pub fn open_existing(path: impl AsRef<Path>) -> Result<RedbStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        check_existing(&path)?;
        let db = open_database(&path, false, Sharing::Shared)?;
        let sharing = Sharing::Shared;
        check_meta_read_only(&db).map_err(|fault| fault.at(&path))?;
        Ok(RedbStore::start(db, path, sharing))
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Durable commits done and write requests applied since the store was opened.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            commits: self.stats.commits.load(Ordering::Relaxed),
            deferred_commits: self.stats.deferred_commits.load(Ordering::Relaxed),
            writes: self.stats.writes.load(Ordering::Relaxed),
        }
    }

    /// Sets when the checkpoints of repeat-safe steps reach the disk ([`super::Durability`];
    /// default: a 5 ms window).
    ///
    /// A store opened [`Sharing::Shared`] stays strict: redb commits durably in its
    /// multi-process mode.
    pub fn set_durability(&self, durability: super::Durability) {
        let us = match durability {
            _ if self.state.shared => 0,
            super::Durability::Strict => 0,
            super::Durability::Window(d) => (d.as_micros() as u64).max(1),
        };
        self.state.window_us.store(us, Ordering::Relaxed);
    }

    fn broken_error(&self) -> Option<StoreError> {
        self.state.broken().map(|cause| StoreError::Broken {
            path: self.path.clone(),
            cause,
        })
    }

    fn start(db: Database, path: PathBuf, sharing: Sharing) -> RedbStore {
        let db = Arc::new(db);
        let stats = Arc::new(Counters::default());
        let state = Arc::new(WriterState {
            shared: sharing == Sharing::Shared,
            ..WriterState::default()
        });
        if let (false, super::Durability::Window(window)) =
            (state.shared, super::Durability::DEFAULT)
        {
            state
                .window_us
                .store(window.as_micros() as u64, Ordering::Relaxed);
        }
        let (requests, inbox) = mpsc::channel();
        let writer = Writer {
            db: db.clone(),
            path: path.clone(),
            stats: stats.clone(),
            state: state.clone(),
            inbox,
        };
        let writer = std::thread::Builder::new()
            .name("flow-store-writer".into())
            .spawn(move || writer.run());
        let writer = match writer {
            Ok(handle) => Some(handle),
            Err(err) => {
                // Without a writer every write answers `Closed`; reads still work
                tracing::error!(error = %err, "could not start the store writer thread");
                None
            }
        };
        RedbStore {
            writable: Some(db.clone()),
            db,
            path,
            stats,
            state,
            requests: writer.as_ref().map(|_| requests),
            writer,
        }
    }

    async fn send<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Request,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let requests = self.requests.as_ref().ok_or(StoreError::Closed)?;
        requests.send(make(reply)).map_err(|_| StoreError::Closed)?;
        // A dropped reply means the writer stopped (it panicked, or the process is exiting)
        answer.await.unwrap_or(Err(StoreError::Closed))
    }

    /// Runs `f` in a read transaction on tokio's blocking pool: a read touches the disk (a page
    /// cache miss, a scan), which must not stall the async workers that drive the runs. Outside
    /// a tokio runtime it runs on the calling thread.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, Fault> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        let path = self.path.clone();
        let read = move || {
            let txn = db.begin_read().map_err(|err| Fault::from(err).at(&path))?;
            f(&txn).map_err(|fault| fault.at(&path))
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return read();
        };
        match runtime.spawn_blocking(read).await {
            Ok(result) => result,
            Err(err) if err.is_panic() => Err(StoreError::Backend(format!(
                "the database engine panicked while reading {}: {}",
                self.path.display(),
                panic_message(&*err.into_panic())
            ))),
            // The runtime is shutting down
            Err(_) => Err(StoreError::Closed),
        }
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        // The writer drains what was already sent, then sees the closed channel and returns
        drop(self.requests.take());
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!(path = %self.path.display(), "the store writer thread panicked");
            }
        }
    }
}

/// Opens the file with redb in the mode `sharing` asks for, verifying it; `create` allows
/// initialising a missing or empty file.
fn open_database(path: &Path, create: bool, sharing: Sharing) -> Result<Database, StoreError> {
    let mode = match sharing {
        Sharing::Shared => ConcurrencyMode::MultiWriter,
        Sharing::Exclusive => ConcurrencyMode::ExclusiveWriter,
    };
    let mut builder = Builder::new();
    builder
        .set_concurrency_mode(mode)
        .set_check_integrity_on_open(true);
    let opened = catch_unwind(AssertUnwindSafe(|| {
        if create {
            builder.create(path)
        } else {
            builder.open(path)
        }
    }));
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(err)) => Err(match Fault::from(err).at(path) {
            StoreError::Locked { path, .. } => StoreError::Locked {
                path,
                wanted: sharing,
            },
            other => other,
        }),
        Err(panic) => Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("the database engine panicked: {}", panic_message(&*panic)),
        }),
    }
}

/// A store file is there: a non-empty regular file.
fn check_existing(path: &Path) -> Result<(), StoreError> {
    let path = path.to_path_buf();
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_file() && meta.len() > 0 => Ok(()),
        // An empty file is what `open` would replace: there is no store there yet
        Ok(meta) if meta.is_file() => Err(StoreError::Missing { path }),
        Ok(_) => Err(StoreError::Io {
            source: io::Error::other("not a regular file"),
            path,
        }),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Err(StoreError::Missing { path }),
        Err(err) => Err(io_error(&path, err)),
    }
}

/// Makes sure `path` is a store file, creating a new store if there is none, so that the path
/// is either absent or a complete store whatever happens meanwhile (a kill, a full disk):
/// the new store is initialised under a temporary name in the same directory, made durable,
/// then hard-linked to `path`, which fails if another process got there first (then its store
/// is used and ours removed), and the directory is synced. A hard link, unlike a rename, never
/// replaces a store that another process has just created and opened. An empty file (left by
/// a version that initialised the store in place) counts as no store.
fn create_complete(path: &Path, dir: &Path) -> Result<(), Fault> {
    let io = |err: io::Error| Fault::Ready(io_error(path, err));
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() || meta.len() > 0 => return Ok(()),
        Ok(_) => set_aside_empty(path, dir).map_err(io)?,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(io(err)),
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "flow.redb".to_owned());
    remove_stale_creations(dir, &name);
    let tmp = dir.join(format!(
        ".{name}.creating-{}-{:016x}",
        std::process::id(),
        fastrand::u64(..)
    ));
    let created = initialise(&tmp).and_then(|()| match std::fs::hard_link(&tmp, path) {
        Ok(()) => Ok(()),
        // Another process created the store meanwhile, complete as ours would have been
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        // A file system without hard links: rename, after checking that the name is free
        Err(_) if !path.exists() => std::fs::rename(&tmp, path).map_err(io),
        Err(err) => Err(io(err)),
    });
    let _ = std::fs::remove_file(&tmp);
    created?;
    sync_dir(dir).map_err(io)
}

/// Writes a complete, empty store at `tmp`, durably.
fn initialise(tmp: &Path) -> Result<(), Fault> {
    // Nobody else knows the name: the exclusive mode needs one fsync per commit, not two
    let db = open_database(tmp, true, Sharing::Exclusive).map_err(Fault::Ready)?;
    init_or_check_meta(&db)?;
    drop(db);
    let file = std::fs::File::open(tmp).map_err(|err| Fault::Ready(io_error(tmp, err)))?;
    file.sync_all()
        .map_err(|err| Fault::Ready(io_error(tmp, err)))
}

/// Moves an empty file at `path` out of the way. If, between the look and the move, another
/// process replaced it with its new store, that store is linked back.
fn set_aside_empty(path: &Path, dir: &Path) -> io::Result<()> {
    let aside = dir.join(format!(
        ".flow-empty-{}-{:016x}",
        std::process::id(),
        fastrand::u64(..)
    ));
    match std::fs::rename(path, &aside) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    }
    let restored = match std::fs::metadata(&aside) {
        Ok(meta) if meta.len() > 0 => match std::fs::hard_link(&aside, path) {
            Err(err) if err.kind() != io::ErrorKind::AlreadyExists => Err(err),
            _ => Ok(()),
        },
        _ => Ok(()),
    };
    std::fs::remove_file(&aside)?;
    restored
}

/// Removes temporary stores left by creations that were killed (their process is gone).
fn remove_stale_creations(dir: &Path, name: &str) {
    let prefix = format!(".{name}.creating-");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = file
            .strip_prefix(&prefix)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = pid == std::process::id()
            || !Path::new("/proc/self").exists()
            || Path::new(&format!("/proc/{pid}")).exists();
        if !alive {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Makes a new name in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    match std::fs::File::open(dir) {
        Ok(handle) => handle.sync_all(),
        // Directories cannot be opened as files everywhere; there the rename is what we have
        Err(_) if !cfg!(unix) => Ok(()),
        Err(err) => Err(err),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}

/// Checks the meta table, or writes it into a file with no tables at all. Runs in a write
/// transaction so that two processes creating the same store agree on one initialisation.
fn init_or_check_meta(db: &Database) -> Result<(), Fault> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    let tables = table_names(
        txn.list_tables()?.map(|t| t.name().to_owned()),
        txn.list_multimap_tables()?.map(|t| t.name().to_owned()),
    );
    if tables.iter().any(|name| name == META.name()) {
        let meta = txn.open_table(META)?;
        let found = check_meta(&meta)?;
        drop(meta);
        if found < SCHEMA_VERSION {
            migrate(&txn, found)?;
            txn.commit()?;
        } else {
            txn.abort()?;
        }
        return Ok(());
    }
    if !tables.is_empty() {
        return Err(Fault::foreign(&tables));
    }
    {
        let mut meta = txn.open_table(META)?;
        meta.insert(FORMAT_KEY, FORMAT)?;
        meta.insert(VERSION_KEY, SCHEMA_VERSION.to_string().as_str())?;
        meta.insert(FLOW_VERSION_KEY, env!("CARGO_PKG_VERSION"))?;
    }
    txn.commit()?;
    Ok(())
}

/// [`init_or_check_meta`] for a store that must already exist: never writes.
fn check_meta_read_only(db: &Database) -> Result<(), Fault> {
    check_meta_readable(db)
}

/// [`check_meta_read_only`] for any handle that reads, read-only ones included.
fn check_meta_readable(db: &impl ReadableDatabase) -> Result<(), Fault> {
    let txn = db.begin_read()?;
    match txn.open_table(META) {
        Ok(meta) => check_meta(&meta).map(|_| ()),
        Err(TableError::TableDoesNotExist(_)) => Err(Fault::foreign(&table_names(
            txn.list_tables()?.map(|t| t.name().to_owned()),
            txn.list_multimap_tables()?.map(|t| t.name().to_owned()),
        ))),
        Err(err) => Err(err.into()),
    }
}

fn table_names(
    normal: impl Iterator<Item = String>,
    multimap: impl Iterator<Item = String>,
) -> Vec<String> {
    let mut names: Vec<String> = normal.chain(multimap).collect();
    names.sort();
    names
}

fn check_meta(meta: &impl ReadableTable<&'static str, &'static str>) -> Result<u32, Fault> {
    let format = meta.get(FORMAT_KEY)?.map(|v| v.value().to_owned());
    match format.as_deref() {
        Some(FORMAT) => {}
        Some(other) => {
            return Err(Fault::Foreign(format!(
                "its meta table names the format `{other}`"
            )))
        }
        None => {
            return Err(Fault::Foreign(
                "it has a meta table without a `format` entry".into(),
            ))
        }
    }
    let version = meta.get(VERSION_KEY)?.map(|v| v.value().to_owned());
    let Some(found) = version.as_deref().and_then(|v| v.parse::<u32>().ok()) else {
        return Err(Fault::Corrupt(match version {
            Some(v) => format!("its schema version `{v}` is not a number"),
            None => "it has no schema version".into(),
        }));
    };
    if found > SCHEMA_VERSION {
        return Err(Fault::NewerVersion(found));
    }
    // No migration from version 1: its step keys were hashed differently, so its unfinished
    // runs would execute completed steps again; refusing it is the safe answer. Version 2
    // lacks only the queue and timer indexes, which a writer builds from the runs.
    if found < MIGRATES_FROM {
        let recorded = meta.get(FLOW_VERSION_KEY)?.map(|v| v.value().to_owned());
        let written_by = match (recorded, found) {
            (Some(version), _) => format!("flow {version}"),
            (None, 1) => "flow 0.1.0 before stable step keys".to_owned(),
            (None, _) => "an older flow".to_owned(),
        };
        return Err(Fault::OlderVersion { found, written_by });
    }
    Ok(found)
}

/// The oldest schema version a writer upgrades in place ([`migrate`]).
const MIGRATES_FROM: u32 = 2;

/// Upgrades a store of version `found`, in the opening write transaction. From version 2: indexes
/// every run in the tables version 3 added (queued runs, timers, runs in flight, runs held by a
/// process). From version 3: nothing to rewrite, since version 4's binary step values sit beside
/// its JSON ones (both are read); the new number keeps older builds, which cannot read the
/// binary values, out.
fn migrate(txn: &WriteTransaction, found: u32) -> Result<(), Fault> {
    if found < 3 {
        let runs = txn.open_table(RUNS)?;
        let mut index = Indexes::open(txn)?;
        for entry in runs.iter()? {
            let (id, bytes) = entry?;
            if let Ok(run) = decode_run(id.value(), bytes.value()) {
                index.update(id.value(), None, Some(&RunKeys::of(&run)))?;
            }
        }
    }
    let mut meta = txn.open_table(META)?;
    meta.insert(VERSION_KEY, SCHEMA_VERSION.to_string().as_str())?;
    meta.insert(FLOW_VERSION_KEY, env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

/// A failure inside a transaction, before the store path is attached. Every redb error type
/// converts into it with `?`; [`Fault::at`] turns it into the [`StoreError`] callers see.
pub(super) enum Fault {
    /// Any redb error; see [`engine_error`].
    Engine(redb::Error),
    /// [`StoreError::Foreign`] with this detail.
    Foreign(String),
    /// [`StoreError::Corrupt`] with this detail.
    Corrupt(String),
    /// [`StoreError::NewerVersion`] with the version found.
    NewerVersion(u32),
    /// [`StoreError::OlderVersion`] with the version found and who wrote it.
    OlderVersion { found: u32, written_by: String },
    /// A complete error (encoding errors name the record, not the file).
    Ready(StoreError),
}

macro_rules! engine_faults {
    ($($error:ty),* $(,)?) => {$(
        impl From<$error> for Fault {
            fn from(err: $error) -> Self {
                Fault::Engine(err.into())
            }
        }
    )*};
}

engine_faults!(
    DatabaseError,
    TransactionError,
    TableError,
    StorageError,
    CommitError,
    SetDurabilityError,
);

impl Fault {
    fn foreign(tables: &[String]) -> Fault {
        let detail = if tables.is_empty() {
            "it is a redb database with no tables".to_owned()
        } else {
            format!(
                "it is a redb database with the tables {} and no flow metadata",
                tables
                    .iter()
                    .map(|t| format!("`{t}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        Fault::Foreign(detail)
    }

    pub(super) fn at(self, path: &Path) -> StoreError {
        let path = path.to_path_buf();
        match self {
            Fault::Engine(err) => engine_error(path, err),
            Fault::Foreign(detail) => StoreError::Foreign { path, detail },
            Fault::Corrupt(detail) => StoreError::Corrupt { path, detail },
            Fault::NewerVersion(found) => StoreError::NewerVersion {
                path,
                found,
                supported: SCHEMA_VERSION,
            },
            Fault::OlderVersion { found, written_by } => StoreError::OlderVersion {
                path,
                found,
                written_by,
                supported: SCHEMA_VERSION,
            },
            Fault::Ready(err) => err,
        }
    }
}

/// What a redb error means for flow.
fn engine_error(path: PathBuf, err: redb::Error) -> StoreError {
    use redb::Error as E;
    match err {
        // The mode asked for is filled in by `open_database`, the only place redb reports this
        E::DatabaseAlreadyOpen => StoreError::Locked {
            path,
            wanted: Sharing::Shared,
        },
        E::LockProtocolMismatch => StoreError::Backend(format!(
            "the store {} is open in a program built with another redb locking protocol; stop that program, or run the same flow version",
            path.display()
        )),
        E::Corrupted(detail) => StoreError::Corrupt { path, detail },
        E::UpgradeRequired(version) => StoreError::Foreign {
            path,
            detail: format!("it is a redb database in file format {version}, which flow does not read"),
        },
        err @ (E::TableTypeMismatch { .. }
        | E::TableIsMultimap(_)
        | E::TableIsNotMultimap(_)
        | E::TypeDefinitionChanged { .. }) => StoreError::Foreign {
            path,
            detail: err.to_string(),
        },
        E::Io(source) => io_error(&path, source),
        E::Backend(source) => match source.downcast::<io::Error>() {
            Ok(source) => io_error(&path, *source),
            Err(source) => StoreError::Backend(source.to_string()),
        },
        E::PreviousIo => StoreError::Io {
            path,
            source: io::Error::other(
                "an earlier I/O error (a full disk, for example) stopped the store; fix it and restart the process",
            ),
        },
        E::DatabaseClosed => StoreError::Closed,
        other => StoreError::Backend(other.to_string()),
    }
}

/// An I/O error on the file. redb reports a file that is not a database, or is cut short, as
/// `InvalidData` and `UnexpectedEof`.
fn io_error(path: &Path, source: io::Error) -> StoreError {
    let path = path.to_path_buf();
    // ENOSPC is 28 on Linux and the Apple platforms; `StorageFull` also covers Windows
    if source.raw_os_error() == Some(28) || source.kind() == io::ErrorKind::StorageFull {
        return StoreError::DiskFull { path };
    }
    match source.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => StoreError::Corrupt {
            path,
            detail: source.to_string(),
        },
        _ => StoreError::Io { path, source },
    }
}

/// A copy of `err` for each waiter of a failed batch: [`StoreError`] is not `Clone` because
/// `io::Error` is not, so an I/O error keeps its kind and message.
pub(super) fn replicate(err: &StoreError) -> StoreError {
    use StoreError as S;
    match err {
        S::Missing { path } => S::Missing { path: path.clone() },
        S::Locked { path, wanted } => S::Locked {
            path: path.clone(),
            wanted: *wanted,
        },
        S::Corrupt { path, detail } => S::Corrupt {
            path: path.clone(),
            detail: detail.clone(),
        },
        S::Foreign { path, detail } => S::Foreign {
            path: path.clone(),
            detail: detail.clone(),
        },
        S::NewerVersion {
            path,
            found,
            supported,
        } => S::NewerVersion {
            path: path.clone(),
            found: *found,
            supported: *supported,
        },
        S::OlderVersion {
            path,
            found,
            written_by,
            supported,
        } => S::OlderVersion {
            path: path.clone(),
            found: *found,
            written_by: written_by.clone(),
            supported: *supported,
        },
        S::DiskFull { path } => S::DiskFull { path: path.clone() },
        S::Io { path, source } => S::Io {
            path: path.clone(),
            source: io::Error::new(source.kind(), source.to_string()),
        },
        S::Encoding(detail) => S::Encoding(detail.clone()),
        S::Closed => S::Closed,
        S::ClaimLost { run_id } => S::ClaimLost {
            run_id: run_id.clone(),
        },
        S::Backend(detail) => S::Backend(detail.clone()),
        S::Unavailable { target, detail } => S::Unavailable {
            target: target.clone(),
            detail: detail.clone(),
        },
        S::Broken { path, cause } => S::Broken {
            path: path.clone(),
            cause: cause.clone(),
        },
    }
}

// ---- records ----

fn encode<T: serde::Serialize>(
    what: impl std::fmt::Display,
    record: &T,
) -> Result<Vec<u8>, StoreError> {
    // Most records are a few hundred bytes: one allocation instead of a growing buffer
    let mut bytes = Vec::with_capacity(512);
    serde_json::to_writer(&mut bytes, record)
        .map_err(|err| StoreError::Encoding(format!("{what} could not be encoded: {err}")))?;
    if bytes.len() > MAX_VALUE_LEN {
        return Err(StoreError::Encoding(format!(
            "{what} is {} bytes as JSON, over the 3 GiB a record may take; store large data elsewhere and checkpoint a reference",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// The op that writes `step`: run id, storage key and value ([`step_record`]) in one buffer,
/// the value within the size a record may take.
fn put_step(step: &StepRecord) -> Result<Op, StoreError> {
    let run = step.run_id.as_str();
    // A checkpoint without output takes 11 bytes of value
    let mut bytes = Vec::with_capacity(run.len() + step.id.name.len() + step.id.key.len() + 32);
    bytes.extend_from_slice(run.as_bytes());
    step.id.push_storage_key(&mut bytes);
    let run_len = run.len();
    let key_len = bytes.len() - run_len;
    let what = || format!("step {} of run {}", step.id, step.run_id);
    step_record::encode_into(step, &mut bytes)
        .map_err(|err| StoreError::Encoding(format!("{} could not be encoded: {err}", what())))?;
    let value_len = bytes.len() - run_len - key_len;
    if value_len > MAX_VALUE_LEN {
        return Err(StoreError::Encoding(format!(
            "{} is {value_len} bytes, over the 3 GiB a record may take; store large data elsewhere and checkpoint a reference",
            what(),
        )));
    }
    Ok(Op::PutStep {
        bytes,
        run_len,
        key_len,
    })
}

/// The run id, storage key and value of a [`Op::PutStep`] buffer.
fn step_parts(bytes: &[u8], run_len: usize, key_len: usize) -> Result<(&str, &str, &[u8]), Fault> {
    let broken = || {
        Fault::Ready(StoreError::Backend(
            "internal error: a step checkpoint's buffer is malformed".into(),
        ))
    };
    let (run, rest) = bytes.split_at_checked(run_len).ok_or_else(broken)?;
    let (key, value) = rest.split_at_checked(key_len).ok_or_else(broken)?;
    let run = std::str::from_utf8(run).map_err(|_| broken())?;
    let key = std::str::from_utf8(key).map_err(|_| broken())?;
    Ok((run, key, value))
}

impl RedbStore {
    /// Decodes bytes as a stored run record (run id `key`) and as a stored step record (storage
    /// key `key` of run `run`), exactly as reads do. For the decoders' fuzz tests; **not a
    /// public API**.
    #[doc(hidden)]
    pub fn decode_stored(
        run: &str,
        key: &str,
        bytes: &[u8],
    ) -> (
        Result<RunRecord, StoreError>,
        Result<StepRecord, StoreError>,
    ) {
        (decode_run(key, bytes), decode_step(run, key, bytes))
    }
}

fn decode_run(id: &str, bytes: &[u8]) -> Result<RunRecord, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|err| StoreError::Encoding(format!("run {id} could not be decoded: {err}")))
}

/// The step id back from its storage key `name␟key␟occurrence` (the key may itself contain
/// the separator; the name and the occurrence cannot).
fn step_id_of(storage_key: &str) -> Option<StepId> {
    let (name, rest) = storage_key.split_once('\u{1f}')?;
    let (key, occurrence) = rest.rsplit_once('\u{1f}')?;
    Some(StepId {
        name: name.to_owned(),
        key: key.to_owned(),
        occurrence: occurrence.parse().ok()?,
    })
}

fn decode_step(run: &str, key: &str, bytes: &[u8]) -> Result<StepRecord, StoreError> {
    let fail = |why: String| {
        StoreError::Encoding(format!(
            "step {} of run {run} could not be decoded: {why}",
            key.replace('\u{1f}', "/")
        ))
    };
    let id = step_id_of(key).ok_or_else(|| fail("its key is malformed".into()))?;
    step_record::decode(RunId::from(run), id, bytes).map_err(fail)
}

/// A [`Write`], encoded before it reaches the writer so that a bad record fails only its caller.
enum Op {
    CheckClaim {
        run: String,
        token: u64,
    },
    PutRun {
        id: String,
        keys: RunKeys,
        json: Vec<u8>,
    },
    /// A step's checkpoint: its run id, storage key and value end to end in one buffer. It is
    /// built on the caller's thread and freed on the writer's, once per checkpoint, and glibc
    /// frees a block of another thread slowly: one block instead of three.
    PutStep {
        bytes: Vec<u8>,
        run_len: usize,
        key_len: usize,
    },
    DeleteStep {
        run: String,
        key: String,
    },
    RequestCancel {
        run: String,
        at_ms: u64,
    },
    ClearCancel {
        run: String,
    },
    RunEnded(super::RunEnd),
    RunAlert(super::RunAlert),
    RenewLease {
        run: String,
        until_ms: u64,
    },
    AlertDelivery {
        alert_id: String,
        index: usize,
        outcome: super::DeliveryOutcome,
        at_ms: u64,
    },
}

impl Op {
    fn encode(write: Write) -> Result<Op, StoreError> {
        Ok(match write {
            Write::CheckClaim(claim) => Op::CheckClaim {
                run: claim.run_id.into_string(),
                token: claim.token,
            },
            Write::PutRun(run) => Op::PutRun {
                json: encode(format_args!("run {}", run.id), &run)?,
                id: run.id.as_str().to_owned(),
                keys: RunKeys::of(&run),
            },
            Write::PutStep(step) => put_step(&step)?,
            Write::DeleteStep(run, step) => Op::DeleteStep {
                run: run.as_str().to_owned(),
                key: step.storage_key(),
            },
            Write::RequestCancel(run) => Op::RequestCancel {
                run: run.as_str().to_owned(),
                at_ms: super::now_ms(),
            },
            Write::ClearCancel(run) => Op::ClearCancel {
                run: run.as_str().to_owned(),
            },
            Write::RunEnded(end) => Op::RunEnded(end),
            Write::RunAlert(alert) => Op::RunAlert(alert),
            Write::RenewLease { run_id, until_ms } => Op::RenewLease {
                run: run_id.as_str().to_owned(),
                until_ms,
            },
            Write::AlertDelivery {
                alert_id,
                index,
                outcome,
            } => Op::AlertDelivery {
                alert_id,
                index,
                outcome,
                at_ms: super::now_ms(),
            },
        })
    }
}

// ---- the writer ----

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Request {
    CreateRun {
        id: String,
        keys: RunKeys,
        json: Vec<u8>,
        reply: Reply<CreateRun>,
    },
    /// `reply` is `None` for a deferred commit: nobody waits for it.
    Commit {
        ops: Vec<Op>,
        reply: Option<Reply<()>>,
    },
    /// Makes the batch durable.
    Flush { reply: Reply<()> },
    Claim {
        id: String,
        request: ClaimRequest,
        now_ms: u64,
        reply: Reply<ClaimOutcome>,
    },
    TakeQueued {
        request: QueueTake,
        reply: Reply<Vec<Taken>>,
    },
    Schedule {
        write: super::ScheduleWrite,
        reply: Reply<super::ScheduleOutcome>,
    },
}

/// What one request did inside a committed batch.
#[allow(clippy::large_enum_variant)] // one per request in a batch, consumed right away
enum Outcome {
    CreateRun(Result<CreateRun, StoreError>),
    Commit(Result<(), StoreError>),
    Claim(Result<ClaimOutcome, StoreError>),
    TakeQueued(Vec<Taken>),
    Schedule(Result<super::ScheduleOutcome, StoreError>),
    Flush,
}

struct Writer {
    db: Arc<Database>,
    path: PathBuf,
    stats: Arc<Counters>,
    state: Arc<WriterState>,
    inbox: mpsc::Receiver<Request>,
}

/// What the writer waits for next.
enum Next {
    Request(Request),
    /// The durability window of the oldest deferred commit ended.
    Due,
    Closed,
}

impl Writer {
    fn run(self) {
        // Blocks for the first request, then takes whatever queued up meanwhile: while one
        // commit waits for the disk, the next batch gathers. After a deferred commit, it waits
        // at most until the window ends, then makes everything durable.
        let mut dirty_since: Option<std::time::Instant> = None;
        loop {
            let due = dirty_since.zip(self.state.window()).map(|(at, w)| at + w);
            match self.next_request(due) {
                Next::Request(first) => {
                    let mut batch = Vec::with_capacity(16);
                    batch.push(first);
                    batch.extend(self.inbox.try_iter().take(MAX_BATCH - 1));
                    self.gather_deferred(&mut batch);
                    // Deferred only when every request may wait and a window is set
                    let deferred = self.state.window().is_some()
                        && batch
                            .iter()
                            .all(|r| matches!(r, Request::Commit { reply: None, .. }));
                    if self.commit_batch(batch, !deferred) {
                        if deferred {
                            dirty_since.get_or_insert_with(std::time::Instant::now);
                        } else {
                            dirty_since = None;
                        }
                    }
                }
                Next::Due => {
                    self.flush();
                    dirty_since = None;
                }
                Next::Closed => {
                    if dirty_since.is_some() {
                        self.flush();
                    }
                    return;
                }
            }
        }
    }

    /// With a window, a batch of deferred commits only waits for more: nobody waits for it, and
    /// one commit of many checkpoints costs far less than many commits of few (redb rewrites
    /// the touched pages at every commit). It gathers for up to [`GATHER`] or until a request
    /// someone waits for arrives.
    fn gather_deferred(&self, batch: &mut Vec<Request>) {
        if self.state.window().is_none() {
            return;
        }
        let until = std::time::Instant::now() + GATHER;
        while batch.len() < GATHER_BATCH
            && batch
                .iter()
                .all(|r| matches!(r, Request::Commit { reply: None, .. }))
        {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            match self.inbox.recv_timeout(left) {
                Ok(request) => {
                    batch.push(request);
                    batch.extend(self.inbox.try_iter().take(MAX_BATCH - batch.len()));
                }
                Err(_) => return,
            }
        }
    }

    /// An empty durable commit: persists every deferred commit before it.
    fn flush(&self) {
        let flushed = catch_unwind(AssertUnwindSafe(|| -> Result<(), Fault> {
            let mut txn = self.db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            txn.commit()?;
            Ok(())
        }));
        match flushed {
            Ok(Ok(())) => {
                self.stats.commits.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(fault)) => self.break_store(fault.at(&self.path).to_string()),
            Err(panic) => self.break_store(format!(
                "the database engine panicked: {}",
                panic_message(&*panic)
            )),
        }
    }

    fn break_store(&self, cause: String) {
        tracing::error!(path = %self.path.display(), error = %cause, "a deferred checkpoint could not be made durable; the store takes no more writes");
        let mut broken = self.state.broken.lock().unwrap_or_else(|p| p.into_inner());
        broken.get_or_insert(cause);
    }

    /// The next request, or `Due` at `due`. A run's next checkpoint usually follows its last
    /// commit within tens of microseconds, so the writer polls briefly before it sleeps: waking
    /// a sleeping thread costs more than the wait.
    fn next_request(&self, due: Option<std::time::Instant>) -> Next {
        // With a window, most requests are deferred commits nobody waits for: the spin would
        // only take a core from the tasks that produce them
        let spin = if self.state.window().is_some() {
            std::time::Duration::ZERO
        } else {
            WRITER_SPIN
        };
        let spin_until = std::time::Instant::now() + spin;
        loop {
            match self.inbox.try_recv() {
                Ok(request) => return Next::Request(request),
                Err(mpsc::TryRecvError::Disconnected) => return Next::Closed,
                Err(mpsc::TryRecvError::Empty) if std::time::Instant::now() < spin_until => {
                    std::thread::yield_now();
                }
                Err(mpsc::TryRecvError::Empty) => {
                    let Some(due) = due else {
                        return match self.inbox.recv() {
                            Ok(request) => Next::Request(request),
                            Err(_) => Next::Closed,
                        };
                    };
                    let wait = due.saturating_duration_since(std::time::Instant::now());
                    return match self.inbox.recv_timeout(wait) {
                        Ok(request) => Next::Request(request),
                        Err(mpsc::RecvTimeoutError::Timeout) => Next::Due,
                        Err(mpsc::RecvTimeoutError::Disconnected) => Next::Closed,
                    };
                }
            }
        }
    }

    /// Applies the batch in one commit, durable or not; `false` if it failed.
    fn commit_batch(&self, mut batch: Vec<Request>, durable: bool) -> bool {
        if let Some(cause) = self.state.broken() {
            fail_all(
                batch,
                &StoreError::Broken {
                    path: self.path.clone(),
                    cause,
                },
            );
            return false;
        }
        let started = std::time::Instant::now();
        let applied = catch_unwind(AssertUnwindSafe(|| apply(&self.db, &mut batch, durable)));
        let outcomes = match applied {
            Ok(Ok(outcomes)) => {
                crate::metrics::store_commit(batch.len(), started.elapsed().as_secs_f64());
                if durable {
                    self.stats.commits.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.stats.deferred_commits.fetch_add(1, Ordering::Relaxed);
                }
                self.stats
                    .writes
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                outcomes
            }
            Ok(Err(fault)) => {
                let err = fault.at(&self.path);
                tracing::error!(path = %self.path.display(), error = %err, requests = batch.len(), "store commit failed");
                self.fail_batch(batch, &err);
                return false;
            }
            Err(panic) => {
                let err = StoreError::Backend(format!(
                    "the database engine panicked while writing to {}: {}",
                    self.path.display(),
                    panic_message(&*panic)
                ));
                tracing::error!(error = %err, "store commit failed");
                self.fail_batch(batch, &err);
                return false;
            }
        };
        for (request, outcome) in batch.into_iter().zip(outcomes) {
            // A waiter that went away (its task was cancelled) needs no answer
            match (request, outcome) {
                (Request::CreateRun { reply, .. }, Outcome::CreateRun(result)) => {
                    let _ = reply.send(result);
                }
                (Request::Commit { reply, .. }, Outcome::Commit(result)) => match reply {
                    Some(reply) => {
                        let _ = reply.send(result);
                    }
                    // A deferred commit refused alone (a lost claim): that execution's next
                    // durable write carries the same stale claim and is refused too
                    None => {
                        if let Err(e) = result {
                            tracing::debug!(error = %e, "a deferred commit was refused");
                        }
                    }
                },
                (Request::Flush { reply }, Outcome::Flush) => {
                    let _ = reply.send(Ok(()));
                }
                (Request::Claim { reply, .. }, Outcome::Claim(result)) => {
                    let _ = reply.send(result);
                }
                (Request::TakeQueued { reply, .. }, Outcome::TakeQueued(taken)) => {
                    let _ = reply.send(Ok(taken));
                }
                (Request::Schedule { reply, .. }, Outcome::Schedule(result)) => {
                    let _ = reply.send(result);
                }
                (request, _) => fail_all(
                    vec![request],
                    &StoreError::Backend("internal error: a store reply was mismatched".into()),
                ),
            }
        }
        true
    }

    /// Fails every request of a batch. A deferred commit in it is lost without anyone told,
    /// so the store takes no more writes: a later one must never be durable without it.
    /// (Deferred commits of earlier batches stay committed and become durable with the next
    /// durable commit, so a failed durable batch alone does not break the store.)
    fn fail_batch(&self, batch: Vec<Request>, err: &StoreError) {
        if batch
            .iter()
            .any(|r| matches!(r, Request::Commit { reply: None, .. }))
        {
            self.break_store(err.to_string());
        }
        fail_all(batch, err);
    }
}

fn fail_all(batch: Vec<Request>, err: &StoreError) {
    for request in batch {
        match request {
            Request::CreateRun { reply, .. } => {
                let _ = reply.send(Err(replicate(err)));
            }
            Request::Commit { reply, .. } => {
                if let Some(reply) = reply {
                    let _ = reply.send(Err(replicate(err)));
                }
            }
            Request::Flush { reply } => {
                let _ = reply.send(Err(replicate(err)));
            }
            Request::TakeQueued { reply, .. } => {
                let _ = reply.send(Err(replicate(err)));
            }
            Request::Claim { reply, .. } => {
                let _ = reply.send(Err(replicate(err)));
            }
            Request::Schedule { reply, .. } => {
                let _ = reply.send(Err(replicate(err)));
            }
        }
    }
}

/// Applies a whole batch in one write transaction and one durable commit.
fn apply(db: &Database, batch: &mut [Request], durable: bool) -> Result<Vec<Outcome>, Fault> {
    let mut txn = db.begin_write()?;
    txn.set_durability(if durable {
        Durability::Immediate
    } else {
        Durability::None
    })?;
    let outcomes = apply_in(&txn, batch)?;
    txn.commit()?;
    Ok(outcomes)
}

fn apply_in(txn: &WriteTransaction, batch: &mut [Request]) -> Result<Vec<Outcome>, Fault> {
    let mut runs = txn.open_table(RUNS)?;
    let mut steps = txn.open_table(STEPS)?;
    let mut cancels = txn.open_table(CANCELS)?;
    let mut claims = txn.open_table(CLAIMS)?;
    let mut index = LazyIndexes::new(txn);
    let mut outcomes = Vec::with_capacity(batch.len());
    // Claim tokens checked in this transaction: a run's many deferred checkpoints in one batch
    // look its token up once. Emptied by every request that may write a token.
    let mut tokens: HashMap<String, Option<u64>> = HashMap::new();
    let mut streaks = None;
    // Checkpoints of consecutive commits, inserted together in key order by `insert_steps`
    let mut pending: Vec<(&str, &str, &[u8])> = Vec::new();
    for request in batch {
        if !matches!(request, Request::Commit { .. }) {
            tokens.clear();
            insert_steps(&mut steps, &mut pending)?;
        }
        outcomes.push(match request {
            Request::CreateRun { id, keys, json, .. } => {
                // Inside the transaction, so a run created earlier in this batch is seen
                let existing = runs.get(id.as_str())?.map(|v| v.value().to_vec());
                match existing {
                    Some(bytes) => {
                        Outcome::CreateRun(decode_run(id, &bytes).map(CreateRun::Exists))
                    }
                    None => {
                        // Just looked up: no earlier record whose index entries to remove
                        write_run(&mut runs, index.get()?, id, json, keys, None)?;
                        let token = claims.get(id.as_str())?.map_or(0, |t| t.value()) + 1;
                        claims.insert(id.as_str(), token)?;
                        Outcome::CreateRun(Ok(CreateRun::Created(Claim {
                            run_id: RunId::from(id.as_str()),
                            token,
                        })))
                    }
                }
            }
            Request::Claim {
                id,
                request,
                now_ms,
                ..
            } => {
                let take = std::mem::replace(&mut request.take, Box::new(|_| false));
                let existing = runs.get(id.as_str())?.map(|v| v.value().to_vec());
                let outcome = match existing.map(|bytes| decode_run(id, &bytes)) {
                    None => Ok(ClaimOutcome::Missing),
                    Some(Err(err)) => Err(err),
                    Some(Ok(run)) if run.is_held(*now_ms) => Ok(ClaimOutcome::Held(run)),
                    Some(Ok(mut run)) => {
                        if take(&mut run) {
                            run.hold(request.owner.clone(), request.lease, *now_ms);
                            match encode(format_args!("run {id}"), &run) {
                                Ok(json) => {
                                    put_run(
                                        &mut runs,
                                        index.get()?,
                                        id,
                                        &json,
                                        &RunKeys::of(&run),
                                    )?;
                                    let token =
                                        claims.get(id.as_str())?.map_or(0, |t| t.value()) + 1;
                                    claims.insert(id.as_str(), token)?;
                                    // An operator's cancel of a run nobody executes ends it
                                    // here: its own alerts resolve in this transaction
                                    if run.status == RunStatus::Cancelled {
                                        alerts::run_ended(
                                            txn,
                                            &mut streaks,
                                            &super::RunEnd::cancelled(&run, *now_ms),
                                        )?;
                                    }
                                    Ok(ClaimOutcome::Claimed {
                                        claim: Claim {
                                            run_id: run.id.clone(),
                                            token,
                                        },
                                        run,
                                    })
                                }
                                Err(err) => Err(err),
                            }
                        } else {
                            Ok(ClaimOutcome::Refused(run))
                        }
                    }
                };
                Outcome::Claim(outcome)
            }
            Request::Flush { .. } => Outcome::Flush,
            Request::Schedule { write, .. } => Outcome::Schedule(schedules::write(
                txn,
                &mut runs,
                &mut claims,
                index.get()?,
                write.clone(),
            )?),
            Request::TakeQueued { request, .. } => Outcome::TakeQueued(take_queued_in(
                &mut runs,
                &mut claims,
                index.get()?,
                request,
            )?),
            Request::Commit { ops, .. } => 'commit: {
                // A commit of an execution that lost its claim writes nothing at all
                let mut stale = None;
                for op in ops.iter() {
                    if let Op::CheckClaim { run, token } = op {
                        let current = match tokens.get(run.as_str()) {
                            Some(current) => *current,
                            None => {
                                let current = claims.get(run.as_str())?.map(|t| t.value());
                                tokens.insert(run.clone(), current);
                                current
                            }
                        };
                        if current != Some(*token) {
                            stale = Some(run.clone());
                            break;
                        }
                    }
                }
                if let Some(run) = stale {
                    break 'commit Outcome::Commit(Err(StoreError::ClaimLost {
                        run_id: RunId::from(run),
                    }));
                }
                // Shared from here on: `pending` keeps borrowing the checkpoints after this request
                let ops: &Vec<Op> = ops;
                for op in ops {
                    match op {
                        Op::CheckClaim { .. } => {}
                        Op::PutRun { id, keys, json } => {
                            put_run(&mut runs, index.get()?, id, json, keys)?;
                        }
                        Op::PutStep {
                            bytes,
                            run_len,
                            key_len,
                        } => {
                            pending.push(step_parts(bytes, *run_len, *key_len)?);
                        }
                        Op::DeleteStep { run, key } => {
                            insert_steps(&mut steps, &mut pending)?;
                            steps.remove((run.as_str(), key.as_str()))?;
                        }
                        Op::RequestCancel { run, at_ms } => {
                            cancels.insert(run.as_str(), *at_ms)?;
                        }
                        Op::ClearCancel { run } => {
                            cancels.remove(run.as_str())?;
                        }
                        Op::RunEnded(end) => alerts::run_ended(txn, &mut streaks, end)?,
                        Op::RunAlert(alert) => {
                            alerts::run_alert(txn, &runs, &mut streaks, alert)?;
                        }
                        Op::RenewLease { run, until_ms } => {
                            let stored = runs.get(run.as_str())?.map(|v| v.value().to_vec());
                            // A record that does not decode is left as it is
                            if let Some(Ok(mut record)) = stored.map(|b| decode_run(run, &b)) {
                                if record.renew_lease(*until_ms) {
                                    if let Ok(json) = encode(format_args!("run {run}"), &record) {
                                        let keys = RunKeys::of(&record);
                                        put_run(&mut runs, index.get()?, run, &json, &keys)?;
                                    }
                                }
                            }
                        }
                        Op::AlertDelivery {
                            alert_id,
                            index,
                            outcome,
                            at_ms,
                        } => alerts::delivery(txn, alert_id, *index, outcome, *at_ms)?,
                    }
                }
                Outcome::Commit(Ok(()))
            }
        });
    }
    insert_steps(&mut steps, &mut pending)?;
    Ok(outcomes)
}

/// Inserts the checkpoints gathered from consecutive commits, in key order. A batch holds a
/// few checkpoints of each of hundreds of runs, in the order the runs reached them; in key
/// order, one run's checkpoints go in one after another, each descending the branch pages the
/// last one did and landing in the leaf it just changed, in order within it. redb's insert then
/// takes about 8,500 instructions instead of 9,700, for a sort of about 850 (grouping by run
/// id alone sorts for less but saves nothing: the order within a leaf is what counts; see
/// BENCHMARKS.md). The sort is stable, so a step written twice in the batch keeps its later
/// value.
fn insert_steps(
    steps: &mut redb::Table<(&'static str, &'static str), &'static [u8]>,
    pending: &mut Vec<(&str, &str, &[u8])>,
) -> Result<(), Fault> {
    pending.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    for (run, key, value) in pending.drain(..) {
        steps.insert((run, key), value)?;
    }
    Ok(())
}

/// The most queued entries one queue's take looks at: runs held back by their concurrency key
/// are skipped, and past this many the rest wait for the next take.
const TAKE_SCAN: usize = 1024;

/// [`Store::take_queued`] inside the writer's transaction. A run whose record cannot be read or
/// written is left where it is (its entry stays; `runs show` reports the damage).
fn take_queued_in(
    runs: &mut redb::Table<&'static str, &'static [u8]>,
    claims: &mut redb::Table<&'static str, u64>,
    index: &mut Indexes<'_>,
    request: &QueueTake,
) -> Result<Vec<Taken>, Fault> {
    let now = request.now_ms;
    let mut taken = Vec::new();
    for queue in &request.queues {
        if queue.take == 0 || taken.len() >= request.max {
            continue;
        }
        let name = queue.name.as_str();
        let mut in_flight = match queue.concurrency {
            Some(_) => index.count_in_flight(name, None)?,
            None => 0,
        };
        let mut starts = match queue.rate {
            Some((_, period)) => {
                index.count_starts(name, now.saturating_sub(period.as_millis() as u64))?
            }
            None => 0,
        };
        let mut per_key: HashMap<String, u64> = HashMap::new();
        let mut candidates = Vec::new();
        for entry in index.queued.range((name, i64::MIN, 0u64, "")..)? {
            let (key, _) = entry?;
            let (q, _, _, id) = key.value();
            if q != name || candidates.len() == TAKE_SCAN {
                break;
            }
            candidates.push(id.to_owned());
        }
        let mut took = 0;
        for id in candidates {
            let full = |limit: Option<u32>, n: u64| limit.is_some_and(|l| n >= u64::from(l));
            if took == queue.take
                || taken.len() >= request.max
                || full(queue.concurrency, in_flight)
                || full(queue.rate.map(|(n, _)| n), starts)
            {
                break;
            }
            let Some(Ok(mut run)) = runs.get(id.as_str())?.map(|v| decode_run(&id, v.value()))
            else {
                continue;
            };
            if run.status != RunStatus::Queued
                || run.wake_at_ms.is_some()
                || !request.workflows.contains(&run.workflow)
            {
                continue;
            }
            let key = run.queue.as_ref().and_then(|q| q.concurrency_key.clone());
            if let (Some(limit), Some(key)) = (queue.per_key, key.as_deref()) {
                let n = match per_key.get(key) {
                    Some(n) => *n,
                    None => index.count_in_flight(name, Some(key))?,
                };
                per_key.insert(key.to_owned(), n);
                if n >= u64::from(limit) {
                    continue;
                }
            }
            request.start(&mut run);
            let Ok(json) = encode(format_args!("run {id}"), &run) else {
                continue;
            };
            put_run(runs, index, &id, &json, &RunKeys::of(&run))?;
            let token = claims.get(id.as_str())?.map_or(0, |t| t.value()) + 1;
            claims.insert(id.as_str(), token)?;
            if queue.rate.is_some() {
                index.starts.insert((name, now, id.as_str()), ())?;
            }
            in_flight += 1;
            starts += 1;
            if let Some(key) = key {
                *per_key.entry(key).or_default() += 1;
            }
            took += 1;
            taken.push(Taken {
                claim: Claim {
                    run_id: run.id.clone(),
                    token,
                },
                run,
            });
        }
    }
    Ok(taken)
}

/// Writes run `id` and moves its index entries from what its stored record implied to what
/// `keys` (of the new record) imply. An undecodable old record leaves its entries behind;
/// readers of an index skip entries whose run does not match.
fn put_run(
    runs: &mut redb::Table<&'static str, &'static [u8]>,
    index: &mut Indexes<'_>,
    id: &str,
    json: &[u8],
    keys: &RunKeys,
) -> Result<(), Fault> {
    let old = match runs.get(id)? {
        Some(v) => RunKeys::of_stored(v.value()),
        None => None,
    };
    write_run(runs, index, id, json, keys, old.as_ref())
}

/// [`put_run`] where the caller already knows the index keys of the stored record (`None`: there
/// is none).
fn write_run(
    runs: &mut redb::Table<&'static str, &'static [u8]>,
    index: &mut Indexes<'_>,
    id: &str,
    json: &[u8],
    keys: &RunKeys,
    old: Option<&RunKeys>,
) -> Result<(), Fault> {
    index.update(id, old, Some(keys))?;
    runs.insert(id, json)?;
    Ok(())
}

// ---- reads ----

/// Opens a table for reading; `None` where the store has not written that table yet.
fn read_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &ReadTransaction,
    table: TableDefinition<K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>, Fault> {
    match txn.open_table(table) {
        Ok(table) => Ok(Some(table)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// The runs with these ids that exist and decode, in the order given.
fn read_runs(txn: &ReadTransaction, ids: Vec<String>) -> Result<Vec<RunRecord>, Fault> {
    let Some(runs) = read_table(txn, RUNS)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(bytes) = runs.get(id.as_str())? {
            if let Ok(run) = decode_run(&id, bytes.value()) {
                out.push(run);
            }
        }
    }
    Ok(out)
}

/// Every run matching `filter`, decoded and sorted: the listing without the index.
fn list_by_scan(
    table: &redb::ReadOnlyTable<&'static str, &'static [u8]>,
    filter: &RunFilter,
) -> Result<Vec<RunRecord>, Fault> {
    let mut runs = Vec::new();
    for entry in table.iter()? {
        let (id, bytes) = entry?;
        let run = decode_run(id.value(), bytes.value()).map_err(Fault::Ready)?;
        if filter.matches(&run) {
            runs.push(run);
        }
    }
    runs.sort_by(|a, b| {
        b.created_at_ms
            .cmp(&a.created_at_ms)
            .then_with(|| b.id.cmp(&a.id))
    });
    if let Some(limit) = filter.limit {
        runs.truncate(limit);
    }
    Ok(runs)
}

impl Store for RedbStore {
    fn alerts(
        &self,
        filter: &super::AlertFilter,
    ) -> BoxFuture<'_, Result<Vec<super::AlertRecord>, StoreError>> {
        let filter = filter.clone();
        Box::pin(async move { self.read(move |txn| alerts::list(txn, &filter)).await })
    }

    fn schedules(&self) -> BoxFuture<'_, Result<Vec<super::ScheduleRecord>, StoreError>> {
        Box::pin(async move { self.read(schedules::list).await })
    }

    fn schedule(
        &self,
        write: super::ScheduleWrite,
    ) -> BoxFuture<'_, Result<super::ScheduleOutcome, StoreError>> {
        Box::pin(async move { self.send(|reply| Request::Schedule { write, reply }).await })
    }

    fn take_queued(&self, request: QueueTake) -> BoxFuture<'_, Result<Vec<Taken>, StoreError>> {
        Box::pin(async move {
            self.send(|reply| Request::TakeQueued { request, reply })
                .await
        })
    }

    fn due(&self, now_ms: u64, limit: usize) -> BoxFuture<'_, Result<Vec<RunRecord>, StoreError>> {
        Box::pin(async move {
            self.read(move |txn| {
                let Some(timers) = read_table(txn, TIMERS)? else {
                    return Ok(Vec::new());
                };
                let mut ids = Vec::new();
                for entry in timers
                    .range((0u64, "")..=(now_ms, "\u{10FFFF}"))?
                    .take(limit)
                {
                    ids.push(entry?.0.value().1.to_owned());
                }
                read_runs(txn, ids)
            })
            .await
        })
    }

    fn next_due(&self) -> BoxFuture<'_, Result<Option<u64>, StoreError>> {
        Box::pin(async move {
            self.read(move |txn| {
                let Some(timers) = read_table(txn, TIMERS)? else {
                    return Ok(None);
                };
                let first = timers.first()?.map(|(k, _)| k.value().0);
                Ok(first)
            })
            .await
        })
    }

    fn overdue_runs(
        &self,
        limits: &[(String, u64)],
        now_ms: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<super::OverdueRuns, StoreError>> {
        let limits = limits.to_vec();
        Box::pin(async move {
            self.read(move |txn| alerts::overdue(txn, &limits, now_ms, limit))
                .await
        })
    }

    fn held_runs(&self, limit: usize) -> BoxFuture<'_, Result<Vec<RunRecord>, StoreError>> {
        Box::pin(async move {
            self.read(move |txn| {
                let Some(held) = read_table(txn, HELD)? else {
                    return Ok(Vec::new());
                };
                let mut ids = Vec::new();
                for entry in held.iter()?.take(limit) {
                    ids.push(entry?.0.value().to_owned());
                }
                read_runs(txn, ids)
            })
            .await
        })
    }

    fn queue_standing(
        &self,
        id: &RunId,
        rate_period: Option<std::time::Duration>,
    ) -> BoxFuture<'_, Result<Option<QueueStanding>, StoreError>> {
        let id = id.clone();
        Box::pin(async move {
            self.read(move |txn| {
                let Some(run) = read_runs(txn, vec![id.as_str().to_owned()])?.pop() else {
                    return Ok(None);
                };
                let Some(place) = &run.queue else {
                    return Ok(None);
                };
                let name = place.name.as_str();
                let count = |n: &mut u64, r: Result<(), redb::StorageError>| -> Result<(), Fault> {
                    r?;
                    *n += 1;
                    Ok(())
                };
                let mut standing = QueueStanding::default();
                if let (Some(queued), RunStatus::Queued) = (read_table(txn, QUEUED)?, run.status) {
                    let me = (
                        name,
                        i64::from(place.priority),
                        run.created_at_ms,
                        id.as_str(),
                    );
                    for e in queued.range((name, i64::MIN, 0u64, "")..me)? {
                        count(&mut standing.ahead, e.map(|_| ()))?;
                    }
                }
                if let Some(in_flight) = read_table(txn, IN_FLIGHT)? {
                    for e in in_flight.range((name, "", "")..(name, "\u{10FFFF}", ""))? {
                        let (k, _) = e?;
                        standing.in_flight += 1;
                        if Some(k.value().1) == place.concurrency_key.as_deref() {
                            standing.in_flight_with_key += 1;
                        }
                    }
                }
                if let (Some(starts), Some(period)) = (read_table(txn, STARTS)?, rate_period) {
                    let since = super::now_ms().saturating_sub(period.as_millis() as u64);
                    for e in starts.range((name, since, "")..=(name, u64::MAX, "\u{10FFFF}"))? {
                        count(&mut standing.recent_starts, e.map(|_| ()))?;
                    }
                }
                Ok(Some(standing))
            })
            .await
        })
    }

    fn create_run(&self, run: RunRecord) -> BoxFuture<'_, Result<CreateRun, StoreError>> {
        Box::pin(async move {
            let json = encode(format_args!("run {}", run.id), &run)?;
            let id = run.id.as_str().to_owned();
            let keys = RunKeys::of(&run);
            self.send(|reply| Request::CreateRun {
                id,
                keys,
                json,
                reply,
            })
            .await
        })
    }

    fn commit(&self, writes: Vec<Write>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let ops = writes
                .into_iter()
                .map(Op::encode)
                .collect::<Result<Vec<_>, _>>()?;
            self.send(|reply| Request::Commit {
                ops,
                reply: Some(reply),
            })
            .await
        })
    }

    fn commit_deferred(&self, writes: Vec<Write>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            if self.state.window().is_none() {
                return self.commit(writes).await;
            }
            if let Some(err) = self.broken_error() {
                return Err(err);
            }
            let ops = writes
                .into_iter()
                .map(Op::encode)
                .collect::<Result<Vec<_>, _>>()?;
            let requests = self.requests.as_ref().ok_or(StoreError::Closed)?;
            requests
                .send(Request::Commit { ops, reply: None })
                .map_err(|_| StoreError::Closed)
        })
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move { self.send(|reply| Request::Flush { reply }).await })
    }

    fn claim(
        &self,
        id: &RunId,
        request: ClaimRequest,
    ) -> BoxFuture<'_, Result<ClaimOutcome, StoreError>> {
        let id = id.as_str().to_owned();
        Box::pin(async move {
            self.send(|reply| Request::Claim {
                id,
                request,
                now_ms: super::now_ms(),
                reply,
            })
            .await
        })
    }

    fn run(&self, id: &RunId) -> BoxFuture<'_, Result<Option<RunRecord>, StoreError>> {
        let id = id.clone();
        Box::pin(async move {
            self.read(move |txn| {
                let Some(runs) = read_table(txn, RUNS)? else {
                    return Ok(None);
                };
                let bytes = runs.get(id.as_str())?.map(|v| v.value().to_vec());
                bytes
                    .map(|bytes| decode_run(id.as_str(), &bytes))
                    .transpose()
                    .map_err(Fault::Ready)
            })
            .await
        })
    }

    fn runs(&self, filter: &RunFilter) -> BoxFuture<'_, Result<Vec<RunRecord>, StoreError>> {
        let filter = filter.clone();
        Box::pin(async move {
            self.read(move |txn| {
                let Some(table) = read_table(txn, RUNS)? else {
                    return Ok(Vec::new());
                };
                let limit = filter.limit.unwrap_or(usize::MAX);
                let mut runs = Vec::new();
                let index = read_table(txn, RUNS_BY_CREATION)?;
                let index = match index {
                    Some(index) if index.len()? == table.len()? => index,
                    // Every write keeps the index whole; a count that differs means a record
                    // written around it (a damaged file, a hand edit): read them all instead
                    _ => {
                        tracing::debug!(
                            "the run index does not match the runs; listing by a full scan"
                        );
                        return list_by_scan(&table, &filter);
                    }
                };
                // Newest first: the index sorts by (creation time, run id)
                for entry in index.iter()?.rev() {
                    if runs.len() >= limit {
                        break;
                    }
                    let (key, _) = entry?;
                    let (created_at_ms, id) = key.value();
                    let Some(bytes) = table.get(id)? else {
                        continue;
                    };
                    let run = decode_run(id, bytes.value()).map_err(Fault::Ready)?;
                    if run.created_at_ms == created_at_ms && filter.matches(&run) {
                        runs.push(run);
                    }
                }
                Ok(runs)
            })
            .await
        })
    }

    fn steps(&self, id: &RunId) -> BoxFuture<'_, Result<Vec<StepRecord>, StoreError>> {
        let id = id.clone();
        Box::pin(async move {
            self.read(move |txn| {
                let Some(table) = read_table(txn, STEPS)? else {
                    return Ok(Vec::new());
                };
                let run = id.as_str();
                let mut steps = Vec::new();
                // Tuple keys sort by run id first, so one run's steps are contiguous from
                // (run, "") on; the scan stops at the first key of another run
                for entry in table.range((run, "")..)? {
                    let (key, bytes) = entry?;
                    let (key_run, step_key) = key.value();
                    if key_run != run {
                        break;
                    }
                    steps.push(decode_step(run, step_key, bytes.value()).map_err(Fault::Ready)?);
                }
                Ok(steps)
            })
            .await
        })
    }

    fn cancel_requests(&self, ids: &[RunId]) -> BoxFuture<'_, Result<Vec<RunId>, StoreError>> {
        let ids = ids.to_vec();
        Box::pin(async move {
            self.read(move |txn| {
                let Some(table) = read_table(txn, CANCELS)? else {
                    return Ok(Vec::new());
                };
                let mut requested = Vec::new();
                for id in ids {
                    if table.get(id.as_str())?.is_some() {
                        requested.push(id);
                    }
                }
                Ok(requested)
            })
            .await
        })
    }

    fn prune(&self, request: &PruneRequest) -> BoxFuture<'_, Result<Pruned, StoreError>> {
        let request = request.clone();
        Box::pin(async move {
            if request.dry_run {
                return self
                    .read(move |txn| {
                        let mut pruned = prune::count(txn, &request)?;
                        pruned.alerts = alerts::count_prunable(txn, &request)?;
                        Ok(pruned)
                    })
                    .await;
            }
            let db = self.writable.clone().ok_or(StoreError::Closed)?;
            let path = self.path.clone();
            let work = move || {
                let delete = || {
                    let mut pruned = prune::delete(&db, &request)?;
                    pruned.alerts = alerts::prune(&db, &request)?;
                    Ok(pruned)
                };
                delete().map_err(|fault: Fault| fault.at(&path))
            };
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => match runtime.spawn_blocking(work).await {
                    Ok(result) => result,
                    Err(err) if err.is_panic() => Err(StoreError::Backend(format!(
                        "the database engine panicked while pruning {}: {}",
                        self.path.display(),
                        panic_message(&*err.into_panic())
                    ))),
                    Err(_) => Err(StoreError::Closed),
                },
                Err(_) => work(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::store::{RunStatus, StepStatus};
    use serde_json::json;

    #[test]
    fn a_step_id_survives_its_storage_key_even_with_the_separator_in_the_key() {
        let id = StepId {
            name: "billing::charge".into(),
            key: "a\u{1f}b".into(),
            occurrence: 7,
        };
        assert_eq!(step_id_of(&id.storage_key()), Some(id));
        assert_eq!(step_id_of("no separator"), None);
    }

    fn run(id: &str, workflow: &str, status: RunStatus, created_at_ms: u64) -> RunRecord {
        RunRecord {
            id: RunId::from(id),
            workflow: workflow.into(),
            status,
            input: json!({ "n": 1 }),
            output: None,
            error: None,
            trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
            created_at_ms,
            updated_at_ms: created_at_ms,
            executions: 1,
            attention: None,
            owner: None,
            lease_expires_at_ms: None,
            queue: None,
            wake_at_ms: None,
            scheduled: None,
            app_version: None,
            traceparent: None,
        }
    }

    pub(super) fn step(run: &str, name: &str, key: &str, occurrence: u32) -> StepRecord {
        StepRecord {
            run_id: RunId::from(run),
            id: StepId {
                name: name.into(),
                key: key.into(),
                occurrence,
            },
            status: StepStatus::Succeeded,
            attempt: 1,
            next_attempt_at_ms: None,
            output: Some(json!(format!("{name}:{key}:{occurrence}"))),
            error: None,
            error_class: None,
            started_at_ms: 10,
            finished_at_ms: Some(11),
            args: None,
            failure: None,
        }
    }

    fn temp_store() -> (tempfile::TempDir, RedbStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path().join("flow.redb")).unwrap();
        (dir, store)
    }

    /// The writer inserts a batch's checkpoints in key order, not in the order they came: a
    /// step written twice in one batch still keeps its later value, and a delete still removes
    /// what an earlier commit of the batch wrote.
    #[tokio::test]
    async fn a_batch_in_key_order_keeps_the_order_of_writes_to_one_step() {
        let (dir, store) = temp_store();
        drop(store);
        let retried = |mut s: StepRecord| {
            s.attempt = 2;
            s
        };
        let commit = |ops: Vec<Op>| Request::Commit { ops, reply: None };
        let put = |s: &StepRecord| put_step(s).unwrap();
        let mut batch = vec![
            commit(vec![put(&step("run-b", "charge", "k", 0))]),
            commit(vec![put(&step("run-a", "charge", "k", 0))]),
            commit(vec![put(&retried(step("run-b", "charge", "k", 0)))]),
            commit(vec![put(&step("run-c", "charge", "k", 0))]),
            commit(vec![Op::DeleteStep {
                run: "run-c".into(),
                key: step("run-c", "charge", "k", 0).id.storage_key(),
            }]),
            commit(vec![put(&step("run-a", "charge", "k", 1))]),
        ];
        let db = Database::create(dir.path().join("flow.redb")).unwrap();
        assert!(apply(&db, &mut batch, true).is_ok());
        drop(db);
        let store = RedbStore::open(dir.path().join("flow.redb")).unwrap();
        let steps = |id: &str| store.steps(&RunId::from(id));
        assert_eq!(
            steps("run-a").await.unwrap(),
            [
                step("run-a", "charge", "k", 0),
                step("run-a", "charge", "k", 1)
            ]
        );
        assert_eq!(
            steps("run-b").await.unwrap(),
            [retried(step("run-b", "charge", "k", 0))]
        );
        assert_eq!(steps("run-c").await.unwrap(), []);
    }

    /// The sort must be stable: in a batch where 64 runs each write one step 40 times,
    /// interleaved, every run keeps the value written last. An unstable sort fails this.
    #[tokio::test]
    async fn a_large_batch_keeps_the_last_of_many_writes_to_each_step() {
        let (dir, store) = temp_store();
        drop(store);
        let runs: Vec<String> = (0..64).map(|r| format!("run-{r:02}")).collect();
        let mut batch = Vec::new();
        for attempt in 1..=40 {
            // Runs in a different order each round, so the batch is far from key order
            for r in 0..runs.len() {
                let run = &runs[(r * 37 + attempt as usize) % runs.len()];
                let mut written = step(run, "charge", "k", 0);
                written.attempt = attempt;
                batch.push(Request::Commit {
                    ops: vec![put_step(&written).unwrap()],
                    reply: None,
                });
            }
        }
        let db = Database::create(dir.path().join("flow.redb")).unwrap();
        assert!(apply(&db, &mut batch, true).is_ok());
        drop(db);
        let store = RedbStore::open(dir.path().join("flow.redb")).unwrap();
        for run in &runs {
            let stored = store.steps(&RunId::from(run.as_str())).await.unwrap();
            let attempts: Vec<u32> = stored.iter().map(|s| s.attempt).collect();
            assert_eq!(attempts, [40], "{run}");
        }
    }

    #[tokio::test]
    async fn a_fresh_store_reads_as_empty() {
        let (_dir, store) = temp_store();
        assert!(store.run(&RunId::from("x")).await.unwrap().is_none());
        assert!(store.runs(&RunFilter::default()).await.unwrap().is_empty());
        assert!(store.steps(&RunId::from("x")).await.unwrap().is_empty());
        let ids = [RunId::from("x")];
        assert!(store.cancel_requests(&ids).await.unwrap().is_empty());
        assert_eq!(store.stats(), StoreStats::default());
    }

    #[tokio::test]
    async fn runs_and_steps_round_trip() {
        let (_dir, store) = temp_store();
        let a = run("a", "billing", RunStatus::Running, 1);
        let b = run("b", "billing", RunStatus::Running, 2);
        assert!(matches!(
            store.create_run(a.clone()).await.unwrap(),
            CreateRun::Created(_)
        ));
        let steps_a = vec![
            step("a", "charge", "k1", 0),
            step("a", "charge", "k1", 1),
            step("a", "email", "k2", 0),
        ];
        let mut writes: Vec<Write> = steps_a.iter().cloned().map(Write::PutStep).collect();
        writes.push(Write::PutRun(b.clone()));
        writes.push(Write::PutStep(step("b", "charge", "k1", 0)));
        store.commit(writes).await.unwrap();

        assert_eq!(store.run(&a.id).await.unwrap(), Some(a.clone()));
        assert_eq!(store.run(&b.id).await.unwrap(), Some(b.clone()));
        assert_eq!(store.steps(&a.id).await.unwrap(), steps_a);
        assert_eq!(store.steps(&b.id).await.unwrap().len(), 1);

        // Upsert replaces, delete removes only the named step
        let mut done = a.clone();
        done.status = RunStatus::Succeeded;
        done.output = Some(json!("ok"));
        store
            .commit(vec![
                Write::PutRun(done.clone()),
                Write::DeleteStep(a.id.clone(), steps_a[1].id.clone()),
            ])
            .await
            .unwrap();
        assert_eq!(store.run(&a.id).await.unwrap(), Some(done));
        assert_eq!(
            store.steps(&a.id).await.unwrap(),
            vec![steps_a[0].clone(), steps_a[2].clone()]
        );
        assert_eq!(
            store.stats(),
            StoreStats {
                commits: 3,
                deferred_commits: 0,
                writes: 3
            }
        );
    }

    #[tokio::test]
    async fn create_run_twice_returns_the_stored_run() {
        let (_dir, store) = temp_store();
        let first = run("same", "billing", RunStatus::Running, 1);
        store.create_run(first.clone()).await.unwrap();
        let second = run("same", "other", RunStatus::Queued, 99);
        match store.create_run(second).await.unwrap() {
            CreateRun::Exists(stored) => assert_eq!(stored, first),
            CreateRun::Created(_) => panic!("the second create_run overwrote the first"),
        }
        assert_eq!(store.run(&first.id).await.unwrap(), Some(first));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_creates_of_one_id_create_it_once() {
        let (_dir, store) = temp_store();
        let store = Arc::new(store);
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .create_run(run("dup", &format!("w{i}"), RunStatus::Running, i))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut created = Vec::new();
        let mut existing = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                CreateRun::Created(_) => created.push(()),
                CreateRun::Exists(run) => existing.push(run),
            }
        }
        assert_eq!(created.len(), 1);
        let stored = store.run(&RunId::from("dup")).await.unwrap().unwrap();
        assert!(existing.iter().all(|run| *run == stored));
    }

    #[tokio::test]
    async fn runs_are_filtered_limited_and_newest_first() {
        let (_dir, store) = temp_store();
        let records = [
            run("r1", "billing", RunStatus::Succeeded, 10),
            run("r2", "billing", RunStatus::Failed, 30),
            run("r3", "emails", RunStatus::Failed, 20),
            run("r4", "billing", RunStatus::Failed, 30),
            run("r5", "billing", RunStatus::Failed, 5),
        ];
        store
            .commit(records.iter().cloned().map(Write::PutRun).collect())
            .await
            .unwrap();
        let ids = |runs: Vec<RunRecord>| {
            runs.into_iter()
                .map(|r| r.id.as_str().to_owned())
                .collect::<Vec<_>>()
        };

        let all = store.runs(&RunFilter::default()).await.unwrap();
        assert_eq!(ids(all), ["r4", "r2", "r3", "r1", "r5"]);

        let failed_billing = RunFilter {
            status: Some(RunStatus::Failed),
            workflow: Some("billing".into()),
            limit: None,
        };
        assert_eq!(
            ids(store.runs(&failed_billing).await.unwrap()),
            ["r4", "r2", "r5"]
        );

        let newest_two = RunFilter {
            limit: Some(2),
            ..failed_billing
        };
        assert_eq!(ids(store.runs(&newest_two).await.unwrap()), ["r4", "r2"]);

        let emails = RunFilter {
            workflow: Some("emails".into()),
            ..RunFilter::default()
        };
        assert_eq!(ids(store.runs(&emails).await.unwrap()), ["r3"]);
    }

    #[tokio::test]
    async fn cancel_requests_are_set_and_cleared() {
        let (_dir, store) = temp_store();
        let (a, b, c) = (RunId::from("a"), RunId::from("b"), RunId::from("c"));
        store
            .commit(vec![
                Write::RequestCancel(a.clone()),
                Write::RequestCancel(b.clone()),
            ])
            .await
            .unwrap();
        let asked = [a.clone(), b.clone(), c.clone()];
        assert_eq!(
            store.cancel_requests(&asked).await.unwrap(),
            vec![a.clone(), b.clone()]
        );
        store
            .commit(vec![Write::ClearCancel(a.clone())])
            .await
            .unwrap();
        assert_eq!(store.cancel_requests(&asked).await.unwrap(), vec![b]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_commits_share_durable_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flow.redb");
        let store = Arc::new(RedbStore::open(&path).unwrap());
        let tasks: Vec<_> = (0..200u64)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let id = format!("run-{i:03}");
                    store
                        .commit(vec![
                            Write::PutRun(run(&id, "load", RunStatus::Running, i)),
                            Write::PutStep(step(&id, "only", "k", 0)),
                        ])
                        .await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let stats = store.stats();
        assert_eq!(stats.writes, 200);
        assert!(
            stats.commits < stats.writes,
            "200 concurrent commits took {} durable commits: no batching",
            stats.commits
        );
        drop(store);

        let reopened = RedbStore::open(&path).unwrap();
        let runs = reopened.runs(&RunFilter::default()).await.unwrap();
        assert_eq!(runs.len(), 200);
        for i in 0..200u64 {
            let id = RunId::from(format!("run-{i:03}"));
            assert_eq!(reopened.steps(&id).await.unwrap().len(), 1, "{id}");
        }
    }

    #[tokio::test]
    async fn data_survives_drop_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flow.redb");
        let a = run("a", "billing", RunStatus::Sleeping, 1);
        let s = step("a", "charge", "k", 0);
        {
            let store = RedbStore::open(&path).unwrap();
            store.create_run(a.clone()).await.unwrap();
            store
                .commit(vec![
                    Write::PutStep(s.clone()),
                    Write::RequestCancel(a.id.clone()),
                ])
                .await
                .unwrap();
        }
        let store = RedbStore::open_existing(&path).unwrap();
        assert_eq!(store.path(), path);
        assert_eq!(store.run(&a.id).await.unwrap(), Some(a.clone()));
        assert_eq!(store.steps(&a.id).await.unwrap(), vec![s]);
        assert_eq!(
            store
                .cancel_requests(std::slice::from_ref(&a.id))
                .await
                .unwrap(),
            vec![a.id]
        );
    }

    #[tokio::test]
    async fn a_damaged_record_fails_only_the_requests_that_read_it() {
        let (_dir, store) = temp_store();
        // A second handle in this process is allowed in multi-writer mode (see the module docs)
        let mut builder = Builder::new();
        builder.set_concurrency_mode(ConcurrencyMode::MultiWriter);
        let raw = builder.open(store.path()).unwrap();
        let txn = raw.begin_write().unwrap();
        txn.open_table(RUNS)
            .unwrap()
            .insert("bad", b"{not json".as_slice())
            .unwrap();
        txn.commit().unwrap();

        let (bad, good) = tokio::join!(
            store.create_run(run("bad", "w", RunStatus::Running, 1)),
            store.create_run(run("good", "w", RunStatus::Running, 2)),
        );
        let err = bad.unwrap_err();
        assert!(matches!(err, StoreError::Encoding(_)), "{err:?}");
        assert!(err.to_string().contains("run bad"), "{err}");
        assert!(matches!(good.unwrap(), CreateRun::Created(_)));
        let err = store.runs(&RunFilter::default()).await.unwrap_err();
        assert!(err.to_string().contains("run bad"), "{err}");
    }

    #[test]
    fn open_needs_an_existing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("flow.redb");
        let err = RedbStore::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("does not exist; create it"), "{message}");
        assert!(!path.parent().unwrap().exists());
    }

    #[test]
    fn io_errors_map_to_disk_full_corrupt_or_io() {
        let path = Path::new("/data/flow.redb");
        let full = io_error(path, io::Error::from_raw_os_error(28));
        assert!(matches!(full, StoreError::DiskFull { .. }), "{full:?}");
        assert!(full.to_string().contains("free some space"), "{full}");
        let eof = io_error(path, io::Error::from(io::ErrorKind::UnexpectedEof));
        assert!(matches!(eof, StoreError::Corrupt { .. }), "{eof:?}");
        let denied = io_error(path, io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(matches!(denied, StoreError::Io { .. }), "{denied:?}");
        // Every waiter of a failed batch gets an equal error
        let copy = replicate(&denied);
        assert_eq!(copy.to_string(), denied.to_string());
        assert!(
            matches!(&copy, StoreError::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied)
        );
        let locked = engine_error(path.to_path_buf(), redb::Error::DatabaseAlreadyOpen);
        assert!(matches!(locked, StoreError::Locked { .. }), "{locked:?}");
    }
}

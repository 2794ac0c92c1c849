//! The PostgreSQL store: runs and checkpoints in one schema of a PostgreSQL database, shared by
//! every worker and operator command on every machine.
//!
//! This module owns the connection (a pool, [`PgOptions`]), the schema and its migrations
//! (applied at open under an advisory lock, with a version check like redb's), the mapping of
//! records to rows, and the reads. The group-commit writer lives in `writer`, claims, queue
//! takes, schedules and prunes in `claims`. Like the redb store it must not interpret records
//! beyond the columns it indexes (status, workflow, queue, priority, timers, owner), and it must
//! never write into a schema it has not recognised as a flow store.
//!
//! Records are stored as `json` (the text serde_json wrote, kept as it is: unlike `jsonb` it
//! accepts every string serde_json produces, `\u0000` included, and costs no conversion),
//! beside the columns that the store's queries filter and sort on. Key columns use the `C`
//! collation, so ids and step keys sort by bytes, as on redb.

mod alerts;
mod claims;
mod listen;
mod tls;
mod writer;

use super::{
    BoxFuture, ClaimOutcome, ClaimRequest, CreateRun, PruneRequest, Pruned, QueueStanding,
    QueueTake, RunFilter, RunId, RunRecord, RunStatus, StepId, StepRecord, Store, StoreError,
    StoreStats, Taken, Write,
};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The schema version this build writes and reads in PostgreSQL (its own sequence, apart from
/// redb's [`super::SCHEMA_VERSION`]). Migration `n` (1-based) of `MIGRATIONS` brings a schema
/// from version `n - 1` to `n`.
pub const PG_SCHEMA_VERSION: u32 = 1;

/// The migrations, in order; each runs in the transaction that records its version.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema
    r#"
    CREATE TABLE runs (
        id text COLLATE "C" PRIMARY KEY,
        workflow text COLLATE "C" NOT NULL,
        status text NOT NULL,
        created_at bigint NOT NULL,
        updated_at bigint NOT NULL,
        queue text COLLATE "C",
        priority integer NOT NULL DEFAULT 0,
        concurrency_key text COLLATE "C",
        -- waiting in its queue for a worker (queued, not delayed)
        queued boolean NOT NULL,
        -- waiting for a time with no process holding it
        timer_at bigint,
        -- started and not finished, counted against its queue's limits
        in_flight boolean NOT NULL,
        -- running or sleeping with an owner
        held boolean NOT NULL,
        lease_until bigint,
        -- the fencing token of the run's latest claim; NULL before the first claim
        token bigint,
        record json NOT NULL
    );
    CREATE INDEX runs_by_creation ON runs (created_at DESC, id DESC);
    CREATE INDEX runs_queued ON runs (queue, priority, created_at, id) WHERE queued;
    CREATE INDEX runs_timers ON runs (timer_at, id) WHERE timer_at IS NOT NULL;
    CREATE INDEX runs_in_flight ON runs (queue, concurrency_key) WHERE in_flight;
    CREATE INDEX runs_held ON runs (id) WHERE held;
    -- the runs a max-duration watch looks at (queued, waiting for a time, or held), by
    -- workflow and age: the same runs the redb store finds through its three indexes
    CREATE INDEX runs_watched ON runs (workflow, created_at, id)
        WHERE queued OR timer_at IS NOT NULL OR held;
    CREATE TABLE steps (
        run_id text COLLATE "C" NOT NULL,
        step_key text COLLATE "C" NOT NULL,
        record json NOT NULL,
        PRIMARY KEY (run_id, step_key)
    );
    CREATE TABLE cancels (run_id text COLLATE "C" PRIMARY KEY, requested_at bigint NOT NULL);
    CREATE TABLE starts (
        queue text COLLATE "C" NOT NULL,
        started_at bigint NOT NULL,
        run_id text COLLATE "C" NOT NULL,
        PRIMARY KEY (queue, started_at, run_id)
    );
    CREATE TABLE alerts (
        id text COLLATE "C" PRIMARY KEY,
        workflow text COLLATE "C" NOT NULL,
        next_due bigint,
        record json NOT NULL
    );
    CREATE INDEX alerts_pending ON alerts (id) WHERE next_due IS NOT NULL;
    -- (run, alert kind) -> the alert of that kind opened for the run: what makes a
    -- max-duration or error-budget alert open once per run, whichever process sees it first
    CREATE TABLE alerts_by_run (
        run_id text COLLATE "C" NOT NULL,
        kind text NOT NULL,
        alert_id text COLLATE "C" NOT NULL,
        PRIMARY KEY (run_id, kind)
    );
    CREATE TABLE alert_streaks (workflow text COLLATE "C" PRIMARY KEY, record json NOT NULL);
    CREATE TABLE schedules (name text COLLATE "C" PRIMARY KEY, record json NOT NULL);
    "#,
];

const FORMAT: &str = "flow";

/// How long a session may sit in a transaction between two statements before the server ends
/// it (`idle_in_transaction_session_timeout`): a frozen process then releases its locks.
const IDLE_IN_TRANSACTION: std::time::Duration = std::time::Duration::from_secs(5);

/// How to open a [`PgStore`].
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// The schema holding flow's tables (created if missing). Several flow stores can share one
    /// database, each in its own schema. A name of ASCII letters, digits and `_`, not starting
    /// with a digit, at most 63 characters. Default `flow`.
    pub schema: String,
    /// Connections in the pool, the group-commit writer's included. Default 16.
    pub pool_size: usize,
    /// The password, if the URL has none (a `flow::Secret` setting): kept out of the URL so
    /// that the URL can be printed. Default `None`.
    pub password: Option<String>,
    /// The CA certificates (PEM) that sign the server's certificate, for `sslmode=verify-ca`,
    /// `verify-full` or `require` in the URL; without it those trust the Mozilla roots bundled
    /// in `webpki-roots`. Default `None`.
    pub ca_file: Option<PathBuf>,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            schema: "flow".into(),
            pool_size: 16,
            password: None,
            ca_file: None,
        }
    }
}

/// The PostgreSQL store: a connection pool, one writer task that group-commits the checkpoints
/// of every run in flight in this process (one transaction and two round trips per batch),
/// claims with `SELECT ... FOR UPDATE` and queue takes with `FOR UPDATE SKIP LOCKED`, so any
/// number of processes on any number of machines can share it.
///
/// ```no_run
/// # async fn demo() -> Result<(), flow_runtime::store::StoreError> {
/// use flow_runtime::store::{PgStore, RunFilter, Store};
/// let store = PgStore::connect("postgres://postgres@127.0.0.1:5432/test").await?;
/// for run in store.runs(&RunFilter::default()).await? {
///     println!("{} {} {}", run.id, run.workflow, run.status);
/// }
/// # Ok(()) }
/// ```
pub struct PgStore {
    inner: Arc<Shared>,
    /// Closing it stops the writer (after it answered what was sent).
    requests: mpsc::UnboundedSender<writer::Request>,
    /// The `LISTEN` connection's task, started by the first [`Store::work_signal`]; stopped
    /// with the store.
    listener: std::sync::Mutex<Option<(Arc<tokio::sync::Notify>, tokio::task::JoinHandle<()>)>>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        let listener = self.listener.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, task)) = listener.as_ref() {
            task.abort();
        }
    }
}

/// What the handle and the writer task share.
struct Shared {
    pool: Pool,
    /// The connections' settings and TLS, for the `LISTEN` connection.
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    /// `host:port/database schema=name`, without the password: for messages.
    target: String,
    schema: String,
    stats: Counters,
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    deferred_commits: AtomicU64,
    writes: AtomicU64,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.inner.target)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`, or
    /// key=value pairs) and opens the store in the schema `flow`, creating or upgrading it.
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        PgStore::connect_with(url, PgOptions::default()).await
    }

    /// [`PgStore::connect`] with a schema and a pool size.
    ///
    /// Fails with [`StoreError::Unavailable`] if the server cannot be reached,
    /// [`StoreError::Foreign`] if the schema holds tables flow did not create, and
    /// [`StoreError::NewerVersion`] if a newer flow wrote it.
    pub async fn connect_with(url: &str, options: PgOptions) -> Result<PgStore, StoreError> {
        check_schema_name(&options.schema)?;
        let (url, ssl_mode) = tls::take_sslmode(url)?;
        let mut config: tokio_postgres::Config = url.parse().map_err(|err| {
            StoreError::Backend(format!(
                "the PostgreSQL URL is invalid ({err}); expected postgres://user:password@host:port/database"
            ))
        })?;
        if let Some(password) = &options.password {
            config.password(password.as_bytes());
        }
        config.ssl_mode(ssl_mode.driver());
        let tls = tls::connector(ssl_mode, options.ca_file.as_deref())?;
        let target = format!("{} schema={}", describe(&config), options.schema);
        // Every statement names tables unqualified: the schema is the connection's search path.
        // A process frozen (SIGSTOP, a VM paused) inside a transaction would hold its row locks
        // for as long as its connection lives, and every claim of those runs elsewhere would
        // wait; the server ends such a session after a while, which releases them (flow's own
        // transactions never wait that long between two statements).
        config.options(format!(
            "-c search_path={} -c idle_in_transaction_session_timeout={}",
            options.schema,
            IDLE_IN_TRANSACTION.as_millis()
        ));
        // `flow:<program>` in pg_stat_activity, unless the URL names the application
        if config.get_application_name().is_none() {
            config.application_name(application_name());
        }
        migrate(&config, &tls, &options.schema, &target).await?;
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(2))
            .build()
            .map_err(|err| StoreError::Backend(format!("the connection pool: {err}")))?;
        let inner = Arc::new(Shared {
            pool,
            config,
            tls,
            target,
            schema: options.schema,
            stats: Counters::default(),
        });
        let (requests, inbox) = mpsc::unbounded_channel();
        tokio::spawn(writer::run(inner.clone(), inbox));
        Ok(PgStore {
            inner,
            requests,
            listener: std::sync::Mutex::new(None),
        })
    }

    /// The server, database and schema, without the password.
    pub fn target(&self) -> &str {
        &self.inner.target
    }

    /// Durable commits done and write requests applied since the store was opened.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            commits: self.inner.stats.commits.load(Ordering::Relaxed),
            deferred_commits: self.inner.stats.deferred_commits.load(Ordering::Relaxed),
            writes: self.inner.stats.writes.load(Ordering::Relaxed),
        }
    }

    /// Sends a commit to the writer: `durable`, or deferred (a batch of deferred commits only
    /// does not wait for the server's disk).
    async fn commit_ops(&self, writes: Vec<Write>, durable: bool) -> Result<(), StoreError> {
        let ops = writes
            .into_iter()
            .map(writer::Op::encode)
            .collect::<Result<Vec<_>, _>>()?;
        self.send(|reply| writer::Request::Commit {
            ops,
            durable,
            reply,
        })
        .await
    }

    async fn send<T>(
        &self,
        make: impl FnOnce(tokio::sync::oneshot::Sender<Result<T, StoreError>>) -> writer::Request,
    ) -> Result<T, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.requests
            .send(make(reply))
            .map_err(|_| StoreError::Closed)?;
        answer.await.unwrap_or(Err(StoreError::Closed))
    }
}

impl Shared {
    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|err| self.pool_error(err))
    }

    fn pool_error(&self, err: deadpool_postgres::PoolError) -> StoreError {
        use deadpool_postgres::PoolError as P;
        match err {
            P::Backend(err) => self.error(err),
            P::Timeout(_) | P::Closed | P::NoRuntimeSpecified => StoreError::Unavailable {
                target: self.target.clone(),
                detail: err.to_string(),
            },
            P::PostCreateHook(err) => StoreError::Backend(err.to_string()),
        }
    }

    fn error(&self, err: tokio_postgres::Error) -> StoreError {
        pg_error(&self.target, err)
    }
}

/// Whether a driver error is the connection's: it failed, closed, timed out or the server
/// ended the session (SQL states 08*, 57P01-03, 53300, or no state at all).
fn is_unavailable(err: &tokio_postgres::Error) -> bool {
    match err.code() {
        None => true,
        Some(code) => {
            code.code().starts_with("08")
                || [
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                    SqlState::TOO_MANY_CONNECTIONS,
                ]
                .contains(code)
        }
    }
}

/// What a driver error means for flow: a lost or refused connection is
/// [`StoreError::Unavailable`] (retry later), a TLS setup the server or its certificate does
/// not fit a configuration error ([`StoreError::Backend`], naming the fix), anything else
/// [`StoreError::Backend`].
fn pg_error(target: &str, err: tokio_postgres::Error) -> StoreError {
    if let Some(problem) = tls::explain(&err) {
        return StoreError::Backend(format!("PostgreSQL {target}: {problem}"));
    }
    let detail = match err.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => err.to_string(),
    };
    if is_unavailable(&err) {
        StoreError::Unavailable {
            target: target.to_owned(),
            detail,
        }
    } else {
        StoreError::Backend(format!("PostgreSQL {target}: {detail}"))
    }
}

/// Whether the error says the transaction lost a race it may simply run again.
fn is_conflict(err: &tokio_postgres::Error) -> bool {
    matches!(
        err.code(),
        Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
    )
}

/// `flow:` and the program's file name, at most 63 bytes (what PostgreSQL keeps).
fn application_name() -> String {
    let program = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let mut name = format!("flow:{program}");
    while name.len() > 63 {
        name.pop();
    }
    name
}

fn describe(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        #[cfg(unix)]
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("postgres://{host}:{port}/{db}")
}

fn check_schema_name(name: &str) -> Result<(), StoreError> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if valid {
        Ok(())
    } else {
        Err(StoreError::Backend(format!(
            "invalid PostgreSQL schema name {name:?}: use 1 to 63 ASCII letters, digits and `_`, not starting with a digit"
        )))
    }
}

/// A 64-bit key for PostgreSQL's advisory locks, from a name (FNV-1a: stable across builds).
fn lock_key(parts: &[&str]) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain([0u8]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash as i64
}

/// Creates the schema or checks and upgrades it, under a session advisory lock so that
/// processes starting together apply each migration once.
async fn migrate(
    config: &tokio_postgres::Config,
    tls: &MakeRustlsConnect,
    schema: &str,
    target: &str,
) -> Result<(), StoreError> {
    let err = |e| pg_error(target, e);
    let (mut client, connection) = config.connect(tls.clone()).await.map_err(err)?;
    let connection = tokio::spawn(connection);
    let key = lock_key(&["flow.migrate", schema]);
    client
        .execute("SELECT pg_advisory_lock($1)", &[&key])
        .await
        .map_err(err)?;
    let result = migrate_locked(&mut client, schema, target).await;
    // Closing the session releases the lock even if the unlock is never sent
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&key])
        .await;
    drop(client);
    let _ = connection.await;
    result
}

async fn migrate_locked(
    client: &mut tokio_postgres::Client,
    schema: &str,
    target: &str,
) -> Result<(), StoreError> {
    let err = |e| pg_error(target, e);
    let path = || PathBuf::from(target);
    client
        .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
        .await
        .map_err(err)?;
    let tables: Vec<String> = client
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1",
            &[&schema],
        )
        .await
        .map_err(err)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let found = if tables.iter().any(|t| t == "meta") {
        let rows = client
            .query("SELECT key, value FROM meta", &[])
            .await
            .map_err(err)?;
        let get = |k: &str| {
            rows.iter()
                .find(|r| r.get::<_, String>(0) == k)
                .map(|r| r.get::<_, String>(1))
        };
        if get("format").as_deref() != Some(FORMAT) {
            return Err(StoreError::Foreign {
                path: path(),
                detail: "its `meta` table does not name the format `flow`".into(),
            });
        }
        let version = get("schema_version");
        match version.as_deref().map(str::parse::<u32>) {
            Some(Ok(v)) => v,
            _ => {
                return Err(StoreError::Corrupt {
                    path: path(),
                    detail: format!("its schema version {version:?} is not a number"),
                })
            }
        }
    } else if !tables.is_empty() {
        return Err(StoreError::Foreign {
            path: path(),
            detail: format!(
                "the schema holds the tables {} and no flow metadata; choose another schema",
                tables
                    .iter()
                    .map(|t| format!("`{t}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    } else {
        0
    };
    if found > PG_SCHEMA_VERSION {
        return Err(StoreError::NewerVersion {
            path: path(),
            found,
            supported: PG_SCHEMA_VERSION,
        });
    }
    for version in found + 1..=PG_SCHEMA_VERSION {
        let txn = client.transaction().await.map_err(err)?;
        if version == 1 {
            txn.batch_execute("CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL)")
                .await
                .map_err(err)?;
        }
        txn.batch_execute(MIGRATIONS[version as usize - 1])
            .await
            .map_err(err)?;
        txn.execute(
            "INSERT INTO meta (key, value) VALUES ('format', $1), ('schema_version', $2), ('flow_version', $3)
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            &[&FORMAT, &version.to_string(), &env!("CARGO_PKG_VERSION")],
        )
        .await
        .map_err(err)?;
        txn.commit().await.map_err(err)?;
        tracing::info!(%target, version, "applied a schema migration");
    }
    Ok(())
}

// ---- rows ----

/// A run record as a row: the indexed columns and the JSON. Built before the record reaches
/// the writer, so a record that cannot be stored fails only its caller.
#[derive(Clone, Debug)]
struct RunRow {
    id: String,
    workflow: String,
    status: &'static str,
    created_at: i64,
    updated_at: i64,
    queue: Option<String>,
    priority: i32,
    concurrency_key: Option<String>,
    queued: bool,
    timer_at: Option<i64>,
    in_flight: bool,
    held: bool,
    lease_until: Option<i64>,
    json: String,
}

fn ms(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// PostgreSQL text cannot hold NUL: refuse it in the request rather than fail a whole batch.
fn check_text(what: &dyn std::fmt::Display, text: &str) -> Result<(), StoreError> {
    if text.contains('\0') {
        return Err(StoreError::Encoding(format!(
            "{what} contains a NUL character, which PostgreSQL text cannot hold"
        )));
    }
    Ok(())
}

impl RunRow {
    fn of(run: &RunRecord) -> Result<RunRow, StoreError> {
        let what = format_args!("run {}", run.id).to_string();
        let json = serde_json::to_string(run)
            .map_err(|err| StoreError::Encoding(format!("{what} could not be encoded: {err}")))?;
        check_text(&what, run.id.as_str())?;
        check_text(&what, &run.workflow)?;
        let queue = run.queue.as_ref();
        if let Some(q) = queue {
            check_text(&what, &q.name)?;
            check_text(&what, q.concurrency_key.as_deref().unwrap_or(""))?;
        }
        let executing = matches!(run.status, RunStatus::Running | RunStatus::Sleeping);
        let owned = run.owner.is_some();
        // The same rules as the redb store's indexes (`RunKeys`)
        Ok(RunRow {
            id: run.id.as_str().to_owned(),
            workflow: run.workflow.clone(),
            status: run.status.as_str(),
            created_at: ms(run.created_at_ms),
            updated_at: ms(run.updated_at_ms),
            queue: queue.map(|q| q.name.clone()),
            priority: queue.map_or(0, |q| q.priority),
            concurrency_key: queue.and_then(|q| q.concurrency_key.clone()),
            queued: queue.is_some() && run.status == RunStatus::Queued && run.wake_at_ms.is_none(),
            timer_at: run
                .wake_at_ms
                .filter(|_| !owned && !run.status.is_finished())
                .map(ms),
            in_flight: queue.is_some() && executing,
            held: executing && owned,
            lease_until: run.lease_expires_at_ms.map(ms),
            json,
        })
    }
}

/// Inserts or replaces runs in one statement (their tokens are kept). At most one row per id.
const PUT_RUNS: &str = r#"
INSERT INTO runs (id, workflow, status, created_at, updated_at, queue, priority, concurrency_key,
                  queued, timer_at, in_flight, held, lease_until, record)
SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::text[],
                     $7::int4[], $8::text[], $9::bool[], $10::int8[], $11::bool[], $12::bool[],
                     $13::int8[], $14::text[]::json[])
ON CONFLICT (id) DO UPDATE SET
    workflow = EXCLUDED.workflow, status = EXCLUDED.status, created_at = EXCLUDED.created_at,
    updated_at = EXCLUDED.updated_at, queue = EXCLUDED.queue, priority = EXCLUDED.priority,
    concurrency_key = EXCLUDED.concurrency_key, queued = EXCLUDED.queued,
    timer_at = EXCLUDED.timer_at, in_flight = EXCLUDED.in_flight, held = EXCLUDED.held,
    lease_until = EXCLUDED.lease_until, record = EXCLUDED.record
"#;

/// The columns of [`PUT_RUNS`], one vector per parameter.
#[derive(Default)]
struct RunColumns {
    id: Vec<String>,
    workflow: Vec<String>,
    status: Vec<&'static str>,
    created_at: Vec<i64>,
    updated_at: Vec<i64>,
    queue: Vec<Option<String>>,
    priority: Vec<i32>,
    concurrency_key: Vec<Option<String>>,
    queued: Vec<bool>,
    timer_at: Vec<Option<i64>>,
    in_flight: Vec<bool>,
    held: Vec<bool>,
    lease_until: Vec<Option<i64>>,
    json: Vec<String>,
}

impl RunColumns {
    fn of<'a>(rows: impl IntoIterator<Item = &'a RunRow>) -> RunColumns {
        let mut c = RunColumns::default();
        for r in rows {
            c.id.push(r.id.clone());
            c.workflow.push(r.workflow.clone());
            c.status.push(r.status);
            c.created_at.push(r.created_at);
            c.updated_at.push(r.updated_at);
            c.queue.push(r.queue.clone());
            c.priority.push(r.priority);
            c.concurrency_key.push(r.concurrency_key.clone());
            c.queued.push(r.queued);
            c.timer_at.push(r.timer_at);
            c.in_flight.push(r.in_flight);
            c.held.push(r.held);
            c.lease_until.push(r.lease_until);
            c.json.push(r.json.clone());
        }
        c
    }

    fn is_empty(&self) -> bool {
        self.id.is_empty()
    }

    fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 14] {
        [
            &self.id,
            &self.workflow,
            &self.status,
            &self.created_at,
            &self.updated_at,
            &self.queue,
            &self.priority,
            &self.concurrency_key,
            &self.queued,
            &self.timer_at,
            &self.in_flight,
            &self.held,
            &self.lease_until,
            &self.json,
        ]
    }
}

fn decode_run(id: &str, json: &str) -> Result<RunRecord, StoreError> {
    serde_json::from_str(json)
        .map_err(|err| StoreError::Encoding(format!("run {id} could not be decoded: {err}")))
}

fn decode_step(run: &str, key: &str, json: &str) -> Result<StepRecord, StoreError> {
    serde_json::from_str(json).map_err(|err| {
        StoreError::Encoding(format!(
            "step {} of run {run} could not be decoded: {err}",
            key.replace('\u{1f}', "/")
        ))
    })
}

/// The runs of `rows` (columns id, record as text), decoded; rows that do not decode are left
/// out with a warning, as the redb store's index reads do.
fn runs_of(rows: &[tokio_postgres::Row]) -> Vec<RunRecord> {
    rows.iter()
        .filter_map(|row| {
            let id: &str = row.get(0);
            match decode_run(id, row.get(1)) {
                Ok(run) => Some(run),
                Err(err) => {
                    tracing::warn!(error = %err, "a stored run could not be decoded; it is left out");
                    None
                }
            }
        })
        .collect()
}

fn step_key(id: &StepId) -> String {
    id.storage_key()
}

impl Store for PgStore {
    fn create_run(&self, run: RunRecord) -> BoxFuture<'_, Result<CreateRun, StoreError>> {
        Box::pin(async move {
            let row = RunRow::of(&run)?;
            self.send(|reply| writer::Request::CreateRun { row, reply })
                .await
        })
    }

    fn claim(
        &self,
        id: &RunId,
        request: ClaimRequest,
    ) -> BoxFuture<'_, Result<ClaimOutcome, StoreError>> {
        let id = id.clone();
        Box::pin(async move { claims::claim(&self.inner, &id, request).await })
    }

    fn commit(&self, writes: Vec<Write>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move { self.commit_ops(writes, true).await })
    }

    fn commit_deferred(&self, writes: Vec<Write>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move { self.commit_ops(writes, false).await })
    }

    fn run(&self, id: &RunId) -> BoxFuture<'_, Result<Option<RunRecord>, StoreError>> {
        let id = id.clone();
        Box::pin(async move {
            let client = self.inner.client().await?;
            let stmt = client
                .prepare_cached("SELECT record::text FROM runs WHERE id = $1")
                .await
                .map_err(|e| self.inner.error(e))?;
            let row = client
                .query_opt(&stmt, &[&id.as_str()])
                .await
                .map_err(|e| self.inner.error(e))?;
            row.map(|row| decode_run(id.as_str(), row.get(0)))
                .transpose()
        })
    }

    fn runs(&self, filter: &RunFilter) -> BoxFuture<'_, Result<Vec<RunRecord>, StoreError>> {
        let filter = filter.clone();
        Box::pin(async move {
            let client = self.inner.client().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT id, record::text FROM runs
                     WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR workflow = $2)
                     ORDER BY created_at DESC, id DESC LIMIT $3",
                )
                .await
                .map_err(|e| self.inner.error(e))?;
            let status = filter.status.map(RunStatus::as_str);
            let limit = filter.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
            let rows = client
                .query(&stmt, &[&status, &filter.workflow, &limit])
                .await
                .map_err(|e| self.inner.error(e))?;
            rows.iter()
                .map(|row| decode_run(row.get(0), row.get(1)))
                .collect()
        })
    }

    fn steps(&self, id: &RunId) -> BoxFuture<'_, Result<Vec<StepRecord>, StoreError>> {
        let id = id.clone();
        Box::pin(async move {
            let client = self.inner.client().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT step_key, record::text FROM steps WHERE run_id = $1 ORDER BY step_key",
                )
                .await
                .map_err(|e| self.inner.error(e))?;
            let rows = client
                .query(&stmt, &[&id.as_str()])
                .await
                .map_err(|e| self.inner.error(e))?;
            rows.iter()
                .map(|row| decode_step(id.as_str(), row.get(0), row.get(1)))
                .collect()
        })
    }

    fn cancel_requests(&self, ids: &[RunId]) -> BoxFuture<'_, Result<Vec<RunId>, StoreError>> {
        let ids = ids.to_vec();
        Box::pin(async move {
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let client = self.inner.client().await?;
            let stmt = client
                .prepare_cached("SELECT run_id FROM cancels WHERE run_id = ANY($1)")
                .await
                .map_err(|e| self.inner.error(e))?;
            let asked: Vec<&str> = ids.iter().map(RunId::as_str).collect();
            let rows = client
                .query(&stmt, &[&asked])
                .await
                .map_err(|e| self.inner.error(e))?;
            let found: std::collections::HashSet<String> =
                rows.iter().map(|r| r.get::<_, String>(0)).collect();
            Ok(ids
                .into_iter()
                .filter(|id| found.contains(id.as_str()))
                .collect())
        })
    }

    fn prune(&self, request: &PruneRequest) -> BoxFuture<'_, Result<Pruned, StoreError>> {
        let request = request.clone();
        Box::pin(async move {
            let mut pruned = claims::prune(&self.inner, &request).await?;
            pruned.alerts = if request.dry_run {
                alerts::count_prunable(&self.inner, &request).await?
            } else {
                alerts::prune(&self.inner, &request).await?
            };
            Ok(pruned)
        })
    }

    fn overdue_runs(
        &self,
        limits: &[(String, u64)],
        now_ms: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<super::OverdueRuns, StoreError>> {
        let limits = limits.to_vec();
        Box::pin(async move { alerts::overdue(&self.inner, &limits, now_ms, limit).await })
    }

    fn take_queued(&self, request: QueueTake) -> BoxFuture<'_, Result<Vec<Taken>, StoreError>> {
        Box::pin(async move { claims::take_queued(&self.inner, &request).await })
    }

    fn due(&self, now_ms: u64, limit: usize) -> BoxFuture<'_, Result<Vec<RunRecord>, StoreError>> {
        Box::pin(async move {
            let client = self.inner.client().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT id, record::text FROM runs WHERE timer_at <= $1
                     ORDER BY timer_at, id LIMIT $2",
                )
                .await
                .map_err(|e| self.inner.error(e))?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = client
                .query(&stmt, &[&ms(now_ms), &limit])
                .await
                .map_err(|e| self.inner.error(e))?;
            Ok(runs_of(&rows))
        })
    }

    fn next_due(&self) -> BoxFuture<'_, Result<Option<u64>, StoreError>> {
        Box::pin(async move {
            let client = self.inner.client().await?;
            let stmt = client
                .prepare_cached("SELECT min(timer_at) FROM runs WHERE timer_at IS NOT NULL")
                .await
                .map_err(|e| self.inner.error(e))?;
            let row = client
                .query_one(&stmt, &[])
                .await
                .map_err(|e| self.inner.error(e))?;
            Ok(row
                .get::<_, Option<i64>>(0)
                .map(|at| u64::try_from(at).unwrap_or(0)))
        })
    }

    fn held_runs(&self, limit: usize) -> BoxFuture<'_, Result<Vec<RunRecord>, StoreError>> {
        Box::pin(async move {
            let client = self.inner.client().await?;
            let stmt = client
                .prepare_cached("SELECT id, record::text FROM runs WHERE held ORDER BY id LIMIT $1")
                .await
                .map_err(|e| self.inner.error(e))?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = client
                .query(&stmt, &[&limit])
                .await
                .map_err(|e| self.inner.error(e))?;
            Ok(runs_of(&rows))
        })
    }

    fn queue_standing(
        &self,
        id: &RunId,
        rate_period: Option<std::time::Duration>,
    ) -> BoxFuture<'_, Result<Option<QueueStanding>, StoreError>> {
        let id = id.clone();
        Box::pin(async move { claims::queue_standing(&self.inner, &id, rate_period).await })
    }

    fn alerts(
        &self,
        filter: &super::AlertFilter,
    ) -> BoxFuture<'_, Result<Vec<super::AlertRecord>, StoreError>> {
        let filter = filter.clone();
        Box::pin(async move {
            let client = self.inner.client().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT id, record::text FROM alerts
                     WHERE ($1::text IS NULL OR workflow = $1) AND (NOT $2 OR next_due IS NOT NULL)
                     ORDER BY id DESC LIMIT $3",
                )
                .await
                .map_err(|e| self.inner.error(e))?;
            let limit = filter.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
            let rows = client
                .query(&stmt, &[&filter.workflow, &filter.pending, &limit])
                .await
                .map_err(|e| self.inner.error(e))?;
            Ok(rows
                .iter()
                .filter_map(|row| {
                    let id: &str = row.get(0);
                    match serde_json::from_str(row.get(1)) {
                        Ok(alert) => Some(alert),
                        Err(err) => {
                            tracing::warn!(alert = %id, error = %err, "a stored alert could not be decoded");
                            None
                        }
                    }
                })
                .collect())
        })
    }

    fn schedules(&self) -> BoxFuture<'_, Result<Vec<super::ScheduleRecord>, StoreError>> {
        Box::pin(async move {
            let client = self.inner.client().await?;
            let stmt = client
                .prepare_cached("SELECT name, record::text FROM schedules ORDER BY name")
                .await
                .map_err(|e| self.inner.error(e))?;
            let rows = client
                .query(&stmt, &[])
                .await
                .map_err(|e| self.inner.error(e))?;
            Ok(rows
                .iter()
                .filter_map(|row| {
                    let name: &str = row.get(0);
                    match serde_json::from_str(row.get(1)) {
                        Ok(record) => Some(record),
                        Err(err) => {
                            tracing::warn!(schedule = name, error = %err, "a stored schedule could not be decoded; it is left out");
                            None
                        }
                    }
                })
                .collect())
        })
    }

    fn work_signal(&self) -> Option<Arc<tokio::sync::Notify>> {
        let mut listener = self.listener.lock().unwrap_or_else(|e| e.into_inner());
        let (signal, _) = listener.get_or_insert_with(|| {
            let signal = Arc::new(tokio::sync::Notify::new());
            let task = tokio::spawn(listen::run(Arc::downgrade(&self.inner), signal.clone()));
            (signal, task)
        });
        Some(signal.clone())
    }

    fn schedule(
        &self,
        write: super::ScheduleWrite,
    ) -> BoxFuture<'_, Result<super::ScheduleOutcome, StoreError>> {
        Box::pin(async move { claims::schedule(&self.inner, write).await })
    }
}

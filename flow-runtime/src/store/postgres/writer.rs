//! The PostgreSQL store's group commit: one task takes every `create_run` and `commit` sent
//! while the previous batch was being written, and writes them in one transaction in two round
//! trips: `BEGIN` with a `SELECT ... FOR UPDATE` of the runs the batch checks or writes (in id
//! order, so two processes' batches never wait for each other in a cycle), then every write as
//! one multi-row statement per table with `COMMIT`, pipelined. Alert streaks, which the rules
//! must read before they write, take a few more round trips, only in batches that end runs.
//!
//! A commit whose claim moved is refused alone; the rest of its batch is written. A batch whose
//! connection failed (the server restarted, the session was terminated, the network dropped) is
//! written again on another connection, with a growing pause, for up to [`RETRY_FOR`]: if it
//! failed before its `COMMIT` was sent, nothing of it was written; if the `COMMIT` was sent and
//! no answer came, the batch's transaction id (read with its `BEGIN`) tells whether it
//! committed (`txid_status`), so a committed batch is answered as written and never applied
//! twice. A batch that fails otherwise, or past the deadline, fails each of its requests with
//! the error, and nothing of it is written.

use super::{
    check_text, decode_run, is_conflict, ms, step_key, RunColumns, RunRow, Shared, PUT_RUNS,
};
use crate::store::{
    record_delivery, AlertBook, AlertKind, AlertRecord, Claim, CreateRun, DeliveryOutcome,
    RunAlert, RunEnd, RunEndOutcome, RunId, RunStatus, StepRecord, StoreError, Streak, Write,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;

/// The most requests one transaction takes.
const MAX_BATCH: usize = 4096;

/// How long a batch whose connection failed is tried again before its requests fail.
pub(super) const RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(30);

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

pub(super) enum Request {
    CreateRun {
        row: RunRow,
        reply: Reply<CreateRun>,
    },
    Commit {
        ops: Vec<Op>,
        /// `false` for a deferred commit ([`crate::store::Store::commit_deferred`]).
        durable: bool,
        reply: Reply<()>,
    },
}

/// A [`Write`], encoded by its caller.
pub(super) enum Op {
    CheckClaim {
        run: String,
        token: i64,
    },
    PutRun(RunRow),
    PutStep {
        run: String,
        key: String,
        json: String,
    },
    DeleteStep {
        run: String,
        key: String,
    },
    RequestCancel {
        run: String,
        at_ms: i64,
    },
    ClearCancel {
        run: String,
    },
    RunEnded(RunEnd),
    RunAlert(RunAlert),
    RenewLease {
        run: String,
        until_ms: u64,
    },
    AlertDelivery {
        alert_id: String,
        index: usize,
        outcome: DeliveryOutcome,
        at_ms: u64,
    },
}

impl Op {
    pub(super) fn encode(write: Write) -> Result<Op, StoreError> {
        Ok(match write {
            Write::CheckClaim(Claim { run_id, token }) => Op::CheckClaim {
                run: run_id.as_str().to_owned(),
                token: i64::try_from(token).unwrap_or(i64::MAX),
            },
            Write::PutRun(run) => Op::PutRun(RunRow::of(&run)?),
            Write::PutStep(step) => encode_step(&step)?,
            Write::DeleteStep(run, step) => Op::DeleteStep {
                run: run.as_str().to_owned(),
                key: step_key(&step),
            },
            Write::RequestCancel(run) => Op::RequestCancel {
                run: run.as_str().to_owned(),
                at_ms: ms(crate::store::now_ms()),
            },
            Write::ClearCancel(run) => Op::ClearCancel {
                run: run.as_str().to_owned(),
            },
            Write::RunEnded(end) => Op::RunEnded(end),
            Write::RunAlert(alert) => {
                check_text(
                    &format_args!("alert about run {}", alert.run_id),
                    &alert.workflow,
                )?;
                check_text(&"an alert's run id", alert.run_id.as_str())?;
                Op::RunAlert(alert)
            }
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
                at_ms: crate::store::now_ms(),
            },
        })
    }
}

fn encode_step(step: &StepRecord) -> Result<Op, StoreError> {
    let what = format!("step {} of run {}", step.id, step.run_id);
    let key = step_key(&step.id);
    check_text(&what, &key)?;
    let json = serde_json::to_string(step)
        .map_err(|err| StoreError::Encoding(format!("{what} could not be encoded: {err}")))?;
    Ok(Op::PutStep {
        run: step.run_id.as_str().to_owned(),
        key,
        json,
    })
}

/// The writer task: runs until the store is dropped, answering everything sent before.
pub(super) async fn run(shared: Arc<Shared>, mut inbox: mpsc::UnboundedReceiver<Request>) {
    while let Some(first) = inbox.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match inbox.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        write_batch(&shared, batch).await;
    }
}

async fn write_batch(shared: &Shared, batch: Vec<Request>) {
    let mut creates = Vec::new();
    let mut commits = Vec::new();
    // A batch of deferred commits only does not wait for the server's disk
    let mut durable = false;
    for request in batch {
        match request {
            Request::CreateRun { row, reply } => {
                durable = true;
                creates.push((row, reply));
            }
            Request::Commit {
                ops,
                durable: d,
                reply,
            } => {
                durable |= d;
                commits.push((ops, reply));
            }
        }
    }
    let requests = (creates.len() + commits.len()) as u64;
    let started = std::time::Instant::now();
    let deadline = started + RETRY_FOR;
    let mut pause = std::time::Duration::from_millis(20);
    // A deadlock or serialization failure rolled everything back: once more, then report it
    let mut attempt = 0;
    let result = loop {
        attempt += 1;
        let failure = match apply(shared, durable, &creates, &commits).await {
            Ok(outcomes) => break Ok(outcomes),
            Err(Failure::Conflict(err)) if attempt < 3 => {
                tracing::debug!(error = %err, "a store batch lost a race; writing it again");
                continue;
            }
            Err(failure) => failure,
        };
        // Whether the batch may be written again: it surely did not commit and the failure
        // was the connection's, not the batch's
        let unknown = match failure {
            Failure::Unknown { xid, outcomes, err } => match resolve(shared, xid, deadline).await {
                Some(true) => {
                    tracing::info!(target = %shared.target, error = %err, "a store batch lost its connection at COMMIT; the server says it committed");
                    break Ok(outcomes);
                }
                Some(false) => err,
                None => break Err(Failure::Other(err)),
            },
            Failure::Other(err) if is_lost_connection(&err) => err,
            Failure::Store(err @ StoreError::Unavailable { .. }) => {
                if std::time::Instant::now() + pause >= deadline {
                    break Err(Failure::Store(err));
                }
                tracing::warn!(target = %shared.target, error = %err, requests, "a store batch could not get a connection; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(1));
                continue;
            }
            other => break Err(other),
        };
        if std::time::Instant::now() + pause >= deadline {
            break Err(Failure::Other(unknown));
        }
        tracing::warn!(target = %shared.target, error = %unknown, requests, "a store batch lost its connection before it committed; writing it again");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_secs(1));
    };
    match result {
        Ok((created, committed)) => {
            crate::metrics::store_commit(requests as usize, started.elapsed().as_secs_f64());
            let counter = if durable {
                &shared.stats.commits
            } else {
                &shared.stats.deferred_commits
            };
            counter.fetch_add(1, Ordering::Relaxed);
            shared.stats.writes.fetch_add(requests, Ordering::Relaxed);
            for ((_, reply), outcome) in creates.into_iter().zip(created) {
                let _ = reply.send(outcome);
            }
            for ((_, reply), outcome) in commits.into_iter().zip(committed) {
                let _ = reply.send(outcome);
            }
        }
        Err(failure) => {
            let err = match failure {
                Failure::Conflict(err) | Failure::Other(err) | Failure::Unknown { err, .. } => {
                    shared.error(err)
                }
                Failure::Store(err) => err,
            };
            tracing::error!(target = %shared.target, error = %err, requests, "store commit failed");
            for (_, reply) in creates {
                let _ = reply.send(Err(crate::store::redb::replicate(&err)));
            }
            for (_, reply) in commits {
                let _ = reply.send(Err(crate::store::redb::replicate(&err)));
            }
        }
    }
}

pub(super) enum Failure {
    Conflict(tokio_postgres::Error),
    Other(tokio_postgres::Error),
    Store(StoreError),
    /// The connection failed after `COMMIT` was sent: transaction `xid` may have committed,
    /// with these outcomes.
    Unknown {
        xid: i64,
        outcomes: Outcomes,
        err: tokio_postgres::Error,
    },
}

/// Whether the error is the connection's (lost, refused, the session ended by the server),
/// after which the same work may be sent again on another connection.
pub(super) fn is_lost_connection(err: &tokio_postgres::Error) -> bool {
    err.is_closed() || super::is_unavailable(err)
}

/// Whether transaction `xid` committed (`Some(true)`) or surely did not (`Some(false)`), asked
/// on another connection until `deadline`; `None` if that could not be learned.
pub(super) async fn resolve(
    shared: &Shared,
    xid: i64,
    deadline: std::time::Instant,
) -> Option<bool> {
    let mut pause = std::time::Duration::from_millis(20);
    loop {
        let status = async {
            let client = shared.client().await.ok()?;
            let row = client
                .query_one("SELECT txid_status($1)", &[&xid])
                .await
                .ok()?;
            Some(row.get::<_, Option<String>>(0))
        }
        .await;
        match status {
            Some(Some(status)) if status == "committed" => return Some(true),
            Some(Some(status)) if status == "aborted" => return Some(false),
            // Too old to be known (cannot happen within seconds): report the failure
            Some(None) => return None,
            // In progress (the old session is still ending), or no connection yet
            _ => {}
        }
        if std::time::Instant::now() + pause >= deadline {
            return None;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_millis(500));
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(err: tokio_postgres::Error) -> Self {
        if is_conflict(&err) {
            Failure::Conflict(err)
        } else {
            Failure::Other(err)
        }
    }
}

impl From<StoreError> for Failure {
    fn from(err: StoreError) -> Self {
        Failure::Store(err)
    }
}

pub(super) type Outcomes = (
    Vec<Result<CreateRun, StoreError>>,
    Vec<Result<(), StoreError>>,
);

const LOCK_RUNS: &str = "SELECT id, token FROM runs WHERE id = ANY($1) ORDER BY id FOR UPDATE";
const CREATE_RUNS: &str = r#"
INSERT INTO runs (id, workflow, status, created_at, updated_at, queue, priority, concurrency_key,
                  queued, timer_at, in_flight, held, lease_until, record, token)
SELECT *, 1 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::text[],
                     $7::int4[], $8::text[], $9::bool[], $10::int8[], $11::bool[], $12::bool[],
                     $13::int8[], $14::text[]::json[])
ON CONFLICT (id) DO NOTHING
RETURNING id
"#;
const EXISTING_RUNS: &str = "SELECT id, record::text FROM runs WHERE id = ANY($1)";
const PUT_STEPS: &str = r#"
INSERT INTO steps (run_id, step_key, record)
SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[]::json[])
ON CONFLICT (run_id, step_key) DO UPDATE SET record = EXCLUDED.record
"#;
const DELETE_STEPS: &str =
    "DELETE FROM steps WHERE (run_id, step_key) IN (SELECT * FROM UNNEST($1::text[], $2::text[]))";
const PUT_CANCELS: &str = r#"
INSERT INTO cancels (run_id, requested_at) SELECT * FROM UNNEST($1::text[], $2::int8[])
ON CONFLICT (run_id) DO UPDATE SET requested_at = EXCLUDED.requested_at
"#;
const DELETE_CANCELS: &str = "DELETE FROM cancels WHERE run_id = ANY($1)";
pub(super) const NOTIFY: &str = "SELECT pg_notify($1, $2)::text";

/// Writes the batch in one transaction; the outer error fails the whole batch.
async fn apply(
    shared: &Shared,
    durable: bool,
    creates: &[(RunRow, Reply<CreateRun>)],
    commits: &[(Vec<Op>, Reply<()>)],
) -> Result<Outcomes, Failure> {
    let client = shared.client().await?;
    let result = apply_on(&client, &shared.schema, durable, creates, commits).await;
    if result.is_err() {
        // Leaves the connection usable for the pool's next user (an error aborted the block)
        let _ = client.batch_execute("ROLLBACK").await;
    }
    result
}

async fn apply_on(
    client: &deadpool_postgres::Object,
    channel: &str,
    durable: bool,
    creates: &[(RunRow, Reply<CreateRun>)],
    commits: &[(Vec<Op>, Reply<()>)],
) -> Result<Outcomes, Failure> {
    let lock = client.prepare_cached(LOCK_RUNS).await?;
    // The runs the commits check or write, locked in id order
    let mut ids: Vec<&str> = commits
        .iter()
        .flat_map(|(ops, _)| ops.iter())
        .filter_map(|op| match op {
            Op::CheckClaim { run, .. } => Some(run.as_str()),
            Op::PutRun(row) => Some(row.id.as_str()),
            Op::RenewLease { run, .. } => Some(run.as_str()),
            _ => None,
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let lock_params: [&(dyn ToSql + Sync); 1] = [&ids];
    // The transaction's id comes with its first answer: if the connection fails once COMMIT is
    // sent, it tells whether the batch committed
    let xid = client.prepare_cached("SELECT txid_current()").await?;
    // Deferred commits only: the server answers COMMIT before its WAL reaches the disk; the
    // WAL is written in order, so a later durable commit makes this one durable too
    let begin = if durable {
        "BEGIN"
    } else {
        "BEGIN; SET LOCAL synchronous_commit = off"
    };
    let (begun, xid, locked) = futures::join!(
        client.batch_execute(begin),
        client.query_one(&xid, &[]),
        client.query(&lock, &lock_params)
    );
    begun?;
    let xid: i64 = xid?.get(0);
    let tokens: HashMap<String, Option<i64>> = locked?
        .iter()
        .map(|row| (row.get::<_, String>(0), row.get::<_, Option<i64>>(1)))
        .collect();

    // Which commits keep their claim; the last write of each key in batch order wins
    let mut committed = Vec::with_capacity(commits.len());
    let mut runs: BTreeMap<&str, &RunRow> = BTreeMap::new();
    let mut steps: HashMap<(&str, &str), Option<&str>> = HashMap::new();
    let mut cancels: HashMap<&str, Option<i64>> = HashMap::new();
    let mut alert_ops: Vec<&Op> = Vec::new();
    let mut renewals: BTreeMap<&str, u64> = BTreeMap::new();
    for (ops, _) in commits {
        let stale = ops.iter().find_map(|op| match op {
            Op::CheckClaim { run, token } => {
                (tokens.get(run.as_str()).copied().flatten() != Some(*token)).then_some(run)
            }
            _ => None,
        });
        if let Some(run) = stale {
            committed.push(Err(StoreError::ClaimLost {
                run_id: RunId::from(run.as_str()),
            }));
            continue;
        }
        for op in ops {
            match op {
                Op::CheckClaim { .. } => {}
                Op::PutRun(row) => {
                    runs.insert(&row.id, row);
                }
                Op::PutStep { run, key, json } => {
                    steps.insert((run, key), Some(json));
                }
                Op::DeleteStep { run, key } => {
                    steps.insert((run, key), None);
                }
                Op::RequestCancel { run, at_ms } => {
                    cancels.insert(run, Some(*at_ms));
                }
                Op::ClearCancel { run } => {
                    cancels.insert(run, None);
                }
                Op::RenewLease { run, until_ms } => {
                    let until = renewals.entry(run).or_default();
                    *until = (*until).max(*until_ms);
                }
                Op::RunEnded(_) | Op::RunAlert(_) | Op::AlertDelivery { .. } => alert_ops.push(op),
            }
        }
        committed.push(Ok(()));
    }

    let create_columns = RunColumns::of(creates.iter().map(|(row, _)| row));
    let run_columns = RunColumns::of(runs.values().copied());
    let (mut put_run, mut put_key, mut put_json) = (Vec::new(), Vec::new(), Vec::new());
    let (mut del_run, mut del_key) = (Vec::new(), Vec::new());
    for ((run, key), json) in &steps {
        match json {
            Some(json) => {
                put_run.push(*run);
                put_key.push(*key);
                put_json.push(*json);
            }
            None => {
                del_run.push(*run);
                del_key.push(*key);
            }
        }
    }
    let (mut cancel_put, mut cancel_at, mut cancel_del) = (Vec::new(), Vec::new(), Vec::new());
    for (run, at) in &cancels {
        match at {
            Some(at) => {
                cancel_put.push(*run);
                cancel_at.push(*at);
            }
            None => cancel_del.push(*run),
        }
    }

    // The writes, pipelined: sent one after another without waiting for the answers
    let mut statements: Vec<(&str, Vec<&(dyn ToSql + Sync)>)> = Vec::new();
    let create_params = create_columns.params();
    if !create_columns.is_empty() {
        statements.push((CREATE_RUNS, create_params.to_vec()));
    }
    let run_params = run_columns.params();
    if !run_columns.is_empty() {
        statements.push((PUT_RUNS, run_params.to_vec()));
    }
    if !put_run.is_empty() {
        statements.push((PUT_STEPS, vec![&put_run, &put_key, &put_json]));
    }
    if !del_run.is_empty() {
        statements.push((DELETE_STEPS, vec![&del_run, &del_key]));
    }
    if !cancel_put.is_empty() {
        statements.push((PUT_CANCELS, vec![&cancel_put, &cancel_at]));
    }
    if !cancel_del.is_empty() {
        statements.push((DELETE_CANCELS, vec![&cancel_del]));
    }
    // Idle workers elsewhere wake for a queued run at once, for a wake-up time when it comes
    // (`listen`); delivered when the batch commits
    let written = || {
        creates
            .iter()
            .map(|(row, _)| row)
            .chain(runs.values().copied())
    };
    let queued = written()
        .any(|row| row.queued)
        .then_some(super::listen::QUEUED);
    let timer = written()
        .filter_map(|row| row.timer_at)
        .min()
        .map(|at| at.to_string());
    let channel = channel.to_owned();
    let wakes: Vec<&str> = queued.into_iter().chain(timer.as_deref()).collect();
    for wake in &wakes {
        statements.push((NOTIFY, vec![&channel, wake]));
    }
    let prepared =
        futures::future::try_join_all(statements.iter().map(|(sql, _)| client.prepare_cached(sql)))
            .await?;
    let queries = prepared
        .iter()
        .zip(&statements)
        .map(|(stmt, (_, params))| client.query(stmt, params));
    if creates.is_empty() && renewals.is_empty() && alert_ops.is_empty() {
        // Nothing to read back: COMMIT goes with the writes, in the same round trip. Once it
        // is sent, a lost connection leaves the outcome to the transaction id
        let (written, done) = futures::join!(
            futures::future::try_join_all(queries),
            client.batch_execute("COMMIT")
        );
        return match written.and(done) {
            Ok(()) => Ok((Vec::new(), committed)),
            Err(err) if is_lost_connection(&err) => Err(Failure::Unknown {
                xid,
                outcomes: (Vec::new(), committed),
                err,
            }),
            Err(err) => Err(err.into()),
        };
    }
    let mut results = futures::future::try_join_all(queries).await?;

    // Which creates took their id; the others find the run that has it
    let mut created = Vec::with_capacity(creates.len());
    if !creates.is_empty() {
        let inserted: HashSet<String> = results
            .remove(0)
            .iter()
            .map(|row| row.get::<_, String>(0))
            .collect();
        let mut first = HashSet::new();
        let mut lost = Vec::new();
        for (row, _) in creates {
            // A second create of one id in the batch finds the first one's run
            let won = inserted.contains(&row.id) && first.insert(row.id.as_str());
            if !won {
                lost.push(row.id.as_str());
            }
        }
        let existing = if lost.is_empty() {
            HashMap::new()
        } else {
            let stmt = client.prepare_cached(EXISTING_RUNS).await?;
            client
                .query(&stmt, &[&lost])
                .await?
                .iter()
                .map(|row| (row.get::<_, String>(0), row.get::<_, String>(1)))
                .collect::<HashMap<_, _>>()
        };
        let mut first = HashSet::new();
        for (row, _) in creates {
            let won = inserted.contains(&row.id) && first.insert(row.id.as_str());
            created.push(if won {
                Ok(CreateRun::Created(Claim {
                    run_id: RunId::from(row.id.as_str()),
                    token: 1,
                }))
            } else {
                match existing.get(&row.id) {
                    Some(json) => decode_run(&row.id, json).map(CreateRun::Exists),
                    None => Err(StoreError::Backend(format!(
                        "run {} was neither created nor found; try again",
                        row.id
                    ))),
                }
            });
        }
    }

    if !renewals.is_empty() {
        renew(client, &renewals).await?;
    }
    if !alert_ops.is_empty() {
        alerts(client, &alert_ops).await?;
    }
    match client.batch_execute("COMMIT").await {
        Ok(()) => Ok((created, committed)),
        Err(err) if is_lost_connection(&err) => Err(Failure::Unknown {
            xid,
            outcomes: (created, committed),
            err,
        }),
        Err(err) => Err(err.into()),
    }
}

/// Applies the batch's lease renewals to the records as the batch left them (the rows are
/// locked since the batch began): a read and a write, in batches that renew leases only.
async fn renew(
    client: &deadpool_postgres::Object,
    renewals: &BTreeMap<&str, u64>,
) -> Result<(), Failure> {
    let ids: Vec<&str> = renewals.keys().copied().collect();
    let read = client.prepare_cached(EXISTING_RUNS).await?;
    let mut rows = Vec::new();
    for row in client.query(&read, &[&ids]).await? {
        let id: &str = row.get(0);
        // A record that does not decode is left as it is
        let Ok(mut run) = decode_run(id, row.get(1)) else {
            continue;
        };
        let until = renewals.get(id).copied().unwrap_or(0);
        if run.renew_lease(until) {
            rows.push(RunRow::of(&run)?);
        }
    }
    if !rows.is_empty() {
        let columns = RunColumns::of(&rows);
        let put = client.prepare_cached(PUT_RUNS).await?;
        client.execute(&put, &columns.params()).await?;
    }
    Ok(())
}

// ---- alerts ----

/// The streaks and alerts of a batch, loaded before the rules run (they cannot wait for the
/// database), written back after.
struct Book {
    alerts: HashMap<String, AlertRecord>,
    changed: HashSet<String>,
    /// (run id, alert kind) → alert id, for the runs the batch's [`Op::RunAlert`]s name.
    by_run: HashMap<(String, String), String>,
    /// The entries of `by_run` the rules added.
    new_by_run: Vec<(String, &'static str, String)>,
}

impl AlertBook for Book {
    fn alert(&mut self, id: &str) -> Option<AlertRecord> {
        self.alerts.get(id).cloned()
    }

    fn put_alert(&mut self, alert: AlertRecord) {
        self.changed.insert(alert.id.clone());
        self.alerts.insert(alert.id.clone(), alert);
    }

    fn run_alert_id(&mut self, run: &RunId, kind: AlertKind) -> Option<String> {
        self.by_run
            .get(&(run.as_str().to_owned(), kind.as_str().to_owned()))
            .cloned()
    }

    fn put_run_alert_id(&mut self, run: &RunId, kind: AlertKind, id: &str) {
        let key = (run.as_str().to_owned(), kind.as_str().to_owned());
        self.by_run.insert(key, id.to_owned());
        self.new_by_run
            .push((run.as_str().to_owned(), kind.as_str(), id.to_owned()));
    }
}

/// A run's status as the `status` column spells it.
fn parse_status(text: &str) -> Option<RunStatus> {
    RunStatus::ALL.into_iter().find(|s| s.as_str() == text)
}

/// Applies the batch's run ends, alerts about one run and alert deliveries in order, inside
/// the caller's transaction, after its run writes (a [`Op::RunAlert`] sees the run's status as
/// the batch leaves it). Locks run rows' streaks in workflow order, then alerts: the same
/// order in every caller, so two transactions never wait for each other in a cycle.
pub(super) async fn alerts(client: &deadpool_postgres::Object, ops: &[&Op]) -> Result<(), Failure> {
    // Streak rows locked in name order first; a missing row is made so it can be locked (the
    // lock is what makes two processes alerting about one run open one alert)
    let mut workflows: Vec<&str> = ops
        .iter()
        .filter_map(|op| match op {
            Op::RunEnded(end)
                if end.alert_after.is_some() || end.outcome == RunEndOutcome::NeedsAttention =>
            {
                Some(end.workflow.as_str())
            }
            Op::RunAlert(alert) => Some(alert.workflow.as_str()),
            _ => None,
        })
        .collect();
    workflows.sort_unstable();
    workflows.dedup();
    let make = client
        .prepare_cached(
            "INSERT INTO alert_streaks (workflow, record) SELECT w, '{\"failures\":0,\"run_ids\":[]}' FROM UNNEST($1::text[]) w ON CONFLICT DO NOTHING",
        )
        .await?;
    client.execute(&make, &[&workflows]).await?;
    let lock = client
        .prepare_cached(
            "SELECT workflow, record::text FROM alert_streaks WHERE workflow = ANY($1) ORDER BY workflow FOR UPDATE",
        )
        .await?;
    let ended: Vec<&str> = ops
        .iter()
        .filter_map(|op| match op {
            Op::RunEnded(end) => Some(end.workflow.as_str()),
            Op::RunAlert(alert) => Some(alert.workflow.as_str()),
            _ => None,
        })
        .collect();
    let mut streaks: HashMap<String, Streak> = HashMap::new();
    for row in client.query(&lock, &[&ended]).await? {
        let workflow: String = row.get(0);
        let streak = serde_json::from_str(row.get(1)).unwrap_or_else(|err| {
            tracing::warn!(%workflow, error = %err, "a stored alert streak could not be decoded; it starts again");
            Streak::default()
        });
        streaks.insert(workflow, streak);
    }
    // Every alert the streaks name, and those the deliveries change
    let mut ids: Vec<String> = streaks
        .values()
        .flat_map(|s| {
            s.open_alert
                .iter()
                .chain(s.attention.values())
                .chain(s.run_alerts.values().flatten())
                .cloned()
        })
        .collect();
    ids.extend(ops.iter().filter_map(|op| match op {
        Op::AlertDelivery { alert_id, .. } => Some(alert_id.clone()),
        _ => None,
    }));
    let load = client
        .prepare_cached("SELECT id, record::text FROM alerts WHERE id = ANY($1) FOR UPDATE")
        .await?;
    let mut book = Book {
        alerts: HashMap::new(),
        changed: HashSet::new(),
        by_run: HashMap::new(),
        new_by_run: Vec::new(),
    };
    // The alerts opened before for the runs alerted about, and those runs' statuses (read
    // after the streak locks: a process that opened one meanwhile has committed it)
    let alerted: Vec<&str> = ops
        .iter()
        .filter_map(|op| match op {
            Op::RunAlert(alert) => Some(alert.run_id.as_str()),
            _ => None,
        })
        .collect();
    let mut statuses: HashMap<String, Option<RunStatus>> = HashMap::new();
    if !alerted.is_empty() {
        let by_run = client
            .prepare_cached(
                "SELECT run_id, kind, alert_id FROM alerts_by_run WHERE run_id = ANY($1)",
            )
            .await?;
        for row in client.query(&by_run, &[&alerted]).await? {
            book.by_run.insert((row.get(0), row.get(1)), row.get(2));
        }
        let status = client
            .prepare_cached("SELECT id, status FROM runs WHERE id = ANY($1)")
            .await?;
        for row in client.query(&status, &[&alerted]).await? {
            statuses.insert(row.get(0), parse_status(row.get(1)));
        }
    }
    for row in client.query(&load, &[&ids]).await? {
        let id: String = row.get(0);
        match serde_json::from_str(row.get(1)) {
            Ok(alert) => {
                book.alerts.insert(id, alert);
            }
            Err(err) => {
                tracing::warn!(alert = %id, error = %err, "a stored alert could not be decoded; it is left as it is")
            }
        }
    }
    let mut touched = HashSet::new();
    for op in ops {
        match op {
            Op::RunEnded(end) => {
                let Some(streak) = streaks.get_mut(&end.workflow) else {
                    // No row and nothing to count: the common case writes nothing
                    continue;
                };
                book.run_ended(streak, end, || uuid::Uuid::now_v7().to_string());
                touched.insert(end.workflow.clone());
            }
            Op::RunAlert(request) => {
                let streak = streaks.entry(request.workflow.clone()).or_default();
                let status = statuses.get(request.run_id.as_str()).copied().flatten();
                book.run_alert(streak, request, status, || uuid::Uuid::now_v7().to_string());
                touched.insert(request.workflow.clone());
            }
            Op::AlertDelivery {
                alert_id,
                index,
                outcome,
                at_ms,
            } => {
                if let Some(mut alert) = book.alert(alert_id) {
                    record_delivery(&mut alert, *index, outcome, *at_ms);
                    book.put_alert(alert);
                }
            }
            _ => {}
        }
    }
    let (mut put_id, mut put_workflow, mut put_due, mut put_json) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for id in &book.changed {
        let Some(alert) = book.alerts.get(id) else {
            continue;
        };
        match serde_json::to_string(alert) {
            Ok(json) => {
                put_id.push(alert.id.clone());
                put_workflow.push(alert.workflow.clone());
                put_due.push(alert.next_due_ms().map(ms));
                put_json.push(json);
            }
            Err(err) => {
                tracing::warn!(alert = %alert.id, error = %err, "an alert could not be stored")
            }
        }
    }
    let put = client
        .prepare_cached(
            "INSERT INTO alerts (id, workflow, next_due, record)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[]::json[])
             ON CONFLICT (id) DO UPDATE SET workflow = EXCLUDED.workflow,
                 next_due = EXCLUDED.next_due, record = EXCLUDED.record",
        )
        .await?;
    client
        .execute(&put, &[&put_id, &put_workflow, &put_due, &put_json])
        .await?;
    if !book.new_by_run.is_empty() {
        let (mut run, mut kind, mut alert) = (Vec::new(), Vec::new(), Vec::new());
        for (r, k, a) in &book.new_by_run {
            run.push(r.as_str());
            kind.push(*k);
            alert.push(a.as_str());
        }
        let put = client
            .prepare_cached(
                "INSERT INTO alerts_by_run (run_id, kind, alert_id)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[])
                 ON CONFLICT (run_id, kind) DO UPDATE SET alert_id = EXCLUDED.alert_id",
            )
            .await?;
        client.execute(&put, &[&run, &kind, &alert]).await?;
    }
    let (mut keep, mut keep_json, mut drop) = (Vec::new(), Vec::new(), Vec::new());
    for workflow in &touched {
        let Some(streak) = streaks.get(workflow) else {
            continue;
        };
        if streak.is_empty() && streak.last_fired_ms.is_none() {
            drop.push(workflow.clone());
        } else if let Ok(json) = serde_json::to_string(streak) {
            keep.push(workflow.clone());
            keep_json.push(json);
        }
    }
    let put = client
        .prepare_cached(
            "UPDATE alert_streaks s SET record = u.record::json
             FROM UNNEST($1::text[], $2::text[]) AS u(workflow, record) WHERE s.workflow = u.workflow",
        )
        .await?;
    let delete = client
        .prepare_cached("DELETE FROM alert_streaks WHERE workflow = ANY($1)")
        .await?;
    let put_params: [&(dyn ToSql + Sync); 2] = [&keep, &keep_json];
    let delete_params: [&(dyn ToSql + Sync); 1] = [&drop];
    let (a, b) = futures::join!(
        client.execute(&put, &put_params),
        client.execute(&delete, &delete_params)
    );
    a?;
    b?;
    Ok(())
}

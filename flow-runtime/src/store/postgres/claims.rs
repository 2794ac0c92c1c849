//! Claims, queue takes, schedules and prunes on PostgreSQL: the writes that must read rows
//! under a lock before they decide, each in its own transaction on a pooled connection.
//!
//! A claim locks its run with `SELECT ... FOR UPDATE`, so of any number of concurrent claims
//! in any processes exactly one sees the run free; a queue take locks the queued runs it takes
//! with `FOR UPDATE SKIP LOCKED`, so workers never wait for each other's candidates. A queue
//! with limits (concurrency, per key, rate) is taken under a transaction advisory lock on its
//! name, because its counts must not move between reading and taking. The rules are the redb
//! store's; this module must not add its own.

use super::writer::{self, Failure, Op};
use super::{decode_run, is_conflict, lock_key, ms, runs_of, RunColumns, RunRow, Shared, PUT_RUNS};
use crate::store::{
    apply_fire, apply_pause, Claim, ClaimOutcome, ClaimRequest, PruneRequest, Pruned,
    QueueStanding, QueueTake, RunEnd, RunId, RunRecord, RunStatus, ScheduleBook, ScheduleOutcome,
    ScheduleRecord, ScheduleWrite, StoreError, Taken,
};
use std::collections::HashMap;

/// Runs a transaction body on a pooled connection: `BEGIN`, the body, `COMMIT`; a rollback on
/// error; the whole transaction again (up to three times) when PostgreSQL reports a deadlock.
macro_rules! transaction {
    ($shared:expr, |$client:ident| $body:expr) => {{
        let shared: &Shared = $shared;
        let $client = shared.client().await?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            $client
                .batch_execute("BEGIN")
                .await
                .map_err(|e| shared.error(e))?;
            let result: Result<_, Fail> = async { $body }.await;
            let result = match result {
                Ok(value) => super::claims::commit(shared, &$client, value).await,
                Err(err) => Err(err),
            };
            match result {
                Ok(value) => break Ok(value),
                Err(fail) => {
                    let _ = $client.batch_execute("ROLLBACK").await;
                    match fail {
                        Fail::Pg(err) if is_conflict(&err) && attempt < 3 => continue,
                        Fail::Pg(err) => break Err(shared.error(err)),
                        Fail::Store(err) => break Err(err),
                    }
                }
            }
        }
    }};
}

pub(super) use transaction;

/// Commits the transaction that computed `value`. If the connection fails once `COMMIT` is
/// sent, the transaction's id (read with it) tells whether it committed: a committed
/// transaction returns its value, so a claim that took a run is never reported as failed; one
/// that wrote nothing returns its value too (there was nothing to lose).
pub(super) async fn commit<T>(
    shared: &Shared,
    client: &deadpool_postgres::Object,
    value: T,
) -> Result<T, Fail> {
    let xid = client
        .prepare_cached("SELECT txid_current_if_assigned()")
        .await?;
    let (xid, committed) =
        futures::join!(client.query_one(&xid, &[]), client.batch_execute("COMMIT"));
    match committed {
        Ok(()) => Ok(value),
        Err(err) if writer::is_lost_connection(&err) => {
            match xid.ok().map(|row| row.get::<_, Option<i64>>(0)) {
                Some(None) => Ok(value),
                Some(Some(xid)) => {
                    let deadline = std::time::Instant::now() + writer::RETRY_FOR;
                    match writer::resolve(shared, xid, deadline).await {
                        Some(true) => Ok(value),
                        _ => Err(Fail::Pg(err)),
                    }
                }
                None => Err(Fail::Pg(err)),
            }
        }
        Err(err) => Err(Fail::Pg(err)),
    }
}

pub(super) enum Fail {
    Pg(tokio_postgres::Error),
    Store(StoreError),
}

impl From<tokio_postgres::Error> for Fail {
    fn from(err: tokio_postgres::Error) -> Self {
        Fail::Pg(err)
    }
}

impl From<StoreError> for Fail {
    fn from(err: StoreError) -> Self {
        Fail::Store(err)
    }
}

impl From<Failure> for Fail {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Conflict(err) | Failure::Other(err) | Failure::Unknown { err, .. } => {
                Fail::Pg(err)
            }
            Failure::Store(err) => Fail::Store(err),
        }
    }
}

const BUMP_TOKENS: &str =
    "UPDATE runs SET token = coalesce(token, 0) + 1 WHERE id = ANY($1) RETURNING id, token";

/// Writes `rows` (replacing them) and moves each one's fencing token on; returns the new tokens.
async fn put_and_claim(
    client: &deadpool_postgres::Object,
    rows: &[RunRow],
) -> Result<HashMap<String, u64>, tokio_postgres::Error> {
    if rows.is_empty() {
        return Ok(HashMap::new());
    }
    let columns = RunColumns::of(rows);
    let params = columns.params();
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let (put, bump) = futures::try_join!(
        client.prepare_cached(PUT_RUNS),
        client.prepare_cached(BUMP_TOKENS)
    )?;
    let bump_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&ids];
    let (_, bumped) = futures::try_join!(
        client.execute(&put, &params),
        client.query(&bump, &bump_params)
    )?;
    Ok(bumped
        .iter()
        .map(|row| {
            let token: i64 = row.get(1);
            (row.get::<_, String>(0), u64::try_from(token).unwrap_or(0))
        })
        .collect())
}

/// [`crate::store::Store::claim`].
pub(super) async fn claim(
    shared: &Shared,
    id: &RunId,
    request: ClaimRequest,
) -> Result<ClaimOutcome, StoreError> {
    let ClaimRequest { owner, lease, take } = request;
    let mut take = Some(take);
    transaction!(shared, |client| {
        let stmt = client
            .prepare_cached("SELECT record::text FROM runs WHERE id = $1 FOR UPDATE")
            .await?;
        let Some(row) = client.query_opt(&stmt, &[&id.as_str()]).await? else {
            return Ok(ClaimOutcome::Missing);
        };
        // The time once the row is locked: the lock may have been waited for (a frozen
        // process's transaction holds it until the server ends that session), and a lease
        // counted from before the wait would be over when the claim commits
        let now = crate::store::now_ms();
        let mut run = decode_run(id.as_str(), row.get(0))?;
        if run.is_held(now) {
            return Ok(ClaimOutcome::Held(run));
        }
        // A deadlock retry never reaches here twice: `take` ran, so the run was decided
        let Some(take) = take.take() else {
            return Err(Fail::Store(StoreError::Backend(
                "the claim could not be completed; try again".into(),
            )));
        };
        if !take(&mut run) {
            return Ok(ClaimOutcome::Refused(run));
        }
        run.hold(owner.clone(), lease, now);
        let row = RunRow::of(&run)?;
        let tokens = put_and_claim(&client, std::slice::from_ref(&row)).await?;
        // A delayed run released into its queue wakes idle workers elsewhere (`listen`)
        if row.queued {
            let notify = client.prepare_cached(writer::NOTIFY).await?;
            client
                .execute(&notify, &[&shared.schema, &super::listen::QUEUED])
                .await?;
        }
        let token = tokens.get(id.as_str()).copied().unwrap_or(0);
        // An operator's cancel of a run nobody executes ends it here: its own alerts resolve
        // in this transaction
        if run.status == RunStatus::Cancelled {
            let end = Op::RunEnded(RunEnd::cancelled(&run, now));
            writer::alerts(&client, &[&end]).await?;
        }
        Ok(ClaimOutcome::Claimed {
            claim: Claim {
                run_id: run.id.clone(),
                token,
            },
            run,
        })
    })
}

/// The most queued runs one queue's take looks at when its per-key limit may skip some.
const TAKE_SCAN: i64 = 1024;

/// [`crate::store::Store::take_queued`]: every queue in one transaction.
pub(super) async fn take_queued(
    shared: &Shared,
    request: &QueueTake,
) -> Result<Vec<Taken>, StoreError> {
    transaction!(shared, |client| {
        let now = request.now_ms;
        let mut taken = Vec::new();
        for queue in &request.queues {
            if queue.take == 0 || taken.len() >= request.max {
                continue;
            }
            let name = queue.name.as_str();
            let limited =
                queue.concurrency.is_some() || queue.per_key.is_some() || queue.rate.is_some();
            if limited {
                // The counts below must hold until this transaction commits, in every worker
                let lock = client
                    .prepare_cached("SELECT pg_advisory_xact_lock($1)")
                    .await?;
                client
                    .execute(&lock, &[&lock_key(&["flow.queue", &shared.schema, name])])
                    .await?;
            }
            let count_in_flight = client
                .prepare_cached(
                    "SELECT count(*) FROM runs WHERE in_flight AND queue = $1
                     AND ($2::text IS NULL OR concurrency_key = $2)",
                )
                .await?;
            let mut in_flight = match queue.concurrency {
                Some(_) => {
                    let none: Option<&str> = None;
                    let n: i64 = client
                        .query_one(&count_in_flight, &[&name, &none])
                        .await?
                        .get(0);
                    n as u64
                }
                None => 0,
            };
            let mut starts = match queue.rate {
                Some((_, period)) => {
                    let since = ms(now.saturating_sub(period.as_millis() as u64));
                    let forget = client
                        .prepare_cached("DELETE FROM starts WHERE queue = $1 AND started_at < $2")
                        .await?;
                    let count = client
                        .prepare_cached(
                            "SELECT count(*) FROM starts WHERE queue = $1 AND started_at >= $2",
                        )
                        .await?;
                    client.execute(&forget, &[&name, &since]).await?;
                    let n: i64 = client.query_one(&count, &[&name, &since]).await?.get(0);
                    n as u64
                }
                None => 0,
            };
            let room = queue.take.min(request.max - taken.len());
            let scan = if queue.per_key.is_some() {
                TAKE_SCAN
            } else {
                i64::try_from(room).unwrap_or(TAKE_SCAN)
            };
            let candidates = client
                .prepare_cached(
                    "SELECT id, record::text FROM runs WHERE queued AND queue = $1 AND workflow = ANY($2)
                     ORDER BY priority, created_at, id LIMIT $3 FOR UPDATE SKIP LOCKED",
                )
                .await?;
            let rows = client
                .query(&candidates, &[&name, &request.workflows, &scan])
                .await?;
            let mut per_key: HashMap<String, u64> = HashMap::new();
            let mut chosen: Vec<RunRecord> = Vec::new();
            for mut run in runs_of(&rows) {
                let full = |limit: Option<u32>, n: u64| limit.is_some_and(|l| n >= u64::from(l));
                if chosen.len() == room
                    || full(queue.concurrency, in_flight)
                    || full(queue.rate.map(|(n, _)| n), starts)
                {
                    break;
                }
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
                        None => {
                            let n: i64 = client
                                .query_one(&count_in_flight, &[&name, &Some(key)])
                                .await?
                                .get(0);
                            n as u64
                        }
                    };
                    per_key.insert(key.to_owned(), n);
                    if n >= u64::from(limit) {
                        continue;
                    }
                }
                request.start(&mut run);
                in_flight += 1;
                starts += 1;
                if let Some(key) = key {
                    *per_key.entry(key).or_default() += 1;
                }
                chosen.push(run);
            }
            let rows = chosen
                .iter()
                .map(RunRow::of)
                .collect::<Result<Vec<_>, _>>()?;
            let tokens = put_and_claim(&client, &rows).await?;
            if queue.rate.is_some() && !rows.is_empty() {
                let record = client
                    .prepare_cached(
                        "INSERT INTO starts (queue, started_at, run_id)
                         SELECT $1, $2, id FROM UNNEST($3::text[]) id ON CONFLICT DO NOTHING",
                    )
                    .await?;
                let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
                client.execute(&record, &[&name, &ms(now), &ids]).await?;
            }
            for run in chosen {
                let token = tokens.get(run.id.as_str()).copied().unwrap_or(0);
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
    })
}

/// [`crate::store::Store::queue_standing`].
pub(super) async fn queue_standing(
    shared: &Shared,
    id: &RunId,
    rate_period: Option<std::time::Duration>,
) -> Result<Option<QueueStanding>, StoreError> {
    let client = shared.client().await?;
    let err = |e| shared.error(e);
    let stmt = client
        .prepare_cached("SELECT record::text FROM runs WHERE id = $1")
        .await
        .map_err(err)?;
    let Some(row) = client
        .query_opt(&stmt, &[&id.as_str()])
        .await
        .map_err(err)?
    else {
        return Ok(None);
    };
    let Ok(run) = decode_run(id.as_str(), row.get(0)) else {
        return Ok(None);
    };
    let Some(place) = &run.queue else {
        return Ok(None);
    };
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    let mut standing = QueueStanding::default();
    if run.status == RunStatus::Queued {
        let ahead = client
            .prepare_cached(
                "SELECT count(*) FROM runs WHERE queued AND queue = $1
                 AND (priority, created_at, id) < ($2, $3, $4)",
            )
            .await
            .map_err(err)?;
        let n: i64 = client
            .query_one(
                &ahead,
                &[
                    &place.name,
                    &place.priority,
                    &ms(run.created_at_ms),
                    &id.as_str(),
                ],
            )
            .await
            .map_err(err)?
            .get(0);
        standing.ahead = count(n);
    }
    let flying = client
        .prepare_cached(
            "SELECT count(*), count(*) FILTER (WHERE coalesce(concurrency_key, '') = $2)
             FROM runs WHERE in_flight AND queue = $1",
        )
        .await
        .map_err(err)?;
    let key = place.concurrency_key.clone().unwrap_or_default();
    let row = client
        .query_one(&flying, &[&place.name, &key])
        .await
        .map_err(err)?;
    standing.in_flight = count(row.get(0));
    // The redb store counts the runs whose key matches this run's (none matches a run without one)
    standing.in_flight_with_key = match place.concurrency_key {
        Some(_) => count(row.get(1)),
        None => 0,
    };
    if let Some(period) = rate_period {
        let since = ms(crate::store::now_ms().saturating_sub(period.as_millis() as u64));
        let recent = client
            .prepare_cached("SELECT count(*) FROM starts WHERE queue = $1 AND started_at >= $2")
            .await
            .map_err(err)?;
        let n: i64 = client
            .query_one(&recent, &[&place.name, &since])
            .await
            .map_err(err)?
            .get(0);
        standing.recent_starts = count(n);
    }
    Ok(Some(standing))
}

/// The most runs one prune transaction deletes.
const PRUNE_BATCH: i64 = 1000;

/// [`crate::store::Store::prune`]: batches of at most [`PRUNE_BATCH`] runs, each selected and
/// deleted in one transaction (a run claimed meanwhile is locked, so it is skipped).
pub(super) async fn prune(shared: &Shared, request: &PruneRequest) -> Result<Pruned, StoreError> {
    let mut statuses = Vec::new();
    let mut cutoffs = Vec::new();
    for status in RunStatus::ALL {
        if let Some(until) = request.cutoff(status) {
            statuses.push(status.as_str());
            cutoffs.push(ms(until));
        }
    }
    let mut pruned = Pruned::default();
    if statuses.is_empty() {
        return Ok(pruned);
    }
    const SELECTED: &str = "FROM runs r JOIN UNNEST($1::text[], $2::int8[]) AS c(status, until)
                            ON r.status = c.status AND r.updated_at <= c.until";
    if request.dry_run {
        let client = shared.client().await?;
        let err = |e| shared.error(e);
        let stmt = client
            .prepare_cached(&format!(
                "SELECT r.status, count(*), coalesce(sum((SELECT count(*) FROM steps s WHERE s.run_id = r.id)), 0)::int8 {SELECTED} GROUP BY r.status"
            ))
            .await
            .map_err(err)?;
        for row in client
            .query(&stmt, &[&statuses, &cutoffs])
            .await
            .map_err(err)?
        {
            let status: String = row.get(0);
            let (runs, steps): (i64, i64) = (row.get(1), row.get(2));
            add(&mut pruned, &status, runs as u64, steps as u64);
        }
        return Ok(pruned);
    }
    loop {
        let (found, batch) = transaction!(shared, |client| {
            let select = client
                .prepare_cached(&format!(
                    "SELECT r.id, r.status {SELECTED} ORDER BY r.id LIMIT $3 FOR UPDATE OF r SKIP LOCKED"
                ))
                .await?;
            let rows = client
                .query(&select, &[&statuses, &cutoffs, &PRUNE_BATCH])
                .await?;
            let ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            let mut batch = Pruned::default();
            if ids.is_empty() {
                return Ok((0, batch));
            }
            // Every table keyed by run; the alerts opened for a run go with its entries here
            // (a new run under the id may alert again) and are pruned on their own terms
            let (steps, cancels, by_run, runs) = futures::try_join!(
                client.prepare_cached("DELETE FROM steps WHERE run_id = ANY($1)"),
                client.prepare_cached("DELETE FROM cancels WHERE run_id = ANY($1)"),
                client.prepare_cached("DELETE FROM alerts_by_run WHERE run_id = ANY($1)"),
                client.prepare_cached("DELETE FROM runs WHERE id = ANY($1)"),
            )?;
            let by_id: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&ids];
            let (steps, _, _, _) = futures::try_join!(
                client.execute(&steps, &by_id),
                client.execute(&cancels, &by_id),
                client.execute(&by_run, &by_id),
                client.execute(&runs, &by_id),
            )?;
            for row in &rows {
                add(&mut batch, row.get(1), 1, 0);
            }
            batch.steps = steps;
            Ok((ids.len() as i64, batch))
        })?;
        pruned.runs += batch.runs;
        pruned.steps += batch.steps;
        pruned.succeeded += batch.succeeded;
        pruned.failed += batch.failed;
        pruned.cancelled += batch.cancelled;
        if found < PRUNE_BATCH {
            return Ok(pruned);
        }
    }
}

fn add(pruned: &mut Pruned, status: &str, runs: u64, steps: u64) {
    pruned.runs += runs;
    pruned.steps += steps;
    match status {
        "succeeded" => pruned.succeeded += runs,
        "failed" => pruned.failed += runs,
        "cancelled" => pruned.cancelled += runs,
        _ => {}
    }
}

/// The runs a schedule's rules may ask about, loaded before they run; the runs they create,
/// written after.
struct Book {
    statuses: HashMap<RunId, RunStatus>,
    created: Vec<RunRecord>,
}

impl ScheduleBook for Book {
    fn status(&mut self, id: &RunId) -> Option<RunStatus> {
        self.statuses.get(id).copied()
    }

    fn create(&mut self, run: RunRecord) -> bool {
        if self.statuses.contains_key(&run.id) {
            return false;
        }
        self.statuses.insert(run.id.clone(), run.status);
        self.created.push(run);
        true
    }
}

/// [`crate::store::Store::schedule`]: under a transaction advisory lock on the schedule's name,
/// so two workers firing the same tick create its run once.
pub(super) async fn schedule(
    shared: &Shared,
    write: ScheduleWrite,
) -> Result<ScheduleOutcome, StoreError> {
    let name = match &write {
        ScheduleWrite::Fire(fire) => fire.name.clone(),
        ScheduleWrite::Pause { name, .. } => name.clone(),
    };
    super::check_text(&format_args!("schedule {name}"), &name)?;
    transaction!(shared, |client| {
        let lock = client
            .prepare_cached("SELECT pg_advisory_xact_lock($1)")
            .await?;
        client
            .execute(
                &lock,
                &[&lock_key(&["flow.schedule", &shared.schema, &name])],
            )
            .await?;
        let get = client
            .prepare_cached("SELECT record::text FROM schedules WHERE name = $1")
            .await?;
        let record: Option<ScheduleRecord> = match client.query_opt(&get, &[&name]).await? {
            Some(row) => Some(serde_json::from_str(row.get(0)).map_err(|err| {
                StoreError::Encoding(format!(
                    "the stored record of schedule {name} could not be decoded: {err}"
                ))
            })?),
            None => None,
        };
        let outcome = match write.clone() {
            ScheduleWrite::Fire(fire) => {
                // Every run the rules may ask about: the last run, the buffered ones, the ticks
                let mut ids: Vec<String> =
                    fire.runs.iter().map(|(_, r)| r.id.to_string()).collect();
                if let Some(record) = &record {
                    ids.extend(record.last_run.iter().map(RunId::to_string));
                    ids.extend(record.buffered.iter().map(|r| r.id.to_string()));
                }
                let statuses = client
                    .prepare_cached("SELECT id, record::text FROM runs WHERE id = ANY($1)")
                    .await?;
                let mut book = Book {
                    statuses: HashMap::new(),
                    created: Vec::new(),
                };
                for row in client.query(&statuses, &[&ids]).await? {
                    let id: &str = row.get(0);
                    // A run that does not decode still exists: treat it as unfinished, so that
                    // overlap rules never start a second run beside one they cannot read
                    let status =
                        decode_run(id, row.get(1)).map_or(RunStatus::Running, |r| r.status);
                    book.statuses.insert(RunId::from(id), status);
                }
                let outcome = apply_fire(record, fire, &mut book);
                let rows = book
                    .created
                    .iter()
                    .map(RunRow::of)
                    .collect::<Result<Vec<_>, _>>()?;
                put_and_claim(&client, &rows).await?;
                outcome
            }
            ScheduleWrite::Pause {
                name: _,
                pause,
                now_ms,
            } => ScheduleOutcome {
                record: Some(apply_pause(record, &name, pause, now_ms)),
                ..ScheduleOutcome::default()
            },
        };
        if let (false, Some(record)) = (outcome.stale, &outcome.record) {
            let json = serde_json::to_string(record).map_err(|err| {
                StoreError::Encoding(format!("schedule {name} could not be encoded: {err}"))
            })?;
            let put = client
                .prepare_cached(
                    "INSERT INTO schedules (name, record) VALUES ($1, $2::text::json)
                     ON CONFLICT (name) DO UPDATE SET record = EXCLUDED.record",
                )
                .await?;
            client.execute(&put, &[&name, &json]).await?;
        }
        Ok(outcome)
    })
}

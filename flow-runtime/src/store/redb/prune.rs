//! Pruning: deleting finished runs and everything stored of them.
//!
//! This module owns the deletion of a run from every table ([`RunTables::delete_run`]: a
//! table added to the store that is keyed by run must be cleaned there) and the batched walk
//! that finds the runs to delete. It never deletes an unfinished run, and it decides on the
//! record as read in the transaction that deletes it.

use super::alerts::ALERTS_BY_RUN;
use super::{decode_run, read_table, Fault, CANCELS, CLAIMS, RUNS, RUNS_BY_CREATION, STEPS};
use crate::store::redb_index::{Indexes, RunKeys};
use crate::store::{PruneRequest, Pruned, RunRecord};
use redb::{Database, Durability, ReadTransaction, ReadableTable, Table, WriteTransaction};
use std::ops::Bound;

/// The most runs one write transaction deletes: a prune of a million runs is a thousand short
/// transactions, and the writer's group commits go on between them.
pub(super) const BATCH: usize = 1000;

/// The most index entries one write transaction looks at, deleted or not: old runs that are
/// kept (unfinished, or of a status that is kept) must not make one transaction long either.
const SCAN: usize = 10 * BATCH;

/// Every table that holds something of a run, opened in one write transaction.
pub(super) struct RunTables<'txn> {
    runs: Table<'txn, &'static str, &'static [u8]>,
    steps: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    cancels: Table<'txn, &'static str, u64>,
    claims: Table<'txn, &'static str, u64>,
    alerts_by_run: Table<'txn, (&'static str, &'static str), &'static str>,
    index: Indexes<'txn>,
}

impl<'txn> RunTables<'txn> {
    pub(super) fn open(txn: &'txn WriteTransaction) -> Result<Self, Fault> {
        Ok(RunTables {
            runs: txn.open_table(RUNS)?,
            steps: txn.open_table(STEPS)?,
            cancels: txn.open_table(CANCELS)?,
            claims: txn.open_table(CLAIMS)?,
            alerts_by_run: txn.open_table(ALERTS_BY_RUN)?,
            index: Indexes::open(txn)?,
        })
    }

    /// Deletes run `run` from every table; returns how many steps it had.
    ///
    /// Its claim token goes too: a new run with the same id starts its tokens again. An
    /// execution of the deleted run that still holds an old token would have lost its claim
    /// long before the run finished and aged past the retention, and it stops at its next
    /// write in all but that case.
    pub(super) fn delete_run(&mut self, run: &RunRecord) -> Result<u64, Fault> {
        let id = run.id.as_str();
        self.runs.remove(id)?;
        // Every index entry the record implies (a finished run has only its creation entry)
        self.index.update(id, Some(&RunKeys::of(run)), None)?;
        self.cancels.remove(id)?;
        self.claims.remove(id)?;
        // Tuple keys sort by run id first: the run's steps are contiguous from (id, "") on
        let mut keys = Vec::new();
        for entry in self.steps.range((id, "")..)? {
            let (key, _) = entry?;
            let (key_run, step) = key.value();
            if key_run != id {
                break;
            }
            keys.push(step.to_owned());
        }
        for step in &keys {
            self.steps.remove((id, step.as_str()))?;
        }
        // Which alerts were opened for the run: a new run under the id may alert again (the
        // alerts themselves are pruned on their own terms)
        let mut kinds = Vec::new();
        for entry in self.alerts_by_run.range((id, "")..)? {
            let (key, _) = entry?;
            let (key_run, kind) = key.value();
            if key_run != id {
                break;
            }
            kinds.push(kind.to_owned());
        }
        for kind in &kinds {
            self.alerts_by_run.remove((id, kind.as_str()))?;
        }
        Ok(keys.len() as u64)
    }
}

/// The latest cutoff of the request: no run created after it can be selected, since a run's
/// last change is never before its creation. `None` if the request selects nothing.
fn latest_cutoff(request: &PruneRequest) -> Option<u64> {
    request
        .updated_until_ms
        .iter()
        .filter(|(status, _)| status.is_finished())
        .map(|(_, until)| *until)
        .max()
}

/// Deletes what `request` selects, [`BATCH`] runs per durable write transaction.
///
/// The runs are found through the creation index, oldest first, up to the latest cutoff; each
/// transaction goes on after the last index entry the previous one looked at.
pub(super) fn delete(db: &Database, request: &PruneRequest) -> Result<Pruned, Fault> {
    let mut pruned = Pruned::default();
    let Some(until) = latest_cutoff(request) else {
        return Ok(pruned);
    };
    let mut after: Option<(u64, String)> = None;
    loop {
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        let mut tables = RunTables::open(&txn)?;
        let (selected, last, finished) = {
            let lower = match &after {
                Some((created, id)) => Bound::Excluded((*created, id.as_str())),
                None => Bound::Unbounded,
            };
            let upper = Bound::Excluded((until.saturating_add(1), ""));
            let mut selected = Vec::new();
            let mut last = None;
            let mut finished = true;
            for (seen, entry) in tables.index.by_creation.range((lower, upper))?.enumerate() {
                if seen >= SCAN || selected.len() >= BATCH {
                    finished = false;
                    break;
                }
                let (key, _) = entry?;
                let (created, id) = key.value();
                last = Some((created, id.to_owned()));
                if let Some(run) = selected_run(&tables.runs, request, created, id)? {
                    selected.push(run);
                }
            }
            (selected, last, finished)
        };
        for run in &selected {
            let steps = tables.delete_run(run)?;
            pruned.add(run.status, steps);
        }
        drop(tables);
        txn.commit()?;
        if finished || last.is_none() {
            return Ok(pruned);
        }
        after = last;
    }
}

/// Counts what [`delete`] would delete, in one read transaction.
pub(super) fn count(txn: &ReadTransaction, request: &PruneRequest) -> Result<Pruned, Fault> {
    let mut pruned = Pruned::default();
    let Some(until) = latest_cutoff(request) else {
        return Ok(pruned);
    };
    let (Some(index), Some(runs)) = (read_table(txn, RUNS_BY_CREATION)?, read_table(txn, RUNS)?)
    else {
        return Ok(pruned);
    };
    let steps = read_table(txn, STEPS)?;
    for entry in index.range((0, "")..(until.saturating_add(1), ""))? {
        let (key, _) = entry?;
        let (created, id) = key.value();
        let Some(run) = selected_run(&runs, request, created, id)? else {
            continue;
        };
        let mut count = 0;
        if let Some(steps) = &steps {
            for entry in steps.range((id, "")..)? {
                let (key, _) = entry?;
                if key.value().0 != id {
                    break;
                }
                count += 1;
            }
        }
        pruned.add(run.status, count);
    }
    Ok(pruned)
}

/// The run of index entry `(created, id)`, if the request selects it. A stale entry (the run
/// is gone or was written with another creation time) and an undecodable record are skipped:
/// pruning deletes only what it has read and understood.
fn selected_run(
    runs: &impl ReadableTable<&'static str, &'static [u8]>,
    request: &PruneRequest,
    created: u64,
    id: &str,
) -> Result<Option<RunRecord>, Fault> {
    let Some(bytes) = runs.get(id)? else {
        return Ok(None);
    };
    let run = match decode_run(id, bytes.value()) {
        Ok(run) => run,
        Err(err) => {
            tracing::warn!(run = id, error = %err, "not pruning a run whose record cannot be read");
            return Ok(None);
        }
    };
    Ok((run.created_at_ms == created && request.selects(&run)).then_some(run))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::super::RedbStore;
    use super::*;
    use crate::store::{
        ClaimOutcome, ClaimRequest, RunId, RunStatus, StepId, StepRecord, StepStatus, Store, Write,
    };
    use redb::ReadableTableMetadata;

    fn run(id: &str, status: RunStatus, at_ms: u64) -> RunRecord {
        RunRecord {
            id: RunId::from(id),
            workflow: "w".into(),
            status,
            input: serde_json::json!(null),
            output: None,
            error: None,
            trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
            created_at_ms: at_ms,
            updated_at_ms: at_ms,
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

    fn step(run: &str, key: &str) -> Write {
        Write::PutStep(StepRecord {
            run_id: RunId::from(run),
            id: StepId {
                name: "s".into(),
                key: key.into(),
                occurrence: 0,
            },
            status: StepStatus::Succeeded,
            attempt: 1,
            next_attempt_at_ms: None,
            output: None,
            error: None,
            error_class: None,
            started_at_ms: 1,
            finished_at_ms: Some(2),
            args: None,
            failure: None,
        })
    }

    fn request(until: u64, dry_run: bool) -> PruneRequest {
        PruneRequest {
            updated_until_ms: [
                RunStatus::Succeeded,
                RunStatus::Failed,
                RunStatus::Cancelled,
            ]
            .into_iter()
            .map(|s| (s, until))
            .collect(),
            alerts_until_ms: None,
            dry_run,
        }
    }

    /// How many entries each table keyed by run holds: runs, steps, cancels, claims, index.
    fn leftovers(store: &RedbStore) -> (u64, u64, u64, u64, u64) {
        let txn = store.db.begin_read().unwrap();
        let runs = txn.open_table(RUNS).unwrap().len().unwrap();
        let steps = txn.open_table(STEPS).unwrap().len().unwrap();
        let cancels = txn.open_table(CANCELS).unwrap().len().unwrap();
        let claims = txn.open_table(CLAIMS).unwrap().len().unwrap();
        let index = txn.open_table(RUNS_BY_CREATION).unwrap().len().unwrap();
        (runs, steps, cancels, claims, index)
    }

    #[tokio::test]
    async fn a_prune_deletes_old_finished_runs_whole_across_batches_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path().join("flow.redb")).unwrap();
        // More old finished runs than one batch takes, each with two steps and a cancel request
        let old = 2 * BATCH as u64 + 17;
        for chunk in (0..old).collect::<Vec<_>>().chunks(500) {
            let mut writes = Vec::new();
            for &i in chunk {
                let id = format!("old-{i:05}");
                let status = [
                    RunStatus::Succeeded,
                    RunStatus::Failed,
                    RunStatus::Cancelled,
                ][i as usize % 3];
                writes.push(Write::PutRun(run(&id, status, 1_000 + i)));
                writes.push(step(&id, "a"));
                writes.push(step(&id, "b"));
                writes.push(Write::RequestCancel(RunId::from(id.as_str())));
            }
            store.commit(writes).await.unwrap();
        }
        // Kept: unfinished though old, finished but recent, and one claimed again (resumed)
        // after it finished
        let mut writes = Vec::new();
        for (i, status) in [
            RunStatus::Queued,
            RunStatus::Running,
            RunStatus::Sleeping,
            RunStatus::NeedsAttention,
            RunStatus::Paused,
        ]
        .into_iter()
        .enumerate()
        {
            let id = format!("unfinished-{i}");
            writes.push(Write::PutRun(run(&id, status, 10)));
            writes.push(step(&id, "a"));
        }
        writes.push(Write::PutRun(run("recent", RunStatus::Succeeded, 90_000)));
        writes.push(Write::PutRun(run("resumed", RunStatus::Failed, 20)));
        writes.push(step("resumed", "a"));
        store.commit(writes).await.unwrap();
        let claimed = store
            .claim(
                &RunId::from("resumed"),
                ClaimRequest {
                    owner: None,
                    lease: std::time::Duration::ZERO,
                    take: Box::new(|run: &mut RunRecord| {
                        run.status = RunStatus::Running;
                        true
                    }),
                },
            )
            .await
            .unwrap();
        assert!(matches!(claimed, ClaimOutcome::Claimed { .. }));

        let counted = store.prune(&request(50_000, true)).await.unwrap();
        assert_eq!(counted.runs, old);
        assert_eq!(counted.steps, 2 * old);
        assert_eq!(counted.succeeded + counted.failed + counted.cancelled, old);
        let kept = 5 + 2;
        let before = leftovers(&store);
        assert_eq!(before.0, old + kept, "the dry run deleted nothing");

        let pruned = store.prune(&request(50_000, false)).await.unwrap();
        assert_eq!(
            pruned, counted,
            "the prune deletes what the dry run counted"
        );
        // Runs, steps, cancels, claims and index entries of the kept runs only: 5 unfinished
        // runs and `resumed` have a step; `recent` has none; only created or claimed runs
        // have a claim token (`resumed`); no cancel request is left
        assert_eq!(leftovers(&store), (kept, 6, 0, 1, kept));
        for id in ["recent", "resumed", "unfinished-0", "unfinished-4"] {
            assert!(store.run(&RunId::from(id)).await.unwrap().is_some(), "{id}");
        }
        assert!(store
            .steps(&RunId::from("old-00001"))
            .await
            .unwrap()
            .is_empty());
        assert_eq!(store.prune(&request(50_000, false)).await.unwrap().runs, 0);
    }
}

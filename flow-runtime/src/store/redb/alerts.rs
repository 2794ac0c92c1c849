//! Alerts in redb: the tables of alerts, of alerts with pending deliveries and of streaks, and
//! the writes that change them inside the writer's transaction.
//!
//! The rules (when an alert opens, resolves, what is pending, what may be pruned) are
//! [`AlertBook`]'s and [`alert_prunable`]'s; this module only loads and stores records, and
//! finds the runs past their max duration through the run indexes. A record that does not
//! decode is skipped with a warning: an alert must never stop a run's end from being written.

use super::{decode_run, encode, read_table, Fault, RUNS};
use crate::store::redb_index::{HELD, QUEUED, TIMERS};
use crate::store::{
    alert_prunable, record_delivery, AlertBook, AlertFilter, AlertKind, AlertRecord,
    DeliveryOutcome, OverdueRuns, PruneRequest, RunAlert, RunEnd, RunEndOutcome, RunId, RunStatus,
    Streak,
};
use redb::{
    Database, Durability, ReadTransaction, ReadableTable, Table, TableDefinition, WriteTransaction,
};
use std::collections::{HashMap, HashSet};

/// Alert id (UUID v7, so in creation order) → JSON [`AlertRecord`].
const ALERTS: TableDefinition<&str, &[u8]> = TableDefinition::new("alerts");
/// Alert id → when its next pending delivery is due (ms since the epoch); only alerts with a
/// pending delivery, so the deliverer never scans delivered ones.
const ALERTS_PENDING: TableDefinition<&str, u64> = TableDefinition::new("alerts_pending");
/// Workflow name → JSON [`Streak`].
const STREAKS: TableDefinition<&str, &[u8]> = TableDefinition::new("alert_streaks");
/// (run id, alert kind) → the id of the alert of that kind opened for the run: what makes a
/// max-duration or error-budget alert fire once per run, whichever process sees it first.
/// Removed with the run ([`super::prune`]) or with the alert.
pub(super) const ALERTS_BY_RUN: TableDefinition<(&str, &str), &str> =
    TableDefinition::new("alerts_by_run");

struct Tables<'txn> {
    alerts: Table<'txn, &'static str, &'static [u8]>,
    pending: Table<'txn, &'static str, u64>,
    by_run: Option<Table<'txn, (&'static str, &'static str), &'static str>>,
    txn: &'txn WriteTransaction,
    fault: Option<Fault>,
}

impl<'txn> Tables<'txn> {
    fn put(&mut self, alert: &AlertRecord) -> Result<(), Fault> {
        let json = match encode(format_args!("alert {}", alert.id), alert) {
            Ok(json) => json,
            Err(err) => {
                tracing::warn!(alert = %alert.id, error = %err, "an alert could not be stored");
                return Ok(());
            }
        };
        self.alerts.insert(alert.id.as_str(), json.as_slice())?;
        match alert.next_due_ms() {
            Some(due) => self.pending.insert(alert.id.as_str(), due)?,
            None => self.pending.remove(alert.id.as_str())?,
        };
        Ok(())
    }

    fn get(&mut self, id: &str) -> Result<Option<AlertRecord>, Fault> {
        let Some(bytes) = self.alerts.get(id)? else {
            return Ok(None);
        };
        match serde_json::from_slice(bytes.value()) {
            Ok(alert) => Ok(Some(alert)),
            Err(err) => {
                tracing::warn!(alert = %id, error = %err, "a stored alert could not be decoded; it is left as it is");
                Ok(None)
            }
        }
    }

    fn by_run(
        &mut self,
    ) -> Result<&mut Table<'txn, (&'static str, &'static str), &'static str>, Fault> {
        if self.by_run.is_none() {
            self.by_run = Some(self.txn.open_table(ALERTS_BY_RUN)?);
        }
        match self.by_run.as_mut() {
            Some(table) => Ok(table),
            None => unreachable!("opened just above"),
        }
    }
}

// The rules call these without a way to fail: the first redb error is kept and returned after
impl AlertBook for Tables<'_> {
    fn alert(&mut self, id: &str) -> Option<AlertRecord> {
        match self.get(id) {
            Ok(alert) => alert,
            Err(fault) => {
                self.fault.get_or_insert(fault);
                None
            }
        }
    }

    fn put_alert(&mut self, alert: AlertRecord) {
        if let Err(fault) = self.put(&alert) {
            self.fault.get_or_insert(fault);
        }
    }

    fn run_alert_id(&mut self, run: &RunId, kind: AlertKind) -> Option<String> {
        let found = self.by_run().and_then(|table| {
            Ok(table
                .get((run.as_str(), kind.as_str()))?
                .map(|v| v.value().to_owned()))
        });
        match found {
            Ok(id) => id,
            Err(fault) => {
                self.fault.get_or_insert(fault);
                None
            }
        }
    }

    fn put_run_alert_id(&mut self, run: &RunId, kind: AlertKind, id: &str) {
        let put = self.by_run().and_then(|table| {
            table.insert((run.as_str(), kind.as_str()), id)?;
            Ok(())
        });
        if let Err(fault) = put {
            self.fault.get_or_insert(fault);
        }
    }
}

fn open(txn: &WriteTransaction) -> Result<Tables<'_>, Fault> {
    Ok(Tables {
        alerts: txn.open_table(ALERTS)?,
        pending: txn.open_table(ALERTS_PENDING)?,
        by_run: None,
        txn,
        fault: None,
    })
}

/// The workflow's streak record, `Default` if it has none (or it does not decode).
fn load_streak(
    streaks: &Table<'_, &'static str, &'static [u8]>,
    workflow: &str,
) -> Result<Option<Streak>, Fault> {
    let Some(bytes) = streaks.get(workflow)?.map(|v| v.value().to_vec()) else {
        return Ok(None);
    };
    Ok(Some(serde_json::from_slice(&bytes).unwrap_or_else(|err| {
        tracing::warn!(workflow = %workflow, error = %err, "a stored alert streak could not be decoded; it starts again");
        Streak::default()
    })))
}

/// Writes the workflow's streak record back, or deletes it when it says nothing.
fn store_streak(
    streaks: &mut Table<'_, &'static str, &'static [u8]>,
    workflow: &str,
    streak: &Streak,
) -> Result<(), Fault> {
    if streak.is_empty() && streak.last_fired_ms.is_none() {
        streaks.remove(workflow)?;
        return Ok(());
    }
    match encode(format_args!("alert streak of {workflow}"), streak) {
        Ok(json) => {
            streaks.insert(workflow, json.as_slice())?;
        }
        Err(err) => tracing::warn!(error = %err, "an alert streak could not be stored"),
    }
    Ok(())
}

fn streaks_table<'t, 's>(
    txn: &'t WriteTransaction,
    streaks: &'s mut Option<Table<'t, &'static str, &'static [u8]>>,
) -> Result<&'s mut Table<'t, &'static str, &'static [u8]>, Fault> {
    // Opened once per transaction: a batch ends hundreds of runs
    if streaks.is_none() {
        *streaks = Some(txn.open_table(STREAKS)?);
    }
    match streaks.as_mut() {
        Some(table) => Ok(table),
        None => unreachable!("opened just above"),
    }
}

/// [`crate::store::Write::RunEnded`]: the streak and the alerts, in the run's end commit.
pub(super) fn run_ended<'t>(
    txn: &'t WriteTransaction,
    streaks: &mut Option<Table<'t, &'static str, &'static [u8]>>,
    end: &RunEnd,
) -> Result<(), Fault> {
    let streaks = streaks_table(txn, streaks)?;
    let stored = load_streak(streaks, &end.workflow)?;
    if stored.is_none() && end.alert_after.is_none() && end.outcome != RunEndOutcome::NeedsAttention
    {
        // Nothing to count and nothing open: the common case writes nothing
        return Ok(());
    }
    let mut streak = stored.unwrap_or_default();
    let mut tables = open(txn)?;
    tables.run_ended(&mut streak, end, || uuid::Uuid::now_v7().to_string());
    if let Some(fault) = tables.fault.take() {
        return Err(fault);
    }
    store_streak(streaks, &end.workflow, &streak)
}

/// [`crate::store::Write::RunAlert`]: opens the alert unless the run had one of its kind, in
/// the transaction that reads the run's status. Returns whether it opened one.
pub(super) fn run_alert<'t>(
    txn: &'t WriteTransaction,
    runs: &Table<'t, &'static str, &'static [u8]>,
    streaks: &mut Option<Table<'t, &'static str, &'static [u8]>>,
    request: &RunAlert,
) -> Result<bool, Fault> {
    let status = match runs.get(request.run_id.as_str())? {
        Some(bytes) => decode_run(request.run_id.as_str(), bytes.value())
            .ok()
            .map(|run| run.status),
        None => None,
    };
    let streaks = streaks_table(txn, streaks)?;
    let mut streak = load_streak(streaks, &request.workflow)?.unwrap_or_default();
    let mut tables = open(txn)?;
    let opened = tables.run_alert(&mut streak, request, status, || {
        uuid::Uuid::now_v7().to_string()
    });
    if let Some(fault) = tables.fault.take() {
        return Err(fault);
    }
    if opened.is_some() {
        store_streak(streaks, &request.workflow, &streak)?;
    }
    Ok(opened.is_some())
}

/// [`crate::store::Store::overdue_runs`]: unfinished runs past their workflow's deadline, read
/// through the indexes of queued runs (whose keys carry the creation time, so runs too young to
/// be overdue are not read), timers and held runs.
pub(super) fn overdue(
    txn: &ReadTransaction,
    limits: &[(String, u64)],
    now: u64,
    limit: usize,
) -> Result<OverdueRuns, Fault> {
    let limits: HashMap<&str, u64> = limits.iter().map(|(w, l)| (w.as_str(), *l)).collect();
    let mut found = OverdueRuns::default();
    let Some(shortest) = limits.values().copied().min() else {
        return Ok(found);
    };
    let Some(runs) = read_table(txn, RUNS)? else {
        return Ok(found);
    };
    let mut next = |deadline: u64| {
        found.next_deadline_ms = Some(found.next_deadline_ms.map_or(deadline, |n| n.min(deadline)));
    };
    let mut ids: Vec<String> = Vec::new();
    if let Some(queued) = read_table(txn, QUEUED)? {
        for entry in queued.iter()? {
            let (key, _) = entry?;
            let (_, _, created, id) = key.value();
            let earliest = created.saturating_add(shortest);
            if earliest > now {
                // Not overdue whatever its workflow: no need to read it
                next(earliest);
            } else {
                ids.push(id.to_owned());
            }
        }
    }
    if let Some(timers) = read_table(txn, TIMERS)? {
        for entry in timers.iter()? {
            ids.push(entry?.0.value().1.to_owned());
        }
    }
    if let Some(held) = read_table(txn, HELD)? {
        for entry in held.iter()? {
            ids.push(entry?.0.value().to_owned());
        }
    }
    let by_run = read_table(txn, ALERTS_BY_RUN)?;
    let kind = AlertKind::MaxDuration.as_str();
    let mut seen = HashSet::new();
    let mut overdue = Vec::new();
    let mut cut_short = false;
    for id in ids {
        if !seen.insert(id.clone()) {
            continue;
        }
        let Some(bytes) = runs.get(id.as_str())? else {
            continue;
        };
        // The fields that decide, without building the run's input
        #[derive(serde::Deserialize)]
        struct Fields<'a> {
            #[serde(borrow)]
            workflow: std::borrow::Cow<'a, str>,
            status: RunStatus,
            created_at_ms: u64,
        }
        let Ok(f) = serde_json::from_slice::<Fields<'_>>(bytes.value()) else {
            continue;
        };
        let Some(max) = limits.get(f.workflow.as_ref()) else {
            continue;
        };
        if !matches!(
            f.status,
            RunStatus::Queued | RunStatus::Running | RunStatus::Sleeping
        ) {
            continue;
        }
        if let Some(by_run) = &by_run {
            if by_run.get((id.as_str(), kind))?.is_some() {
                continue;
            }
        }
        let deadline = f.created_at_ms.saturating_add(*max);
        if deadline > now {
            next(deadline);
            continue;
        }
        if overdue.len() >= limit {
            cut_short = true;
            continue;
        }
        if let Ok(run) = decode_run(&id, bytes.value()) {
            overdue.push(run);
        }
    }
    if cut_short {
        next(now);
    }
    found.runs = overdue;
    Ok(found)
}

/// [`crate::store::Write::AlertDelivery`].
pub(super) fn delivery(
    txn: &WriteTransaction,
    id: &str,
    index: usize,
    outcome: &DeliveryOutcome,
    now_ms: u64,
) -> Result<(), Fault> {
    let mut tables = open(txn)?;
    if let Some(mut alert) = tables.get(id)? {
        record_delivery(&mut alert, index, outcome, now_ms);
        tables.put(&alert)?;
    }
    Ok(())
}

/// [`crate::store::Store::alerts`].
pub(super) fn list(txn: &ReadTransaction, filter: &AlertFilter) -> Result<Vec<AlertRecord>, Fault> {
    let Some(alerts) = read_table(txn, ALERTS)? else {
        return Ok(Vec::new());
    };
    let limit = filter.limit.unwrap_or(usize::MAX);
    let mut out = Vec::new();
    let take = |bytes: &[u8], id: &str, out: &mut Vec<AlertRecord>| match serde_json::from_slice::<
        AlertRecord,
    >(bytes)
    {
        Ok(alert) => {
            if filter
                .workflow
                .as_deref()
                .is_none_or(|w| w == alert.workflow)
            {
                out.push(alert);
            }
        }
        Err(err) => {
            tracing::warn!(alert = %id, error = %err, "a stored alert could not be decoded")
        }
    };
    if filter.pending {
        let Some(pending) = read_table(txn, ALERTS_PENDING)? else {
            return Ok(Vec::new());
        };
        for entry in pending.iter()?.rev() {
            let (id, _) = entry?;
            if let Some(bytes) = alerts.get(id.value())? {
                take(bytes.value(), id.value(), &mut out);
            }
            if out.len() >= limit {
                break;
            }
        }
    } else {
        for entry in alerts.iter()?.rev() {
            let (id, bytes) = entry?;
            take(bytes.value(), id.value(), &mut out);
            if out.len() >= limit {
                break;
            }
        }
    }
    Ok(out)
}

/// The most alerts one pruning transaction deletes, and looks at.
const PRUNE_BATCH: usize = 1000;
const PRUNE_SCAN: usize = 10 * PRUNE_BATCH;

/// Whether the run `id` is gone, or is selected by `request` (a dry run counts the alerts of
/// runs it would delete as their runs will be then).
fn run_gone(
    runs: &impl ReadableTable<&'static str, &'static [u8]>,
    request: &PruneRequest,
    id: &RunId,
) -> Result<bool, Fault> {
    Ok(match runs.get(id.as_str())? {
        None => true,
        Some(bytes) => match decode_run(id.as_str(), bytes.value()) {
            Ok(run) => request.selects(&run),
            // A run that cannot be read is not known to be gone: its alert stays
            Err(_) => false,
        },
    })
}

/// The prunable alerts among the next ones after `after` (alert ids are UUID v7, so the table
/// is in creation order and the walk stops at the first alert created after the cutoff).
/// Returns them, the last id looked at, and whether the walk reached its end.
fn prunable_batch(
    alerts: &impl ReadableTable<&'static str, &'static [u8]>,
    runs: &impl ReadableTable<&'static str, &'static [u8]>,
    request: &PruneRequest,
    until: u64,
    after: Option<&str>,
    batch: usize,
) -> Result<(Vec<AlertRecord>, Option<String>, bool), Fault> {
    let range = match after {
        Some(after) => {
            alerts.range::<&str>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))?
        }
        None => alerts.range::<&str>(..)?,
    };
    let mut selected = Vec::new();
    let mut last = None;
    for (seen, entry) in range.enumerate() {
        if seen >= PRUNE_SCAN || selected.len() >= batch {
            return Ok((selected, last, false));
        }
        let (id, bytes) = entry?;
        last = Some(id.value().to_owned());
        let Ok(alert) = serde_json::from_slice::<AlertRecord>(bytes.value()) else {
            continue;
        };
        if alert.created_at_ms > until {
            return Ok((selected, last, true));
        }
        let mut gone = Ok(false);
        let prunable = alert_prunable(&alert, until, |run| {
            gone = run_gone(runs, request, run);
            matches!(gone, Ok(true))
        });
        gone?;
        if prunable {
            selected.push(alert);
        }
    }
    Ok((selected, last, true))
}

/// Deletes the alerts [`PruneRequest::alerts_until_ms`] selects, with their pending and
/// per-run index entries and their mentions in streak records, at most [`PRUNE_BATCH`] per
/// durable write transaction. Runs are deleted first, so an alert whose run went is seen so.
pub(super) fn prune(db: &Database, request: &PruneRequest) -> Result<u64, Fault> {
    let Some(until) = request.alerts_until_ms else {
        return Ok(0);
    };
    let mut deleted = 0;
    let mut after: Option<String> = None;
    loop {
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        let finished = {
            let mut alerts = txn.open_table(ALERTS)?;
            let mut pending = txn.open_table(ALERTS_PENDING)?;
            let mut by_run = txn.open_table(ALERTS_BY_RUN)?;
            let mut streaks = txn.open_table(STREAKS)?;
            let runs = txn.open_table(RUNS)?;
            let (selected, last, finished) = prunable_batch(
                &alerts,
                &runs,
                request,
                until,
                after.as_deref(),
                PRUNE_BATCH,
            )?;
            let mut touched: HashMap<String, Option<Streak>> = HashMap::new();
            for alert in &selected {
                alerts.remove(alert.id.as_str())?;
                pending.remove(alert.id.as_str())?;
                if let Some(run) = alert.run_ids.first() {
                    let key = (run.as_str(), alert.kind.as_str());
                    let ours = by_run.get(key)?.is_some_and(|v| v.value() == alert.id);
                    if ours {
                        by_run.remove(key)?;
                    }
                }
                if !touched.contains_key(&alert.workflow) {
                    let streak = load_streak(&streaks, &alert.workflow)?;
                    touched.insert(alert.workflow.clone(), streak);
                }
                if let Some(Some(streak)) = touched.get_mut(&alert.workflow) {
                    streak.forget(&alert.id);
                }
            }
            for (workflow, streak) in &touched {
                if let Some(streak) = streak {
                    store_streak(&mut streaks, workflow, streak)?;
                }
            }
            deleted += selected.len() as u64;
            after = last;
            finished || after.is_none()
        };
        txn.commit()?;
        if finished {
            return Ok(deleted);
        }
    }
}

/// Counts what [`prune`] would delete, in one read transaction.
pub(super) fn count_prunable(txn: &ReadTransaction, request: &PruneRequest) -> Result<u64, Fault> {
    let Some(until) = request.alerts_until_ms else {
        return Ok(0);
    };
    let (Some(alerts), Some(runs)) = (read_table(txn, ALERTS)?, read_table(txn, RUNS)?) else {
        return Ok(0);
    };
    let mut count = 0;
    let mut after: Option<String> = None;
    loop {
        let (selected, last, finished) =
            prunable_batch(&alerts, &runs, request, until, after.as_deref(), usize::MAX)?;
        count += selected.len() as u64;
        if finished || last.is_none() {
            return Ok(count);
        }
        after = last;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use crate::store::{
        AlertFilter, Claim, DeliveryOutcome, DeliveryState, RedbStore, RunEnd, RunEndOutcome,
        RunId, Store, StoreError, Write,
    };

    fn failed(run: &str) -> Write {
        Write::RunEnded(RunEnd {
            workflow: "w".into(),
            run_id: RunId::from(run),
            outcome: RunEndOutcome::Failed,
            error: Some("boom".into()),
            trace_id: "t".into(),
            alert_after: Some(3),
            cooldown_ms: 0,
            sinks: vec!["log".into(), "webhook".into()],
            at_ms: 1,
        })
    }

    #[tokio::test]
    async fn a_refused_end_counts_nothing_and_pending_deliveries_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flow.redb");
        let store = RedbStore::open(&path).unwrap();
        for run in ["a", "b", "c"] {
            store.commit(vec![failed(run)]).await.unwrap();
        }
        // The end of an execution that lost its claim is refused whole: the streak stays at 3
        let stale = Claim {
            run_id: RunId::from("d"),
            token: 7,
        };
        let refused = store
            .commit(vec![Write::CheckClaim(stale), failed("d")])
            .await;
        assert!(matches!(refused, Err(StoreError::ClaimLost { .. })));
        let alerts = store.alerts(&AlertFilter::default()).await.unwrap();
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].failures, 3);
        let id = alerts[0].id.clone();
        store
            .commit(vec![Write::AlertDelivery {
                alert_id: id.clone(),
                index: 0,
                outcome: DeliveryOutcome::Delivered,
            }])
            .await
            .unwrap();
        drop(store);

        let store = RedbStore::open(&path).unwrap();
        let pending = AlertFilter {
            pending: true,
            ..AlertFilter::default()
        };
        let alerts = store.alerts(&pending).await.unwrap();
        assert_eq!(alerts.len(), 1, "the webhook delivery is still pending");
        assert_eq!(alerts[0].deliveries[0].state, DeliveryState::Delivered);
        assert_eq!(alerts[0].deliveries[1].state, DeliveryState::Pending);
        store
            .commit(vec![Write::AlertDelivery {
                alert_id: id,
                index: 1,
                outcome: DeliveryOutcome::Delivered,
            }])
            .await
            .unwrap();
        assert!(store.alerts(&pending).await.unwrap().is_empty());
        assert_eq!(
            store.alerts(&AlertFilter::default()).await.unwrap().len(),
            1
        );
    }

    fn overdue(run: &str) -> Write {
        Write::RunAlert(crate::store::RunAlert {
            kind: crate::store::AlertKind::MaxDuration,
            workflow: "w".into(),
            run_id: RunId::from(run),
            trace_id: "t".into(),
            error: Some("late".into()),
            detail: None,
            sinks: vec!["log".into()],
            at_ms: 5,
        })
    }

    #[tokio::test]
    async fn two_stores_that_both_saw_an_overdue_run_open_one_alert_and_a_cancel_resolves_it() {
        use crate::store::{
            AlertKind, AlertState, ClaimOutcome, ClaimRequest, RunRecord, RunStatus, Sharing,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flow.redb");
        // Two handles on one file, as two worker processes have
        let one = RedbStore::open_with(&path, Sharing::Shared).unwrap();
        let two = RedbStore::open_with(&path, Sharing::Shared).unwrap();
        for (id, status) in [("late", RunStatus::Running), ("done", RunStatus::Succeeded)] {
            let mut run = RunRecord::new(
                id.into(),
                "w",
                status,
                serde_json::json!(null),
                "t".into(),
                1,
            );
            // Executing: the held-runs index lists it
            run.owner = crate::store::Owner::current().filter(|_| status == RunStatus::Running);
            one.commit(vec![Write::PutRun(run)]).await.unwrap();
        }
        // Created at 1 with a max duration of 9: due at 10
        let limits = vec![("w".to_owned(), 9)];
        let early = one.overdue_runs(&limits, 9, 10).await.unwrap();
        assert!(early.runs.is_empty());
        assert_eq!(early.next_deadline_ms, Some(10), "when to look again");
        let seen_one = one.overdue_runs(&limits, 10, 10).await.unwrap().runs;
        let seen_two = two.overdue_runs(&limits, 10, 10).await.unwrap().runs;
        let ids = |runs: &[RunRecord]| runs.iter().map(|r| r.id.to_string()).collect::<Vec<_>>();
        assert_eq!(
            ids(&seen_one),
            ["late"],
            "only the unfinished run is overdue"
        );
        assert_eq!(ids(&seen_two), ["late"]);
        // Both decide to alert at the same time; then one of them looks again
        let (a, b) = tokio::join!(
            one.commit(vec![overdue("late"), overdue("done")]),
            two.commit(vec![overdue("late")])
        );
        a.unwrap();
        b.unwrap();
        one.commit(vec![overdue("late")]).await.unwrap();
        let alerts = two.alerts(&AlertFilter::default()).await.unwrap();
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].kind, AlertKind::MaxDuration);
        assert_eq!(alerts[0].run_ids, [RunId::from("late")]);
        let after = one.overdue_runs(&limits, 20, 10).await.unwrap();
        assert!(after.runs.is_empty(), "an alerted run is not overdue again");
        assert_eq!(after.next_deadline_ms, None, "and not watched any more");

        // An operator cancels the run while nobody executes it: the claim resolves the alert
        let cancel = ClaimRequest {
            owner: None,
            lease: std::time::Duration::ZERO,
            take: Box::new(|run: &mut RunRecord| {
                run.status = RunStatus::Cancelled;
                true
            }),
        };
        let claimed = two.claim(&RunId::from("late"), cancel).await.unwrap();
        assert!(matches!(claimed, ClaimOutcome::Claimed { .. }));
        let alerts = one.alerts(&AlertFilter::default()).await.unwrap();
        assert_eq!(alerts[0].state, AlertState::Resolved);
        assert_eq!(alerts[0].resolved_by, Some(RunId::from("late")));
        assert_eq!(
            alerts[0].deliveries.len(),
            2,
            "fired and resolved, to the log"
        );
    }
}

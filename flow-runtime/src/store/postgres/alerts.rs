//! Alerts on PostgreSQL beyond what the writer does in its batches: finding the runs past their
//! max duration, and pruning the alerts nothing needs any more.
//!
//! The rules (what is overdue, what may be pruned) are [`alert_prunable`]'s and the redb store's
//! ([`crate::store::Store::overdue_runs`]); this module only maps them to queries on the
//! indexed columns. It locks streak rows before alert rows, as the writer does.

use super::claims::{transaction, Fail};
use super::{decode_run, is_conflict, ms, runs_of, Shared};
use crate::store::{
    alert_prunable, AlertRecord, OverdueRuns, PruneRequest, RunRecord, RunStatus, StoreError,
    Streak,
};
use std::collections::{HashMap, HashSet};
use tokio_postgres::types::ToSql;

/// The unfinished runs of one workflow created at or before `$3` minus its limit, with no
/// max-duration alert, oldest first: a range of the `runs_watched` index per workflow.
const OVERDUE: &str = r#"
SELECT r.id, r.record::text, r.created_at, l.max_ms
FROM UNNEST($1::text[], $2::int8[]) AS l(workflow, max_ms)
CROSS JOIN LATERAL (
    SELECT id, record, created_at FROM runs
    WHERE workflow = l.workflow AND (queued OR timer_at IS NOT NULL OR held)
      AND status IN ('queued', 'running', 'sleeping')
      AND created_at <= $3 - l.max_ms
      AND NOT EXISTS (SELECT 1 FROM alerts_by_run a
                      WHERE a.run_id = runs.id AND a.kind = 'max-duration')
    ORDER BY created_at, id LIMIT $4
) r
"#;

/// Per workflow, the creation time of its oldest watched run not overdue yet.
const NEXT_OVERDUE: &str = r#"
SELECT l.max_ms, n.created_at
FROM UNNEST($1::text[], $2::int8[]) AS l(workflow, max_ms)
CROSS JOIN LATERAL (
    SELECT created_at FROM runs
    WHERE workflow = l.workflow AND (queued OR timer_at IS NOT NULL OR held)
      AND status IN ('queued', 'running', 'sleeping')
      AND created_at > $3 - l.max_ms
      AND NOT EXISTS (SELECT 1 FROM alerts_by_run a
                      WHERE a.run_id = runs.id AND a.kind = 'max-duration')
    ORDER BY created_at, id LIMIT 1
) n
"#;

fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// [`crate::store::Store::overdue_runs`]: two index range reads per workflow, pipelined.
pub(super) async fn overdue(
    shared: &Shared,
    limits: &[(String, u64)],
    now_ms: u64,
    limit: usize,
) -> Result<OverdueRuns, StoreError> {
    let mut found = OverdueRuns::default();
    if limits.is_empty() {
        return Ok(found);
    }
    let workflows: Vec<&str> = limits.iter().map(|(w, _)| w.as_str()).collect();
    let maxes: Vec<i64> = limits.iter().map(|(_, max)| ms(*max)).collect();
    let now = ms(now_ms);
    // One more than asked per workflow: finding it says the list was cut short
    let per_workflow = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
    let client = shared.client().await?;
    let err = |e| shared.error(e);
    let (late, next) = futures::try_join!(
        client.prepare_cached(OVERDUE),
        client.prepare_cached(NEXT_OVERDUE)
    )
    .map_err(err)?;
    let late_params: [&(dyn ToSql + Sync); 4] = [&workflows, &maxes, &now, &per_workflow];
    let next_params: [&(dyn ToSql + Sync); 3] = [&workflows, &maxes, &now];
    let (late, next) = futures::try_join!(
        client.query(&late, &late_params),
        client.query(&next, &next_params)
    )
    .map_err(err)?;
    let mut deadline = |at: u64| {
        found.next_deadline_ms = Some(found.next_deadline_ms.map_or(at, |n| n.min(at)));
    };
    for row in &next {
        deadline(unsigned(row.get(1)).saturating_add(unsigned(row.get(0))));
    }
    let deadlines: HashMap<String, u64> = late
        .iter()
        .map(|row| {
            let at = unsigned(row.get(2)).saturating_add(unsigned(row.get(3)));
            (row.get::<_, String>(0), at)
        })
        .collect();
    let mut runs: Vec<RunRecord> = runs_of(&late)
        .into_iter()
        .filter(|run| {
            matches!(
                run.status,
                RunStatus::Queued | RunStatus::Running | RunStatus::Sleeping
            )
        })
        .collect();
    runs.sort_by_key(|run| (deadlines.get(run.id.as_str()).copied(), run.id.clone()));
    if runs.len() > limit {
        runs.truncate(limit);
        deadline(now_ms);
    }
    found.runs = runs;
    Ok(found)
}

/// Alerts one pruning transaction looks at, and deletes at most.
const PRUNE_BATCH: i64 = 1000;

/// The prunable alerts among the next [`PRUNE_BATCH`] after `after` (ids are UUID v7, so in
/// creation order: the walk ends at the first alert created after the cutoff). Returns them,
/// the last id looked at, and whether the walk reached its end.
async fn prunable_batch(
    client: &deadpool_postgres::Object,
    request: &PruneRequest,
    until: u64,
    after: &str,
) -> Result<(Vec<AlertRecord>, Option<String>, bool), tokio_postgres::Error> {
    let stmt = client
        .prepare_cached("SELECT id, record::text FROM alerts WHERE id > $1 ORDER BY id LIMIT $2")
        .await?;
    let rows = client.query(&stmt, &[&after, &PRUNE_BATCH]).await?;
    let mut finished = (rows.len() as i64) < PRUNE_BATCH;
    let last = rows.last().map(|row| row.get::<_, String>(0));
    let mut candidates = Vec::new();
    for row in &rows {
        let Ok(alert) = serde_json::from_str::<AlertRecord>(row.get(1)) else {
            continue;
        };
        if alert.created_at_ms > until {
            finished = true;
            break;
        }
        candidates.push(alert);
    }
    let selected = select(client, request, until, candidates).await?;
    Ok((selected, last, finished))
}

/// Of `alerts`, those [`alert_prunable`] lets go, reading the runs the per-run ones are about.
async fn select(
    client: &deadpool_postgres::Object,
    request: &PruneRequest,
    until: u64,
    alerts: Vec<AlertRecord>,
) -> Result<Vec<AlertRecord>, tokio_postgres::Error> {
    let runs: Vec<&str> = alerts
        .iter()
        .filter(|a| a.kind.is_per_run())
        .filter_map(|a| a.run_ids.first().map(|r| r.as_str()))
        .collect();
    // A run that is there but cannot be read is not known to be gone: its alert stays
    let mut present: HashMap<String, Option<RunRecord>> = HashMap::new();
    if !runs.is_empty() {
        let stmt = client
            .prepare_cached("SELECT id, record::text FROM runs WHERE id = ANY($1)")
            .await?;
        for row in client.query(&stmt, &[&runs]).await? {
            let id: String = row.get(0);
            let run = decode_run(&id, row.get(1)).ok();
            present.insert(id, run);
        }
    }
    Ok(alerts
        .into_iter()
        .filter(|alert| {
            alert_prunable(alert, until, |run| match present.get(run.as_str()) {
                None => true,
                Some(Some(run)) => request.selects(run),
                Some(None) => false,
            })
        })
        .collect())
}

/// Counts what [`prune`] would delete.
pub(super) async fn count_prunable(
    shared: &Shared,
    request: &PruneRequest,
) -> Result<u64, StoreError> {
    let Some(until) = request.alerts_until_ms else {
        return Ok(0);
    };
    let client = shared.client().await?;
    let mut count = 0;
    let mut after = String::new();
    loop {
        let (selected, last, finished) = prunable_batch(&client, request, until, &after)
            .await
            .map_err(|e| shared.error(e))?;
        count += selected.len() as u64;
        match last {
            Some(last) if !finished => after = last,
            _ => return Ok(count),
        }
    }
}

/// Deletes the alerts [`PruneRequest::alerts_until_ms`] selects, with their per-run entries and
/// their mentions in streak records, one transaction per batch. Runs are pruned first, so an
/// alert whose run went is seen so.
pub(super) async fn prune(shared: &Shared, request: &PruneRequest) -> Result<u64, StoreError> {
    let Some(until) = request.alerts_until_ms else {
        return Ok(0);
    };
    let mut deleted = 0;
    let mut after = String::new();
    loop {
        let (count, last, finished) = transaction!(shared, |client| {
            let (selected, last, finished) =
                prunable_batch(&client, request, until, &after).await?;
            if selected.is_empty() {
                return Ok((0, last, finished));
            }
            // Streaks first, then the alerts again under their lock, as the writer locks them
            let mut workflows: Vec<&str> = selected.iter().map(|a| a.workflow.as_str()).collect();
            workflows.sort_unstable();
            workflows.dedup();
            let lock_streaks = client
                .prepare_cached(
                    "SELECT workflow, record::text FROM alert_streaks WHERE workflow = ANY($1)
                     ORDER BY workflow FOR UPDATE",
                )
                .await?;
            let streaks = client.query(&lock_streaks, &[&workflows]).await?;
            let ids: Vec<&str> = selected.iter().map(|a| a.id.as_str()).collect();
            let lock_alerts = client
                .prepare_cached(
                    "SELECT id, record::text FROM alerts WHERE id = ANY($1)
                     ORDER BY id FOR UPDATE SKIP LOCKED",
                )
                .await?;
            let fresh: Vec<AlertRecord> = client
                .query(&lock_alerts, &[&ids])
                .await?
                .iter()
                .filter_map(|row| serde_json::from_str(row.get(1)).ok())
                .collect();
            // Changed since it was read (a delivery, a resolve): decided on what it is now
            let gone = select(&client, request, until, fresh).await?;
            let gone_ids: Vec<&str> = gone.iter().map(|a| a.id.as_str()).collect();
            let gone_set: HashSet<&str> = gone_ids.iter().copied().collect();
            let (mut keep, mut keep_json, mut drop) = (Vec::new(), Vec::new(), Vec::new());
            for row in &streaks {
                let workflow: String = row.get(0);
                let Ok(mut streak) = serde_json::from_str::<Streak>(row.get(1)) else {
                    continue;
                };
                let before = streak.clone();
                for id in &gone_set {
                    streak.forget(id);
                }
                if streak == before {
                    continue;
                }
                if streak.is_empty() && streak.last_fired_ms.is_none() {
                    drop.push(workflow);
                } else if let Ok(json) = serde_json::to_string(&streak) {
                    keep.push(workflow);
                    keep_json.push(json);
                }
            }
            let (del_alerts, del_by_run, put_streaks, del_streaks) = futures::try_join!(
                client.prepare_cached("DELETE FROM alerts WHERE id = ANY($1)"),
                client.prepare_cached("DELETE FROM alerts_by_run WHERE alert_id = ANY($1)"),
                client.prepare_cached(
                    "UPDATE alert_streaks s SET record = u.record::json
                     FROM UNNEST($1::text[], $2::text[]) AS u(workflow, record)
                     WHERE s.workflow = u.workflow"
                ),
                client.prepare_cached("DELETE FROM alert_streaks WHERE workflow = ANY($1)"),
            )?;
            let by_id: [&(dyn ToSql + Sync); 1] = [&gone_ids];
            let put: [&(dyn ToSql + Sync); 2] = [&keep, &keep_json];
            let dropped: [&(dyn ToSql + Sync); 1] = [&drop];
            let (count, _, _, _) = futures::try_join!(
                client.execute(&del_alerts, &by_id),
                client.execute(&del_by_run, &by_id),
                client.execute(&put_streaks, &put),
                client.execute(&del_streaks, &dropped),
            )?;
            Ok((count, last, finished))
        })?;
        deleted += count;
        match last {
            Some(last) if !finished => after = last,
            _ => return Ok(deleted),
        }
    }
}

//! Alerts in redb: the tables of alerts, of alerts with pending deliveries and of streaks, and
//! the writes that change them inside the writer's transaction.
//!
//! The rules (when an alert opens, resolves, what is pending) are [`AlertBook`]'s; this module
//! only loads and stores records. A record that does not decode is skipped with a warning: an
//! alert must never stop a run's end from being written.

use super::{encode, read_table, Fault};
use crate::store::{
    record_delivery, AlertBook, AlertFilter, AlertRecord, DeliveryOutcome, RunEnd, RunEndOutcome,
    Streak,
};
use redb::{ReadTransaction, ReadableTable, Table, TableDefinition, WriteTransaction};

/// Alert id (UUID v7, so in creation order) → JSON [`AlertRecord`].
const ALERTS: TableDefinition<&str, &[u8]> = TableDefinition::new("alerts");
/// Alert id → when its next pending delivery is due (ms since the epoch); only alerts with a
/// pending delivery, so the deliverer never scans delivered ones.
const ALERTS_PENDING: TableDefinition<&str, u64> = TableDefinition::new("alerts_pending");
/// Workflow name → JSON [`Streak`].
const STREAKS: TableDefinition<&str, &[u8]> = TableDefinition::new("alert_streaks");

struct Tables<'txn> {
    alerts: Table<'txn, &'static str, &'static [u8]>,
    pending: Table<'txn, &'static str, u64>,
    fault: Option<Fault>,
}

impl Tables<'_> {
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
}

fn open(txn: &WriteTransaction) -> Result<Tables<'_>, Fault> {
    Ok(Tables {
        alerts: txn.open_table(ALERTS)?,
        pending: txn.open_table(ALERTS_PENDING)?,
        fault: None,
    })
}

/// [`crate::store::Write::RunEnded`]: the streak and the alerts, in the run's end commit.
pub(super) fn run_ended<'t>(
    txn: &'t WriteTransaction,
    streaks: &mut Option<redb::Table<'t, &'static str, &'static [u8]>>,
    end: &RunEnd,
) -> Result<(), Fault> {
    // Opened once per transaction: a batch ends hundreds of runs
    if streaks.is_none() {
        *streaks = Some(txn.open_table(STREAKS)?);
    }
    let Some(streaks) = streaks.as_mut() else {
        return Ok(());
    };
    let stored = streaks
        .get(end.workflow.as_str())?
        .map(|v| v.value().to_vec());
    if stored.is_none() && end.alert_after.is_none() && end.outcome != RunEndOutcome::NeedsAttention
    {
        // Nothing to count and nothing open: the common case writes nothing
        return Ok(());
    }
    let mut streak: Streak = match stored {
        None => Streak::default(),
        Some(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|err| {
            tracing::warn!(workflow = %end.workflow, error = %err, "a stored alert streak could not be decoded; it starts again");
            Streak::default()
        }),
    };
    let mut tables = open(txn)?;
    tables.run_ended(&mut streak, end, || uuid::Uuid::now_v7().to_string());
    if let Some(fault) = tables.fault.take() {
        return Err(fault);
    }
    if streak.is_empty() && streak.last_fired_ms.is_none() {
        streaks.remove(end.workflow.as_str())?;
    } else {
        match encode(format_args!("alert streak of {}", end.workflow), &streak) {
            Ok(json) => {
                streaks.insert(end.workflow.as_str(), json.as_slice())?;
            }
            Err(err) => tracing::warn!(error = %err, "an alert streak could not be stored"),
        }
    }
    Ok(())
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
}

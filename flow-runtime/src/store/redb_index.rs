//! The redb store's indexes of runs: which runs wait in a queue, which wake at a time, which
//! execute. Each index is derived from the run record alone ([`RunKeys::of`]) and rewritten in
//! the same transaction as the record, so an index never disagrees with the runs it points at.
//! This module knows the tables and the rules; it never decides what a worker does with them.

use super::redb::Fault;
use super::{RunRecord, RunStatus};
use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};

/// (creation time in ms since the epoch, run id) → nothing: the runs in creation order, so that
/// listing the newest runs reads those runs only.
pub(super) const RUNS_BY_CREATION: TableDefinition<(u64, &str), ()> =
    TableDefinition::new("runs_by_creation");
/// (queue, priority, enqueue time in ms, run id) → nothing: the queued runs a worker may take
/// now, in the order it takes them (lower priority first, then first in, first out).
pub(super) const QUEUED: TableDefinition<(&str, i64, u64, &str), ()> =
    TableDefinition::new("queued");
/// (wake-up time in ms, run id) → nothing: runs that wait for a time with no process holding
/// them (a delayed enqueue, a durable sleep or a backoff that released its worker).
pub(super) const TIMERS: TableDefinition<(u64, &str), ()> = TableDefinition::new("timers");
/// (queue, concurrency key or "", run id) → nothing: the runs of a queue that have started and
/// not finished, counted against the queue's concurrency limits.
pub(super) const IN_FLIGHT: TableDefinition<(&str, &str, &str), ()> =
    TableDefinition::new("in_flight");
/// Run id → nothing: runs that a process holds (running or sleeping with an owner), where a
/// worker looks for runs whose process died.
pub(super) const HELD: TableDefinition<&str, ()> = TableDefinition::new("held");
/// (queue, start time in ms, run id) → nothing: when each run of a queue started, for the
/// queue's rate limit. Entries older than the longest rate period are removed as it is read.
pub(super) const STARTS: TableDefinition<(&str, u64, &str), ()> = TableDefinition::new("starts");

/// The index entries one run record implies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct RunKeys {
    created_at_ms: u64,
    queued: Option<(String, i64, u64)>,
    timer: Option<u64>,
    in_flight: Option<(String, String)>,
    held: bool,
}

impl RunKeys {
    pub(super) fn of(run: &RunRecord) -> RunKeys {
        let executing = matches!(run.status, RunStatus::Running | RunStatus::Sleeping);
        RunKeys {
            created_at_ms: run.created_at_ms,
            queued: match (&run.queue, run.status, run.wake_at_ms) {
                (Some(q), RunStatus::Queued, None) => {
                    Some((q.name.clone(), i64::from(q.priority), run.created_at_ms))
                }
                _ => None,
            },
            timer: run
                .wake_at_ms
                .filter(|_| run.owner.is_none() && !run.status.is_finished()),
            in_flight: run.queue.as_ref().filter(|_| executing).map(|q| {
                (
                    q.name.clone(),
                    q.concurrency_key.clone().unwrap_or_default(),
                )
            }),
            held: executing && run.owner.is_some(),
        }
    }
}

/// Every index table, open in one write transaction.
pub(super) struct Indexes<'t> {
    pub(super) by_creation: Table<'t, (u64, &'static str), ()>,
    pub(super) queued: Table<'t, (&'static str, i64, u64, &'static str), ()>,
    pub(super) timers: Table<'t, (u64, &'static str), ()>,
    pub(super) in_flight: Table<'t, (&'static str, &'static str, &'static str), ()>,
    pub(super) held: Table<'t, &'static str, ()>,
    pub(super) starts: Table<'t, (&'static str, u64, &'static str), ()>,
}

impl<'t> Indexes<'t> {
    pub(super) fn open(txn: &'t WriteTransaction) -> Result<Indexes<'t>, Fault> {
        Ok(Indexes {
            by_creation: txn.open_table(RUNS_BY_CREATION)?,
            queued: txn.open_table(QUEUED)?,
            timers: txn.open_table(TIMERS)?,
            in_flight: txn.open_table(IN_FLIGHT)?,
            held: txn.open_table(HELD)?,
            starts: txn.open_table(STARTS)?,
        })
    }

    /// Moves run `id`'s entries from what `old` implied to what `new` implies.
    pub(super) fn update(
        &mut self,
        id: &str,
        old: Option<&RunKeys>,
        new: Option<&RunKeys>,
    ) -> Result<(), Fault> {
        if old == new {
            return Ok(());
        }
        if let Some(old) = old {
            self.remove(id, old)?;
        }
        if let Some(new) = new {
            self.insert(id, new)?;
        }
        Ok(())
    }

    fn remove(&mut self, id: &str, keys: &RunKeys) -> Result<(), Fault> {
        self.by_creation.remove((keys.created_at_ms, id))?;
        if let Some((queue, priority, at)) = &keys.queued {
            self.queued.remove((queue.as_str(), *priority, *at, id))?;
        }
        if let Some(at) = keys.timer {
            self.timers.remove((at, id))?;
        }
        if let Some((queue, key)) = &keys.in_flight {
            self.in_flight.remove((queue.as_str(), key.as_str(), id))?;
        }
        if keys.held {
            self.held.remove(id)?;
        }
        Ok(())
    }

    fn insert(&mut self, id: &str, keys: &RunKeys) -> Result<(), Fault> {
        self.by_creation.insert((keys.created_at_ms, id), ())?;
        if let Some((queue, priority, at)) = &keys.queued {
            self.queued
                .insert((queue.as_str(), *priority, *at, id), ())?;
        }
        if let Some(at) = keys.timer {
            self.timers.insert((at, id), ())?;
        }
        if let Some((queue, key)) = &keys.in_flight {
            self.in_flight
                .insert((queue.as_str(), key.as_str(), id), ())?;
        }
        if keys.held {
            self.held.insert(id, ())?;
        }
        Ok(())
    }

    /// How many runs of `queue` are in flight; with `key`, only those with that concurrency key.
    pub(super) fn count_in_flight(&self, queue: &str, key: Option<&str>) -> Result<u64, Fault> {
        let mut n = 0;
        let range = match key {
            Some(key) => self
                .in_flight
                .range((queue, key, "")..(queue, key, "\u{10FFFF}"))?,
            None => self
                .in_flight
                .range((queue, "", "")..(queue, "\u{10FFFF}", ""))?,
        };
        for entry in range {
            entry?;
            n += 1;
        }
        Ok(n)
    }

    /// How many runs of `queue` started since `since_ms`; drops older entries.
    pub(super) fn count_starts(&mut self, queue: &str, since_ms: u64) -> Result<u64, Fault> {
        let old: Vec<(u64, String)> = self
            .starts
            .range((queue, 0, "")..(queue, since_ms, ""))?
            .map(|e| e.map(|(k, _)| (k.value().1, k.value().2.to_owned())))
            .collect::<Result<_, _>>()?;
        for (at, id) in &old {
            self.starts.remove((queue, *at, id.as_str()))?;
        }
        let mut n = 0;
        for entry in self
            .starts
            .range((queue, since_ms, "")..=(queue, u64::MAX, "\u{10FFFF}"))?
        {
            entry?;
            n += 1;
        }
        Ok(n)
    }
}

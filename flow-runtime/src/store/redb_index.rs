//! The redb store's indexes of runs: which runs wait in a queue, which wake at a time, which
//! execute. Each index is derived from the run record alone ([`RunKeys::of`]) and rewritten in
//! the same transaction as the record, so an index never disagrees with the runs it points at.
//! This module knows the tables and the rules; it never decides what a worker does with them.

use super::redb::Fault;
use super::{QueuePlace, RunRecord, RunStatus};
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
        RunKeys::from_fields(
            run.created_at_ms,
            run.status,
            run.queue.as_ref(),
            run.wake_at_ms,
            run.owner.is_some(),
        )
    }

    /// The keys of a stored record, read without building its input and output: the old
    /// record of every run write is read this way, and an input may be megabytes.
    pub(super) fn of_stored(bytes: &[u8]) -> Option<RunKeys> {
        #[derive(serde::Deserialize)]
        struct Fields {
            created_at_ms: u64,
            status: RunStatus,
            #[serde(default)]
            queue: Option<QueuePlace>,
            #[serde(default)]
            wake_at_ms: Option<u64>,
            #[serde(default)]
            owner: Option<serde::de::IgnoredAny>,
        }
        let f: Fields = serde_json::from_slice(bytes).ok()?;
        Some(RunKeys::from_fields(
            f.created_at_ms,
            f.status,
            f.queue.as_ref(),
            f.wake_at_ms,
            f.owner.is_some(),
        ))
    }

    fn from_fields(
        created_at_ms: u64,
        status: RunStatus,
        queue: Option<&QueuePlace>,
        wake_at_ms: Option<u64>,
        owned: bool,
    ) -> RunKeys {
        let executing = matches!(status, RunStatus::Running | RunStatus::Sleeping);
        RunKeys {
            created_at_ms,
            queued: match (queue, status, wake_at_ms) {
                (Some(q), RunStatus::Queued, None) => {
                    Some((q.name.clone(), i64::from(q.priority), created_at_ms))
                }
                _ => None,
            },
            timer: wake_at_ms.filter(|_| !owned && !status.is_finished()),
            in_flight: queue.filter(|_| executing).map(|q| {
                (
                    q.name.clone(),
                    q.concurrency_key.clone().unwrap_or_default(),
                )
            }),
            held: executing && owned,
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

/// The index tables, opened on first use: a transaction of step checkpoints alone (the common
/// case) never opens them, which keeps a lone step's commit as cheap as before the indexes.
pub(super) struct LazyIndexes<'t> {
    txn: &'t WriteTransaction,
    open: Option<Indexes<'t>>,
}

impl<'t> LazyIndexes<'t> {
    pub(super) fn new(txn: &'t WriteTransaction) -> LazyIndexes<'t> {
        LazyIndexes { txn, open: None }
    }

    pub(super) fn get(&mut self) -> Result<&mut Indexes<'t>, Fault> {
        if self.open.is_none() {
            self.open = Some(Indexes::open(self.txn)?);
        }
        match self.open.as_mut() {
            Some(index) => Ok(index),
            None => unreachable!("opened just above"),
        }
    }
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

    /// Moves run `id`'s entries from what `old` implied to what `new` implies, touching only
    /// the entries that differ: a run's end, say, changes its held entry and leaves its
    /// creation entry where it is (each B-tree write costs the writer thread microseconds).
    pub(super) fn update(
        &mut self,
        id: &str,
        old: Option<&RunKeys>,
        new: Option<&RunKeys>,
    ) -> Result<(), Fault> {
        if old == new {
            return Ok(());
        }
        /// What one index holds for the run: `old` out, `new` in, nothing if they agree.
        fn moved<T: PartialEq>(
            old: Option<&RunKeys>,
            new: Option<&RunKeys>,
            part: impl Fn(&RunKeys) -> Option<T>,
        ) -> Option<(Option<T>, Option<T>)> {
            let (old, new) = (old.and_then(&part), new.and_then(&part));
            (old != new).then_some((old, new))
        }
        if let Some((old, new)) = moved(old, new, |k| Some(k.created_at_ms)) {
            if let Some(at) = old {
                self.by_creation.remove((at, id))?;
            }
            if let Some(at) = new {
                self.by_creation.insert((at, id), ())?;
            }
        }
        if let Some((old, new)) = moved(old, new, |k| k.queued.clone()) {
            if let Some((queue, priority, at)) = old {
                self.queued.remove((queue.as_str(), priority, at, id))?;
            }
            if let Some((queue, priority, at)) = new {
                self.queued.insert((queue.as_str(), priority, at, id), ())?;
            }
        }
        if let Some((old, new)) = moved(old, new, |k| k.timer) {
            if let Some(at) = old {
                self.timers.remove((at, id))?;
            }
            if let Some(at) = new {
                self.timers.insert((at, id), ())?;
            }
        }
        if let Some((old, new)) = moved(old, new, |k| k.in_flight.clone()) {
            if let Some((queue, key)) = old {
                self.in_flight.remove((queue.as_str(), key.as_str(), id))?;
            }
            if let Some((queue, key)) = new {
                self.in_flight
                    .insert((queue.as_str(), key.as_str(), id), ())?;
            }
        }
        if let Some((old, new)) = moved(old, new, |k| k.held.then_some(())) {
            if old.is_some() {
                self.held.remove(id)?;
            }
            if new.is_some() {
                self.held.insert(id, ())?;
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Owner, RunId};

    fn run(status: RunStatus, owner: bool, queue: bool, wake: Option<u64>) -> RunRecord {
        RunRecord {
            id: RunId::from("r"),
            workflow: "w".into(),
            status,
            input: serde_json::json!({ "big": "x".repeat(1000) }),
            output: None,
            error: None,
            trace_id: "t".into(),
            created_at_ms: 7,
            updated_at_ms: 8,
            executions: 1,
            attention: None,
            owner: owner.then(|| Owner {
                machine_id: String::new(),
                pid: 1,
                start_ticks: 2,
                boot_id: "b".into(),
            }),
            lease_expires_at_ms: None,
            queue: queue.then(|| QueuePlace {
                name: "q".into(),
                priority: -3,
                not_before_ms: None,
                concurrency_key: Some("k".into()),
            }),
            wake_at_ms: wake,
            scheduled: None,
            app_version: None,
            traceparent: None,
        }
    }

    #[test]
    fn keys_read_from_the_stored_bytes_equal_the_keys_of_the_record() {
        for status in RunStatus::ALL {
            for owner in [false, true] {
                for queue in [false, true] {
                    for wake in [None, Some(99)] {
                        let run = run(status, owner, queue, wake);
                        let bytes = serde_json::to_vec(&run).expect("a record encodes");
                        assert_eq!(RunKeys::of_stored(&bytes), Some(RunKeys::of(&run)));
                    }
                }
            }
        }
    }

    #[test]
    fn each_index_holds_the_runs_its_rule_names() {
        let queued = RunKeys::of(&run(RunStatus::Queued, false, true, None));
        assert_eq!(queued.queued, Some(("q".into(), -3, 7)));
        assert_eq!(queued.timer, None);
        let delayed = RunKeys::of(&run(RunStatus::Queued, false, true, Some(99)));
        assert_eq!((delayed.queued.clone(), delayed.timer), (None, Some(99)));
        let released = RunKeys::of(&run(RunStatus::Sleeping, false, true, Some(99)));
        assert_eq!(released.timer, Some(99));
        assert_eq!(released.in_flight, Some(("q".into(), "k".into())));
        assert!(!released.held);
        let running = RunKeys::of(&run(RunStatus::Running, true, false, None));
        assert!(running.held);
        assert_eq!((running.in_flight.clone(), running.timer), (None, None));
        let done = RunKeys::of(&run(RunStatus::Succeeded, false, true, Some(99)));
        assert_eq!(done.queued, None);
        assert_eq!(done.timer, None);
        assert_eq!(done.in_flight, None);
    }

    /// Every entry the index tables hold, as text, in table order.
    fn entries(index: &Indexes<'_>) -> Vec<String> {
        let mut all = Vec::new();
        for e in index.by_creation.iter().expect("reads") {
            all.push(format!("created {:?}", e.expect("reads").0.value()));
        }
        for e in index.queued.iter().expect("reads") {
            all.push(format!("queued {:?}", e.expect("reads").0.value()));
        }
        for e in index.timers.iter().expect("reads") {
            all.push(format!("timer {:?}", e.expect("reads").0.value()));
        }
        for e in index.in_flight.iter().expect("reads") {
            all.push(format!("in flight {:?}", e.expect("reads").0.value()));
        }
        for e in index.held.iter().expect("reads") {
            all.push(format!("held {:?}", e.expect("reads").0.value()));
        }
        all
    }

    /// What [`entries`] shows for run `r` with `keys`, derived from the keys alone.
    fn entries_of(keys: &RunKeys) -> Vec<String> {
        let mut all = vec![format!("created {:?}", (keys.created_at_ms, "r"))];
        if let Some((queue, priority, at)) = &keys.queued {
            all.push(format!(
                "queued {:?}",
                (queue.as_str(), *priority, *at, "r")
            ));
        }
        if let Some(at) = keys.timer {
            all.push(format!("timer {:?}", (at, "r")));
        }
        if let Some((queue, key)) = &keys.in_flight {
            all.push(format!(
                "in flight {:?}",
                (queue.as_str(), key.as_str(), "r")
            ));
        }
        if keys.held {
            all.push(format!("held {:?}", "r"));
        }
        all
    }

    /// The value, or a panic naming the store fault.
    fn ok<T>(result: Result<T, Fault>) -> T {
        result.unwrap_or_else(|fault| panic!("{}", fault.at(std::path::Path::new("i.redb"))))
    }

    #[test]
    fn an_update_leaves_exactly_the_entries_of_the_new_keys() {
        // Every pair of states, each moved from the other: the entries after the move are
        // exactly the ones the new keys name
        let dir = tempfile::tempdir().expect("a temporary directory");
        let db = redb::Database::create(dir.path().join("i.redb")).expect("a store");
        let mut states = Vec::new();
        for status in RunStatus::ALL {
            for owner in [false, true] {
                for queue in [false, true] {
                    for wake in [None, Some(99)] {
                        let keys = RunKeys::of(&run(status, owner, queue, wake));
                        // The same entries with other values: each index's entry moves
                        let mut other = keys.clone();
                        other.created_at_ms += 1;
                        other.queued = other.queued.map(|(q, priority, at)| (q, priority + 1, at));
                        other.timer = other.timer.map(|at| at + 1);
                        other.in_flight = other.in_flight.map(|(q, key)| (q, format!("{key}2")));
                        states.push(keys);
                        states.push(other);
                    }
                }
            }
        }
        let mut checked = 0;
        for old in &states {
            for new in &states {
                let txn = db.begin_write().expect("a transaction");
                {
                    let mut index = ok(Indexes::open(&txn));
                    let expected = entries_of(new);
                    ok(index.update("r", None, Some(new)));
                    assert_eq!(entries(&index), expected, "writing {new:?}");
                    ok(index.update("r", Some(new), None));
                    assert!(entries(&index).is_empty(), "{new:?} left entries behind");
                    ok(index.update("r", None, Some(old)));
                    ok(index.update("r", Some(old), Some(new)));
                    assert_eq!(entries(&index), expected, "moving {old:?} to {new:?}");
                    ok(index.update("r", Some(new), None));
                }
                txn.abort().expect("aborts");
                checked += 1;
            }
        }
        assert_eq!(checked, 128 * 128);
    }
}

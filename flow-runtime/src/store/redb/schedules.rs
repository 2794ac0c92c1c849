//! Schedules in redb: the table of schedule records and the write that fires ticks inside the
//! writer's transaction. The rules are [`apply_fire`]'s; this module loads and stores records and
//! creates runs the way `create_run` does (first claim token, index entries).

use super::{decode_run, encode, put_run, read_table, Fault, RunKeys};
use crate::store::redb_index::Indexes;
use crate::store::{
    apply_fire, apply_pause, RunId, RunRecord, RunStatus, ScheduleBook, ScheduleOutcome,
    ScheduleRecord, ScheduleWrite, StoreError,
};
use redb::{ReadTransaction, ReadableTable, Table, TableDefinition, WriteTransaction};

/// Schedule name → JSON [`ScheduleRecord`].
const SCHEDULES: TableDefinition<&str, &[u8]> = TableDefinition::new("schedules");

/// Every schedule record, by name; a record that does not decode is skipped with a warning.
pub(super) fn list(txn: &ReadTransaction) -> Result<Vec<ScheduleRecord>, Fault> {
    let Some(table) = read_table(txn, SCHEDULES)? else {
        return Ok(Vec::new());
    };
    let mut records = Vec::new();
    for entry in table.iter()? {
        let (name, bytes) = entry?;
        match serde_json::from_slice(bytes.value()) {
            Ok(record) => records.push(record),
            Err(err) => tracing::warn!(
                schedule = name.value(),
                error = %err,
                "a stored schedule could not be decoded; it is left out"
            ),
        }
    }
    Ok(records)
}

/// The runs table seen through [`ScheduleBook`]; the first redb error is kept.
struct Book<'a, 'txn> {
    runs: &'a mut Table<'txn, &'static str, &'static [u8]>,
    claims: &'a mut Table<'txn, &'static str, u64>,
    index: &'a mut Indexes<'txn>,
    fault: Option<Fault>,
    error: Option<StoreError>,
}

impl Book<'_, '_> {
    fn try_status(&mut self, id: &RunId) -> Result<Option<RunStatus>, Fault> {
        let Some(bytes) = self.runs.get(id.as_str())? else {
            return Ok(None);
        };
        // A run that does not decode still exists: treat it as unfinished, so that overlap
        // rules never start a second run beside one they cannot read
        Ok(Some(
            decode_run(id.as_str(), bytes.value()).map_or(RunStatus::Running, |r| r.status),
        ))
    }

    fn try_create(&mut self, run: &RunRecord) -> Result<bool, Fault> {
        let id = run.id.as_str();
        if self.runs.get(id)?.is_some() {
            return Ok(false);
        }
        let json = match encode(format_args!("run {id}"), run) {
            Ok(json) => json,
            Err(err) => {
                self.error.get_or_insert(err);
                return Ok(false);
            }
        };
        put_run(self.runs, self.index, id, &json, &RunKeys::of(run))?;
        let token = self.claims.get(id)?.map_or(0, |t| t.value()) + 1;
        self.claims.insert(id, token)?;
        Ok(true)
    }
}

impl ScheduleBook for Book<'_, '_> {
    fn status(&mut self, id: &RunId) -> Option<RunStatus> {
        match self.try_status(id) {
            Ok(status) => status,
            Err(fault) => {
                self.fault.get_or_insert(fault);
                None
            }
        }
    }

    fn create(&mut self, run: RunRecord) -> bool {
        match self.try_create(&run) {
            Ok(created) => created,
            Err(fault) => {
                self.fault.get_or_insert(fault);
                false
            }
        }
    }
}

/// Applies `write` in the writer's transaction. The outer error fails the whole batch (redb
/// failed); the inner one only this request (a record that does not encode).
pub(super) fn write<'txn>(
    txn: &'txn WriteTransaction,
    runs: &mut Table<'txn, &'static str, &'static [u8]>,
    claims: &mut Table<'txn, &'static str, u64>,
    index: &mut Indexes<'txn>,
    write: ScheduleWrite,
) -> Result<Result<ScheduleOutcome, StoreError>, Fault> {
    let mut table = txn.open_table(SCHEDULES)?;
    let name = match &write {
        ScheduleWrite::Fire(fire) => fire.name.clone(),
        ScheduleWrite::Pause { name, .. } => name.clone(),
    };
    let record = match table.get(name.as_str())? {
        Some(bytes) => match serde_json::from_slice::<ScheduleRecord>(bytes.value()) {
            Ok(record) => Some(record),
            Err(err) => {
                return Ok(Err(StoreError::Encoding(format!(
                    "the stored record of schedule {name} could not be decoded: {err}"
                ))))
            }
        },
        None => None,
    };
    let outcome = match write {
        ScheduleWrite::Fire(fire) => {
            let mut book = Book {
                runs,
                claims,
                index,
                fault: None,
                error: None,
            };
            let outcome = apply_fire(record, fire, &mut book);
            if let Some(fault) = book.fault {
                return Err(fault);
            }
            if let Some(err) = book.error {
                return Ok(Err(err));
            }
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
        match encode(format_args!("schedule {name}"), record) {
            Ok(json) => {
                table.insert(name.as_str(), json.as_slice())?;
            }
            Err(err) => return Ok(Err(err)),
        }
    }
    Ok(Ok(outcome))
}

//! Schedule records: what the store keeps of each schedule (how far its ticks are handled, a
//! pause, the ticks buffered behind a running run) and the rules that turn a batch of ticks
//! into runs ([`apply_fire`]).
//!
//! The engine computes the ticks (cron, time zone, catch-up); the store decides, in one write
//! transaction, which of them become runs: it knows whether the schedule's last run is still
//! going, and its record moves only if no other worker moved it first. The rules are plain
//! functions over records so that every backend applies the same ones. A tick's run id is
//! derived from the schedule and the tick ([`tick_run_id`]), so creating it twice stores it once.

use super::{RunId, RunRecord, RunStatus};
use serde::{Deserialize, Serialize};

pub use crate::engine::registry::Overlap;

/// What the store keeps of one schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleRecord {
    /// The schedule's name (the workflow's, or the `[flow.schedules.NAME]` key).
    pub name: String,
    /// Every tick at or before this time (ms since the epoch) is handled: fired, buffered or
    /// skipped. A schedule seen for the first time starts at that moment, not at the epoch.
    pub through_ms: u64,
    /// Set while the schedule is paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<Pause>,
    /// The run of the latest tick that became a run (or a trigger, or a backfill).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunId>,
    /// The tick of `last_run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_tick_ms: Option<u64>,
    /// Ticks waiting for the running run to finish (overlap `buffer_one`/`buffer_all`), each as
    /// the queued run it becomes, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buffered: Vec<RunRecord>,
    /// Ticks skipped so far: missed while no worker ran (catch-up), while paused, or while the
    /// previous run ran (overlap `skip`).
    #[serde(default)]
    pub skipped: u64,
    /// The latest skipped tick and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_skip: Option<Skip>,
    /// Last change, ms since the epoch.
    pub updated_at_ms: u64,
}

/// A pause: who asked is not known, but when and why is kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    /// The operator's note (`schedules pause NAME --note "..."`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// When it was paused.
    pub at_ms: u64,
}

/// A tick that did not become a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skip {
    /// The tick.
    pub tick_ms: u64,
    /// Why.
    pub reason: SkipReason,
}

/// Why a tick did not become a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SkipReason {
    /// It passed while no worker ran, and the catch-up policy or window left it out.
    Missed,
    /// The schedule was paused.
    Paused,
    /// The previous run still ran (overlap `skip`, or `buffer_one` with one tick waiting).
    Overlap,
}

impl SkipReason {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Missed => "missed",
            SkipReason::Paused => "paused",
            SkipReason::Overlap => "overlap",
        }
    }
}

impl ScheduleRecord {
    /// A schedule seen for the first time at `now_ms`: its ticks start after now.
    pub fn new(name: impl Into<String>, now_ms: u64) -> ScheduleRecord {
        ScheduleRecord {
            name: name.into(),
            through_ms: now_ms,
            paused: None,
            last_run: None,
            last_tick_ms: None,
            buffered: Vec::new(),
            skipped: 0,
            last_skip: None,
            updated_at_ms: now_ms,
        }
    }

    fn skip(&mut self, tick_ms: u64, reason: SkipReason) {
        self.skipped += 1;
        if self.last_skip.as_ref().is_none_or(|s| s.tick_ms <= tick_ms) {
            self.last_skip = Some(Skip { tick_ms, reason });
        }
    }
}

/// The run id of a schedule's tick: `nightly@2026-11-28T02:00:00Z` (the tick in UTC, to the
/// second; a tick with a fraction of a second keeps its milliseconds).
pub fn tick_run_id(schedule: &str, tick_ms: u64) -> RunId {
    RunId::from(format!("{schedule}@{}", format_tick(tick_ms)))
}

/// A tick as RFC 3339 in UTC: seconds, and milliseconds only when there are some.
pub fn format_tick(tick_ms: u64) -> String {
    let ts = jiff::Timestamp::from_millisecond(i64::try_from(tick_ms).unwrap_or(i64::MAX))
        .unwrap_or(jiff::Timestamp::MAX);
    if tick_ms.is_multiple_of(1000) {
        format!("{ts:.0}")
    } else {
        format!("{ts:.3}")
    }
}

/// A change to a schedule's record, applied in one write transaction ([`super::Store::schedule`]).
#[derive(Clone, Debug)]
pub enum ScheduleWrite {
    /// Ticks fire: the worker's pass over due ticks, a trigger or a backfill.
    Fire(ScheduleFire),
    /// Pause (`Some`) or resume (`None`). A resume moves `through_ms` to `now_ms`, so the
    /// ticks of the pause are not caught up afterwards.
    Pause {
        /// The schedule.
        name: String,
        /// The pause, or `None` to resume.
        pause: Option<Pause>,
        /// Now.
        now_ms: u64,
    },
}

/// Ticks to fire for one schedule ([`ScheduleWrite::Fire`]).
#[derive(Clone, Debug)]
pub struct ScheduleFire {
    /// The schedule.
    pub name: String,
    /// For the worker's pass: the record's `through_ms` the engine computed its ticks from
    /// (`None` when it saw no record) and the new one. If the record moved meanwhile (another
    /// worker handled these ticks), nothing is written. `None` for a trigger or a backfill,
    /// which fire their ticks whatever the record says.
    pub advance: Option<(Option<u64>, u64)>,
    /// Ticks left out by the catch-up policy or window (or while paused), to be recorded as
    /// skipped.
    pub skipped: Vec<(u64, SkipReason)>,
    /// The ticks to fire, oldest first, each as the queued run it becomes (id from
    /// [`tick_run_id`]).
    pub runs: Vec<(u64, RunRecord)>,
    /// What to do with a tick while the previous run is unfinished.
    pub overlap: Overlap,
    /// Now.
    pub now_ms: u64,
}

/// What became of a [`ScheduleWrite`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScheduleOutcome {
    /// The record moved meanwhile (another worker fired these ticks); nothing was written.
    pub stale: bool,
    /// Runs created now (including a buffered tick released because the last run finished).
    pub created: Vec<RunId>,
    /// Ticks whose run already existed (a repeated backfill, a second worker).
    pub existing: Vec<RunId>,
    /// Ticks now waiting for the running run.
    pub buffered: Vec<RunId>,
    /// Ticks skipped because the previous run is unfinished.
    pub skipped_overlap: Vec<RunId>,
    /// The record after the write.
    pub record: Option<ScheduleRecord>,
}

/// What the rules need from the backend inside its transaction.
pub trait ScheduleBook {
    /// The status of a run, if it exists.
    fn status(&mut self, id: &RunId) -> Option<RunStatus>;
    /// Creates `run` unless its id exists; `true` if created.
    fn create(&mut self, run: RunRecord) -> bool;
}

/// Whether a run of this status is still going for the overlap policy: queued, running,
/// sleeping, or waiting for an operator.
fn unfinished(status: RunStatus) -> bool {
    !status.is_finished()
}

/// Applies `fire` to `record` (a new record when `None`), creating runs through `book`.
/// Returns `None` when the record moved since the engine read it (the write is stale).
pub fn apply_fire(
    record: Option<ScheduleRecord>,
    fire: ScheduleFire,
    book: &mut impl ScheduleBook,
) -> ScheduleOutcome {
    if let Some((expected, _)) = fire.advance {
        if record.as_ref().map(|r| r.through_ms) != expected {
            return ScheduleOutcome {
                stale: true,
                record,
                ..ScheduleOutcome::default()
            };
        }
    }
    let mut record = record.unwrap_or_else(|| ScheduleRecord::new(&fire.name, fire.now_ms));
    let mut outcome = ScheduleOutcome::default();
    if let Some((_, through)) = fire.advance {
        record.through_ms = record.through_ms.max(through);
    }
    for (tick, reason) in &fire.skipped {
        record.skip(*tick, *reason);
    }
    // A buffered tick goes first once the run before it finished
    release_buffered(&mut record, book, &mut outcome);
    for (tick, run) in fire.runs {
        let id = run.id.clone();
        // A tick that is a run already (a repeated backfill) is neither skipped nor buffered
        // again, whatever the overlap: it is reported as existing and counts nowhere else
        if book.status(&id).is_some() || record.buffered.iter().any(|r| r.id == id) {
            outcome.existing.push(id);
            continue;
        }
        let busy = record
            .last_run
            .as_ref()
            .and_then(|last| book.status(last))
            .is_some_and(unfinished)
            || !record.buffered.is_empty();
        match (busy, fire.overlap) {
            (true, Overlap::Skip) => {
                record.skip(tick, SkipReason::Overlap);
                outcome.skipped_overlap.push(id);
            }
            (true, Overlap::BufferOne) if !record.buffered.is_empty() => {
                record.skip(tick, SkipReason::Overlap);
                outcome.skipped_overlap.push(id);
            }
            (true, Overlap::BufferOne | Overlap::BufferAll) => {
                record.buffered.push(run);
                outcome.buffered.push(id);
            }
            (false, _) | (true, Overlap::Allow) => {
                if book.create(run) {
                    outcome.created.push(id.clone());
                } else {
                    outcome.existing.push(id.clone());
                }
                if record.last_tick_ms.is_none_or(|t| t <= tick) {
                    record.last_run = Some(id);
                    record.last_tick_ms = Some(tick);
                }
            }
        }
    }
    record.updated_at_ms = fire.now_ms;
    outcome.record = Some(record);
    outcome
}

/// Creates the oldest buffered tick's run if the last run finished.
fn release_buffered(
    record: &mut ScheduleRecord,
    book: &mut impl ScheduleBook,
    outcome: &mut ScheduleOutcome,
) {
    if record.buffered.is_empty() {
        return;
    }
    let busy = record
        .last_run
        .as_ref()
        .and_then(|last| book.status(last))
        .is_some_and(unfinished);
    if busy {
        return;
    }
    let run = record.buffered.remove(0);
    let id = run.id.clone();
    let tick = run.scheduled.as_ref().map_or(0, |s| s.tick_ms);
    if book.create(run) {
        outcome.created.push(id.clone());
    } else {
        outcome.existing.push(id.clone());
    }
    record.last_run = Some(id);
    record.last_tick_ms = Some(tick);
}

/// Applies a pause or resume to `record` (a new record when `None`).
pub fn apply_pause(
    record: Option<ScheduleRecord>,
    name: &str,
    pause: Option<Pause>,
    now_ms: u64,
) -> ScheduleRecord {
    let mut record = record.unwrap_or_else(|| ScheduleRecord::new(name, now_ms));
    if pause.is_none() && record.paused.is_some() {
        record.through_ms = record.through_ms.max(now_ms);
    }
    record.paused = pause;
    record.updated_at_ms = now_ms;
    record
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Book(HashMap<RunId, RunStatus>);

    impl ScheduleBook for Book {
        fn status(&mut self, id: &RunId) -> Option<RunStatus> {
            self.0.get(id).copied()
        }
        fn create(&mut self, run: RunRecord) -> bool {
            if self.0.contains_key(&run.id) {
                return false;
            }
            self.0.insert(run.id, RunStatus::Queued);
            true
        }
    }

    fn run(tick: u64) -> (u64, RunRecord) {
        let mut run = RunRecord::new(
            tick_run_id("s", tick),
            "w",
            RunStatus::Queued,
            serde_json::Value::Null,
            String::new(),
            tick,
        );
        run.scheduled = Some(super::super::ScheduledTick {
            schedule: "s".into(),
            tick_ms: tick,
        });
        (tick, run)
    }

    fn fire(
        record: Option<ScheduleRecord>,
        ticks: &[u64],
        overlap: Overlap,
        book: &mut Book,
    ) -> ScheduleOutcome {
        let expected = record.as_ref().map(|r| r.through_ms);
        apply_fire(
            record,
            ScheduleFire {
                name: "s".into(),
                advance: Some((expected, ticks.last().copied().unwrap_or(0))),
                skipped: Vec::new(),
                runs: ticks.iter().map(|t| run(*t)).collect(),
                overlap,
                now_ms: ticks.last().copied().unwrap_or(0),
            },
            book,
        )
    }

    #[test]
    fn tick_ids_are_utc_to_the_second() {
        assert_eq!(
            tick_run_id("nightly", 1_764_295_200_000).as_str(),
            "nightly@2025-11-28T02:00:00Z"
        );
        assert_eq!(format_tick(1_500), "1970-01-01T00:00:01.500Z");
    }

    #[test]
    fn overlap_policies_decide_what_a_tick_does_while_the_last_run_runs() {
        for (overlap, created, buffered, skipped) in [
            (Overlap::Skip, 1, 0, 2),
            (Overlap::BufferOne, 1, 1, 1),
            (Overlap::BufferAll, 1, 2, 0),
            (Overlap::Allow, 3, 0, 0),
        ] {
            let mut book = Book::default();
            let out = fire(None, &[1000, 2000, 3000], overlap, &mut book);
            assert_eq!(out.created.len(), created, "{overlap:?}");
            assert_eq!(out.buffered.len(), buffered, "{overlap:?}");
            assert_eq!(out.skipped_overlap.len(), skipped, "{overlap:?}");
            let record = out.record.expect("record");
            assert_eq!(record.through_ms, 3000);
            // The first run finishes: the next pass releases one buffered tick
            book.0.insert(tick_run_id("s", 1000), RunStatus::Succeeded);
            let out = fire(Some(record), &[], overlap, &mut book);
            let released = usize::from(buffered > 0);
            assert_eq!(out.created.len(), released, "{overlap:?}");
            if released == 1 {
                assert_eq!(out.created[0], tick_run_id("s", 2000));
            }
        }
    }

    #[test]
    fn a_stale_pass_writes_nothing_and_a_repeated_tick_exists_once() {
        let mut book = Book::default();
        let first = fire(None, &[1000], Overlap::Allow, &mut book);
        let record = first.record.expect("record");
        // A second worker computed from no record: stale
        let out = apply_fire(
            Some(record.clone()),
            ScheduleFire {
                name: "s".into(),
                advance: Some((None, 1000)),
                skipped: Vec::new(),
                runs: vec![run(1000)],
                overlap: Overlap::Allow,
                now_ms: 1000,
            },
            &mut book,
        );
        assert!(out.stale);
        assert!(out.created.is_empty());
        // A backfill of the same tick finds its run
        let out = apply_fire(
            Some(record),
            ScheduleFire {
                name: "s".into(),
                advance: None,
                skipped: Vec::new(),
                runs: vec![run(1000)],
                overlap: Overlap::Allow,
                now_ms: 5000,
            },
            &mut book,
        );
        assert_eq!(out.existing, vec![tick_run_id("s", 1000)]);
        assert!(out.created.is_empty());
    }

    #[test]
    fn a_repeated_backfill_finds_its_runs_while_they_are_unfinished() {
        let backfill = |record, overlap, book: &mut Book| {
            apply_fire(
                record,
                ScheduleFire {
                    name: "s".into(),
                    advance: None,
                    skipped: Vec::new(),
                    runs: vec![run(1000), run(2000), run(3000)],
                    overlap,
                    now_ms: 5000,
                },
                book,
            )
        };
        for overlap in [
            Overlap::Skip,
            Overlap::BufferOne,
            Overlap::BufferAll,
            Overlap::Allow,
        ] {
            let mut book = Book::default();
            let first = backfill(None, Overlap::Allow, &mut book);
            assert_eq!(first.created.len(), 3);
            // The three runs are still queued: a second backfill, by any policy, finds them
            let out = backfill(first.record, overlap, &mut book);
            assert_eq!(out.existing.len(), 3, "{overlap:?}");
            assert!(
                out.created.is_empty() && out.buffered.is_empty(),
                "{overlap:?}"
            );
            assert!(out.skipped_overlap.is_empty(), "{overlap:?}");
            assert_eq!(out.record.expect("record").skipped, 0, "{overlap:?}");
        }
    }
}

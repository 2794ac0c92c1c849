//! Units: a fan-out over many items, one checkpointed *unit* per item.
//!
//! A unit runs the caller's async closure for one item under the item's key; steps called inside
//! it are keyed under the unit, and its outcome is recorded as a `flow::unit` step record. A
//! resume replays succeeded units without running them and re-executes failed and unfinished
//! ones. A staged rollout processes the units whose key hashes below a share of the key space,
//! then pauses the run; error budgets stop new units once failures pass a threshold. This module
//! owns the fan-out loop, the rollout hash and the report; the engine persists and pauses runs.
//!
//! The rollout hash is part of the store format and never changes: FNV-1a 64 over the key's
//! UTF-8 bytes, modulo 10,000, gives a bucket; a unit is in a rollout of `p` percent when its
//! bucket is below `p × 100`. A 5% rollout is thus a subset of a 25% one, in every process and
//! every version. It only picks units; it never identifies a record. A unit's key is the
//! caller's string as given, and the steps inside a unit are keyed like any step (the step
//! module's canonical-JSON hash), so there is one key hash for stored records.

use crate::engine::classify::{Classify, ErrorClass, Failure};
use crate::engine::context::{self, Abort, Frame, RunCtx};
use crate::store::{now_ms, StepId, StepRecord, StepStatus, Write};
use futures::stream::{FuturesUnordered, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The step name of unit records.
pub const UNIT_STEP: &str = "flow::unit";

/// How many failures a report keeps with their errors; the rest are counted.
const KEPT_FAILURES: usize = 100;

/// The rollout bucket of a unit key, 0 to 9,999 (see the module docs).
pub fn rollout_bucket(key: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash % 10_000
}

/// Whether the unit `key` is in a rollout of `percent` (0 to 100).
pub fn in_rollout(key: &str, percent: f64) -> bool {
    (rollout_bucket(key) as f64) < percent * 100.0
}

/// One failed unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitFailure {
    /// The unit's key.
    pub key: String,
    /// Its error.
    pub error: String,
}

/// What a fan-out did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UnitsReport {
    /// Units that succeeded, in this execution or an earlier one.
    pub succeeded: u64,
    /// Of those, the ones replayed from an earlier execution without running.
    pub replayed: u64,
    /// Units that failed.
    pub failed: u64,
    /// The first failures with their errors (at most 100; `failed` counts them all).
    pub failures: Vec<UnitFailure>,
    /// Units left out by a staged rollout.
    pub skipped_by_rollout: u64,
    /// Units not started: after an error budget tripped, or left out by a unit filter.
    pub not_started: u64,
}

impl UnitsReport {
    fn summary(&self) -> String {
        format!(
            "{} units succeeded ({} replayed), {} failed, {} skipped by the rollout, {} not started",
            self.succeeded, self.replayed, self.failed, self.skipped_by_rollout, self.not_started
        )
    }
}

/// Why a fan-out stopped early.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum UnitsError {
    /// Some units failed (the others all ran). Resuming the run (`runs retry-failed <id>`)
    /// re-executes only the failed and unfinished units.
    #[error("{} of {} units failed (first: {}); fix the cause and retry the failed units", .report.failed, .report.failed + .report.succeeded, .report.failures.first().map(|f| format!("{}: {}", f.key, f.error)).unwrap_or_default())]
    Failed {
        /// The whole report.
        report: UnitsReport,
    },
    /// An error budget was exceeded: no new units were started, in-flight ones finished.
    #[error("error budget exceeded: {threshold} ({failed} of {processed} units failed); no new units were started")]
    BudgetExceeded {
        /// The threshold that tripped, such as `max_failure_rate 5% after 50 units`.
        threshold: String,
        /// Failed units when it tripped.
        failed: u64,
        /// Finished units when it tripped.
        processed: u64,
        /// The whole report, in-flight units included.
        report: UnitsReport,
    },
}

/// A budget trip is a decision, not a glitch: retrying cannot help.
impl Classify for UnitsError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Permanent
    }
}

impl From<UnitsError> for Failure {
    fn from(e: UnitsError) -> Self {
        Failure::permanent(e)
    }
}

/// Live counts of the fan-outs of runs executing in this process, for progress displays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnitCounts {
    /// Succeeded units.
    pub succeeded: u64,
    /// Failed units.
    pub failed: u64,
    /// Units skipped by the rollout.
    pub skipped: u64,
    /// Units started in this execution.
    pub started: u64,
    /// Milliseconds since the fan-out began.
    pub elapsed_ms: u64,
    /// How many items the fan-out has, when the source knows (an iterator with an exact size).
    pub total: Option<u64>,
}

fn live() -> &'static Mutex<HashMap<String, UnitCounts>> {
    static LIVE: OnceLock<Mutex<HashMap<String, UnitCounts>>> = OnceLock::new();
    LIVE.get_or_init(Default::default)
}

/// The live counts of run `run_id`'s fan-out, if one executes in this process.
pub fn progress(run_id: &str) -> Option<UnitCounts> {
    live().lock().ok()?.get(run_id).copied()
}

/// A fan-out being configured; see [`units`].
pub struct Units<S, K> {
    items: S,
    key: K,
    allow_failures: bool,
    concurrency: usize,
    max_failure_rate: Option<(f64, u64)>,
    max_failures: Option<u64>,
    rollout: Option<f64>,
}

/// A fan-out over `items`, one unit per item, keyed by `key` (stable across executions: it
/// identifies the unit's checkpoints and places it in rollouts).
///
/// ```no_run
/// # use flow_runtime as flow;
/// # #[flow::step(idempotency_key = id, retry = "none")]
/// # async fn push(id: &str) -> Result<(), flow::Failure> { Ok(()) }
/// # async fn demo(ids: Vec<String>) -> Result<(), flow::Failure> {
/// let report = flow::units(ids, |id| id.clone())
///     .concurrency(16)
///     .max_failure_rate(5.0, 50)
///     .run(|id| async move { push(&id).await })
///     .await?;
/// println!("{} units failed", report.failed);
/// # Ok(()) }
/// ```
pub fn units<I, K>(items: I, key: K) -> Units<futures::stream::Iter<I::IntoIter>, K>
where
    I: IntoIterator,
    K: Fn(&I::Item) -> String,
{
    units_stream(futures::stream::iter(items), key)
}

/// [`units`] over a stream, pulled lazily: a fan-out of 100,000 items never holds them all.
pub fn units_stream<S, K>(items: S, key: K) -> Units<S, K>
where
    S: Stream,
    K: Fn(&S::Item) -> String,
{
    Units {
        items,
        key,
        allow_failures: false,
        concurrency: 8,
        max_failure_rate: None,
        max_failures: None,
        rollout: None,
    }
}

impl<S, K> Units<S, K>
where
    S: Stream,
    K: Fn(&S::Item) -> String,
{
    /// Return `Ok` with the report even when units failed. By default a fan-out with failed
    /// units returns [`UnitsError::Failed`], so the run fails and can be retried.
    pub fn allow_failures(mut self) -> Self {
        self.allow_failures = true;
        self
    }

    /// At most `n` units in flight at once (default 8).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Error budget: stop starting units once more than `percent` of the finished units failed,
    /// counted from `min_units` finished units on.
    pub fn max_failure_rate(mut self, percent: f64, min_units: u64) -> Self {
        self.max_failure_rate = Some((percent, min_units));
        self
    }

    /// Error budget: stop starting units once `n` units failed.
    pub fn max_failures(mut self, n: u64) -> Self {
        self.max_failures = Some(n);
        self
    }

    /// Process only the units in a rollout of `percent` (overrides the run's `--rollout`).
    pub fn rollout(mut self, percent: f64) -> Self {
        self.rollout = Some(percent.clamp(0.0, 100.0));
        self
    }

    fn tripped(
        max_failures: Option<u64>,
        max_failure_rate: Option<(f64, u64)>,
        failed: u64,
        processed: u64,
    ) -> Option<String> {
        if let Some(max) = max_failures {
            if failed >= max {
                return Some(format!("max_failures {max}"));
            }
        }
        if let Some((percent, min_units)) = max_failure_rate {
            if processed >= min_units && (failed as f64) * 100.0 > percent * processed as f64 {
                return Some(format!(
                    "max_failure_rate {percent}% after {min_units} units"
                ));
            }
        }
        None
    }

    /// Runs `unit` for every item (in the rollout, not yet succeeded), `concurrency` at a time,
    /// and reports. A failed unit does not stop the others. Inside a run, a rollout or unit
    /// filter that leaves units out pauses the run after this fan-out; an exceeded error budget
    /// returns [`UnitsError::BudgetExceeded`].
    pub async fn run<F, Fut, O, E>(self, mut unit: F) -> Result<UnitsReport, UnitsError>
    where
        F: FnMut(S::Item) -> Fut,
        Fut: Future<Output = Result<O, E>>,
        E: Display,
    {
        let Units {
            items,
            key: key_of,
            allow_failures,
            concurrency,
            max_failure_rate,
            max_failures,
            rollout,
        } = self;
        let run = match context::current() {
            Some(Frame::Run(run)) => Some(run),
            _ => None,
        };
        let rollout = rollout.or_else(|| run.as_ref().and_then(|r| r.options.rollout));
        let only = run.as_ref().and_then(|r| r.options.only_units.clone());
        let run_key = run.as_ref().map(|r| r.run_id.to_string());
        let began = Instant::now();
        let mut last_progress = Instant::now();
        let mut report = UnitsReport::default();
        let mut started = 0u64;
        let mut trip: Option<(String, u64, u64)> = None;
        let total = match items.size_hint() {
            (low, Some(high)) if low == high => Some(low as u64),
            _ => None,
        };
        let mut items = std::pin::pin!(items);
        let mut in_flight = FuturesUnordered::new();
        let mut exhausted = false;

        loop {
            while !exhausted && trip.is_none() && in_flight.len() < concurrency {
                let Some(item) = items.next().await else {
                    exhausted = true;
                    break;
                };
                let key = key_of(&item);
                if rollout.is_some_and(|p| !in_rollout(&key, p)) {
                    report.skipped_by_rollout += 1;
                    continue;
                }
                let id = run.as_ref().map(|r| r.next_step_id(UNIT_STEP, key.clone()));
                if let (Some(run), Some(id)) = (&run, &id) {
                    let done = run
                        .take_checkpoint(id)
                        .is_some_and(|r| r.status == StepStatus::Succeeded);
                    if done {
                        report.succeeded += 1;
                        report.replayed += 1;
                        continue;
                    }
                }
                if only.as_ref().is_some_and(|only| !only.contains(&key)) {
                    report.not_started += 1;
                    continue;
                }
                started += 1;
                in_flight.push(execute(run.clone(), id, key, unit(item)));
            }
            let Some((key, outcome)) = in_flight.next().await else {
                break;
            };
            match outcome {
                Ok(()) => report.succeeded += 1,
                Err(error) => {
                    report.failed += 1;
                    tracing::warn!(unit = %key, error = %error, "unit failed");
                    if report.failures.len() < KEPT_FAILURES {
                        report.failures.push(UnitFailure { key, error });
                    }
                }
            }
            let processed = report.succeeded + report.failed;
            if trip.is_none() {
                if let Some(threshold) =
                    Self::tripped(max_failures, max_failure_rate, report.failed, processed)
                {
                    tracing::error!(
                        alert = true,
                        threshold = %threshold,
                        failed = report.failed,
                        processed,
                        "error budget exceeded; no new units start"
                    );
                    if let Some(run) = &run {
                        let trip = crate::store::BudgetTrip {
                            threshold: threshold.clone(),
                            failed: report.failed,
                            processed,
                            failed_units: report
                                .failures
                                .iter()
                                .take(crate::store::MAX_ALERT_UNITS)
                                .map(|f| f.key.clone())
                                .collect(),
                        };
                        let first = report
                            .failures
                            .first()
                            .map(|f| format!("{}: {}", f.key, f.error));
                        run.alert_budget(trip, first).await;
                    }
                    trip = Some((threshold, report.failed, processed));
                }
            }
            if let Some(run_key) = &run_key {
                let counts = UnitCounts {
                    succeeded: report.succeeded,
                    failed: report.failed,
                    skipped: report.skipped_by_rollout,
                    started,
                    elapsed_ms: began.elapsed().as_millis() as u64,
                    total,
                };
                if let Ok(mut live) = live().lock() {
                    live.insert(run_key.clone(), counts);
                }
            }
            if last_progress.elapsed() >= Duration::from_secs(2) {
                last_progress = Instant::now();
                let secs = began.elapsed().as_secs_f64().max(0.001);
                tracing::info!(
                    succeeded = report.succeeded,
                    failed = report.failed,
                    skipped = report.skipped_by_rollout,
                    units_per_s = (started as f64 / secs).round(),
                    "units progress"
                );
            }
        }
        if let Some(run_key) = &run_key {
            if let Ok(mut live) = live().lock() {
                live.remove(run_key);
            }
        }
        if let Some((threshold, failed, processed)) = trip {
            // Count what never started, so the report accounts for every item.
            while let Some(item) = items.next().await {
                let key = key_of(&item);
                if rollout.is_some_and(|p| !in_rollout(&key, p)) {
                    report.skipped_by_rollout += 1;
                } else {
                    report.not_started += 1;
                }
            }
            return Err(UnitsError::BudgetExceeded {
                threshold,
                failed,
                processed,
                report,
            });
        }
        tracing::info!(summary = %report.summary(), "units done");
        if report.failed > 0 && !allow_failures {
            return Err(UnitsError::Failed { report });
        }
        if let Some(run) = &run {
            if report.skipped_by_rollout > 0 || report.not_started > 0 {
                return run.abort(Abort::Paused(report.summary())).await;
            }
        }
        Ok(report)
    }
}

/// Runs one unit: its steps keyed under it, its outcome recorded (inside a run) before it counts.
async fn execute<O, E: Display>(
    run: Option<Arc<RunCtx>>,
    id: Option<StepId>,
    key: String,
    unit: impl Future<Output = Result<O, E>>,
) -> (String, Result<(), String>) {
    let (Some(run), Some(id)) = (run, id) else {
        let outcome = unit.await.map(|_| ()).map_err(|e| e.to_string());
        return (key, outcome);
    };
    let started_at_ms = now_ms();
    let frame = Frame::Unit(run.clone(), Arc::from(key.as_str()));
    let outcome = context::scope(frame, unit)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    let record = StepRecord {
        run_id: run.run_id.clone(),
        id,
        status: if outcome.is_ok() {
            StepStatus::Succeeded
        } else {
            StepStatus::Failed
        },
        attempt: 1,
        next_attempt_at_ms: None,
        output: None,
        error: outcome.as_ref().err().cloned(),
        error_class: None,
        started_at_ms,
        finished_at_ms: Some(now_ms()),
        args: None,
        failure: None,
    };
    run.persist_deferred(vec![Write::PutStep(record)]).await;
    (key, outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollout_buckets_are_stable_and_nested() {
        // Part of the store format: these values must never change.
        assert_eq!(rollout_bucket(""), 0xcbf2_9ce4_8422_2325 % 10_000);
        let keys: Vec<String> = (0..10_000).map(|i| format!("rec-{i:05}")).collect();
        let five: Vec<&String> = keys.iter().filter(|k| in_rollout(k, 5.0)).collect();
        let quarter: Vec<&String> = keys.iter().filter(|k| in_rollout(k, 25.0)).collect();
        assert!(five.iter().all(|k| in_rollout(k, 25.0)), "5% is inside 25%");
        assert!(
            (400..=600).contains(&five.len()),
            "{} of 10,000 in 5%",
            five.len()
        );
        assert!(
            (2_300..=2_700).contains(&quarter.len()),
            "{} in 25%",
            quarter.len()
        );
        assert!(keys.iter().all(|k| in_rollout(k, 100.0)));
        assert!(keys.iter().all(|k| !in_rollout(k, 0.0)));
    }
}

//! `stats`: per workflow and per step, how many, how often they succeed, which errors, how long
//! they take (p50/p95/p99) and how often they retry, over the runs created in a time window;
//! and the comparison of two such figures.
//!
//! It reads the run and step records the store already keeps, through the operator API, so it
//! works while a worker owns the store. Cost: every run record is decoded once (the window is a
//! filter on the creation time, not an index range), and the steps of the runs inside the
//! window are read, one run at a time. On a store of a million runs that is a full pass over
//! the runs; `runs prune` keeps it bounded. This module computes; it prints nothing.

use crate::engine::Flow;
use crate::store::{ErrorClass, RunFilter, RunRecord, RunStatus, StepRecord, StepStatus};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Which runs a figure is computed over: created in `[from_ms, to_ms)`, of one workflow, last
/// executed by one app version.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct StatsQuery {
    pub from_ms: Option<u64>,
    pub to_ms: Option<u64>,
    pub workflow: Option<String>,
    /// Only runs whose record holds this version ([`RunRecord::app_version`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
    /// Also compute the figures per bucket of this many ms ([`Stats::series`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_ms: Option<u64>,
    /// Only the units of fan-outs whose rollout bucket lies in `[from, to)` percent (a
    /// rollout stage: `0..5` is what `--rollout 5%` processed, `5..25` what `--rollout 25%`
    /// added), and the steps inside them; a workflow's row then counts its units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<(f64, f64)>,
}

impl StatsQuery {
    fn matches(&self, run: &RunRecord) -> bool {
        self.from_ms.is_none_or(|from| run.created_at_ms >= from)
            && self.to_ms.is_none_or(|to| run.created_at_ms < to)
            && self.workflow.as_deref().is_none_or(|w| w == run.workflow)
            && self
                .app_version
                .as_deref()
                .is_none_or(|v| run.app_version.as_deref() == Some(v))
    }
}

/// The figures of one workflow's runs or of one step's calls.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Figures {
    /// Runs created in the window (steps: calls that ran in one of those runs).
    pub count: u64,
    /// Finished: succeeded, failed or cancelled (steps: succeeded or failed).
    pub finished: u64,
    pub succeeded: u64,
    /// Failures by class: steps by their error's class (`transient`, `permanent`,
    /// `unclassified`); runs by how they ended (`failed`, `cancelled`, `needs-attention`).
    pub errors: BTreeMap<String, u64>,
    /// Percentiles of the finished ones' durations, ms (nearest rank).
    pub p50_ms: Option<u64>,
    pub p95_ms: Option<u64>,
    pub p99_ms: Option<u64>,
    /// Attempts beyond the first, summed (steps); for runs, those of all their steps.
    pub retries: u64,
}

impl Figures {
    /// Succeeded over finished; `None` when nothing finished.
    pub(crate) fn success_rate(&self) -> Option<f64> {
        (self.finished > 0).then(|| self.succeeded as f64 / self.finished as f64)
    }

    /// Failed over finished.
    pub(crate) fn error_rate(&self) -> Option<f64> {
        self.success_rate().map(|s| 1.0 - s)
    }

    fn finish(&mut self, mut durations: Vec<u64>) {
        durations.sort_unstable();
        self.p50_ms = percentile(&durations, 50);
        self.p95_ms = percentile(&durations, 95);
        self.p99_ms = percentile(&durations, 99);
    }
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: usize) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// One workflow's figures and its steps'.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct WorkflowStats {
    pub workflow: String,
    pub runs: Figures,
    /// By step name.
    pub steps: BTreeMap<String, Figures>,
}

/// The answer to a [`StatsQuery`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Stats {
    pub query: StatsQuery,
    /// By workflow name.
    pub workflows: Vec<WorkflowStats>,
    /// What the query read: every run record, and the steps of the runs in the window.
    pub runs_read: u64,
    pub steps_read: u64,
    /// With [`StatsQuery::bucket_ms`]: the buckets that hold runs, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub series: Vec<Bucket>,
}

/// The figures of the runs created in one bucket of time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Bucket {
    /// Where it starts (ms since the epoch); it ends [`StatsQuery::bucket_ms`] later.
    pub from_ms: u64,
    /// By workflow name, as in [`Stats::workflows`].
    pub workflows: Vec<WorkflowStats>,
}

/// Computes the figures of the runs matching `query`.
pub(crate) async fn compute(flow: &Flow, query: &StatsQuery) -> Result<Stats, crate::Error> {
    let all = flow
        .runs(&RunFilter {
            workflow: query.workflow.clone(),
            ..RunFilter::default()
        })
        .await?;
    let runs_read = all.len() as u64;
    let mut steps_read = 0;
    let mut by_workflow: BTreeMap<String, Collect> = BTreeMap::new();
    let width = query.bucket_ms.filter(|w| *w > 0);
    let mut by_bucket: BTreeMap<u64, BTreeMap<String, Collect>> = BTreeMap::new();
    for run in all.iter().filter(|run| query.matches(run)) {
        let steps = flow.steps(&run.id).await?;
        steps_read += steps.len() as u64;
        by_workflow
            .entry(run.workflow.clone())
            .or_default()
            .add(run, &steps, query.rollout);
        if let Some(width) = width {
            by_bucket
                .entry(run.created_at_ms - run.created_at_ms % width)
                .or_default()
                .entry(run.workflow.clone())
                .or_default()
                .add(run, &steps, query.rollout);
        }
    }
    let finish = |collected: BTreeMap<String, Collect>| {
        collected
            .into_iter()
            .map(|(workflow, collect)| collect.finish(workflow))
            .collect()
    };
    Ok(Stats {
        query: query.clone(),
        workflows: finish(by_workflow),
        runs_read,
        steps_read,
        series: by_bucket
            .into_iter()
            .map(|(from_ms, collected)| Bucket {
                from_ms,
                workflows: finish(collected),
            })
            .collect(),
    })
}

/// Figures in the making, with the durations their percentiles need.
#[derive(Default)]
struct Collect {
    runs: Figures,
    run_durations: Vec<u64>,
    steps: BTreeMap<String, (Figures, Vec<u64>)>,
}

/// The step records of the units of `steps` whose rollout bucket lies in `[from, to)`
/// percent: each unit's own record and the records of the steps inside it (stored under the
/// unit's key, `unit` or `unit/key`).
fn in_stage(steps: &[StepRecord], (from, to): (f64, f64)) -> Vec<StepRecord> {
    let units: std::collections::HashSet<&str> = steps
        .iter()
        .filter(|s| s.id.name == crate::UNIT_STEP)
        .map(|s| s.id.key.as_str())
        .filter(|key| {
            let bucket = crate::rollout_bucket(key) as f64;
            bucket >= from * 100.0 && bucket < to * 100.0
        })
        .collect();
    steps
        .iter()
        .filter(|s| {
            let unit =
                s.id.key
                    .split_once('/')
                    .map_or(s.id.key.as_str(), |(u, _)| u);
            units.contains(unit)
        })
        .cloned()
        .collect()
}

impl Collect {
    fn add(&mut self, run: &RunRecord, steps: &[StepRecord], rollout: Option<(f64, f64)>) {
        if let Some(stage) = rollout {
            // A stage's figures are its units' (as the workflow's row) and their steps'
            let stage = in_stage(steps, stage);
            let (units, inner): (Vec<StepRecord>, Vec<StepRecord>) = stage
                .into_iter()
                .partition(|s| s.id.name == crate::UNIT_STEP);
            if units.is_empty() {
                return;
            }
            for unit in &units {
                self.runs.count += 1;
                self.runs.retries += u64::from(unit.attempt.saturating_sub(1));
                match unit.status {
                    StepStatus::Succeeded => self.runs.succeeded += 1,
                    StepStatus::Failed => {
                        *self.runs.errors.entry("failed".to_owned()).or_insert(0) += 1;
                    }
                    _ => continue,
                }
                self.runs.finished += 1;
                if let Some(end) = unit.finished_at_ms {
                    self.run_durations
                        .push(end.saturating_sub(unit.started_at_ms));
                }
            }
            self.add_steps(&inner);
            return;
        }
        self.runs.count += 1;
        let ended = match run.status {
            RunStatus::Succeeded => {
                self.runs.succeeded += 1;
                true
            }
            RunStatus::Failed | RunStatus::Cancelled => true,
            _ => false,
        };
        if ended {
            self.runs.finished += 1;
            // The run's end is its record's last change
            self.run_durations
                .push(run.updated_at_ms.saturating_sub(run.created_at_ms));
        }
        if matches!(
            run.status,
            RunStatus::Failed | RunStatus::Cancelled | RunStatus::NeedsAttention
        ) {
            *self
                .runs
                .errors
                .entry(run.status.as_str().to_owned())
                .or_insert(0) += 1;
        }
        self.add_steps(steps);
    }

    fn add_steps(&mut self, steps: &[StepRecord]) {
        for step in steps {
            let retries = u64::from(step.attempt.saturating_sub(1));
            self.runs.retries += retries;
            let (figures, durations) = self.steps.entry(step.id.name.clone()).or_default();
            figures.count += 1;
            figures.retries += retries;
            match step.status {
                StepStatus::Succeeded => figures.succeeded += 1,
                StepStatus::Failed => {
                    let class = match step.error_class {
                        Some(ErrorClass::Transient) => "transient",
                        Some(ErrorClass::Permanent) => "permanent",
                        None => "unclassified",
                    };
                    *figures.errors.entry(class.to_owned()).or_insert(0) += 1;
                }
                _ => continue,
            }
            figures.finished += 1;
            if let Some(end) = step.finished_at_ms {
                durations.push(end.saturating_sub(step.started_at_ms));
            }
        }
    }

    fn finish(mut self, workflow: String) -> WorkflowStats {
        self.runs.finish(std::mem::take(&mut self.run_durations));
        WorkflowStats {
            workflow,
            runs: self.runs,
            steps: self
                .steps
                .into_iter()
                .map(|(name, (mut figures, durations))| {
                    figures.finish(durations);
                    (name, figures)
                })
                .collect(),
        }
    }
}

/// When a change counts as worse.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Thresholds {
    /// p95 grew by more than this share (0.2: 20%) ...
    pub latency: f64,
    /// ... and by at least this many ms (so that 2 ms becoming 3 ms is not news).
    pub min_change_ms: u64,
    /// The error rate grew by more than this many points (0.05: 5 points).
    pub error_rate: f64,
}

impl Thresholds {
    /// The defaults of `stats --compare` (`--latency-threshold 20% --min-change 10ms
    /// --error-threshold 5%`), which the web console's comparison uses too.
    pub(crate) const DEFAULT: Thresholds = Thresholds {
        latency: 0.2,
        min_change_ms: 10,
        error_rate: 0.05,
    };
}

/// How a figure moved from one window to the other.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Change {
    /// `None` for the workflow's own row.
    pub step: Option<String>,
    pub workflow: String,
    pub before: Option<Figures>,
    pub after: Option<Figures>,
    /// p95 after over before, minus one (0.5: 50% slower).
    pub p95_change: Option<f64>,
    /// Error rate after minus before, in points of 1.
    pub error_rate_change: Option<f64>,
    pub latency_worse: bool,
    pub errors_worse: bool,
}

/// Every workflow and step of either side, with the change of each figure.
pub(crate) fn compare(before: &Stats, after: &Stats, limits: Thresholds) -> Vec<Change> {
    type Side<'a> = (Option<&'a Figures>, Option<&'a Figures>);
    let mut rows: BTreeMap<(String, Option<String>), Side<'_>> = BTreeMap::new();
    for (side, stats) in [(0, before), (1, after)] {
        for w in &stats.workflows {
            let named = w.steps.iter().map(|(name, f)| (Some(name.clone()), f));
            for (step, figures) in std::iter::once((None, &w.runs)).chain(named) {
                let row = rows.entry((w.workflow.clone(), step)).or_default();
                if side == 0 {
                    row.0 = Some(figures);
                } else {
                    row.1 = Some(figures);
                }
            }
        }
    }
    rows.into_iter()
        .map(|((workflow, step), (b, a))| {
            let p95 = b.and_then(|b| b.p95_ms).zip(a.and_then(|a| a.p95_ms));
            let p95_change = p95.and_then(|(b, a)| (b > 0).then(|| a as f64 / b as f64 - 1.0));
            let latency_worse = p95.is_some_and(|(b, a)| {
                a > b
                    && a - b >= limits.min_change_ms
                    && a as f64 > b as f64 * (1.0 + limits.latency)
            });
            let error_rate_change = b
                .and_then(Figures::error_rate)
                .zip(a.and_then(Figures::error_rate))
                .map(|(b, a)| a - b);
            let errors_worse = error_rate_change.is_some_and(|d| d > limits.error_rate);
            Change {
                step,
                workflow,
                before: b.cloned(),
                after: a.cloned(),
                p95_change,
                error_rate_change,
                latency_worse,
                errors_worse,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), Some(50));
        assert_eq!(percentile(&v, 95), Some(95));
        assert_eq!(percentile(&v, 99), Some(99));
        assert_eq!(percentile(&[7], 99), Some(7));
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[1, 2, 3, 4], 50), Some(2));
    }
}

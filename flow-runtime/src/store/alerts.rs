//! Alert records: what the store keeps of alerts and of their delivery to each sink.
//!
//! This module owns the record types and the rules that turn the end of a run into alert
//! changes ([`AlertBook::run_ended`]): the streak of consecutive failed runs of a workflow, the
//! alert it opens once per streak, and the "resolved" notice of the next success; and the rules
//! of alerts about one run ([`AlertBook::run_alert`]: a run past its `max_duration`, a tripped
//! error budget), opened once per run and resolved when the run finishes or succeeds. The rules
//! are plain functions over records, so every backend applies them inside the transaction that
//! writes the run's end. It sends nothing: delivery lives in the engine.

use super::RunId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The longest list of run ids an alert or a streak keeps (the most recent ones).
pub const MAX_ALERT_RUNS: usize = 20;

/// What an alert is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertKind {
    /// `alert_after = N` consecutive runs of the workflow failed.
    ConsecutiveFailures,
    /// A run stopped because a step's outcome is unknown; an operator must decide.
    NeedsAttention,
    /// A run has not finished `max_duration` after it was created (queued, running or
    /// sleeping); resolved when it finishes.
    MaxDuration,
    /// A units fan-out's error budget tripped in a run; resolved when the run succeeds (or is
    /// cancelled).
    ErrorBudget,
    /// A schedule's ticks passed while no worker ran and the catch-up policy or window left
    /// them out. Its `run_ids[0]` is the id the first missed tick's run would have had; it never
    /// resolves (a later tick firing does not bring the missed ones back).
    MissedTick,
}

impl AlertKind {
    /// The kebab-case name used by the CLI and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::ConsecutiveFailures => "consecutive-failures",
            AlertKind::NeedsAttention => "needs-attention",
            AlertKind::MaxDuration => "max-duration",
            AlertKind::ErrorBudget => "error-budget",
            AlertKind::MissedTick => "missed-tick",
        }
    }

    /// Whether a later event resolves an alert of this kind; an alert of a kind that never
    /// resolves (a missed tick) is pruned once delivered and old enough.
    pub fn resolves(self) -> bool {
        !matches!(self, AlertKind::MissedTick)
    }

    /// Whether an alert of this kind is about one run (its `run_ids[0]`): once that run is
    /// deleted, nothing can resolve it any more.
    pub fn is_per_run(self) -> bool {
        !matches!(self, AlertKind::ConsecutiveFailures)
    }
}

/// Whether the condition of an alert still holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertState {
    /// The condition holds (the streak goes on, the run still needs attention).
    Open,
    /// A later run succeeded.
    Resolved,
}

/// Which notice of an alert a delivery carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Notice {
    /// The alert fired.
    Fired,
    /// The alert was resolved.
    Resolved,
}

impl Notice {
    /// The kebab-case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Notice::Fired => "fired",
            Notice::Resolved => "resolved",
        }
    }
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryState {
    /// Not sent yet, or sent and failed and waiting for `next_try_ms`.
    Pending,
    /// The sink accepted it.
    Delivered,
    /// Every attempt failed; it is not tried again.
    Failed,
}

/// One notice of an alert, for one sink.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The sink: `log`, `webhook` or `command`.
    pub sink: String,
    /// The notice it carries.
    pub notice: Notice,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts made.
    pub attempts: u32,
    /// When the next attempt is due (ms since the epoch), while pending.
    pub next_try_ms: u64,
    /// The last attempt's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the sink accepted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at_ms: Option<u64>,
    /// The process sending it now ([`DeliveryOutcome::Claimed`]), until `next_try_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_by: Option<String>,
}

impl Delivery {
    fn pending(sink: &str, notice: Notice, now_ms: u64) -> Delivery {
        Delivery {
            sink: sink.to_owned(),
            notice,
            state: DeliveryState::Pending,
            attempts: 0,
            next_try_ms: now_ms,
            last_error: None,
            delivered_at_ms: None,
            claimed_by: None,
        }
    }
}

/// One alert: its condition, the runs behind it and its deliveries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// A stable id (UUID v7): every notice of the alert carries it, so a receiver can drop a
    /// notice it saw before (delivery is at least once).
    pub id: String,
    /// The workflow.
    pub workflow: String,
    /// What it is about.
    pub kind: AlertKind,
    /// Open or resolved.
    pub state: AlertState,
    /// The runs behind it, oldest first (at most [`MAX_ALERT_RUNS`], the most recent).
    pub run_ids: Vec<RunId>,
    /// Consecutive failed runs so far (a consecutive-failures alert).
    #[serde(default)]
    pub failures: u32,
    /// The last run's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The last run's trace id.
    pub trace_id: String,
    /// When it fired, ms since the epoch.
    pub created_at_ms: u64,
    /// When it was resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at_ms: Option<u64>,
    /// The run whose success resolved it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<RunId>,
    /// Its notices, per sink, in the order they are sent.
    pub deliveries: Vec<Delivery>,
    /// The figures of a max-duration or error-budget alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<AlertDetail>,
}

/// What an alert about one run adds to its record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum AlertDetail {
    /// A run past its workflow's `max_duration`.
    MaxDuration {
        /// The limit, in ms.
        max_duration_ms: u64,
        /// When the run was created, ms since the epoch.
        run_created_at_ms: u64,
        /// Where the run stood when the alert opened (`queued`, `running`, `sleeping`).
        status: super::RunStatus,
    },
    /// A tripped error budget of a units fan-out.
    ErrorBudget(BudgetTrip),
    /// Ticks of a schedule that did not run.
    MissedTicks {
        /// The schedule.
        schedule: String,
        /// How many ticks were left out.
        count: u64,
        /// The first and the last of them, ms since the epoch.
        first_ms: u64,
        /// The last.
        last_ms: u64,
    },
}

/// The figures of a tripped error budget.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetTrip {
    /// The threshold that tripped, such as `max_failures 3` or `max_failure_rate 5% after 50
    /// units`.
    pub threshold: String,
    /// Failed units when it tripped.
    pub failed: u64,
    /// Finished units (succeeded and failed) when it tripped.
    pub processed: u64,
    /// The keys of the failed units (at most [`MAX_ALERT_UNITS`], the first ones).
    pub failed_units: Vec<String>,
}

/// The most unit keys an error-budget alert keeps.
pub const MAX_ALERT_UNITS: usize = 20;

/// An alert about one run, to open unless one of its kind was opened for the run before
/// ([`super::Write::RunAlert`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunAlert {
    /// [`AlertKind::MaxDuration`] or [`AlertKind::ErrorBudget`].
    pub kind: AlertKind,
    /// The run's workflow.
    pub workflow: String,
    /// The run.
    pub run_id: RunId,
    /// The run's trace id.
    pub trace_id: String,
    /// What happened, in a sentence.
    pub error: Option<String>,
    /// The figures.
    pub detail: Option<AlertDetail>,
    /// The sinks configured in the process that opens it (`log` first).
    pub sinks: Vec<String>,
    /// Now, ms since the epoch.
    pub at_ms: u64,
}

impl AlertRecord {
    /// When the next pending delivery is due, if one is pending.
    pub fn next_due_ms(&self) -> Option<u64> {
        self.deliveries
            .iter()
            .filter(|d| d.state == DeliveryState::Pending)
            .map(|d| d.next_try_ms)
            .min()
    }

    /// Whether delivery `index` may be sent now: pending, due, and no earlier notice to the
    /// same sink still pending (a "resolved" never overtakes its "fired").
    pub fn sendable(&self, index: usize, now_ms: u64) -> bool {
        let Some(d) = self.deliveries.get(index) else {
            return false;
        };
        d.state == DeliveryState::Pending
            && d.next_try_ms <= now_ms
            && !self.deliveries[..index]
                .iter()
                .any(|e| e.sink == d.sink && e.state == DeliveryState::Pending)
    }
}

/// How a run ended, as the alert rules see it ([`super::Write::RunEnded`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunEnd {
    /// The workflow.
    pub workflow: String,
    /// The run.
    pub run_id: RunId,
    /// How it ended.
    pub outcome: RunEndOutcome,
    /// The error of a failed run, or why a run needs attention.
    pub error: Option<String>,
    /// The run's trace id.
    pub trace_id: String,
    /// The workflow's `alert_after`.
    pub alert_after: Option<u32>,
    /// No new alert of a workflow fires within this long of its last one (ms).
    pub cooldown_ms: u64,
    /// The sinks configured in the process that ends the run (`log` first).
    pub sinks: Vec<String>,
    /// When it ended, ms since the epoch.
    pub at_ms: u64,
}

/// How a run ended, for alerts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunEndOutcome {
    /// Succeeded: resets the streak and resolves the open alerts it concerns.
    Succeeded,
    /// Failed: extends the streak.
    Failed,
    /// Needs an operator: opens a needs-attention alert.
    NeedsAttention,
    /// Cancelled: the run is over without an outcome; its own alerts resolve, the streak of
    /// the workflow neither grows nor ends.
    Cancelled,
}

impl RunEnd {
    /// The end of a run cancelled by an operator while nobody executed it (a claim without an
    /// owner): it resolves the run's own alerts and changes no streak.
    pub fn cancelled(run: &super::RunRecord, at_ms: u64) -> RunEnd {
        RunEnd {
            workflow: run.workflow.clone(),
            run_id: run.id.clone(),
            outcome: RunEndOutcome::Cancelled,
            error: None,
            trace_id: run.trace_id.clone(),
            alert_after: None,
            cooldown_ms: 0,
            sinks: Vec::new(),
            at_ms,
        }
    }
}

/// Per workflow: the current streak of consecutive failed runs and the alerts open for it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Streak {
    /// Consecutive failed runs.
    pub failures: u32,
    /// Their ids, oldest first (at most [`MAX_ALERT_RUNS`], the most recent).
    pub run_ids: Vec<RunId>,
    /// The consecutive-failures alert open for this streak.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_alert: Option<String>,
    /// When the workflow's last consecutive-failures alert fired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fired_ms: Option<u64>,
    /// Open needs-attention alerts, by run id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attention: BTreeMap<String, String>,
    /// Other open alerts about one run (max-duration, error-budget), by run id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub run_alerts: BTreeMap<String, Vec<String>>,
}

impl Streak {
    /// Whether the record says nothing (it can be deleted).
    pub fn is_empty(&self) -> bool {
        self.failures == 0
            && self.open_alert.is_none()
            && self.attention.is_empty()
            && self.run_alerts.is_empty()
    }

    /// Forgets alert `id` wherever the record names it (the alert is being deleted).
    pub fn forget(&mut self, id: &str) {
        if self.open_alert.as_deref() == Some(id) {
            self.open_alert = None;
        }
        self.attention.retain(|_, a| a != id);
        for ids in self.run_alerts.values_mut() {
            ids.retain(|a| a != id);
        }
        self.run_alerts.retain(|_, ids| !ids.is_empty());
    }
}

/// What the rules read and write: a streak and the alerts it names, loaded by a backend.
pub trait AlertBook {
    /// The alert with that id.
    fn alert(&mut self, id: &str) -> Option<AlertRecord>;
    /// Inserts or replaces an alert.
    fn put_alert(&mut self, alert: AlertRecord);
    /// The alert of `kind` opened for `run` before, if one was (kept as long as the alert).
    fn run_alert_id(&mut self, run: &RunId, kind: AlertKind) -> Option<String>;
    /// Records that alert `id` of `kind` was opened for `run`.
    fn put_run_alert_id(&mut self, run: &RunId, kind: AlertKind, id: &str);

    /// Applies the end of a run to `streak` (the workflow's record, `Default` if it had none):
    /// a failure extends the streak and, when it reaches `alert_after` with no alert open and
    /// the cool-down over, opens an alert with a pending "fired" delivery per sink; a success
    /// ends the streak and gives the open alerts it concerns a pending "resolved" delivery per
    /// sink that received (or is to receive) the "fired"; a run that needs attention opens its
    /// own alert. The run's own alerts resolve as their kind says: a max-duration alert when
    /// the run finishes in any way, an error-budget or needs-attention alert when it succeeds
    /// or is cancelled.
    fn run_ended(&mut self, streak: &mut Streak, end: &RunEnd, new_id: impl FnOnce() -> String) {
        let now = end.at_ms;
        self.resolve_run_alerts(streak, end);
        match end.outcome {
            RunEndOutcome::Failed => {
                streak.failures = streak.failures.saturating_add(1);
                push_capped(&mut streak.run_ids, end.run_id.clone());
                if let Some(mut alert) = streak.open_alert.as_deref().and_then(|a| self.alert(a)) {
                    // The streak goes on: the record follows it, nothing new is sent
                    alert.failures = streak.failures;
                    push_capped(&mut alert.run_ids, end.run_id.clone());
                    alert.last_error = end.error.clone();
                    alert.trace_id = end.trace_id.clone();
                    self.put_alert(alert);
                    return;
                }
                let Some(after) = end.alert_after else {
                    return;
                };
                let cooled = streak
                    .last_fired_ms
                    .is_none_or(|at| now.saturating_sub(at) >= end.cooldown_ms);
                if streak.failures >= after && cooled {
                    let alert = AlertRecord {
                        id: new_id(),
                        workflow: end.workflow.clone(),
                        kind: AlertKind::ConsecutiveFailures,
                        state: AlertState::Open,
                        run_ids: streak.run_ids.clone(),
                        failures: streak.failures,
                        last_error: end.error.clone(),
                        trace_id: end.trace_id.clone(),
                        created_at_ms: now,
                        resolved_at_ms: None,
                        resolved_by: None,
                        deliveries: fired(&end.sinks, now),
                        detail: None,
                    };
                    streak.open_alert = Some(alert.id.clone());
                    streak.last_fired_ms = Some(now);
                    self.put_alert(alert);
                }
            }
            RunEndOutcome::Succeeded => {
                streak.failures = 0;
                streak.run_ids.clear();
                if let Some(id) = streak.open_alert.take() {
                    if let Some(mut alert) = self.alert(&id) {
                        resolve(&mut alert, end);
                        self.put_alert(alert);
                    }
                }
            }
            RunEndOutcome::Cancelled => {}
            RunEndOutcome::NeedsAttention => {
                if streak.attention.contains_key(end.run_id.as_str()) {
                    return;
                }
                let alert = AlertRecord {
                    id: new_id(),
                    workflow: end.workflow.clone(),
                    kind: AlertKind::NeedsAttention,
                    state: AlertState::Open,
                    run_ids: vec![end.run_id.clone()],
                    failures: 0,
                    last_error: end.error.clone(),
                    trace_id: end.trace_id.clone(),
                    created_at_ms: now,
                    resolved_at_ms: None,
                    resolved_by: None,
                    deliveries: fired(&end.sinks, now),
                    detail: None,
                };
                streak
                    .attention
                    .insert(end.run_id.as_str().to_owned(), alert.id.clone());
                self.put_alert(alert);
            }
        }
    }

    /// Resolves the open alerts about the run that ended, as their kinds say (see
    /// [`AlertBook::run_ended`]).
    fn resolve_run_alerts(&mut self, streak: &mut Streak, end: &RunEnd) {
        let run = end.run_id.as_str();
        let (finished, over) = match end.outcome {
            RunEndOutcome::Succeeded | RunEndOutcome::Cancelled => (true, true),
            RunEndOutcome::Failed => (true, false),
            RunEndOutcome::NeedsAttention => (false, false),
        };
        let mut resolved = Vec::new();
        if over {
            resolved.extend(streak.attention.remove(run));
        }
        if let Some(ids) = streak.run_alerts.remove(run) {
            let mut kept = Vec::new();
            for id in ids {
                let Some(alert) = self.alert(&id) else {
                    continue;
                };
                let resolves = match alert.kind {
                    AlertKind::MaxDuration => finished,
                    _ => over,
                };
                if resolves {
                    resolved.push(id);
                } else {
                    kept.push(id);
                }
            }
            if !kept.is_empty() {
                streak.run_alerts.insert(run.to_owned(), kept);
            }
        }
        for id in resolved {
            if let Some(mut alert) = self.alert(&id) {
                resolve(&mut alert, end);
                self.put_alert(alert);
            }
        }
    }

    /// Opens the alert `request` describes, once per run and kind: nothing happens if an alert
    /// of that kind was opened for the run before (by this process or any other), and a
    /// max-duration alert opens only while the run is unfinished (`run_status` is the run's
    /// status in the same transaction, `None` if it is gone). Returns the new alert's id.
    fn run_alert(
        &mut self,
        streak: &mut Streak,
        request: &RunAlert,
        run_status: Option<super::RunStatus>,
        new_id: impl FnOnce() -> String,
    ) -> Option<String> {
        if self.run_alert_id(&request.run_id, request.kind).is_some() {
            return None;
        }
        let open = match request.kind {
            AlertKind::MaxDuration => run_status.is_some_and(|s| {
                matches!(
                    s,
                    super::RunStatus::Queued
                        | super::RunStatus::Running
                        | super::RunStatus::Sleeping
                )
            }),
            // Its "run" is a tick that never ran: the alert is about the schedule
            AlertKind::MissedTick => true,
            _ => run_status.is_some(),
        };
        if !open {
            return None;
        }
        let now = request.at_ms;
        let alert = AlertRecord {
            id: new_id(),
            workflow: request.workflow.clone(),
            kind: request.kind,
            state: AlertState::Open,
            run_ids: vec![request.run_id.clone()],
            failures: 0,
            last_error: request.error.clone(),
            trace_id: request.trace_id.clone(),
            created_at_ms: now,
            resolved_at_ms: None,
            resolved_by: None,
            deliveries: fired(&request.sinks, now),
            detail: request.detail.clone(),
        };
        let id = alert.id.clone();
        self.put_run_alert_id(&request.run_id, request.kind, &id);
        streak
            .run_alerts
            .entry(request.run_id.as_str().to_owned())
            .or_default()
            .push(id.clone());
        self.put_alert(alert);
        Some(id)
    }
}

fn fired(sinks: &[String], now_ms: u64) -> Vec<Delivery> {
    sinks
        .iter()
        .map(|s| Delivery::pending(s, Notice::Fired, now_ms))
        .collect()
}

/// Whether `alert` may be deleted by a prune whose alert cutoff is `until_ms`: every notice is
/// done (delivered or given up), nothing will resolve it any more (it is resolved, its kind
/// never resolves, or its run is gone: `run_gone` says whether a run is, or is to be, deleted),
/// and its last change is at or before the cutoff.
pub fn alert_prunable(
    alert: &AlertRecord,
    until_ms: u64,
    run_gone: impl FnOnce(&RunId) -> bool,
) -> bool {
    if alert
        .deliveries
        .iter()
        .any(|d| d.state == DeliveryState::Pending)
    {
        return false;
    }
    let last = alert
        .deliveries
        .iter()
        .flat_map(|d| d.delivered_at_ms.into_iter().chain([d.next_try_ms]))
        .chain(alert.resolved_at_ms)
        .fold(alert.created_at_ms, u64::max);
    if last > until_ms {
        return false;
    }
    alert.state == AlertState::Resolved
        || !alert.kind.resolves()
        || (alert.kind.is_per_run() && alert.run_ids.first().is_none_or(run_gone))
}

fn resolve(alert: &mut AlertRecord, end: &RunEnd) {
    if alert.state == AlertState::Resolved {
        return;
    }
    alert.state = AlertState::Resolved;
    alert.resolved_at_ms = Some(end.at_ms);
    alert.resolved_by = Some(end.run_id.clone());
    // Only sinks that were sent (or are to be sent) the alert hear that it is resolved
    let sinks: Vec<String> = alert
        .deliveries
        .iter()
        .filter(|d| d.notice == Notice::Fired && d.state != DeliveryState::Failed)
        .map(|d| d.sink.clone())
        .collect();
    for sink in sinks {
        alert
            .deliveries
            .push(Delivery::pending(&sink, Notice::Resolved, end.at_ms));
    }
}

fn push_capped(ids: &mut Vec<RunId>, id: RunId) {
    if ids.last() == Some(&id) {
        return;
    }
    ids.push(id);
    if ids.len() > MAX_ALERT_RUNS {
        ids.remove(0);
    }
}

/// What became of one delivery attempt ([`super::Write::AlertDelivery`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryOutcome {
    /// A process takes it to send it, until `until_ms` (ms since the epoch): of processes that
    /// claim a due delivery at once, the store lets one win, and no other sends it until the
    /// claim ends with an outcome or expires. Not an attempt.
    Claimed {
        /// Who claims it (unique per delivery pass).
        by: String,
        /// When the claim expires if no outcome follows (the claimant died).
        until_ms: u64,
    },
    /// The sink accepted it.
    Delivered,
    /// It failed; try again then (ms since the epoch).
    Retry {
        /// When.
        next_try_ms: u64,
        /// Why it failed.
        error: String,
    },
    /// It failed for the last time.
    GaveUp {
        /// Why it failed.
        error: String,
    },
}

/// Records `outcome` on delivery `index` of `alert` (an attempt of a delivery no longer
/// pending changes nothing: a second process may have delivered it meanwhile).
pub fn record_delivery(
    alert: &mut AlertRecord,
    index: usize,
    outcome: &DeliveryOutcome,
    now_ms: u64,
) {
    let Some(d) = alert.deliveries.get_mut(index) else {
        return;
    };
    if d.state != DeliveryState::Pending {
        return;
    }
    if let DeliveryOutcome::Claimed { by, until_ms } = outcome {
        // Only a due delivery: one claimed by another process is due again when its claim
        // expires
        if d.next_try_ms <= now_ms {
            d.claimed_by = Some(by.clone());
            d.next_try_ms = *until_ms;
        }
        return;
    }
    d.attempts = d.attempts.saturating_add(1);
    // The claim's expiry is no due time: the attempt was made now
    if d.claimed_by.take().is_some() {
        d.next_try_ms = now_ms;
    }
    match outcome {
        DeliveryOutcome::Claimed { .. } => {}
        DeliveryOutcome::Delivered => {
            d.state = DeliveryState::Delivered;
            d.delivered_at_ms = Some(now_ms);
            d.last_error = None;
        }
        DeliveryOutcome::Retry { next_try_ms, error } => {
            d.next_try_ms = *next_try_ms;
            d.last_error = Some(error.clone());
        }
        DeliveryOutcome::GaveUp { error } => {
            d.state = DeliveryState::Failed;
            d.last_error = Some(error.clone());
        }
    }
}

/// Which alerts [`super::Store::alerts`] lists.
#[derive(Clone, Debug, Default)]
pub struct AlertFilter {
    /// Only alerts with a pending delivery.
    pub pending: bool,
    /// Only this workflow.
    pub workflow: Option<String>,
    /// At most this many, newest first.
    pub limit: Option<usize>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Book(
        HashMap<String, AlertRecord>,
        HashMap<(RunId, AlertKind), String>,
    );
    impl AlertBook for Book {
        fn alert(&mut self, id: &str) -> Option<AlertRecord> {
            self.0.get(id).cloned()
        }
        fn put_alert(&mut self, alert: AlertRecord) {
            self.0.insert(alert.id.clone(), alert);
        }
        fn run_alert_id(&mut self, run: &RunId, kind: AlertKind) -> Option<String> {
            self.1.get(&(run.clone(), kind)).cloned()
        }
        fn put_run_alert_id(&mut self, run: &RunId, kind: AlertKind, id: &str) {
            self.1.insert((run.clone(), kind), id.to_owned());
        }
    }

    fn end(run: &str, outcome: RunEndOutcome, at_ms: u64) -> RunEnd {
        RunEnd {
            workflow: "w".into(),
            run_id: run.into(),
            outcome,
            error: Some("boom".into()),
            trace_id: "t".into(),
            alert_after: Some(3),
            cooldown_ms: 1000,
            sinks: vec!["log".into(), "webhook".into()],
            at_ms,
        }
    }

    #[test]
    fn one_alert_per_streak_resolved_by_the_next_success_and_cooled_down() {
        let mut book = Book::default();
        let mut streak = Streak::default();
        let mut n = 0;
        let mut id = || {
            n += 1;
            format!("a{n}")
        };
        for (i, run) in ["r1", "r2", "r3", "r4"].iter().enumerate() {
            book.run_ended(
                &mut streak,
                &end(run, RunEndOutcome::Failed, i as u64),
                &mut id,
            );
        }
        assert_eq!(book.0.len(), 1, "one alert for a streak of four");
        let alert = &book.0["a1"];
        assert_eq!(alert.failures, 4);
        assert_eq!(alert.run_ids.len(), 4);
        assert_eq!(
            alert.deliveries.len(),
            2,
            "the 4th failure sends nothing new"
        );
        book.run_ended(
            &mut streak,
            &end("r5", RunEndOutcome::Succeeded, 10),
            &mut id,
        );
        let alert = &book.0["a1"];
        assert_eq!(alert.state, AlertState::Resolved);
        assert_eq!(
            alert
                .deliveries
                .iter()
                .filter(|d| d.notice == Notice::Resolved)
                .count(),
            2
        );
        assert!(!alert.sendable(2, 100), "resolved waits for its fired");
        // A new streak within the cool-down fires nothing; after it, it fires
        for (i, run) in ["r6", "r7", "r8"].iter().enumerate() {
            book.run_ended(
                &mut streak,
                &end(run, RunEndOutcome::Failed, 20 + i as u64),
                &mut id,
            );
        }
        assert_eq!(book.0.len(), 1);
        book.run_ended(
            &mut streak,
            &end("r9", RunEndOutcome::Failed, 2000),
            &mut id,
        );
        assert_eq!(book.0.len(), 2);
        assert_eq!(book.0["a2"].failures, 4);
    }

    fn overdue(run: &str, at_ms: u64) -> RunAlert {
        RunAlert {
            kind: AlertKind::MaxDuration,
            workflow: "w".into(),
            run_id: run.into(),
            trace_id: "t".into(),
            error: Some("late".into()),
            detail: None,
            sinks: vec!["log".into(), "webhook".into()],
            at_ms,
        }
    }

    #[test]
    fn a_run_alert_opens_once_per_run_and_resolves_as_its_kind_says() {
        use crate::store::RunStatus;
        let mut book = Book::default();
        let mut streak = Streak::default();
        let running = Some(RunStatus::Running);
        let id = book.run_alert(&mut streak, &overdue("r1", 5), running, || "a1".into());
        assert_eq!(id.as_deref(), Some("a1"));
        // A second worker, or the next pass, opens nothing
        let again = book.run_alert(&mut streak, &overdue("r1", 6), running, || "a2".into());
        assert_eq!(again, None);
        // A finished or deleted run opens nothing
        for status in [Some(RunStatus::Succeeded), None] {
            let late = book.run_alert(&mut streak, &overdue("r2", 6), status, || "a3".into());
            assert_eq!(late, None);
        }
        let budget = RunAlert {
            kind: AlertKind::ErrorBudget,
            ..overdue("r1", 7)
        };
        let b = book.run_alert(&mut streak, &budget, running, || "b1".into());
        assert_eq!(b.as_deref(), Some("b1"));
        assert_eq!(book.0.len(), 2);

        // The run fails: the max-duration alert resolves, the error budget's stays open, and
        // the failure counts in the streak as before
        book.run_ended(&mut streak, &end("r1", RunEndOutcome::Failed, 10), || {
            "c1".into()
        });
        assert_eq!(book.0["a1"].state, AlertState::Resolved);
        assert_eq!(
            book.0["a1"].resolved_by.as_ref().map(|r| r.as_str()),
            Some("r1")
        );
        assert_eq!(book.0["b1"].state, AlertState::Open);
        assert_eq!(streak.failures, 1);
        assert_eq!(streak.run_alerts["r1"], vec!["b1".to_owned()]);
        // Retried and succeeded: the error budget's alert resolves too
        book.run_ended(
            &mut streak,
            &end("r1", RunEndOutcome::Succeeded, 20),
            || "c2".into(),
        );
        assert_eq!(book.0["b1"].state, AlertState::Resolved);
        assert!(streak.is_empty(), "{streak:?}");
        let resolved = |id: &str| {
            book.0[id]
                .deliveries
                .iter()
                .filter(|d| d.notice == Notice::Resolved)
                .count()
        };
        assert_eq!((resolved("a1"), resolved("b1")), (2, 2));
        // Resolved once: the run's retry past its max duration opens nothing new
        let retry = book.run_alert(&mut streak, &overdue("r1", 30), running, || "a9".into());
        assert_eq!(retry, None);
    }

    #[test]
    fn a_cancel_resolves_the_runs_alerts_and_leaves_the_streak() {
        let mut book = Book::default();
        let mut streak = Streak::default();
        for run in ["r1", "r2"] {
            book.run_ended(&mut streak, &end(run, RunEndOutcome::Failed, 1), || {
                format!("f-{run}")
            });
        }
        book.run_ended(
            &mut streak,
            &end("p", RunEndOutcome::NeedsAttention, 2),
            || "n1".into(),
        );
        let mut record = crate::store::RunRecord::new(
            "p".into(),
            "w",
            crate::store::RunStatus::Cancelled,
            serde_json::Value::Null,
            "t".into(),
            0,
        );
        record.status = crate::store::RunStatus::Cancelled;
        book.run_ended(&mut streak, &RunEnd::cancelled(&record, 3), || "x".into());
        assert_eq!(book.0["n1"].state, AlertState::Resolved);
        assert_eq!(
            streak.failures, 2,
            "a cancel neither extends nor ends a streak"
        );
        assert!(streak.attention.is_empty());
    }

    #[test]
    fn an_alert_is_prunable_once_done_settled_and_old() {
        let mut book = Book::default();
        let mut streak = Streak::default();
        book.run_alert(
            &mut streak,
            &overdue("r1", 100),
            Some(crate::store::RunStatus::Running),
            || "a1".into(),
        );
        let mut alert = book.0["a1"].clone();
        let gone = |_: &RunId| false;
        assert!(!alert_prunable(&alert, 1_000, gone), "deliveries pending");
        for i in 0..alert.deliveries.len() {
            record_delivery(&mut alert, i, &DeliveryOutcome::Delivered, 200);
        }
        assert!(!alert_prunable(&alert, 1_000, gone), "open, its run exists");
        assert!(
            alert_prunable(&alert, 1_000, |_| true),
            "open, its run is gone"
        );
        assert!(
            !alert_prunable(&alert, 150, |_| true),
            "delivered after the cutoff"
        );
        alert.state = AlertState::Resolved;
        alert.resolved_at_ms = Some(300);
        assert!(alert_prunable(&alert, 300, gone));
        assert!(!alert_prunable(&alert, 299, gone));
        // A consecutive-failures alert is about its workflow, not a run: open, it stays
        alert.kind = AlertKind::ConsecutiveFailures;
        alert.state = AlertState::Open;
        assert!(!alert_prunable(&alert, 1_000, |_| true));
    }

    #[test]
    fn one_claim_of_a_due_delivery_wins_until_it_ends_or_expires() {
        let mut book = Book::default();
        book.run_alert(
            &mut Streak::default(),
            &overdue("r1", 100),
            Some(crate::store::RunStatus::Running),
            || "a1".into(),
        );
        let mut alert = book.0["a1"].clone();
        let claim = |by: &str, until_ms| DeliveryOutcome::Claimed {
            by: by.into(),
            until_ms,
        };
        let due = alert.deliveries[0].next_try_ms;
        record_delivery(&mut alert, 0, &claim("a", due + 1_000), due);
        // Applied after the first in the same store: no longer due, so it changes nothing
        record_delivery(&mut alert, 0, &claim("b", due + 1_000), due);
        let d = &alert.deliveries[0];
        assert_eq!(d.claimed_by.as_deref(), Some("a"));
        assert_eq!((d.attempts, d.next_try_ms), (0, due + 1_000));
        assert!(
            !alert.sendable(0, due + 999),
            "claimed: nobody else sends it"
        );
        // The claimant died: once the claim expires another takes it
        record_delivery(&mut alert, 0, &claim("b", due + 5_000), due + 1_000);
        assert_eq!(alert.deliveries[0].claimed_by.as_deref(), Some("b"));
        record_delivery(&mut alert, 0, &DeliveryOutcome::Delivered, due + 1_200);
        let d = &alert.deliveries[0];
        assert_eq!(d.state, DeliveryState::Delivered);
        assert_eq!((d.claimed_by.as_deref(), d.attempts), (None, 1));
        assert_eq!(d.next_try_ms, due + 1_200, "the claim's expiry is gone");
    }
}

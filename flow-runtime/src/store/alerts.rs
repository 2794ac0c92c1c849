//! Alert records: what the store keeps of alerts and of their delivery to each sink.
//!
//! This module owns the record types and the rules that turn the end of a run into alert
//! changes ([`AlertBook::run_ended`]): the streak of consecutive failed runs of a workflow, the
//! alert it opens once per streak, and the "resolved" notice of the next success. The rules are
//! plain functions over records, so every backend applies them inside the transaction that
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
}

impl AlertKind {
    /// The kebab-case name used by the CLI and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::ConsecutiveFailures => "consecutive-failures",
            AlertKind::NeedsAttention => "needs-attention",
        }
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
}

impl Streak {
    /// Whether the record says nothing (it can be deleted).
    pub fn is_empty(&self) -> bool {
        self.failures == 0 && self.open_alert.is_none() && self.attention.is_empty()
    }
}

/// What the rules read and write: a streak and the alerts it names, loaded by a backend.
pub trait AlertBook {
    /// The alert with that id.
    fn alert(&mut self, id: &str) -> Option<AlertRecord>;
    /// Inserts or replaces an alert.
    fn put_alert(&mut self, alert: AlertRecord);

    /// Applies the end of a run to `streak` (the workflow's record, `Default` if it had none):
    /// a failure extends the streak and, when it reaches `alert_after` with no alert open and
    /// the cool-down over, opens an alert with a pending "fired" delivery per sink; a success
    /// ends the streak and gives the open alerts it concerns a pending "resolved" delivery per
    /// sink that received (or is to receive) the "fired"; a run that needs attention opens its
    /// own alert.
    fn run_ended(&mut self, streak: &mut Streak, end: &RunEnd, new_id: impl FnOnce() -> String) {
        let now = end.at_ms;
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
                        deliveries: end
                            .sinks
                            .iter()
                            .map(|s| Delivery::pending(s, Notice::Fired, now))
                            .collect(),
                    };
                    streak.open_alert = Some(alert.id.clone());
                    streak.last_fired_ms = Some(now);
                    self.put_alert(alert);
                }
            }
            RunEndOutcome::Succeeded => {
                streak.failures = 0;
                streak.run_ids.clear();
                let mut open: Vec<String> = streak.open_alert.take().into_iter().collect();
                open.extend(streak.attention.remove(end.run_id.as_str()));
                for id in open {
                    if let Some(mut alert) = self.alert(&id) {
                        resolve(&mut alert, end);
                        self.put_alert(alert);
                    }
                }
            }
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
                    deliveries: end
                        .sinks
                        .iter()
                        .map(|s| Delivery::pending(s, Notice::Fired, now))
                        .collect(),
                };
                streak
                    .attention
                    .insert(end.run_id.as_str().to_owned(), alert.id.clone());
                self.put_alert(alert);
            }
        }
    }
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
    d.attempts = d.attempts.saturating_add(1);
    match outcome {
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
    struct Book(HashMap<String, AlertRecord>);
    impl AlertBook for Book {
        fn alert(&mut self, id: &str) -> Option<AlertRecord> {
            self.0.get(id).cloned()
        }
        fn put_alert(&mut self, alert: AlertRecord) {
            self.0.insert(alert.id.clone(), alert);
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
}

//! The store: where runs and their checkpoints live.
//!
//! This module owns the record types, the [`Store`] trait every backend implements, and the
//! errors a backend reports. It knows nothing of how steps execute. Backends: [`RedbStore`]
//! (embedded, the default) and, with the `postgres` feature, [`PgStore`].

mod alerts;
mod owner;
#[cfg(feature = "postgres")]
mod postgres;
mod redb;
mod redb_index;
mod schedules;

pub use self::alerts::{
    alert_prunable, record_delivery, AlertBook, AlertDetail, AlertFilter, AlertKind, AlertRecord,
    AlertState, BudgetTrip, Delivery, DeliveryOutcome, DeliveryState, Notice, RunAlert, RunEnd,
    RunEndOutcome, Streak, MAX_ALERT_RUNS, MAX_ALERT_UNITS,
};
use self::owner::Liveness;
pub use self::owner::Owner;
#[cfg(feature = "postgres")]
pub use self::postgres::{PgOptions, PgStore, PG_SCHEMA_VERSION};
pub use self::redb::{RedbStore, Sharing};
pub use self::schedules::{
    apply_fire, apply_pause, format_tick, tick_run_id, Pause, ScheduleBook, ScheduleFire,
    ScheduleOutcome, ScheduleRecord, ScheduleWrite, Skip, SkipReason,
};

use serde::{Deserialize, Serialize};
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

/// A boxed future, as the [`Store`] trait's methods return (the trait stays object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Whether retrying an operation can succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// A retry may succeed: a timeout, a dropped connection, a 503, a rate limit.
    Transient,
    /// A retry would fail the same way: invalid input, a 4xx, a missing record.
    Permanent,
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Permanent => "permanent",
        })
    }
}

/// The store schema version this build writes and reads.
///
/// Version 4 stores step values in a compact binary form (a version-3 store's JSON step values
/// are still read, so it is upgraded by writing the new number). Version 3 adds the indexes of
/// queued runs, timers and runs in flight; a version-2 store is upgraded in place by the first
/// process that opens it for writing (read-only opens read it as it is). Version 2 (flow 0.1 with stable step keys): step keys are a SHA-256 of the
/// arguments' canonical JSON, and runs are indexed by creation time. Version 1 keyed steps by
/// an FNV hash of their JSON as serialized, so its keys cannot be matched, and its runs cannot
/// be resumed.
pub const SCHEMA_VERSION: u32 = 4;

/// Identifies one run; chosen by the caller (an idempotency key for the whole run) or generated.
///
/// A valid run id is 1 to 128 characters, each an ASCII letter or digit or one of
/// `. _ - : @ + /`, and does not start with `-` (it would read as a flag on a command line).
/// UUIDs, `nightly-2026-11-28` and `nightly@2026-11-28T02:00:00Z` are valid; spaces, quotes,
/// shell metacharacters, control characters and non-ASCII letters are not, so an id is always
/// safe to print and to paste into a shell. [`RunId::new`] checks the rule; the engine refuses
/// an invalid id at every entry point ([`crate::Error::InvalidRunId`]).
///
/// ```
/// use flow_runtime::RunId;
/// assert!(RunId::new("nightly@2026-11-28T02:00:00Z").is_ok());
/// assert!(RunId::new("x; touch PWNED").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(String);

/// The longest valid run id, in characters.
pub const MAX_RUN_ID_LEN: usize = 128;

/// A run id that breaks the rule documented on [`RunId`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid run id {shown}: {problem}; a run id is 1 to 128 of the characters A-Z a-z 0-9 . _ - : @ + / and does not start with `-`")]
pub struct InvalidRunId {
    /// The id, quoted, with control characters escaped (`"a\u{1b}b"`), safe to print.
    pub shown: String,
    /// What is wrong with it.
    pub problem: String,
}

impl RunId {
    /// A new, time-ordered id (UUID v7).
    pub fn generate() -> RunId {
        RunId(uuid::Uuid::now_v7().to_string())
    }

    /// The id `id`, if it is valid (see [`RunId`]).
    pub fn new(id: impl Into<String>) -> Result<RunId, InvalidRunId> {
        let id = RunId(id.into());
        id.validate()?;
        Ok(id)
    }

    /// Checks the rule documented on [`RunId`]; ids made with `From` are not checked until an
    /// engine entry point does this.
    pub fn validate(&self) -> Result<(), InvalidRunId> {
        let s = self.0.as_str();
        let allowed = |c: char| c.is_ascii_alphanumeric() || "._-:@+/".contains(c);
        let problem = if s.is_empty() {
            "it is empty".to_owned()
        } else if s.chars().count() > MAX_RUN_ID_LEN {
            format!("it is {} characters long", s.chars().count())
        } else if let Some(c) = s.chars().find(|&c| !allowed(c)) {
            format!("it contains {c:?}")
        } else if s.starts_with('-') {
            "it starts with `-`".to_owned()
        } else {
            return Ok(());
        };
        let mut shown: String = s.chars().take(MAX_RUN_ID_LEN + 2).collect();
        if shown.len() < s.len() {
            shown.push('…');
        }
        Err(InvalidRunId {
            shown: format!("{shown:?}"),
            problem,
        })
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as an owned string, without copying it.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for RunId {
    fn from(s: &str) -> Self {
        RunId(s.to_owned())
    }
}

impl From<String> for RunId {
    fn from(s: String) -> Self {
        RunId(s)
    }
}

/// Where a run is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    /// Waiting for a worker.
    Queued,
    /// Executing, or interrupted (a crash) and waiting to be resumed.
    Running,
    /// In a durable `flow::sleep`.
    Sleeping,
    /// Finished with an output.
    Succeeded,
    /// Finished with an error.
    Failed,
    /// Stopped by an operator.
    Cancelled,
    /// Stopped because an `at_most_once` step's outcome is unknown; an operator must decide.
    NeedsAttention,
    /// A staged rollout processed its share of units; running it again with a larger rollout
    /// processes the rest.
    Paused,
}

impl RunStatus {
    /// Every status.
    pub const ALL: [RunStatus; 8] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Sleeping,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Cancelled,
        RunStatus::NeedsAttention,
        RunStatus::Paused,
    ];

    /// Succeeded, failed or cancelled: starting the run id again returns the stored outcome.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
        )
    }

    /// The kebab-case name used by the CLI and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Sleeping => "sleeping",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::NeedsAttention => "needs-attention",
            RunStatus::Paused => "paused",
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a run needs an operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attention {
    /// The step in doubt.
    pub step: StepId,
    /// What happened.
    pub reason: String,
    /// The step's arguments as JSON (secrets redacted), so the operator can tell which call
    /// to look up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<serde_json::Value>,
}

/// One execution of a workflow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run id.
    pub id: RunId,
    /// The workflow's registered name.
    pub workflow: String,
    /// Current status.
    pub status: RunStatus,
    /// The input, as JSON.
    pub input: serde_json::Value,
    /// The output of a succeeded run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
    /// The error of a failed run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The W3C trace id (32 hex digits), kept across resumes.
    pub trace_id: String,
    /// Creation time, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// Last change, ms since the Unix epoch.
    pub updated_at_ms: u64,
    /// How many times the run was started or resumed.
    #[serde(default)]
    pub executions: u32,
    /// Set while the run needs an operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention: Option<Attention>,
    /// The process executing the run, while one does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// Until when the owner's claim holds where its liveness cannot be checked (ms since the
    /// epoch). See [`Store::claim`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_expires_at_ms: Option<u64>,
    /// The queue a run was enqueued on, and its place there; `None` for a run started directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueuePlace>,
    /// When a worker takes the run up again (ms since the epoch): a queued run delayed until
    /// then, or a run that released its worker for a durable sleep or a backoff. The worker's
    /// timers read an index of this field, so a waiting run costs no memory anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_at_ms: Option<u64>,
    /// The schedule and tick this run was fired for, if a schedule fired it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled: Option<ScheduledTick>,
    /// The version of the app that last executed the run (or created it, until one does):
    /// the package version of a `#[flow::main]` binary, or `flow.app_version` in settings.
    /// `stats --compare --before-version A --after-version B` compares two of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
    /// The W3C `traceparent` of the caller that started the run as part of its own trace
    /// (`--traceparent`, `TRACEPARENT`, [`crate::RunOptions::traceparent`]): the run's trace id
    /// is the caller's, and the run's span is a child of the caller's span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// The schedule tick behind a run ([`RunRecord::scheduled`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledTick {
    /// The schedule's name.
    pub schedule: String,
    /// The tick, ms since the epoch (for a trigger, when it was triggered).
    pub tick_ms: u64,
}

/// Where an enqueued run stands in its queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuePlace {
    /// The queue's name (`default` unless the run was enqueued on another).
    pub name: String,
    /// Lower runs first, as in DBOS and Temporal; runs of equal priority run in enqueue order.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: i32,
    /// The run waits at least until then (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before_ms: Option<u64>,
    /// Runs with the same key share the queue's per-key concurrency limit (one sync per
    /// customer, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_key: Option<String>,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

impl RunRecord {
    /// A new run of `workflow` with `input`, created at `now_ms` with `status`: no output,
    /// error, owner or queue yet, never executed.
    pub fn new(
        id: RunId,
        workflow: impl Into<String>,
        status: RunStatus,
        input: serde_json::Value,
        trace_id: String,
        now_ms: u64,
    ) -> RunRecord {
        RunRecord {
            id,
            workflow: workflow.into(),
            status,
            input,
            output: None,
            error: None,
            trace_id,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            executions: 0,
            attention: None,
            owner: None,
            lease_expires_at_ms: None,
            queue: None,
            wake_at_ms: None,
            scheduled: None,
            app_version: None,
            traceparent: None,
        }
    }

    /// Applies [`Write::RenewLease`] to the record; returns whether it changed.
    pub fn renew_lease(&mut self, until_ms: u64) -> bool {
        let executing = matches!(self.status, RunStatus::Running | RunStatus::Sleeping);
        if !executing || self.owner.is_none() || self.lease_expires_at_ms >= Some(until_ms) {
            return false;
        }
        self.lease_expires_at_ms = Some(until_ms);
        true
    }

    /// Records `owner` as the process executing the run from `now_ms`, with a lease of `lease`
    /// from then (no lease without an owner): what every claim and queue take writes.
    pub fn hold(&mut self, owner: Option<Owner>, lease: std::time::Duration, now_ms: u64) {
        self.lease_expires_at_ms = owner
            .as_ref()
            .map(|_| now_ms.saturating_add(lease.as_millis() as u64));
        self.owner = owner;
        self.updated_at_ms = now_ms;
    }

    /// Whether an execution holds this run now: it is running or sleeping, and its owner is
    /// another live process, or one whose liveness cannot be checked and whose lease has not
    /// expired. This process never holds a run against itself (the engine keeps its own table
    /// of the runs it executes).
    pub fn is_held(&self, now_ms: u64) -> bool {
        if !matches!(self.status, RunStatus::Running | RunStatus::Sleeping) {
            return false;
        }
        let Some(owner) = &self.owner else {
            return false;
        };
        match owner.liveness() {
            Liveness::Alive => true,
            Liveness::Current | Liveness::Dead => false,
            Liveness::Unknown => self.lease_expires_at_ms.is_some_and(|until| until > now_ms),
        }
    }
}

/// Proof that one execution took a run: the run and the claim's fencing token. Every write of
/// that execution carries it ([`Write::CheckClaim`]); once another claim took the run, those
/// writes are refused with [`StoreError::ClaimLost`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The run.
    pub run_id: RunId,
    /// Increases with every claim of the run; only the latest claim's writes are applied.
    pub token: u64,
}

/// How to take a run in [`Store::claim`].
pub struct ClaimRequest {
    /// The process that will execute the run; `None` takes the run and releases it in the same
    /// write (an operator cancelling a run that nobody executes). Either way the fencing token
    /// moves on, so an older execution's writes are refused from then on.
    pub owner: Option<Owner>,
    /// How long the claim holds where the owner's liveness cannot be checked.
    pub lease: std::time::Duration,
    /// Decides, inside the claim's transaction, whether the run may be taken in the state it is
    /// in, and changes the record (status, execution count); `false` refuses.
    pub take: Box<dyn FnOnce(&mut RunRecord) -> bool + Send>,
}

impl fmt::Debug for ClaimRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClaimRequest")
            .field("owner", &self.owner)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

/// What [`Store::claim`] did.
// Returned once per claim, so the size of the record is not worth a box at every match
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum ClaimOutcome {
    /// The run is taken: the record as written, and the claim its writes must carry.
    Claimed {
        /// The run after the claim.
        run: RunRecord,
        /// The new claim.
        claim: Claim,
    },
    /// Another execution holds the run ([`RunRecord::is_held`]); nothing was written.
    Held(RunRecord),
    /// The request's `take` refused the run in its current state; nothing was written.
    Refused(RunRecord),
    /// No run has that id.
    Missing,
}

/// The identity of a step within a run: name, key and occurrence.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StepId {
    /// The stable step name.
    pub name: String,
    /// The step key: the idempotency key, or a hash of the arguments.
    pub key: String,
    /// Counts identical (name, key) calls in one run, from 0, in call order.
    pub occurrence: u32,
}

impl StepId {
    /// The form used as a store key: `name␟key␟occurrence`.
    pub fn storage_key(&self) -> String {
        let mut key = String::with_capacity(self.name.len() + self.key.len() + 12);
        self.storage_key_parts(|part| key.push_str(part));
        key
    }

    /// [`StepId::storage_key`] appended to `out`, as UTF-8.
    pub(crate) fn push_storage_key(&self, out: &mut Vec<u8>) {
        self.storage_key_parts(|part| out.extend_from_slice(part.as_bytes()));
    }

    /// The storage key's parts in order. Written once per checkpoint, so without the formatter
    /// for the common occurrence 0.
    fn storage_key_parts(&self, mut push: impl FnMut(&str)) {
        push(&self.name);
        push("\u{1f}");
        push(&self.key);
        push("\u{1f}");
        if self.occurrence == 0 {
            push("0");
        } else {
            push(&self.occurrence.to_string());
        }
    }
}

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.occurrence == 0 {
            write!(f, "{} key={}", self.name, self.key)
        } else {
            write!(f, "{} key={} #{}", self.name, self.key, self.occurrence)
        }
    }
}

/// Where a step is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepStatus {
    /// An `at_most_once` intent, or an attempt in flight.
    Started,
    /// Failed transiently; waiting for `next_attempt_at_ms`.
    Backoff,
    /// Completed: the output is the checkpoint, and the step never runs again in this run.
    Succeeded,
    /// Failed for good in its last execution; a resume runs it again.
    Failed,
}

/// The durable state of one step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The run.
    pub run_id: RunId,
    /// The step's identity.
    pub id: StepId,
    /// Status.
    pub status: StepStatus,
    /// The attempt number this record describes, from 1.
    pub attempt: u32,
    /// When the next attempt may start (backoff), ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at_ms: Option<u64>,
    /// The output of a succeeded step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
    /// The last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The last error's class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<ErrorClass>,
    /// When the first attempt of this execution started.
    pub started_at_ms: u64,
    /// When the step finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<u64>,
    /// The arguments of an `at_most_once` step's call, kept with its intent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<serde_json::Value>,
    /// A failed step's error as JSON (error types that are serde), replayed on resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<serde_json::Value>,
}

/// One change in a commit.
// A run record is the common write; commits are short vectors consumed right away
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Write {
    /// Apply this commit only if `Claim` is still the run's latest claim; otherwise the whole
    /// commit is refused with [`StoreError::ClaimLost`] and nothing of it is written.
    CheckClaim(Claim),
    /// Insert or replace a run.
    PutRun(RunRecord),
    /// Insert or replace a step.
    PutStep(StepRecord),
    /// Remove a step (an operator's "run it again").
    DeleteStep(RunId, StepId),
    /// Ask a run to stop at its next step boundary.
    RequestCancel(RunId),
    /// Forget a cancel request.
    ClearCancel(RunId),
    /// A run ended: update its workflow's streak of failures and the alerts it opens or
    /// resolves (see [`AlertBook::run_ended`]), in the commit that writes the run's end.
    RunEnded(RunEnd),
    /// Open an alert about one run (a run past its max duration, a tripped error budget)
    /// unless one of its kind was opened for the run before; see [`AlertBook::run_alert`].
    RunAlert(RunAlert),
    /// Extend the lease of the run's owner to `until_ms` (ms since the epoch), as stored when
    /// the commit applies: nothing else of the record changes, and nothing happens if the run
    /// is not executing with an owner or its lease already lasts longer. Carried with a
    /// [`Write::CheckClaim`] ([`Store::renew_lease`]), so a run taken over is not renewed.
    RenewLease {
        /// The run.
        run_id: RunId,
        /// The new end of the lease.
        until_ms: u64,
    },
    /// Record what became of delivery `index` of alert `alert_id`.
    AlertDelivery {
        /// The alert.
        alert_id: String,
        /// The delivery's place in [`AlertRecord::deliveries`].
        index: usize,
        /// What happened.
        outcome: DeliveryOutcome,
    },
}

/// What `create_run` found.
// Returned once per run start, so the size of the record is not worth a box at every match
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum CreateRun {
    /// The run did not exist and is now stored, claimed by its creator.
    Created(Claim),
    /// A run with that id exists; nothing was written.
    Exists(RunRecord),
}

/// Which runs to list.
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    /// Only this status.
    pub status: Option<RunStatus>,
    /// Only this workflow.
    pub workflow: Option<String>,
    /// At most this many, newest first.
    pub limit: Option<usize>,
}

impl RunFilter {
    /// Whether `run` passes the status and workflow conditions.
    pub fn matches(&self, run: &RunRecord) -> bool {
        self.status.is_none_or(|s| s == run.status)
            && self.workflow.as_deref().is_none_or(|w| w == run.workflow)
    }
}

/// A storage backend for runs and checkpoints.
///
/// Every write method returns only once its changes are durable. Implementations batch the
/// writes of concurrent callers into one durable commit (group commit).
pub trait Store: Send + Sync + 'static {
    /// Stores `run` unless a run with its id exists, atomically. A created run is claimed by
    /// its creator (token 1 of its claims).
    fn create_run(&self, run: RunRecord) -> BoxFuture<'_, Result<CreateRun, StoreError>>;
    /// Takes a run for an execution, in one write transaction: refuses it while another
    /// execution holds it ([`RunRecord::is_held`]) or while `request.take` refuses its state;
    /// otherwise applies `take`, records the owner and its lease, and moves the run's fencing
    /// token on. Of any number of concurrent claims of one run, in any processes, exactly one
    /// wins.
    fn claim(
        &self,
        id: &RunId,
        request: ClaimRequest,
    ) -> BoxFuture<'_, Result<ClaimOutcome, StoreError>>;
    /// Applies `writes` in one durable commit.
    fn commit(&self, writes: Vec<Write>) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Applies `writes` after every write sent before them, and makes them durable with the
    /// next durable commit, at the latest after the store's durability window
    /// ([`Durability`]); returns without waiting for the disk. Used for the checkpoints of steps
    /// that may run again (idempotent or keyed). Whatever a crash loses is always a suffix: a
    /// write is never durable without every write sent before it. A write that fails here
    /// fails every later write of the store (each would follow a lost one). Stores without a
    /// window commit durably.
    fn commit_deferred(&self, writes: Vec<Write>) -> BoxFuture<'_, Result<(), StoreError>> {
        self.commit(writes)
    }
    /// Extends the lease of the run `claim` took to `until_ms`, in one durable commit checked
    /// against the claim's fencing token: [`StoreError::ClaimLost`] if another execution took
    /// the run since (its lease is left alone). A process executing runs renews each before it
    /// expires, so a worker on another machine (which cannot see this process) does not take
    /// them over while this one lives.
    fn renew_lease(&self, claim: Claim, until_ms: u64) -> BoxFuture<'_, Result<(), StoreError>> {
        let run_id = claim.run_id.clone();
        self.commit(vec![
            Write::CheckClaim(claim),
            Write::RenewLease { run_id, until_ms },
        ])
    }
    /// A signal that another process may have work for this one: a run it enqueued, or a run
    /// whose wake-up time came. A worker waits for it beside its poll interval. `None` (the
    /// default) where the store cannot tell; polling finds the work then.
    fn work_signal(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }
    /// Makes every write sent so far durable.
    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
    /// One run.
    fn run(&self, id: &RunId) -> BoxFuture<'_, Result<Option<RunRecord>, StoreError>>;
    /// Runs matching `filter`, newest first.
    fn runs(&self, filter: &RunFilter) -> BoxFuture<'_, Result<Vec<RunRecord>, StoreError>>;
    /// Every step record of a run, in storage order.
    fn steps(&self, id: &RunId) -> BoxFuture<'_, Result<Vec<StepRecord>, StoreError>>;
    /// Which of `ids` have a pending cancel request.
    fn cancel_requests(&self, ids: &[RunId]) -> BoxFuture<'_, Result<Vec<RunId>, StoreError>>;
    /// Deletes the finished runs that `request` selects, each with everything stored of it
    /// (record, steps, cancel request, claim token, index entries), in write transactions of
    /// a bounded number of runs; with [`PruneRequest::dry_run`] it only counts them. A run's
    /// status and last change are checked again in the transaction that deletes it, so a run
    /// resumed or claimed meanwhile is kept. Unfinished runs are never deleted.
    fn prune(&self, request: &PruneRequest) -> BoxFuture<'_, Result<Pruned, StoreError>>;
    /// Takes queued runs for a worker, in one write transaction: per queue, in priority then
    /// enqueue order, the runs the queue's limits allow now (concurrency across all workers,
    /// per concurrency key, rate), at most `take` of each; each is claimed as [`Store::claim`]
    /// would (status running, the owner, a new fencing token).
    fn take_queued(&self, request: QueueTake) -> BoxFuture<'_, Result<Vec<Taken>, StoreError>>;
    /// Runs waiting for a time no later than `now_ms` with no process holding them (delayed
    /// enqueues, released sleeps and backoffs), earliest first, at most `limit`.
    fn due(&self, now_ms: u64, limit: usize) -> BoxFuture<'_, Result<Vec<RunRecord>, StoreError>>;
    /// When the next run waiting for a time is due, if any.
    fn next_due(&self) -> BoxFuture<'_, Result<Option<u64>, StoreError>>;
    /// Alerts matching `filter`, newest first. Stores without alerts report
    /// [`StoreError::Backend`].
    fn alerts(&self, filter: &AlertFilter) -> BoxFuture<'_, Result<Vec<AlertRecord>, StoreError>> {
        let _ = filter;
        Box::pin(async {
            Err(StoreError::Backend(
                "this store does not keep alerts".into(),
            ))
        })
    }
    /// The unfinished runs (queued, running or sleeping) of the workflows in `limits` (name,
    /// max duration in ms) whose deadline (creation + max duration) is at or before `now_ms`
    /// and that have no max-duration alert yet, at most `limit`; and the earliest deadline
    /// after `now_ms` among the others. Found through the indexes of queued runs, timers and
    /// held runs, never by reading every run; a run that is none of these (running with no
    /// process, after `runs resolve`) is not found. Stores without alerts find none.
    fn overdue_runs(
        &self,
        limits: &[(String, u64)],
        now_ms: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<OverdueRuns, StoreError>> {
        let _ = (limits, now_ms, limit);
        Box::pin(async { Ok(OverdueRuns::default()) })
    }
    /// Every schedule's record, by name. Stores without schedules report
    /// [`StoreError::Backend`].
    fn schedules(&self) -> BoxFuture<'_, Result<Vec<ScheduleRecord>, StoreError>> {
        Box::pin(async {
            Err(StoreError::Backend(
                "this store does not keep schedules".into(),
            ))
        })
    }
    /// Changes a schedule's record in one write transaction, creating the runs of the ticks
    /// that fire ([`apply_fire`]); durable when it returns.
    fn schedule(&self, write: ScheduleWrite) -> BoxFuture<'_, Result<ScheduleOutcome, StoreError>> {
        let _ = write;
        Box::pin(async {
            Err(StoreError::Backend(
                "this store does not keep schedules".into(),
            ))
        })
    }
    /// Runs a process holds (running, or sleeping with an owner), at most `limit`: where a worker
    /// looks for runs whose process died.
    fn held_runs(&self, limit: usize) -> BoxFuture<'_, Result<Vec<RunRecord>, StoreError>>;
    /// Where a queued run stands: runs ahead of it, runs of its queue (and of its concurrency
    /// key) in flight, and starts in the last `rate_period`.
    fn queue_standing(
        &self,
        id: &RunId,
        rate_period: Option<std::time::Duration>,
    ) -> BoxFuture<'_, Result<Option<QueueStanding>, StoreError>>;
}

/// What [`Store::overdue_runs`] found.
#[derive(Clone, Debug, Default)]
pub struct OverdueRuns {
    /// Runs past their deadline without a max-duration alert.
    pub runs: Vec<RunRecord>,
    /// The earliest deadline still ahead (ms since the epoch), or one at most that early for
    /// runs not read; `now` when `limit` cut the list short.
    pub next_deadline_ms: Option<u64>,
}

/// A worker's request to take queued runs ([`Store::take_queued`]).
#[derive(Clone, Debug)]
pub struct QueueTake {
    /// The queues to serve, in this order.
    pub queues: Vec<QueueLimits>,
    /// At most this many runs in all (the worker's free slots).
    pub max: usize,
    /// Only runs of these workflows (the ones the worker can execute).
    pub workflows: Vec<String>,
    /// The process that will execute the runs.
    pub owner: Option<Owner>,
    /// How long each claim holds where the owner's liveness cannot be checked.
    pub lease: std::time::Duration,
    /// Now, ms since the epoch.
    pub now_ms: u64,
    /// The version of the app that will execute the runs, recorded on each
    /// ([`RunRecord::app_version`]); `None` keeps what the record holds.
    pub app_version: Option<String>,
}

impl QueueTake {
    /// Starts a queued run this take selected: running, one more execution, held by the
    /// taking worker (its owner, lease and app version).
    pub fn start(&self, run: &mut RunRecord) {
        run.status = RunStatus::Running;
        run.executions += 1;
        if self.app_version.is_some() {
            run.app_version = self.app_version.clone();
        }
        run.hold(self.owner.clone(), self.lease, self.now_ms);
    }
}

/// One queue's limits, and how many runs of it a worker can start now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueLimits {
    /// The queue's name.
    pub name: String,
    /// At most this many runs of this queue to take now (the worker's room for the queue).
    pub take: usize,
    /// At most this many runs of the queue in flight across all workers.
    pub concurrency: Option<u32>,
    /// At most this many runs in flight with the same concurrency key.
    pub per_key: Option<u32>,
    /// At most this many starts per period.
    pub rate: Option<(u32, std::time::Duration)>,
}

/// A queued run a worker took: the run as claimed, and its claim.
#[derive(Clone, Debug)]
pub struct Taken {
    /// The run after the claim.
    pub run: RunRecord,
    /// The claim its writes carry.
    pub claim: Claim,
}

/// Where a queued run stands ([`Store::queue_standing`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStanding {
    /// Queued runs of the same queue that a worker takes before this one.
    pub ahead: u64,
    /// Runs of the queue started and not finished.
    pub in_flight: u64,
    /// Of those, the runs with this run's concurrency key.
    pub in_flight_with_key: u64,
    /// Runs of the queue started within the rate period asked about.
    pub recent_starts: u64,
}

/// Which finished runs [`Store::prune`] deletes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneRequest {
    /// Per finished status, a cutoff in ms since the epoch: a run of that status whose last
    /// change (`updated_at_ms`) is at or before it is deleted. Statuses not listed are kept,
    /// and so are unfinished ones even if listed.
    pub updated_until_ms: Vec<(RunStatus, u64)>,
    /// Also delete the alerts last changed at or before this (ms since the epoch) whose every
    /// notice is done and that nothing will resolve any more ([`alert_prunable`]), with their
    /// index entries. `None` keeps every alert.
    pub alerts_until_ms: Option<u64>,
    /// Count what would be deleted and delete nothing.
    pub dry_run: bool,
}

impl PruneRequest {
    /// The cutoff for `status`, if runs of that status may be deleted.
    pub fn cutoff(&self, status: RunStatus) -> Option<u64> {
        if !status.is_finished() {
            return None;
        }
        self.updated_until_ms
            .iter()
            .filter(|(s, _)| *s == status)
            .map(|(_, until)| *until)
            .max()
    }

    /// Whether `run` is selected: finished, of a listed status, last changed at or before its
    /// cutoff.
    pub fn selects(&self, run: &RunRecord) -> bool {
        self.cutoff(run.status)
            .is_some_and(|until| run.updated_at_ms <= until)
    }
}

/// What [`Store::prune`] deleted (or, in a dry run, would delete).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Pruned {
    /// Runs deleted.
    pub runs: u64,
    /// Step records deleted with them.
    pub steps: u64,
    /// Of the runs, those that had succeeded.
    pub succeeded: u64,
    /// Of the runs, those that had failed.
    pub failed: u64,
    /// Of the runs, those that were cancelled.
    pub cancelled: u64,
    /// Alerts deleted.
    pub alerts: u64,
}

impl Pruned {
    /// Counts one run of `status` with `steps` steps.
    pub(crate) fn add(&mut self, status: RunStatus, steps: u64) {
        self.runs += 1;
        self.steps += steps;
        match status {
            RunStatus::Succeeded => self.succeeded += 1,
            RunStatus::Failed => self.failed += 1,
            RunStatus::Cancelled => self.cancelled += 1,
            _ => {}
        }
    }
}

/// When the checkpoints of steps that may run again reach the disk.
///
/// Every step declares how it behaves when it runs twice, so flow knows which checkpoints a
/// crash may lose: an `idempotent` or keyed step that runs again is safe by its declaration.
/// `Window(d)` commits those checkpoints without waiting for the disk and makes them durable
/// with the next durable commit, at the latest `d` later; an `at_most_once` step's intent, the
/// start and the end of a run, a claim and an enqueue are durable before they are acted on or
/// reported, in both modes. A crash loses at most the last `d` of such checkpoints, always the
/// newest ones (never a later one without an earlier one); those steps run again on resume.
/// `Strict` makes every checkpoint durable before the step returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Durability {
    /// Every write is durable before it is acknowledged.
    Strict,
    /// Checkpoints of repeat-safe steps are durable within this window.
    Window(std::time::Duration),
}

impl Durability {
    /// The default of an exclusive store: a 5 ms window (see `docs/DESIGN.md` for why). A
    /// shared store is always strict.
    pub const DEFAULT: Durability = Durability::Window(std::time::Duration::from_millis(5));
}

impl Default for Durability {
    fn default() -> Self {
        Durability::DEFAULT
    }
}

/// Counters of a store's write side, for tests and benchmarks that show group commit at work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Durable commits done.
    pub commits: u64,
    /// Commits done without waiting for the disk (deferred checkpoints; made durable by the
    /// next durable commit).
    pub deferred_commits: u64,
    /// Write requests (`create_run` and `commit` calls) applied by those commits.
    pub writes: u64,
}

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// There is no store at the path (an operator command never creates one).
    #[error("no store at {path}; check the store path (a store is created by the first run of a workflow)")]
    Missing {
        /// The path looked at.
        path: PathBuf,
    },
    /// Another process has the file open in a mode that excludes this one: it holds the file
    /// exclusively, or this process asked for it exclusively while another has it open.
    #[error("{}", locked_message(path, *wanted))]
    Locked {
        /// The store file.
        path: PathBuf,
        /// The access this process asked for.
        wanted: Sharing,
    },
    /// The file is damaged.
    #[error("the store {path} is corrupt ({detail}); move it aside and restore it from a backup (flow will not overwrite it)")]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// What the database engine reported.
        detail: String,
    },
    /// The file is not a flow store.
    #[error(
        "{path} is not a flow store ({detail}); point flow at a new path or at a store it created"
    )]
    Foreign {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        detail: String,
    },
    /// The file was written by a newer flow.
    #[error("the store {path} has schema version {found}, but this build of flow reads up to version {supported}; upgrade flow to open it")]
    NewerVersion {
        /// The store file.
        path: PathBuf,
        /// The file's version.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// The file was written by an older flow whose records this build cannot continue.
    #[error("the store {path} has schema version {found}, written by {written_by}; this build of flow reads only version {supported}, and the runs in it cannot be resumed by this build (their step keys were computed differently); finish or inspect them with the flow version that wrote the store, and point this build at a new store path")]
    OlderVersion {
        /// The store file.
        path: PathBuf,
        /// The file's version.
        found: u32,
        /// The flow version that wrote it, as recorded in the file or known for its schema.
        written_by: String,
        /// The only version this build reads.
        supported: u32,
    },
    /// The disk is full.
    #[error("no space left on the device holding {path}; free some space and resume the run (every committed checkpoint is intact)")]
    DiskFull {
        /// The store file.
        path: PathBuf,
    },
    /// Any other I/O error.
    #[error("I/O error on the store {path}: {source}")]
    Io {
        /// The store file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A record could not be encoded or decoded.
    #[error("a stored record could not be read or written: {0}")]
    Encoding(String),
    /// The store's writer stopped (the process is shutting down).
    #[error("the store is closed")]
    Closed,
    /// A checkpoint committed without waiting for the disk could not be written, so no later
    /// write may be either (it would be durable without the earlier one).
    #[error("an earlier checkpoint could not be written to the store {path} ({cause}); this process writes nothing more to it: fix the cause and restart, the runs resume from their last durable checkpoint")]
    Broken {
        /// The store file.
        path: PathBuf,
        /// The first failure.
        cause: String,
    },
    /// Another execution claimed the run since this one did; this execution's writes are
    /// refused and it stops.
    #[error("run `{run_id}` was claimed by another execution; this one stops without writing (the other continues it)")]
    ClaimLost {
        /// The run.
        run_id: RunId,
    },
    /// The database server cannot be reached or dropped the connection (PostgreSQL). Nothing
    /// of the failed operation was written; retrying once the server is back can succeed.
    #[error("the database {target} is unavailable ({detail}); flow writes nothing until it is back: check that the server runs and is reachable, then retry (runs resume from their last checkpoint)")]
    Unavailable {
        /// The server and database, without the password.
        target: String,
        /// What the driver reported.
        detail: String,
    },
    /// Any other backend error.
    #[error("store error: {0}")]
    Backend(String),
}

impl StoreError {
    /// Whether retrying the operation later can succeed: the store was unreachable, not wrong.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}

fn locked_message(path: &std::path::Path, wanted: Sharing) -> String {
    let path = path.display();
    match wanted {
        Sharing::Exclusive => format!(
            "the store {path} is open in another process, and this process asked for it exclusively (FLOW_SHARING=exclusive, or `Sharing::Exclusive`), which needs the file to itself; wait for the other process (a running workflow, an operator command) to finish, or set FLOW_SHARING=shared so both can use it"
        ),
        Sharing::Shared => format!(
            "the store {path} is locked by another process in a mode that excludes this one: that process holds the file to itself (a flow process with FLOW_SHARING=exclusive or `Sharing::Exclusive`, or another program using the file); this process asked for shared access; wait for it to finish or stop that process, or point flow at another store file"
        ),
    }
}

/// Milliseconds since the Unix epoch, now (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

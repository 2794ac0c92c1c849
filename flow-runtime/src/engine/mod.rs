//! The engine: starting, resuming, cancelling and finishing runs.
//!
//! `Flow` owns the store handle and the table of runs executing in this process. It writes run
//! records; step records are written by the step executor. It knows workflows only through the
//! registry's type-erased `invoke` functions or a typed closure from generated code.

pub(crate) mod alerts;
pub(crate) mod classify;
pub(crate) mod context;
pub(crate) mod determinism;
pub(crate) mod prune;
pub(crate) mod queue;
pub(crate) mod registry;
pub(crate) mod retry;
pub(crate) mod schedules;
pub(crate) mod state;
pub(crate) mod step;
pub(crate) mod units;

use self::context::{Abort, ExecOptions, Frame, Mode, PlannedStep, RunCtx};
use self::registry::{BoxFuture, InputError, InvokeResult, WorkflowFailure, WorkflowMeta};
use crate::engine::retry::{RetryPolicies, RetryPolicy};
use crate::engine::state::AppState;
use crate::store::{
    now_ms, Attention, Claim, ClaimOutcome, ClaimRequest, CreateRun, Owner, RedbStore, RunFilter,
    RunId, RunRecord, RunStatus, Sharing, StepId, StepRecord, StepStatus, Store, StoreError, Write,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::{self, Display};
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;
use tracing::Instrument;

/// The runtime: a store plus the runs executing in this process. Cheap to clone.
///
/// ```no_run
/// # async fn demo() -> Result<(), flow_runtime::Error> {
/// let flow = flow_runtime::Flow::open("flow.redb")?;
/// let handle = flow
///     .start("sync_records", flow_runtime::RunOptions::new().id("nightly-2026-11-28"), serde_json::json!({}))
///     .await?;
/// let output = handle.outcome().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Flow {
    inner: Arc<Inner>,
}

impl fmt::Debug for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flow").finish_non_exhaustive()
    }
}

struct Inner {
    store: Arc<dyn Store>,
    policies: Arc<RetryPolicies>,
    state: AppState,
    active: Mutex<HashMap<RunId, Active>>,
    cancel_poll: Duration,
    /// How long a claim of this process holds where its liveness cannot be checked; renewed
    /// by the poller while the run executes.
    lease: Duration,
    poller: Mutex<Option<tokio::task::JoinHandle<()>>>,
    queues: HashMap<String, queue::Queue>,
    /// Notified when this process enqueues a run, so that its worker looks at once.
    queue_changed: tokio::sync::Notify,
    /// Where alerts go.
    alerts: alerts::AlertSinks,
    /// Notified when a run's end here may have opened or resolved an alert.
    alerts_changed: tokio::sync::Notify,
    /// Schedules declared or overridden in settings, by name.
    schedules: std::collections::BTreeMap<String, schedules::ScheduleConfig>,
    /// The app's version, recorded on the runs this process creates and executes.
    app_version: Option<String>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(poller) = lock(&self.poller).take() {
            poller.abort();
        }
    }
}

/// A run this process executes, or is claiming (`ctx` is `None` until the claim is won).
struct Active {
    ctx: Option<Arc<RunCtx>>,
    done: watch::Receiver<Option<Arc<Final>>>,
}

/// How long a claim holds where the owner's liveness cannot be checked (see
/// [`RunRecord::is_held`]), unless [`FlowBuilder::lease`] says otherwise; on this machine a
/// live owner holds its runs whatever the lease. The executing process renews it.
pub(crate) const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// The shortest lease [`FlowBuilder::lease`] accepts: renewals go out every quarter of it.
const MIN_LEASE: Duration = Duration::from_millis(200);

/// A run id reserved in this process's table while it is being claimed, so two starts of one id
/// in this process make one execution. Dropped without [`Flow::spawn`], it frees the id.
struct Reservation {
    inner: Arc<Inner>,
    id: RunId,
    done: Option<watch::Sender<Option<Arc<Final>>>>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.done.is_some() {
            lock(&self.inner.active).remove(&self.id);
        }
    }
}

/// What reserving a run id found.
enum Reserve<T, E> {
    /// The id is ours to claim.
    Reserved(Reservation),
    /// This process already executes the run: a handle on that execution.
    Attached(RunHandle<T, E>),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Builds a [`Flow`] with non-default settings.
#[derive(Debug, Default)]
pub struct FlowBuilder {
    policies: RetryPolicies,
    cancel_poll: Option<Duration>,
    lease: Option<Duration>,
    sharing: Sharing,
    state: AppState,
    queues: HashMap<String, queue::Queue>,
    durability: Option<crate::store::Durability>,
    alerts: Option<alerts::AlertSinks>,
    schedules: std::collections::BTreeMap<String, schedules::ScheduleConfig>,
    app_version: Option<String>,
}

impl FlowBuilder {
    /// The app's version (`1.4.2`, a commit id), recorded on every run this `Flow` creates or
    /// executes ([`RunRecord::app_version`]) so that `stats --compare --before-version A
    /// --after-version B` can set two versions side by side. `#[flow::main]` sets the package
    /// version, or `flow.app_version` from settings; without it runs record none.
    pub fn app_version(mut self, version: impl Into<String>) -> Self {
        self.app_version = Some(version.into());
        self
    }

    /// Where alerts go (default: the log only; see [`alerts::AlertSinks`]). Runs of a workflow
    /// with `alert_after = N` open an alert after N consecutive failures, and every run that
    /// needs attention opens one; [`Flow::deliver_alerts`] and the worker send them.
    pub fn alerts(mut self, sinks: alerts::AlertSinks) -> Self {
        self.alerts = Some(sinks);
        self
    }

    /// Declares a schedule, or overrides the one a workflow declares with
    /// `#[workflow(schedule = ...)]` (each field left `None` keeps the declared value); what
    /// `[flow.schedules.NAME]` in settings does. Checked by [`Flow::schedules`] and when a
    /// worker starts.
    pub fn schedule(mut self, name: impl Into<String>, config: schedules::ScheduleConfig) -> Self {
        self.schedules.insert(name.into(), config);
        self
    }

    /// Registers app state: a client, a pool or a configuration that workflow code reads by
    /// type with [`flow::state`](crate::state()) and hands to steps as `skip` parameters. One
    /// value per type; a second value of a type replaces the first.
    pub fn state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.state.insert(value);
        self
    }

    /// Registers every value of `state` (see [`FlowBuilder::state`]).
    pub fn app_state(mut self, state: AppState) -> Self {
        self.state.merge(state);
        self
    }

    /// Declares a queue and its limits (see [`queue::Queue`]); runs enqueued on a queue that
    /// is not declared are refused ([`Error::UnknownQueue`]), except on `default`.
    pub fn queue(mut self, name: impl Into<String>, queue: queue::Queue) -> Self {
        self.queues.insert(name.into(), queue);
        self
    }

    /// Declares every queue of `queues` (from settings).
    pub fn queues(mut self, queues: impl IntoIterator<Item = (String, queue::Queue)>) -> Self {
        self.queues.extend(queues);
        self
    }

    /// Replaces a named retry policy (`"transient"`) or adds one.
    pub fn retry_policy(mut self, name: impl Into<String>, policy: RetryPolicy) -> Self {
        self.policies.set(name, policy);
        self
    }

    /// Replaces every named retry policy (from settings).
    pub fn retry_policies(mut self, policies: RetryPolicies) -> Self {
        self.policies = policies;
        self
    }

    /// How often runs executing here check the store for cancel requests from other processes
    /// (default 500 ms).
    pub fn cancel_poll_interval(mut self, every: Duration) -> Self {
        self.cancel_poll = Some(every);
        self
    }

    /// How long this process's claim of a run holds where other processes cannot check that it
    /// lives: a worker on another machine sharing a PostgreSQL store (default 30 s, at least
    /// 200 ms; setting `flow.lease`). While a run executes here its lease is renewed whenever
    /// less than half of it is left, so a run may take any number of leases; a process that
    /// stops renewing (frozen, cut off from the store) loses its runs once their lease
    /// expires, and its later writes are refused.
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), flow_runtime::Error> {
    /// let flow = flow_runtime::Flow::builder()
    ///     .lease(std::time::Duration::from_secs(10))
    ///     .open("flow.redb")?;
    /// # Ok(()) }
    /// ```
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = Some(lease.max(MIN_LEASE));
        self
    }

    /// Whether other processes may open the store while this one runs workflows (default:
    /// [`Sharing::Shared`]). [`Sharing::Exclusive`] halves the fsyncs of every commit and locks
    /// operator commands out until this process closes the store.
    pub fn sharing(mut self, sharing: Sharing) -> Self {
        self.sharing = sharing;
        self
    }

    /// When the checkpoints of repeat-safe steps reach the disk (see
    /// [`crate::store::Durability`]). Applies to a store this builder opens: an exclusive store
    /// defaults to a 5 ms window; a shared one is always strict (redb commits durably in its
    /// multi-process mode).
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), flow_runtime::Error> {
    /// use flow_runtime::{Durability, Flow, Sharing};
    /// let flow = Flow::builder()
    ///     .sharing(Sharing::Exclusive)
    ///     .durability(Durability::Strict)
    ///     .open("flow.redb")?;
    /// # Ok(()) }
    /// ```
    pub fn durability(mut self, durability: crate::store::Durability) -> Self {
        self.durability = Some(durability);
        self
    }

    /// Opens (or creates) the redb store at `path`.
    pub fn open(self, path: impl AsRef<Path>) -> Result<Flow, Error> {
        let store = RedbStore::open_with(path.as_ref(), self.sharing)?;
        if let Some(durability) = self.durability {
            store.set_durability(durability);
        }
        Ok(self.store(Arc::new(store)))
    }

    /// Uses `store`.
    pub fn store(self, store: Arc<dyn Store>) -> Flow {
        Flow {
            inner: Arc::new(Inner {
                store,
                policies: Arc::new(self.policies),
                state: self.state,
                active: Mutex::new(HashMap::new()),
                cancel_poll: self.cancel_poll.unwrap_or(Duration::from_millis(500)),
                lease: self.lease.unwrap_or(DEFAULT_LEASE),
                poller: Mutex::new(None),
                queues: self.queues,
                queue_changed: tokio::sync::Notify::new(),
                alerts: self.alerts.unwrap_or_default(),
                alerts_changed: tokio::sync::Notify::new(),
                schedules: self.schedules,
                app_version: self.app_version,
            }),
        }
    }
}

/// How to start a run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    id: Option<RunId>,
    use_stored_input: bool,
    exec: ExecOptions,
    queue: Option<String>,
    priority: i32,
    not_before: Option<NotBefore>,
    concurrency_key: Option<String>,
    traceparent: Option<String>,
}

/// When an enqueued run may start at the earliest.
#[derive(Clone, Copy, Debug)]
enum NotBefore {
    Delay(Duration),
    At(std::time::SystemTime),
}

impl RunOptions {
    /// Default options: a generated run id.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses this run id, the idempotency key of the whole run: starting an id that already
    /// finished returns the stored outcome and executes nothing; starting an unfinished one
    /// resumes it.
    pub fn id(mut self, id: impl Into<RunId>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Starting an unfinished run id with an input other than its stored one continues the run
    /// with its stored input (and logs it) instead of failing with [`Error::InputMismatch`].
    pub fn use_stored_input(mut self) -> Self {
        self.use_stored_input = true;
        self
    }

    /// A staged rollout: fan-outs (`flow::units`) process only the units whose key hashes into
    /// the first `percent` of the key space, then the run pauses. Running the same id again with
    /// a larger share processes the extra units; 100 completes the run. See
    /// [`crate::rollout_bucket`] for the hash.
    pub fn rollout(mut self, percent: f64) -> Self {
        self.exec.rollout = Some(percent.clamp(0.0, 100.0));
        self
    }

    /// Fan-outs process only these units (an operator retrying one unit); the run pauses if
    /// others remain.
    pub fn only_units(mut self, keys: impl IntoIterator<Item = String>) -> Self {
        self.exec.only_units = Some(keys.into_iter().collect());
        self
    }

    /// A worker's execution: long sleeps and backoffs release the worker.
    pub(crate) fn suspend_after(mut self, after: Duration) -> Self {
        self.exec.suspend_after = Some(after);
        self
    }

    /// Enqueues on this queue (declared with [`FlowBuilder::queue`], or in settings under
    /// `[flow.queues.NAME]`); the queue `default` always exists. Used by `enqueue`.
    pub fn queue(mut self, name: impl Into<String>) -> Self {
        self.queue = Some(name.into());
        self
    }

    /// The run's priority in its queue: lower runs first, as in DBOS and Temporal (default 0;
    /// negative values jump ahead). Runs of equal priority run in enqueue order.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// An enqueued run waits at least this long before a worker takes it.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.not_before = Some(NotBefore::Delay(delay));
        self
    }

    /// An enqueued run waits until this time before a worker takes it.
    pub fn not_before(mut self, at: std::time::SystemTime) -> Self {
        self.not_before = Some(NotBefore::At(at));
        self
    }

    /// Runs with the same key share their queue's per-key concurrency limit (at most K runs
    /// at once for one customer, say).
    pub fn concurrency_key(mut self, key: impl Into<String>) -> Self {
        self.concurrency_key = Some(key.into());
        self
    }

    /// Makes a new run part of its caller's trace: `traceparent` is the caller's W3C trace
    /// context header (`00-<trace id>-<span id>-<flags>`). The run stores that trace id (its log
    /// lines carry it) and, with OpenTelemetry export on, its spans are children of the
    /// caller's span, in every execution. A value that is not a traceparent fails the start
    /// with [`Error::InvalidTraceparent`]; a run that already exists keeps its own trace.
    pub fn traceparent(mut self, traceparent: impl Into<String>) -> Self {
        self.traceparent = Some(traceparent.into());
        self
    }

    /// The trace of a new run with these options: its trace id, and the caller's
    /// traceparent (normalized) if one was given.
    pub(crate) fn new_trace(&self) -> Result<(String, Option<String>), Error> {
        match &self.traceparent {
            None => Ok((new_trace_id(), None)),
            Some(text) => {
                let parent =
                    crate::trace::TraceParent::parse(text).map_err(Error::InvalidTraceparent)?;
                Ok((parent.trace_id.clone(), Some(parent.to_string())))
            }
        }
    }
}

/// How a run ended, as every handle of it sees it.
#[derive(Debug)]
enum Final {
    /// The run released its worker until this time (a durable sleep or a backoff); a worker's
    /// timer resumes it.
    Suspended(u64),
    Succeeded(serde_json::Value),
    Failed(String),
    Cancelled,
    NeedsAttention(Attention),
    /// A staged rollout processed its share; the run waits for a larger one.
    Paused(String),
    /// The run stopped without a final state (the store failed); it can be resumed.
    Interrupted(String),
}

impl Final {
    fn of_record(run: &RunRecord) -> Option<Final> {
        Some(match run.status {
            RunStatus::Succeeded => {
                Final::Succeeded(run.output.clone().unwrap_or(serde_json::Value::Null))
            }
            RunStatus::Failed => Final::Failed(run.error.clone().unwrap_or_default()),
            RunStatus::Cancelled => Final::Cancelled,
            RunStatus::NeedsAttention => Final::NeedsAttention(run.attention.clone()?),
            _ => return None,
        })
    }
}

struct Slots<T, E> {
    ok: Mutex<Option<T>>,
    err: Mutex<Option<E>>,
}

/// A started run: its id, and its outcome once it ends.
pub struct RunHandle<T, E> {
    run_id: RunId,
    trace_id: String,
    done: watch::Receiver<Option<Arc<Final>>>,
    slots: Option<Arc<Slots<T, E>>>,
    // Chosen where `T: DeserializeOwned` is known, so `outcome` needs no bound of its own (a
    // bound there would add a second error to a workflow whose output is not serde).
    decode: fn(serde_json::Value) -> Result<T, serde_json::Error>,
}

impl<T, E> fmt::Debug for RunHandle<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunHandle")
            .field("run_id", &self.run_id)
            .field("trace_id", &self.trace_id)
            .finish_non_exhaustive()
    }
}

impl<T, E> RunHandle<T, E> {
    /// The run id.
    pub fn run_id(&self) -> &RunId {
        &self.run_id
    }

    /// The run's W3C trace id.
    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// Waits for the run to end and returns its output or why there is none.
    pub async fn outcome(mut self) -> Result<T, RunError<E>> {
        let end = loop {
            if let Some(end) = self.done.borrow_and_update().clone() {
                break end;
            }
            if self.done.changed().await.is_err() {
                // The driver never drops the sender before publishing; be safe anyway.
                break Arc::new(Final::Interrupted("the run's task ended".into()));
            }
        };
        let slots = self.slots.take();
        match &*end {
            Final::Succeeded(value) => {
                if let Some(v) = slots.as_ref().and_then(|s| lock(&s.ok).take()) {
                    return Ok(v);
                }
                (self.decode)(value.clone()).map_err(|e| {
                    RunError::Engine(Error::Encoding(format!(
                        "the stored output of run {} does not match the workflow's output type: {e}",
                        self.run_id
                    )))
                })
            }
            Final::Failed(message) => match slots.as_ref().and_then(|s| lock(&s.err).take()) {
                Some(e) => Err(RunError::Workflow(e)),
                None => Err(RunError::Failed {
                    message: message.clone(),
                }),
            },
            Final::Cancelled => Err(RunError::Cancelled),
            Final::NeedsAttention(a) => Err(RunError::NeedsAttention(a.clone())),
            Final::Paused(summary) => Err(RunError::Paused {
                summary: summary.clone(),
            }),
            Final::Interrupted(reason) => Err(RunError::Engine(Error::Interrupted {
                run_id: self.run_id.clone(),
                reason: reason.clone(),
            })),
            // Only a worker's executions release their worker, and a worker reads no outcome
            Final::Suspended(wake_at) => Err(RunError::Engine(Error::Interrupted {
                run_id: self.run_id.clone(),
                reason: format!(
                    "the run sleeps until {wake_at} ms since the epoch; a worker resumes it then"
                ),
            })),
        }
    }
}

/// The result of a dry run: what the workflow returned, and the steps it skipped.
#[derive(Debug)]
pub struct DryRun<T, E> {
    /// What the workflow returned, with stand-ins for every skipped step.
    pub result: Result<T, RunError<E>>,
    /// Each skipped step, in call order, with its key and arguments.
    pub plan: Vec<PlannedStep>,
}

/// Why a run did not produce its output.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError<E> {
    /// The workflow returned this error (in this process).
    #[error("{0}")]
    Workflow(E),
    /// The run had already failed (or failed in another process) with this message.
    #[error("the run failed: {message}")]
    Failed {
        /// The stored error message.
        message: String,
    },
    /// An operator cancelled the run.
    #[error("the run was cancelled")]
    Cancelled,
    /// An `at_most_once` step's outcome is unknown; an operator must resolve it.
    #[error("the run needs attention: {}", .0.reason)]
    NeedsAttention(Attention),
    /// A staged rollout processed its share of units and paused the run; run it again with a
    /// larger rollout to process the rest.
    #[error("the run paused after its rollout: {summary}")]
    Paused {
        /// What was processed and what is left.
        summary: String,
    },
    /// The engine or the store failed.
    #[error(transparent)]
    Engine(#[from] Error),
}

impl<E> RunError<E> {
    /// The workflow's own error, if that is why the run failed here.
    pub fn workflow_error(&self) -> Option<&E> {
        match self {
            RunError::Workflow(e) => Some(e),
            _ => None,
        }
    }
}

/// How an operator settles an `at_most_once` step whose outcome is unknown.
#[derive(Clone, Debug)]
pub enum Resolution {
    /// The effect happened: record the step as done with this output (JSON of the step's output
    /// type; `null` for `()`).
    Done(serde_json::Value),
    /// The effect did not happen: allow the step to run again on resume.
    Rerun,
}

/// Engine errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The input does not decode into the workflow's parameters; nothing was stored.
    #[error("invalid input for workflow `{workflow}`: {message}")]
    Input {
        /// The workflow.
        workflow: String,
        /// What does not match.
        message: String,
    },
    /// An enqueue named a queue that is not declared.
    #[error("unknown queue `{name}`; declare it in settings as [flow.queues.{name}] (or with `FlowBuilder::queue`); the declared queues are: {}", .known.join(", "))]
    UnknownQueue {
        /// The name asked for.
        name: String,
        /// The declared queues.
        known: Vec<String>,
    },
    /// No schedule of that name is declared on a workflow or in settings.
    #[error("unknown schedule `{name}`; the schedules are: {}", if .known.is_empty() { "none (declare one with #[workflow(schedule = \"...\")] or [flow.schedules.NAME])".to_owned() } else { .known.join(", ") })]
    UnknownSchedule {
        /// The name asked for.
        name: String,
        /// The schedules there are.
        known: Vec<String>,
    },
    /// A schedule does not resolve (a settings override names an unknown workflow, a bad
    /// cron expression or zone, input that does not decode), or a schedule request is invalid.
    #[error("{0}")]
    Schedule(String),
    /// No workflow of that name is linked into this binary.
    #[error("unknown workflow `{name}`; this binary has: {}", if .known.is_empty() { "none".to_owned() } else { .known.join(", ") })]
    UnknownWorkflow {
        /// The name asked for.
        name: String,
        /// The names that exist.
        known: Vec<String>,
    },
    /// No run has that id.
    #[error("no run has the id `{0}`; list runs to find the right id")]
    UnknownRun(RunId),
    /// An unfinished run has the id, with another input.
    #[error("run `{id}` exists with another input; it continues only with its stored input: start it with the same input, ask for the stored one (`RunOptions::use_stored_input`, `--use-stored-input`), or choose another id")]
    InputMismatch {
        /// The run.
        id: RunId,
    },
    /// The run id breaks the rule documented on [`RunId`].
    #[error(transparent)]
    InvalidRunId(#[from] crate::store::InvalidRunId),
    /// The run id belongs to a run of another workflow.
    #[error(
        "the run id `{id}` is already used by a run of workflow `{workflow}`; choose another id"
    )]
    RunIdConflict {
        /// The id.
        id: RunId,
        /// The workflow that owns it.
        workflow: String,
    },
    /// The operation needs an unfinished run.
    #[error("run `{id}` is {status}, so it cannot be {action}")]
    WrongState {
        /// The run.
        id: RunId,
        /// Its status.
        status: RunStatus,
        /// What was attempted.
        action: &'static str,
    },
    /// The step is not waiting for a decision.
    #[error(
        "step `{step}` of run `{id}` is not an at_most_once step in doubt; nothing to resolve"
    )]
    NothingToResolve {
        /// The run.
        id: RunId,
        /// The step.
        step: String,
    },
    /// `resolve --done` was given an output that the step's replay could not decode.
    #[error("the output given for step `{step}` is not a `{expected}`: {detail}; nothing was stored, pass a value of type `{expected}` with --step-output")]
    WrongStepOutput {
        /// The step.
        step: String,
        /// The step's output type, as written in its signature.
        expected: &'static str,
        /// Why the value does not decode.
        detail: String,
    },
    /// A value could not be encoded or decoded.
    #[error("{0}")]
    Encoding(String),
    /// The run has no step of that name.
    #[error("run `{id}` has no step `{step}`; its steps are: {}", .known.join(", "))]
    UnknownStep {
        /// The run.
        id: RunId,
        /// The name asked for.
        step: String,
        /// The step names the run has.
        known: Vec<String>,
    },
    /// Another live process is executing the run.
    #[error("run `{id}` is being executed by process {pid}; wait for it, or cancel the run")]
    RunInProgress {
        /// The run.
        id: RunId,
        /// The process executing it.
        pid: u32,
    },
    /// The caller's `traceparent` is not one; nothing was stored.
    #[error("invalid traceparent: {0}")]
    InvalidTraceparent(String),
    /// The run stopped without a final state; resume it once the cause is fixed.
    #[error("run `{run_id}` was interrupted: {reason}; it can be resumed")]
    Interrupted {
        /// The run.
        run_id: RunId,
        /// Why.
        reason: String,
    },
}

type Invoke = Box<dyn FnOnce(serde_json::Value) -> BoxFuture<'static, InvokeResult> + Send>;

impl From<InputError> for Error {
    fn from(e: InputError) -> Self {
        Error::Input {
            workflow: e.workflow,
            message: e.message,
        }
    }
}

/// Runs `future` to completion on a new multi-threaded runtime, the one flow executes runs on,
/// so a program that is not a `#[flow::main]` app needs no async runtime of its own:
///
/// ```no_run
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     flow_runtime::block_on(nightly())?
/// }
///
/// async fn nightly() -> Result<(), Box<dyn std::error::Error>> {
///     let flow = flow_runtime::Flow::open("flow.redb")?;
///     // start runs ...
///     Ok(())
/// }
/// ```
///
/// Fails only if the runtime cannot start (the system refused threads or an event queue).
pub fn block_on<F: Future>(future: F) -> std::io::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(future))
}

/// A new W3C trace id: 16 random bytes as 32 lowercase hex digits, never all zero.
fn new_trace_id() -> String {
    let id = uuid::Uuid::new_v4().as_u128().max(1);
    format!("{id:032x}")
}

impl Flow {
    /// Opens (or creates) the redb store at `path` with default settings.
    pub fn open(path: impl AsRef<Path>) -> Result<Flow, Error> {
        FlowBuilder::default().open(path)
    }

    /// A builder for non-default settings.
    pub fn builder() -> FlowBuilder {
        FlowBuilder::default()
    }

    /// This process's metrics in the OpenMetrics text format that Prometheus scrapes (content
    /// type `application/openmetrics-text; version=1.0.0; charset=utf-8`): runs started and
    /// finished, step durations, attempts and retries by error class, queue depth and age
    /// (read from the store now), schedule lag, alerts fired, store commits. For an app that
    /// embeds flow and serves its own `/metrics`; a `#[flow::main]` worker serves them itself
    /// (`flow.metrics.listen`).
    pub async fn prometheus_metrics(&self) -> Result<String, Error> {
        crate::metrics::encode(self).await
    }

    /// The app version recorded on runs ([`FlowBuilder::app_version`]).
    pub fn app_version(&self) -> Option<&str> {
        self.inner.app_version.as_deref()
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// Starts the workflow named `workflow` with JSON `input`.
    pub async fn start(
        &self,
        workflow: &str,
        options: RunOptions,
        input: serde_json::Value,
    ) -> Result<RunHandle<serde_json::Value, WorkflowFailure>, Error> {
        let meta = find_workflow(workflow)?;
        // The typed `start_with` is checked by the compiler; by name, decode before storing.
        (meta.check_input)(&input)?;
        self.start_erased(meta.name, options, input, Box::new(meta.invoke), None)
            .await
    }

    /// Dry-runs the workflow named `workflow`: read-only steps run, every other step is skipped
    /// and listed in the plan. Nothing is written to the store.
    pub async fn dry_run(
        &self,
        workflow: &str,
        input: serde_json::Value,
    ) -> Result<DryRun<serde_json::Value, WorkflowFailure>, Error> {
        let meta = find_workflow(workflow)?;
        (meta.check_input)(&input)?;
        let (end, plan) = self
            .drive_dry(meta.name, input, Box::new(meta.invoke))
            .await;
        let handle = finished_handle(RunId::from("dry-run"), String::new(), end, None);
        Ok(DryRun {
            result: handle.outcome().await,
            plan,
        })
    }

    /// Resumes an unfinished run (interrupted, failed, or resolved after needing attention):
    /// completed steps replay from their checkpoints, the rest execute.
    pub async fn resume(
        &self,
        id: &RunId,
    ) -> Result<RunHandle<serde_json::Value, WorkflowFailure>, Error> {
        self.resume_with(id, RunOptions::new()).await
    }

    /// [`Flow::resume`] with per-execution options (a rollout, a unit filter); the options' id
    /// is ignored.
    pub async fn resume_with(
        &self,
        id: &RunId,
        options: RunOptions,
    ) -> Result<RunHandle<serde_json::Value, WorkflowFailure>, Error> {
        id.validate()?;
        let reservation = match self.reserve(id).await {
            Reserve::Reserved(reservation) => reservation,
            Reserve::Attached(handle) => return Ok(handle),
        };
        let run = self.load(id).await?;
        // Checked again, atomically, by the claim; first here, so that a process without the
        // workflow still says who executes the run.
        if run.is_held(now_ms()) {
            return Err(Error::RunInProgress {
                id: id.clone(),
                pid: run.owner.map_or(0, |o| o.pid),
            });
        }
        let meta = find_workflow(&run.workflow)?;
        self.execute(
            reservation,
            id,
            Take::Resume,
            Box::new(meta.invoke),
            None,
            options.exec,
        )
        .await
    }

    /// Starts a new run of the same workflow and input that reuses the checkpoints of `id`
    /// taken before the first call of the step `from_step` (its full name, or its function
    /// name); that step and everything after it execute again. Returns the new run's handle.
    pub async fn fork(
        &self,
        id: &RunId,
        from_step: &str,
        new_id: Option<RunId>,
    ) -> Result<RunHandle<serde_json::Value, WorkflowFailure>, Error> {
        id.validate()?;
        if let Some(new_id) = &new_id {
            new_id.validate()?;
        }
        let run = self.load(id).await?;
        let meta = find_workflow(&run.workflow)?;
        let mut steps = self.inner.store.steps(id).await?;
        steps.sort_by_key(|s| (s.started_at_ms, s.finished_at_ms));
        let matches = |name: &str| name == from_step || name.rsplit("::").next() == Some(from_step);
        let Some(cut) = steps.iter().find(|s| matches(&s.id.name)) else {
            let mut names: Vec<String> = steps.iter().map(|s| s.id.name.clone()).collect();
            names.dedup();
            return Err(Error::UnknownStep {
                id: id.clone(),
                step: from_step.to_owned(),
                known: names,
            });
        };
        let cut_at = cut.started_at_ms;
        let new_id = new_id.unwrap_or_else(RunId::generate);
        let now = now_ms();
        let reservation = match self
            .reserve::<serde_json::Value, WorkflowFailure>(&new_id)
            .await
        {
            Reserve::Reserved(reservation) => reservation,
            Reserve::Attached(_) => {
                return Err(Error::RunIdConflict {
                    id: new_id,
                    workflow: run.workflow,
                })
            }
        };
        // Created unclaimed: the execution below claims it like any resume.
        let fork = RunRecord::new(
            new_id.clone(),
            run.workflow.clone(),
            RunStatus::Queued,
            run.input.clone(),
            new_trace_id(),
            now,
        );
        if let CreateRun::Exists(_) = self.inner.store.create_run(fork.clone()).await? {
            return Err(Error::RunIdConflict {
                id: new_id,
                workflow: run.workflow,
            });
        }
        let kept: Vec<Write> = steps
            .into_iter()
            .filter(|s| s.status == StepStatus::Succeeded && s.started_at_ms < cut_at)
            .map(|mut s| {
                s.run_id = new_id.clone();
                Write::PutStep(s)
            })
            .collect();
        tracing::info!(from = %id, fork = %new_id, reused = kept.len(), "forking run");
        if !kept.is_empty() {
            self.inner.store.commit(kept).await?;
        }
        self.execute(
            reservation,
            &new_id,
            Take::Resume,
            Box::new(meta.invoke),
            None,
            ExecOptions::default(),
        )
        .await
    }

    /// Cancels a run. A run executing in this or another process stops at its next step
    /// boundary; a run that is not executing is marked cancelled.
    pub async fn cancel(&self, id: &RunId) -> Result<(), Error> {
        id.validate()?;
        let run = self.load(id).await?;
        if run.status.is_finished() {
            return Err(Error::WrongState {
                id: id.clone(),
                status: run.status,
                action: "cancelled",
            });
        }
        let local = lock(&self.inner.active).get(id).and_then(|a| a.ctx.clone());
        self.inner
            .store
            .commit(vec![Write::RequestCancel(id.clone())])
            .await?;
        if let Some(ctx) = local {
            ctx.request_cancel();
            return Ok(());
        }
        // Nobody picks the request up if no live process executes the run: cancel it here, in
        // one claim, so that an execution starting at the same moment either sees the run
        // cancelled or is fenced off (its first write is refused).
        let request = ClaimRequest {
            owner: None,
            lease: Duration::ZERO,
            take: Box::new(|run: &mut RunRecord| {
                if run.status.is_finished() {
                    return false;
                }
                run.status = RunStatus::Cancelled;
                true
            }),
        };
        match self.inner.store.claim(id, request).await? {
            // A live execution holds the run: it stops at its next step boundary.
            ClaimOutcome::Claimed { .. } | ClaimOutcome::Held(_) => Ok(()),
            ClaimOutcome::Refused(run) => Err(Error::WrongState {
                id: id.clone(),
                status: run.status,
                action: "cancelled",
            }),
            ClaimOutcome::Missing => Err(Error::UnknownRun(id.clone())),
        }
    }

    /// Stops every run this process executes, for `reason` (a signal, a deploy): no step
    /// starts any more, the steps in flight finish and are checkpointed, and each run ends
    /// interrupted, to be resumed later (its outcome is [`Error::Interrupted`]). Returns the
    /// runs asked to stop; wait for their handles to know when they have.
    pub fn shutdown(&self, reason: &str) -> Vec<RunId> {
        let active = lock(&self.inner.active);
        let mut stopped = Vec::new();
        for (id, run) in active.iter() {
            if let Some(ctx) = &run.ctx {
                ctx.stop(Abort::Shutdown(reason.to_owned()));
                stopped.push(id.clone());
            }
        }
        stopped
    }

    /// Settles an `at_most_once` step whose outcome is unknown, so the run can be resumed.
    pub async fn resolve(
        &self,
        id: &RunId,
        step: &StepId,
        resolution: Resolution,
    ) -> Result<(), Error> {
        id.validate()?;
        let mut run = self.load(id).await?;
        let steps = self.inner.store.steps(id).await?;
        let Some(mut record) = steps
            .into_iter()
            .find(|s| &s.id == step && s.status == StepStatus::Started)
        else {
            return Err(Error::NothingToResolve {
                id: id.clone(),
                step: step.to_string(),
            });
        };
        let mut writes = Vec::new();
        match resolution {
            Resolution::Done(output) => {
                // Replay decodes the output into the step's type: one that does not decode would
                // make the run impossible to resume. A step no longer in this binary is not
                // replayed by it, so there is nothing to check against.
                if let Some(meta) = crate::engine::registry::step(&step.name) {
                    if let Err(detail) = (meta.check_output)(&output) {
                        return Err(Error::WrongStepOutput {
                            step: step.to_string(),
                            expected: meta.output_type,
                            detail,
                        });
                    }
                }
                record.status = StepStatus::Succeeded;
                record.output = Some(output);
                record.finished_at_ms = Some(now_ms());
                writes.push(Write::PutStep(record));
            }
            Resolution::Rerun => writes.push(Write::DeleteStep(id.clone(), step.clone())),
        }
        if run.status == RunStatus::NeedsAttention {
            run.status = RunStatus::Running;
            run.attention = None;
            run.updated_at_ms = now_ms();
            writes.push(Write::PutRun(run));
        }
        self.inner.store.commit(writes).await?;
        Ok(())
    }

    /// One run's record.
    pub async fn run_record(&self, id: &RunId) -> Result<Option<RunRecord>, Error> {
        Ok(self.inner.store.run(id).await?)
    }

    /// Runs matching `filter`, newest first.
    pub async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, Error> {
        Ok(self.inner.store.runs(filter).await?)
    }

    /// A run's step records.
    pub async fn steps(&self, id: &RunId) -> Result<Vec<StepRecord>, Error> {
        Ok(self.inner.store.steps(id).await?)
    }

    async fn load(&self, id: &RunId) -> Result<RunRecord, Error> {
        self.inner
            .store
            .run(id)
            .await?
            .ok_or_else(|| Error::UnknownRun(id.clone()))
    }

    async fn start_erased<T, E>(
        &self,
        workflow: &'static str,
        options: RunOptions,
        input: serde_json::Value,
        invoke: Invoke,
        slots: Option<Arc<Slots<T, E>>>,
    ) -> Result<RunHandle<T, E>, Error>
    where
        T: DeserializeOwned,
    {
        let id = options.id.clone().unwrap_or_else(RunId::generate);
        id.validate()?;
        let (trace_id, traceparent) = options.new_trace()?;
        let reservation = match self.reserve(&id).await {
            Reserve::Reserved(reservation) => reservation,
            Reserve::Attached(handle) => return Ok(handle),
        };
        let now = now_ms();
        let fresh = RunRecord {
            executions: 1,
            app_version: self.inner.app_version.clone(),
            owner: Owner::current(),
            lease_expires_at_ms: Some(now + self.inner.lease.as_millis() as u64),
            traceparent,
            ..RunRecord::new(
                id.clone(),
                workflow,
                RunStatus::Running,
                input,
                trace_id,
                now,
            )
        };
        match self.inner.store.create_run(fresh.clone()).await? {
            CreateRun::Created(claim) => Ok(self.spawn(
                reservation,
                fresh,
                claim,
                Vec::new(),
                false,
                invoke,
                slots,
                options.exec,
            )),
            CreateRun::Exists(existing) => {
                if existing.workflow != workflow {
                    return Err(Error::RunIdConflict {
                        id,
                        workflow: existing.workflow,
                    });
                }
                if let Some(end) = Final::of_record(&existing) {
                    return Ok(finished_handle(id, existing.trace_id, end, None));
                }
                if fresh.input != existing.input {
                    if !options.use_stored_input {
                        return Err(Error::InputMismatch { id });
                    }
                    tracing::warn!(run_id = %id, "the run exists with another input; resuming it with its stored input");
                }
                self.execute(reservation, &id, Take::Start, invoke, slots, options.exec)
                    .await
            }
        }
    }

    /// Claims the stored run `id` and executes it in this process.
    async fn execute<T, E>(
        &self,
        reservation: Reservation,
        id: &RunId,
        take: Take,
        invoke: Invoke,
        slots: Option<Arc<Slots<T, E>>>,
        mut exec: ExecOptions,
    ) -> Result<RunHandle<T, E>, Error>
    where
        T: DeserializeOwned,
    {
        let was_failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let app_version = self.inner.app_version.clone();
        let request = ClaimRequest {
            owner: Owner::current(),
            lease: self.inner.lease,
            take: Box::new({
                let was_failed = was_failed.clone();
                move |run: &mut RunRecord| {
                    if !take.allows(run.status) {
                        return false;
                    }
                    was_failed.store(
                        run.status == RunStatus::Failed,
                        std::sync::atomic::Ordering::SeqCst,
                    );
                    run.status = RunStatus::Running;
                    run.executions += 1;
                    run.error = None;
                    run.attention = None;
                    run.wake_at_ms = None;
                    if app_version.is_some() {
                        run.app_version = app_version.clone();
                    }
                    true
                }
            }),
        };
        let (run, claim) = match self.inner.store.claim(id, request).await? {
            ClaimOutcome::Claimed { run, claim } => (run, claim),
            ClaimOutcome::Missing => return Err(Error::UnknownRun(id.clone())),
            ClaimOutcome::Held(run) => {
                return Err(Error::RunInProgress {
                    id: id.clone(),
                    pid: run.owner.map_or(0, |o| o.pid),
                })
            }
            ClaimOutcome::Refused(run) => {
                if take == Take::Start {
                    if let Some(end) = Final::of_record(&run) {
                        return Ok(finished_handle(id.clone(), run.trace_id, end, None));
                    }
                }
                return Err(take.refusal(run));
            }
        };
        // An operator retrying a failed run (or chosen units) executes failed steps again; a
        // resume after a crash replays them.
        exec.retry_failed |=
            was_failed.load(std::sync::atomic::Ordering::SeqCst) || exec.only_units.is_some();
        let checkpoints = self.inner.store.steps(&run.id).await?;
        let cancelled = !self
            .inner
            .store
            .cancel_requests(std::slice::from_ref(&run.id))
            .await?
            .is_empty();
        Ok(self.spawn(
            reservation,
            run,
            claim,
            checkpoints,
            cancelled,
            invoke,
            slots,
            exec,
        ))
    }

    /// Reserves `id` in this process's table of runs, or attaches to the execution of it that
    /// this process already has.
    async fn reserve<T: DeserializeOwned, E>(&self, id: &RunId) -> Reserve<T, E> {
        loop {
            {
                let mut active = lock(&self.inner.active);
                match active.get(id) {
                    Some(Active {
                        ctx: Some(ctx),
                        done,
                    }) => {
                        return Reserve::Attached(RunHandle {
                            run_id: id.clone(),
                            trace_id: ctx.trace_id.clone(),
                            done: done.clone(),
                            slots: None,
                            decode: serde_json::from_value::<T>,
                        })
                    }
                    Some(Active { ctx: None, .. }) => {}
                    None => {
                        let (tx, rx) = watch::channel(None);
                        active.insert(
                            id.clone(),
                            Active {
                                ctx: None,
                                done: rx,
                            },
                        );
                        return Reserve::Reserved(Reservation {
                            inner: self.inner.clone(),
                            id: id.clone(),
                            done: Some(tx),
                        });
                    }
                }
            }
            // Another task of this process is claiming the id: see how that ends.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    #[allow(clippy::too_many_arguments)] // private; each argument is one piece of the run
    fn spawn<T: DeserializeOwned, E>(
        &self,
        mut reservation: Reservation,
        run: RunRecord,
        claim: Claim,
        checkpoints: Vec<StepRecord>,
        cancelled: bool,
        invoke: Invoke,
        slots: Option<Arc<Slots<T, E>>>,
        exec: ExecOptions,
    ) -> RunHandle<T, E> {
        let ctx = Arc::new(RunCtx::new(
            run.id.clone(),
            run.trace_id.clone(),
            Mode::Live(self.inner.store.clone()),
            Some(claim),
            self.inner.policies.clone(),
            checkpoints,
            cancelled,
            exec,
        ));
        ctx.set_state(self.inner.state.clone());
        ctx.set_alert_sinks(self.inner.alerts.names());
        ctx.set_trace(crate::trace::RunTrace::of_run(
            &run.trace_id,
            &run.id,
            run.traceparent.as_deref(),
        ));
        ctx.set_record(run.clone());
        let tx = reservation.done.take();
        let rx = {
            let mut active = lock(&self.inner.active);
            let entry = active.entry(run.id.clone()).or_insert_with(|| {
                // Unreachable: the reservation keeps the entry until here.
                let (_tx, rx) = watch::channel(None);
                Active {
                    ctx: None,
                    done: rx,
                }
            });
            entry.ctx = Some(ctx.clone());
            entry.done.clone()
        };
        self.ensure_cancel_poller();
        let handle = RunHandle {
            run_id: run.id.clone(),
            trace_id: run.trace_id.clone(),
            done: rx,
            slots,
            decode: serde_json::from_value::<T>,
        };
        let flow = self.clone();
        tokio::spawn(async move {
            let (id, end) = flow.drive(run, ctx, invoke).await;
            lock(&flow.inner.active).remove(&id);
            if let Some(tx) = tx {
                let _ = tx.send(Some(Arc::new(end)));
            }
        });
        handle
    }

    /// Executes the workflow body of a live run and records how it ended.
    async fn drive(&self, mut run: RunRecord, ctx: Arc<RunCtx>, invoke: Invoke) -> (RunId, Final) {
        let span = tracing::info_span!("run", workflow = %run.workflow, run_id = %run.id, trace_id = %run.trace_id);
        if let Some(trace) = ctx.trace() {
            trace.adopt(&span);
        }
        let (id, end, finished) = async {
            tracing::info!(execution = run.executions, "run started");
            crate::metrics::run_started(&run.workflow);
            let end = body_outcome(&ctx, run.input.clone(), invoke).await;
            if let Some(latest) = ctx.record() {
                run = latest;
            }
            let now = now_ms();
            run.updated_at_ms = now;
            run.owner = None;
            match &end {
                Final::Succeeded(output) => {
                    run.status = RunStatus::Succeeded;
                    run.output = Some(output.clone());
                }
                Final::Failed(message) => {
                    run.status = RunStatus::Failed;
                    run.error = Some(message.clone());
                }
                Final::Cancelled => run.status = RunStatus::Cancelled,
                Final::NeedsAttention(a) => {
                    run.status = RunStatus::NeedsAttention;
                    run.attention = Some(a.clone());
                }
                Final::Paused(summary) => {
                    run.status = RunStatus::Paused;
                    run.error = Some(summary.clone());
                }
                Final::Interrupted(reason) => {
                    tracing::error!(reason = %reason, "run interrupted; it can be resumed");
                    return (run.id.clone(), end, None);
                }
                Final::Suspended(wake_at) => {
                    run.status = RunStatus::Sleeping;
                    run.wake_at_ms = Some(*wake_at);
                }
            }
            run.lease_expires_at_ms = None;
            let mut writes = vec![Write::PutRun(run.clone())];
            if run.status.is_finished() {
                writes.push(Write::ClearCancel(run.id.clone()));
            }
            let alert_after = registry::workflow(&run.workflow).and_then(|w| w.alert_after);
            let alert = alerts::run_end(&self.inner.alerts, &run, alert_after);
            let alerted = alert.is_some();
            writes.extend(alert);
            if let Some(claim) = ctx.claim() {
                writes.insert(0, Write::CheckClaim(claim.clone()));
            }
            if let Err(e) = self.inner.store.commit(writes).await {
                tracing::error!(error = %e, "could not record the end of the run; it can be resumed");
                return (run.id.clone(), Final::Interrupted(e.to_string()), None);
            }
            crate::metrics::run_finished(&run.workflow, run.status);
            if alerted {
                self.inner.alerts_changed.notify_one();
            }
            match &end {
                Final::Succeeded(_) => tracing::info!("run succeeded"),
                Final::Failed(message) => tracing::error!(error = %message, "run failed"),
                Final::Cancelled => tracing::warn!("run cancelled"),
                Final::NeedsAttention(a) => {
                    tracing::error!(step = %a.step, reason = %a.reason, "run needs attention")
                }
                Final::Paused(summary) => tracing::info!(summary = %summary, "run paused after its rollout"),
                Final::Suspended(wake_at) => tracing::info!(
                    wake_in_ms = wake_at.saturating_sub(now),
                    "run released its worker; a worker resumes it when it is due"
                ),
                Final::Interrupted(_) => {}
            }
            (run.id.clone(), end, Some(run))
        }
        .instrument(span)
        .await;
        // The run's own span, once it has ended: outside the execution's span
        if let Some(run) = finished {
            crate::trace::run_finished(&run, run.updated_at_ms);
        }
        (id, end)
    }

    async fn drive_dry(
        &self,
        workflow: &str,
        input: serde_json::Value,
        invoke: Invoke,
    ) -> (Final, Vec<PlannedStep>) {
        let ctx = Arc::new(RunCtx::new(
            RunId::from(format!("dry-run-{}", uuid::Uuid::new_v4())),
            new_trace_id(),
            Mode::Dry(Mutex::new(Vec::new())),
            None,
            self.inner.policies.clone(),
            Vec::new(),
            false,
            ExecOptions::default(),
        ));
        ctx.set_state(self.inner.state.clone());
        let span = tracing::info_span!("run", workflow = %workflow, run_id = %ctx.run_id, trace_id = %ctx.trace_id, dry_run = true);
        let end = body_outcome(&ctx, input, invoke).instrument(span).await;
        (end, ctx.take_plan())
    }

    fn ensure_cancel_poller(&self) {
        let mut poller = lock(&self.inner.poller);
        if poller.is_some() {
            return;
        }
        // The poller holds a weak reference so that dropping every `Flow` stops it.
        let weak = Arc::downgrade(&self.inner);
        // Often enough that a lease is renewed well before it ends: it is renewed once less
        // than half is left, and looked at every quarter.
        let every = self.inner.cancel_poll.min(self.inner.lease / 4);
        *poller = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(inner) = weak.upgrade() else { return };
                let running: Vec<(RunId, Arc<RunCtx>)> = lock(&inner.active)
                    .iter()
                    .filter_map(|(id, a)| Some((id.clone(), a.ctx.clone()?)))
                    .collect();
                if running.is_empty() {
                    continue;
                }
                renew_leases(&inner, &running).await;
                let running: Vec<(RunId, Arc<RunCtx>)> = running
                    .into_iter()
                    .filter(|(_, ctx)| !ctx.cancel_requested())
                    .collect();
                if running.is_empty() {
                    continue;
                }
                let ids: Vec<RunId> = running.iter().map(|(id, _)| id.clone()).collect();
                match inner.store.cancel_requests(&ids).await {
                    Ok(requested) => {
                        for (id, ctx) in &running {
                            if requested.contains(id) {
                                ctx.request_cancel();
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "could not check for cancel requests"),
                }
            }
        }));
    }
}

/// Renews the lease of every run in `running` that has less than half of it left, all at
/// once (on PostgreSQL they share a group commit). The kept record takes the new lease before
/// the renewal is sent, so a run record written meanwhile carries it too. A run whose claim
/// was lost (another process took it after its lease expired: this one was frozen or cut off)
/// stops as any refused write stops it; a store that failed is retried at the next look.
async fn renew_leases(inner: &Inner, running: &[(RunId, Arc<RunCtx>)]) {
    let now = now_ms();
    let lease = inner.lease.as_millis() as u64;
    let renewals = running.iter().filter_map(|(id, ctx)| {
        let claim = ctx.claim()?.clone();
        let expires = ctx.lease_expires_at_ms()?;
        if expires.saturating_sub(now) >= lease / 2 {
            return None;
        }
        let until = now + lease;
        let before = ctx.extend_lease(until);
        let store = inner.store.clone();
        Some(async move {
            match store.renew_lease(claim, until).await {
                Ok(()) => {}
                Err(e @ StoreError::ClaimLost { .. }) => {
                    tracing::warn!(run_id = %id, error = %e, "lost the run's lease to another process; stopping this execution");
                    ctx.stop(Abort::Store(e));
                }
                Err(e) => {
                    ctx.restore_lease(until, before);
                    tracing::warn!(run_id = %id, error = %e, "could not renew the run's lease; retrying");
                }
            }
        })
    });
    futures::future::join_all(renewals).await;
}

/// Runs the workflow body in its own task (so a panic is contained) and turns whatever stopped
/// it into a `Final`.
async fn body_outcome(ctx: &Arc<RunCtx>, input: serde_json::Value, invoke: Invoke) -> Final {
    let body = context::scope(Frame::Run(ctx.clone()), invoke(input)).in_current_span();
    let mut task = tokio::spawn(body);
    tokio::select! {
        joined = &mut task => match joined {
            Ok(Ok(Ok(output))) => Final::Succeeded(output),
            Ok(Ok(Err(failure))) => Final::Failed(failure.message),
            Ok(Err(input_error)) => Final::Failed(input_error.to_string()),
            Err(e) if e.is_panic() => {
                let payload = e.into_panic();
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic with a non-text payload".to_owned());
                Final::Failed(format!("the workflow panicked: {message}"))
            }
            Err(_) => Final::Interrupted("the run's task was cancelled".to_owned()),
        },
        reason = ctx.aborted() => {
            // No step attempt starts any more; those in flight finish and are checkpointed
            // before the workflow is dropped (a step that started runs to its end).
            tokio::select! {
                () = ctx.quiesce() => {}
                // The workflow may return meanwhile; the reason it was stopped still decides.
                _ = &mut task => {}
            }
            task.abort();
            match reason {
                Abort::Cancelled => Final::Cancelled,
                Abort::NeedsAttention(a) => Final::NeedsAttention(a),
                Abort::Store(e) => Final::Interrupted(e.to_string()),
                Abort::Paused(summary) => Final::Paused(summary),
                Abort::Shutdown(why) => Final::Interrupted(why),
                Abort::Suspend(wake_at) => Final::Suspended(wake_at),
            }
        }
    }
}

/// Which states a claim may take a run from, and how it says no.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Take {
    /// Starting an id that exists: an unfinished run continues; a finished one is reported.
    Start,
    /// `resume`: any unfinished run that does not wait for an operator's decision.
    Resume,
}

impl Take {
    fn allows(self, status: RunStatus) -> bool {
        match self {
            Take::Start => !status.is_finished() && status != RunStatus::NeedsAttention,
            Take::Resume => !matches!(
                status,
                RunStatus::Succeeded | RunStatus::Cancelled | RunStatus::NeedsAttention
            ),
        }
    }

    fn refusal(self, run: RunRecord) -> Error {
        Error::WrongState {
            id: run.id,
            status: run.status,
            action: if run.status == RunStatus::NeedsAttention {
                "resumed before its step in doubt is resolved"
            } else {
                "resumed"
            },
        }
    }
}

fn finished_handle<T: DeserializeOwned, E>(
    run_id: RunId,
    trace_id: String,
    end: Final,
    slots: Option<Arc<Slots<T, E>>>,
) -> RunHandle<T, E> {
    let (_tx, done) = watch::channel(Some(Arc::new(end)));
    RunHandle {
        run_id,
        trace_id,
        done,
        slots,
        decode: serde_json::from_value::<T>,
    }
}

fn find_workflow(name: &str) -> Result<&'static WorkflowMeta, Error> {
    registry::workflow(name).ok_or_else(|| Error::UnknownWorkflow {
        name: name.to_owned(),
        known: registry::workflows()
            .iter()
            .map(|w| w.name.to_owned())
            .collect(),
    })
}

/// Checks the encoded input and wraps the typed call, for a live or a dry run.
#[allow(clippy::type_complexity)]
fn prepare_typed<T, E, F, Fut>(
    meta: &WorkflowMeta,
    input: Result<serde_json::Value, serde_json::Error>,
    call: F,
) -> Result<(serde_json::Value, Invoke, Arc<Slots<T, E>>), Error>
where
    T: Serialize + Send + 'static,
    E: Display + Send + 'static,
    F: FnOnce(serde_json::Value) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Result<T, E>, InputError>> + Send + 'static,
{
    let input = input.map_err(|e| {
        Error::Encoding(format!(
            "the input of workflow `{}` could not be serialized: {e}",
            meta.name
        ))
    })?;
    let slots = Arc::new(Slots {
        ok: Mutex::new(None),
        err: Mutex::new(None),
    });
    let invoke = typed_invoke(call, slots.clone());
    Ok((input, invoke, slots))
}

/// Wraps a typed workflow call: the typed output and error are kept for this process's handle,
/// the engine sees JSON and a message.
fn typed_invoke<T, E, F, Fut>(call: F, slots: Arc<Slots<T, E>>) -> Invoke
where
    T: Serialize + Send + 'static,
    E: Display + Send + 'static,
    F: FnOnce(serde_json::Value) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Result<T, E>, InputError>> + Send + 'static,
{
    Box::new(move |input| {
        Box::pin(async move {
            Ok(match call(input).await? {
                Ok(value) => {
                    let json = serde_json::to_value(&value).map_err(|e| WorkflowFailure {
                        message: format!("the output could not be serialized: {e}"),
                    });
                    *lock(&slots.ok) = Some(value);
                    json
                }
                Err(error) => {
                    let message = error.to_string();
                    *lock(&slots.err) = Some(error);
                    Err(WorkflowFailure { message })
                }
            })
        })
    })
}

pub(crate) async fn start_typed<T, E, F, Fut>(
    flow: &Flow,
    meta: &'static WorkflowMeta,
    options: RunOptions,
    input: Result<serde_json::Value, serde_json::Error>,
    call: F,
) -> Result<RunHandle<T, E>, Error>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    E: Display + Send + 'static,
    F: FnOnce(serde_json::Value) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Result<T, E>, InputError>> + Send + 'static,
{
    let (input, invoke, slots) = prepare_typed(meta, input, call)?;
    flow.start_erased(meta.name, options, input, invoke, Some(slots))
        .await
}

pub(crate) async fn dry_run_typed<T, E, F, Fut>(
    flow: &Flow,
    meta: &'static WorkflowMeta,
    input: Result<serde_json::Value, serde_json::Error>,
    call: F,
) -> Result<DryRun<T, E>, Error>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    E: Display + Send + 'static,
    F: FnOnce(serde_json::Value) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Result<T, E>, InputError>> + Send + 'static,
{
    let (input, invoke, slots) = prepare_typed(meta, input, call)?;
    let (end, plan) = flow.drive_dry(meta.name, input, invoke).await;
    let handle = finished_handle(RunId::from("dry-run"), String::new(), end, Some(slots));
    Ok(DryRun {
        result: handle.outcome().await,
        plan,
    })
}

//! The run context: which run (and which step) the current task is executing.
//!
//! A task-local frame ties a step call to its run without threading a context parameter through
//! user code. This module owns that frame, the per-run state shared by concurrent step calls
//! (loaded checkpoints, occurrence counters, cancel flag, abort slot), and the user-facing
//! accessors (`flow::run_id()`, `flow::step_key()`, ...). It does not execute steps.

use crate::engine::retry::RetryPolicies;
use crate::store::{
    now_ms, Attention, Claim, RunId, RunRecord, RunStatus, StepId, StepRecord, Store, StoreError,
    Write,
};
use serde::Serialize;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

tokio::task_local! {
    static FRAME: Frame;
    /// The `idempotency_key` of the step whose body is executing, in a run or in a plain call.
    static DECLARED_KEY: Arc<str>;
}

/// Runs a keyed step's body with its declared key in reach of [`key`] and [`step_key`].
pub(crate) fn with_declared_key<F: Future>(
    key: String,
    body: F,
) -> impl Future<Output = F::Output> {
    DECLARED_KEY.scope(Arc::from(key), body)
}

/// What the current task is doing.
#[derive(Clone)]
pub(crate) enum Frame {
    /// Executing a workflow body.
    Run(Arc<RunCtx>),
    /// Executing one unit of a fan-out: steps are keyed under the unit's key.
    Unit(Arc<RunCtx>, Arc<str>),
    /// Inside a step body: nested step calls are plain calls.
    Step(Arc<StepFrame>),
}

/// The step whose body is executing.
pub(crate) struct StepFrame {
    pub run: Arc<RunCtx>,
    /// The key the step declared (or its arguments' hash), without any unit scoping.
    pub key: String,
    pub attempt: u32,
}

/// One entry of a dry run's plan: a step that was skipped.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct PlannedStep {
    /// The step name.
    pub step: String,
    /// The step key.
    pub key: String,
    /// The arguments, as JSON.
    pub args: serde_json::Value,
    /// What the step would have done, e.g. `would call push_record key=42`.
    pub action: String,
}

pub(crate) enum Mode {
    Live(Arc<dyn Store>),
    Dry(Mutex<Vec<PlannedStep>>),
}

/// Why a run stopped before its workflow returned.
#[derive(Debug)]
pub(crate) enum Abort {
    Cancelled,
    NeedsAttention(Attention),
    Store(StoreError),
    /// A staged rollout processed its share of units; the rest wait for a larger rollout.
    Paused(String),
    /// The process is stopping (a signal): the run stays resumable.
    Shutdown(String),
    /// The run waits until this time (ms since the epoch) for a durable sleep or a backoff and
    /// releases its worker meanwhile.
    Suspend(u64),
}

/// Per-execution options: they come with each start or resume, not with the run.
#[derive(Clone, Debug, Default)]
pub(crate) struct ExecOptions {
    /// Process only units whose key hashes below this share (0.0 to 100.0).
    pub rollout: Option<f64>,
    /// Process only these units.
    pub only_units: Option<std::collections::HashSet<String>>,
    /// Steps that failed in an earlier execution execute again (an operator retries a failed
    /// run); otherwise their recorded failure replays, like a success does.
    pub retry_failed: bool,
    /// A worker executes the run: a durable sleep or a backoff of at least this long outside a
    /// fan-out releases the worker (the run is stored as sleeping with its wake-up time) instead
    /// of holding a task.
    pub suspend_after: Option<std::time::Duration>,
}

pub(crate) struct RunCtx {
    pub run_id: RunId,
    pub trace_id: String,
    pub mode: Mode,
    pub policies: Arc<RetryPolicies>,
    pub options: ExecOptions,
    /// The app state registered on the `Flow` that executes the run (`flow::state`).
    state: std::sync::OnceLock<crate::engine::state::AppState>,
    /// The alert sinks of the `Flow` that executes the run, for alerts opened during it.
    alert_sinks: std::sync::OnceLock<Vec<String>>,
    /// What the run's spans hang under (the run's span, in its stored trace).
    trace: std::sync::OnceLock<crate::trace::RunTrace>,
    /// The claim this execution holds; every write carries it. `None` in a dry run.
    claim: Option<Claim>,
    record: Mutex<Option<RunRecord>>,
    checkpoints: Mutex<HashMap<String, StepRecord>>,
    occurrences: Mutex<HashMap<(&'static str, String), u32>>,
    cancel: AtomicBool,
    cancel_notify: Notify,
    abort: Mutex<Option<Abort>>,
    abort_notify: Notify,
    /// Set once the run is stopping: no step attempt starts after it.
    stopping: AtomicBool,
    /// Step attempts between their start and their checkpoint.
    in_flight: AtomicUsize,
    idle: Notify,
}

/// A step attempt in flight: the run waits for it before it stops.
pub(crate) struct InFlight<'a>(&'a RunCtx);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in user code never happens while these locks are held, so poisoning carries no
    // broken invariant; recover the guard.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RunCtx {
    #[allow(clippy::too_many_arguments)] // one constructor, called from the engine only
    pub fn new(
        run_id: RunId,
        trace_id: String,
        mode: Mode,
        claim: Option<Claim>,
        policies: Arc<RetryPolicies>,
        checkpoints: Vec<StepRecord>,
        cancel_requested: bool,
        options: ExecOptions,
    ) -> Self {
        RunCtx {
            run_id,
            trace_id,
            mode,
            policies,
            options,
            state: std::sync::OnceLock::new(),
            alert_sinks: std::sync::OnceLock::new(),
            trace: std::sync::OnceLock::new(),
            claim,
            record: Mutex::new(None),
            checkpoints: Mutex::new(
                checkpoints
                    .into_iter()
                    .map(|r| (r.id.storage_key(), r))
                    .collect(),
            ),
            occurrences: Mutex::new(HashMap::new()),
            cancel: AtomicBool::new(cancel_requested),
            cancel_notify: Notify::new(),
            abort: Mutex::new(None),
            abort_notify: Notify::new(),
            stopping: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
        }
    }

    /// Sets the run's app state (once, before the run starts).
    pub fn set_state(&self, state: crate::engine::state::AppState) {
        let _ = self.state.set(state);
    }

    /// Sets what the run's spans hang under (once, before the run starts).
    pub fn set_trace(&self, trace: crate::trace::RunTrace) {
        let _ = self.trace.set(trace);
    }

    /// What the run's spans hang under; nothing in a dry run.
    pub fn trace(&self) -> Option<&crate::trace::RunTrace> {
        self.trace.get()
    }

    /// Sets the names of the alert sinks of the executing `Flow` (once, before the run starts).
    pub fn set_alert_sinks(&self, sinks: Vec<String>) {
        let _ = self.alert_sinks.set(sinks);
    }

    /// Opens an error-budget alert about this run; the store keeps the first one per run, so
    /// a resumed run whose budget trips again alerts nothing new. A dry run opens none. A
    /// refused write (a lost claim, a broken store) is logged: the run's next write meets it.
    pub async fn alert_budget(&self, trip: crate::store::BudgetTrip, first_error: Option<String>) {
        if self.is_dry() {
            return;
        }
        let Some(workflow) = lock(&self.record).as_ref().map(|r| r.workflow.clone()) else {
            return;
        };
        let sinks = self
            .alert_sinks
            .get()
            .cloned()
            .unwrap_or_else(|| vec!["log".to_owned()]);
        let write = crate::engine::alerts::budget_alert(
            &workflow,
            &self.run_id,
            &self.trace_id,
            trip,
            first_error.as_deref(),
            sinks,
        );
        if let Err(reason) = self.try_persist(vec![write]).await {
            tracing::warn!(reason = ?reason, "the error budget's alert could not be stored");
        }
    }

    /// The run's app state (empty if none was set).
    pub fn state(&self) -> Option<&crate::engine::state::AppState> {
        self.state.get()
    }

    /// Allocates the identity of the next call of `(name, key)`.
    pub fn next_step_id(&self, name: &'static str, key: String) -> StepId {
        let mut occ = lock(&self.occurrences);
        let n = occ.entry((name, key.clone())).or_insert(0);
        let occurrence = *n;
        *n += 1;
        StepId {
            name: name.to_owned(),
            key,
            occurrence,
        }
    }

    /// The stored record of `id` from before this execution. Each step id is looked up once
    /// (a repeated call gets the next occurrence), so the record leaves the cache here.
    pub fn take_checkpoint(&self, id: &StepId) -> Option<StepRecord> {
        let mut checkpoints = lock(&self.checkpoints);
        // A new run has none: skip formatting the key.
        if checkpoints.is_empty() {
            return None;
        }
        checkpoints.remove(&id.storage_key())
    }

    /// Commits `writes` durably with this execution's claim; a dry run writes nothing. A step
    /// attempt in flight uses this, to leave the in-flight count before it aborts the run.
    pub async fn try_persist(&self, writes: Vec<Write>) -> Result<(), Abort> {
        if let Mode::Live(store) = &self.mode {
            store
                .commit(self.claimed(writes))
                .await
                .map_err(Abort::Store)?;
        }
        Ok(())
    }

    /// Commits the checkpoint of a repeat-safe step: after every earlier write of the store,
    /// durable within the store's window ([`crate::store::Durability`]) instead of before the
    /// step returns. A refusal (a lost claim, a broken store) surfaces here or at the next
    /// durable write.
    pub async fn try_persist_deferred(&self, writes: Vec<Write>) -> Result<(), Abort> {
        if let Mode::Live(store) = &self.mode {
            store
                .commit_deferred(self.claimed(writes))
                .await
                .map_err(Abort::Store)?;
        }
        Ok(())
    }

    /// `writes` behind this execution's claim check, in one allocation (a step's checkpoint
    /// passes here at every call).
    fn claimed(&self, writes: Vec<Write>) -> Vec<Write> {
        let Some(claim) = &self.claim else {
            return writes;
        };
        let mut checked = Vec::with_capacity(writes.len() + 1);
        checked.push(Write::CheckClaim(claim.clone()));
        checked.extend(writes);
        checked
    }

    /// [`RunCtx::try_persist_deferred`], aborting the run on a refusal.
    pub async fn persist_deferred(&self, writes: Vec<Write>) {
        if let Err(reason) = self.try_persist_deferred(writes).await {
            self.abort::<()>(reason).await;
        }
    }

    /// Keeps the run record so that status changes inside the run (sleeping) can be written.
    pub fn set_record(&self, run: RunRecord) {
        *lock(&self.record) = Some(run);
    }

    /// Changes the kept run record's status; returns the record to write.
    pub fn set_status(&self, status: RunStatus) -> Option<RunRecord> {
        let mut record = lock(&self.record);
        let run = record.as_mut()?;
        run.status = status;
        run.updated_at_ms = now_ms();
        Some(run.clone())
    }

    /// The end of this execution's lease as the kept record has it (ms since the epoch).
    pub fn lease_expires_at_ms(&self) -> Option<u64> {
        lock(&self.record).as_ref()?.lease_expires_at_ms
    }

    /// Moves the kept record's lease to `until_ms` (never back), so every run record this
    /// execution writes from now on carries the renewed lease; returns the lease it had.
    pub fn extend_lease(&self, until_ms: u64) -> Option<u64> {
        let mut record = lock(&self.record);
        let run = record.as_mut()?;
        let before = run.lease_expires_at_ms;
        if before < Some(until_ms) {
            run.lease_expires_at_ms = Some(until_ms);
        }
        before
    }

    /// Puts back the lease [`RunCtx::extend_lease`] replaced, after the renewal failed, unless
    /// a later renewal moved it on meanwhile.
    pub fn restore_lease(&self, renewed_ms: u64, before: Option<u64>) {
        let mut record = lock(&self.record);
        if let Some(run) = record.as_mut() {
            if run.lease_expires_at_ms == Some(renewed_ms) {
                run.lease_expires_at_ms = before;
            }
        }
    }

    /// The kept run record, if any.
    pub fn record(&self) -> Option<RunRecord> {
        lock(&self.record).clone()
    }

    pub fn is_dry(&self) -> bool {
        matches!(self.mode, Mode::Dry(_))
    }

    pub fn plan(&self, entry: PlannedStep) {
        if let Mode::Dry(plan) = &self.mode {
            lock(plan).push(entry);
        }
    }

    pub fn take_plan(&self) -> Vec<PlannedStep> {
        match &self.mode {
            Mode::Dry(plan) => std::mem::take(&mut *lock(plan)),
            Mode::Live(_) => Vec::new(),
        }
    }

    pub fn request_cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
        self.cancel_notify.notify_waiters();
    }

    pub fn cancel_requested(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    /// The claim this execution holds, if it is a live run.
    pub fn claim(&self) -> Option<&Claim> {
        self.claim.as_ref()
    }

    /// Whether the run must not start another step: it was cancelled, or it is stopping.
    pub fn must_stop(&self) -> bool {
        self.cancel_requested() || self.stopping.load(Ordering::SeqCst)
    }

    /// Sleeps for `d`, or returns `Err` early when the run is cancelled or stopping.
    pub async fn sleep_unless_cancelled(&self, d: Duration) -> Result<(), Abort> {
        let notified = self.cancel_notify.notified();
        if self.must_stop() {
            return Err(Abort::Cancelled);
        }
        tokio::select! {
            () = tokio::time::sleep(d) => Ok(()),
            () = notified => Err(Abort::Cancelled),
        }
    }

    /// Starts a step attempt, unless the run is stopping: the guard keeps the run from stopping
    /// until the attempt's checkpoint is written.
    pub fn begin_attempt(&self) -> Option<InFlight<'_>> {
        // Counted before the check: `stop` sets the flag before it waits for the count, so an
        // attempt either sees the flag or is waited for.
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(self);
        if self.stopping.load(Ordering::SeqCst) {
            return None;
        }
        Some(guard)
    }

    /// Resolves once no step attempt is in flight.
    pub async fn quiesce(&self) {
        loop {
            let idle = self.idle.notified();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Asks the run to stop for `reason`: no new step attempt starts, sleeps and backoffs wake,
    /// and the driver stops the workflow once the attempts in flight are checkpointed. The
    /// first reason wins.
    pub fn stop(&self, reason: Abort) {
        {
            let mut slot = lock(&self.abort);
            if slot.is_none() && !self.stopping.load(Ordering::SeqCst) {
                *slot = Some(reason);
            }
        }
        self.stopping.store(true, Ordering::SeqCst);
        self.abort_notify.notify_one();
        self.cancel_notify.notify_waiters();
    }

    /// Stops the run ([`RunCtx::stop`]) and never returns. The run's driver drops the workflow
    /// future once the step attempts in flight are checkpointed, like a crash at this point,
    /// but with the reason recorded.
    pub async fn abort<T>(&self, reason: Abort) -> T {
        self.stop(reason);
        std::future::pending().await
    }

    /// Resolves once `abort` was called.
    pub async fn aborted(&self) -> Abort {
        loop {
            if let Some(reason) = lock(&self.abort).take() {
                return reason;
            }
            self.abort_notify.notified().await;
        }
    }
}

/// The current frame, if any.
pub(crate) fn current() -> Option<Frame> {
    FRAME.try_with(|f| f.clone()).ok()
}

/// The run the current task executes (also from inside a step body).
pub(crate) fn current_run() -> Option<Arc<RunCtx>> {
    match current()? {
        Frame::Run(run) | Frame::Unit(run, _) => Some(run),
        Frame::Step(step) => Some(step.run.clone()),
    }
}

pub(crate) fn scope<F: Future>(frame: Frame, fut: F) -> impl Future<Output = F::Output> {
    FRAME.scope(frame, fut)
}

/// The id of the run the current task executes, or `None` outside a run.
pub fn run_id() -> Option<RunId> {
    current_run().map(|r| r.run_id.clone())
}

/// The schedule tick a scheduled run was fired for, or `None` outside a run and in a run that
/// no schedule fired. The same on every execution of the run (it is stored with the run), so a
/// nightly import reads the day it imports from here, not from the clock:
///
/// ```
/// #[flow_runtime::workflow(schedule = "0 2 * * *", timezone = "Europe/Berlin")]
/// async fn nightly_import() -> Result<String, flow_runtime::Failure> {
///     let day = flow_runtime::tick().map(|t| t.rfc3339()).unwrap_or_default();
///     Ok(day)
/// }
/// ```
pub fn tick() -> Option<Tick> {
    let run = current_run()?;
    let scheduled = lock(&run.record).as_ref()?.scheduled.clone()?;
    Some(Tick {
        schedule: scheduled.schedule,
        at_ms: scheduled.tick_ms,
    })
}

/// A schedule's tick, as [`tick`] returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tick {
    /// The schedule's name.
    pub schedule: String,
    /// The tick, ms since the Unix epoch (for `schedules trigger`, when it was triggered).
    pub at_ms: u64,
}

impl Tick {
    /// The tick as a [`std::time::SystemTime`].
    pub fn time(&self) -> std::time::SystemTime {
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(self.at_ms)
    }

    /// The tick in UTC as RFC 3339 (`2026-11-28T02:00:00Z`), as in the run's id.
    pub fn rfc3339(&self) -> String {
        crate::store::format_tick(self.at_ms)
    }
}

/// The W3C trace id of the current run, or `None` outside a run.
pub fn trace_id() -> Option<String> {
    current_run().map(|r| r.trace_id.clone())
}

/// The key of the step whose body is executing: its `idempotency_key` value, or the hash of its
/// arguments. Send it to the external system (an `Idempotency-Key` header, a unique column) so a
/// repeat after a crash is recognised there. Always `Some` in the body of a step with
/// `idempotency_key` (also when the step is called as a plain function, outside a run, where it
/// is the declared key); `None` outside a step body, and in a plain call of a step without one.
/// In a keyed step, [`key`] returns the same value without the `Option`.
pub fn step_key() -> Option<String> {
    if let Ok(key) = DECLARED_KEY.try_with(|k| k.to_string()) {
        return Some(key);
    }
    match current()? {
        Frame::Step(step) => Some(step.key.clone()),
        Frame::Run(_) | Frame::Unit(..) => None,
    }
}

/// The key of the step whose body is executing, for a step with `idempotency_key`: the value of
/// that expression, in a run and in a plain call alike. Send it to the external system.
///
/// ```no_run
/// # use flow_runtime as flow;
/// #[flow::step(idempotency_key = format!("charge-{order_id}"))]
/// async fn charge(order_id: u64, cents: u64) -> Result<(), flow::Failure> {
///     let idempotency_key: String = flow::key(); // "charge-42" for order 42
///     # let _ = (idempotency_key, cents);
///     Ok(())
/// }
/// ```
///
/// # Panics
/// Outside the body of a step. In the body of a step without `idempotency_key` it returns the
/// hash of the arguments inside a run and panics in a plain call, which has no key; use
/// [`step_key`] there.
#[track_caller]
pub fn key() -> String {
    match step_key() {
        Some(key) => key,
        None => panic!(
            "flow::key() was called outside the body of a step with `idempotency_key`; declare the key with `#[step(idempotency_key = ...)]`, or use `flow::step_key()`, which returns an `Option`"
        ),
    }
}

/// The attempt number (from 1) of the step whose body is executing; `None` outside a step body.
pub fn attempt() -> Option<u32> {
    match current()? {
        Frame::Step(step) => Some(step.attempt),
        Frame::Run(_) | Frame::Unit(..) => None,
    }
}

/// Whether the current run is a dry run.
pub fn is_dry_run() -> bool {
    current_run().is_some_and(|r| r.is_dry())
}

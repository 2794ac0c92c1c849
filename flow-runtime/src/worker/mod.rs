//! The worker: a long-running loop that executes queued runs, wakes runs whose sleep or
//! backoff is due, resumes runs whose process died, and alerts about runs past their max
//! duration.
//!
//! It holds no state of its own that matters after a crash: every decision is read from the
//! store's indexes (queued runs, timers, runs held by a process) and every start is a claim in
//! the store, so any number of workers, restarted at any time, execute each run once. A
//! sleeping run is a timer entry, not a task: the worker holds tasks only for runs it executes.

use crate::engine::registry;
use crate::engine::schedules::{Clock, Schedule, SystemClock};
use crate::engine::{Error, Flow, RunOptions};
use crate::store::{
    now_ms, ClaimOutcome, ClaimRequest, Owner, QueueLimits, QueueTake, RunId, RunRecord, RunStatus,
};
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// The least and the most a worker waits between two looks for runs past their workflow's
/// max duration; in between it waits for the next deadline the last look saw. An alert comes
/// at most about a second after its run's deadline.
const WATCH_AT_LEAST: Duration = Duration::from_secs(1);
const WATCH_AT_MOST: Duration = Duration::from_secs(60);

/// Executes queued, due and orphaned runs until stopped; made by [`Flow::worker`].
///
/// ```no_run
/// # async fn demo(flow: flow_runtime::Flow) -> Result<(), flow_runtime::Error> {
/// let report = flow
///     .worker()
///     .concurrency(32)
///     .run_until(async { tokio::signal::ctrl_c().await.ok(); })
///     .await?;
/// println!("{} runs finished", report.finished);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Worker {
    flow: Flow,
    concurrency: usize,
    queues: Option<Vec<String>>,
    poll: Duration,
    recovery: Duration,
    suspend_after: Duration,
    grace: Duration,
    retention: crate::Retention,
    prune_every: Duration,
    clock: Arc<dyn Clock>,
}

/// What a worker did, returned when it stops.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Queued runs it took and started.
    pub started: u64,
    /// Runs it resumed: due sleeps and backoffs, and runs whose process had died.
    pub resumed: u64,
    /// Executions that ended here (finished, failed, released for a sleep, or interrupted).
    pub finished: u64,
    /// Runs it was executing when it stopped; each stays resumable.
    pub interrupted: Vec<RunId>,
}

impl Flow {
    /// A worker for this `Flow`'s store: `flow.worker().concurrency(16).run_until(stop)`.
    pub fn worker(&self) -> Worker {
        Worker {
            flow: self.clone(),
            concurrency: 16,
            queues: None,
            poll: Duration::from_millis(100),
            recovery: Duration::from_secs(10),
            suspend_after: Duration::from_secs(1),
            grace: Duration::from_secs(10),
            retention: crate::Retention::FOREVER,
            prune_every: Duration::from_secs(60),
            clock: Arc::new(SystemClock),
        }
    }
}

impl Worker {
    /// At most `n` runs execute at once in this worker (default 16; at least 1).
    pub fn concurrency(mut self, n: usize) -> Worker {
        self.concurrency = n.max(1);
        self
    }

    /// Serve only these queues (default: every declared queue, and `default`).
    pub fn queues(mut self, names: impl IntoIterator<Item = impl Into<String>>) -> Worker {
        self.queues = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// How often the worker looks for work when nothing tells it (default 100 ms). An enqueue
    /// in this process and the end of a run wake it at once; on PostgreSQL so do an enqueue in
    /// any process and a sleeping run coming due (`LISTEN/NOTIFY`).
    pub fn poll_interval(mut self, every: Duration) -> Worker {
        self.poll = every.max(Duration::from_millis(1));
        self
    }

    /// How often it looks for runs whose process died (default 10 s; also at start).
    pub fn recovery_interval(mut self, every: Duration) -> Worker {
        self.recovery = every;
        self
    }

    /// A durable sleep or a backoff at least this long releases the worker (default 1 s):
    /// the run is stored as sleeping and resumed when due, so it holds no task meanwhile.
    pub fn suspend_after(mut self, after: Duration) -> Worker {
        self.suspend_after = after;
        self
    }

    /// After `stop`, how long steps in flight may take to finish (default 10 s); runs still
    /// executing then are left to the next worker.
    pub fn grace(mut self, grace: Duration) -> Worker {
        self.grace = grace;
        self
    }

    /// Deletes finished runs older than `retention` (at start, then every `every`); the
    /// default keeps them forever.
    pub fn retention(mut self, retention: crate::Retention, every: Duration) -> Worker {
        self.retention = retention;
        self.prune_every = every.max(Duration::from_millis(10));
        self
    }

    /// Where the scheduler reads the time (default: the system clock). Tests pass a
    /// [`crate::ManualClock`] to cross missed ticks and daylight-saving changes at once; the
    /// rest of the worker (timers, leases) keeps the system clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Worker {
        self.clock = clock;
        self
    }

    /// Runs until `stop` completes, then stops claiming, lets the steps in flight finish (up to
    /// the grace period) and returns. Every run it did not finish stays resumable.
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> Result<WorkerReport, Error> {
        let served = self.served_queues()?;
        let schedules = self.flow.schedules()?;
        let mut state = Loop {
            worker: &self,
            served,
            workflows: registry::workflows()
                .iter()
                .map(|w| w.name.to_owned())
                .collect(),
            tasks: JoinSet::new(),
            per_queue: HashMap::new(),
            executing: HashSet::new(),
            orphans: VecDeque::new(),
            next_recovery: Instant::now(),
            next_prune: Instant::now(),
            next_watch: Instant::now(),
            skipped: HashSet::new(),
            report: WorkerReport::default(),
            next_schedule_check: 0,
            schedules,
        };
        tracing::info!(
            concurrency = self.concurrency,
            queues = %state.served.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(","),
            "worker started"
        );
        // Aborted when the worker stops: a delivery cut short stays pending in the store
        let deliverer = AbortOnDrop(tokio::spawn(self.flow.clone().deliver_alerts_forever()));
        // Other processes' enqueues and wake-up times, where the store can tell (PostgreSQL's
        // LISTEN/NOTIFY); the poll interval covers the rest
        let signal = self.flow.store().work_signal();
        tokio::pin!(stop);
        loop {
            state.reap();
            state.tick().await;
            let changed = self.flow.queue_changed().notified();
            let signalled = async {
                match &signal {
                    Some(signal) => signal.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = &mut stop => break,
                () = changed => {}
                () = signalled => {}
                () = tokio::time::sleep(state.until_next_check()) => {}
                Some(ended) = state.tasks.join_next(), if !state.tasks.is_empty() => {
                    state.ended(ended.ok());
                }
            }
        }
        let report = state.stop().await;
        drop(deliverer);
        Ok(report)
    }

    fn served_queues(&self) -> Result<Vec<(String, crate::Queue)>, Error> {
        let declared = self.flow.queues();
        let Some(names) = &self.queues else {
            return Ok(declared);
        };
        names
            .iter()
            .map(|name| {
                declared
                    .iter()
                    .find(|(n, _)| n == name)
                    .cloned()
                    .ok_or_else(|| Error::UnknownQueue {
                        name: name.clone(),
                        known: declared.iter().map(|(n, _)| n.clone()).collect(),
                    })
            })
            .collect()
    }
}

/// Aborts a task when dropped (the worker's alert deliverer).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The worker's loop state.
struct Loop<'w> {
    worker: &'w Worker,
    served: Vec<(String, crate::Queue)>,
    workflows: Vec<String>,
    /// One task per run executing here; it ends with the run's id and queue.
    tasks: JoinSet<(RunId, Option<String>)>,
    per_queue: HashMap<String, usize>,
    executing: HashSet<RunId>,
    /// Runs whose process died, found by the last recovery scan, waiting for a free slot.
    orphans: VecDeque<RunRecord>,
    next_recovery: Instant,
    next_prune: Instant,
    /// When to look for runs past their max duration next.
    next_watch: Instant,
    /// Runs this worker cannot execute (a workflow it does not have); logged once.
    skipped: HashSet<RunId>,
    report: WorkerReport,
    /// The schedules this worker fires (every worker fires every schedule; a tick's run id
    /// makes it fire once).
    schedules: Vec<Schedule>,
    /// When (on the worker's clock) the scheduler looks next: the next tick, or within a
    /// second for buffered ticks and other workers' changes.
    next_schedule_check: u64,
}

impl Loop<'_> {
    fn free(&self) -> usize {
        self.worker.concurrency.saturating_sub(self.tasks.len())
    }

    fn reap(&mut self) {
        while let Some(ended) = self.tasks.try_join_next() {
            self.ended(ended.ok());
        }
    }

    fn ended(&mut self, ended: Option<(RunId, Option<String>)>) {
        self.report.finished += 1;
        if let Some((id, queue)) = ended {
            // A scheduled run ended: a tick buffered behind it may go now
            if self.schedules.iter().any(|s| {
                id.as_str()
                    .strip_prefix(s.name.as_str())
                    .is_some_and(|r| r.starts_with('@'))
            }) {
                self.next_schedule_check = 0;
            }
            self.executing.remove(&id);
            if let Some(n) = queue.and_then(|q| self.per_queue.get_mut(&q)) {
                *n = n.saturating_sub(1);
            }
        }
    }

    /// How long the loop may sleep: the poll interval, or less when a tick is due sooner.
    fn until_next_check(&self) -> Duration {
        if self.schedules.is_empty() {
            return self.worker.poll;
        }
        let now = self.worker.clock.now_ms();
        let wait = Duration::from_millis(self.next_schedule_check.saturating_sub(now));
        wait.min(self.worker.poll)
    }

    /// Fires the schedules' due ticks, when one is due.
    async fn fire_schedules(&mut self) {
        if self.schedules.is_empty() {
            return;
        }
        let now = self.worker.clock.now_ms();
        if now < self.next_schedule_check {
            return;
        }
        if let Err(e) = self.worker.flow.fire_due_ticks(&self.schedules, now).await {
            tracing::warn!(error = %e, "could not fire the schedules' due ticks");
        }
        let next = self.worker.flow.next_tick(&self.schedules, now);
        self.next_schedule_check = next.unwrap_or(u64::MAX).min(now + 1_000);
    }

    async fn tick(&mut self) {
        self.fire_schedules().await;
        if Instant::now() >= self.next_recovery && self.orphans.is_empty() {
            self.next_recovery = Instant::now() + self.worker.recovery;
            self.scan_orphans().await;
        }
        self.resume_orphans().await;
        self.wake_due().await;
        self.take_queued().await;
        if Instant::now() >= self.next_watch {
            // At the next deadline the pass saw, but at most once a second (deadlines of runs
            // created at a steady rate follow each other closely); at least every minute, for
            // runs that come back unfinished past theirs (a retried run)
            let wait = match self.worker.flow.watch_max_durations().await {
                Ok(pass) => pass.next_check_ms.map_or(WATCH_AT_MOST, |at| {
                    Duration::from_millis(at.saturating_sub(now_ms()))
                        .clamp(WATCH_AT_LEAST, WATCH_AT_MOST)
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "could not look for runs past their max duration");
                    Duration::from_secs(1)
                }
            };
            self.next_watch = Instant::now() + wait;
        }
        if Instant::now() >= self.next_prune && !self.worker.retention.keeps_everything() {
            self.next_prune = Instant::now() + self.worker.prune_every;
            match self.worker.flow.prune(&self.worker.retention).await {
                Ok(pruned) if pruned.runs > 0 || pruned.alerts > 0 => {
                    tracing::info!(
                        runs = pruned.runs,
                        steps = pruned.steps,
                        alerts = pruned.alerts,
                        "pruned finished runs and settled alerts past their retention"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not prune finished runs"),
            }
        }
    }

    /// Finds runs held by a process that is gone.
    async fn scan_orphans(&mut self) {
        let store = self.worker.flow.store();
        match store.held_runs(usize::MAX).await {
            Ok(runs) => {
                let now = now_ms();
                self.orphans = runs
                    .into_iter()
                    .filter(|run| {
                        !run.is_held(now)
                            && !self.executing.contains(&run.id)
                            && !self.worker.flow.is_active(&run.id)
                    })
                    .collect();
                if !self.orphans.is_empty() {
                    tracing::info!(
                        runs = self.orphans.len(),
                        "found runs whose process is gone; resuming them"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not look for interrupted runs"),
        }
    }

    async fn resume_orphans(&mut self) {
        let n = self.free().min(self.orphans.len());
        let runs: Vec<RunRecord> = self.orphans.drain(..n).collect();
        self.resume_all(runs).await;
    }

    /// Releases delayed queued runs that are due into their queue, and resumes due sleeps.
    async fn wake_due(&mut self) {
        let store = self.worker.flow.store().clone();
        let due = match store.due(now_ms(), 1024).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the timers");
                return;
            }
        };
        let (delayed, mut sleeping): (Vec<RunRecord>, Vec<RunRecord>) = due
            .into_iter()
            .partition(|run| run.status == RunStatus::Queued);
        // A due delayed run moves into its queue: a claim without owner that clears its
        // wake-up time, so a cancel or a take in between is never overwritten
        let released = futures::future::join_all(delayed.iter().map(|run| {
            store.claim(
                &run.id,
                ClaimRequest {
                    owner: None,
                    lease: self.worker.flow.lease(),
                    take: Box::new(|run: &mut RunRecord| {
                        let due = run.status == RunStatus::Queued && run.wake_at_ms.is_some();
                        run.wake_at_ms = None;
                        due
                    }),
                },
            )
        }))
        .await;
        for (run, result) in delayed.iter().zip(released) {
            match result {
                Ok(ClaimOutcome::Claimed { .. }) => {
                    tracing::debug!(run_id = %run.id, "delayed run is due; queued");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(run_id = %run.id, error = %e, "could not release a delayed run")
                }
            }
        }
        let n = self.free().min(sleeping.len());
        sleeping.truncate(n);
        self.resume_all(sleeping).await;
    }

    /// Takes queued runs for the free slots and starts them.
    async fn take_queued(&mut self) {
        let free = self.free();
        if free == 0 {
            return;
        }
        let mut queues = Vec::new();
        for (name, queue) in &self.served {
            let running = self.per_queue.get(name).copied().unwrap_or(0);
            let room = queue
                .worker_concurrency
                .map_or(usize::MAX, |n| (n as usize).saturating_sub(running));
            queues.push(QueueLimits {
                name: name.clone(),
                take: free.min(room),
                concurrency: queue.concurrency,
                per_key: queue.per_key,
                rate: queue.rate,
            });
        }
        let request = QueueTake {
            queues,
            max: free,
            workflows: self.workflows.clone(),
            owner: Owner::current(),
            lease: self.worker.flow.lease(),
            now_ms: now_ms(),
            app_version: self.worker.flow.app_version().map(str::to_owned),
        };
        let taken = match self.worker.flow.store().take_queued(request).await {
            Ok(taken) => taken,
            Err(e) => {
                tracing::warn!(error = %e, "could not take queued runs");
                return;
            }
        };
        for taken in taken {
            let id = taken.run.id.clone();
            let queue = taken.run.queue.as_ref().map(|q| q.name.clone());
            match self
                .worker
                .flow
                .execute_taken(taken, self.exec_options())
                .await
            {
                Ok(handle) => {
                    self.report.started += 1;
                    self.track(id, queue, handle);
                }
                Err(e) => {
                    tracing::error!(run_id = %id, error = %e, "could not start a queued run; it stays resumable")
                }
            }
        }
    }

    fn exec_options(&self) -> RunOptions {
        RunOptions::new().suspend_after(self.worker.suspend_after)
    }

    /// Resumes `runs` concurrently: each resume is a claim (a commit) and two reads, so one at
    /// a time would cap recovery at one commit's latency per run.
    async fn resume_all(&mut self, runs: Vec<RunRecord>) {
        let mut chosen = Vec::new();
        for run in runs {
            if self.executing.contains(&run.id) || self.skipped.contains(&run.id) {
                continue;
            }
            if !self.workflows.contains(&run.workflow) {
                tracing::warn!(run_id = %run.id, workflow = %run.workflow, "this worker does not have the run's workflow; another worker must execute it");
                self.skipped.insert(run.id);
                continue;
            }
            chosen.push(run);
        }
        let flow = &self.worker.flow;
        let options = self.exec_options();
        let resumed = futures::future::join_all(
            chosen
                .iter()
                .map(|run| flow.resume_with(&run.id, options.clone())),
        )
        .await;
        for (run, result) in chosen.into_iter().zip(resumed) {
            match result {
                Ok(handle) => {
                    self.report.resumed += 1;
                    let queue = run.queue.as_ref().map(|q| q.name.clone());
                    self.track(run.id, queue, handle);
                }
                // Another worker took it first, or it finished meanwhile: nothing to do
                Err(Error::RunInProgress { .. } | Error::WrongState { .. }) => {}
                Err(e) => {
                    tracing::warn!(run_id = %run.id, error = %e, "could not resume a run");
                }
            }
        }
    }

    fn track(
        &mut self,
        id: RunId,
        queue: Option<String>,
        handle: crate::RunHandle<serde_json::Value, crate::WorkflowFailure>,
    ) {
        if let Some(q) = &queue {
            *self.per_queue.entry(q.clone()).or_default() += 1;
        }
        self.executing.insert(id.clone());
        self.tasks.spawn(async move {
            let _ = handle.outcome().await;
            (id, queue)
        });
    }

    /// Stops claiming; lets steps in flight finish up to the grace period.
    async fn stop(mut self) -> WorkerReport {
        let stopped = self.worker.flow.shutdown("the worker is stopping");
        tracing::info!(
            runs = stopped.len(),
            grace_ms = self.worker.grace.as_millis() as u64,
            "worker stopping: no new run or step starts; waiting for the steps in flight"
        );
        let deadline = tokio::time::Instant::now() + self.worker.grace;
        while !self.tasks.is_empty() {
            match tokio::time::timeout_at(deadline, self.tasks.join_next()).await {
                Ok(Some(ended)) => self.ended(ended.ok()),
                Ok(None) => break,
                Err(_) => break,
            }
        }
        self.report.interrupted = stopped;
        self.tasks.abort_all();
        tracing::info!(
            started = self.report.started,
            resumed = self.report.resumed,
            "worker stopped"
        );
        self.report
    }
}

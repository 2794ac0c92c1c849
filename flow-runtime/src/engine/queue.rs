//! Enqueueing runs for a worker, and executing the runs a worker takes.
//!
//! A queued run is an ordinary run record with status `queued` and a [`QueuePlace`]; the store
//! indexes it, and a worker ([`crate::Worker`]) takes it through [`Store::take_queued`], which
//! claims it like any start. This module owns the queue declarations ([`Queue`]) and the
//! engine's side of both ends; how often a worker looks and how many it takes is the worker's.

use super::registry::WorkflowMeta;
use super::{find_workflow, Error, Flow, NotBefore, RunOptions};
use crate::store::{now_ms, CreateRun, QueuePlace, RunId, RunRecord, RunStatus, Taken};
use std::time::{Duration, UNIX_EPOCH};

/// The queue every enqueue without `queue` goes to; it exists without a declaration.
pub const DEFAULT_QUEUE: &str = "default";

/// A queue's limits, declared once ([`crate::FlowBuilder::queue`], or `[flow.queues.NAME]` in
/// settings). Every limit is optional; a queue without any runs as many runs as its workers'
/// concurrency allows.
///
/// ```
/// use flow_runtime::{Flow, Queue};
/// use std::time::Duration;
/// # fn demo() -> Result<(), flow_runtime::Error> {
/// let flow = Flow::builder()
///     // At most 4 syncs at once across every worker, one per customer, 10 starts a minute.
///     .queue("syncs", Queue::new().concurrency(4).per_key(1).rate(10, Duration::from_secs(60)))
///     .open("flow.redb")?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Queue {
    /// At most this many runs of the queue in flight across all workers.
    pub concurrency: Option<u32>,
    /// At most this many runs of the queue in flight in one worker.
    pub worker_concurrency: Option<u32>,
    /// At most this many runs in flight with the same concurrency key.
    pub per_key: Option<u32>,
    /// At most this many starts per period.
    pub rate: Option<(u32, Duration)>,
}

impl Queue {
    /// A queue without limits.
    pub fn new() -> Queue {
        Queue::default()
    }

    /// At most `n` runs of the queue in flight across all workers (a run in flight has started
    /// and not finished; a sleeping run counts).
    pub fn concurrency(mut self, n: u32) -> Queue {
        self.concurrency = Some(n);
        self
    }

    /// At most `n` runs of the queue in flight in one worker.
    pub fn worker_concurrency(mut self, n: u32) -> Queue {
        self.worker_concurrency = Some(n);
        self
    }

    /// At most `n` runs in flight with the same concurrency key
    /// ([`RunOptions::concurrency_key`]); runs without a key are not limited by it.
    pub fn per_key(mut self, n: u32) -> Queue {
        self.per_key = Some(n);
        self
    }

    /// At most `starts` runs start per `period`, across all workers.
    pub fn rate(mut self, starts: u32, period: Duration) -> Queue {
        self.rate = Some((starts, period));
        self
    }
}

impl Flow {
    /// Enqueues a run of the workflow named `workflow` for a worker and returns its id at once.
    ///
    /// The run id deduplicates: enqueueing an id that exists returns it and enqueues nothing
    /// (an id of another workflow, or an unfinished run with another input, is an error, as for
    /// [`Flow::start`]). The options' `queue` (default `default`) must be declared; `priority`,
    /// `delay`/`not_before` and `concurrency_key` place the run in it. Generated code offers
    /// the typed form, `my_workflow::enqueue(&flow, options, input...)`.
    pub async fn enqueue(
        &self,
        workflow: &str,
        options: RunOptions,
        input: serde_json::Value,
    ) -> Result<RunId, Error> {
        let meta = find_workflow(workflow)?;
        (meta.check_input)(&input)?;
        self.enqueue_checked(meta, options, input).await
    }

    /// Enqueues a run whose input was checked (by the caller, or by the compiler).
    pub(crate) async fn enqueue_checked(
        &self,
        meta: &'static WorkflowMeta,
        options: RunOptions,
        input: serde_json::Value,
    ) -> Result<RunId, Error> {
        let queue = options
            .queue
            .clone()
            .unwrap_or_else(|| DEFAULT_QUEUE.to_owned());
        if queue != DEFAULT_QUEUE && !self.inner.queues.contains_key(&queue) {
            let mut known: Vec<String> = self.inner.queues.keys().cloned().collect();
            known.push(DEFAULT_QUEUE.to_owned());
            known.sort();
            known.dedup();
            return Err(Error::UnknownQueue { name: queue, known });
        }
        let id = options.id.clone().unwrap_or_else(RunId::generate);
        id.validate()?;
        let (trace_id, traceparent) = options.new_trace()?;
        let now = now_ms();
        let not_before_ms = options.not_before.map(|at| match at {
            NotBefore::Delay(delay) => now.saturating_add(delay.as_millis() as u64),
            NotBefore::At(at) => at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        });
        let run = RunRecord {
            queue: Some(QueuePlace {
                name: queue,
                priority: options.priority,
                not_before_ms,
                concurrency_key: options.concurrency_key.clone(),
            }),
            wake_at_ms: not_before_ms.filter(|at| *at > now),
            app_version: self.inner.app_version.clone(),
            traceparent,
            ..RunRecord::new(
                id.clone(),
                meta.name,
                RunStatus::Queued,
                input,
                trace_id,
                now,
            )
        };
        match self.inner.store.create_run(run.clone()).await? {
            CreateRun::Created(_) => {
                tracing::info!(run_id = %id, workflow = meta.name, queue = %run.queue.as_ref().map_or("", |q| q.name.as_str()), "run enqueued");
                self.inner.queue_changed.notify_waiters();
                Ok(id)
            }
            CreateRun::Exists(existing) => {
                if existing.workflow != meta.name {
                    return Err(Error::RunIdConflict {
                        id,
                        workflow: existing.workflow,
                    });
                }
                if !existing.status.is_finished()
                    && existing.input != run.input
                    && !options.use_stored_input
                {
                    return Err(Error::InputMismatch { id });
                }
                Ok(id)
            }
        }
    }

    /// Executes a run a worker took from its queue (already claimed by the take).
    pub(crate) async fn execute_taken(
        &self,
        taken: Taken,
        options: RunOptions,
    ) -> Result<super::RunHandle<serde_json::Value, super::registry::WorkflowFailure>, Error> {
        let reservation = match self.reserve(&taken.run.id).await {
            super::Reserve::Reserved(reservation) => reservation,
            super::Reserve::Attached(handle) => return Ok(handle),
        };
        let meta = find_workflow(&taken.run.workflow)?;
        let cancelled = !self
            .inner
            .store
            .cancel_requests(std::slice::from_ref(&taken.run.id))
            .await?
            .is_empty();
        let checkpoints = self.inner.store.steps(&taken.run.id).await?;
        Ok(self.spawn(
            reservation,
            taken.run,
            taken.claim,
            checkpoints,
            cancelled,
            Box::new(meta.invoke),
            None,
            options.exec,
        ))
    }

    /// The declared queues (the `default` queue is there even when not declared).
    pub fn queues(&self) -> Vec<(String, Queue)> {
        let mut queues: Vec<(String, Queue)> = self
            .inner
            .queues
            .iter()
            .map(|(name, q)| (name.clone(), q.clone()))
            .collect();
        if !self.inner.queues.contains_key(DEFAULT_QUEUE) {
            queues.push((DEFAULT_QUEUE.to_owned(), Queue::new()));
        }
        queues.sort_by(|a, b| a.0.cmp(&b.0));
        queues
    }

    /// The lease this process's claims carry ([`crate::FlowBuilder::lease`]).
    pub(crate) fn lease(&self) -> Duration {
        self.inner.lease
    }

    /// Whether this process executes run `id` now.
    pub(crate) fn is_active(&self, id: &RunId) -> bool {
        super::lock(&self.inner.active).contains_key(id)
    }

    /// Wakes a worker of this process that waits for work.
    pub(crate) fn queue_changed(&self) -> &tokio::sync::Notify {
        &self.inner.queue_changed
    }

    /// The declared queues and `default`.
    pub(crate) fn queue_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.inner.queues.keys().cloned().collect();
        if !self.inner.queues.contains_key(DEFAULT_QUEUE) {
            names.push(DEFAULT_QUEUE.to_owned());
        }
        names
    }
}

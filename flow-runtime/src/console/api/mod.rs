//! The operator API: one interface over the operations an operator performs on runs (list,
//! show, cancel, resume, retry a unit, fork, resolve, start) and schedules (list, pause,
//! resume, trigger, backfill), with two implementations: the
//! store opened in this process ([`Operator::Local`]) and the process that owns the store,
//! reached through its Unix socket ([`Operator::Remote`]). Every CLI command is written once
//! against it; the web console and the metrics endpoint are meant to reuse it.
//!
//! This module owns the operations and the wire protocol (newline-delimited JSON, one request
//! and one response per connection, versioned). It prints nothing: errors carry a kind that the
//! console maps to an exit code, and the same message on both paths.

mod client;
pub(crate) mod open;
mod server;
pub(crate) mod stats;

pub(crate) use client::Remote;
pub(crate) use server::{serve, ServeHandle};

use crate::engine::registry::{Overlap, WorkflowFailure};
use crate::engine::schedules::{Fired, ScheduleView};
use crate::engine::{Error, Flow, Resolution, RunHandle, RunOptions};
use crate::store::{RunFilter, RunId, RunRecord, RunStatus, StepId, StepRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol's version, carried by every request and response; a peer speaking another
/// version is refused with a message instead of misread.
pub(crate) const PROTOCOL: u32 = 1;

/// Why an operation failed: the kind decides the exit code, the message is what the operator
/// reads (the same through the socket as locally).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

/// What kind of failure, as far as the caller must tell them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ErrorKind {
    /// Bad request: an unknown run, workflow or step, a run in the wrong state (exit 2).
    Usage,
    /// Another live process executes the run (exit 2).
    InProgress,
    /// The input does not decode into the workflow's parameters; nothing was stored (exit 2).
    Input,
    /// The store failed (exit 5).
    Store,
    /// The settings do not work (exit 3): a store path too long for its socket.
    Config,
    /// The owner could not be reached (its socket is gone or it stopped serving): the caller
    /// may open the store itself.
    Unavailable,
}

impl ApiError {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let kind = match e {
            // The owner is closing its store (it is stopping): the caller sends the request
            // again, to the next owner or to the store itself
            Error::Store(
                crate::store::StoreError::Closed | crate::store::StoreError::Unavailable { .. },
            ) => ErrorKind::Unavailable,
            Error::Store(_) | Error::Interrupted { .. } | Error::Encoding(_) => ErrorKind::Store,
            Error::Input { .. } => ErrorKind::Input,
            Error::RunInProgress { .. } => ErrorKind::InProgress,
            _ => ErrorKind::Usage,
        };
        ApiError::new(kind, e.to_string())
    }
}

/// A run as `runs show` presents it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct RunView {
    pub run: RunRecord,
    pub steps: Vec<StepRecord>,
    /// An operator asked to cancel it and the run has not stopped yet.
    pub cancel_requested: bool,
    /// Where a queued run stands in its queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueView>,
}

/// Where a queued run stands, and why it waits.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct QueueView {
    pub name: String,
    pub priority: i32,
    /// 1 for the next run a worker takes.
    pub position: u64,
    /// Runs of the queue started and not finished.
    pub in_flight: u64,
    /// Why it has not started, in words.
    pub waiting: String,
}

/// Explains why a queued run waits, from its queue's limits and where it stands.
fn waiting_reason(
    run: &RunRecord,
    queue: &crate::Queue,
    standing: &crate::store::QueueStanding,
    now_ms: u64,
) -> String {
    let place = run.queue.as_ref();
    if let Some(at) = run.wake_at_ms.filter(|at| *at > now_ms) {
        return format!(
            "not yet due: it starts no sooner than {}",
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(at)
            )
        );
    }
    if let Some(limit) = queue
        .concurrency
        .filter(|l| standing.in_flight >= u64::from(*l))
    {
        return format!(
            "concurrency: the queue has {} runs in flight, its limit is {limit}",
            standing.in_flight
        );
    }
    if let (Some(limit), Some(key)) = (
        queue.per_key,
        place.and_then(|p| p.concurrency_key.as_deref()),
    ) {
        if standing.in_flight_with_key >= u64::from(limit) {
            return format!(
                "concurrency key `{key}`: {} runs with it in flight, the limit is {limit}",
                standing.in_flight_with_key
            );
        }
    }
    if let Some((n, period)) = queue
        .rate
        .filter(|(n, _)| standing.recent_starts >= u64::from(*n))
    {
        return format!(
            "rate limit: {} starts in the last {}, the limit is {n}",
            standing.recent_starts,
            humantime::format_duration(period)
        );
    }
    if standing.ahead > 0 {
        return format!("{} runs are ahead of it", standing.ahead);
    }
    "next in line: it starts when a worker serving the queue has a free slot (is `worker` running?)"
        .to_owned()
}

/// How to start a run by name.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct StartOptions {
    pub id: Option<RunId>,
    pub rollout: Option<f64>,
    pub use_stored_input: bool,
    /// The caller's W3C traceparent: the run joins its trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl StartOptions {
    fn run_options(&self) -> RunOptions {
        let mut options = RunOptions::new();
        if let Some(id) = &self.id {
            options = options.id(id.clone());
        }
        if let Some(percent) = self.rollout {
            options = options.rollout(percent);
        }
        if self.use_stored_input {
            options = options.use_stored_input();
        }
        if let Some(traceparent) = &self.traceparent {
            options = options.traceparent(traceparent.clone());
        }
        options
    }
}

/// The settlement of an `at_most_once` step, on the wire.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Settle {
    Done(Value),
    Rerun,
}

/// Where an execution that an operation started runs.
pub(crate) enum Started {
    /// In this process: its handle.
    Here(RunHandle<Value, WorkflowFailure>),
    /// In the process that owns the store: follow it by its id.
    There(RunId),
}

impl Started {
    pub(crate) fn run_id(&self) -> &RunId {
        match self {
            Started::Here(handle) => handle.run_id(),
            Started::There(id) => id,
        }
    }
}

/// A request, as sent on the socket (inside an envelope carrying the protocol version).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub(crate) enum Request {
    List {
        status: Option<RunStatus>,
        workflow: Option<String>,
        limit: Option<usize>,
    },
    Show {
        id: RunId,
    },
    Alerts {
        pending: bool,
        workflow: Option<String>,
        limit: Option<usize>,
    },
    Cancel {
        id: RunId,
    },
    Resolve {
        id: RunId,
        step: StepId,
        settle: Settle,
    },
    Start {
        workflow: String,
        input: Value,
        options: StartOptions,
    },
    Resume {
        id: RunId,
        /// Only these units execute (`runs retry-unit`); all unfinished ones when absent.
        only_units: Option<Vec<String>>,
    },
    Fork {
        id: RunId,
        from_step: String,
        new_id: Option<RunId>,
    },
    Enqueue {
        workflow: String,
        input: Value,
        options: EnqueueOptions,
    },
    /// Every schedule with its stored state.
    Schedules,
    PauseSchedule {
        name: String,
        note: Option<String>,
    },
    ResumeSchedule {
        name: String,
    },
    /// Per workflow and step figures of the runs created in a window.
    Stats {
        query: stats::StatsQuery,
    },
    /// The owner's Prometheus metrics, in the text format.
    Metrics,
    /// One run of a schedule now.
    TriggerSchedule {
        name: String,
        overlap: Option<Overlap>,
    },
    /// The runs of a schedule's ticks in `[from_ms, to_ms]`.
    BackfillSchedule {
        name: String,
        from_ms: u64,
        to_ms: u64,
        overlap: Option<Overlap>,
    },
}

/// How to enqueue a run by name.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct EnqueueOptions {
    pub id: Option<RunId>,
    pub queue: Option<String>,
    pub priority: i32,
    pub not_before_ms: Option<u64>,
    pub concurrency_key: Option<String>,
    /// The caller's W3C traceparent: the run joins its trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl EnqueueOptions {
    fn run_options(&self) -> RunOptions {
        let mut options = RunOptions::new().priority(self.priority);
        if let Some(id) = &self.id {
            options = options.id(id.clone());
        }
        if let Some(queue) = &self.queue {
            options = options.queue(queue.clone());
        }
        if let Some(at) = self.not_before_ms {
            options =
                options.not_before(std::time::UNIX_EPOCH + std::time::Duration::from_millis(at));
        }
        if let Some(key) = &self.concurrency_key {
            options = options.concurrency_key(key.clone());
        }
        if let Some(traceparent) = &self.traceparent {
            options = options.traceparent(traceparent.clone());
        }
        options
    }
}

/// The operations, on a store opened here or through the owner's socket.
pub(crate) enum Operator {
    Local(Flow),
    Remote(Remote),
}

impl Operator {
    /// Runs matching `filter`, newest first.
    pub(crate) async fn list(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, ApiError> {
        match self {
            Operator::Local(flow) => Ok(flow.runs(filter).await?),
            Operator::Remote(remote) => {
                remote
                    .call(&Request::List {
                        status: filter.status,
                        workflow: filter.workflow.clone(),
                        limit: filter.limit,
                    })
                    .await
            }
        }
    }

    /// Alerts matching `filter`, newest first.
    pub(crate) async fn alerts(
        &self,
        filter: &crate::store::AlertFilter,
    ) -> Result<Vec<crate::store::AlertRecord>, ApiError> {
        match self {
            Operator::Local(flow) => Ok(flow.store().alerts(filter).await.map_err(Error::from)?),
            Operator::Remote(remote) => {
                remote
                    .call(&Request::Alerts {
                        pending: filter.pending,
                        workflow: filter.workflow.clone(),
                        limit: filter.limit,
                    })
                    .await
            }
        }
    }

    /// A run with its steps.
    pub(crate) async fn show(&self, id: &RunId) -> Result<RunView, ApiError> {
        match self {
            Operator::Local(flow) => {
                let run = flow
                    .run_record(id)
                    .await?
                    .ok_or_else(|| Error::UnknownRun(id.clone()))?;
                let steps = flow.steps(id).await?;
                let cancel_requested = !run.status.is_finished()
                    && flow
                        .store()
                        .cancel_requests(std::slice::from_ref(id))
                        .await
                        .map_err(Error::from)?
                        .contains(id);
                let queue = match (&run.queue, run.status) {
                    (Some(place), crate::store::RunStatus::Queued) => {
                        let declared = flow
                            .queues()
                            .into_iter()
                            .find(|(name, _)| *name == place.name)
                            .map(|(_, q)| q)
                            .unwrap_or_default();
                        let standing = flow
                            .store()
                            .queue_standing(id, declared.rate.map(|(_, period)| period))
                            .await
                            .map_err(Error::from)?
                            .unwrap_or_default();
                        Some(QueueView {
                            name: place.name.clone(),
                            priority: place.priority,
                            position: standing.ahead + 1,
                            in_flight: standing.in_flight,
                            waiting: waiting_reason(
                                &run,
                                &declared,
                                &standing,
                                crate::store::now_ms(),
                            ),
                        })
                    }
                    _ => None,
                };
                Ok(RunView {
                    run,
                    steps,
                    cancel_requested,
                    queue,
                })
            }
            Operator::Remote(remote) => remote.call(&Request::Show { id: id.clone() }).await,
        }
    }

    /// Cancels a run; returns its status afterwards (cancelled, or still running until its
    /// next step boundary).
    pub(crate) async fn cancel(&self, id: &RunId) -> Result<RunStatus, ApiError> {
        match self {
            Operator::Local(flow) => {
                flow.cancel(id).await?;
                Ok(flow
                    .run_record(id)
                    .await?
                    .map_or(RunStatus::Cancelled, |r| r.status))
            }
            Operator::Remote(remote) => remote.call(&Request::Cancel { id: id.clone() }).await,
        }
    }

    /// Settles an `at_most_once` step in doubt.
    pub(crate) async fn resolve(
        &self,
        id: &RunId,
        step: &StepId,
        settle: Settle,
    ) -> Result<(), ApiError> {
        match self {
            Operator::Local(flow) => {
                let resolution = match settle {
                    Settle::Done(v) => Resolution::Done(v),
                    Settle::Rerun => Resolution::Rerun,
                };
                Ok(flow.resolve(id, step, resolution).await?)
            }
            Operator::Remote(remote) => {
                remote
                    .call(&Request::Resolve {
                        id: id.clone(),
                        step: step.clone(),
                        settle,
                    })
                    .await
            }
        }
    }

    /// Starts the workflow named `workflow` (or returns the stored outcome of a finished run
    /// id, or continues an unfinished one).
    /// Enqueues a run for a worker; returns its id (an existing id is returned as it is).
    pub(crate) async fn enqueue(
        &self,
        workflow: &str,
        input: Value,
        options: EnqueueOptions,
    ) -> Result<RunId, ApiError> {
        match self {
            Operator::Local(flow) => {
                Ok(flow.enqueue(workflow, options.run_options(), input).await?)
            }
            Operator::Remote(remote) => {
                remote
                    .call(&Request::Enqueue {
                        workflow: workflow.to_owned(),
                        input,
                        options,
                    })
                    .await
            }
        }
    }

    pub(crate) async fn start(
        &self,
        workflow: &str,
        input: Value,
        options: StartOptions,
    ) -> Result<Started, ApiError> {
        match self {
            Operator::Local(flow) => Ok(Started::Here(
                flow.start(workflow, options.run_options(), input).await?,
            )),
            Operator::Remote(remote) => Ok(Started::There(
                remote
                    .call(&Request::Start {
                        workflow: workflow.to_owned(),
                        input,
                        options,
                    })
                    .await?,
            )),
        }
    }

    /// Resumes an unfinished run; with `only_units`, only those units of its fan-out execute.
    pub(crate) async fn resume(
        &self,
        id: &RunId,
        only_units: Option<Vec<String>>,
    ) -> Result<Started, ApiError> {
        match self {
            Operator::Local(flow) => {
                let handle = match only_units {
                    Some(units) => {
                        flow.resume_with(id, RunOptions::new().only_units(units))
                            .await?
                    }
                    None => flow.resume(id).await?,
                };
                Ok(Started::Here(handle))
            }
            Operator::Remote(remote) => Ok(Started::There(
                remote
                    .call(&Request::Resume {
                        id: id.clone(),
                        only_units,
                    })
                    .await?,
            )),
        }
    }

    /// Starts a new run from the checkpoints of `id` taken before `from_step`.
    pub(crate) async fn fork(
        &self,
        id: &RunId,
        from_step: &str,
        new_id: Option<RunId>,
    ) -> Result<Started, ApiError> {
        match self {
            Operator::Local(flow) => Ok(Started::Here(flow.fork(id, from_step, new_id).await?)),
            Operator::Remote(remote) => Ok(Started::There(
                remote
                    .call(&Request::Fork {
                        id: id.clone(),
                        from_step: from_step.to_owned(),
                        new_id,
                    })
                    .await?,
            )),
        }
    }

    /// Every schedule (those of the process that runs the operation) with its stored state.
    pub(crate) async fn schedules(&self) -> Result<Vec<ScheduleView>, ApiError> {
        match self {
            Operator::Local(flow) => Ok(flow.schedule_views().await?),
            Operator::Remote(remote) => remote.call(&Request::Schedules).await,
        }
    }

    /// Pauses a schedule (`note`: why, for the other operators), or resumes it (`pause`
    /// false; the ticks of the pause are not caught up).
    pub(crate) async fn pause_schedule(
        &self,
        name: &str,
        pause: bool,
        note: Option<String>,
    ) -> Result<(), ApiError> {
        match self {
            Operator::Local(flow) if pause => Ok(flow.pause_schedule(name, note).await?),
            Operator::Local(flow) => Ok(flow.resume_schedule(name).await?),
            Operator::Remote(remote) if pause => {
                remote
                    .call(&Request::PauseSchedule {
                        name: name.to_owned(),
                        note,
                    })
                    .await
            }
            Operator::Remote(remote) => {
                remote
                    .call(&Request::ResumeSchedule {
                        name: name.to_owned(),
                    })
                    .await
            }
        }
    }

    /// Fires one run of a schedule now, by its overlap policy unless `overlap` is given.
    pub(crate) async fn trigger_schedule(
        &self,
        name: &str,
        overlap: Option<Overlap>,
    ) -> Result<Fired, ApiError> {
        match self {
            Operator::Local(flow) => Ok(flow.trigger_schedule(name, overlap).await?),
            Operator::Remote(remote) => {
                remote
                    .call(&Request::TriggerSchedule {
                        name: name.to_owned(),
                        overlap,
                    })
                    .await
            }
        }
    }

    /// Fires the ticks of a schedule in `[from_ms, to_ms]`, each as its tick's run.
    pub(crate) async fn backfill_schedule(
        &self,
        name: &str,
        from_ms: u64,
        to_ms: u64,
        overlap: Option<Overlap>,
    ) -> Result<Fired, ApiError> {
        match self {
            Operator::Local(flow) => Ok(flow
                .backfill_schedule(name, from_ms, to_ms, overlap)
                .await?),
            Operator::Remote(remote) => {
                remote
                    .call(&Request::BackfillSchedule {
                        name: name.to_owned(),
                        from_ms,
                        to_ms,
                        overlap,
                    })
                    .await
            }
        }
    }

    /// The figures of the runs matching `query` (see [`stats`] for what it reads).
    pub(crate) async fn stats(&self, query: &stats::StatsQuery) -> Result<stats::Stats, ApiError> {
        match self {
            Operator::Local(flow) => Ok(stats::compute(flow, query).await?),
            Operator::Remote(remote) => {
                remote
                    .call(&Request::Stats {
                        query: query.clone(),
                    })
                    .await
            }
        }
    }

    /// The Prometheus metrics (text format) of the process that executes workflows: the
    /// owner's through its socket; `None` when the store was opened here, since this process
    /// executed nothing.
    pub(crate) async fn metrics(&self) -> Result<Option<String>, ApiError> {
        match self {
            Operator::Local(_) => Ok(None),
            Operator::Remote(remote) => remote.call(&Request::Metrics).await.map(Some),
        }
    }

    /// The local store, when the operations run in this process.
    pub(crate) fn flow(&self) -> Option<&Flow> {
        match self {
            Operator::Local(flow) => Some(flow),
            Operator::Remote(_) => None,
        }
    }
}

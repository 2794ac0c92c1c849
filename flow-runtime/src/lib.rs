//! flow: durable, checkpointed, retrying workflow steps.
//!
//! Mark async functions `#[flow::step(...)]` and `#[flow::workflow]`; a run of the workflow can
//! be killed at any instant and started again: it resumes where it stopped, repeats no completed
//! step and retries only what is worth retrying. `#[flow::main]` turns an app into a program with
//! settings, logs and an operator CLI. Most programs need only what `flow::prelude` brings.
//!
//! # Errors
//!
//! A user meets these, each for one situation:
//!
//! - [`Error`]: an operation of [`Flow`] failed (unknown run or workflow, a run executed by
//!   another process, bad input, the store: [`store::StoreError`] inside [`Error::Store`]).
//! - [`RunError`]: a run ended without its output (the workflow's own error, a failure stored by
//!   an earlier execution, a cancel, an `at_most_once` step in doubt, a paused rollout).
//! - [`UnitsError`]: a fan-out ([`units`]) had failed units or exceeded its error budget.
//! - [`Failure`]: a ready-made error type for steps and workflows, transient or permanent.
//! - [`WorkflowFailure`]: the error of a run started by name ([`Flow::start`]), as its message.
#![warn(missing_docs)]

// The parts, each in one folder: `engine` executes workflows (steps, retries, units, app
// state); `store` keeps runs and checkpoints and depends on nothing of the engine; `console` is
// what an operator meets (the generated main and its CLI, settings, logging).
mod console;
mod engine;
mod metrics;
pub mod store;
mod trace;
mod worker;

#[doc(hidden)]
pub mod __private;

pub use console::settings::{non_empty_secret, Secret};
pub use engine::alerts::{AlertSinks, DeliveryPass, MaxDurationPass, Webhook};
pub use engine::classify::{Classify, ErrorClass, Failure, ResultExt, StepTimeout};
pub use engine::context::{
    attempt, is_dry_run, key, run_id, step_key, tick, trace_id, PlannedStep, Tick,
};
pub use engine::determinism::{now, random, sleep, uuid};
pub use engine::prune::Retention;
pub use engine::queue::Queue;
pub use engine::registry::{CatchUp, Overlap, WorkflowFailure};
pub use engine::retry::{RetryPolicies, RetryPolicy};
pub use engine::schedules::{
    Clock, Fired, ManualClock, Schedule, ScheduleConfig, ScheduleView, SystemClock,
};
pub use engine::state::{state, try_state, AppState};
pub use engine::units::{
    in_rollout, rollout_bucket, units, units_stream, UnitFailure, Units, UnitsError, UnitsReport,
    UNIT_STEP,
};
pub use engine::{
    block_on, DryRun, Error, Flow, FlowBuilder, Resolution, RunError, RunHandle, RunOptions,
};
pub use flow_macros::{main, step, workflow, Classify};
#[doc(hidden)]
pub use garde;
pub use store::{Durability, RunId, RunStatus, Sharing};
pub use uuid::Uuid;
pub use worker::{Worker, WorkerReport};

/// `Result` with flow's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What most programs need: `use flow_runtime::prelude::*;`.
pub mod prelude {
    pub use crate::{
        main, step, workflow, Classify, Failure, Flow, ResultExt, RunError, RunId, RunOptions,
        Secret,
    };
}

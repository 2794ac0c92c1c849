//! flow: durable, checkpointed, retrying workflow steps.
#![warn(missing_docs)]

mod classify;
mod cli;
mod context;
mod determinism;
mod engine;
pub mod registry;
mod retry;
mod settings;
mod step;
pub mod store;
mod telemetry;
mod units;

#[doc(hidden)]
pub mod __private;

pub use classify::{Classify, ErrorClass, Failure, ResultExt, StepTimeout};
pub use context::{attempt, is_dry_run, run_id, step_key, trace_id, PlannedStep};
pub use determinism::{now, random, sleep, uuid};
pub use engine::{DryRun, Error, Flow, FlowBuilder, Resolution, RunError, RunHandle, RunOptions};
pub use flow_macros::{main, step, workflow, Classify};
#[doc(hidden)]
pub use garde;
pub use registry::{
    DryRunSpec, InputError, RepeatSafety, RetrySpec, StepMeta, WorkflowFailure, WorkflowMeta,
};
pub use retry::{RetryPolicies, RetryPolicy};
pub use settings::{non_empty_secret, FlowSettings, LogFormat, Secret, SettingProblem};
pub use store::Owner;
pub use store::Sharing;
pub use store::{
    Attention, RunFilter, RunId, RunRecord, RunStatus, StepId, StepRecord, StepStatus, Store,
    StoreError,
};
pub use units::{
    in_rollout, rollout_bucket, units, units_stream, UnitCounts, UnitFailure, Units, UnitsError,
    UnitsReport, UNIT_STEP,
};
pub use uuid::Uuid;

//! flow: durable, checkpointed, retrying workflow steps.
#![warn(missing_docs)]

mod classify;
mod engine;
pub mod registry;
mod retry;
mod step;
pub mod store;

#[doc(hidden)]
pub mod __private;

pub use classify::{Classify, ErrorClass, Failure, ResultExt, StepTimeout};
pub use engine::{DryRun, Error, Flow, RunError, RunHandle, RunOptions};
pub use flow_macros::{step, workflow, Classify};
pub use registry::{
    DryRunSpec, InputError, RepeatSafety, RetrySpec, StepMeta, WorkflowFailure, WorkflowMeta,
};
pub use retry::{RetryPolicies, RetryPolicy};
pub use store::{RunId, RunStatus, StepId, StepStatus, Store, StoreError};

//! Step execution: replay from a checkpoint, or run the body with retries, timeouts and
//! durable attempt bookkeeping. (stub)

use crate::classify::{ErrorClass, StepTimeout};
use crate::registry::StepMeta;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

/// What generated code tells the executor about one call of a step.
pub struct StepSpec<E: 'static> {
    /// The step's declaration.
    pub meta: &'static StepMeta,
    /// The `idempotency_key` value, if the step has one.
    pub key: Option<String>,
    /// How to classify an error; `None` when the step is not retried.
    #[allow(clippy::type_complexity)]
    // a plain fn pointer generated code fills in; an alias would hide its shape
    pub classify: Option<fn(&E) -> (ErrorClass, Option<Duration>)>,
    /// How to turn a timeout into `E`; `None` when the step has no `timeout`.
    pub on_timeout: Option<fn(StepTimeout) -> E>,
}

/// Runs one call of a step: checkpointed inside a run, a plain call outside one.
pub async fn run_step<A, T, E, B, BF, D, DF>(
    spec: StepSpec<E>,
    args: &A,
    mut body: B,
    dry_run: D,
) -> Result<T, E>
where
    A: Serialize + ?Sized,
    T: Serialize + DeserializeOwned + Send + 'static,
    E: Display + Send + 'static,
    B: FnMut() -> BF + Send,
    BF: Future<Output = Result<T, E>> + Send,
    D: FnOnce() -> DF + Send,
    DF: Future<Output = Result<T, E>> + Send,
{
    let _ = (spec, args, dry_run);
    body().await
}

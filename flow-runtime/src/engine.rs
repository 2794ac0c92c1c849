//! The engine: starting, resuming and finishing runs. (stub)

use crate::registry::{InputError, WorkflowFailure, WorkflowMeta};
use crate::store::{RunId, StoreError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Display;
use std::future::Future;
use std::marker::PhantomData;

/// The runtime: a store plus the runs executing in this process.
#[derive(Clone)]
pub struct Flow {}

/// How to start a run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    id: Option<RunId>,
}

impl RunOptions {
    /// Default options: a generated run id.
    pub fn new() -> Self {
        Self::default()
    }
    /// Use this run id.
    pub fn id(mut self, id: impl Into<RunId>) -> Self {
        self.id = Some(id.into());
        self
    }
}

/// A started run.
pub struct RunHandle<T, E> {
    _p: PhantomData<fn() -> (T, E)>,
}

impl<T, E> RunHandle<T, E> {
    /// Waits for the run to finish and returns its output or error.
    pub async fn outcome(self) -> Result<T, RunError<E>> {
        todo!()
    }
}

/// The result of a dry run.
pub struct DryRun<T, E> {
    /// What the workflow returned.
    pub result: Result<T, RunError<E>>,
}

/// Why a run did not produce its output.
#[derive(Debug, thiserror::Error)]
pub enum RunError<E> {
    /// The workflow returned this error.
    #[error("{0}")]
    Workflow(E),
    /// Engine error.
    #[error(transparent)]
    Engine(#[from] Error),
}

/// Engine errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Input.
    #[error(transparent)]
    Input(#[from] InputError),
    /// Failure.
    #[error(transparent)]
    Failure(#[from] WorkflowFailure),
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
    let _ = (flow, meta, options, input, call);
    todo!()
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
    let _ = (flow, meta, input, call);
    todo!()
}

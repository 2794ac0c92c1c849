//! Support for the code that flow's macros generate. **Not a public API**: anything here may
//! change in any release. Generated code reaches serde, serde_json, inventory and the engine only
//! through this module, so users need none of them in their own `Cargo.toml`.
//!
//! The `assert_*` functions exist for their bounds: the macros call them with spans on the user's
//! own types, and each bound's trait carries a `#[diagnostic::on_unimplemented]` message that
//! says what to change.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

pub use crate::console::cli::{main_entry, AppInfo, AppSettings, NoSettings, SetupOutcome};
pub use crate::engine::classify::{Classify, ErrorClass, StepTimeout};
pub use crate::engine::registry::{
    BoxFuture, CatchUp, DryRunSpec, InputError, InvokeResult, Overlap, RepeatSafety, RetrySpec,
    ScheduleSpec, StepMeta, StepRegistration, WorkflowFailure, WorkflowMeta, WorkflowRegistration,
};
pub use crate::engine::{DryRun, Error, Flow, RunError, RunHandle, RunOptions};
pub use crate::store::RunId;

/// The registry of the steps and workflows linked into this binary.
pub mod registry {
    pub use crate::engine::registry::{step, steps, workflow, workflows};
}
pub use crate::console::settings::{SettingProblem, SettingsSource};
pub use crate::engine::step::{run_step, ErrorReplay, StepSpec};
pub use ::inventory;
pub use ::serde;
pub use ::serde_json;

/// Bound for step parameter types.
#[diagnostic::on_unimplemented(
    message = "the step parameter type `{Self}` cannot be serialized",
    label = "this parameter type must implement `serde::Serialize`",
    note = "flow serializes a step's arguments to derive its key and to list them in dry-run plans; derive `serde::Serialize` for the type, or pass something that is"
)]
pub trait StepArg: Serialize {}
impl<T: Serialize + ?Sized> StepArg for T {}
/// Checks `T: StepArg`.
pub fn assert_step_arg<T: StepArg + ?Sized>() {}

/// Bound for owned step parameter types: each attempt gets its own copy.
#[diagnostic::on_unimplemented(
    message = "the step parameter type `{Self}` is not `Clone`",
    label = "each attempt of a step gets its own copy of this argument",
    note = "derive `Clone` for the type, or take the parameter by reference (`&T`)"
)]
pub trait StepArgClone: Clone {}
impl<T: Clone> StepArgClone for T {}
/// Checks `T: StepArgClone`.
pub fn assert_step_arg_clone<T: StepArgClone>() {}

/// Bound for the success type of a step: it is the checkpoint.
#[diagnostic::on_unimplemented(
    message = "the step output type `{Self}` cannot be checkpointed",
    label = "this type must implement `serde::Serialize` and `serde::Deserialize`",
    note = "flow stores a step's output as its checkpoint and returns the stored value on replay; derive `serde::Serialize` and `serde::Deserialize` for it"
)]
pub trait StepOutput: Serialize + DeserializeOwned + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Send + 'static> StepOutput for T {}
/// Checks `T: StepOutput`. A `const fn`, so that the step's static metadata can make the same
/// check: the compiler then reports an unmet bound there as the same message, once.
pub const fn assert_step_output<T: StepOutput>() {}

/// Splits a step's or workflow's `Result<T, E>` return type.
#[diagnostic::on_unimplemented(
    message = "a step or workflow must return `Result<T, E>`, but this one returns `{Self}`",
    label = "expected `Result<T, E>`",
    note = "flow needs the error to decide about retries; return `Result<T, E>` (for example `Result<(), flow::Failure>`)"
)]
pub trait StepReturn {
    /// The success type.
    type Ok;
    /// The error type.
    type Err;
}
impl<T, E> StepReturn for Result<T, E> {
    type Ok = T;
    type Err = E;
}
/// Checks `T: StepReturn`.
pub fn assert_step_return<T: StepReturn>() {}

/// Checks `E: Classify` (the trait carries the message).
pub fn assert_classify<E: Classify>() {}

/// Bound for the error of a step with a `timeout`.
#[diagnostic::on_unimplemented(
    message = "the error type `{Self}` cannot hold a `flow::StepTimeout`, which a step with a `timeout` needs",
    label = "this error type must implement `From<flow::StepTimeout>`",
    note = "add a variant such as `#[flow(transient)] Timeout(#[from] flow::StepTimeout)`, or implement `From<flow::StepTimeout>` for it"
)]
pub trait TimeoutError: From<StepTimeout> {}
impl<E: From<StepTimeout>> TimeoutError for E {}
/// Checks `E: TimeoutError`.
pub fn assert_timeout_error<E: TimeoutError>() {}

/// Bound for the output of a skipped step with no `dry_run` option.
#[diagnostic::on_unimplemented(
    message = "the step output type `{Self}` has no dry-run stand-in",
    label = "a dry run skips this step and needs a value to return in its place",
    note = "add `dry_run = path::to::fn` (a function with the step's signature), mark the step `read_only` if it changes nothing, or return a type that implements `Default`"
)]
pub trait DryRunDefault: Default {}
impl<T: Default> DryRunDefault for T {}
/// Checks `T: DryRunDefault`.
pub fn assert_dry_run_default<T: DryRunDefault>() {}

/// Bound for step and workflow errors: their message is stored and logged.
#[diagnostic::on_unimplemented(
    message = "the error type `{Self}` does not implement `Display`",
    label = "flow stores and logs the message of this error",
    note = "implement `std::fmt::Display` for it (`thiserror::Error` does)"
)]
pub trait ErrorMessage: Display + Send + 'static {}
impl<E: Display + Send + 'static> ErrorMessage for E {}
/// Checks `E: ErrorMessage`.
pub fn assert_error_message<E: ErrorMessage>() {}

/// Bound for workflow parameter and output types.
#[diagnostic::on_unimplemented(
    message = "the workflow input or output type `{Self}` cannot be stored as JSON",
    label = "this type must implement `serde::Serialize` and `serde::Deserialize`",
    note = "flow stores a run's input and output so that a resume and `runs show` can read them; derive both for it"
)]
pub trait WorkflowValue: Serialize + DeserializeOwned + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Send + 'static> WorkflowValue for T {}
/// Checks `T: WorkflowValue`.
pub fn assert_workflow_value<T: WorkflowValue>() {}

/// Bound for the parameter types of a workflow with a `schedule`: a scheduled run has no
/// caller, so its input is each parameter's `Default`.
#[diagnostic::on_unimplemented(
    message = "a scheduled workflow's input is built with `Default`, but `{Self}` does not implement `Default`",
    label = "a scheduled run passes `Default::default()` for this parameter",
    note = "derive `Default` for the type (`#[derive(Default)]`) or implement it; or, for a workflow that needs an input from its caller, remove `schedule` and enqueue runs with their input (`app enqueue NAME --input JSON --at TIME`)"
)]
pub trait ScheduledInput: Default {}
impl<T: Default> ScheduledInput for T {}

/// The value of one parameter of a scheduled run.
pub fn scheduled_input<T: ScheduledInput>() -> T {
    T::default()
}

/// The input of a scheduled run (`ScheduleSpec::input`), from the encoded defaults.
pub fn schedule_input(
    input: Result<serde_json::Value, serde_json::Error>,
) -> Result<serde_json::Value, String> {
    input.map_err(|e| format!("the default input could not be serialized: {e}"))
}

/// Parses a schedule's cron expression exactly as `#[workflow(schedule = "...")]` checked it at
/// compile time (flow-macros' `schedule::cron_parser`, which cannot be shared: the macro crate
/// does not depend on this one): 5 fields or 6 with seconds first, no year field, the other
/// settings croner's defaults. Change both together.
pub fn parse_cron(expression: &str) -> Result<croner::Cron, String> {
    crate::engine::schedules::parse_cron(expression)
}

/// Looks up a schedule's zone where `#[workflow(timezone = "...")]` checked it: the tz database
/// bundled into the binary.
pub fn schedule_zone(name: &str) -> Result<jiff::tz::TimeZone, String> {
    crate::engine::schedules::parse_zone(name)
}

/// Checks `T: AppSettings` (the trait carries the message).
pub fn assert_app_settings<T: AppSettings>() {}

/// Bound for what the body of `#[flow::main]` returns.
#[diagnostic::on_unimplemented(
    message = "`main` must return nothing, `flow::AppState` or a `Result` of either, but this one returns `{Self}`",
    label = "expected `()`, `flow::AppState`, `Result<(), E>` or `Result<flow::AppState, E>`",
    note = "the body of `#[flow::main]` is the app's setup; return `flow::AppState` to register clients for the workflows, and `Result<_, E>` (with an error `E` that implements `Display`) to stop the app when setup fails"
)]
pub trait MainOutcome: SetupOutcome {}
impl<T: SetupOutcome> MainOutcome for T {}
/// Checks `T: MainOutcome`.
pub fn assert_main_outcome<T: MainOutcome>() {}

/// The setup hook's outcome as `main_entry` takes it. Converting here, under a bound that is
/// checked at the user's return type, keeps `main_entry`'s own bound from failing a second time.
pub fn main_outcome<T: MainOutcome>(outcome: T) -> Result<crate::engine::state::AppState, String> {
    outcome.into_result()
}

/// A keyed step's body, with its declared key in reach of `flow::key()` (in a run and in a
/// plain call).
pub fn with_key<F: Future>(key: String, body: F) -> impl Future<Output = F::Output> {
    crate::engine::context::with_declared_key(key, body)
}

/// The classifier of `E`, for retried steps.
pub fn classifier<E: Classify>() -> fn(&E) -> (ErrorClass, Option<Duration>) {
    |e| (e.class(), e.retry_after())
}

/// The conversion of a timeout into `E`, for steps with a `timeout`.
pub fn timeout_error<E: TimeoutError>() -> fn(StepTimeout) -> E {
    E::from
}

/// Checks that `value` decodes into a step's output type `T` the way a replay decodes the
/// step's checkpoint (`StepMeta::check_output`).
pub fn check_step_output<T: StepOutput>(value: &serde_json::Value) -> Result<(), String> {
    serde_json::from_value::<T>(value.clone())
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Serializes a workflow argument.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<serde_json::Value, serde_json::Error> {
    serde_json::to_value(value)
}

/// Decodes a single-parameter workflow's input (the whole JSON value is the argument).
pub fn decode_input<T: DeserializeOwned>(
    workflow: &str,
    input: serde_json::Value,
) -> Result<T, InputError> {
    serde_json::from_value(input).map_err(|e| InputError {
        workflow: workflow.to_owned(),
        message: e.to_string(),
    })
}

/// Decodes one argument of a multi-parameter workflow, whose input is an object keyed by
/// parameter name.
pub fn decode_field<T: DeserializeOwned>(
    workflow: &str,
    input: &serde_json::Value,
    name: &str,
) -> Result<T, InputError> {
    let Some(object) = input.as_object() else {
        return Err(InputError {
            workflow: workflow.to_owned(),
            message: format!("expected a JSON object with the parameters as fields, found {input}"),
        });
    };
    let field = object.get(name).cloned().unwrap_or(serde_json::Value::Null);
    serde_json::from_value(field).map_err(|e| InputError {
        workflow: workflow.to_owned(),
        message: format!("field `{name}`: {e}"),
    })
}

/// Builds a multi-parameter workflow's input object.
pub fn encode_fields(
    fields: Vec<(&'static str, Result<serde_json::Value, serde_json::Error>)>,
) -> Result<serde_json::Value, serde_json::Error> {
    let mut object = serde_json::Map::new();
    for (name, value) in fields {
        object.insert(name.to_owned(), value?);
    }
    Ok(serde_json::Value::Object(object))
}

/// A workflow error as the engine keeps it.
pub fn failure<E: Display>(error: &E) -> WorkflowFailure {
    WorkflowFailure {
        message: error.to_string(),
    }
}

/// Starts (or attaches to, or returns the stored outcome of) a run of a typed workflow.
pub async fn start_typed<T, E, F, Fut>(
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
    crate::engine::start_typed(flow, meta, options, input, call).await
}

/// Enqueues a run of a typed workflow.
pub async fn enqueue_typed(
    flow: &Flow,
    meta: &'static WorkflowMeta,
    options: RunOptions,
    input: Result<serde_json::Value, serde_json::Error>,
) -> Result<RunId, Error> {
    let input = input.map_err(|e| Error::Input {
        workflow: meta.name.to_owned(),
        message: format!("the input could not be serialized: {e}"),
    })?;
    flow.enqueue_checked(meta, options, input).await
}

/// Dry-runs a typed workflow.
pub async fn dry_run_typed<T, E, F, Fut>(
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
    crate::engine::dry_run_typed(flow, meta, input, call).await
}

/// A step argument as `run_step` sees it. It serializes through a trait object, so `run_step`'s
/// `Serialize` bound always holds and an unserializable parameter is reported once, by
/// `step_arg`'s bound at the parameter's own type, not again by `run_step`.
pub struct StepArgRef<'a>(&'a (dyn ErasedStepArg + Sync + 'a));

/// Wraps one step argument for `run_step`.
pub fn step_arg<T: StepArg + Sync>(value: &T) -> StepArgRef<'_> {
    StepArgRef(value)
}

#[doc(hidden)]
pub trait ErasedStepArg {
    fn to_json(&self) -> Result<serde_json::Value, serde_json::Error>;
}

impl<T: Serialize + ?Sized> ErasedStepArg for T {
    fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::to_value(self)
    }
}

impl Serialize for StepArgRef<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0
            .to_json()
            .map_err(serde::ser::Error::custom)?
            .serialize(serializer)
    }
}

/// Picks how a step's error is recorded for replay: exactly, when the error type is serde
/// (`(&&ReplayProbe::<E>::new()).replay()` resolves to [`SerdeReplay`]), or not at all
/// ([`NoReplay`], whose failed steps execute again after a crash).
pub struct ReplayProbe<E>(std::marker::PhantomData<E>);

impl<E> ReplayProbe<E> {
    /// A probe for `E`.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        ReplayProbe(std::marker::PhantomData)
    }
}

/// The replay of a serde error type.
pub trait SerdeReplay<E> {
    /// How to record and rebuild `E`.
    fn replay(&self) -> Option<ErrorReplay<E>>;
}

impl<E: serde::Serialize + serde::de::DeserializeOwned> SerdeReplay<E> for &ReplayProbe<E> {
    fn replay(&self) -> Option<ErrorReplay<E>> {
        Some(ErrorReplay {
            encode: |error| serde_json::to_value(error).ok(),
            decode: |value| serde_json::from_value(value.clone()).ok(),
        })
    }
}

/// No replay for an error type that is not serde.
pub trait NoReplay<E> {
    /// `None`.
    fn replay(&self) -> Option<ErrorReplay<E>>;
}

impl<E> NoReplay<E> for ReplayProbe<E> {
    fn replay(&self) -> Option<ErrorReplay<E>> {
        None
    }
}

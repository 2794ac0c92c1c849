//! The registry of workflows and steps: their names, options, doc comments and source locations.
//!
//! The macros submit one entry per item at link time (`inventory`); the engine looks workflows up
//! by name here, and the CLI and runbook read everything from here. Nothing here executes a run.

/// How a step behaves when it runs twice; every step states exactly one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepeatSafety {
    /// Running it again is harmless.
    Idempotent,
    /// The step is keyed by an expression over its parameters, handed to the body as
    /// `flow::step_key()` so the external system can deduplicate.
    IdempotencyKey {
        /// The expression, as written.
        expr: &'static str,
    },
    /// A durable intent is written before the body runs; a crash inside the body leaves the run
    /// in needs-attention for an operator to decide.
    AtMostOnce,
}

/// The retry policy a step was declared with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RetrySpec {
    /// A named policy (`"transient"`, `"none"`), resolved at run time so settings can tune it.
    Named(&'static str),
    /// An inline `retry(...)` policy.
    Inline {
        /// Total attempts.
        attempts: u32,
        /// First delay, in milliseconds.
        initial_ms: u64,
        /// Largest delay, in milliseconds.
        max_ms: u64,
        /// Growth factor.
        multiplier: f64,
        /// Full jitter.
        jitter: bool,
    },
}

/// What a dry run does with a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DryRunSpec {
    /// `read_only`: the step runs for real.
    Execute,
    /// Skipped; `Default::default()` stands in for its output.
    Default,
    /// Skipped; this function (named as written) produces the stand-in.
    Function(&'static str),
}

/// Everything declared about one step.
#[derive(Debug)]
pub struct StepMeta {
    /// The stable step name (module path + fn name, or `name = "..."`).
    pub name: &'static str,
    /// The function's name.
    pub fn_name: &'static str,
    /// Repeat safety.
    pub repeat: RepeatSafety,
    /// `read_only`.
    pub read_only: bool,
    /// Retry policy.
    pub retry: RetrySpec,
    /// Per-attempt timeout in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Dry-run behaviour.
    pub dry_run: DryRunSpec,
    /// The doc comment.
    pub doc: &'static str,
    /// Source file.
    pub file: &'static str,
    /// Source line.
    pub line: u32,
    /// The step's output type (the `T` of its `Result<T, E>`), as written in the source.
    pub output_type: &'static str,
    /// Checks that a JSON value decodes into the step's output type, exactly as a replay will
    /// decode its checkpoint; `Err` carries serde's explanation. `runs resolve --done` uses it so
    /// that an operator cannot store an output that would make the run impossible to resume.
    pub check_output: fn(&serde_json::Value) -> Result<(), String>,
}

/// The error of a workflow run as the engine keeps it: its message and, where the error type
/// says so, its class.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorkflowFailure {
    /// `Display` of the error.
    pub message: String,
}

impl std::fmt::Display for WorkflowFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for WorkflowFailure {}

pub use crate::store::BoxFuture;

/// What calling a workflow by name produces: the output as JSON, or a failure; `Err(Err(_))` is
/// input that does not decode.
pub type InvokeResult = Result<Result<serde_json::Value, WorkflowFailure>, InputError>;

/// Input JSON that does not match the workflow's parameters.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid input for workflow `{workflow}`: {message}")]
pub struct InputError {
    /// The workflow.
    pub workflow: String,
    /// What serde said.
    pub message: String,
}

/// Everything declared about one workflow.
#[derive(Debug)]
pub struct WorkflowMeta {
    /// The stable workflow name (fn name, or `name = "..."`).
    pub name: &'static str,
    /// The function's name.
    pub fn_name: &'static str,
    /// The parameter names, in order.
    pub params: &'static [&'static str],
    /// Whether the workflow runs units (`flow::units`), so that failed units, `retry-unit` and
    /// staged rollouts apply to it: a call of `units(...)` or `units_stream(...)` in its body,
    /// or `#[workflow(units)]`.
    pub units: bool,
    /// Alert after this many consecutive failed runs.
    pub alert_after: Option<u32>,
    /// Alert when a run has not finished this long after it was created (`max_duration`), in
    /// milliseconds.
    pub max_duration_ms: Option<u64>,
    /// The schedule declared with `#[workflow(schedule = "...")]`, checked at compile time.
    pub schedule: Option<ScheduleSpec>,
    /// The doc comment.
    pub doc: &'static str,
    /// Source file.
    pub file: &'static str,
    /// Source line.
    pub line: u32,
    /// Calls the workflow with JSON input.
    pub invoke: fn(serde_json::Value) -> BoxFuture<'static, InvokeResult>,
    /// Decodes JSON input into the parameters' types without running anything, so that input
    /// of the wrong type is refused before a run is stored.
    pub check_input: fn(&serde_json::Value) -> Result<(), InputError>,
}

/// A schedule declared on a workflow: `#[workflow(schedule = "0 2 * * *", timezone = "...",
/// catch_up = "...", overlap = "...")]`. Settings (`[flow.schedules.NAME]`) may override each
/// field, so this is the default, not necessarily what runs.
#[derive(Clone, Copy, Debug)]
pub struct ScheduleSpec {
    /// The cron expression (5 fields, or 6 with seconds first), as written.
    pub cron: &'static str,
    /// The IANA time zone the expression is read in (`"UTC"` unless given).
    pub timezone: &'static str,
    /// What to do with ticks missed while no worker ran.
    pub catch_up: CatchUp,
    /// What to do with a tick while the previous run still runs.
    pub overlap: Overlap,
    /// The input of a scheduled run: the workflow's input built with `Default`, as JSON.
    pub input: fn() -> Result<serde_json::Value, String>,
}

/// What a schedule does with ticks that passed while no worker ran (within the catch-up
/// window, `flow.schedule_catch_up_window`; older ticks are always skipped).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Missed ticks are skipped; the schedule waits for its next tick.
    Skip,
    /// Only the most recent missed tick runs (the default): a nightly job that missed three
    /// nights runs once.
    #[default]
    Latest,
    /// Every missed tick runs, oldest first, each with its own tick time.
    All,
}

/// What a schedule does with a tick while its previous run has not finished.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// The tick is skipped (the default), and logged.
    #[default]
    Skip,
    /// One tick waits for the running one to finish; later ticks meanwhile are skipped.
    BufferOne,
    /// Every tick waits, and they run one after another in tick order.
    BufferAll,
    /// The tick runs at once, beside the running one.
    Allow,
}

impl CatchUp {
    /// Every policy, by its name in attributes and settings.
    pub const ALL: [(&'static str, CatchUp); 3] = [
        ("skip", CatchUp::Skip),
        ("latest", CatchUp::Latest),
        ("all", CatchUp::All),
    ];

    /// The policy's name.
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::Skip => "skip",
            CatchUp::Latest => "latest",
            CatchUp::All => "all",
        }
    }
}

impl Overlap {
    /// Every policy, by its name in attributes and settings.
    pub const ALL: [(&'static str, Overlap); 4] = [
        ("skip", Overlap::Skip),
        ("buffer_one", Overlap::BufferOne),
        ("buffer_all", Overlap::BufferAll),
        ("allow", Overlap::Allow),
    ];

    /// The policy's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::BufferOne => "buffer_one",
            Overlap::BufferAll => "buffer_all",
            Overlap::Allow => "allow",
        }
    }
}

#[doc(hidden)]
pub struct StepRegistration(pub &'static StepMeta);
#[doc(hidden)]
pub struct WorkflowRegistration(pub &'static WorkflowMeta);

inventory::collect!(StepRegistration);
inventory::collect!(WorkflowRegistration);

/// Every step linked into this binary, sorted by name.
pub fn steps() -> Vec<&'static StepMeta> {
    let mut all: Vec<_> = inventory::iter::<StepRegistration>
        .into_iter()
        .map(|r| r.0)
        .collect();
    all.sort_by_key(|m| m.name);
    all
}

/// Every workflow linked into this binary, sorted by name.
pub fn workflows() -> Vec<&'static WorkflowMeta> {
    let mut all: Vec<_> = inventory::iter::<WorkflowRegistration>
        .into_iter()
        .map(|r| r.0)
        .collect();
    all.sort_by_key(|m| m.name);
    all
}

/// The workflow of that name.
pub fn workflow(name: &str) -> Option<&'static WorkflowMeta> {
    inventory::iter::<WorkflowRegistration>
        .into_iter()
        .map(|r| r.0)
        .find(|m| m.name == name)
}

/// The step of that name.
pub fn step(name: &str) -> Option<&'static StepMeta> {
    inventory::iter::<StepRegistration>
        .into_iter()
        .map(|r| r.0)
        .find(|m| m.name == name)
}

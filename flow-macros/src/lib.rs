//! The macros of flow: `#[step]`, `#[workflow]`, `#[main]` and `#[derive(Classify)]`.
//!
//! Use them through the `flow_runtime` crate, which re-exports them and documents how to use
//! them. Generated code reaches the runtime only through `::flow_runtime::__private`.
#![warn(missing_docs)]

mod classify;
mod doc;
mod duration;
mod entry;
mod errors;
mod options;
mod schedule;
mod signature;
mod step;
mod tidy;
mod units;
mod workflow;

use proc_macro::TokenStream;

/// Turns an `async fn` into a durable step: checkpointed inside a run, retried according to its
/// policy, skipped or stood in for in a dry run, and an ordinary async function outside a run.
///
/// Every step states its repeat safety (`idempotent`, `idempotency_key = <expr>` or
/// `at_most_once`, or `read_only`); the other options are `retry`, `timeout`, `name`,
/// `dry_run` and `skip(...)` (parameters that are app state: not keyed, stored or planned).
/// Options and the types of the signature are checked at compile time.
#[proc_macro_attribute]
pub fn step(args: TokenStream, item: TokenStream) -> TokenStream {
    step::expand(args.into(), item.into()).into()
}

/// Registers an `async fn` as a workflow and adds a typed handle of the same name (in the type
/// namespace) to start it, run it, dry-run it and read its metadata.
///
/// The function itself is left unchanged. Options, each checked at compile time:
///
/// - `name = "..."`: the stable name (default: the function's name);
/// - `alert_after = N`: alert after N consecutive failed runs;
/// - `max_duration = "2h"`: alert when a run has not finished this long after it was created
///   (a duration as in `flow.toml`: `"90s"`, `"30min"`, `"1h 30m"`);
/// - `units`: the workflow runs `flow::units` through a helper function (a call of
///   `units(...)` or `units_stream(...)` in the body itself is detected);
/// - `schedule = "0 2 * * *"`: run on a cron schedule: 5 fields (`minute hour day-of-month
///   month day-of-week`) or 6 with seconds first, with names (`MON-FRI`, `JAN`), `L`, `W`, `#`
///   and the shortcuts `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`. A scheduled run's
///   input is each parameter's `Default`, so every parameter type must implement `Default`.
///   With a schedule only:
///   - `timezone = "Europe/Berlin"`: the IANA zone the expression is read in (default `"UTC"`);
///   - `catch_up = "latest"`: ticks missed while no worker ran: `"skip"`, `"latest"` (the
///     default: only the most recent one runs) or `"all"`;
///   - `overlap = "skip"`: a tick while the previous run has not finished: `"skip"` (the
///     default), `"buffer_one"`, `"buffer_all"` or `"allow"`.
///
/// ```ignore
/// #[flow::workflow(schedule = "0 30 7 * * MON-FRI", timezone = "Europe/Berlin", max_duration = "1h")]
/// async fn morning_report(options: ReportOptions) -> Result<(), flow::Failure> {
///     // `options` is `ReportOptions::default()` in a scheduled run.
///     Ok(())
/// }
/// ```
#[proc_macro_attribute]
pub fn workflow(args: TokenStream, item: TokenStream) -> TokenStream {
    workflow::expand(args.into(), item.into()).into()
}

/// Turns `async fn main()` or `async fn main(settings: S)` into the program's `main`: it parses
/// the command line, loads and validates the settings `S`, sets up logging, runs the body as the
/// app's setup hook and then the chosen subcommand.
///
/// The body returns nothing or `Result<(), E>`; an `Err` stops the program. The settings type
/// derives `serde::Serialize`, `serde::Deserialize` and `garde::Validate`. The one option,
/// `env_prefix = "SYNC_"`, names the prefix of the app's environment variables.
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    entry::expand(args.into(), item.into()).into()
}

/// Implements `Classify` for an error enum or struct from `#[flow(...)]` attributes: variants
/// marked `#[flow(transient)]` are retried, everything unmarked is permanent, and
/// `#[flow(transparent)]` delegates to the single field's own classification.
#[proc_macro_derive(Classify, attributes(flow))]
pub fn derive_classify(item: TokenStream) -> TokenStream {
    classify::expand(item.into()).into()
}

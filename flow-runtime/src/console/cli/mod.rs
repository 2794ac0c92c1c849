//! The generated `main` and the operator console: argument parsing, settings, logging and every
//! subcommand. `#[flow::main]` expands to one call of [`main_entry`]; everything else lives here
//! so that macro output stays small. This module owns the process's exit codes.

// Every line the console prints goes through `output`, which treats a closed pipe (`| head`)
// as the end of the output instead of panicking as std's macros do. Shadowing the macros here,
// before the modules below, covers all of them, including code written later.
macro_rules! println {
    () => { $crate::console::cli::output::line(format_args!("")) };
    ($($arg:tt)*) => { $crate::console::cli::output::line(format_args!($($arg)*)) };
}
macro_rules! eprintln {
    ($($arg:tt)*) => { $crate::console::cli::output::error_line(format_args!($($arg)*)) };
}

mod alerts;
mod args;
mod commands;
mod output;
mod progress;
mod prune;
mod queue;
mod runbook;
mod schedules;
mod signals;
mod stats;
mod web;

use crate::console::settings::{SettingProblem, SettingsSource};
use crate::engine::state::AppState;
use args::{Cli, Command};
use clap::{CommandFactory, FromArgMatches};
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

/// What the macro knows about the binary.
#[derive(Clone, Copy, Debug)]
pub struct AppInfo {
    /// The binary's name (`CARGO_BIN_NAME`).
    pub name: &'static str,
    /// The package version (`CARGO_PKG_VERSION`).
    pub version: &'static str,
    /// The prefix of the app's own environment variables (`SYNC_`), if given; otherwise the
    /// binary name in upper case followed by `_`.
    pub env_prefix: Option<&'static str>,
    /// The doc comment on `main`, shown at the top of `--help`.
    pub doc: &'static str,
}

impl AppInfo {
    fn env_prefix(&self) -> String {
        match self.env_prefix {
            Some(prefix) => prefix.to_owned(),
            None => format!("{}_", self.name.to_uppercase().replace('-', "_")),
        }
    }
}

/// Settings of an app without settings of its own.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize, garde::Validate)]
pub struct NoSettings {}

/// What `main`'s body may return: nothing, app state, or a `Result` of either whose error stops
/// the process.
pub trait SetupOutcome {
    /// The app state to register, or `Err(message)` when setup failed.
    fn into_result(self) -> Result<AppState, String>;
}

impl SetupOutcome for () {
    fn into_result(self) -> Result<AppState, String> {
        Ok(AppState::new())
    }
}

impl SetupOutcome for AppState {
    fn into_result(self) -> Result<AppState, String> {
        Ok(self)
    }
}

impl<T: SetupOutcome, E: std::fmt::Display> SetupOutcome for Result<T, E> {
    fn into_result(self) -> Result<AppState, String> {
        self.map_err(|e| e.to_string())?.into_result()
    }
}

/// The app state that the setup hook returned. The generated `main` runs the hook once per
/// process, before the one command; every `Flow` that command opens registers this state.
static SETUP_STATE: std::sync::OnceLock<AppState> = std::sync::OnceLock::new();

fn setup_state() -> AppState {
    SETUP_STATE.get().cloned().unwrap_or_default()
}

/// Bound for the app's settings type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be used as the settings of `#[flow::main]`",
    label = "settings must be loadable, printable and validated",
    note = "derive `serde::Deserialize`, `serde::Serialize` and `garde::Validate` for it; use `flow::Secret` for secrets"
)]
pub trait AppSettings:
    serde::de::DeserializeOwned + serde::Serialize + garde::Validate<Context = ()> + Send + 'static
{
}
impl<T> AppSettings for T where
    T: serde::de::DeserializeOwned
        + serde::Serialize
        + garde::Validate<Context = ()>
        + Send
        + 'static
{
}

/// Exit codes, as documented in `--help` and the runbook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    Success = 0,
    WorkflowFailed = 1,
    Usage = 2,
    Config = 3,
    NeedsAttention = 4,
    Store = 5,
    /// Stopped by SIGINT (128 + 2), the run left resumable.
    Interrupted = 130,
    /// Stopped by SIGTERM (128 + 15), the run left resumable.
    Terminated = 143,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

fn command(app: &AppInfo) -> clap::Command {
    let about = app.doc.lines().next().unwrap_or("").trim().to_owned();
    Cli::command()
        .name(app.name)
        .bin_name(app.name)
        .version(app.version)
        .about(about)
        .long_about(app.doc.trim().to_owned())
        .after_help(args::EXIT_CODES)
        .mut_subcommand("schedules", |s| args::name_examples(s, app.name))
}

fn print_problems(problems: &[SettingProblem]) {
    eprintln!(
        "error: invalid settings ({} problem{}); nothing was run:",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for problem in problems {
        eprintln!("  - {problem}");
    }
}

/// The whole program behind `#[flow::main]`: parse arguments, load and validate settings, set up
/// logging, build the runtime, run `setup` with the settings, then run the chosen subcommand.
pub fn main_entry<S, F, Fut>(app: AppInfo, setup: F) -> ExitCode
where
    S: AppSettings,
    F: FnOnce(S) -> Fut,
    Fut: Future,
    Fut::Output: SetupOutcome,
{
    let matches = match command(&app).try_get_matches() {
        Ok(matches) => matches,
        Err(e) if e.use_stderr() && args_have_control_characters() => {
            // clap echoes the offending argument as it is: parse the arguments again with
            // their control characters escaped, so the message shows them visibly
            let escaped = std::env::args_os().map(|a| output::escape(&a.to_string_lossy()));
            let shown = match command(&app).try_get_matches_from(escaped) {
                Err(again) if again.kind() == e.kind() => again,
                _ => e,
            };
            eprintln!(
                "{}",
                output::escape_keeping_lines(&shown.render().to_string())
            );
            return ExitCode::from(shown.exit_code().clamp(0, 255) as u8);
        }
        Err(e) => e.exit(),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let Some(chosen) = &cli.command else {
        let _ = command(&app).print_help();
        return Exit::Success.into();
    };
    if let Command::Completions { shell } = chosen {
        let shell = *shell;
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut command(&app), app.name, &mut script);
        output::raw(&script);
        return Exit::Success.into();
    }

    let (config, required) = match &cli.config {
        Some(path) => (path.clone(), true),
        None => (PathBuf::from("flow.toml"), false),
    };
    let mut overrides = Vec::new();
    if let Some(store) = &cli.store {
        overrides.push(("flow.store", serde_json::json!(store)));
    }
    if let Some(format) = cli.log_format {
        overrides.push(("flow.log_format", serde_json::json!(format)));
    }
    let loaded = SettingsSource::new(&config, required, &app.env_prefix(), &overrides)
        .and_then(SettingsSource::load::<S>);
    let mut loaded = match loaded {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                eprintln!("warning: {warning}");
            }
            loaded
        }
        Err(problems) => {
            print_problems(&problems);
            return Exit::Config.into();
        }
    };
    // Runs record the package version unless settings name another
    if loaded.flow.app_version.is_none() {
        loaded.flow.app_version = Some(app.version.to_owned());
    }
    // Schedules name workflows and queues: checked against this binary before any command,
    // so that a typo stops a deploy instead of a worker that never fires
    let problems =
        crate::console::schedule_settings::check(&loaded.flow, &|key| loaded.source_of(key));
    if !problems.is_empty() {
        print_problems(&problems);
        return Exit::Config.into();
    }
    let verbosity = cli.verbose as i8 - cli.quiet as i8;
    #[cfg(not(feature = "otel"))]
    if loaded.flow.otel.endpoint.is_some() {
        eprintln!(
            "warning: [flow.otel] endpoint is set, but this binary was built without the `otel` feature, so no traces are exported; build it with `flow-runtime = {{ version = \"...\", features = [\"otel\"] }}` or remove [flow.otel] endpoint (FLOW_OTEL__ENDPOINT)"
        );
    }
    let export = crate::console::telemetry::Export {
        otel: &loaded.flow.otel,
        service: app.name,
    };
    let logs = crate::console::telemetry::init(
        loaded.flow.log_format,
        &loaded.flow.log_level,
        verbosity,
        export,
    );
    if let Err(message) = logs {
        eprintln!("error: invalid settings: flow.otel: {message}; nothing was run");
        return Exit::Config.into();
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return Exit::Store.into();
        }
    };
    let exit = runtime.block_on(async move {
        if let Some(Command::CheckConfig) = cli.command {
            return commands::check_config(&loaded, cli.output);
        }
        let flow_settings = loaded.flow.clone();
        let app_settings = loaded.app;
        // The setup hook prepares what workflow code needs (clients, connections): only the
        // commands that execute workflows run it, so `runs list` stays quick and side-effect
        // free.
        if cli
            .command
            .as_ref()
            .is_some_and(Command::executes_workflows)
        {
            signals::install(flow_settings.shutdown_grace());
            match setup(app_settings).await.into_result() {
                Ok(state) => {
                    let _ = SETUP_STATE.set(state);
                }
                Err(message) => {
                    eprintln!("error: setup failed: {message}");
                    return Exit::Config;
                }
            }
        }
        commands::dispatch(&app, &flow_settings, cli).await
    });
    // The spans of this process reach the collector before it exits
    crate::console::telemetry::shutdown();
    drop(runtime);
    if output::failed() && exit == Exit::Success {
        return Exit::WorkflowFailed.into();
    }
    exit.into()
}

fn args_have_control_characters() -> bool {
    std::env::args_os().any(|arg| {
        arg.to_string_lossy()
            .chars()
            .any(|c| output::escape(&c.to_string()) != c.to_string())
    })
}

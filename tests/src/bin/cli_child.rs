//! A `#[flow::main]` binary for the CLI tests of the tests crate: one workflow whose step uses
//! the named `transient` policy, so a settings override of that policy can be observed.

use flow_runtime as flow;
use std::path::PathBuf;
use std::sync::OnceLock;

static LOG: OnceLock<PathBuf> = OnceLock::new();

/// Settings of the test binary (`CLI_CHILD_*`).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize, garde::Validate)]
#[serde(default)]
struct Settings {
    /// Where each attempt is recorded.
    #[garde(skip)]
    log: PathBuf,
}

/// Always fails transiently; each attempt appends a line.
#[flow::step(idempotent, retry = "transient")]
async fn always_busy() -> Result<(), flow::Failure> {
    if let Some(log) = LOG.get() {
        let attempt = flow::attempt().unwrap_or(0);
        flow_tests::append_line(log, &format!("attempt {attempt}"))
            .map_err(flow::Failure::permanent)?;
    }
    Err(flow::Failure::transient(std::io::Error::other("busy")))
}

/// Calls a step that never succeeds.
#[flow::workflow]
async fn busy() -> Result<(), flow::Failure> {
    always_busy().await
}

/// Test binary for the operator CLI.
#[flow::main]
async fn main(settings: Settings) {
    let _ = LOG.set(settings.log);
}

//! A `#[flow::main]` binary for the schedule tests (`tests/tests/schedules_cli.rs`): schedules
//! are declared in the test's `flow.toml` (and one on a workflow); the workflows' steps append a line per execution to
//! the file named by `SCHEDULE_LOG` (`ran run=ID tick=T pid=P ms=NOW`), so a test can count what
//! ran, in which process and when.

use flow_runtime as flow;
use flow_tests::append_line;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

static LOG: OnceLock<PathBuf> = OnceLock::new();

/// Settings of the test binary (`SCHEDULE_*`).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize, garde::Validate)]
#[serde(default)]
struct Settings {
    /// Where executions are recorded.
    #[garde(skip)]
    log: PathBuf,
}

/// Records one execution of the run it is called in, with its tick.
#[flow::step(idempotent, retry = "none")]
async fn record(what: String) -> Result<(), flow::Failure> {
    let path = LOG
        .get()
        .ok_or_else(|| flow::Failure::permanent("no SCHEDULE_LOG"))?;
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    append_line(
        path,
        &format!(
            "{what} run={} tick={} pid={} ms={ms}",
            flow::run_id().map(|r| r.to_string()).unwrap_or_default(),
            flow::tick().map(|t| t.rfc3339()).unwrap_or_default(),
            std::process::id(),
        ),
    )
    .map_err(flow::Failure::permanent)
}

/// A scheduled job without input.
#[flow::workflow]
async fn tick_job() -> Result<(), flow::Failure> {
    record("ran".into()).await
}

/// A scheduled job whose input the settings give.
#[flow::workflow]
async fn report(day: String) -> Result<String, flow::Failure> {
    record(format!("report-{day}")).await?;
    Ok(day)
}

/// Declared in code; fires only on 29 February (at 04:00 in Berlin), so the tests meet it in
/// lists, the runbook and settings overrides, never as a tick.
#[flow::workflow(
    schedule = "0 4 29 2 *",
    timezone = "Europe/Berlin",
    overlap = "buffer_one"
)]
async fn leap_day() -> Result<(), flow::Failure> {
    record("leap".into()).await
}

/// Test binary for the schedule commands.
#[flow::main(env_prefix = "SCHEDULE_")]
async fn main(settings: Settings) {
    let _ = LOG.set(settings.log);
}

//! A `#[flow::main]` binary for the worker tests (`tests/tests/worker.rs`): its steps append
//! `start`/`end` lines with the run, the step, the pid and the time in ms to the file named by
//! `WORKER_LOG`, so a test can check what ran, how often, in which process and what overlapped.

use flow_runtime as flow;
use flow_tests::append_line;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

static LOG: OnceLock<PathBuf> = OnceLock::new();

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

fn log(line: &str) -> Result<(), flow::Failure> {
    let path = LOG
        .get()
        .ok_or_else(|| flow::Failure::permanent("no WORKER_LOG"))?;
    append_line(
        path,
        &format!(
            "{line} run={} pid={} ms={}",
            flow::run_id().map(|r| r.to_string()).unwrap_or_default(),
            std::process::id(),
            now_ms()
        ),
    )
    .map_err(flow::Failure::permanent)
}

/// Settings of the test binary (`WORKER_*`).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize, garde::Validate)]
#[serde(default)]
struct Settings {
    /// Where effects are recorded.
    #[garde(skip)]
    log: PathBuf,
}

/// One unit of work: `start`, a pause in which a kill can land, `end`.
#[flow::step(idempotent, retry = "none")]
async fn work(name: String, ms: u64) -> Result<(), flow::Failure> {
    log(&format!("start {name}"))?;
    tokio::time::sleep(Duration::from_millis(ms)).await;
    log(&format!("end {name}"))
}

/// One step.
#[flow::workflow]
async fn job(n: u32, ms: u64) -> Result<u32, flow::Failure> {
    work(format!("job-{n}"), ms).await?;
    Ok(n)
}

/// A step, a durable sleep, a step.
#[flow::workflow]
async fn sleepy(n: u32, sleep_ms: u64) -> Result<u32, flow::Failure> {
    work(format!("sleepy-{n}-a"), 5).await?;
    flow::sleep(Duration::from_millis(sleep_ms)).await;
    work(format!("sleepy-{n}-b"), 5).await?;
    Ok(n)
}

/// Several slow steps, so a kill lands inside the run.
#[flow::workflow]
async fn slow(n: u32, steps: u32, ms: u64) -> Result<u32, flow::Failure> {
    for i in 0..steps {
        work(format!("slow-{n}-{i}"), ms).await?;
    }
    Ok(n)
}

/// Test binary for the worker tests.
#[flow::main(env_prefix = "WORKER_")]
async fn main(settings: Settings) {
    let _ = LOG.set(settings.log);
}

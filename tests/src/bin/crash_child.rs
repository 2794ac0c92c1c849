//! The child process of the crash test (`tests/tests/crash.rs`).
//!
//! It runs one workflow of many steps under a fixed run id. Every step appends a line to an
//! external effect log and fsyncs it *before* flow commits the step's checkpoint, so a SIGKILL
//! can land before the effect, between the effect and the commit, or after the commit. The test
//! kills this process at random moments, restarts it, and checks the log and the store.
//!
//! Usage: crash_child STORE EFFECT_LOG STEPS \[exclusive\]. Exit codes: 0 succeeded (prints the output), 3 the
//! run needs attention, 1 anything else.

use flow_runtime as flow;
use std::io::Write;
use std::process::ExitCode;
use std::sync::OnceLock;

static LOG: OnceLock<std::path::PathBuf> = OnceLock::new();

fn append(line: &str) -> Result<(), flow::Failure> {
    let path = LOG
        .get()
        .ok_or_else(|| flow::Failure::permanent("no effect log"))?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(flow::Failure::permanent)?;
    // One write call for the whole line: a kill between the text and its newline would glue
    // this line to the next life's first one.
    file.write_all(format!("{line}\n").as_bytes())
        .map_err(flow::Failure::permanent)?;
    file.sync_data().map_err(flow::Failure::permanent)
}

/// One side effect, keyed: the line records the key the step was handed.
#[flow::step(idempotency_key = format!("k{i}"), retry = "none")]
async fn effect(i: u32) -> Result<u64, flow::Failure> {
    let key = flow::step_key().unwrap_or_default();
    append(&format!("effect k{i} {key} {}", std::process::id()))?;
    Ok(u64::from(i))
}

/// A side effect that must never happen twice.
#[flow::step(at_most_once)]
async fn audit(i: u32) -> Result<(), flow::Failure> {
    append(&format!("audit a{i} - {}", std::process::id()))?;
    // Widen the window in which a kill leaves the outcome unknown.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    Ok(())
}

#[flow::workflow]
async fn crash_workflow(steps: u32) -> Result<u64, flow::Failure> {
    let mut sum = 0;
    for i in 0..steps {
        sum += effect(i).await?;
        if i % 50 == 25 {
            audit(i).await?;
        }
    }
    Ok(sum)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (store, log, steps, sharing, durability) = match args.as_slice() {
        [_, store, log, steps] => (store, log, steps, flow::Sharing::Shared, None),
        // The exclusive store with strict durability: every checkpoint durable at once
        [_, store, log, steps, mode] if mode == "exclusive" => (
            store,
            log,
            steps,
            flow::Sharing::Exclusive,
            Some(flow::Durability::Strict),
        ),
        // The exclusive store with its checkpoints durable within a window (the default)
        [_, store, log, steps, mode] if mode == "window" => (
            store,
            log,
            steps,
            flow::Sharing::Exclusive,
            Some(flow::Durability::Window(std::time::Duration::from_millis(
                5,
            ))),
        ),
        _ => {
            eprintln!("usage: crash_child STORE EFFECT_LOG STEPS [exclusive|window]");
            return ExitCode::from(2);
        }
    };
    let Ok(steps) = steps.parse::<u32>() else {
        eprintln!("STEPS must be a number");
        return ExitCode::from(2);
    };
    let _ = LOG.set(log.into());
    let mut builder = flow::Flow::builder().sharing(sharing);
    if let Some(durability) = durability {
        builder = builder.durability(durability);
    }
    let flow = match builder.open(store) {
        Ok(flow) => flow,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let options = flow::RunOptions::new().id("crash-run");
    match crash_workflow::start_with(&flow, options, steps).await {
        Ok(handle) => flow_tests::report(handle.outcome().await),
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

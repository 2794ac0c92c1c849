//! Child process for the behaviour tests that need a real crash: each scenario runs one
//! workflow under a fixed run id, writing its effects to a log the test reads.
//!
//! Usage: scenario_child SCENARIO STORE LOG. Exit codes: 0 succeeded, 3 needs attention,
//! 1 anything else.

use flow_runtime as flow;
use flow_tests::append_line;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::Duration;

static LOG: OnceLock<PathBuf> = OnceLock::new();

fn log(line: &str) -> Result<(), flow::Failure> {
    let path = LOG
        .get()
        .ok_or_else(|| flow::Failure::permanent("no log"))?;
    append_line(path, line).map_err(flow::Failure::permanent)
}

/// Fails transiently on attempts 1 and 2 with a 1.5 s backoff, succeeds on attempt 3.
#[flow::step(
    idempotent,
    retry(attempts = 5, initial = "1500ms", max = "1500ms", jitter = false)
)]
async fn slow_retry() -> Result<u32, flow::Failure> {
    let attempt = flow::attempt().unwrap_or(0);
    log(&format!("attempt {attempt} {}", std::process::id()))?;
    if attempt < 3 {
        return Err(flow::Failure::transient(std::io::Error::other("busy")));
    }
    Ok(attempt)
}

#[flow::workflow]
async fn backoff_flow() -> Result<u32, flow::Failure> {
    slow_retry().await
}

/// Sends a payment; must never run twice. Slow, so a kill can land inside it.
#[flow::step(at_most_once)]
async fn send_payment(cents: u64) -> Result<String, flow::Failure> {
    log(&format!("payment {cents} {}", std::process::id()))?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    Ok(format!("paid {cents}"))
}

#[flow::workflow]
async fn payment_flow() -> Result<String, flow::Failure> {
    send_payment(500).await
}

#[flow::step(idempotent, retry = "none")]
async fn after_sleep() -> Result<(), flow::Failure> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    log(&format!("woke {now} {}", std::process::id()))
}

#[flow::workflow]
async fn sleep_flow() -> Result<u64, flow::Failure> {
    let start = flow::now().await;
    flow::sleep(Duration::from_millis(2500)).await;
    after_sleep().await?;
    Ok(start
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0))
}

/// One keyed effect per unit, fsynced, then the unit's checkpoint.
#[flow::step(idempotency_key = format!("u{i}"), retry = "none")]
async fn unit_effect(i: u32) -> Result<(), flow::Failure> {
    let key = flow::step_key().unwrap_or_default();
    log(&format!("u{i} {key} {}", std::process::id()))
}

/// 10,000 units, 16 at a time.
#[flow::workflow]
async fn fan_out() -> Result<u64, flow::Failure> {
    let report = flow::units(0..10_000u32, |i| format!("u{i}"))
        .concurrency(16)
        .run(|i| async move { unit_effect(i).await })
        .await?;
    Ok(report.succeeded)
}

async fn finish<T>(
    started: Result<flow::RunHandle<T, flow::Failure>, flow::Error>,
) -> Result<T, flow::RunError<flow::Failure>> {
    started?.outcome().await
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, scenario, store, log_path] = args.as_slice() else {
        eprintln!("usage: scenario_child SCENARIO STORE LOG");
        return ExitCode::from(2);
    };
    let _ = LOG.set(log_path.into());
    let flow = match flow::Flow::open(store) {
        Ok(flow) => flow,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let id = || flow::RunOptions::new().id(scenario.as_str());
    match scenario.as_str() {
        "backoff" => flow_tests::report(finish(backoff_flow::start_with(&flow, id()).await).await),
        "payment" => flow_tests::report(finish(payment_flow::start_with(&flow, id()).await).await),
        "sleep" => flow_tests::report(finish(sleep_flow::start_with(&flow, id()).await).await),
        "units" => flow_tests::report(finish(fan_out::start_with(&flow, id()).await).await),
        other => {
            eprintln!("unknown scenario {other}");
            ExitCode::from(2)
        }
    }
}

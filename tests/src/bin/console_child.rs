//! A `#[flow::main]` binary for the web console tests (`tests/tests/web_console.rs`): a run
//! that fails with an error built from its input (the XSS check), a slow run to watch and
//! cancel, a fan-out whose units fail where their number is a multiple of `fail_every`, and a
//! workflow that alerts after two failed runs in a row.

use flow_runtime as flow;
use std::time::Duration;

/// Fails at once with an error that quotes `text`.
#[flow::step(idempotent, retry = "none")]
async fn explode(text: String) -> Result<(), flow::Failure> {
    Err(flow::Failure::permanent(format!("exploded on {text}")))
}

/// One step that fails with `text` in its error.
#[flow::workflow]
async fn boom(text: String) -> Result<(), flow::Failure> {
    explode(text).await
}

/// Waits `ms`.
#[flow::step(idempotent, retry = "none")]
async fn pause(i: u32, ms: u64) -> Result<u32, flow::Failure> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(i)
}

/// `steps` steps of `ms` each.
#[flow::workflow]
async fn slow(steps: u32, ms: u64) -> Result<u32, flow::Failure> {
    for i in 0..steps {
        pause(i, ms).await?;
    }
    Ok(steps)
}

/// Fails when told to; alerts after two failed runs in a row.
#[flow::workflow(alert_after = 2)]
async fn doomed(fail: bool) -> Result<(), flow::Failure> {
    if fail {
        return explode("the upstream".into()).await;
    }
    Ok(())
}

/// `n` instant steps of one name, outside units.
#[flow::workflow]
async fn many(n: u32) -> Result<u32, flow::Failure> {
    for i in 0..n {
        pause(i, 0).await?;
    }
    Ok(n)
}

static TRIES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Fails transiently on its first two attempts.
#[flow::step(idempotent, retry(attempts = 5, initial = "10ms"))]
async fn flaky() -> Result<(), flow::Failure> {
    if TRIES.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
        return Err(flow::Failure::transient("not yet"));
    }
    Ok(())
}

/// One step that succeeds on its third attempt.
#[flow::workflow]
async fn retried() -> Result<(), flow::Failure> {
    flaky().await
}

/// Crashes the process while the file `crash` exists, as a kill during the call would.
#[flow::step(at_most_once)]
async fn charge(crash: String) -> Result<u32, flow::Failure> {
    if std::path::Path::new(&crash).exists() {
        std::process::abort();
    }
    Ok(7)
}

/// One `at_most_once` step: a crash during it leaves the run needing attention.
#[flow::workflow]
async fn pay(crash: String) -> Result<u32, flow::Failure> {
    charge(crash).await
}

/// One unit's work: fails when `i` is a multiple of `fail_every` (0: never).
#[flow::step(idempotent, retry = "none")]
async fn item(i: u64, fail_every: u64) -> Result<u64, flow::Failure> {
    if fail_every > 0 && i.is_multiple_of(fail_every) {
        return Err(flow::Failure::permanent(format!("item {i} refused")));
    }
    Ok(i)
}

/// `n` units, each one `item` step.
#[flow::workflow]
async fn fanout(n: u64, fail_every: u64) -> Result<u64, flow::Failure> {
    let report = flow::units(0..n, |i| format!("u{i}"))
        .concurrency(64)
        .run(|i| async move { item(i, fail_every).await })
        .await
        .map_err(flow::Failure::permanent)?;
    if report.failed > 0 {
        return Err(flow::Failure::permanent(format!(
            "{} units failed",
            report.failed
        )));
    }
    Ok(report.succeeded)
}

/// Test binary for the web console tests.
#[flow::main]
async fn main() {}

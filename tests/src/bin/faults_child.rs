//! A `#[flow::main]` binary for the fault tests (`tests/tests/faults_*.rs`): workflows whose
//! steps append their effects, with this process's pid, to the log file named by
//! `FAULTS_LOG`, so a test can tell which process executed what and how often.

use flow_runtime as flow;
use flow_tests::append_line;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

static LOG: OnceLock<PathBuf> = OnceLock::new();

fn effect(line: &str) -> Result<(), flow::Failure> {
    let path = LOG
        .get()
        .ok_or_else(|| flow::Failure::permanent("no FAULTS_LOG"))?;
    append_line(path, &format!("{line} pid={}", std::process::id()))
        .map_err(flow::Failure::permanent)
}

/// Settings of the test binary (`FAULTS_*`).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize, garde::Validate)]
#[serde(default)]
struct Settings {
    /// Where effects are recorded.
    #[garde(skip)]
    log: PathBuf,
}

/// Input of `steps`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct StepsInput {
    n: u32,
    delay_ms: u64,
    /// This step fails permanently while the file `<log>.fail-<n>` does not exist (it is
    /// created by the failure, so a retry succeeds).
    fail_once_at: Option<u32>,
}

/// One unit of work: the effect, then a pause in which a kill or a signal can land.
#[flow::step(idempotent, retry = "none")]
async fn work(i: u32, delay_ms: u64, fail_once: bool) -> Result<u32, flow::Failure> {
    effect(&format!("step {i}"))?;
    if fail_once {
        let flag = LOG
            .get()
            .map(|l| l.with_extension(format!("fail-{i}")))
            .ok_or_else(|| flow::Failure::permanent("no FAULTS_LOG"))?;
        if !flag.exists() {
            std::fs::write(&flag, b"").map_err(flow::Failure::permanent)?;
            return Err(flow::Failure::permanent(format!("step {i} fails once")));
        }
    }
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    Ok(i)
}

/// Tells someone the run is done; must never be sent twice.
#[flow::step(at_most_once)]
async fn notify(total: u32) -> Result<(), flow::Failure> {
    effect(&format!("notify {total}"))
}

/// `n` steps one after another, then a notification.
#[flow::workflow]
async fn steps(input: StepsInput) -> Result<u32, flow::Failure> {
    let mut total = 0;
    for i in 0..input.n {
        total += work(i, input.delay_ms, input.fail_once_at == Some(i)).await?;
    }
    notify(total).await?;
    Ok(total)
}

/// Input of `fanout`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct FanoutInput {
    n: u32,
    delay_ms: u64,
}

/// Pushes one item, keyed like its unit; the effect happens before the pause.
#[flow::step(idempotency_key = format!("item-{i}"), retry = "none")]
async fn push(i: u32, delay_ms: u64) -> Result<(), flow::Failure> {
    let key = flow::step_key().unwrap_or_default();
    effect(&format!("push {i} key={key}"))?;
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    Ok(())
}

/// Invoices one item under its own key.
#[flow::step(idempotency_key = format!("inv-{i}"), retry = "none")]
async fn invoice(i: u32) -> Result<(), flow::Failure> {
    let key = flow::step_key().unwrap_or_default();
    effect(&format!("invoice {i} key={key}"))
}

/// One unit per item, eight at a time.
#[flow::workflow]
async fn fanout(input: FanoutInput) -> Result<u64, flow::Failure> {
    let report = flow::units(0..input.n, |i| format!("item-{i}"))
        .concurrency(8)
        .run(|i| async move {
            push(i, input.delay_ms).await?;
            invoice(i).await
        })
        .await
        .map_err(flow::Failure::permanent)?;
    Ok(report.succeeded)
}

/// Why a charge failed.
#[derive(Debug, thiserror::Error, flow::Classify, serde::Serialize, serde::Deserialize)]
enum ChargeError {
    /// The card was declined: permanent, the workflow handles it.
    #[error("card of invoice {0} declined")]
    Declined(u32),
}

/// Charges one invoice; every third card is declined.
#[flow::step(idempotency_key = format!("charge-{i}"), retry = "transient")]
async fn charge(i: u32) -> Result<u32, ChargeError> {
    effect(&format!("charge {i}")).map_err(|_| ChargeError::Declined(u32::MAX))?;
    if i.is_multiple_of(3) {
        return Err(ChargeError::Declined(i));
    }
    Ok(i)
}

/// Stops the process the first time it runs (a crash after the charges).
#[flow::step(idempotent, retry = "none")]
async fn crash_once() -> Result<(), flow::Failure> {
    let flag = LOG
        .get()
        .map(|l| l.with_extension("crashed"))
        .ok_or_else(|| flow::Failure::permanent("no FAULTS_LOG"))?;
    if !flag.exists() {
        std::fs::write(&flag, b"").map_err(flow::Failure::permanent)?;
        effect("crash")?;
        std::process::exit(9);
    }
    Ok(())
}

/// Charges `n` invoices, handling declines, then crashes once.
#[flow::workflow]
async fn billing(n: u32) -> Result<Vec<u32>, flow::Failure> {
    let mut declined = Vec::new();
    for i in 0..n {
        match charge(i).await {
            Ok(_) => {}
            Err(ChargeError::Declined(i)) => declined.push(i),
        }
    }
    crash_once().await?;
    Ok(declined)
}

/// Fails transiently on its first attempt, with a 3 s backoff.
#[flow::step(
    idempotent,
    retry(attempts = 3, initial = "3s", max = "3s", jitter = false)
)]
async fn slow_backoff() -> Result<u32, flow::Failure> {
    let attempt = flow::attempt().unwrap_or(0);
    effect(&format!("attempt {attempt}"))?;
    if attempt == 1 {
        return Err(flow::Failure::transient(std::io::Error::other("busy")));
    }
    Ok(attempt)
}

/// One step that backs off for 3 s after its first attempt.
#[flow::workflow]
async fn backoff() -> Result<u32, flow::Failure> {
    slow_backoff().await
}

/// Sleeps durably for 3 s.
#[flow::workflow]
async fn nap() -> Result<(), flow::Failure> {
    flow::sleep(Duration::from_secs(3)).await;
    effect("woke")
}

/// Pays a customer; slow, so a kill lands inside it.
#[flow::step(at_most_once)]
async fn pay(customer: String, cents: u64) -> Result<String, flow::Failure> {
    effect(&format!("pay {customer} {cents}"))?;
    tokio::time::sleep(Duration::from_secs(30)).await;
    Ok(format!("paid {cents}"))
}

/// One payment.
#[flow::workflow]
async fn payment(customer: String) -> Result<String, flow::Failure> {
    pay(customer, 500).await
}

/// Test binary for the fault tests.
#[flow::main(env_prefix = "FAULTS_")]
async fn main(settings: Settings) {
    let _ = LOG.set(settings.log);
}

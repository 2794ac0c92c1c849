//! A `#[flow::main]` binary for the observability tests: log lines inside steps (for the JSON
//! log and the progress display), an `at_most_once` step whose failure the workflow ignores,
//! and a workflow whose steps take as long as its input says and fail as it says (for `stats`).

use flow_runtime as flow;
use std::time::Duration;

/// Settings of the test binary (none of its own).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize, garde::Validate)]
#[serde(default)]
struct Settings {}

/// Logs a warning and takes `pause_ms`.
#[flow::step(idempotent)]
async fn say_hello(i: u32, pause_ms: u64) -> Result<u32, flow::Failure> {
    tracing::warn!(i, "hello from step {i}");
    tokio::time::sleep(Duration::from_millis(pause_ms)).await;
    Ok(i)
}

/// `steps` steps, each logging a warning.
#[flow::workflow]
async fn chatty(steps: u32, pause_ms: u64) -> Result<u32, flow::Failure> {
    let mut sum = 0;
    for i in 0..steps {
        sum += say_hello(i, pause_ms).await?;
    }
    Ok(sum)
}

/// A notification that never gets through.
#[flow::step(at_most_once)]
async fn send_notice(text: String) -> Result<(), flow::Failure> {
    Err(flow::Failure::permanent(std::io::Error::other(format!(
        "the mail server refused `{text}`"
    ))))
}

/// Sends a notice and carries on whether or not it got through.
#[flow::workflow]
async fn notify() -> Result<(), flow::Failure> {
    let _ = send_notice("done".into()).await;
    Ok(())
}

/// What one `report` run does.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct ReportInput {
    /// How long `fetch` takes.
    fetch_ms: u64,
    /// How long `render` takes.
    render_ms: u64,
    /// `render` fails transiently this many times first (retried, 1 ms apart).
    render_flaky: u32,
    /// `render` fails for good: `"permanent"` or `"transient"` (every attempt).
    render_fails: Option<String>,
}

/// Takes `ms`.
#[flow::step(read_only)]
async fn fetch(ms: u64) -> Result<u64, flow::Failure> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(ms)
}

/// Takes `ms`, failing as told.
#[flow::step(idempotent, retry(attempts = 3, initial = "1ms", max = "2ms"))]
async fn render(ms: u64, flaky: u32, fails: Option<String>) -> Result<u64, flow::Failure> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    let attempt = flow::attempt().unwrap_or(1);
    match fails.as_deref() {
        Some("permanent") => Err(flow::Failure::permanent(std::io::Error::other("bad data"))),
        Some(_) => Err(flow::Failure::transient(std::io::Error::other("busy"))),
        None if attempt <= flaky => Err(flow::Failure::transient(std::io::Error::other("busy"))),
        None => Ok(ms),
    }
}

/// Fetches, then renders.
#[flow::workflow]
async fn report(input: ReportInput) -> Result<u64, flow::Failure> {
    let fetched = fetch(input.fetch_ms).await?;
    let rendered = render(input.render_ms, input.render_flaky, input.render_fails).await?;
    Ok(fetched + rendered)
}

/// Fails for good, every time.
#[flow::step(idempotent)]
async fn break_down() -> Result<(), flow::Failure> {
    Err(flow::Failure::permanent(std::io::Error::other("broken")))
}

/// Fails every run; alerts on the first failure (for the metrics of alerts).
#[flow::workflow(alert_after = 1)]
async fn fragile() -> Result<(), flow::Failure> {
    break_down().await
}

/// Deploys to one host: slow (`slow_ms`) when the host's rollout bucket is at or past
/// `slow_from` percent, quick (2 ms) otherwise.
#[flow::step(idempotent)]
async fn deploy(host: String, slow_from: f64, slow_ms: u64) -> Result<(), flow::Failure> {
    let slow = flow::rollout_bucket(&host) as f64 >= slow_from * 100.0;
    tokio::time::sleep(Duration::from_millis(if slow { slow_ms } else { 2 })).await;
    Ok(())
}

/// One unit per host, `host-0` to `host-{hosts - 1}`, each a `deploy` (for `stats --compare`
/// by rollout stage).
#[flow::workflow]
async fn fleet(hosts: u32, slow_from: f64, slow_ms: u64) -> Result<u64, flow::Failure> {
    let report = flow::units(0..hosts, |i| format!("host-{i}"))
        .concurrency(16)
        .run(|i| async move { deploy(format!("host-{i}"), slow_from, slow_ms).await })
        .await
        .map_err(flow::Failure::permanent)?;
    Ok(report.succeeded)
}

/// Test binary for logs, the progress display, `stats` and metrics.
#[flow::main(env_prefix = "OBS_")]
async fn main(_settings: Settings) {}

//! Durations in `#[step]` use the grammar of durations in `flow.toml` (humantime's).
use flow_runtime as flow;

#[derive(Debug, flow::Classify)]
enum SyncError {
    #[flow(transient, retry_after = "2min")]
    Unavailable,
    #[flow(transient)]
    Timeout(flow::StepTimeout),
}

impl std::fmt::Display for SyncError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the service is unavailable")
    }
}

impl From<flow::StepTimeout> for SyncError {
    fn from(timeout: flow::StepTimeout) -> Self {
        SyncError::Timeout(timeout)
    }
}

#[flow::step(idempotent, timeout = "2min", retry(attempts = 3, initial = "1.5s", max = "1h 30m"))]
async fn slow_sync() -> Result<(), SyncError> {
    Ok(())
}

fn main() {
    let _ = slow_sync();
}

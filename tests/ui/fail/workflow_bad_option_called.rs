//! A workflow with a mistake in its options is still callable: the option's error is the one
//! message, not also "undeclared type" at every call.
use flow_runtime as flow;

#[flow::workflow(alert_after = "three")]
async fn nightly(count: u32) -> Result<u32, flow::Failure> {
    Ok(count)
}

async fn start_it(flow: &flow::Flow) -> Result<u32, flow::Error> {
    let handle = nightly::start(flow, 3).await?;
    let _ = nightly::NAME;
    Ok(handle.outcome().await.unwrap_or(0))
}

fn main() {
    let _ = start_it;
}

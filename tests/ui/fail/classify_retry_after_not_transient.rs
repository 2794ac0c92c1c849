use flow_runtime as flow;
use std::time::Duration;

#[derive(Debug, flow::Classify)]
enum PushError {
    #[flow(retry_after = "5s")]
    RateLimited,
    #[flow(permanent)]
    Throttled(#[flow(retry_after)] Duration),
}

fn main() {}

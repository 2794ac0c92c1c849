use flow_runtime as flow;

#[derive(Debug, flow::Classify)]
enum PushError {
    #[flow(transient, retry_after = "5 fortnights")]
    RateLimited,
}

fn main() {}

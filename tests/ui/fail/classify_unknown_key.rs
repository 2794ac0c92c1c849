use flow_runtime as flow;

#[derive(Debug, flow::Classify)]
enum PushError {
    #[flow(transient)]
    Unavailable,
    #[flow(retryable)]
    Busy,
    #[flow(transient, transient)]
    Again,
}

fn main() {}

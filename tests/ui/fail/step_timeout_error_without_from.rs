use flow_runtime as flow;

#[derive(Debug, flow::Classify)]
enum PushError {
    #[flow(transient)]
    Unavailable,
}

impl std::fmt::Display for PushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("unavailable")
    }
}

#[flow::step(idempotent, timeout = "30s")]
async fn push(id: u64) -> Result<(), PushError> {
    let _ = id;
    Err(PushError::Unavailable)
}

fn main() {}

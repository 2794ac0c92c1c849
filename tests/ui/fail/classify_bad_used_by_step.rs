//! A mistake in `#[flow(...)]` is the one message: the type still implements `Classify`, so the
//! retried step that returns it adds no "`Classify` is not implemented" error.
use flow_runtime as flow;

#[derive(Debug, flow::Classify)]
enum PushError {
    #[flow(retryable)]
    Busy,
}

impl std::fmt::Display for PushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the service is busy")
    }
}

#[flow::step(idempotent, retry = "transient")]
async fn push(id: u64) -> Result<(), PushError> {
    let _ = id;
    Ok(())
}

fn main() {
    let _ = push(1);
}

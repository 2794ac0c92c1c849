use flow_runtime as flow;

#[derive(Debug)]
struct PushError;

impl std::fmt::Display for PushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("push failed")
    }
}

#[flow::step(idempotent, retry = "transient")]
async fn push(id: u64) -> Result<(), PushError> {
    let _ = id;
    Ok(())
}

fn main() {}

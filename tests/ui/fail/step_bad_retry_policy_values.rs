use flow_runtime as flow;

#[flow::step(idempotent, retry(attempts = 0, multiplier = 0.5, backoff = "fast"))]
async fn push(id: u64) -> Result<(), flow::Failure> {
    let _ = id;
    Ok(())
}

fn main() {}

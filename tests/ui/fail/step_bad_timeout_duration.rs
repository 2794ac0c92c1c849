use flow_runtime as flow;

#[flow::step(idempotent, timeout = "30 seconds")]
async fn push(id: u64) -> Result<(), flow::Failure> {
    let _ = id;
    Ok(())
}

fn main() {}

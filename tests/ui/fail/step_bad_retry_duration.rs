use flow_runtime as flow;

#[flow::step(idempotent, retry(attempts = 3, initial = "1.5"))]
async fn push(id: u64) -> Result<(), flow::Failure> {
    let _ = id;
    Ok(())
}

fn main() {}

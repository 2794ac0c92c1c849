use flow_runtime as flow;

#[flow::step(idempotent, idempotency_key = id)]
async fn push(id: u64) -> Result<(), flow::Failure> {
    let _ = id;
    Ok(())
}

fn main() {}

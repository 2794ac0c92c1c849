use flow_runtime as flow;

#[flow::step(idempotent = true)]
async fn push(id: u64) -> Result<(), flow::Failure> {
    let _ = id;
    Ok(())
}

fn main() {}

use flow_runtime as flow;

#[flow::step(idempotent, skip())]
async fn push(id: u64) -> Result<(), flow::Failure> {
    let _ = id;
    Ok(())
}

fn main() {}

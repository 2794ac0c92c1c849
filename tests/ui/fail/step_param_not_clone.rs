use flow_runtime as flow;

#[derive(serde::Serialize)]
struct Batch {
    ids: Vec<u64>,
}

#[flow::step(idempotent)]
async fn push(batch: Batch) -> Result<(), flow::Failure> {
    let _ = batch.ids;
    Ok(())
}

fn main() {}

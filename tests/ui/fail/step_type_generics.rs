use flow_runtime as flow;

#[flow::step(idempotent)]
async fn push<T: serde::Serialize + Clone>(record: T) -> Result<(), flow::Failure> {
    let _ = record;
    Ok(())
}

fn main() {}

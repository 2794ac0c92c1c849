use flow_runtime as flow;

#[flow::step(idempotent)]
async fn push(ids: &mut Vec<u64>) -> Result<(), flow::Failure> {
    ids.clear();
    Ok(())
}

fn main() {}

use flow_runtime as flow;

#[flow::step(retry = "transient")]
async fn push(id: u64) -> Result<(), flow::Failure> {
    let _ = id;
    Ok(())
}

fn main() {}

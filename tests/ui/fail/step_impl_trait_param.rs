use flow_runtime as flow;

#[flow::step(idempotent)]
async fn push(id: impl std::fmt::Display) -> Result<(), flow::Failure> {
    let _ = id.to_string();
    Ok(())
}

fn main() {}

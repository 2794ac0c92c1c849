use flow_runtime as flow;

#[flow::step(idempotent)]
async fn push((a, b): (u8, u8)) -> Result<(), flow::Failure> {
    let _ = (a, b);
    Ok(())
}

fn main() {}

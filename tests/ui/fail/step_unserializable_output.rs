use flow_runtime as flow;

#[derive(Default)]
struct Receipt;

#[flow::step(idempotent)]
async fn push(id: u64) -> Result<Receipt, flow::Failure> {
    let _ = id;
    Ok(Receipt)
}

fn main() {}

use flow_runtime as flow;

#[derive(serde::Serialize, serde::Deserialize)]
struct Receipt {
    id: u64,
}

#[flow::step(idempotent)]
async fn push(id: u64) -> Result<Receipt, flow::Failure> {
    Ok(Receipt { id })
}

fn main() {}

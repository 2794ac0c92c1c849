use flow_runtime as flow;

static TENANT: &str = "acme";

#[flow::step(idempotency_key = format!("{}-{}", TENANT.len(), order), retry = "none")]
async fn charge(order_id: u64) -> Result<(), flow::Failure> {
    let _ = order_id;
    Ok(())
}

fn main() {}

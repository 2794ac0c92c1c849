use flow_runtime as flow;

#[derive(Clone)]
struct Api {
    tenant: String,
}

#[flow::step(idempotency_key = format!("{}-{id}", api.tenant), skip(api))]
async fn push(api: &Api, id: u64) -> Result<(), flow::Failure> {
    let _ = (api, id);
    Ok(())
}

fn main() {}

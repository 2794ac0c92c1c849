use flow_runtime as flow;

#[derive(Clone)]
struct Api;

#[flow::step(idempotent, skip(api, api))]
async fn push(api: &Api, id: u64) -> Result<(), flow::Failure> {
    let _ = (api, id);
    Ok(())
}

#[flow::step(idempotent, skip(api), skip(id))]
async fn pull(api: &Api, id: u64) -> Result<(), flow::Failure> {
    let _ = (api, id);
    Ok(())
}

fn main() {}

use flow_runtime as flow;

#[derive(Clone)]
struct Api;

#[flow::step(idempotent, skip = api)]
async fn push(api: &Api, id: u64) -> Result<(), flow::Failure> {
    let _ = (api, id);
    Ok(())
}

fn main() {}

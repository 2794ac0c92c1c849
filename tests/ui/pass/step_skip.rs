//! `skip(...)` parameters need not be serializable, and a skipped `Secret` is allowed.
use flow_runtime as flow;

/// A client: neither `Serialize` nor `Debug`.
#[derive(Clone)]
struct Api {
    token: flow::Secret,
}

#[flow::step(idempotency_key = id, skip(api, token), retry = "none")]
async fn push(api: &Api, token: flow::Secret, id: u64) -> Result<(), flow::Failure> {
    let _ = (api.token.expose(), token.expose(), id);
    Ok(())
}

#[flow::workflow]
async fn nightly(ids: Vec<u64>) -> Result<(), flow::Failure> {
    let api = flow::state::<Api>();
    for id in ids {
        push(&api, api.token.clone(), id).await?;
    }
    Ok(())
}

fn main() {
    let _ = nightly::NAME;
}

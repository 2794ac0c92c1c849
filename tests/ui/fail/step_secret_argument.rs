use flow_runtime as flow;

#[flow::step(idempotent)]
async fn login(user: String, password: flow::Secret) -> Result<(), flow::Failure> {
    let _ = (user, password);
    Ok(())
}

#[flow::step(idempotent)]
async fn rotate(tokens: Vec<flow::Secret>, fallback: Option<&flow::Secret>) -> Result<(), flow::Failure> {
    let _ = (tokens, fallback);
    Ok(())
}

fn main() {}

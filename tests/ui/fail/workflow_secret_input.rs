use flow_runtime as flow;

#[flow::workflow]
async fn nightly(token: flow::Secret, count: u32) -> Result<u32, flow::Failure> {
    let _ = token;
    Ok(count)
}

fn main() {}

//! A workflow whose signature is refused still leaves a type of its name: the call elsewhere
//! adds no "undeclared type" error.
use flow_runtime as flow;

#[flow::workflow]
async fn nightly(count: &u32) -> Result<u32, flow::Failure> {
    Ok(*count)
}

async fn start_it(flow: &flow::Flow) -> Result<(), flow::Error> {
    let _: u32 = nightly::run(flow, 3).await?;
    Ok(())
}

fn main() {
    let _ = start_it;
}

use flow_runtime as flow;

#[flow::workflow(schedule = "0 2 * * *", catch_up = "newest")]
async fn nightly() -> Result<(), flow::Failure> {
    Ok(())
}

fn main() {}

use flow_runtime as flow;

#[flow::workflow(timezone = "Europe/Berlin")]
async fn nightly() -> Result<(), flow::Failure> {
    Ok(())
}

#[flow::workflow(catch_up = "all", overlap = "allow", alert_after = 2)]
async fn hourly() -> Result<(), flow::Failure> {
    Ok(())
}

fn main() {}

use flow_runtime as flow;

#[flow::workflow(alert_after = 0)]
async fn nightly() -> Result<(), flow::Failure> {
    Ok(())
}

#[flow::workflow(alert_after = "three", name = "a", name = "b")]
async fn weekly() -> Result<(), flow::Failure> {
    Ok(())
}

#[flow::workflow(alerts = 3)]
async fn monthly() -> Result<(), flow::Failure> {
    Ok(())
}

fn main() {}

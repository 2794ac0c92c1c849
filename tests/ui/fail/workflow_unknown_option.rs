use flow_runtime as flow;

#[flow::workflow(name = "nightly", retries = 3, alert_after = 2)]
async fn nightly(day: String) -> Result<(), flow::Failure> {
    let _ = day;
    Ok(())
}

fn main() {}

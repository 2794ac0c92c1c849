use flow_runtime as flow;

#[flow::workflow(name = "nightly", alert_after = 2, name = "daily")]
async fn nightly(day: String) -> Result<(), flow::Failure> {
    let _ = day;
    Ok(())
}

fn main() {}

use flow_runtime as flow;

#[flow::workflow(units = true)]
async fn nightly(day: String) -> Result<(), flow::Failure> {
    let _ = day;
    Ok(())
}

fn main() {}

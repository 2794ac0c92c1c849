use flow_runtime as flow;

#[flow::workflow(schedule = "*/5 * * * *", overlap = "queue")]
async fn poll() -> Result<(), flow::Failure> {
    Ok(())
}

fn main() {}

use flow_runtime as flow;

#[flow::workflow(max_duration = "0s")]
async fn nightly() -> Result<(), flow::Failure> {
    Ok(())
}

#[flow::workflow(max_duration = "2 hours and a bit")]
async fn weekly() -> Result<(), flow::Failure> {
    Ok(())
}

#[flow::workflow(max_duration = "2h", max_duration = "3h")]
async fn monthly() -> Result<(), flow::Failure> {
    Ok(())
}

fn main() {}

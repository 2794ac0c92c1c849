use flow_runtime as flow;

#[flow::step(at_most_once, retry = "transient")]
async fn send_email(to: String) -> Result<(), flow::Failure> {
    let _ = to;
    Ok(())
}

fn main() {}

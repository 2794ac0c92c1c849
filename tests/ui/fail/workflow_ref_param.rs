use flow_runtime as flow;

#[flow::workflow]
async fn greet(name: &str) -> Result<(), flow::Failure> {
    let _ = name;
    Ok(())
}

fn main() {}

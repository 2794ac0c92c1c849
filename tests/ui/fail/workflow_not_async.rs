use flow_runtime as flow;

#[flow::workflow]
fn nightly(day: String) -> Result<(), flow::Failure> {
    let _ = day;
    Ok(())
}

fn main() {}

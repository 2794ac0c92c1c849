use flow_runtime as flow;

struct Config {
    verbose: bool,
}

#[flow::workflow]
async fn nightly(config: Config) -> Result<(), flow::Failure> {
    let _ = config.verbose;
    Ok(())
}

fn main() {}

use flow_runtime as flow;

async fn stand_in(id: u64) -> Result<u64, flow::Failure> {
    Ok(id)
}

#[flow::step(read_only, at_most_once, dry_run = stand_in)]
async fn fetch(id: u64) -> Result<u64, flow::Failure> {
    Ok(id)
}

fn main() {}

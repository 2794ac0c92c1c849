use flow_runtime as flow;

#[flow::step(idempotent)]
async fn count(id: u64) -> u64 {
    id + 1
}

fn main() {}

use flow_runtime as flow;

#[flow::step(idempotent)]
async fn push(id: u64) {
    let _ = id;
}

fn main() {}

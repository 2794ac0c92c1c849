use flow_runtime as flow;

#[flow::main(env = "SYNC_")]
async fn main() {}

use flow_runtime as flow;

#[flow::main]
async fn run() {}

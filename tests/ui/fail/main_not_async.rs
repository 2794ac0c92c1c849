use flow_runtime as flow;

#[flow::main]
fn main() {}

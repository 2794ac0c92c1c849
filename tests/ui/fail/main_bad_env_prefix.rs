use flow_runtime as flow;

#[flow::main(env_prefix = "sync")]
async fn main() {}

use flow_runtime as flow;

#[flow::main(env_prefix = "SYNC_", env_prefix = "APP_")]
async fn main() {}

use flow_runtime as flow;

#[flow::main]
async fn main() -> u8 {
    0
}

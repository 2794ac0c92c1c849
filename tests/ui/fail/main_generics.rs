use flow_runtime as flow;

#[flow::main]
async fn main<S>(settings: S) {
    let _ = settings;
}

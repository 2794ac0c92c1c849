use flow_runtime as flow;

#[derive(serde::Serialize, serde::Deserialize, garde::Validate)]
struct Settings {
    #[garde(skip)]
    workers: u32,
}

#[flow::main]
async fn main(Settings { workers }: Settings) {
    let _ = workers;
}

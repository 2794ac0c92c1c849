use flow_runtime as flow;

#[derive(serde::Serialize, serde::Deserialize)]
struct Settings {
    workers: u32,
}

#[flow::main]
async fn main(settings: Settings) {
    let _ = settings.workers;
}

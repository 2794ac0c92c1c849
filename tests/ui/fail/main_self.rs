use flow_runtime as flow;

struct App;

impl App {
    #[flow::main]
    async fn main(&self) {}
}

fn main() {}

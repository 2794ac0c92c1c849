use flow_runtime as flow;

#[derive(Debug, flow::Classify)]
enum PushError {
    #[flow(transparent)]
    Io(std::io::Error, String),
}

fn main() {}

use flow_runtime as flow;

#[flow::workflow]
async fn nightly(day: String) -> Vec<String> {
    vec![day]
}

fn main() {}

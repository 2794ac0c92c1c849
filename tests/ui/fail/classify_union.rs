use flow_runtime as flow;

#[derive(flow::Classify)]
union Bits {
    a: u32,
    b: f32,
}

fn main() {}

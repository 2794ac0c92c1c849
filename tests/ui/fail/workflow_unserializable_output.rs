use flow_runtime as flow;

pub struct Report {
    pub lines: usize,
}

#[flow::workflow]
pub async fn nightly(day: String, verbose: bool) -> Result<Report, flow::Failure> {
    let _ = (day, verbose);
    Ok(Report { lines: 0 })
}

fn main() {}

use flow_runtime as flow;

pub struct Report {
    pub lines: usize,
}

#[flow::workflow]
pub async fn nightly(day: String) -> Result<Report, flow::Failure> {
    let _ = day;
    Ok(Report { lines: 0 })
}

async fn start(flow: &flow::Flow) -> Result<(), Box<dyn std::error::Error>> {
    let report = nightly::run(flow, "monday".into()).await?;
    println!("{}", report.lines);
    let handle = nightly::start(flow, "tuesday".into()).await?;
    let _ = handle.outcome().await;
    Ok(())
}

fn main() {
    let _ = start;
}

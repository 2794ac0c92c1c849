use flow_runtime as flow;

#[derive(serde::Serialize, serde::Deserialize)]
struct Report {
    recipients: Vec<String>,
}

#[flow::workflow(schedule = "0 7 * * MON")]
async fn weekly_report(report: Report) -> Result<(), flow::Failure> {
    let _ = report.recipients;
    Ok(())
}

fn main() {}

use flow_runtime as flow;

// A field missing.
#[flow::workflow(schedule = "0 2 * *")]
async fn nightly() -> Result<(), flow::Failure> {
    Ok(())
}

// An hour out of range.
#[flow::workflow(schedule = "0 25 * * *")]
async fn hourly() -> Result<(), flow::Failure> {
    Ok(())
}

// A misspelt day name.
#[flow::workflow(schedule = "0 9 * * MON-FRY")]
async fn weekdays() -> Result<(), flow::Failure> {
    Ok(())
}

// A date that never comes.
#[flow::workflow(schedule = "0 0 31 2 *")]
async fn leap() -> Result<(), flow::Failure> {
    Ok(())
}

// An unknown shortcut.
#[flow::workflow(schedule = "@dayly")]
async fn daily() -> Result<(), flow::Failure> {
    Ok(())
}

// A year field, which schedules do not take.
#[flow::workflow(schedule = "0 0 9 1 1 * 2030")]
async fn once() -> Result<(), flow::Failure> {
    Ok(())
}

fn main() {}

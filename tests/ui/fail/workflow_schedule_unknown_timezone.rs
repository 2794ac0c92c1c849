use flow_runtime as flow;

// A typo of a zone: the message suggests the zone.
#[flow::workflow(schedule = "0 2 * * *", timezone = "Europe/Berln")]
async fn nightly() -> Result<(), flow::Failure> {
    Ok(())
}

// Nothing close: the message gives examples.
#[flow::workflow(schedule = "0 2 * * *", timezone = "Mars/Olympus_Mons")]
async fn martian() -> Result<(), flow::Failure> {
    Ok(())
}

fn main() {}

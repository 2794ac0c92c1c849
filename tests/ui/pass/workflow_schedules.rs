//! Scheduled workflows with zero, one and two parameters, a seconds field, shortcuts, every
//! schedule option and policy, and `max_duration` with and without a schedule.
use flow_runtime as flow;
use flow::__private::{CatchUp, Overlap};

#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct Window {
    pub days: u32,
}

#[flow::workflow(schedule = "0 2 * * *")]
async fn nightly() -> Result<(), flow::Failure> {
    Ok(())
}

#[flow::workflow(schedule = "*/30 * * * * *", timezone = "Europe/Berlin", catch_up = "skip", overlap = "buffer_one")]
async fn every_half_minute(window: Window) -> Result<u32, flow::Failure> {
    Ok(window.days)
}

#[flow::workflow(
    schedule = "30 0 9 * * MON-FRI",
    timezone = "america/new_york",
    catch_up = "all",
    overlap = "buffer_all",
    max_duration = "1h 30m",
    name = "weekday-report",
    alert_after = 2
)]
pub async fn weekday(window: Window, recipients: Vec<String>) -> Result<(), flow::Failure> {
    let _ = (window, recipients);
    Ok(())
}

#[flow::workflow(schedule = "@hourly", catch_up = "latest", overlap = "allow")]
async fn hourly(label: Option<String>) -> Result<(), flow::Failure> {
    let _ = label;
    Ok(())
}

#[flow::workflow(schedule = "0 0 L * *", overlap = "skip")]
async fn month_end() -> Result<(), flow::Failure> {
    Ok(())
}

// Not scheduled: a parameter without `Default` is fine, and `max_duration` stands alone.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Batch {
    pub ids: Vec<u64>,
}

#[flow::workflow(max_duration = "45min")]
async fn import(batch: Batch) -> Result<usize, flow::Failure> {
    Ok(batch.ids.len())
}

fn main() {
    let schedule = nightly::meta().schedule.expect("scheduled");
    assert_eq!(schedule.cron, "0 2 * * *");
    assert_eq!(schedule.timezone, "UTC");
    assert_eq!(schedule.catch_up, CatchUp::Latest);
    assert_eq!(schedule.overlap, Overlap::Skip);
    assert_eq!((schedule.input)(), Ok(serde_json::Value::Null));
    assert_eq!(nightly::meta().max_duration_ms, None);

    let schedule = every_half_minute::meta().schedule.expect("scheduled");
    assert_eq!(schedule.timezone, "Europe/Berlin");
    assert_eq!((schedule.catch_up, schedule.overlap), (CatchUp::Skip, Overlap::BufferOne));
    assert_eq!((schedule.input)(), Ok(serde_json::json!({"days": 0})));

    let meta = weekday::meta();
    let schedule = meta.schedule.expect("scheduled");
    assert_eq!(schedule.cron, "30 0 9 * * MON-FRI");
    // The zone's canonical name, whatever the case it was written in.
    assert_eq!(schedule.timezone, "America/New_York");
    assert_eq!((schedule.catch_up, schedule.overlap), (CatchUp::All, Overlap::BufferAll));
    assert_eq!(
        (schedule.input)(),
        Ok(serde_json::json!({"window": {"days": 0}, "recipients": []}))
    );
    assert_eq!(meta.max_duration_ms, Some(5_400_000));
    assert_eq!(meta.alert_after, Some(2));

    let schedule = hourly::meta().schedule.expect("scheduled");
    assert_eq!((schedule.catch_up, schedule.overlap), (CatchUp::Latest, Overlap::Allow));
    assert_eq!((schedule.input)(), Ok(serde_json::Value::Null));

    assert_eq!(month_end::meta().schedule.expect("scheduled").overlap, Overlap::Skip);

    assert!(import::meta().schedule.is_none());
    assert_eq!(import::meta().max_duration_ms, Some(2_700_000));
    let _ = import(Batch { ids: vec![] });
}

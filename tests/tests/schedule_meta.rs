//! The compile-time side of schedules and `max_duration`: what `#[workflow(schedule = ...)]`
//! registers (cron as written, the zone's canonical name, the policies, the default input) and
//! that the default input is one the workflow accepts, as the scheduler will start it.

use flow::__private::{registry, CatchUp, Overlap};
use flow_runtime as flow;
use flow_tests::fresh_flow;

/// A report's input whose `Default` is not all zeros, so the test sees that it was used.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct ReportInput {
    days: u32,
    recipients: Vec<String>,
}

impl Default for ReportInput {
    fn default() -> Self {
        ReportInput {
            days: 7,
            recipients: vec!["ops@example.com".to_owned()],
        }
    }
}

/// The weekly report.
#[flow::workflow(
    schedule = "0 30 7 * * MON",
    timezone = "europe/berlin",
    catch_up = "all",
    overlap = "buffer_one",
    max_duration = "1h 30m"
)]
async fn weekly_report(input: ReportInput) -> Result<String, flow::Failure> {
    Ok(format!(
        "{} days to {}",
        input.days,
        input.recipients.join(",")
    ))
}

#[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct Limits {
    batch: u16,
}

#[flow::workflow(schedule = "*/10 * * * *", name = "sync.poll")]
async fn poll(limits: Limits, cursor: Option<String>) -> Result<String, flow::Failure> {
    Ok(format!("batch {} from {cursor:?}", limits.batch))
}

#[flow::workflow(schedule = "@daily")]
async fn cleanup() -> Result<(), flow::Failure> {
    Ok(())
}

#[flow::workflow(max_duration = "45s")]
async fn import(ids: Vec<u64>) -> Result<usize, flow::Failure> {
    Ok(ids.len())
}

#[flow::workflow]
async fn plain() -> Result<(), flow::Failure> {
    Ok(())
}

#[test]
fn a_schedule_registers_its_expression_zone_policies_and_limit() {
    let meta = registry::workflow("weekly_report").expect("registered");
    let schedule = meta.schedule.expect("weekly_report has a schedule");
    assert_eq!(schedule.cron, "0 30 7 * * MON", "the expression as written");
    assert_eq!(
        schedule.timezone, "Europe/Berlin",
        "the zone by its canonical name"
    );
    assert_eq!(schedule.catch_up, CatchUp::All);
    assert_eq!(schedule.overlap, Overlap::BufferOne);
    assert_eq!(meta.max_duration_ms, Some(90 * 60 * 1000));
}

#[test]
fn unset_options_take_their_defaults() {
    let schedule = poll::meta().schedule.expect("poll has a schedule");
    assert_eq!(schedule.cron, "*/10 * * * *");
    assert_eq!(schedule.timezone, "UTC");
    assert_eq!(schedule.catch_up, CatchUp::Latest);
    assert_eq!(schedule.overlap, Overlap::Skip);
    assert_eq!(poll::meta().max_duration_ms, None);
    assert_eq!(cleanup::meta().schedule.expect("scheduled").cron, "@daily");

    // `max_duration` needs no schedule, and a workflow with neither registers neither.
    assert!(import::meta().schedule.is_none());
    assert_eq!(import::meta().max_duration_ms, Some(45_000));
    assert!(plain::meta().schedule.is_none());
    assert_eq!(plain::meta().max_duration_ms, None);
}

#[test]
fn the_default_input_is_encoded_like_the_arguments_of_a_call() {
    // One parameter: the value itself.
    let input = (weekly_report::meta().schedule.expect("scheduled").input)().expect("input");
    assert_eq!(
        input,
        serde_json::json!({"days": 7, "recipients": ["ops@example.com"]})
    );
    // Several: an object keyed by parameter name.
    let input = (poll::meta().schedule.expect("scheduled").input)().expect("input");
    assert_eq!(
        input,
        serde_json::json!({"limits": {"batch": 0}, "cursor": null})
    );
    // None: null.
    let input = (cleanup::meta().schedule.expect("scheduled").input)().expect("input");
    assert_eq!(input, serde_json::Value::Null);
}

#[tokio::test]
async fn a_run_started_with_the_default_input_gets_the_default_values() {
    let (_dir, flow) = fresh_flow();
    for (name, expected) in [
        ("weekly_report", "7 days to ops@example.com"),
        ("sync.poll", "batch 0 from None"),
    ] {
        let meta = registry::workflow(name).expect("registered");
        let input = (meta.schedule.expect("scheduled").input)().expect("input");
        let output = flow
            .start(name, flow::RunOptions::new(), input)
            .await
            .expect("the default input is accepted")
            .outcome()
            .await
            .expect("the run succeeds");
        assert_eq!(output, serde_json::json!(expected), "{name}");
    }
}

#[test]
fn the_runtime_parses_every_registered_schedule_as_the_macro_checked_it() {
    let scheduled: Vec<_> = registry::workflows()
        .into_iter()
        .filter_map(|w| w.schedule.map(|s| (w.name, s)))
        .collect();
    assert_eq!(
        scheduled.len(),
        3,
        "{:?}",
        scheduled.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    for (name, schedule) in scheduled {
        flow::__private::parse_cron(schedule.cron)
            .unwrap_or_else(|e| panic!("{name}: {:?} does not parse: {e}", schedule.cron));
        let zone = flow::__private::schedule_zone(schedule.timezone)
            .unwrap_or_else(|e| panic!("{name}: {:?} is no zone: {e}", schedule.timezone));
        assert_eq!(zone.iana_name(), Some(schedule.timezone), "{name}");
    }
    // Six fields put the seconds first; five have none; a year field is refused, as the macro
    // refuses it.
    let six = flow::__private::parse_cron("15 30 7 * * MON").expect("six fields");
    assert_eq!(six.describe(), "At 07:30:15, on Monday.");
    let five = flow::__private::parse_cron("30 7 * * MON").expect("five fields");
    assert_eq!(five.describe(), "At 07:30, on Monday.");
    assert!(flow::__private::parse_cron("0 0 0 1 1 * 2030").is_err());
}

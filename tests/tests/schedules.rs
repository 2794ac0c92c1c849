//! Schedules fired by a worker whose clock the test moves by hand ([`flow::ManualClock`]): missed
//! ticks under each catch-up policy, a tick while the previous run runs under each overlap
//! policy, both daylight-saving changes of a real zone, and backfill twice. Each test has its own
//! store file and schedule names; the runs and their outcomes are read back from the store.

use flow_runtime as flow;
use flow_runtime::store::{
    AlertDetail, AlertFilter, AlertKind, RunFilter, RunId, RunStatus, ScheduleRecord,
};
use flow_runtime::{CatchUp, Flow, ManualClock, Overlap, ScheduleConfig, Sharing};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Gates that `gated` runs wait on, by name; closed until a test opens them.
static OPEN_GATES: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// `(run id, tick)` of every execution of a scheduled workflow, in order.
static EXECUTED: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[flow::step(idempotent, retry = "none")]
async fn record_tick() -> Result<String, flow::Failure> {
    let run = flow::run_id().map(|r| r.to_string()).unwrap_or_default();
    let tick = flow::tick().map(|t| t.rfc3339()).unwrap_or_default();
    lock(&EXECUTED).push((run, tick.clone()));
    Ok(tick)
}

/// Records its run and tick; returns the tick.
#[flow::workflow]
async fn ticked() -> Result<String, flow::Failure> {
    record_tick().await
}

#[flow::step(idempotent, retry = "none")]
async fn wait_for_gate(gate: String) -> Result<(), flow::Failure> {
    while !lock(&OPEN_GATES).contains(&gate) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Waits until its gate opens, then records its run and tick.
#[flow::workflow]
async fn gated(gate: String) -> Result<String, flow::Failure> {
    wait_for_gate(gate).await?;
    record_tick().await
}

fn ms(rfc3339: &str) -> u64 {
    rfc3339
        .parse::<jiff::Timestamp>()
        .expect("a timestamp")
        .as_millisecond() as u64
}

/// The runs of `schedule` that executed, in order, by tick.
fn executed(schedule: &str) -> Vec<String> {
    let prefix = format!("{schedule}@");
    lock(&EXECUTED)
        .iter()
        .filter(|(run, _)| run.starts_with(&prefix))
        .map(|(_, tick)| tick.clone())
        .collect()
}

/// A running worker on `flow` with `clock`; stopped (and waited for) by `stop`.
struct Running {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<flow::WorkerReport, flow::Error>>,
}

fn start_worker(flow: &Flow, clock: &Arc<ManualClock>) -> Running {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = flow
        .worker()
        .concurrency(8)
        .poll_interval(Duration::from_millis(5))
        .clock(clock.clone());
    Running {
        stop: Some(stop),
        task: tokio::spawn(worker.run_until(async {
            let _ = stopped.await;
        })),
    }
}

/// Starts a worker and waits until it has seen schedule `name` (its first pass stores the
/// schedule's record, starting it at the clock's time).
async fn start_seeing(flow: &Flow, clock: &Arc<ManualClock>, name: &str) -> Running {
    let worker = start_worker(flow, clock);
    until("the worker sees the schedule", async || {
        record(flow, name).await.is_some()
    })
    .await;
    worker
}

impl Running {
    async fn stop(mut self) -> flow::WorkerReport {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task)
            .await
            .expect("the worker task")
            .expect("the worker")
    }
}

fn open(dir: &tempfile::TempDir, name: &str, config: ScheduleConfig) -> Flow {
    Flow::builder()
        .sharing(Sharing::Exclusive)
        .schedule(name, config)
        .open(dir.path().join("flow.redb"))
        .expect("open the store")
}

async fn record(flow: &Flow, name: &str) -> Option<ScheduleRecord> {
    flow.store()
        .schedules()
        .await
        .expect("schedules")
        .into_iter()
        .find(|r| r.name == name)
}

/// Waits (real time, up to 10 s) until `check` holds.
async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        if Instant::now() >= deadline {
            panic!(
                "timed out waiting until {what}; executed: {:?}",
                lock(&EXECUTED)
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The runs of `schedule` in the store, by id.
async fn stored(flow: &Flow, schedule: &str) -> Vec<(String, RunStatus, u32)> {
    let prefix = format!("{schedule}@");
    let mut runs: Vec<_> = flow
        .runs(&RunFilter::default())
        .await
        .expect("runs")
        .into_iter()
        .filter(|r| r.id.as_str().starts_with(&prefix))
        .map(|r| (r.id.to_string(), r.status, r.executions))
        .collect();
    runs.sort_by(|a, b| a.0.cmp(&b.0));
    runs
}

async fn all_succeeded(flow: &Flow, schedule: &str, n: usize) -> bool {
    let runs = stored(flow, schedule).await;
    runs.len() == n && runs.iter().all(|(_, s, _)| *s == RunStatus::Succeeded)
}

/// Hourly ticks missed while no worker ran: `all` runs each one (within the window), `latest`
/// only the most recent, `skip` only a tick that is still on time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_ticks_follow_the_catch_up_policy() {
    let start = ms("2026-11-28T00:00:10Z");
    // (policy, how late the worker comes back after 05:00, the ticks that run)
    let cases: [(&str, CatchUp, u64, &[&str]); 4] = [
        (
            "cu_all",
            CatchUp::All,
            10_000,
            &[
                "2026-11-28T01:00:00Z",
                "2026-11-28T02:00:00Z",
                "2026-11-28T03:00:00Z",
                "2026-11-28T04:00:00Z",
                "2026-11-28T05:00:00Z",
            ],
        ),
        (
            "cu_latest",
            CatchUp::Latest,
            10_000,
            &["2026-11-28T05:00:00Z"],
        ),
        ("cu_skip", CatchUp::Skip, 10_000, &["2026-11-28T05:00:00Z"]),
        ("cu_skip_late", CatchUp::Skip, 120_000, &[]),
    ];
    for (name, policy, late, expected) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        let flow = open(
            &dir,
            name,
            ScheduleConfig {
                workflow: Some("ticked".into()),
                cron: Some("0 * * * *".into()),
                catch_up: Some(policy),
                ..ScheduleConfig::default()
            },
        );
        let clock = ManualClock::new(start);
        let worker = start_seeing(&flow, &clock, name).await;
        worker.stop().await;
        // Five hourly ticks pass with no worker running
        clock.set_ms(ms("2026-11-28T05:00:00Z") + late);
        let worker = start_worker(&flow, &clock);
        until("the worker passes over the missed ticks", async || {
            record(&flow, name)
                .await
                .is_some_and(|r| r.through_ms >= ms("2026-11-28T05:00:00Z"))
        })
        .await;
        until(&format!("the fired runs of {name} succeed"), async || {
            all_succeeded(&flow, name, expected.len()).await
        })
        .await;
        worker.stop().await;
        assert_eq!(executed(name), expected, "{name}");
        let runs = stored(&flow, name).await;
        let ids: Vec<String> = expected.iter().map(|t| format!("{name}@{t}")).collect();
        assert_eq!(
            runs.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
            ids,
            "{name}"
        );
        assert!(runs.iter().all(|r| r.2 == 1), "each run executed once");
        let record = record(&flow, name).await.expect("the record");
        let missed = 5 - expected.len() as u64;
        assert_eq!(record.skipped, missed, "{name}");
        // Ticks left out open one missed-tick alert, naming the first and the count
        let alerts = flow
            .store()
            .alerts(&AlertFilter::default())
            .await
            .expect("alerts");
        let alerts: Vec<_> = alerts
            .into_iter()
            .filter(|a| a.kind == AlertKind::MissedTick)
            .collect();
        if missed == 0 {
            assert!(alerts.is_empty(), "{name}: {alerts:?}");
        } else {
            assert_eq!(alerts.len(), 1, "{name}: {alerts:?}");
            assert_eq!(
                alerts[0].run_ids,
                vec![RunId::from(format!("{name}@2026-11-28T01:00:00Z"))]
            );
            match &alerts[0].detail {
                Some(AlertDetail::MissedTicks { count, .. }) => assert_eq!(*count, missed),
                other => panic!("{name}: {other:?}"),
            }
            assert!(alerts[0]
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains(&format!("missed {missed} tick(s)"))));
        }
    }
}

/// A tick every minute while the first run waits on its gate: `skip` drops the next two,
/// `buffer_one` keeps one, `buffer_all` keeps both and runs them in order, `allow` runs them
/// beside the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_while_the_previous_run_runs_follows_the_overlap_policy() {
    let t = |m: u32| format!("2026-11-28T00:0{m}:00Z");
    let cases: [(&str, Overlap, Vec<String>, u64); 4] = [
        ("ov_skip", Overlap::Skip, vec![t(1)], 2),
        ("ov_buffer_one", Overlap::BufferOne, vec![t(1), t(2)], 1),
        (
            "ov_buffer_all",
            Overlap::BufferAll,
            vec![t(1), t(2), t(3)],
            0,
        ),
        ("ov_allow", Overlap::Allow, vec![t(1), t(2), t(3)], 0),
    ];
    for (name, policy, expected, skipped) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        let flow = open(
            &dir,
            name,
            ScheduleConfig {
                workflow: Some("gated".into()),
                cron: Some("* * * * *".into()),
                input: Some(serde_json::json!(name)),
                overlap: Some(policy),
                ..ScheduleConfig::default()
            },
        );
        let clock = ManualClock::new(ms("2026-11-28T00:00:30Z"));
        let worker = start_seeing(&flow, &clock, name).await;
        for minute in 1..=3u64 {
            clock.set_ms(ms("2026-11-28T00:00:30Z") + minute * 60_000);
            until("the worker passes over the tick", async || {
                record(&flow, name)
                    .await
                    .is_some_and(|r| r.through_ms >= ms(&t(minute as u32)))
            })
            .await;
        }
        let before = stored(&flow, name).await;
        // Nothing has finished while the gate is closed
        assert!(
            before.iter().all(|(_, s, _)| *s != RunStatus::Succeeded),
            "{name}: {before:?}"
        );
        lock(&OPEN_GATES).push(name.to_owned());
        until("every run that fired succeeds", async || {
            all_succeeded(&flow, name, expected.len()).await
        })
        .await;
        // Give a wrongly buffered tick the chance to run
        tokio::time::sleep(Duration::from_millis(100)).await;
        worker.stop().await;
        let mut ran = executed(name);
        if policy == Overlap::Allow {
            ran.sort();
        }
        assert_eq!(ran, expected, "{name}");
        let record = record(&flow, name).await.expect("the record");
        assert_eq!(record.skipped, skipped, "{name}");
        assert!(record.buffered.is_empty(), "{name}");
    }
}

/// A daily 02:30 in Europe/Berlin across both daylight-saving changes of 2026, the clock moved
/// an hour at a time: on 29 March 02:30 does not exist and the tick fires at 03:00 (once); on
/// 25 October 02:30 happens twice and the tick fires once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daylight_saving_changes_neither_skip_nor_double_a_tick() {
    let cases = [
        (
            "dst_spring",
            "2026-03-27T12:00:00Z",
            [
                "2026-03-28T01:30:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-30T00:30:00Z",
                "2026-03-31T00:30:00Z",
            ],
        ),
        (
            "dst_autumn",
            "2026-10-23T12:00:00Z",
            [
                "2026-10-24T00:30:00Z",
                "2026-10-25T00:30:00Z",
                "2026-10-26T01:30:00Z",
                "2026-10-27T01:30:00Z",
            ],
        ),
    ];
    for (name, from, expected) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        let flow = open(
            &dir,
            name,
            ScheduleConfig {
                workflow: Some("ticked".into()),
                cron: Some("30 2 * * *".into()),
                timezone: Some("Europe/Berlin".into()),
                // Every tick runs even if the worker lags behind the moving clock
                catch_up: Some(CatchUp::All),
                ..ScheduleConfig::default()
            },
        );
        let clock = ManualClock::new(ms(from));
        let worker = start_seeing(&flow, &clock, name).await;
        for _ in 0..96 {
            clock.advance(Duration::from_secs(3600));
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        until("the four days' runs succeed", async || {
            all_succeeded(&flow, name, 4).await
        })
        .await;
        worker.stop().await;
        let ids: Vec<String> = stored(&flow, name).await.into_iter().map(|r| r.0).collect();
        let want: Vec<String> = expected.iter().map(|t| format!("{name}@{t}")).collect();
        assert_eq!(ids, want, "{name}");
        let mut ran = executed(name);
        ran.sort();
        assert_eq!(ran, expected, "{name}: each tick executed once");
    }
}

/// A backfill of five past hourly ticks runs them one after another in tick order; the same
/// backfill again adds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_twice_adds_nothing() {
    let name = "bf";
    let dir = tempfile::tempdir().expect("temp dir");
    let flow = open(
        &dir,
        name,
        ScheduleConfig {
            workflow: Some("ticked".into()),
            cron: Some("0 * * * *".into()),
            ..ScheduleConfig::default()
        },
    );
    let (from, to) = (ms("2026-11-01T00:00:00Z"), ms("2026-11-01T04:30:00Z"));
    let first = flow
        .backfill_schedule(name, from, to, None)
        .await
        .expect("backfill");
    assert_eq!(first.created.len() + first.buffered.len(), 5, "{first:?}");
    assert_eq!(first.created.len(), 1, "buffer_all: one runs, four wait");
    let again = flow
        .backfill_schedule(name, from, to, None)
        .await
        .expect("backfill again");
    assert!(
        again.created.is_empty() && again.buffered.is_empty(),
        "{again:?}"
    );
    assert_eq!(again.existing.len(), 5);

    let clock = ManualClock::new(ms("2026-11-28T00:00:10Z"));
    let worker = start_worker(&flow, &clock);
    until("the backfilled runs succeed", async || {
        all_succeeded(&flow, name, 5).await
    })
    .await;
    worker.stop().await;
    let ticks: Vec<String> = (0..5).map(|h| format!("2026-11-01T0{h}:00:00Z")).collect();
    assert_eq!(executed(name), ticks, "one after another, in tick order");
    let third = flow
        .backfill_schedule(name, from, to, Some(Overlap::Allow))
        .await
        .expect("a third backfill");
    assert_eq!(third.existing.len(), 5);
    assert!(third.created.is_empty());
    let distinct: HashSet<String> = stored(&flow, name).await.into_iter().map(|r| r.0).collect();
    assert_eq!(distinct.len(), 5);
}

/// The input of `declared_hourly`: built with `Default` for each tick.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Batch {
    size: u32,
}

impl Default for Batch {
    fn default() -> Self {
        Batch { size: 25 }
    }
}

/// Declared on the workflow; settings move or disable it in the test below.
#[flow::workflow(schedule = "0 * * * *", catch_up = "all")]
async fn declared_hourly(batch: Batch) -> Result<String, flow::Failure> {
    let tick = record_tick().await?;
    Ok(format!("{tick} size {}", batch.size))
}

/// A schedule declared with `#[workflow(schedule = ...)]` fires with its `Default` input;
/// settings move it to another minute, or disable it, without a rebuild.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_schedule_fires_and_settings_move_or_disable_it() {
    let name = "declared_hourly";
    for (config, expected) in [
        (
            ScheduleConfig::default(),
            vec!["2026-11-28T01:00:00Z", "2026-11-28T02:00:00Z"],
        ),
        (
            ScheduleConfig {
                cron: Some("30 * * * *".into()),
                ..ScheduleConfig::default()
            },
            vec!["2026-11-28T00:30:00Z", "2026-11-28T01:30:00Z"],
        ),
        (
            ScheduleConfig {
                enabled: Some(false),
                ..ScheduleConfig::default()
            },
            vec![],
        ),
    ] {
        lock(&EXECUTED).retain(|(run, _)| !run.starts_with("declared_hourly@"));
        let dir = tempfile::tempdir().expect("temp dir");
        let flow = open(&dir, name, config.clone());
        let schedule = flow.schedule(name).expect("the schedule resolves");
        assert_eq!(schedule.input, serde_json::json!({ "size": 25 }));
        let clock = ManualClock::new(ms("2026-11-28T00:00:10Z"));
        let worker = start_worker(&flow, &clock);
        if schedule.enabled {
            until("the worker sees the schedule", async || {
                record(&flow, name).await.is_some()
            })
            .await;
        }
        clock.set_ms(ms("2026-11-28T02:10:00Z"));
        until("the runs succeed", async || {
            all_succeeded(&flow, name, expected.len()).await
        })
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        worker.stop().await;
        assert_eq!(executed(name), expected, "{config:?}");
        for run in flow.runs(&RunFilter::default()).await.expect("runs") {
            let tick = run.id.as_str().trim_start_matches("declared_hourly@");
            assert_eq!(
                run.output,
                Some(serde_json::json!(format!("{tick} size 25")))
            );
        }
    }
}

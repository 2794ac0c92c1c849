//! Concurrency: steps of one run may run at once (`join_all`, `buffer_unordered`), and many
//! runs share the store; every checkpoint lands exactly once.

use flow_runtime as flow;
use flow_tests::{bump, count, fresh_flow};
use futures::StreamExt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static IN_FLIGHT: AtomicU32 = AtomicU32::new(0);
static PEAK: AtomicU32 = AtomicU32::new(0);

#[flow::step(idempotent, retry = "none")]
async fn slow_square(tag: String, x: u64) -> Result<u64, flow::Failure> {
    let now = IN_FLIGHT.fetch_add(1, Ordering::SeqCst) + 1;
    PEAK.fetch_max(now, Ordering::SeqCst);
    bump(&tag);
    tokio::time::sleep(Duration::from_millis(30)).await;
    IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    Ok(x * x)
}

#[flow::workflow]
async fn fan_out(tag: String) -> Result<u64, flow::Failure> {
    let joined = futures::future::join_all((0..10).map(|x| slow_square(tag.clone(), x))).await;
    let buffered: Vec<_> = futures::stream::iter(10..20)
        .map(|x| slow_square(tag.clone(), x))
        .buffer_unordered(4)
        .collect()
        .await;
    let mut sum = 0;
    for r in joined.into_iter().chain(buffered) {
        sum += r?;
    }
    Ok(sum)
}

#[flow::step(idempotent, retry = "none")]
async fn noop(run: u32, i: u32) -> Result<u32, flow::Failure> {
    Ok(run + i)
}

#[flow::workflow]
async fn ten_steps(run: u32) -> Result<u32, flow::Failure> {
    let mut sum = 0;
    for i in 0..10 {
        sum += noop(run, i).await?;
    }
    Ok(sum)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_of_one_run_run_concurrently_and_replay() {
    let (_dir, flow) = fresh_flow();
    let expected: u64 = (0..20).map(|x| x * x).sum();
    let out = fan_out::start_with(&flow, flow::RunOptions::new().id("fan"), "fan".into())
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    assert_eq!(out, expected);
    assert_eq!(count("fan"), 20);
    assert!(PEAK.load(Ordering::SeqCst) >= 4, "steps overlapped");
    let steps = flow.steps(&"fan".into()).await.unwrap();
    assert_eq!(steps.len(), 20);
    assert!(steps
        .iter()
        .all(|s| s.status == flow::store::StepStatus::Succeeded));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_runs_store_exactly_their_checkpoints() {
    let (_dir, flow) = fresh_flow();
    let starts = (0..1000u32).map(|run| {
        let opts = flow::RunOptions::new().id(format!("run-{run:04}"));
        ten_steps::start_with(&flow, opts, run)
    });
    let handles = futures::future::join_all(starts).await;
    let outcomes =
        futures::future::join_all(handles.into_iter().map(|h| h.unwrap().outcome())).await;
    for (run, outcome) in outcomes.into_iter().enumerate() {
        assert_eq!(outcome.unwrap(), run as u32 * 10 + 45);
    }
    let runs = flow.runs(&flow::store::RunFilter::default()).await.unwrap();
    assert_eq!(runs.len(), 1000);
    assert!(runs.iter().all(|r| r.status == flow::RunStatus::Succeeded));
    let mut total = 0;
    for run in 0..1000u32 {
        let steps = flow.steps(&format!("run-{run:04}").into()).await.unwrap();
        assert_eq!(steps.len(), 10, "run {run}");
        let mut outputs: Vec<u64> = steps
            .iter()
            .map(|s| s.output.as_ref().and_then(|v| v.as_u64()).unwrap())
            .collect();
        outputs.sort();
        let expected: Vec<u64> = (0..10).map(|i| u64::from(run + i)).collect();
        assert_eq!(outputs, expected);
        total += steps.len();
    }
    assert_eq!(total, 10_000);
}

//! Timeouts: an attempt that runs past the step's `timeout` is cut off and counts as a
//! transient error, so the retry policy gets another attempt.

use flow_runtime as flow;
use flow_tests::{bump, count, fresh_flow};
use std::time::Duration;

#[derive(Debug, thiserror::Error, flow::Classify)]
enum SlowError {
    #[error(transparent)]
    Timeout(#[from] flow::StepTimeout),
    #[error("never")]
    #[allow(dead_code)]
    Never,
}

/// Hangs on its first `hangs` attempts, then answers at once.
#[flow::step(
    idempotent,
    timeout = "50ms",
    retry(attempts = 3, initial = "1ms", max = "1ms")
)]
async fn sometimes_hangs(tag: String, hangs: u32) -> Result<u32, SlowError> {
    let n = bump(&tag);
    if n <= hangs {
        tokio::time::sleep(Duration::from_secs(30)).await;
        bump(&format!("{tag}/finished-late"));
    }
    Ok(n)
}

#[flow::workflow]
async fn timeout_flow(tag: String, hangs: u32) -> Result<u32, SlowError> {
    sometimes_hangs(tag, hangs).await
}

#[tokio::test]
async fn a_timed_out_attempt_is_retried() {
    let (_dir, flow) = fresh_flow();
    let out = timeout_flow::start_with(&flow, flow::RunOptions::new().id("to1"), "to1".into(), 1)
        .await
        .unwrap()
        .outcome()
        .await
        .expect("second attempt answers");
    assert_eq!(out, 2);
    assert_eq!(count("to1"), 2);
    assert_eq!(
        count("to1/finished-late"),
        0,
        "the hung attempt was cut off"
    );
    let steps = flow.steps(&"to1".into()).await.unwrap();
    assert_eq!(steps[0].attempt, 2);
}

#[tokio::test]
async fn timeouts_on_every_attempt_reach_the_workflow_as_its_error() {
    let (_dir, flow) = fresh_flow();
    let err = timeout_flow::start_with(&flow, flow::RunOptions::new().id("to2"), "to2".into(), 99)
        .await
        .unwrap()
        .outcome()
        .await
        .expect_err("always hangs");
    match err.workflow_error() {
        Some(SlowError::Timeout(t)) => assert_eq!(t.after, Duration::from_millis(50)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(count("to2"), 3);
    let steps = flow.steps(&"to2".into()).await.unwrap();
    assert_eq!(steps[0].status, flow::store::StepStatus::Failed);
    assert_eq!(steps[0].error_class, Some(flow::ErrorClass::Transient));
    assert!(steps[0]
        .error
        .as_deref()
        .unwrap_or("")
        .contains("timed out"));
}

//! Retries and their classification: transient errors are retried by the policy, permanent
//! ones never, and every attempt is recorded in the store.

use flow_runtime as flow;
use flow_tests::{bump, count, fresh_flow};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error, flow::Classify)]
enum ApiError {
    #[error("service unavailable")]
    #[flow(transient)]
    Unavailable,
    #[error("rate limited")]
    #[flow(transient, retry_after = "300ms")]
    RateLimited,
    #[error("invalid record: {0}")]
    Invalid(String),
}

/// Fails transiently `fail_times` times, then succeeds.
#[flow::step(idempotent, retry(attempts = 5, initial = "10ms", max = "20ms"))]
async fn flaky(tag: String, fail_times: u32) -> Result<u32, ApiError> {
    let n = bump(&tag);
    if n <= fail_times {
        return Err(ApiError::Unavailable);
    }
    Ok(n)
}

#[flow::step(idempotent, retry(attempts = 5, initial = "10ms", max = "20ms"))]
async fn invalid(tag: String) -> Result<u32, ApiError> {
    bump(&tag);
    Err(ApiError::Invalid("email missing".into()))
}

#[flow::step(
    idempotent,
    retry(attempts = 2, initial = "1ms", max = "1ms", jitter = false)
)]
async fn rate_limited(tag: String) -> Result<(), ApiError> {
    if bump(&tag) == 1 {
        return Err(ApiError::RateLimited);
    }
    Ok(())
}

#[flow::step(idempotent, retry = "none")]
async fn no_retry(tag: String) -> Result<(), ApiError> {
    bump(&tag);
    Err(ApiError::Unavailable)
}

#[flow::workflow]
async fn retry_flow(tag: String, fail_times: u32) -> Result<u32, ApiError> {
    flaky(tag, fail_times).await
}

#[flow::workflow]
async fn invalid_flow(tag: String) -> Result<u32, ApiError> {
    invalid(tag).await
}

#[flow::workflow]
async fn rate_limited_flow(tag: String) -> Result<(), ApiError> {
    rate_limited(tag).await
}

#[flow::workflow]
async fn no_retry_flow(tag: String) -> Result<(), ApiError> {
    no_retry(tag).await
}

#[tokio::test]
async fn transient_errors_are_retried_until_success() {
    let (_dir, flow) = fresh_flow();
    let opts = flow::RunOptions::new().id("t1");
    let out = retry_flow::start_with(&flow, opts, "t1".into(), 2)
        .await
        .unwrap()
        .outcome()
        .await
        .expect("third attempt succeeds");
    assert_eq!(out, 3);
    assert_eq!(count("t1"), 3);
    let steps = flow.steps(&"t1".into()).await.unwrap();
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].status, flow::store::StepStatus::Succeeded);
    assert_eq!(
        steps[0].attempt, 3,
        "the store records the attempt that succeeded"
    );
}

#[tokio::test]
async fn attempts_run_out_and_the_last_error_reaches_the_workflow() {
    let (_dir, flow) = fresh_flow();
    let err = retry_flow::start_with(&flow, flow::RunOptions::new().id("t2"), "t2".into(), 99)
        .await
        .unwrap()
        .outcome()
        .await
        .expect_err("all attempts fail");
    assert!(
        matches!(err.workflow_error(), Some(ApiError::Unavailable)),
        "{err:?}"
    );
    assert_eq!(count("t2"), 5, "the policy allows 5 attempts");
    let steps = flow.steps(&"t2".into()).await.unwrap();
    assert_eq!(steps[0].status, flow::store::StepStatus::Failed);
    assert_eq!(steps[0].attempt, 5);
    assert_eq!(steps[0].error_class, Some(flow::ErrorClass::Transient));
}

#[tokio::test]
async fn validation_errors_are_never_retried() {
    let (_dir, flow) = fresh_flow();
    let err = invalid_flow::start_with(&flow, flow::RunOptions::new().id("t3"), "t3".into())
        .await
        .unwrap()
        .outcome()
        .await
        .expect_err("invalid");
    assert!(matches!(err.workflow_error(), Some(ApiError::Invalid(_))));
    assert_eq!(count("t3"), 1);
    let steps = flow.steps(&"t3".into()).await.unwrap();
    assert_eq!(steps[0].status, flow::store::StepStatus::Failed);
    assert_eq!(steps[0].error_class, Some(flow::ErrorClass::Permanent));
    assert_eq!(
        steps[0].error.as_deref(),
        Some("invalid record: email missing")
    );
    let run = flow.run_record(&"t3".into()).await.unwrap().unwrap();
    assert_eq!(run.status, flow::RunStatus::Failed);
}

#[tokio::test]
async fn retry_none_runs_once_even_for_transient_errors() {
    let (_dir, flow) = fresh_flow();
    let _ = no_retry_flow::start_with(&flow, flow::RunOptions::new().id("t4"), "t4".into())
        .await
        .unwrap()
        .outcome()
        .await
        .expect_err("fails");
    assert_eq!(count("t4"), 1);
}

#[tokio::test]
async fn a_retry_after_from_the_error_delays_the_next_attempt() {
    let (_dir, flow) = fresh_flow();
    let started = Instant::now();
    rate_limited_flow::start_with(&flow, flow::RunOptions::new().id("t5"), "t5".into())
        .await
        .unwrap()
        .outcome()
        .await
        .expect("second attempt succeeds");
    assert_eq!(count("t5"), 2);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the policy's 1 ms delay was raised to the error's 300 ms retry-after"
    );
}

#[tokio::test]
async fn named_policies_can_be_tuned_at_run_time() {
    #[flow::step(idempotent, retry = "transient")]
    async fn always_down(tag: String) -> Result<(), ApiError> {
        bump(&tag);
        Err(ApiError::Unavailable)
    }
    #[flow::workflow]
    async fn tuned_flow(tag: String) -> Result<(), ApiError> {
        always_down(tag).await
    }
    let dir = tempfile::tempdir().unwrap();
    let flow = flow::Flow::builder()
        .retry_policy(
            "transient",
            flow::RetryPolicy {
                attempts: 2,
                initial: Duration::from_millis(1),
                max: Duration::from_millis(1),
                multiplier: 1.0,
                jitter: false,
            },
        )
        .open(dir.path().join("flow.redb"))
        .unwrap();
    let _ = tuned_flow::start_with(&flow, flow::RunOptions::new().id("t6"), "t6".into())
        .await
        .unwrap()
        .outcome()
        .await;
    assert_eq!(count("t6"), 2, "the tuned policy allows 2 attempts");
}

#[test]
fn a_crash_during_backoff_resumes_at_the_next_attempt() {
    use flow_tests::{assert_exit, lines, read_steps, spawn_child, wait_until};
    let dir = tempfile::tempdir().unwrap();
    let (store, log) = (dir.path().join("flow.redb"), dir.path().join("log"));
    let args = [std::path::Path::new("backoff"), &store, &log];
    let spawn = || spawn_child(env!("CARGO_BIN_EXE_scenario_child"), &args);
    let mut first = spawn();
    wait_until(20, "the first attempt's backoff to be stored", || {
        read_steps(&store, "backoff")
            .iter()
            .any(|s| s.status == flow::store::StepStatus::Backoff && s.attempt == 1)
    });
    first.kill().unwrap();
    first.wait().unwrap();
    let out = spawn().wait_with_output().unwrap();
    assert_exit(&out, 0);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3");
    let attempts: Vec<String> = lines(&log)
        .iter()
        .map(|l| l.split(' ').nth(1).unwrap().to_owned())
        .collect();
    assert_eq!(
        attempts,
        ["1", "2", "3"],
        "the restart went on with attempt 2, not 1"
    );
    let steps = read_steps(&store, "backoff");
    assert_eq!(steps[0].attempt, 3);
    assert_eq!(steps[0].status, flow::store::StepStatus::Succeeded);
}

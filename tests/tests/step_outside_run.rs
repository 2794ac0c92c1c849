//! Outside a run, a step is an ordinary async function: one call runs the body once and returns
//! its result, with no retry and no checkpoint.

use flow_runtime as flow;
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};

#[derive(Debug, PartialEq, flow::Classify)]
enum PushError {
    #[flow(transient)]
    Unavailable,
    Invalid,
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PushError::Unavailable => "the service is unavailable",
            PushError::Invalid => "the record is invalid",
        })
    }
}

static OK_CALLS: AtomicU32 = AtomicU32::new(0);
static FLAKY_CALLS: AtomicU32 = AtomicU32::new(0);
static INVALID_CALLS: AtomicU32 = AtomicU32::new(0);

#[flow::step(idempotent, retry(attempts = 5, initial = "1ms"))]
async fn push(record_id: &str, mut count: u32) -> Result<String, PushError> {
    OK_CALLS.fetch_add(1, Ordering::SeqCst);
    count += 1;
    Ok(format!("{record_id}:{count}"))
}

#[flow::step(retry = "transient", idempotent)]
async fn flaky(record_id: String) -> Result<(), PushError> {
    let _ = record_id;
    FLAKY_CALLS.fetch_add(1, Ordering::SeqCst);
    Err(PushError::Unavailable)
}

#[flow::step(idempotency_key = format!("invalid-{id}"))]
async fn invalid(id: u64) -> Result<u64, PushError> {
    INVALID_CALLS.fetch_add(1, Ordering::SeqCst);
    if id == 0 {
        Err(PushError::Invalid)
    } else {
        Ok(id)
    }
}

#[tokio::test]
async fn a_step_outside_a_run_runs_its_body_once_and_returns_its_output() {
    let output = push("r-1", 41).await;
    assert_eq!(output, Ok("r-1:42".to_owned()));
    assert_eq!(OK_CALLS.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_transient_error_outside_a_run_is_returned_after_one_call() {
    let result = flaky("r-2".to_owned()).await;
    assert_eq!(result, Err(PushError::Unavailable));
    assert_eq!(FLAKY_CALLS.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_permanent_error_outside_a_run_is_returned_after_one_call() {
    assert_eq!(invalid(0).await, Err(PushError::Invalid));
    assert_eq!(invalid(3).await, Ok(3));
    assert_eq!(INVALID_CALLS.load(Ordering::SeqCst), 2);
}

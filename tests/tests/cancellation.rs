//! Cancellation: a cancel request is recorded in the store and honoured at the next step
//! boundary; steps after it never start.

use flow_runtime as flow;
use flow_tests::{bump, count, fresh_flow};
use std::time::Duration;

#[flow::step(idempotent, retry = "none")]
async fn tick(tag: String, i: u32) -> Result<u32, flow::Failure> {
    bump(&tag);
    tokio::time::sleep(Duration::from_millis(20)).await;
    Ok(i)
}

#[flow::workflow]
async fn long_job(tag: String) -> Result<u32, flow::Failure> {
    let mut last = 0;
    for i in 0..500 {
        last = tick(tag.clone(), i).await?;
    }
    Ok(last)
}

#[tokio::test]
async fn cancel_stops_the_run_at_the_next_step_boundary() {
    let (_dir, flow) = fresh_flow();
    let id = flow::RunId::from("cancel-1");
    let handle = long_job::start_with(&flow, flow::RunOptions::new().id(id.clone()), "c1".into())
        .await
        .unwrap();
    while count("c1") < 5 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    flow.cancel(&id).await.expect("cancel");
    let err = handle.outcome().await.expect_err("cancelled");
    assert!(matches!(err, flow::RunError::Cancelled), "{err:?}");
    let ran = count("c1");
    assert!(ran < 500, "the run went on after the cancel");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(count("c1"), ran, "no step started after the run ended");

    let run = flow.run_record(&id).await.unwrap().unwrap();
    assert_eq!(run.status, flow::RunStatus::Cancelled);
    let steps = flow.steps(&id).await.unwrap();
    assert!(steps.len() as u32 <= ran);
    // A cancelled run is finished: starting the id again returns the cancellation.
    let again = long_job::start_with(&flow, flow::RunOptions::new().id(id.clone()), "c1".into())
        .await
        .unwrap()
        .outcome()
        .await;
    assert!(matches!(again, Err(flow::RunError::Cancelled)));
    assert_eq!(count("c1"), ran);
    let err = flow.cancel(&id).await.expect_err("already cancelled");
    assert!(err.to_string().contains("cancelled"), "{err}");
}

#[tokio::test]
async fn a_cancel_request_from_another_handle_on_the_store_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flow.redb");
    let flow = flow::Flow::builder()
        .cancel_poll_interval(Duration::from_millis(20))
        .open(&path)
        .unwrap();
    let id = flow::RunId::from("cancel-2");
    let handle = long_job::start_with(&flow, flow::RunOptions::new().id(id.clone()), "c2".into())
        .await
        .unwrap();
    while count("c2") < 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Write the request straight into the store, as an operator's process would.
    flow.store()
        .commit(vec![flow::store::Write::RequestCancel(id.clone())])
        .await
        .unwrap();
    let err = handle.outcome().await.expect_err("cancelled");
    assert!(matches!(err, flow::RunError::Cancelled), "{err:?}");
    assert!(count("c2") < 500);
}

#[tokio::test]
async fn cancelling_an_unknown_run_says_so() {
    let (_dir, flow) = fresh_flow();
    let err = flow.cancel(&"nope".into()).await.expect_err("unknown");
    assert!(err.to_string().contains("nope"), "{err}");
}

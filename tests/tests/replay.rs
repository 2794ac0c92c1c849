//! Replay: a completed step never runs again in its run; a finished run id returns its stored
//! outcome and executes nothing; a resumed run executes only what did not complete.

use flow_runtime as flow;
use flow_tests::{bump, count, fresh_flow};
use std::sync::atomic::{AtomicBool, Ordering};

#[flow::step(idempotent, retry = "none")]
async fn double(tag: String, x: u32) -> Result<u32, flow::Failure> {
    bump(&format!("{tag}/double/{x}"));
    Ok(x * 2)
}

static BROKEN: AtomicBool = AtomicBool::new(true);

#[flow::step(idempotent, retry = "none")]
async fn fragile(tag: String) -> Result<u32, flow::Failure> {
    bump(&format!("{tag}/fragile"));
    if BROKEN.load(Ordering::SeqCst) {
        return Err(flow::Failure::permanent(
            "the downstream system is misconfigured",
        ));
    }
    Ok(100)
}

#[flow::workflow]
async fn three_steps(tag: String) -> Result<u32, flow::Failure> {
    let a = double(tag.clone(), 1).await?;
    let b = double(tag.clone(), 2).await?;
    let c = double(tag, 3).await?;
    Ok(a + b + c)
}

#[flow::workflow]
async fn fails_then_fixed(tag: String) -> Result<u32, flow::Failure> {
    let a = double(tag.clone(), 1).await?;
    let b = double(tag.clone(), 2).await?;
    let c = fragile(tag).await?;
    Ok(a + b + c)
}

#[tokio::test]
async fn a_finished_run_id_returns_the_stored_outcome_and_executes_nothing() {
    let (_dir, flow) = fresh_flow();
    let opts = || flow::RunOptions::new().id("replay-1");
    let first = three_steps::start_with(&flow, opts(), "r1".into())
        .await
        .expect("start")
        .outcome()
        .await
        .expect("first run");
    assert_eq!(first, 12);
    for x in 1..=3 {
        assert_eq!(count(&format!("r1/double/{x}")), 1);
    }

    let second = three_steps::start_with(&flow, opts(), "r1".into())
        .await
        .expect("start again")
        .outcome()
        .await
        .expect("stored outcome");
    assert_eq!(second, 12);
    for x in 1..=3 {
        assert_eq!(count(&format!("r1/double/{x}")), 1, "step {x} ran again");
    }

    let run = flow.run_record(&"replay-1".into()).await.unwrap().unwrap();
    assert_eq!(run.status, flow::RunStatus::Succeeded);
    assert_eq!(run.output, Some(serde_json::json!(12)));
    assert_eq!(run.executions, 1);
    let steps = flow.steps(&"replay-1".into()).await.unwrap();
    assert_eq!(steps.len(), 3);
    assert!(steps
        .iter()
        .all(|s| s.status == flow::store::StepStatus::Succeeded));
    let outputs: Vec<_> = steps.iter().filter_map(|s| s.output.clone()).collect();
    for v in [2, 4, 6] {
        assert!(outputs.contains(&serde_json::json!(v)));
    }
}

#[tokio::test]
async fn resume_after_a_failure_executes_only_what_did_not_complete() {
    let (_dir, flow) = fresh_flow();
    let id = flow::RunId::from("replay-2");
    let err =
        fails_then_fixed::start_with(&flow, flow::RunOptions::new().id(id.clone()), "r2".into())
            .await
            .unwrap()
            .outcome()
            .await
            .expect_err("fragile fails");
    assert!(err.to_string().contains("misconfigured"), "{err}");
    assert_eq!(count("r2/fragile"), 1, "a permanent error is not retried");
    let run = flow.run_record(&id).await.unwrap().unwrap();
    assert_eq!(run.status, flow::RunStatus::Failed);
    assert!(run.error.unwrap().contains("misconfigured"));

    BROKEN.store(false, Ordering::SeqCst);
    let out = flow
        .resume(&id)
        .await
        .unwrap()
        .outcome()
        .await
        .expect("resumed");
    assert_eq!(out, serde_json::json!(106));
    assert_eq!(
        count("r2/double/1"),
        1,
        "completed steps replay from checkpoints"
    );
    assert_eq!(count("r2/double/2"), 1);
    assert_eq!(count("r2/fragile"), 2);
    let run = flow.run_record(&id).await.unwrap().unwrap();
    assert_eq!(run.status, flow::RunStatus::Succeeded);
    assert_eq!(run.executions, 2);
}

#[tokio::test]
async fn by_name_start_uses_json_input_and_unknown_names_are_listed() {
    let (_dir, flow) = fresh_flow();
    let out = flow
        .start(
            "three_steps",
            flow::RunOptions::new().id("by-name"),
            serde_json::json!("r3"),
        )
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    assert_eq!(out, serde_json::json!(12));
    assert_eq!(count("r3/double/2"), 1);

    let err = flow
        .start(
            "no_such_flow",
            flow::RunOptions::new(),
            serde_json::Value::Null,
        )
        .await
        .expect_err("unknown workflow");
    let msg = err.to_string();
    assert!(
        msg.contains("no_such_flow") && msg.contains("three_steps"),
        "{msg}"
    );

    let err = flow
        .start(
            "three_steps",
            flow::RunOptions::new(),
            serde_json::json!({"not": "a string"}),
        )
        .await
        .expect_err("bad input is refused before a run is stored");
    assert!(matches!(err, flow::Error::Input { .. }), "{err:?}");
    assert!(err.to_string().contains("invalid input"), "{err}");

    let err = flow
        .start(
            "fails_then_fixed",
            flow::RunOptions::new().id("by-name"),
            serde_json::json!("x"),
        )
        .await
        .expect_err("id taken by another workflow");
    assert!(err.to_string().contains("three_steps"), "{err}");
}

#[flow::workflow]
async fn always_fails(tag: String) -> Result<u32, flow::Failure> {
    fragile_always(tag).await
}

#[flow::step(idempotent, retry = "none")]
async fn fragile_always(tag: String) -> Result<u32, flow::Failure> {
    bump(&format!("{tag}/always"));
    Err(flow::Failure::permanent("the record is invalid"))
}

#[flow::workflow]
async fn panics(tag: String) -> Result<u32, flow::Failure> {
    let x = double(tag, 5).await?;
    if x == 10 {
        panic!("an assertion in workflow code");
    }
    Ok(x)
}

#[tokio::test]
async fn a_failed_run_id_returns_the_stored_failure_without_executing() {
    let (_dir, flow) = fresh_flow();
    let opts = || flow::RunOptions::new().id("replay-4");
    let first = always_fails::start_with(&flow, opts(), "r4".into())
        .await
        .unwrap()
        .outcome()
        .await
        .expect_err("fails");
    assert!(
        first.workflow_error().is_some(),
        "this process has the typed error"
    );

    let again = always_fails::start_with(&flow, opts(), "r4".into())
        .await
        .unwrap()
        .outcome()
        .await
        .expect_err("stored failure");
    match again {
        flow::RunError::Failed { message } => assert_eq!(message, "the record is invalid"),
        other => panic!("expected the stored failure, got {other:?}"),
    }
    assert_eq!(
        count("r4/always"),
        1,
        "starting a failed id executes nothing"
    );
}

#[tokio::test]
async fn a_panic_in_workflow_code_fails_the_run_with_its_message() {
    let (_dir, flow) = fresh_flow();
    let id = flow::RunId::from("replay-5");
    let err = panics::start_with(&flow, flow::RunOptions::new().id(id.clone()), "r5".into())
        .await
        .unwrap()
        .outcome()
        .await
        .expect_err("panics");
    assert!(
        err.to_string().contains("an assertion in workflow code"),
        "{err}"
    );
    let run = flow.run_record(&id).await.unwrap().unwrap();
    assert_eq!(run.status, flow::RunStatus::Failed);
    assert!(run.error.unwrap().contains("panicked"));
    assert_eq!(
        flow.steps(&id).await.unwrap().len(),
        1,
        "the step before the panic is kept"
    );
}

#[tokio::test]
async fn resuming_a_succeeded_run_is_refused() {
    let (_dir, flow) = fresh_flow();
    let id = flow::RunId::from("replay-6");
    three_steps::start_with(&flow, flow::RunOptions::new().id(id.clone()), "r6".into())
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    let err = flow.resume(&id).await.expect_err("finished");
    assert!(err.to_string().contains("succeeded"), "{err}");
    assert_eq!(count("r6/double/1"), 1);
}

//! at_most_once: an intent is durable before the body runs; a crash inside the body leaves the
//! run in needs-attention until an operator marks the step done or allows a re-run.

use flow_runtime as flow;
use flow_tests::{assert_exit, bump, count, fresh_flow, lines, read_run, spawn_child, wait_until};
use std::path::Path;
use std::process::Output;

fn child(store: &Path, log: &Path) -> std::process::Child {
    let args = [Path::new("payment"), store, log];
    spawn_child(env!("CARGO_BIN_EXE_scenario_child"), &args)
}

fn run_to_end(store: &Path, log: &Path) -> Output {
    child(store, log).wait_with_output().expect("child output")
}

/// Starts the payment, kills the process inside the step, and checks the run needs attention.
fn crash_inside_the_step(store: &Path, log: &Path) -> flow::store::StepId {
    let mut c = child(store, log);
    wait_until(20, "the payment effect", || lines(log).len() == 1);
    c.kill().expect("SIGKILL");
    c.wait().expect("reap");

    let out = run_to_end(store, log);
    assert_exit(&out, 3);
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs attention"));
    assert_eq!(lines(log).len(), 1, "the payment was not sent again");
    let run = read_run(store, "payment").expect("run");
    assert_eq!(run.status, flow::RunStatus::NeedsAttention);
    let attention = run.attention.expect("attention");
    assert!(
        attention.reason.contains("may or may not"),
        "{}",
        attention.reason
    );
    attention.step
}

fn resolve(store: &Path, step: &flow::store::StepId, resolution: flow::Resolution) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let flow = flow::Flow::open(store).unwrap();
        flow.resolve(&"payment".into(), step, resolution)
            .await
            .unwrap();
    });
}

#[test]
fn a_crash_inside_the_step_needs_attention_and_marking_it_done_completes_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let (store, log) = (dir.path().join("flow.redb"), dir.path().join("log"));
    let step = crash_inside_the_step(&store, &log);

    resolve(
        &store,
        &step,
        flow::Resolution::Done(serde_json::json!("paid 500 (confirmed by hand)")),
    );
    let out = run_to_end(&store, &log);
    assert_exit(&out, 0);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "paid 500 (confirmed by hand)"
    );
    assert_eq!(
        lines(&log).len(),
        1,
        "marked done: the payment never ran again"
    );
    assert_eq!(
        read_run(&store, "payment").unwrap().status,
        flow::RunStatus::Succeeded
    );
}

#[test]
fn allowing_a_rerun_runs_the_step_again_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, log) = (dir.path().join("flow.redb"), dir.path().join("log"));
    let step = crash_inside_the_step(&store, &log);

    resolve(&store, &step, flow::Resolution::Rerun);
    let out = run_to_end(&store, &log);
    assert_exit(&out, 0);
    assert_eq!(
        lines(&log).len(),
        2,
        "the operator allowed exactly one more run"
    );
    let again = run_to_end(&store, &log);
    assert_exit(&again, 0);
    assert_eq!(lines(&log).len(), 2, "a finished run executes nothing");
}

#[flow::step(at_most_once)]
async fn once(tag: String) -> Result<(), flow::Failure> {
    bump(&tag);
    Err(flow::Failure::transient(std::io::Error::other(
        "connection reset",
    )))
}

#[flow::workflow]
async fn once_flow(tag: String) -> Result<(), flow::Failure> {
    once(tag).await
}

#[tokio::test]
async fn an_at_most_once_step_is_never_retried_and_resolving_a_healthy_step_is_refused() {
    let (_dir, flow) = fresh_flow();
    let id = flow::RunId::from("amo-1");
    let err = once_flow::start_with(&flow, flow::RunOptions::new().id(id.clone()), "amo".into())
        .await
        .unwrap()
        .outcome()
        .await
        .expect_err("fails");
    assert!(err.to_string().contains("connection reset"));
    assert_eq!(count("amo"), 1, "even a transient error is not retried");
    let steps = flow.steps(&id).await.unwrap();
    assert_eq!(steps[0].status, flow::store::StepStatus::Failed);
    let err = flow
        .resolve(&id, &steps[0].id, flow::Resolution::Rerun)
        .await
        .expect_err("nothing in doubt");
    assert!(err.to_string().contains("nothing to resolve"), "{err}");
}

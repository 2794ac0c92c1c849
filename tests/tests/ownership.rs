//! Run ownership across processes: a run executing in one process is neither executed again nor
//! silently taken over by another; a cancel from another process reaches it; a run whose process
//! died is free to resume or to cancel.

use flow_runtime as flow;
use flow_tests::{lines, read_run, spawn_child, wait_until};
use std::path::Path;

fn sleeping_child(store: &Path, log: &Path) -> std::process::Child {
    let args = [Path::new("sleep"), store, log];
    let child = spawn_child(env!("CARGO_BIN_EXE_scenario_child"), &args);
    wait_until(20, "the run to sleep", || {
        read_run(store, "sleep").is_some_and(|r| r.status == flow::RunStatus::Sleeping)
    });
    child
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Runtime::new().unwrap().block_on(f)
}

#[test]
fn a_run_executing_elsewhere_is_refused_and_a_cancel_reaches_it() {
    let dir = tempfile::tempdir().unwrap();
    let (store, log) = (dir.path().join("flow.redb"), dir.path().join("log"));
    let child = sleeping_child(&store, &log);
    let pid = child.id();
    let id = flow::RunId::from("sleep");
    block_on(async {
        let flow = flow::Flow::open(&store).unwrap();
        let err = flow.resume(&id).await.expect_err("executing in the child");
        assert!(
            matches!(err, flow::Error::RunInProgress { pid: p, .. } if p == pid),
            "{err:?}"
        );
        assert!(err.to_string().contains(&pid.to_string()), "{err}");
        flow.cancel(&id).await.unwrap();
    });

    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "the child's run ended cancelled"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("cancelled"));
    let run = read_run(&store, "sleep").unwrap();
    assert_eq!(run.status, flow::RunStatus::Cancelled);
    assert_eq!(run.owner, None);
    assert!(lines(&log).is_empty(), "the step after the sleep never ran");
}

#[test]
fn a_run_whose_process_died_can_be_cancelled_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, log) = (dir.path().join("flow.redb"), dir.path().join("log"));
    let mut child = sleeping_child(&store, &log);
    child.kill().unwrap();
    child.wait().unwrap();

    let run = read_run(&store, "sleep").unwrap();
    assert_eq!(
        run.owner.map(|o| o.pid),
        Some(child.id()),
        "the dead owner is on record"
    );
    block_on(async {
        let flow = flow::Flow::open(&store).unwrap();
        flow.cancel(&"sleep".into()).await.unwrap();
    });
    let run = read_run(&store, "sleep").unwrap();
    assert_eq!(
        run.status,
        flow::RunStatus::Cancelled,
        "no live process would pick up a request, so the cancel is applied at once"
    );
}

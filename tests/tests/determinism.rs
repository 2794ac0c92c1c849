//! Determinism helpers: `flow::now()`, `flow::uuid()`, `flow::random()` return the recorded
//! value on replay, and `flow::sleep()` is durable: a restarted run waits only for what is left.

use flow_runtime as flow;
use flow_tests::{
    assert_exit, bump, fresh_flow, lines, read_run, read_steps, spawn_child, wait_until,
};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

static FAIL_ONCE: AtomicBool = AtomicBool::new(true);
static SEEN: Mutex<Vec<(u128, String, u64)>> = Mutex::new(Vec::new());

#[flow::step(idempotent, retry = "none")]
async fn fragile() -> Result<(), flow::Failure> {
    bump("fragile");
    if FAIL_ONCE.swap(false, Ordering::SeqCst) {
        return Err(flow::Failure::permanent("first execution fails"));
    }
    Ok(())
}

#[flow::workflow]
async fn stamped() -> Result<(u128, String, u64), flow::Failure> {
    let now = flow::now().await;
    let id = flow::uuid().await;
    let dice = flow::random().await;
    let millis = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    SEEN.lock().unwrap().push((millis, id.to_string(), dice));
    tokio::time::sleep(Duration::from_millis(5)).await;
    fragile().await?;
    Ok((millis, id.to_string(), dice))
}

#[tokio::test]
async fn now_uuid_and_random_replay_their_recorded_values() {
    let (_dir, flow) = fresh_flow();
    let id = flow::RunId::from("det-1");
    let first = stamped::start_with(&flow, flow::RunOptions::new().id(id.clone()))
        .await
        .unwrap()
        .outcome()
        .await;
    assert!(first.is_err());
    let out = flow.resume(&id).await.unwrap().outcome().await.unwrap();
    let seen = SEEN.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "the workflow body ran twice");
    assert_eq!(
        seen[0], seen[1],
        "the second execution saw the recorded values"
    );
    assert_eq!(out, serde_json::to_value(&seen[0]).unwrap());
    let steps = flow.steps(&id).await.unwrap();
    for name in ["flow::now", "flow::uuid", "flow::random"] {
        assert_eq!(
            steps.iter().filter(|s| s.id.name == name).count(),
            1,
            "{name}"
        );
    }
    // Outside a run they are plain calls.
    assert_ne!(flow::uuid().await, flow::uuid().await);
}

#[test]
fn a_durable_sleep_survives_a_kill_and_waits_only_for_what_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let (store, log) = (dir.path().join("flow.redb"), dir.path().join("log"));
    let args = [Path::new("sleep"), &store, &log];
    let spawn = || spawn_child(env!("CARGO_BIN_EXE_scenario_child"), &args);
    let mut first = spawn();
    // Another process reads the store while the run sleeps.
    wait_until(20, "the run to sleep", || {
        read_run(&store, "sleep").is_some_and(|r| r.status == flow::RunStatus::Sleeping)
    });
    let sleep_step = read_steps(&store, "sleep")
        .into_iter()
        .find(|s| s.id.name == "flow::sleep")
        .expect("the sleep is recorded");
    let wake_at = sleep_step.next_attempt_at_ms.expect("wake-up time");
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(lines(&log).is_empty(), "killed before waking");

    let out = spawn().wait_with_output().unwrap();
    assert_exit(&out, 0);
    let woke = lines(&log);
    assert_eq!(woke.len(), 1);
    let woke_at: u64 = woke[0].split(' ').nth(1).unwrap().parse().unwrap();
    assert!(
        woke_at >= wake_at,
        "woke at {woke_at}, before the recorded {wake_at}"
    );
    let steps = read_steps(&store, "sleep");
    let sleep = steps.iter().find(|s| s.id.name == "flow::sleep").unwrap();
    assert_eq!(sleep.status, flow::store::StepStatus::Succeeded);
    assert_eq!(
        sleep.next_attempt_at_ms,
        Some(wake_at),
        "the resume kept the original wake-up time"
    );
    let run = read_run(&store, "sleep").unwrap();
    assert_eq!(run.status, flow::RunStatus::Succeeded);
}

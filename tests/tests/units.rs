//! Units: a fan-out of thousands of keyed units where a failed unit does not stop the others,
//! a resume re-executes only failed and unfinished units, a staged rollout processes nested,
//! deterministic subsets, and an error budget stops new units.

use flow_runtime as flow;
use flow_tests::{fresh_flow, lines, read_steps, spawn_child, wait_until};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

/// The external effect log of the in-process tests: one file per test, a line per execution
/// of a unit's effect (the file outlives the runs; the store knows nothing of it).
fn log_file(test: &str) -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap())
        .path()
        .join(format!("{test}.log"))
}

fn record_effect(test: &str, key: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_file(test))?;
    file.write_all(format!("{key}\n").as_bytes())
}

fn effects(test: &str) -> Vec<String> {
    lines(&log_file(test))
}

fn counts(test: &str) -> HashMap<String, u32> {
    let mut map = HashMap::new();
    for key in effects(test) {
        *map.entry(key).or_insert(0) += 1;
    }
    map
}

static FIXED: AtomicBool = AtomicBool::new(false);

fn broken_units() -> HashSet<u32> {
    let mut rng = fastrand::Rng::with_seed(42);
    (0..10_000u32).filter(|_| rng.f64() < 0.03).collect()
}

/// Appends its unit key to the effect log; the broken units fail permanently until fixed.
#[flow::step(idempotency_key = format!("{test}/u{i}"), retry = "none")]
async fn touch(test: &str, i: u32, broken: bool) -> Result<(), flow::Failure> {
    record_effect(test, &format!("u{i}")).map_err(flow::Failure::permanent)?;
    if broken && !FIXED.load(Ordering::SeqCst) {
        return Err(flow::Failure::permanent(format!("record u{i} is invalid")));
    }
    Ok(())
}

#[flow::workflow]
async fn ten_thousand(test: String) -> Result<u64, flow::Failure> {
    let broken = broken_units();
    let report = flow::units(0..10_000u32, |i| format!("u{i}"))
        .concurrency(64)
        .run(|i| {
            let test = test.clone();
            let broken = broken.contains(&i);
            async move { touch(&test, i, broken).await }
        })
        .await?;
    Ok(report.succeeded)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_failed_re_executes_exactly_the_failed_units() {
    let (_dir, flow) = fresh_flow();
    let id = flow::RunId::from("retry");
    let broken = broken_units();
    assert!(
        (250..=350).contains(&broken.len()),
        "about 3%: {}",
        broken.len()
    );

    let err = ten_thousand::start_with(
        &flow,
        flow::RunOptions::new().id(id.clone()),
        "retry".into(),
    )
    .await
    .unwrap()
    .outcome()
    .await
    .expect_err("3% of the units fail");
    assert!(
        err.to_string()
            .contains(&format!("{} of 10000 units failed", broken.len())),
        "{err}"
    );
    assert_eq!(
        effects("retry").len(),
        10_000,
        "a failed unit did not stop the others"
    );
    let run = flow.run_record(&id).await.unwrap().unwrap();
    assert_eq!(run.status, flow::RunStatus::Failed);

    FIXED.store(true, Ordering::SeqCst);
    let before = effects("retry").len();
    let out = flow.resume(&id).await.unwrap().outcome().await.unwrap();
    assert_eq!(out, serde_json::json!(10_000));
    let again: HashSet<String> = effects("retry")[before..].iter().cloned().collect();
    let expected: HashSet<String> = broken.iter().map(|i| format!("u{i}")).collect();
    assert_eq!(again, expected, "exactly the failed units ran again");
    assert_eq!(effects("retry").len() - before, broken.len(), "each once");
    let units: Vec<_> = flow
        .steps(&id)
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.id.name == flow::UNIT_STEP)
        .collect();
    assert_eq!(units.len(), 10_000);
    assert!(units
        .iter()
        .all(|u| u.status == flow::store::StepStatus::Succeeded));
}

#[flow::workflow]
async fn rollout_flow(test: String) -> Result<u64, flow::Failure> {
    let report = flow::units(0..10_000u32, |i| format!("u{i}"))
        .concurrency(32)
        .run(|i| {
            let test = test.clone();
            async move { touch(&test, i, false).await }
        })
        .await?;
    Ok(report.succeeded)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_rollout_processes_nested_deterministic_subsets() {
    let (_dir, flow) = fresh_flow();
    let start = |percent: f64| {
        let options = flow::RunOptions::new().id("staged").rollout(percent);
        rollout_flow::start_with(&flow, options, "rollout".into())
    };
    let expect = |percent: f64| -> HashSet<String> {
        (0..10_000u32)
            .map(|i| format!("u{i}"))
            .filter(|k| flow::in_rollout(k, percent))
            .collect()
    };

    let paused = start(5.0)
        .await
        .unwrap()
        .outcome()
        .await
        .expect_err("paused");
    assert!(
        matches!(paused, flow::RunError::Paused { .. }),
        "{paused:?}"
    );
    let five: HashSet<String> = effects("rollout").into_iter().collect();
    assert_eq!(
        five,
        expect(5.0),
        "exactly the 5% subset, by the documented hash"
    );
    assert!(
        (400..=600).contains(&five.len()),
        "{} units in 5%",
        five.len()
    );
    let run = flow.run_record(&"staged".into()).await.unwrap().unwrap();
    assert_eq!(run.status, flow::RunStatus::Paused);

    start(25.0)
        .await
        .unwrap()
        .outcome()
        .await
        .expect_err("paused again");
    let quarter: HashSet<String> = effects("rollout").into_iter().collect();
    assert_eq!(quarter, expect(25.0));
    assert!(five.is_subset(&quarter), "nested");
    assert!(
        (2_300..=2_700).contains(&quarter.len()),
        "{} units in 25%",
        quarter.len()
    );

    let done = start(100.0).await.unwrap().outcome().await.unwrap();
    assert_eq!(done, serde_json::json!(10_000));
    let all = counts("rollout");
    assert_eq!(all.len(), 10_000);
    assert!(
        all.values().all(|&n| n == 1),
        "no unit's effect was repeated"
    );
}

static STARTED: AtomicU64 = AtomicU64::new(0);

/// Units from #100 on fail: the 5% budget trips soon after.
#[flow::step(idempotent, retry = "none")]
async fn degrade(i: u32) -> Result<(), flow::Failure> {
    STARTED.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    if i >= 100 {
        return Err(flow::Failure::permanent(
            "the new mapping rejects this record",
        ));
    }
    Ok(())
}

#[flow::workflow]
async fn budgeted() -> Result<u64, flow::Failure> {
    let report = flow::units(0..10_000u32, |i| format!("u{i}"))
        .concurrency(8)
        .max_failure_rate(5.0, 50)
        .run(|i| async move { degrade(i).await })
        .await?;
    Ok(report.succeeded)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_budget_stops_new_units_and_names_the_threshold() {
    let (_dir, flow) = fresh_flow();
    let err = budgeted::start_with(&flow, flow::RunOptions::new().id("budget"))
        .await
        .unwrap()
        .outcome()
        .await
        .expect_err("the budget trips");
    let message = err.to_string();
    assert!(
        message.contains("error budget exceeded: max_failure_rate 5% after 50 units"),
        "{message}"
    );
    let started = STARTED.load(Ordering::SeqCst);
    // 100 good units, then failures: 5% of ~105 finished units trips at the 6th failure; at
    // most the 8 in flight at that moment finish after it.
    assert!(
        started <= 100 + 6 + 8,
        "{started} units started; none after the trip"
    );
    let run = flow.run_record(&"budget".into()).await.unwrap().unwrap();
    assert_eq!(run.status, flow::RunStatus::Failed);
    assert!(run.error.unwrap().contains("max_failure_rate"));
}

#[test]
fn a_sigkill_during_a_fan_out_repeats_only_units_caught_between_effect_and_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (store, log) = (dir.path().join("flow.redb"), dir.path().join("effects.log"));
    let args = [Path::new("units"), &store, &log];
    let mut child = spawn_child(env!("CARGO_BIN_EXE_scenario_child"), &args);
    wait_until(60, "1,000 unit effects", || lines(&log).len() >= 1_000);
    child.kill().unwrap();
    child.wait().unwrap();
    let first_life = lines(&log).len();
    assert!(first_life < 10_000, "killed mid-fan-out");

    let out = spawn_child(env!("CARGO_BIN_EXE_scenario_child"), &args)
        .wait_with_output()
        .unwrap();
    flow_tests::assert_exit(&out, 0);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "10000");

    let mut seen: HashMap<String, Vec<u32>> = HashMap::new();
    for line in lines(&log) {
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts.len(), 3, "{line}");
        assert!(
            parts[1].ends_with(parts[0]),
            "the body got its unit's key: {line}"
        );
        seen.entry(parts[0].to_owned())
            .or_default()
            .push(parts[2].parse().unwrap());
    }
    assert_eq!(seen.len(), 10_000, "every unit's effect happened");
    let repeated: Vec<_> = seen.iter().filter(|(_, pids)| pids.len() > 1).collect();
    for (key, pids) in &repeated {
        assert_eq!(pids.len(), 2, "{key} ran {} times", pids.len());
        assert_ne!(pids[0], pids[1], "{key} repeated within one life");
    }
    assert!(
        repeated.len() <= 16,
        "{} repeats; only the 16 in flight may repeat",
        repeated.len()
    );
    let units = read_steps(&store, "units")
        .into_iter()
        .filter(|s| s.id.name == flow::UNIT_STEP && s.status == flow::store::StepStatus::Succeeded)
        .count();
    assert_eq!(units, 10_000);
}

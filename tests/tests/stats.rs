//! `stats` through the real binary: exact figures of a window (counts, success rate, errors by
//! class, retries), and `stats --compare` on a store where one step became slower between two
//! windows, read through the operator API of a worker that owns the store.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn obs(dir: &Path) -> Command {
    flow_tests::child_command(env!("CARGO_BIN_EXE_obs_child"), dir)
}

fn report(dir: &Path, input: &str) {
    let out = obs(dir)
        .args(["run", "report", "--input", input])
        .output()
        .unwrap();
    // A run whose render fails for good exits 1; every other one 0
    let expected = if input.contains("render_fails") { 1 } else { 0 };
    flow_tests::assert_exit(&out, expected);
}

fn stats_json(dir: &Path, args: &[&str]) -> Value {
    let out: Output = obs(dir)
        .arg("stats")
        .args(args)
        .args(["--output", "json"])
        .output()
        .unwrap();
    flow_tests::assert_exit(&out, 0);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stats printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now().to_string()
}

#[test]
fn a_window_gives_counts_success_rate_errors_by_class_and_retries() {
    let dir = tempfile::tempdir().unwrap();
    let start = now_rfc3339();
    report(dir.path(), r#"{"render_flaky": 2}"#); // 2 retries, succeeds
    report(dir.path(), r#"{"render_flaky": 2}"#); // 2 retries, succeeds
    report(dir.path(), r#"{"render_fails": "permanent"}"#); // no retry, fails
    report(dir.path(), r#"{"render_fails": "transient"}"#); // 2 retries, attempts used up
    let out = obs(dir.path()).args(["run", "notify"]).output().unwrap();
    flow_tests::assert_exit(&out, 0);

    let stats = stats_json(dir.path(), &["--from", &start]);
    assert_eq!(stats["runs_read"], 5);
    let workflows = stats["workflows"].as_array().unwrap();
    assert_eq!(workflows.len(), 2, "{stats:#}");
    let report = workflows
        .iter()
        .find(|w| w["workflow"] == "report")
        .unwrap();
    let runs = &report["runs"];
    assert_eq!(runs["count"], 4);
    assert_eq!(runs["succeeded"], 2);
    assert_eq!(runs["success_rate"], 0.5);
    assert_eq!(runs["errors"], serde_json::json!({"failed": 2}));
    assert_eq!(runs["retries"], 6);
    assert!(runs["p50_ms"].is_u64() && runs["p99_ms"].is_u64());

    let step = |name: &str| {
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == name)
            .unwrap_or_else(|| panic!("no step {name}: {report:#}"))
            .clone()
    };
    let render = step("obs_child::render");
    assert_eq!(render["count"], 4);
    assert_eq!(render["succeeded"], 2);
    assert_eq!(
        render["errors"],
        serde_json::json!({"permanent": 1, "transient": 1})
    );
    assert_eq!(render["retries"], 6);
    assert_eq!(render["error_rate"], 0.5);
    let fetch = step("obs_child::fetch");
    assert_eq!(fetch["count"], 4);
    assert_eq!(fetch["success_rate"], 1.0);
    assert_eq!(fetch["retries"], 0);

    let notify = workflows
        .iter()
        .find(|w| w["workflow"] == "notify")
        .unwrap();
    assert_eq!(notify["runs"]["success_rate"], 1.0);
    assert_eq!(
        notify["steps"][0]["errors"],
        serde_json::json!({"unclassified": 1})
    );

    // --workflow narrows it; a window before every run holds none
    let only = stats_json(dir.path(), &["--from", &start, "--workflow", "notify"]);
    assert_eq!(only["workflows"].as_array().unwrap().len(), 1);
    assert_eq!(only["workflows"][0]["workflow"], "notify");
    let empty = stats_json(dir.path(), &["--to", &start]);
    assert_eq!(empty["workflows"], serde_json::json!([]));

    // The table says the same, in words
    let table = obs(dir.path())
        .args(["stats", "--since", "1h"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("permanent 1, transient 1"), "{text}");
    assert!(text.contains("step obs_child::render"), "{text}");
}

#[test]
fn compare_marks_exactly_the_step_that_became_slower() {
    let dir = tempfile::tempdir().unwrap();
    let start = now_rfc3339();
    for _ in 0..6 {
        report(dir.path(), r#"{"fetch_ms": 20, "render_ms": 20}"#);
    }
    let middle = now_rfc3339();
    for _ in 0..6 {
        report(dir.path(), r#"{"fetch_ms": 20, "render_ms": 250}"#);
    }

    // A worker owns the store from now on: stats goes through its operator API
    let worker = flow_tests::KillOnDrop(
        obs(dir.path())
            .args(["worker"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let socket = dir.path().join("flow.redb.sock");
    flow_tests::wait_until(60, "the worker's socket", || socket.exists());

    let before = format!("{start}..{middle}");
    let after = format!("{middle}..");
    let cmp = stats_json(
        dir.path(),
        &[
            "--compare",
            "--before",
            &before,
            "--after",
            &after,
            "--min-change",
            "50ms",
        ],
    );
    let rows = cmp["rows"].as_array().unwrap();
    let marked: Vec<&Value> = rows
        .iter()
        .filter(|r| r["step"].is_string() && r["latency_worse"] == true)
        .collect();
    assert_eq!(marked.len(), 1, "{cmp:#}");
    assert_eq!(marked[0]["step"], "obs_child::render");
    assert!(marked[0]["before"]["p95_ms"].as_u64().unwrap() < 250);
    assert!(marked[0]["after"]["p95_ms"].as_u64().unwrap() >= 250);
    assert!(marked[0]["p95_change"].as_f64().unwrap() > 1.0, "{cmp:#}");
    for r in rows {
        assert_eq!(r["before"]["count"], 6, "{r:#}");
        assert_eq!(r["after"]["count"], 6, "{r:#}");
        assert_eq!(r["errors_worse"], false, "{r:#}");
    }
    // The workflow's own duration grew with it
    let workflow = rows.iter().find(|r| r["step"].is_null()).unwrap();
    assert_eq!(workflow["latency_worse"], true, "{cmp:#}");

    // `[flow.stats]` sets the thresholds: a growth under `min_change` is not marked; a flag
    // wins over the setting
    let marked_with = |setting: &str, flags: &[&str]| {
        let out = obs(dir.path())
            .args(["stats", "--compare", "--before", &before, "--after", &after])
            .args(flags)
            .args(["--output", "json"])
            .env("FLOW_STATS__MIN_CHANGE", setting)
            .output()
            .unwrap();
        flow_tests::assert_exit(&out, 0);
        let cmp: Value = serde_json::from_slice(&out.stdout).unwrap();
        let marked = cmp["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["step"].is_string() && r["latency_worse"] == true)
            .count();
        (marked, cmp["thresholds"]["min_change_ms"].clone())
    };
    assert_eq!(marked_with("10s", &[]), (0, 10_000.into()));
    assert_eq!(marked_with("50ms", &[]), (1, 50.into()));
    assert_eq!(
        marked_with("10s", &["--min-change", "50ms"]),
        (1, 50.into())
    );
    let out = obs(dir.path())
        .args(["stats", "--compare", "--before", &before, "--after", &after])
        .env("FLOW_STATS__LATENCY_THRESHOLD", "lots")
        .output()
        .unwrap();
    flow_tests::assert_exit(&out, 3);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("flow.stats.latency_threshold"), "{said}");

    // The table marks that row, and only it among the steps
    let table = obs(dir.path())
        .args(["stats", "--compare", "--before", &before, "--after", &after])
        .args(["--min-change", "50ms"])
        .output()
        .unwrap();
    flow_tests::assert_exit(&table, 0);
    let text = String::from_utf8_lossy(&table.stdout);
    let step_rows: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("step obs_child"))
        .collect();
    assert_eq!(step_rows.len(), 2, "{text}");
    for line in step_rows {
        assert_eq!(
            line.contains("!! latency"),
            line.contains("obs_child::render"),
            "{text}"
        );
    }
    drop(worker);
}

#[test]
fn a_window_that_ends_before_it_starts_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = obs(dir.path())
        .args([
            "stats",
            "--compare",
            "--before",
            "2026-11-27..2026-11-20",
            "--after",
            "2026-11-27..",
        ])
        .output()
        .unwrap();
    flow_tests::assert_exit(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the window ends before it starts"), "{err}");
}

fn show_json(dir: &Path, id: &str) -> Value {
    let out = obs(dir)
        .args(["runs", "show", id, "--output", "json"])
        .output()
        .unwrap();
    flow_tests::assert_exit(&out, 0);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs record the version of the binary that executed them: the package version by
/// default, `flow.app_version` from settings (file or environment) instead; `runs show` prints
/// it, and `stats --compare` sets two versions side by side.
#[test]
fn runs_record_the_app_version_and_compare_sets_two_versions_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let run = |id: &str, version: Option<&str>, input: &str| {
        let mut cmd = obs(dir.path());
        if let Some(version) = version {
            cmd.env("FLOW_APP_VERSION", version);
        }
        let out = cmd
            .args(["run", "report", "--id", id, "--input", input])
            .output()
            .unwrap();
        flow_tests::assert_exit(&out, 0);
    };

    // No setting: the package version of the binary
    run("plain", None, r#"{"fetch_ms": 1, "render_ms": 1}"#);
    let shown = show_json(dir.path(), "plain");
    assert_eq!(shown["run"]["app_version"], env!("CARGO_PKG_VERSION"));
    let table = obs(dir.path())
        .args(["runs", "show", "plain"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains(&format!("version:    {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );

    // 1.0.0 from the environment, fast; 1.1.0 from flow.toml, with a slow render
    for i in 0..6 {
        run(
            &format!("old-{i}"),
            Some("1.0.0"),
            r#"{"fetch_ms": 20, "render_ms": 20}"#,
        );
    }
    std::fs::write(
        dir.path().join("flow.toml"),
        "[flow]\napp_version = \"1.1.0\"\n",
    )
    .unwrap();
    for i in 0..6 {
        run(
            &format!("new-{i}"),
            None,
            r#"{"fetch_ms": 20, "render_ms": 250}"#,
        );
    }
    assert_eq!(
        show_json(dir.path(), "old-0")["run"]["app_version"],
        "1.0.0"
    );
    assert_eq!(
        show_json(dir.path(), "new-5")["run"]["app_version"],
        "1.1.0"
    );
    // check-config says where the version comes from
    let config = obs(dir.path())
        .args(["check-config", "--output", "json"])
        .output()
        .unwrap();
    let rows: Value = serde_json::from_slice(&config.stdout).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "flow.app_version")
        .unwrap_or_else(|| panic!("no flow.app_version: {rows:#}"));
    assert_eq!(row["value"], "1.1.0");
    assert!(
        row["source"].as_str().unwrap().contains("flow.toml"),
        "{row}"
    );

    let cmp = stats_json(
        dir.path(),
        &[
            "--compare",
            "--before-version",
            "1.0.0",
            "--after-version",
            "1.1.0",
            "--min-change",
            "50ms",
        ],
    );
    assert_eq!(cmp["before"]["app_version"], "1.0.0");
    assert_eq!(cmp["after"]["app_version"], "1.1.0");
    let rows = cmp["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "the workflow and its two steps: {cmp:#}");
    for r in rows {
        // The run of the package version is on neither side
        assert_eq!(r["before"]["count"], 6, "{r:#}");
        assert_eq!(r["after"]["count"], 6, "{r:#}");
        let render = r["step"] == "obs_child::render";
        let fetch = r["step"] == "obs_child::fetch";
        assert_eq!(r["latency_worse"], !fetch, "{r:#}");
        assert!(!render || r["p95_change"].as_f64().unwrap() > 1.0, "{r:#}");
    }

    // A window narrows a side further: 1.1.0 before any run of it holds nothing
    let first = show_json(dir.path(), "plain")["run"]["created_at_ms"]
        .as_u64()
        .unwrap();
    let early = jiff::Timestamp::from_millisecond(first as i64)
        .unwrap()
        .to_string();
    let narrowed = stats_json(
        dir.path(),
        &[
            "--compare",
            "--before-version",
            "1.0.0",
            "--after-version",
            "1.1.0",
            "--after",
            &format!("..{early}"),
        ],
    );
    for r in narrowed["rows"].as_array().unwrap() {
        assert!(r["after"].is_null(), "{r:#}");
    }

    // One version alone
    let one = stats_json(dir.path(), &["--since", "1h", "--app-version", "1.0.0"]);
    assert_eq!(one["workflows"][0]["runs"]["count"], 6, "{one:#}");
    let table = obs(dir.path())
        .args([
            "stats",
            "--compare",
            "--before-version",
            "1.0.0",
            "--after-version",
            "1.1.0",
        ])
        .output()
        .unwrap();
    flow_tests::assert_exit(&table, 0);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("before: runs created the first run .. now of version 1.0.0"),
        "{text}"
    );
    assert!(
        text.contains("after:  runs created the first run .. now of version 1.1.0"),
        "{text}"
    );
}

/// A queued run records the version of the worker that executed it, not the enqueuer's.
#[test]
fn a_queued_run_records_the_version_of_the_worker_that_executed_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = obs(dir.path())
        .env("FLOW_APP_VERSION", "1.0.0")
        .args(["enqueue", "report", "--id", "queued", "--input", "{}"])
        .output()
        .unwrap();
    flow_tests::assert_exit(&out, 0);
    assert_eq!(
        show_json(dir.path(), "queued")["run"]["app_version"],
        "1.0.0"
    );
    let worker = flow_tests::KillOnDrop(
        obs(dir.path())
            .env("FLOW_APP_VERSION", "2.0.0-rc.1+9f3c2ab")
            .args(["worker"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Read through the worker's operator API: it owns the store
    flow_tests::wait_until(60, "the queued run to succeed", || {
        show_json(dir.path(), "queued")["run"]["status"] == "succeeded"
    });
    let shown = show_json(dir.path(), "queued");
    assert_eq!(shown["run"]["app_version"], "2.0.0-rc.1+9f3c2ab");
    drop(worker);
}

#[test]
fn a_version_with_spaces_or_a_side_without_its_pair_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = obs(dir.path())
        .env("FLOW_APP_VERSION", "1.0 beta")
        .args(["run", "report", "--input", "{}"])
        .output()
        .unwrap();
    flow_tests::assert_exit(&out, 3);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("flow.app_version"), "{err}");
    assert!(err.contains("a version has no spaces"), "{err}");
    assert!(!dir.path().join("flow.redb").exists(), "nothing ran");

    for args in [
        &["stats", "--compare", "--before-version", "1.0.0"][..],
        &["stats", "--compare", "--after", "2026-11-27.."][..],
        &[
            "stats",
            "--before-version",
            "1.0.0",
            "--after-version",
            "1.1.0",
        ][..],
        &["stats", "--compare"][..],
    ] {
        let out = obs(dir.path()).args(args).output().unwrap();
        flow_tests::assert_exit(&out, 2);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("required"), "{args:?}: {err}");
    }
    let out = obs(dir.path())
        .args(["stats", "--compare", "--before", "2026-11-20..2026-11-27"])
        .output()
        .unwrap();
    flow_tests::assert_exit(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`--compare --before` needs the other window too"),
        "{err}"
    );
}

/// `stats --compare` by rollout stage: a fan-out run in two stages (`--rollout 30%`, then
/// 100%) where the hosts past 30% of the key space deploy slowly. The second stage's deploy
/// step is marked; each side counts exactly the units of its stage.
#[test]
fn compare_by_rollout_stage_marks_the_stage_that_became_slower() {
    let dir = tempfile::tempdir().unwrap();
    let input = r#"{"hosts": 60, "slow_from": 30.0, "slow_ms": 150}"#;
    for rollout in ["30%", "100%"] {
        let out = obs(dir.path())
            .args(["run", "fleet", "--id", "fleet-1", "--input", input])
            .args(["--rollout", rollout])
            .output()
            .unwrap();
        flow_tests::assert_exit(&out, 0);
    }
    let hosts: Vec<String> = (0..60).map(|i| format!("host-{i}")).collect();
    let first = hosts
        .iter()
        .filter(|h| flow_runtime::rollout_bucket(h) < 3000)
        .count() as u64;
    assert!(first > 0 && first < 60, "{first} hosts in the first stage");

    let cmp = stats_json(
        dir.path(),
        &[
            "--compare",
            "--before-rollout",
            "0..30",
            "--after-rollout",
            "30..100",
            "--min-change",
            "50ms",
        ],
    );
    let rows = cmp["rows"].as_array().unwrap();
    let row = |step: &str| {
        rows.iter()
            .find(|r| r["step"] == step)
            .unwrap_or_else(|| panic!("no row {step}: {cmp:#}"))
    };
    let deploy = row("obs_child::deploy");
    assert_eq!(deploy["before"]["count"], first, "{cmp:#}");
    assert_eq!(deploy["after"]["count"], 60 - first, "{cmp:#}");
    assert_eq!(deploy["latency_worse"], true, "{cmp:#}");
    assert!(deploy["before"]["p95_ms"].as_u64().unwrap() < 150);
    assert!(deploy["after"]["p95_ms"].as_u64().unwrap() >= 150);
    assert_eq!(cmp["after"]["rollout"]["from_percent"], 30.0, "{cmp:#}");
    // The workflow's row counts the stage's units, not the one run
    let workflow = rows.iter().find(|r| r["step"].is_null()).unwrap();
    assert_eq!(workflow["before"]["count"], first, "{cmp:#}");
    assert_eq!(workflow["after"]["count"], 60 - first, "{cmp:#}");
    assert_eq!(workflow["latency_worse"], true, "{cmp:#}");

    // A stage that ends before it starts is refused
    let out = obs(dir.path())
        .args(["stats", "--compare", "--before-rollout", "30..5"])
        .args(["--after-rollout", "30..100"])
        .output()
        .unwrap();
    flow_tests::assert_exit(&out, 2);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("ends before it starts"), "{said}");
}

//! `runs prune` through the binary: a dry run counts and deletes nothing; `--status` and
//! `--older-than` select exactly the finished runs they name, which go with their steps;
//! unfinished runs stay however old; without `--older-than` the settings' `flow.retention`
//! applies; bad durations are refused with a clear message.

use flow_runtime as flow;
use flow_runtime::store::Write;
use flow_runtime::store::{RunId, RunRecord, RunStatus, StepId, StepRecord, StepStatus};
use flow_tests::{assert_exit, read_run, read_steps};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

#[flow::step(idempotent, retry = "none")]
async fn fetch(n: u32) -> Result<u32, flow::Failure> {
    Ok(n * 10)
}

#[flow::workflow]
async fn succeeds(n: u32) -> Result<u32, flow::Failure> {
    fetch(n).await
}

#[flow::workflow]
async fn fails(n: u32) -> Result<u32, flow::Failure> {
    fetch(n).await?;
    Err(flow::Failure::permanent(std::io::Error::other(
        "the remote refused",
    )))
}

const UNFINISHED: [RunStatus; 5] = [
    RunStatus::Queued,
    RunStatus::Running,
    RunStatus::Sleeping,
    RunStatus::NeedsAttention,
    RunStatus::Paused,
];

/// A record last changed at `at_ms` (1970: older than any retention).
fn old_run(id: &str, status: RunStatus, at_ms: u64) -> RunRecord {
    RunRecord {
        id: RunId::from(id),
        workflow: "succeeds".into(),
        status,
        input: serde_json::json!(1),
        output: None,
        error: None,
        trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
        created_at_ms: at_ms,
        updated_at_ms: at_ms,
        executions: 1,
        attention: None,
        owner: None,
        lease_expires_at_ms: None,
        queue: None,
        wake_at_ms: None,
        scheduled: None,
        app_version: None,
        traceparent: None,
    }
}

fn old_step(run: &str) -> StepRecord {
    StepRecord {
        run_id: RunId::from(run),
        id: StepId {
            name: "prune_cli::fetch".into(),
            key: "k".into(),
            occurrence: 0,
        },
        status: StepStatus::Succeeded,
        attempt: 1,
        next_attempt_at_ms: None,
        output: Some(serde_json::json!(10)),
        error: None,
        error_class: None,
        started_at_ms: 1_000,
        finished_at_ms: Some(1_001),
        args: None,
        failure: None,
    }
}

/// A store with runs executed now (`ok-1..3` succeeded, `bad-1..2` failed, one step each), an
/// old succeeded run `old-ok` and old unfinished runs `stuck-<status>`, each with a step.
fn seed(path: &Path) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let flow = flow::Flow::open(path).unwrap();
        for n in 1..=3 {
            let opts = flow::RunOptions::new().id(format!("ok-{n}"));
            let out = succeeds::start_with(&flow, opts, n).await.unwrap();
            assert_eq!(out.outcome().await.unwrap(), n * 10);
        }
        for n in 1..=2 {
            let opts = flow::RunOptions::new().id(format!("bad-{n}"));
            let out = fails::start_with(&flow, opts, n).await.unwrap();
            assert!(out.outcome().await.is_err());
        }
        let mut writes = vec![
            Write::PutRun(old_run("old-ok", RunStatus::Succeeded, 1_000)),
            Write::PutStep(old_step("old-ok")),
        ];
        for status in UNFINISHED {
            let id = format!("stuck-{status}");
            writes.push(Write::PutRun(old_run(&id, status, 1_000)));
            writes.push(Write::PutStep(old_step(&id)));
        }
        flow.store().commit(writes).await.unwrap();
    });
}

fn cli(path: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = path.parent().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_cli_child"));
    command
        .args(args)
        .current_dir(dir)
        .env("FLOW_STORE", path)
        .env_remove("FLOW_RETENTION");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The ids `runs list` shows, sorted.
fn listed(path: &Path) -> Vec<String> {
    let out = cli(
        path,
        &["runs", "list", "--limit", "1000", "--output", "json"],
        &[],
    );
    assert_exit(&out, 0);
    let mut ids: Vec<String> = json(&out)
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn all_ids() -> Vec<String> {
    let mut ids: Vec<String> = ["ok-1", "ok-2", "ok-3", "bad-1", "bad-2", "old-ok"]
        .iter()
        .map(|s| s.to_string())
        .chain(UNFINISHED.iter().map(|s| format!("stuck-{s}")))
        .collect();
    ids.sort();
    ids
}

fn seeded() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flow.redb");
    seed(&path);
    (dir, path)
}

#[test]
fn a_dry_run_counts_what_a_prune_deletes_and_deletes_nothing() {
    let (_dir, path) = seeded();
    let out = cli(
        &path,
        &[
            "runs",
            "prune",
            "--older-than",
            "0s",
            "--dry-run",
            "--output",
            "json",
        ],
        &[],
    );
    assert_exit(&out, 0);
    let counted = json(&out);
    assert_eq!(counted["dry_run"], true);
    assert_eq!(counted["runs"], 6, "{counted}");
    assert_eq!(counted["steps"], 6, "{counted}");
    assert_eq!(counted["by_status"]["succeeded"]["runs"], 4);
    assert_eq!(counted["by_status"]["failed"]["runs"], 2);
    assert_eq!(counted["by_status"]["cancelled"]["runs"], 0);
    assert_eq!(listed(&path), all_ids(), "a dry run deletes nothing");
    assert_eq!(read_steps(&path, "ok-1").len(), 1);

    let table = cli(
        &path,
        &["runs", "prune", "--older-than", "0s", "--dry-run"],
        &[],
    );
    assert_exit(&table, 0);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains(
            "would delete 6 runs, 6 steps and 0 settled alerts; nothing was deleted (dry run)"
        ),
        "{text}"
    );

    // The prune itself deletes what the dry run counted
    let out = cli(
        &path,
        &["runs", "prune", "--older-than", "0s", "--output", "json"],
        &[],
    );
    assert_exit(&out, 0);
    let deleted = json(&out);
    assert_eq!(deleted["dry_run"], false);
    assert_eq!(deleted["runs"], counted["runs"]);
    assert_eq!(deleted["steps"], counted["steps"]);
}

#[test]
fn pruning_failed_runs_deletes_only_them_and_their_steps() {
    let (_dir, path) = seeded();
    let out = cli(
        &path,
        &["runs", "prune", "--status", "failed", "--older-than", "0s"],
        &[],
    );
    assert_exit(&out, 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("deleted 2 runs, 2 steps and 0 settled alerts"),
        "{text}"
    );

    let expected: Vec<String> = all_ids()
        .into_iter()
        .filter(|id| !id.starts_with("bad-"))
        .collect();
    assert_eq!(listed(&path), expected);
    for id in ["bad-1", "bad-2"] {
        assert!(read_run(&path, id).is_none(), "{id}");
        assert!(read_steps(&path, id).is_empty(), "{id}'s steps are gone");
        let show = cli(&path, &["runs", "show", id], &[]);
        assert_exit(&show, 2);
    }
    assert_eq!(
        read_steps(&path, "ok-1").len(),
        1,
        "other runs keep their steps"
    );

    // A pruned id is free again: starting it executes the workflow anew
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let flow = flow::Flow::open(&path).unwrap();
        let opts = flow::RunOptions::new().id("bad-1");
        let out = succeeds::start_with(&flow, opts, 7).await.unwrap();
        assert_eq!(out.outcome().await.unwrap(), 70);
    });
}

#[test]
fn unfinished_runs_are_never_pruned_however_old() {
    let (_dir, path) = seeded();
    let out = cli(
        &path,
        &["runs", "prune", "--older-than", "0s", "--output", "json"],
        &[],
    );
    assert_exit(&out, 0);
    assert_eq!(json(&out)["runs"], 6);
    let stuck: Vec<String> = UNFINISHED.iter().map(|s| format!("stuck-{s}")).collect();
    let mut expected = stuck.clone();
    expected.sort();
    assert_eq!(listed(&path), expected);
    for (id, status) in stuck.iter().zip(UNFINISHED) {
        assert_eq!(read_run(&path, id).unwrap().status, status);
        assert_eq!(read_steps(&path, id).len(), 1, "{id} keeps its step");
    }
}

#[test]
fn without_older_than_the_settings_retention_applies() {
    let (dir, path) = seeded();
    // Neither a flag nor a retention: nothing to go by
    let out = cli(&path, &["runs", "prune"], &[]);
    assert_exit(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pass --older-than DURATION"), "{err}");
    assert!(err.contains("flow.retention"), "{err}");
    let out = cli(
        &path,
        &["runs", "prune", "--status", "failed"],
        &[("FLOW_RETENTION__SUCCEEDED", "1d")],
    );
    assert_exit(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("keeps failed runs forever"), "{err}");
    assert_eq!(listed(&path), all_ids());

    // Succeeded runs are kept a day: only the one from 1970 goes; failed ones are kept forever
    std::fs::write(
        dir.path().join("flow.toml"),
        "[flow.retention]\nsucceeded = \"1d\"\n",
    )
    .unwrap();
    let out = cli(&path, &["runs", "prune", "--output", "json"], &[]);
    assert_exit(&out, 0);
    let deleted = json(&out);
    assert_eq!(deleted["runs"], 1, "{deleted}");
    assert_eq!(deleted["by_status"]["succeeded"]["older_than"], "1day");
    assert_eq!(deleted["by_status"]["failed"]["older_than"], Value::Null);
    assert!(read_run(&path, "old-ok").is_none());
    assert!(read_steps(&path, "old-ok").is_empty());
    assert_eq!(listed(&path).len(), all_ids().len() - 1);

    // One duration for every status, from the environment
    let out = cli(
        &path,
        &["runs", "prune", "--output", "json"],
        &[("FLOW_RETENTION", "0s")],
    );
    assert_exit(&out, 0);
    assert_eq!(json(&out)["runs"], 5);
}

#[test]
fn bad_durations_are_refused_with_what_to_write() {
    let (dir, path) = seeded();
    let out = cli(&path, &["runs", "prune", "--older-than", "a month"], &[]);
    assert_exit(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("expected a duration such as `30d`"), "{err}");

    let out = cli(
        &path,
        &["runs", "prune", "--status", "running", "--older-than", "0s"],
        &[],
    );
    assert_exit(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("succeeded, failed, cancelled"), "{err}");

    let out = cli(&path, &["runs", "prune"], &[("FLOW_RETENTION", "monthly")]);
    assert_exit(&out, 3);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("flow.retention"), "{err}");
    assert!(
        err.contains("`monthly` is not a duration such as `30d`"),
        "{err}"
    );
    assert!(err.contains("environment variable FLOW_RETENTION"), "{err}");

    // Every bad field of the table is listed, each with its line
    std::fs::write(
        dir.path().join("flow.toml"),
        "[flow.retention]\nsucceeded = \"soon\"\nfailed = \"later\"\nsucceded = \"1d\"\n",
    )
    .unwrap();
    let out = cli(&path, &["check-config"], &[]);
    assert_exit(&out, 3);
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "flow.retention.succeeded: `soon` is not a duration",
        "flow.retention.failed: `later` is not a duration",
        "flow.retention.succeded: no such setting; did you mean `succeeded`?",
    ] {
        assert!(err.contains(needle), "{needle:?} missing from:\n{err}");
    }
    std::fs::remove_file(dir.path().join("flow.toml")).unwrap();
    assert_eq!(listed(&path), all_ids(), "nothing was deleted");
}

//! End-to-end: the `sync_records` example binary driven as an operator would, through its
//! generated CLI, against its flaky API on 127.0.0.1. Assertions read the JSON output, the
//! JSON log lines, the exit codes and the API's ledger of effects.
#![allow(clippy::unwrap_used)] // in a test an unwrap is an assertion

use flow_examples::api::read_ledger;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sync_records"));
    cmd.args(args)
        .current_dir(dir)
        .env("FLOW_STORE", dir.join("flow.redb"))
        .env("FLOW_LOG_FORMAT", "json")
        .env("SYNC_DATA_DIR", dir)
        // Flaky enough to exercise retries, never enough to exhaust 12 attempts (0.2^12).
        .env("SYNC_FAILURE_RATE", "0.2")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn run(dir: &Path, args: &[&str]) -> Output {
    command(dir, args).output().unwrap()
}

fn spawn(dir: &Path, args: &[&str]) -> Child {
    command(dir, args).spawn().unwrap()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Records created per record id, and repeated pushes, from the ledger.
fn ledger(dir: &Path) -> (HashMap<String, u32>, usize) {
    let entries = read_ledger(&dir.join("api-ledger.jsonl")).unwrap();
    let mut created = HashMap::new();
    let mut duplicates = 0;
    for e in entries {
        if e.outcome == "created" {
            *created.entry(e.record).or_insert(0) += 1;
        } else {
            duplicates += 1;
        }
    }
    (created, duplicates)
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

const SYNC_50: &[&str] = &[
    "run",
    "sync_records",
    "--input",
    r#"{"count": 50}"#,
    "--id",
    "sync-demo",
    "--output",
    "json",
];

#[test]
fn a_second_run_repeats_nothing_and_logs_carry_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let first = run(dir.path(), SYNC_50);
    assert_eq!(code(&first), Some(0), "{}", stderr(&first));
    let out = json(&first);
    assert_eq!(out["status"], "succeeded");
    assert_eq!(out["output"]["pushed"], 50);
    let (created, _) = ledger(dir.path());
    assert_eq!(created.len(), 50);
    assert!(created.values().all(|&n| n == 1));

    // Every log line inside the run carries its run id and trace id; transient failures are
    // retried and logged with their class and delay.
    let trace = out["trace_id"].as_str().unwrap().to_owned();
    let mut in_run = 0;
    let mut transient = 0;
    for line in stderr(&first).lines() {
        let Ok(entry) = serde_json::from_str::<Value>(line) else {
            panic!("a log line is not JSON: {line}");
        };
        let spans = entry["spans"].as_array().cloned().unwrap_or_default();
        if let Some(run_span) = spans.iter().find(|s| s["name"] == "run") {
            in_run += 1;
            assert_eq!(run_span["run_id"], "sync-demo", "{line}");
            assert_eq!(run_span["trace_id"], trace.as_str(), "{line}");
        }
        if entry["fields"]["class"] == "transient" {
            transient += 1;
            assert_eq!(entry["span"]["name"], "step", "{line}");
            assert!(entry["fields"]["delay_ms"].is_u64(), "{line}");
        }
    }
    assert!(in_run > 0, "no log line inside the run");
    assert!(
        transient > 0,
        "the flaky API's 503s were retried and logged"
    );

    let second = run(dir.path(), SYNC_50);
    assert_eq!(code(&second), Some(0));
    assert_eq!(json(&second)["output"], out["output"]);
    assert_eq!(
        ledger(dir.path()).0,
        created,
        "the second run pushed nothing"
    );
}

#[test]
fn killed_mid_run_it_is_listed_shown_and_resumed_with_the_same_trace() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "run",
        "sync_records",
        "--input",
        r#"{"count": 200, "delay_ms": 15}"#,
        "--id",
        "big",
    ];
    let mut child = spawn(dir.path(), &args);
    let ledger_file = dir.path().join("api-ledger.jsonl");
    wait_for("40 pushes", || {
        read_ledger(&ledger_file).map(|l| l.len()).unwrap_or(0) >= 40
    });

    // A second process lists runs while the run is in progress.
    let listed = run(dir.path(), &["runs", "list", "--output", "json"]);
    assert_eq!(code(&listed), Some(0), "{}", stderr(&listed));
    let runs = json(&listed);
    assert_eq!(runs[0]["run_id"], "big");
    assert_eq!(runs[0]["status"], "running");

    child.kill().unwrap();
    child.wait().unwrap();
    let shown = run(dir.path(), &["runs", "show", "big", "--output", "json"]);
    assert_eq!(code(&shown), Some(0), "{}", stderr(&shown));
    let shown = json(&shown);
    assert_eq!(shown["run"]["status"], "running");
    let done = shown["steps"].as_array().unwrap().len();
    assert!(done > 1 && done < 400, "killed mid-run with {done} steps");
    let next = shown["next"].to_string();
    assert!(next.contains("sync_records runs resume big"), "{next}");
    let trace = shown["run"]["trace_id"].as_str().unwrap().to_owned();

    let resumed = run(dir.path(), &["runs", "resume", "big", "--output", "json"]);
    assert_eq!(code(&resumed), Some(0), "{}", stderr(&resumed));
    let resumed = json(&resumed);
    assert_eq!(resumed["output"]["pushed"], 200);
    assert!(
        resumed["output"]["replayed"].as_u64().unwrap() >= 30,
        "pushes before the kill were replayed"
    );
    assert_eq!(
        resumed["trace_id"],
        trace.as_str(),
        "the trace id survives the resume"
    );
    let (created, duplicates) = ledger(dir.path());
    assert_eq!(created.len(), 200);
    assert!(
        created.values().all(|&n| n == 1),
        "a record was created twice"
    );
    assert!(
        duplicates <= 8,
        "{duplicates} repeated pushes; only those in flight may repeat"
    );
}

#[test]
fn a_dry_run_prints_the_plan_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        dir.path(),
        &[
            "run",
            "sync_records",
            "--input",
            r#"{"count": 50}"#,
            "--dry-run",
            "--output",
            "json",
        ],
    );
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let out = json(&out);
    let plan = out["plan"].as_array().unwrap();
    assert_eq!(plan.len(), 51, "50 pushes and the notification");
    // A step keyed like its unit is stored under the unit's key alone.
    assert_eq!(plan[0]["action"], "would call push_record key=rec-00001");
    // The API client is app state (`skip(api)`): the plan lists the record and the delay only.
    let args = plan[0]["args"].as_array().unwrap();
    assert_eq!(args.len(), 2, "{args:?}");
    assert_eq!(args[0]["id"], "rec-00001");
    assert!(ledger(dir.path()).0.is_empty(), "nothing was pushed");
    let listed = json(&run(dir.path(), &["runs", "list", "--output", "json"]));
    assert_eq!(listed, serde_json::json!([]), "nothing was stored");
}

#[test]
fn exit_codes_tell_scripts_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert_eq!(code(&run(d, &["run"])), Some(2), "missing argument");
    let unknown = run(d, &["run", "no_such_workflow"]);
    assert_eq!(code(&unknown), Some(2));
    assert!(
        stderr(&unknown).contains("sync_records"),
        "lists the workflows"
    );
    let malformed = run(d, &["run", "sync_records", "--input", "{count: 5"]);
    assert_eq!(code(&malformed), Some(2));
    assert!(
        stderr(&malformed).contains("not valid JSON"),
        "{}",
        stderr(&malformed)
    );
    let wrong_type = run(
        d,
        &["run", "sync_records", "--input", r#"{"count": "five"}"#],
    );
    assert_eq!(code(&wrong_type), Some(2), "{}", stderr(&wrong_type));
    let failed = command(
        d,
        &[
            "run",
            "sync_records",
            "--input",
            r#"{"count": 17}"#,
            "--output",
            "json",
        ],
    )
    .env("SYNC_INVALID_EVERY", "17")
    .output()
    .unwrap();
    assert_eq!(code(&failed), Some(1), "{}", stderr(&failed));
    assert_eq!(json(&failed)["status"], "failed");
    let unknown_run = run(d, &["runs", "show", "nope"]);
    assert_eq!(code(&unknown_run), Some(2));
    assert!(stderr(&unknown_run).contains("nope"));
    let config = command(d, &["runs", "list"])
        .env("SYNC_BATCH_SIZE", "0")
        .output()
        .unwrap();
    assert_eq!(code(&config), Some(3));
}

#[test]
fn a_config_error_lists_every_bad_field_with_its_source_before_running_anything() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("flow.toml"), "[app]\nfailure_rate = 2.5\n").unwrap();
    let out = command(
        dir.path(),
        &["run", "sync_records", "--input", r#"{"count": 5}"#],
    )
    .env_remove("SYNC_FAILURE_RATE")
    .env("SYNC_BATCH_SIZE", "0")
    .env("SYNC_API_URL", "not a url")
    .output()
    .unwrap();
    assert_eq!(code(&out), Some(3));
    let err = stderr(&out);
    assert!(err.contains("3 problems"), "{err}");
    assert!(
        err.contains("app.batch_size") && err.contains("environment variable SYNC_BATCH_SIZE"),
        "{err}"
    );
    assert!(
        err.contains("app.api_url") && err.contains("environment variable SYNC_API_URL"),
        "{err}"
    );
    assert!(
        err.contains("app.failure_rate") && err.contains("flow.toml"),
        "{err}"
    );
    assert!(
        !dir.path().join("flow.redb").exists(),
        "nothing ran, no store was created"
    );
}

#[test]
fn a_secret_never_appears_in_any_output_log_or_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "s3cr3t-token-0a1b2c";
    let with_secret = |args: &[&str]| {
        command(dir.path(), args)
            .env("SYNC_TOKEN", secret)
            .arg("-vv")
            .output()
            .unwrap()
    };
    let outputs = [
        with_secret(SYNC_50),
        with_secret(&["check-config"]),
        with_secret(&["check-config", "--output", "json"]),
        with_secret(&["runs", "show", "sync-demo", "--output", "json"]),
        with_secret(&["runs", "list"]),
        with_secret(&["runbook"]),
        with_secret(&["--help"]),
        with_secret(&["run", "--help"]),
    ];
    assert_eq!(
        code(&outputs[0]),
        Some(0),
        "the token works: {}",
        stderr(&outputs[0])
    );
    for out in &outputs {
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(out));
        assert!(!all.contains(secret), "the secret leaked: {all}");
    }
    let config = json(&outputs[2]);
    let token = config
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "app.token")
        .unwrap();
    assert_eq!(token["value"], "[redacted]");
    assert_eq!(token["source"], "environment variable SYNC_TOKEN");
    let store = std::fs::read(dir.path().join("flow.redb")).unwrap();
    assert!(
        !store.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "the secret is in the store"
    );
}

#[test]
fn fork_reuses_the_checkpoints_before_the_step() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(code(&run(dir.path(), SYNC_50)), Some(0));
    let before = std::fs::read_to_string(dir.path().join("api-ledger.jsonl")).unwrap();
    let fork = run(
        dir.path(),
        &[
            "runs",
            "fork",
            "sync-demo",
            "--from-step",
            "notify_team",
            "--new-id",
            "fork-1",
            "--output",
            "json",
        ],
    );
    assert_eq!(code(&fork), Some(0), "{}", stderr(&fork));
    let fork = json(&fork);
    assert_eq!(fork["run_id"], "fork-1");
    assert_eq!(fork["output"]["pushed"], 50);
    let after = std::fs::read_to_string(dir.path().join("api-ledger.jsonl")).unwrap();
    assert_eq!(
        before, after,
        "the pushes were replayed from the original run, not repeated"
    );
    let shown = json(&run(
        dir.path(),
        &["runs", "show", "fork-1", "--output", "json"],
    ));
    let steps = shown["steps"].as_array().unwrap();
    assert!(steps
        .iter()
        .any(|s| s["id"]["name"].as_str().unwrap().ends_with("notify_team")));
    let err = run(
        dir.path(),
        &["runs", "fork", "sync-demo", "--from-step", "nope"],
    );
    assert_eq!(code(&err), Some(2));
    assert!(
        stderr(&err).contains("push_record"),
        "lists the steps: {}",
        stderr(&err)
    );
}

#[test]
fn an_interrupted_notification_needs_attention_and_is_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "run",
        "sync_records",
        "--input",
        r#"{"count": 5}"#,
        "--id",
        "notify",
    ];
    let mut child = command(dir.path(), &args)
        .env("SYNC_NOTIFY_DELAY_MS", "5000")
        .env("SYNC_FAILURE_RATE", "0")
        .spawn()
        .unwrap();
    wait_for("the notification to start", || {
        let shown = run(dir.path(), &["runs", "show", "notify", "--output", "json"]);
        code(&shown) == Some(0)
            && json(&shown)["steps"].as_array().unwrap().iter().any(|s| {
                s["status"] == "started"
                    && s["id"]["name"].as_str().unwrap().ends_with("notify_team")
            })
    });
    child.kill().unwrap();
    child.wait().unwrap();

    let again = run(
        dir.path(),
        &[
            "run",
            "sync_records",
            "--input",
            r#"{"count": 5}"#,
            "--id",
            "notify",
            "--output",
            "json",
        ],
    );
    assert_eq!(code(&again), Some(4), "needs attention: {}", stderr(&again));
    let again = json(&again);
    let key = again["attention"]["step"]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(again["next"]
        .to_string()
        .contains("runs resolve notify --step"));

    let resolved = run(
        dir.path(),
        &[
            "runs", "resolve", "notify", "--step", &key, "--done", "--output", "json",
        ],
    );
    assert_eq!(code(&resolved), Some(0), "{}", stderr(&resolved));
    let resumed = run(
        dir.path(),
        &["runs", "resume", "notify", "--output", "json"],
    );
    assert_eq!(code(&resumed), Some(0), "{}", stderr(&resumed));
    assert_eq!(json(&resumed)["status"], "succeeded");
}

#[test]
fn retry_failed_resumes_failed_runs_after_the_cause_is_fixed() {
    let dir = tempfile::tempdir().unwrap();
    // The API is down: fetch_records exhausts its attempts and the run fails.
    let down = command(
        dir.path(),
        &[
            "run",
            "sync_records",
            "--input",
            r#"{"count": 5}"#,
            "--id",
            "down",
        ],
    )
    .env("SYNC_API_URL", "http://127.0.0.1:9")
    .output()
    .unwrap();
    assert_eq!(code(&down), Some(1), "{}", stderr(&down));
    let failed = json(&run(
        dir.path(),
        &["runs", "list", "--status", "failed", "--output", "json"],
    ));
    assert_eq!(failed[0]["run_id"], "down");

    let retried = run(
        dir.path(),
        &[
            "runs",
            "retry-failed",
            "--workflow",
            "sync_records",
            "--output",
            "json",
        ],
    );
    assert_eq!(code(&retried), Some(0), "{}", stderr(&retried));
    let retried = json(&retried);
    assert_eq!(retried[0]["run_id"], "down");
    assert_eq!(retried[0]["status"], "succeeded");
}

#[test]
fn a_cancel_from_another_process_stops_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "run",
        "sync_records",
        "--input",
        r#"{"count": 200, "delay_ms": 20}"#,
        "--id",
        "long",
    ];
    let child = spawn(dir.path(), &args);
    let ledger_file = dir.path().join("api-ledger.jsonl");
    wait_for("some pushes", || {
        read_ledger(&ledger_file).map(|l| l.len()).unwrap_or(0) >= 10
    });
    let cancel = run(dir.path(), &["runs", "cancel", "long", "--output", "json"]);
    assert_eq!(code(&cancel), Some(0), "{}", stderr(&cancel));
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), Some(1), "the cancelled run's command fails");
    let shown = json(&run(
        dir.path(),
        &["runs", "show", "long", "--output", "json"],
    ));
    assert_eq!(shown["run"]["status"], "cancelled");
    assert!(ledger(dir.path()).0.len() < 200, "the run stopped early");
}

#[test]
fn check_config_runbook_and_completions() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("flow.toml"), "[app]\nbatch_size = 4\n").unwrap();
    let config = run(dir.path(), &["check-config", "--output", "json"]);
    assert_eq!(code(&config), Some(0), "{}", stderr(&config));
    let rows = json(&config);
    let find = |key: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == key)
            .cloned()
            .unwrap()
    };
    assert_eq!(find("app.batch_size")["value"], 4);
    assert!(find("app.batch_size")["source"]
        .as_str()
        .unwrap()
        .contains("flow.toml"));
    assert_eq!(
        find("flow.store")["source"],
        "environment variable FLOW_STORE"
    );
    assert_eq!(find("flow.log_level")["source"], "default");

    let runbook = run(dir.path(), &["runbook"]);
    assert_eq!(code(&runbook), Some(0));
    let text = String::from_utf8_lossy(&runbook.stdout);
    assert!(text.contains("## Workflow `sync_records`"), "{text}");
    assert!(
        text.contains("sync_records runs resolve <id> --step <key> --done"),
        "{text}"
    );
    assert!(text.contains("idempotency_key = record.id"), "{text}");
    let runbook = json(&run(dir.path(), &["runbook", "--format", "json"]));
    assert_eq!(runbook["workflows"][0]["name"], "sync_records");

    let completions = run(dir.path(), &["completions", "bash"]);
    assert_eq!(code(&completions), Some(0));
    assert!(String::from_utf8_lossy(&completions.stdout).contains("sync_records"));
}

#[test]
fn at_any_log_level_lines_inside_a_run_carry_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = command(
        dir.path(),
        &[
            "run",
            "sync_records",
            "--input",
            r#"{"count": 20}"#,
            "--id",
            "quiet",
            "-q",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let lines: Vec<Value> = stderr(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!lines.is_empty(), "retries and rejections are logged at -q");
    for line in &lines {
        assert_ne!(
            line["level"], "INFO",
            "-q shows warnings and errors only: {line}"
        );
        let run_span = line["spans"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == "run"));
        assert_eq!(
            run_span.map(|s| s["run_id"].clone()),
            Some("quiet".into()),
            "{line}"
        );
    }
}

#[test]
fn rejected_records_fail_their_units_and_retry_failed_pushes_only_them_after_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let first = command(dir.path(), SYNC_50)
        .env("SYNC_INVALID_EVERY", "17")
        .output()
        .unwrap();
    assert_eq!(code(&first), Some(1), "{}", stderr(&first));
    let out = json(&first);
    assert!(
        out["error"]
            .as_str()
            .unwrap()
            .contains("2 of 50 units failed"),
        "{out}"
    );
    // A validation error is logged as permanent and never retried.
    let permanent = stderr(&first)
        .lines()
        .filter(|l| l.contains(r#""class":"permanent""#))
        .count();
    assert_eq!(permanent, 2, "{}", stderr(&first));
    let shown = json(&run(
        dir.path(),
        &["runs", "show", "sync-demo", "--output", "json"],
    ));
    let mut failed: Vec<&str> = shown["units"]["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["key"].as_str().unwrap())
        .collect();
    failed.sort();
    assert_eq!(failed, ["rec-00017", "rec-00034"]);
    assert_eq!(shown["units"]["succeeded"], 48);
    assert_eq!(ledger(dir.path()).0.len(), 48);

    // The fix: the API now accepts the records. Retry one unit by key, then the rest.
    let one = command(
        dir.path(),
        &[
            "runs",
            "retry-unit",
            "sync-demo",
            "--unit",
            "rec-00017",
            "--output",
            "json",
        ],
    )
    .env("SYNC_ACCEPT_INVALID", "true")
    .output()
    .unwrap();
    assert_eq!(code(&one), Some(0), "{}", stderr(&one));
    assert_eq!(json(&one)["status"], "paused", "one unit retried, one left");
    assert_eq!(ledger(dir.path()).0.len(), 49);
    let rest = command(
        dir.path(),
        &["runs", "retry-failed", "sync-demo", "--output", "json"],
    )
    .env("SYNC_ACCEPT_INVALID", "true")
    .output()
    .unwrap();
    assert_eq!(code(&rest), Some(0), "{}", stderr(&rest));
    let rest = json(&rest);
    assert_eq!(rest["output"]["pushed"], 50);
    assert_eq!(
        rest["output"]["replayed"], 49,
        "only rec-00034 was pushed by this execution"
    );
    let (created, _) = ledger(dir.path());
    assert_eq!(created.len(), 50);
    assert!(
        created.values().all(|&n| n == 1),
        "no record was pushed twice"
    );
}

#[test]
fn an_error_budget_stops_the_sync_and_names_the_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let out = command(
        dir.path(),
        &[
            "run",
            "sync_records",
            "--input",
            r#"{"count": 400}"#,
            "--id",
            "bad",
            "--output",
            "json",
        ],
    )
    .env("SYNC_INVALID_EVERY", "5")
    .env("SYNC_FAILURE_RATE", "0")
    .output()
    .unwrap();
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    let error = json(&out)["error"].as_str().unwrap().to_owned();
    assert!(
        error.contains("error budget exceeded: max_failure_rate 10% after 50 units"),
        "{error}"
    );
    let pushed = ledger(dir.path()).0.len();
    assert!(
        pushed < 100,
        "no new pushes after the trip: {pushed} of 320 valid records"
    );
    assert!(
        stderr(&out).contains(r#""alert":true"#),
        "an alert-worthy event is logged"
    );
}

#[test]
fn a_staged_rollout_pushes_nested_subsets_and_100_percent_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let rollout = |share: &str| {
        run(
            dir.path(),
            &[
                "run",
                "sync_records",
                "--input",
                r#"{"count": 400}"#,
                "--id",
                "staged",
                "--rollout",
                share,
                "--output",
                "json",
            ],
        )
    };
    let keys = |share: f64| -> std::collections::HashSet<String> {
        (1..=400)
            .map(|i| format!("rec-{i:05}"))
            .filter(|k| flow_runtime::in_rollout(k, share))
            .collect()
    };
    let five = rollout("5%");
    assert_eq!(code(&five), Some(0), "{}", stderr(&five));
    assert_eq!(json(&five)["status"], "paused");
    let pushed: std::collections::HashSet<String> = ledger(dir.path()).0.into_keys().collect();
    assert_eq!(pushed, keys(5.0), "exactly the stable 5% subset");
    assert!((5..=40).contains(&pushed.len()), "{} of 400", pushed.len());

    assert_eq!(json(&rollout("25%"))["status"], "paused");
    let quarter: std::collections::HashSet<String> = ledger(dir.path()).0.into_keys().collect();
    assert_eq!(quarter, keys(25.0));
    assert!(pushed.is_subset(&quarter));

    let all = rollout("100%");
    assert_eq!(code(&all), Some(0), "{}", stderr(&all));
    let all = json(&all);
    assert_eq!(all["status"], "succeeded");
    assert_eq!(all["output"]["pushed"], 400);
    let (created, _) = ledger(dir.path());
    assert_eq!(created.len(), 400);
    assert!(
        created.values().all(|&n| n == 1),
        "no record pushed twice across the stages"
    );
}

#[test]
fn json_logs_carry_periodic_units_progress() {
    let dir = tempfile::tempdir().unwrap();
    let out = command(
        dir.path(),
        &[
            "run",
            "sync_records",
            "--input",
            r#"{"count": 300, "delay_ms": 60}"#,
            "--id",
            "slow",
        ],
    )
    .env("SYNC_FAILURE_RATE", "0")
    .output()
    .unwrap();
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let progress: Vec<Value> = stderr(&out)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["fields"]["message"] == "units progress")
        .collect();
    assert!(!progress.is_empty(), "a run of over 2 s logs progress");
    let first = &progress[0]["fields"];
    assert!(
        first["succeeded"].as_u64().unwrap() > 0 && first["units_per_s"].as_f64().unwrap() > 0.0,
        "{first}"
    );
    assert_eq!(progress[0]["span"]["run_id"], "slow");
}

//! Fault: `runs resolve --done --step-output` with a value of the wrong type. The output is
//! checked against the step's output type before anything is stored: a wrong one is a usage
//! error (exit 2) naming the expected type, the step stays in doubt, and the right value then
//! resolves it and the run resumes to success.
#![allow(clippy::unwrap_used)] // in a test an unwrap is an assertion

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sync_records"));
    cmd.args(args)
        .current_dir(dir)
        .env("FLOW_STORE", dir.join("flow.redb"))
        .env("FLOW_LOG_FORMAT", "json")
        .env("SYNC_DATA_DIR", dir)
        .env("SYNC_FAILURE_RATE", "0")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn run(dir: &Path, args: &[&str]) -> Output {
    command(dir, args).output().unwrap()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            stderr(out)
        )
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The run's notify_team step record, from `runs show`.
fn notify_step(dir: &Path, id: &str) -> (Value, Value) {
    let shown = run(dir, &["runs", "show", id, "--output", "json"]);
    assert_eq!(shown.status.code(), Some(0), "{}", stderr(&shown));
    notify_step_of(json(&shown))
}

fn notify_step_of(shown: Value) -> (Value, Value) {
    let step = shown["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"]["name"].as_str().unwrap().ends_with("notify_team"))
        .cloned()
        .unwrap_or(Value::Null);
    (shown, step)
}

/// A run whose at_most_once notification was killed mid-way: it needs attention.
fn run_left_in_doubt(dir: &Path, id: &str) -> String {
    let args = [
        "run",
        "sync_records",
        "--input",
        r#"{"count": 3}"#,
        "--id",
        id,
    ];
    let mut child = command(dir, &args)
        .env("SYNC_NOTIFY_DELAY_MS", "5000")
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // Before the run is stored, `runs show` does not know it yet.
        let shown = run(dir, &["runs", "show", id, "--output", "json"]);
        if shown.status.code() == Some(0) && notify_step_of(json(&shown)).1["status"] == "started" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the notification to start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let mut again: Vec<&str> = args.to_vec();
    again.extend(["--output", "json"]);
    let again = run(dir, &again);
    assert_eq!(again.status.code(), Some(4), "{}", stderr(&again));
    json(&again)["attention"]["step"]["key"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_wrong_typed_step_output_is_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let key = run_left_in_doubt(dir.path(), "doubt");

    // notify_team returns `Result<(), SyncError>`: an object is not a `()`.
    for wrong in [r#"{"sent": true}"#, "5", r#""done""#] {
        let refused = run(
            dir.path(),
            &[
                "runs",
                "resolve",
                "doubt",
                "--step",
                &key,
                "--done",
                "--step-output",
                wrong,
            ],
        );
        assert_eq!(
            refused.status.code(),
            Some(2),
            "{wrong}: {}",
            stderr(&refused)
        );
        let message = stderr(&refused);
        assert!(
            message.contains("is not a `()`") && message.contains("nothing was stored"),
            "{message}"
        );
        // Nothing stored: the step is still in doubt and the run still needs attention.
        let (run_record, step) = notify_step(dir.path(), "doubt");
        assert_eq!(step["status"], "started", "{step}");
        assert_eq!(step["output"], Value::Null, "{step}");
        assert_eq!(
            run_record["run"]["status"], "needs-attention",
            "{run_record}"
        );
    }

    // The right type resolves it, and the run resumes to success.
    let resolved = run(
        dir.path(),
        &[
            "runs",
            "resolve",
            "doubt",
            "--step",
            &key,
            "--done",
            "--step-output",
            "null",
        ],
    );
    assert_eq!(resolved.status.code(), Some(0), "{}", stderr(&resolved));
    assert_eq!(notify_step(dir.path(), "doubt").1["status"], "succeeded");
    let resumed = run(dir.path(), &["runs", "resume", "doubt", "--output", "json"]);
    assert_eq!(resumed.status.code(), Some(0), "{}", stderr(&resumed));
    assert_eq!(json(&resumed)["status"], "succeeded");
    assert_eq!(json(&resumed)["output"]["pushed"], 3);
}

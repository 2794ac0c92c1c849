//! Snapshots of what an operator reads: the runbook and the `runs list` / `runs show` tables,
//! with run times, trace ids, durations and table widths normalised.
#![allow(clippy::unwrap_used)] // in a test an unwrap is an assertion

use std::path::Path;
use std::process::{Command, Output};

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sync_records"))
        .args(args)
        .current_dir(dir)
        .env("FLOW_STORE", dir.join("flow.redb"))
        .env("FLOW_LOG_FORMAT", "json")
        .env("SYNC_DATA_DIR", dir)
        // Deterministic: no injected failures, one push at a time.
        .env("SYNC_FAILURE_RATE", "0")
        .env("SYNC_BATCH_SIZE", "1")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

macro_rules! snapshot {
    ($name:expr, $value:expr) => {
        insta::with_settings!({
            filters => vec![
                (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", "[time]"),
                // Step keys (hashes of the arguments) before trace ids: both are 32 hex digits
                (r"(::\w+ +)[0-9a-f]{32}\b", "$1[key]"),
                (r"\b[0-9a-f]{32}\b", "[trace]"),
                (r"\b\d+ ms\b", "[ms]"),
                (r"[-=]{3,}", "---"),
                (r" {2,}", "  "),
            ],
        }, {
            insta::assert_snapshot!($name, $value);
        });
    };
}

#[test]
fn the_runbook() {
    let dir = tempfile::tempdir().unwrap();
    snapshot!("runbook", stdout(&run(dir.path(), &["runbook"])));
}

#[test]
fn the_run_tables() {
    let dir = tempfile::tempdir().unwrap();
    stdout(&run(
        dir.path(),
        &[
            "run",
            "sync_records",
            "--input",
            r#"{"count": 3}"#,
            "--id",
            "snap",
        ],
    ));
    snapshot!("runs_list", stdout(&run(dir.path(), &["runs", "list"])));
    // Steps that start in the same millisecond may list in either order: sort the table's rows.
    let shown = stdout(&run(dir.path(), &["runs", "show", "snap"]));
    let mut rows: Vec<&str> = shown.lines().filter(|l| l.starts_with("| flow")).collect();
    rows.sort();
    let mut rows = rows.into_iter();
    let sorted: Vec<&str> = shown
        .lines()
        .map(|l| {
            if l.starts_with("| flow") {
                rows.next().unwrap_or(l)
            } else {
                l
            }
        })
        .collect();
    snapshot!("runs_show", sorted.join("\n"));
}

//! End-to-end: the `sync_records` example binary against its flaky API, run, re-run, killed
//! and resumed, and dry-run. Assertions are on the API's ledger of effects.
#![allow(clippy::unwrap_used)] // in a test an unwrap is an assertion

use flow_examples::api::read_ledger;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn command(dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sync_records"));
    cmd.arg("--dir").arg(dir).args(extra);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

fn run(dir: &Path, extra: &[&str]) -> Output {
    command(dir, extra).output().expect("run sync_records")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Records created per record id, and repeated pushes, from the ledger.
fn ledger(dir: &Path) -> (HashMap<String, u32>, usize) {
    let entries = read_ledger(&dir.join("api-ledger.jsonl")).expect("ledger");
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

#[test]
fn a_second_run_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let first = run(dir.path(), &[]);
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        stdout(&first).contains("48 records pushed, 2 rejected"),
        "{}",
        stdout(&first)
    );
    let (created, _) = ledger(dir.path());
    assert_eq!(created.len(), 48);
    assert!(created.values().all(|&n| n == 1));
    let log = String::from_utf8_lossy(&first.stderr);
    assert!(
        log.contains("class=permanent"),
        "a rejected record is logged as permanent"
    );

    let second = run(dir.path(), &[]);
    assert_eq!(second.status.code(), Some(0));
    assert!(
        stdout(&second).contains("0 pushes reached the API in this process"),
        "{}",
        stdout(&second)
    );
    assert_eq!(ledger(dir.path()).0, created);
}

#[test]
fn killed_mid_run_it_resumes_and_creates_every_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--run-id", "big", "--records", "200", "--delay-ms", "15"];
    let mut child = command(dir.path(), &args).spawn().unwrap();
    let ledger_file = dir.path().join("api-ledger.jsonl");
    let deadline = Instant::now() + Duration::from_secs(60);
    while read_ledger(&ledger_file).map(|l| l.len()).unwrap_or(0) < 40 {
        assert!(Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let (before, _) = ledger(dir.path());
    assert!(before.len() < 189, "killed mid-run");

    let resumed = run(dir.path(), &args);
    assert_eq!(
        resumed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert!(
        stdout(&resumed).contains("189 records pushed, 11 rejected"),
        "{}",
        stdout(&resumed)
    );
    let (created, duplicates) = ledger(dir.path());
    assert_eq!(created.len(), 189);
    assert!(
        created.values().all(|&n| n == 1),
        "a record was created twice"
    );
    // Only pushes in flight at the kill (at most the concurrency, 8) may be repeated.
    assert!(duplicates <= 8, "{duplicates} repeated pushes");
}

#[test]
fn a_dry_run_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["--dry-run", "--failure-rate", "0"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).contains("dry run: 51 steps would change something"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("would call push_record key=rec-00001"));
    assert!(ledger(dir.path()).0.is_empty(), "nothing was pushed");
}

#[test]
fn bad_arguments_exit_with_the_usage_code() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["--records", "many"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--records"));
}

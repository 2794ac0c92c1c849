//! Faults an operator found by trying to break the console (issue 7, items 4, 10, 11, 12, 14 and
//! the CLI papercuts of 18), each driven through the `sync_records` binary in a child process
//! and kept fixed here. Assertions read exit codes, stdout and stderr, and what the store holds.
#![allow(clippy::unwrap_used)] // in a test an unwrap is an assertion

use flow_runtime::store::{RedbStore, RunRecord, StepRecord, Store, Write};
use flow_runtime::{Flow, RunId, RunOptions};
use serde_json::{json, Value};
use std::io::Read;
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
        .env_remove("FLOW_SHARING")
        .env_remove("FLOW_MAX_INPUT_SIZE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn run(dir: &Path, args: &[&str]) -> Output {
    command(dir, args).output().unwrap()
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The lines of stderr that are not JSON log lines: what the command says to the operator.
fn said(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).is_err())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The ids of the runs in the store (none when the store was never created).
fn stored_runs(dir: &Path) -> Vec<String> {
    let out = run(
        dir,
        &["runs", "list", "--output", "json", "--limit", "1000"],
    );
    if code(&out) == Some(2) && said(&out).contains("no store") {
        return Vec::new();
    }
    assert_eq!(code(&out), Some(0), "{}", said(&out));
    let runs: Value = serde_json::from_slice(&out.stdout).unwrap();
    runs.as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_owned())
        .collect()
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A run record as an older flow (or another program) could have stored it: the store itself
/// does not check ids, so the console must show whatever it finds safely.
fn record(id: &str, status: &str, extra: Value) -> RunRecord {
    let mut doc = json!({
        "id": id,
        "workflow": "sync_records",
        "status": status,
        "input": { "count": 1 },
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "created_at_ms": 1_700_000_000_000u64,
        "updated_at_ms": 1_700_000_000_000u64,
        "executions": 1,
    });
    doc.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::from_value(doc).unwrap()
}

fn step(run: &str, key: &str, status: &str, extra: Value) -> StepRecord {
    let mut doc = json!({
        "run_id": run,
        "id": { "name": "flow_examples::sync::push_record", "key": key, "occurrence": 0 },
        "status": status,
        "attempt": 1,
        "started_at_ms": 1_700_000_000_000u64,
    });
    doc.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::from_value(doc).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

const BAD_IDS: &[&str] = &[
    "",
    "a b",
    "x; touch PWNED #",
    "x\n| fake | row |",
    "\u{1b}[2J",
    "$(touch PWNED)",
    "café",
    "quote'd",
];

// ---------------------------------------------------------------------------------------------
// Item 4: run ids are validated everywhere an id enters, and output is escaped and quoted

#[test]
fn an_invalid_run_id_is_refused_with_exit_2_by_every_command_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let too_long = "a".repeat(129);
    let mut ids: Vec<&str> = BAD_IDS.to_vec();
    ids.push(&too_long);
    for id in ids {
        let commands: Vec<Vec<&str>> = vec![
            vec![
                "run",
                "sync_records",
                "--input",
                r#"{"count": 1}"#,
                "--id",
                id,
            ],
            vec!["runs", "show", id],
            vec!["runs", "resume", id],
            vec!["runs", "retry-failed", id],
            vec!["runs", "retry-unit", id, "--unit", "rec-00001"],
            vec!["runs", "cancel", id],
            vec!["runs", "fork", id, "--from-step", "push_record"],
            vec![
                "runs",
                "fork",
                "fine",
                "--from-step",
                "push_record",
                "--new-id",
                id,
            ],
            vec!["runs", "resolve", id, "--step", "k", "--rerun"],
        ];
        for full in commands {
            let out = run(dir.path(), &full);
            assert_eq!(code(&out), Some(2), "{full:?}: {}", said(&out));
            let message = said(&out);
            assert!(message.contains("invalid run id"), "{full:?}: {message}");
            assert!(
                !message.contains('\u{1b}') && !message.lines().any(|l| l.starts_with("| fake")),
                "the message shows the id raw: {message:?}"
            );
        }
    }
    // An id that looks like a flag reaches the command only as `--id=-rf` or after `--`.
    for full in [
        vec![
            "run",
            "sync_records",
            "--input",
            r#"{"count": 1}"#,
            "--id=-rf",
        ],
        vec!["runs", "show", "--", "-rf"],
        vec!["runs", "cancel", "--", "-rf"],
    ] {
        let out = run(dir.path(), &full);
        assert_eq!(code(&out), Some(2), "{full:?}: {}", said(&out));
        assert!(
            said(&out).contains("starts with `-`"),
            "{full:?}: {}",
            said(&out)
        );
    }
    assert!(!dir.path().join("PWNED").exists());
    assert_eq!(
        stored_runs(dir.path()),
        Vec::<String>::new(),
        "nothing was stored"
    );

    // The documented shapes are valid: a schedule-derived id and a UUID.
    for id in [
        "nightly@2026-11-28T02:00:00Z",
        "0192f0c4-5b7e-7c3a-9d1e-2f3a4b5c6d7e",
    ] {
        let out = run(
            dir.path(),
            &[
                "run",
                "sync_records",
                "--input",
                r#"{"count": 1}"#,
                "--id",
                id,
            ],
        );
        assert_eq!(code(&out), Some(0), "{id}: {}", said(&out));
        let shown = run(dir.path(), &["runs", "show", id]);
        assert_eq!(code(&shown), Some(0), "{id}: {}", said(&shown));
    }
}

#[test]
fn the_library_api_refuses_an_invalid_run_id_too() {
    // Linking the example's workflow registers it.
    assert_eq!(flow_examples::sync::sync_records::NAME, "sync_records");
    for id in BAD_IDS.iter().chain(&["-rf"]) {
        assert!(RunId::new(*id).is_err(), "{id:?} was accepted");
    }
    assert!(RunId::new("a".repeat(129)).is_err());
    assert!(RunId::new("a".repeat(128)).is_ok());
    assert!(RunId::new("nightly@2026-11-28T02:00:00Z").is_ok());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flow.redb");
    runtime().block_on(async {
        let flow = Flow::open(&path).unwrap();
        let bad = RunId::from("x; touch PWNED #");
        let started = flow
            .start(
                "sync_records",
                RunOptions::new().id(bad.clone()),
                json!({ "count": 1 }),
            )
            .await;
        assert!(
            matches!(started, Err(flow_runtime::Error::InvalidRunId(_))),
            "{started:?}"
        );
        let resumed = flow.resume(&bad).await;
        assert!(
            matches!(resumed, Err(flow_runtime::Error::InvalidRunId(_))),
            "{resumed:?}"
        );
        let cancelled = flow.cancel(&bad).await;
        assert!(
            matches!(cancelled, Err(flow_runtime::Error::InvalidRunId(_))),
            "{cancelled:?}"
        );
        let forked = flow
            .fork(&RunId::from("fine"), "push_record", Some(bad.clone()))
            .await;
        assert!(
            matches!(forked, Err(flow_runtime::Error::InvalidRunId(_))),
            "{forked:?}"
        );
        assert!(flow.runs(&Default::default()).await.unwrap().is_empty());
    });
}

#[test]
fn tables_and_messages_escape_control_characters_and_suggested_commands_are_shell_quoted() {
    let dir = tempfile::tempdir().unwrap();
    let evil_id = "old\u{1b}[2J\n| forged | row |";
    let evil_key = "k'; touch PWNED #\u{1b}[31m";
    runtime().block_on(async {
        let store = RedbStore::open(dir.path().join("flow.redb")).unwrap();
        store
            .create_run(record(evil_id, "failed", json!({ "error": "boom\u{1b}[2J" })))
            .await
            .unwrap();
        let attention = json!({
            "attention": {
                "step": { "name": "flow_examples::sync::push_record", "key": evil_key, "occurrence": 0 },
                "reason": "its outcome is unknown\u{1b}[8m hidden",
            }
        });
        store
            .create_run(record("doubt", "needs-attention", attention))
            .await
            .unwrap();
        let steps = vec![
            Write::PutStep(step("doubt", evil_key, "started", json!({}))),
            Write::PutStep(step(
                "doubt",
                "rec\n| forged | step |",
                "failed",
                json!({ "error": "HTTP 500\u{1b}]0;owned\u{7}", "finished_at_ms": 1_700_000_000_100u64 }),
            )),
        ];
        store.commit(steps).await.unwrap();
    });

    for args in [
        vec!["runs", "list"],
        vec!["runs", "show", "doubt"],
        vec!["runs", "list", "--output", "json"],
        vec!["runs", "show", "doubt", "--output", "json"],
    ] {
        let out = run(dir.path(), &args);
        assert_eq!(code(&out), Some(0), "{args:?}: {}", said(&out));
        let text = stdout(&out);
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{args:?} printed a raw control character: {text:?}"
        );
        assert!(
            !text.lines().any(|l| l.starts_with("| forged")),
            "{args:?} printed a forged row: {text}"
        );
    }
    let listed = stdout(&run(dir.path(), &["runs", "list"]));
    assert!(
        listed.contains(r"old\u{1b}[2J\n| forged | row |"),
        "the id is shown with visible escapes: {listed}"
    );

    // The suggested commands are single shell words per argument: pasted into a shell, they
    // run the binary with the key as one argument and nothing else.
    let shown = stdout(&run(dir.path(), &["runs", "show", "doubt"]));
    let rerun = shown
        .lines()
        .find_map(|l| l.strip_prefix("next: if it did not: "))
        .unwrap_or_else(|| panic!("no rerun command in: {shown}"));
    let args = rerun.strip_prefix("sync_records ").unwrap();
    let echoed = Command::new("sh")
        .arg("-c")
        .arg(format!("printf '%s\\n' {args}"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    let words: Vec<String> = String::from_utf8(echoed.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        words,
        [
            "runs",
            "resolve",
            "doubt",
            "--step",
            r"k'; touch PWNED #\u{1b}[31m",
            "--rerun"
        ],
        "{rerun}"
    );
    assert!(
        !dir.path().join("PWNED").exists(),
        "a printed command ran `touch`"
    );
}

// ---------------------------------------------------------------------------------------------
// Item 10: input of the wrong type is never stored

#[test]
fn input_of_the_wrong_type_or_no_input_exits_2_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = run(
        dir.path(),
        &[
            "run",
            "sync_records",
            "--input",
            r#"{"count": "x"}"#,
            "--id",
            "wrong",
        ],
    );
    assert_eq!(code(&wrong), Some(2), "{}", said(&wrong));
    assert!(
        said(&wrong).contains("invalid input for workflow `sync_records`"),
        "{}",
        said(&wrong)
    );
    assert!(said(&wrong).contains("expected u32"), "{}", said(&wrong));
    assert!(
        said(&wrong).contains("nothing was stored"),
        "{}",
        said(&wrong)
    );

    let missing = run(dir.path(), &["run", "sync_records", "--id", "missing"]);
    assert_eq!(code(&missing), Some(2), "{}", said(&missing));
    assert!(
        said(&missing).contains("no input was given"),
        "{}",
        said(&missing)
    );
    assert!(said(&missing).contains("--input"), "{}", said(&missing));

    let dry = run(
        dir.path(),
        &[
            "run",
            "sync_records",
            "--input",
            r#"{"count": -1}"#,
            "--dry-run",
        ],
    );
    assert_eq!(code(&dry), Some(2), "{}", said(&dry));

    assert_eq!(stored_runs(dir.path()), Vec::<String>::new());
    // `retry-failed` finds nothing to pick up.
    let retried = run(dir.path(), &["runs", "retry-failed", "--output", "json"]);
    assert_eq!(code(&retried), Some(0), "{}", said(&retried));
    assert_eq!(stdout(&retried).trim(), "[]");
}

// ---------------------------------------------------------------------------------------------
// Item 11: input reading has a size limit

#[test]
fn input_larger_than_the_limit_is_refused_from_a_file_stdin_and_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    // The default limit (16 MiB) stops an endless file.
    let endless = run(
        dir.path(),
        &["run", "sync_records", "--input-file", "/dev/zero"],
    );
    assert_eq!(code(&endless), Some(2), "{}", said(&endless));
    assert!(
        said(&endless).contains("larger than 16MiB"),
        "{}",
        said(&endless)
    );
    assert!(
        said(&endless).contains("flow.max_input_size"),
        "{}",
        said(&endless)
    );

    // A smaller limit from the environment applies to stdin and --input alike.
    let padded = format!(r#"{{"count": 1, "delay_ms": 0{}}}"#, " ".repeat(2000));
    let mut child = command(dir.path(), &["run", "sync_records", "--input-file", "-"])
        .env("FLOW_MAX_INPUT_SIZE", "1KiB")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        // The reader stops after the limit: a write error past it is expected.
        let _ = stdin.write_all(padded.as_bytes());
    }
    let from_stdin = child.wait_with_output().unwrap();
    assert_eq!(code(&from_stdin), Some(2), "{}", said(&from_stdin));
    assert!(
        said(&from_stdin).contains("the standard input is larger than 1KiB"),
        "{}",
        said(&from_stdin)
    );

    let inline = command(dir.path(), &["run", "sync_records", "--input", &padded])
        .env("FLOW_MAX_INPUT_SIZE", "1KiB")
        .output()
        .unwrap();
    assert_eq!(code(&inline), Some(2), "{}", said(&inline));
    assert!(
        said(&inline).contains("--input is larger than 1KiB"),
        "{}",
        said(&inline)
    );

    // Within the limit the same input runs.
    let small = command(
        dir.path(),
        &[
            "run",
            "sync_records",
            "--input",
            r#"{"count": 1}"#,
            "--id",
            "small",
        ],
    )
    .env("FLOW_MAX_INPUT_SIZE", "1KiB")
    .output()
    .unwrap();
    assert_eq!(code(&small), Some(0), "{}", said(&small));

    // A limit that is not a size is a settings error.
    let bad = command(dir.path(), &["check-config"])
        .env("FLOW_MAX_INPUT_SIZE", "lots")
        .output()
        .unwrap();
    assert_eq!(code(&bad), Some(3), "{}", said(&bad));
    assert!(said(&bad).contains("max_input_size"), "{}", said(&bad));
    assert_eq!(stored_runs(dir.path()), ["small"]);
}

// ---------------------------------------------------------------------------------------------
// Item 12: a closed pipe does not panic

/// Runs `args` with stdout piped, reads `read` bytes (none: the pipe is closed before the
/// command writes) and closes the pipe; returns the exit code and stderr.
fn with_closed_stdout(dir: &Path, args: &[&str], read: usize) -> (Option<i32>, String) {
    let mut child = command(dir, args).spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    if read > 0 {
        let mut first = vec![0u8; read];
        out.read_exact(&mut first).unwrap();
    }
    drop(out);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (child.wait().unwrap().code(), err)
}

#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    let dir = tempfile::tempdir().unwrap();
    // Output larger than a pipe's buffer, so the writer meets the closed pipe mid-way.
    runtime().block_on(async {
        let store = RedbStore::open(dir.path().join("flow.redb")).unwrap();
        let mut writes = Vec::new();
        for i in 0..400 {
            store
                .create_run(record(&format!("run-{i:04}"), "succeeded", json!({ "output": null })))
                .await
                .unwrap();
        }
        store.create_run(record("wide", "running", json!({}))).await.unwrap();
        for i in 0..1000 {
            writes.push(Write::PutStep(step(
                "wide",
                &format!("rec-{i:05}"),
                "succeeded",
                json!({ "output": { "outcome": "created" }, "finished_at_ms": 1_700_000_000_050u64 }),
            )));
        }
        store.commit(writes).await.unwrap();
    });
    let cases: [(&[&str], usize); 7] = [
        (&["runs", "list", "--output", "json", "--limit", "1000"], 10),
        (&["runs", "list", "--limit", "1000"], 10),
        (&["runs", "show", "wide"], 10),
        (&["runs", "show", "wide", "--output", "json"], 10),
        (&["runs", "list", "--output", "json"], 0),
        (&["runbook"], 0),
        (&["completions", "bash"], 0),
    ];
    for (args, read) in cases {
        let (exit, err) = with_closed_stdout(dir.path(), args, read);
        assert_ne!(exit, Some(101), "{args:?} panicked: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(exit, Some(0), "{args:?}: {err}");
    }
}

// ---------------------------------------------------------------------------------------------
// Item 14: messages that mislead

#[test]
fn a_locked_store_message_says_which_side_wanted_the_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    // A shared run executing: an exclusive run beside it is refused, and told that it was the
    // one that asked for the file alone.
    let mut shared = command(
        dir.path(),
        &[
            "run",
            "sync_records",
            "--input",
            r#"{"count": 400, "delay_ms": 200}"#,
            "--id",
            "slow",
        ],
    )
    .env("FLOW_SHARING", "shared")
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    wait_for("the shared run to execute", || {
        let out = run(dir.path(), &["runs", "show", "slow"]);
        stdout(&out).contains("executing in process")
    });
    let exclusive = command(
        dir.path(),
        &[
            "run",
            "sync_records",
            "--input",
            r#"{"count": 1}"#,
            "--id",
            "alone",
        ],
    )
    .env("FLOW_SHARING", "exclusive")
    .output()
    .unwrap();
    shared.kill().unwrap();
    shared.wait().unwrap();
    assert_eq!(code(&exclusive), Some(5), "{}", said(&exclusive));
    let message = said(&exclusive);
    assert!(!message.contains("opened it exclusively"), "{message}");
    assert!(
        message.contains("this process asked for it exclusively"),
        "{message}"
    );
    assert!(message.contains("FLOW_SHARING"), "{message}");

    // The other way round: an exclusive run executing, a shared `runs list` (which does not
    // use the owner's socket) is refused and told that the other process holds the file.
    let mut alone = command(
        dir.path(),
        &[
            "run",
            "sync_records",
            "--input",
            r#"{"count": 400, "delay_ms": 200}"#,
            "--id",
            "alone",
        ],
    )
    .env("FLOW_SHARING", "exclusive")
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(dir.path().join("alone.log")).unwrap())
    .spawn()
    .unwrap();
    // Polling with `runs list` could take the file just as the exclusive run opens it: wait
    // for the run's first log line instead, then try once.
    wait_for("the exclusive run to start", || {
        std::fs::read_to_string(dir.path().join("alone.log"))
            .unwrap()
            .contains("run started")
    });
    let listed = command(dir.path(), &["runs", "list"])
        .env("FLOW_SHARING", "shared")
        .output()
        .unwrap();
    alone.kill().unwrap();
    alone.wait().unwrap();
    assert_eq!(code(&listed), Some(5), "{}", said(&listed));
    let message = said(&listed);
    assert!(message.contains("locked by another process"), "{message}");
    assert!(message.contains("holds the file to itself"), "{message}");
    assert!(message.contains("asked for shared access"), "{message}");
}

#[test]
fn resolve_on_an_unknown_run_says_no_run_has_that_id() {
    let dir = tempfile::tempdir().unwrap();
    let first = run(
        dir.path(),
        &[
            "run",
            "sync_records",
            "--input",
            r#"{"count": 1}"#,
            "--id",
            "known",
        ],
    );
    assert_eq!(code(&first), Some(0), "{}", said(&first));
    let out = run(
        dir.path(),
        &["runs", "resolve", "unknown", "--step", "k", "--rerun"],
    );
    assert_eq!(code(&out), Some(2), "{}", said(&out));
    assert!(
        said(&out).contains("no run has the id `unknown`"),
        "{}",
        said(&out)
    );
    assert!(!said(&out).contains("has no step"), "{}", said(&out));
}

#[test]
fn a_rollout_is_a_plain_percentage_or_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [" 5%", "50%%", "1e2%", "5 %", "101", "-5", "0x10", "NaN"] {
        let out = run(
            dir.path(),
            &[
                "run",
                "sync_records",
                "--input",
                r#"{"count": 3}"#,
                &format!("--rollout={bad}"),
            ],
        );
        assert_eq!(code(&out), Some(2), "{bad:?}: {}", said(&out));
        assert!(
            said(&out).contains("expected a share from 0% to 100%"),
            "{}",
            said(&out)
        );
    }
    // clap's own message echoes the value: its control characters are shown escaped.
    let out = run(
        dir.path(),
        &["run", "sync_records", "--rollout", "5\u{1b}[2J"],
    );
    assert_eq!(code(&out), Some(2), "{}", said(&out));
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(!message.contains('\u{1b}'), "{message:?}");
    assert!(message.contains(r"5\u{1b}[2J"), "{message}");
    assert_eq!(stored_runs(dir.path()), Vec::<String>::new());
    for (good, id) in [("5", "five"), ("12.5%", "twelve"), ("100%", "all")] {
        let out = run(
            dir.path(),
            &[
                "run",
                "sync_records",
                "--input",
                r#"{"count": 3}"#,
                "--id",
                id,
                "--rollout",
                good,
            ],
        );
        assert_eq!(code(&out), Some(0), "{good:?}: {}", said(&out));
    }
}

/// A full disk: the run is reported as interrupted by the store error, with how to resume it,
/// not as `run full1 unknown (trace )`. The store lives on a small tmpfs, which needs root (the
/// test machines run tests as root; elsewhere the test says why it cannot run and returns).
#[test]
fn a_full_disk_is_reported_as_an_interruption_with_how_to_resume() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=600k", "tmpfs"])
        .arg(&small)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&small);
    let out = command(
        dir.path(),
        &[
            "run",
            "sync_records",
            "--input",
            r#"{"count": 3000}"#,
            "--id",
            "full1",
        ],
    )
    .env("FLOW_STORE", small.join("flow.redb"))
    .output()
    .unwrap();
    assert_eq!(code(&out), Some(5), "{}\n{}", stdout(&out), said(&out));
    let text = stdout(&out);
    assert!(!text.contains("unknown (trace )"), "{text}");
    assert!(
        text.contains("run full1 was interrupted by a store error"),
        "{text}"
    );
    assert!(text.contains("no space left"), "{text}");
    assert!(text.contains("sync_records runs resume full1"), "{text}");

    // Space freed: the run resumes from its last durable checkpoint and finishes. The store
    // refused every write after the failed one (deferred checkpoints in the default window),
    // so what it kept is a prefix of what happened.
    let grown = Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(&small)
        .status()
        .is_ok_and(|s| s.success());
    assert!(grown, "could not grow the tmpfs");
    let resumed = command(dir.path(), &["runs", "resume", "full1"])
        .env("FLOW_STORE", small.join("flow.redb"))
        .output()
        .unwrap();
    assert_eq!(
        code(&resumed),
        Some(0),
        "{}\n{}",
        stdout(&resumed),
        said(&resumed)
    );
    let shown = command(dir.path(), &["runs", "show", "full1", "--output", "json"])
        .env("FLOW_STORE", small.join("flow.redb"))
        .output()
        .unwrap();
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["run"]["status"], "succeeded");
    assert_eq!(shown["units"]["succeeded"], 3000, "{}", shown["units"]);
}

// ---------------------------------------------------------------------------------------------
// Item 18 (CLI parts): retry-unit and runs show say what applies

#[test]
fn a_failed_run_with_failed_units_suggests_retry_failed_and_retry_unit_does_not_talk_of_a_rollout()
{
    let dir = tempfile::tempdir().unwrap();
    let first = command(
        dir.path(),
        &[
            "run",
            "sync_records",
            "--input",
            r#"{"count": 50}"#,
            "--id",
            "units",
        ],
    )
    .env("SYNC_INVALID_EVERY", "17")
    .output()
    .unwrap();
    assert_eq!(code(&first), Some(1), "{}", said(&first));

    let shown = stdout(&run(dir.path(), &["runs", "show", "units"]));
    let next: Vec<&str> = shown.lines().filter(|l| l.starts_with("next: ")).collect();
    assert!(
        next.iter()
            .any(|l| l.contains("sync_records runs retry-failed units")),
        "{next:?}"
    );
    assert!(
        !next.iter().any(|l| l.contains("runs resume")),
        "retry-failed applies, not resume: {next:?}"
    );

    let one = command(
        dir.path(),
        &["runs", "retry-unit", "units", "--unit", "rec-00017"],
    )
    .env("SYNC_ACCEPT_INVALID", "true")
    .output()
    .unwrap();
    assert_eq!(code(&one), Some(0), "{}", said(&one));
    let text = stdout(&one);
    assert!(!text.contains("rollout"), "no rollout was used: {text}");
    assert!(text.contains("retried unit rec-00017"), "{text}");
    assert!(
        text.contains("sync_records runs retry-failed units"),
        "{text}"
    );
}

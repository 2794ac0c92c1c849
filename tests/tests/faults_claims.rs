//! Faults of issue 7 around who executes a run, reproduced through a real `#[flow::main]`
//! binary (`faults_child`) in child processes: two resumes racing for one run (item 1), a
//! cancel landing while units are in flight (item 7), SIGTERM and SIGINT (item 8), a clock set
//! back during a backoff or a sleep (item 2), a failure the workflow handled (item 16), step keys
//! inside units (item 15) and the arguments of a step in doubt (item 17). Assertions read the
//! effect log the steps append to and the store, never timings.

use flow_runtime as flow;
use flow_tests::{lines, read_run, read_steps, wait_until};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

struct App {
    dir: tempfile::TempDir,
}

impl App {
    fn new() -> App {
        App {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("flow.redb")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("effects.log")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_faults_child"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("FLOW_STORE", self.store())
            .env("FLOW_LOG_FORMAT", "json")
            .env("FAULTS_LOG", self.log())
            // Claims between processes that each open the file (the shared mode): these tests
            // race resumes on the store itself and read it while children execute. With the
            // default exclusive mode a second command goes through the owner's socket instead
            // (tests/tests/owner_socket.rs).
            .env("FLOW_SHARING", "shared")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.command(args).spawn().unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn effects(&self) -> Vec<String> {
        lines(&self.log())
    }

    /// Effect lines starting with `prefix`, by the pid that wrote them.
    fn effects_by_pid(&self, prefix: &str) -> BTreeMap<u32, Vec<String>> {
        let mut by_pid: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for line in self.effects() {
            if !line.starts_with(prefix) {
                continue;
            }
            let (what, pid) = line.rsplit_once(" pid=").unwrap();
            by_pid
                .entry(pid.parse().unwrap())
                .or_default()
                .push(what.to_owned());
        }
        by_pid
    }

    fn record_opt(&self, id: &str) -> Option<flow::store::RunRecord> {
        read_run(&self.store(), id)
    }

    fn record(&self, id: &str) -> flow::store::RunRecord {
        read_run(&self.store(), id).unwrap_or_else(|| panic!("no run {id}"))
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn kill9(child: &mut Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Item 1: two `runs resume` of one interrupted run, started 0–5 ms apart, 50 times: exactly
/// one executes, the other is refused (or finds the run finished), `executions` counts the
/// executions exactly and the at_most_once notification goes out once.
#[test]
fn racing_resumes_execute_a_run_once() {
    let mut double = 0;
    for round in 0..50u64 {
        let app = App::new();
        let id = format!("race-{round}");
        let input = r#"{"n": 12, "delay_ms": 15}"#;
        let mut first = app.spawn(&["run", "steps", "--input", input, "--id", &id]);
        wait_until(30, "the first steps", || {
            app.effects()
                .iter()
                .filter(|l| l.starts_with("step"))
                .count()
                >= 2
        });
        kill9(&mut first);

        let a = app.spawn(&["runs", "resume", &id]);
        std::thread::sleep(Duration::from_micros(round % 6 * 1000));
        let b = app.spawn(&["runs", "resume", &id]);
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());

        let winners = [&a, &b]
            .iter()
            .filter(|o| o.status.code() == Some(0))
            .count();
        assert_eq!(winners, 1, "a: {}\nb: {}", stderr(&a), stderr(&b));
        let loser = if a.status.code() == Some(0) { &b } else { &a };
        assert_eq!(loser.status.code(), Some(2), "{}", stderr(loser));
        let why = stderr(loser);
        assert!(
            why.contains("is being executed by process") || why.contains("is succeeded"),
            "{why}"
        );

        let resumers: BTreeSet<u32> = app
            .effects_by_pid("step")
            .into_keys()
            .filter(|pid| *pid != first.id())
            .collect();
        if resumers.len() > 1 {
            double += 1;
        }
        let notified = app.effects_by_pid("notify");
        assert_eq!(notified.values().map(Vec::len).sum::<usize>(), 1);
        let run = app.record(&id);
        assert_eq!(run.status, flow::RunStatus::Succeeded);
        assert_eq!(run.executions, 2, "one start and one resume executed it");
    }
    assert_eq!(double, 0, "runs executed by two resumers at once");
}

/// Item 1: `runs retry-failed ID` twice at once on a failed run: one execution.
#[test]
fn racing_retries_of_a_failed_run_execute_it_once() {
    for round in 0..10u64 {
        let app = App::new();
        let id = format!("failed-{round}");
        let input = r#"{"n": 8, "delay_ms": 10, "fail_once_at": 3}"#;
        let out = app.run(&["run", "steps", "--input", input, "--id", &id]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert_eq!(app.record(&id).status, flow::RunStatus::Failed);

        let a = app.spawn(&["runs", "retry-failed", &id]);
        std::thread::sleep(Duration::from_micros(round % 4 * 1000));
        let b = app.spawn(&["runs", "retry-failed", &id]);
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        let winners = [&a, &b]
            .iter()
            .filter(|o| o.status.code() == Some(0))
            .count();
        assert_eq!(winners, 1, "a: {}\nb: {}", stderr(&a), stderr(&b));
        let steps = app.effects_by_pid("step");
        assert_eq!(
            steps.len(),
            2,
            "the failed run's process and one retry: {steps:?}"
        );
        assert_eq!(app.effects_by_pid("notify").len(), 1);
        assert_eq!(app.record(&id).executions, 2);
    }
}

/// Item 7: a cancel from another process while eight units are mid-step: every effect that
/// happened has its checkpoint.
#[test]
fn a_cancel_lets_steps_in_flight_finish_and_checkpoint() {
    for round in 0..5 {
        let app = App::new();
        let id = format!("cancel-{round}");
        let input = r#"{"n": 400, "delay_ms": 40}"#;
        let child = app.spawn(&["run", "fanout", "--input", input, "--id", &id]);
        wait_until(30, "units in flight", || {
            app.effects()
                .iter()
                .filter(|l| l.starts_with("push"))
                .count()
                >= 20
        });
        let out = app.run(&["runs", "cancel", &id]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert_eq!(app.record(&id).status, flow::RunStatus::Cancelled);

        let stored: BTreeSet<String> = read_steps(&app.store(), &id)
            .into_iter()
            .filter(|s| {
                s.status == flow::store::StepStatus::Succeeded && s.id.name.ends_with("push")
            })
            .map(|s| s.id.key)
            .collect();
        let pushed: BTreeSet<String> = app
            .effects_by_pid("push")
            .into_values()
            .flatten()
            .map(|l| format!("item-{}", l.split(' ').nth(1).unwrap()))
            .collect();
        let lost: Vec<&String> = pushed.difference(&stored).collect();
        assert!(lost.is_empty(), "effects without a checkpoint: {lost:?}");
        assert!(pushed.len() < 400, "the cancel stopped the fan-out");
    }
}

/// Item 8: SIGTERM and SIGINT stop starting steps, let the one in flight finish and
/// checkpoint, say how to continue, exit 143/130; the run resumes and finishes with every step
/// executed once.
#[test]
fn a_stop_signal_finishes_the_step_in_flight_and_leaves_the_run_resumable() {
    for (sig, code) in [("-TERM", 143), ("-INT", 130)] {
        let app = App::new();
        let input = r#"{"n": 20, "delay_ms": 300}"#;
        let child = app.spawn(&["run", "steps", "--input", input, "--id", "sig"]);
        wait_until(30, "the third step", || {
            app.effects()
                .iter()
                .filter(|l| l.starts_with("step"))
                .count()
                >= 3
        });
        signal(&child, sig);
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("runs resume sig"),
            "says how to continue: {}",
            stderr(&out)
        );
        let effects = app.effects_by_pid("step");
        let done = effects.values().next().unwrap().len();
        let checkpointed = read_steps(&app.store(), "sig")
            .iter()
            .filter(|s| s.status == flow::store::StepStatus::Succeeded)
            .count();
        assert_eq!(done, checkpointed, "every step that ran is checkpointed");
        assert!(done < 20);
        assert!(!app.record("sig").status.is_finished());

        let out = app.run(&["runs", "resume", "sig"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let all: Vec<String> = app.effects_by_pid("step").into_values().flatten().collect();
        assert_eq!(all.len(), 20, "each step once: {all:?}");
    }
}

/// Item 8: a second signal stops at once, whatever the grace period.
#[test]
fn a_second_signal_stops_at_once() {
    let app = App::new();
    let input = r#"{"n": 3, "delay_ms": 60000}"#;
    let child = app
        .command(&["run", "steps", "--input", input, "--id", "twice"])
        .env("FLOW_SHUTDOWN_GRACE", "10m")
        .spawn()
        .unwrap();
    wait_until(30, "the first step", || !app.effects().is_empty());
    signal(&child, "-TERM");
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, "-INT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("second stop signal"),
        "{}",
        stderr(&out)
    );
}

/// Rewrites the due time of every waiting step of `id` to a day from now: what a resume sees
/// when its clock is a day behind the one that recorded the wait.
fn push_due_times_a_day_ahead(store: &Path, id: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let flow = flow::Flow::open(store).unwrap();
        let day = 24 * 3600 * 1000;
        let mut writes = Vec::new();
        for mut step in flow.steps(&id.into()).await.unwrap() {
            if let Some(due) = step.next_attempt_at_ms {
                step.next_attempt_at_ms = Some(due + day);
                writes.push(flow::store::Write::PutStep(step));
            }
        }
        assert!(!writes.is_empty(), "a step waits");
        flow.store().commit(writes).await.unwrap();
    });
}

/// Item 2: a step killed during its 3 s backoff, resumed with the clock a day behind, waits at
/// most the policy's longest delay (3 s), not a day; a durable sleep waits at most what it
/// asked for. The test does not time anything: it sees the run finish.
#[test]
fn a_clock_set_back_does_not_stretch_a_backoff_or_a_sleep() {
    let app = App::new();
    let mut child = app.spawn(&["run", "backoff", "--id", "b"]);
    wait_until(30, "the backoff", || {
        read_steps(&app.store(), "b")
            .iter()
            .any(|s| s.status == flow::store::StepStatus::Backoff)
    });
    kill9(&mut child);
    push_due_times_a_day_ahead(&app.store(), "b");
    let resumed = app.command(&["runs", "resume", "b"]).spawn().unwrap();
    let out = resumed.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("further away than the policy's longest delay"),
        "the clamp is logged: {}",
        stderr(&out)
    );
    assert_eq!(app.record("b").status, flow::RunStatus::Succeeded);

    let mut child = app.spawn(&["run", "nap", "--id", "n"]);
    wait_until(30, "the sleep", || {
        app.record_opt("n")
            .is_some_and(|r| r.status == flow::RunStatus::Sleeping)
    });
    kill9(&mut child);
    push_due_times_a_day_ahead(&app.store(), "n");
    let out = app.run(&["runs", "resume", "n"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(app.effects().iter().any(|l| l.starts_with("woke")));
}

/// Item 16: a declined charge the workflow handled is not attempted again when the run resumes
/// after a crash; only an operator's retry of a failed run would.
#[test]
fn a_handled_failure_replays_after_a_crash() {
    let app = App::new();
    let out = app.run(&["run", "billing", "--input", "12", "--id", "bill"]);
    assert_eq!(out.status.code(), Some(9), "crash_once exits the process");
    let out = app.run(&["--output", "json", "runs", "resume", "bill"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["output"], serde_json::json!([0, 3, 6, 9]));
    let charges: Vec<String> = app
        .effects_by_pid("charge")
        .into_values()
        .flatten()
        .collect();
    assert_eq!(charges.len(), 12, "each invoice charged once: {charges:?}");
}

/// Item 15: inside a unit a step's body gets its declared key; the stored key is scoped by the
/// unit, without repeating a key equal to the unit's.
#[test]
fn steps_in_units_get_their_declared_key() {
    let app = App::new();
    let out = app.run(&["run", "fanout", "--input", r#"{"n": 5}"#, "--id", "keys"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for line in app.effects() {
        let mut words = line.split(' ');
        let (what, i, key) = (words.next(), words.next(), words.next());
        let i = i.unwrap();
        let expected = match what {
            Some("push") => format!("key=item-{i}"),
            Some("invoice") => format!("key=inv-{i}"),
            other => panic!("unexpected effect {other:?}"),
        };
        assert_eq!(key, Some(expected.as_str()), "{line}");
    }
    let keys: BTreeSet<String> = read_steps(&app.store(), "keys")
        .into_iter()
        .filter(|s| !s.id.name.starts_with("flow::"))
        .map(|s| s.id.key)
        .collect();
    assert!(keys.contains("item-2"), "{keys:?}");
    assert!(keys.contains("item-2/inv-2"), "{keys:?}");
    assert!(
        !keys.iter().any(|k| k.contains("item-2/item-2")),
        "{keys:?}"
    );
}

/// Item 17: a payment in doubt shows its arguments in the needs-attention report and in
/// `runs show`.
#[test]
fn a_step_in_doubt_shows_its_arguments() {
    let app = App::new();
    let mut child = app.spawn(&["run", "payment", "--input", r#""cust-42""#, "--id", "pay"]);
    wait_until(30, "the payment", || !app.effects().is_empty());
    kill9(&mut child);
    let out = app.run(&["--output", "json", "runs", "resume", "pay"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["attention"]["args"],
        serde_json::json!(["cust-42", 500])
    );
    assert!(
        json["attention"]["reason"]
            .as_str()
            .unwrap()
            .contains(r#"["cust-42",500]"#),
        "{json}"
    );
    let out = app.run(&["--output", "json", "runs", "show", "pay"]);
    let show = String::from_utf8_lossy(&out.stdout);
    assert!(show.contains("cust-42"), "{show}");
}

/// Issue 14: starting an unfinished run id with another input is refused (exit 2, nothing
/// executed) unless the caller asks for the stored input.
#[test]
fn an_unfinished_run_id_with_another_input_is_refused_unless_asked() {
    let app = App::new();
    let stored = r#"{"n": 6, "delay_ms": 300}"#;
    let mut child = app.spawn(&["run", "steps", "--input", stored, "--id", "same"]);
    wait_until(30, "the first step", || !app.effects().is_empty());
    kill9(&mut child);
    let before = app.effects().len();

    let other = r#"{"n": 2}"#;
    let out = app.run(&["run", "steps", "--input", other, "--id", "same"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("exists with another input"),
        "{}",
        stderr(&out)
    );
    assert_eq!(app.effects().len(), before, "nothing executed");
    assert_eq!(app.record("same").executions, 1);

    let out = app.run(&[
        "run",
        "steps",
        "--input",
        other,
        "--id",
        "same",
        "--use-stored-input",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let steps: Vec<String> = app.effects_by_pid("step").into_values().flatten().collect();
    let distinct: BTreeSet<&String> = steps.iter().collect();
    assert_eq!(
        distinct.len(),
        6,
        "the stored input's six steps ran: {steps:?}"
    );
}

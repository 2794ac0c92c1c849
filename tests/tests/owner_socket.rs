//! Issue 8, item 4: the process that executes runs owns the store and serves the operator API
//! on `<store>.sock`; other commands go through it while it lives and open the store themselves
//! once it is gone. Real child processes of a `#[flow::main]` binary (`faults_child`), real
//! sockets, SIGKILL; assertions read the effect log (which pid executed what) and the store.

use flow_runtime as flow;
use flow_tests::{lines, read_run, wait_until};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

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

    fn socket(&self) -> PathBuf {
        self.dir.path().join("flow.redb.sock")
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
            .env_remove("FLOW_SHARING")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Effect lines equal to `what`, by the pid that wrote them.
    fn effect_pids(&self, what: &str) -> Vec<u32> {
        lines(&self.log())
            .iter()
            .filter_map(|l| l.rsplit_once(" pid="))
            .filter(|(w, _)| *w == what)
            .map(|(_, pid)| pid.parse().unwrap())
            .collect()
    }

    fn count(&self, prefix: &str) -> usize {
        lines(&self.log())
            .iter()
            .filter(|l| l.starts_with(prefix))
            .count()
    }

    /// Waits until `id` shows as running through the owner's socket.
    fn wait_serving(&self, id: &str) {
        wait_until(60, "the owner to serve", || {
            let out = self.run(&["runs", "show", id]);
            out.status.code() == Some(0) && stdout(&out).contains("running")
        });
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What the command said to the operator: stderr without the JSON log lines.
fn said(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.starts_with('{'))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

#[test]
fn operators_go_through_the_owner_and_open_the_store_once_it_was_killed() {
    let app = App::new();
    // A failed run to resume later, through the owner.
    let out = app.run(&[
        "run",
        "steps",
        "--input",
        r#"{"n": 2, "fail_once_at": 1}"#,
        "--id",
        "failed",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));

    let owner = app.spawn(&[
        "run",
        "steps",
        "--input",
        r#"{"n": 2000, "delay_ms": 50}"#,
        "--id",
        "long",
    ]);
    app.wait_serving("long");
    let mode = std::fs::metadata(app.socket())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the socket's mode is {mode:o}");

    // list and show reach the owner (the store is locked to everyone else).
    let out = app.run(&["runs", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    assert!(stdout(&out).contains("long") && stdout(&out).contains("failed"));
    let out = app.run(&["runs", "show", "long"]);
    assert!(
        stdout(&out).contains(&format!("executing in process {}", owner.id())),
        "{}",
        stdout(&out)
    );
    let remote_unknown = app.run(&["runs", "show", "nope"]);
    assert_eq!(remote_unknown.status.code(), Some(2));
    assert!(said(&remote_unknown).contains("no run has the id `nope`"));

    // resume through the socket: the owner executes it, this command reports its outcome.
    let out = app.run(&["runs", "resume", "failed"]);
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    assert!(stdout(&out).contains("succeeded"), "{}", stdout(&out));
    assert_eq!(app.effect_pids("notify 1"), vec![owner.id()]);

    // cancel through the socket: the owner's run stops at its next step.
    let out = app.run(&["runs", "cancel", "long"]);
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    let out = owner.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        read_run(&app.store(), "long").unwrap().status,
        flow::RunStatus::Cancelled
    );
    assert!(!app.socket().exists(), "the owner removed its socket");

    // An owner killed: its socket stays behind, and commands open the store themselves.
    let mut owner = app.spawn(&[
        "run",
        "steps",
        "--input",
        r#"{"n": 60, "delay_ms": 50}"#,
        "--id",
        "killed",
    ]);
    app.wait_serving("killed");
    owner.kill().unwrap();
    owner.wait().unwrap();
    assert!(is_socket(&app.socket()), "the socket file is left behind");
    let out = app.run(&["runs", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    assert!(stdout(&out).contains("killed"));
    let out = app.run(&["runs", "show", "killed"]);
    assert!(
        stdout(&out).contains("no process is executing it"),
        "{}",
        stdout(&out)
    );
    let local_unknown = app.run(&["runs", "show", "nope"]);
    assert_eq!(local_unknown.status.code(), Some(2));
    assert_eq!(said(&local_unknown), said(&remote_unknown));
    let out = app.run(&["runs", "resume", "killed"]);
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    assert_eq!(
        read_run(&app.store(), "killed").unwrap().status,
        flow::RunStatus::Succeeded
    );
    // 0 + 1 + ... + 59, notified once
    assert_eq!(app.effect_pids("notify 1770").len(), 1);
    assert!(
        !app.socket().exists(),
        "the new owner replaced and removed the stale socket"
    );
}

#[test]
fn two_runs_at_once_on_one_store_both_succeed_with_their_effects_once() {
    let app = App::new();
    let first = app
        .command(&[
            "run",
            "steps",
            "--input",
            r#"{"n": 20, "delay_ms": 20}"#,
            "--id",
            "first",
        ])
        .spawn()
        .unwrap();
    let second = app
        .command(&[
            "run",
            "steps",
            "--input",
            r#"{"n": 21, "delay_ms": 20}"#,
            "--id",
            "second",
        ])
        .spawn()
        .unwrap();
    for child in [first, second] {
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", said(&out));
        assert!(stdout(&out).contains("succeeded"), "{}", stdout(&out));
    }
    assert_eq!(app.effect_pids("notify 190").len(), 1);
    assert_eq!(app.effect_pids("notify 210").len(), 1);
    assert_eq!(app.count("step "), 41, "every step executed once");
}

#[test]
fn a_live_owner_whose_socket_was_deleted_is_named_with_what_to_do() {
    let app = App::new();
    let mut owner = app.spawn(&[
        "run",
        "steps",
        "--input",
        r#"{"n": 2000, "delay_ms": 50}"#,
        "--id",
        "long",
    ]);
    app.wait_serving("long");
    std::fs::remove_file(app.socket()).unwrap();
    let out = app.run(&["runs", "list"]);
    owner.kill().unwrap();
    owner.wait().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", said(&out));
    let message = said(&out);
    assert!(
        message.contains(&format!("process {} holds the store", owner.id())),
        "{message}"
    );
    assert!(message.contains("flow.redb.sock"), "{message}");
    assert!(
        message.contains(&format!("kill {}", owner.id())),
        "{message}"
    );
}

#[test]
fn a_store_path_too_long_for_its_socket_is_a_configuration_error() {
    let app = App::new();
    let deep = app.dir.path().join("d".repeat(100));
    std::fs::create_dir(&deep).unwrap();
    let out = app
        .command(&["run", "steps", "--input", r#"{"n": 1}"#])
        .env("FLOW_STORE", deep.join("flow.redb"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", said(&out));
    assert!(said(&out).contains("limited to 107"), "{}", said(&out));
    assert_eq!(app.count("step "), 0, "nothing ran");
}

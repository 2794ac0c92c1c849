//! The generated CLI on a PostgreSQL store (issue 11): `flow.store` (here `FLOW_STORE`) set
//! to a `postgres://` URL selects PostgreSQL, `flow.postgres.schema` the schema; `migrate`,
//! `enqueue`, `worker` and `runs list`/`runs show` of a real `#[flow::main]` binary
//! (`worker_child`) in child processes, each test in a schema of its own. An unreachable
//! server is a clear error with the store's exit code.

use flow_tests::pg::{drop_schema, url as postgres_url};
use flow_tests::{lines, wait_until};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// A working directory and a schema of its own, dropped at the end.
struct App {
    dir: tempfile::TempDir,
    store: String,
    schema: String,
}

impl App {
    fn new(name: &str) -> App {
        let schema = format!("flow_test_{name}_{}", std::process::id());
        drop_schema(&schema);
        App {
            dir: tempfile::tempdir().unwrap(),
            store: postgres_url(),
            schema,
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("effects.log")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_worker_child"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("FLOW_STORE", &self.store)
            .env("FLOW_POSTGRES__SCHEMA", &self.schema)
            .env("FLOW_POSTGRES__POOL_SIZE", "4")
            .env("FLOW_LOG_FORMAT", "json")
            .env("WORKER_LOG", self.log())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        drop_schema(&self.schema);
    }
}

#[test]
fn enqueue_worker_and_runs_commands_work_against_postgresql() {
    let app = App::new("cli");
    let migrated = app.ok(&["migrate"]);
    assert!(
        migrated.contains(&format!("schema={}", app.schema))
            && migrated.contains("schema version 1"),
        "{migrated}"
    );
    app.ok(&[
        "enqueue",
        "job",
        "--input",
        r#"{"n": 7, "ms": 10}"#,
        "--id",
        "pg-1",
    ]);
    app.ok(&[
        "enqueue",
        "job",
        "--input",
        r#"{"n": 8, "ms": 10}"#,
        "--id",
        "pg-2",
    ]);
    let queued = app.json(&["runs", "show", "pg-1"]);
    assert_eq!(queued["run"]["status"], "queued", "{queued}");

    let mut worker = app.command(&["worker"]).spawn().unwrap();
    wait_until(60, "the worker to finish both runs", || {
        ["pg-1", "pg-2"]
            .iter()
            .all(|id| app.json(&["runs", "show", id])["run"]["status"] == "succeeded")
    });
    let status = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = worker.wait().unwrap();
    assert!(out.success() || out.code() == Some(143), "{out:?}");

    let shown = app.json(&["runs", "show", "pg-1"]);
    assert_eq!(shown["run"]["output"], 7, "{shown}");
    assert_eq!(shown["steps"].as_array().unwrap().len(), 1, "{shown}");
    let listed = app.json(&["runs", "list"]);
    let mut runs: Vec<(String, String)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["run_id"].as_str().unwrap().to_owned(),
                r["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    runs.sort();
    assert_eq!(
        runs,
        vec![
            ("pg-1".to_owned(), "succeeded".to_owned()),
            ("pg-2".to_owned(), "succeeded".to_owned())
        ]
    );
    // Each step ran once, in the worker
    let mut effects: Vec<String> = lines(&app.log())
        .iter()
        .map(|l| l.split(" run=").next().unwrap().to_owned())
        .collect();
    effects.sort();
    assert_eq!(
        effects,
        ["end job-7", "end job-8", "start job-7", "start job-8"]
    );
    // Everything went to the database: no redb file appeared
    assert!(!app.dir.path().join("flow.redb").exists());
}

#[test]
fn an_unreachable_server_is_a_clear_error_with_the_store_exit_code() {
    let mut app = App::new("down");
    app.store = "postgres://postgres@127.0.0.1:1/test".into();
    for args in [
        &["runs", "list"][..],
        &["migrate"][..],
        &["enqueue", "job", "--input", r#"{"n": 1, "ms": 1}"#][..],
    ] {
        let out = app.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(5), "{args:?}: {stderr}");
        assert!(
            stderr.contains("127.0.0.1:1") && stderr.contains("unavailable"),
            "{args:?}: {stderr}"
        );
    }
    assert!(!app.dir.path().join("flow.redb").exists());
}

#[test]
fn bad_postgres_and_lease_settings_stop_the_process_before_it_connects() {
    let app = App::new("settings");
    let out = app
        .command(&["runs", "list"])
        .env("FLOW_POSTGRES__SCHEMA", "1-bad")
        .env("FLOW_POSTGRES__POOL_SIZE", "0")
        .env("FLOW_LEASE", "50ms")
        .env(
            "FLOW_POSTGRES__CA_FILE",
            app.dir.path().join("missing-ca.pem"),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    for field in [
        "flow.postgres.schema",
        "flow.postgres.pool_size",
        "flow.postgres.ca_file",
        "flow.lease",
    ] {
        assert!(stderr.contains(field), "{field}: {stderr}");
    }
    assert!(
        stderr.contains("shorter than the shortest lease, 200ms"),
        "{stderr}"
    );
    assert!(
        stderr.contains("cannot read the CA file") && stderr.contains("missing-ca.pem"),
        "{stderr}"
    );
}

#[test]
fn check_config_never_prints_the_password_of_the_store_url() {
    let mut app = App::new("config");
    app.store = "postgres://flow:hunter2@127.0.0.1:5432/test".into();
    let out = app
        .command(&["check-config"])
        .env("FLOW_POSTGRES__PASSWORD", "swordfish")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("postgres://flow:[redacted]@127.0.0.1:5432/test"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("hunter2") && !stdout.contains("swordfish"),
        "{stdout}"
    );
}

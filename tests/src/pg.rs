//! Helpers of the tests that need PostgreSQL: the server's URL, plain SQL on a connection of the
//! test's own, and a cluster of worker processes (`lease_child`) on a schema of its own.

use crate::lines;
use flow_runtime::store::{PgOptions, PgStore, RunRecord, RunStatus, Store};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The test server: `FLOW_TEST_POSTGRES`, or the one these machines start.
pub fn url() -> String {
    std::env::var("FLOW_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Runs `future` on a runtime of its own (for tests that are not async).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

/// A connection of the test's own to the test server (no TLS, as the tests' server has it).
pub async fn connect() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
        .await
        .expect("connect to the test PostgreSQL");
    tokio::spawn(connection);
    client
}

/// Runs `statement` (one or more, separated by `;`) on a connection of its own.
pub async fn sql(statement: &str) {
    let client = connect().await;
    client.batch_execute(statement).await.expect(statement);
}

/// The first column of the first row of `query`, as a number.
pub async fn number(query: &str) -> i64 {
    let client = connect().await;
    client.query_one(query, &[]).await.expect(query).get(0)
}

/// Drops `schema` and everything in it.
pub fn drop_schema(schema: &str) {
    block_on(sql(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")));
}

/// Worker processes of `lease_child` on a schema of their own, an effect log and a stop file;
/// the schema is dropped at the end and every worker still there is killed.
pub struct Cluster {
    /// The test's directory: the effect log, the stop file and the workers' stderr.
    pub dir: tempfile::TempDir,
    /// The schema the workers share.
    pub schema: String,
    /// The URL the workers connect with.
    pub url: String,
    exe: PathBuf,
    lease_ms: u64,
    /// Extra environment of every child (`LEASE_POLL_MS`, `LEASE_CONCURRENCY`).
    env: Vec<(String, String)>,
    /// Workers started, killed at the end if still there (a failed assertion must not leave a
    /// frozen worker holding locks on the schema it drops).
    pids: std::sync::Mutex<Vec<u32>>,
}

impl Cluster {
    /// A cluster of `exe` (`env!("CARGO_BIN_EXE_lease_child")`) workers holding leases of
    /// `lease_ms`, in the schema `flow_test_<name>_<pid>`.
    pub fn new(exe: &str, name: &str, lease_ms: u64) -> Cluster {
        let schema = format!("flow_test_{name}_{}", std::process::id());
        drop_schema(&schema);
        Cluster {
            dir: tempfile::tempdir().expect("temp dir"),
            schema,
            url: url(),
            exe: exe.into(),
            lease_ms,
            env: Vec::new(),
            pids: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Sets `name=value` in every child's environment.
    pub fn env(mut self, name: &str, value: &str) -> Cluster {
        self.env.push((name.into(), value.into()));
        self
    }

    /// The effect log every step appends to.
    pub fn log(&self) -> PathBuf {
        self.dir.path().join("effects.log")
    }

    /// A `lease_child` command as the machine `machine`.
    pub fn command(&self, machine: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.args(args)
            .env("LEASE_PG", &self.url)
            .env("LEASE_SCHEMA", &self.schema)
            .env("LEASE_MS", self.lease_ms.to_string())
            .env("LEASE_LOG", self.log())
            .env("LEASE_STOP", self.dir.path().join("stop"))
            .env("FLOW_MACHINE_ID", machine)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs `lease_child ARGS` to its end; panics with its stderr if it fails.
    pub fn call(&self, args: &[&str]) {
        let out = self.command("test", args).output().expect("lease_child");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Enqueues a run of `slow`: `steps` steps of `ms`.
    pub fn enqueue(&self, id: &str, steps: u32, ms: u64) {
        self.call(&["enqueue", id, &steps.to_string(), &ms.to_string()]);
    }

    /// Starts a worker as the machine `machine`; its stderr goes to a file of the test's
    /// directory (a pipe nobody reads would stall a talkative worker).
    pub fn worker(&self, machine: &str) -> Child {
        let n = self.pids.lock().unwrap_or_else(|e| e.into_inner()).len();
        let stderr = std::fs::File::create(self.dir.path().join(format!("worker-{n}.stderr")))
            .expect("stderr file");
        let child = self
            .command(machine, &["worker"])
            .stderr(stderr)
            .spawn()
            .expect("spawn lease_child");
        self.pids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(child.id());
        child
    }

    /// Stops the workers and returns each one's report line.
    pub fn stop(&self, workers: Vec<Child>) -> Vec<String> {
        std::fs::write(self.dir.path().join("stop"), b"").expect("stop file");
        workers
            .into_iter()
            .map(|child| {
                let out = child.wait_with_output().expect("worker");
                assert!(out.status.success(), "a worker failed: {:?}", out.status);
                String::from_utf8_lossy(&out.stdout).trim().to_owned()
            })
            .collect()
    }

    /// The effect log's lines.
    pub fn effects(&self) -> Vec<String> {
        lines(&self.log())
    }

    /// A store handle on the cluster's schema.
    pub async fn store(&self) -> PgStore {
        let options = PgOptions {
            schema: self.schema.clone(),
            pool_size: 2,
            ..PgOptions::default()
        };
        PgStore::connect_with(&url(), options)
            .await
            .expect("connect to the cluster's schema")
    }

    /// Waits until the runs `ids` are stored as finished (their ends written, not just their
    /// last steps) or waiting for an operator, up to `secs` seconds, and returns them.
    pub fn finished_runs(&self, ids: &[String], secs: u64) -> Vec<RunRecord> {
        block_on(async {
            let store = self.store().await;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
            let mut done = Vec::new();
            for id in ids {
                loop {
                    let run = store.run(&id.as_str().into()).await.unwrap().unwrap();
                    // A run waiting for an operator will not finish by itself
                    if run.status.is_finished() || run.status == RunStatus::NeedsAttention {
                        done.push(run);
                        break;
                    }
                    assert!(
                        std::time::Instant::now() < deadline,
                        "run {id} never finished: {run:?}"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
            done
        })
    }

    /// [`Cluster::finished_runs`] of one run, within 60 s.
    pub fn finished_run(&self, id: &str) -> RunRecord {
        self.finished_runs(&[id.to_owned()], 60).remove(0)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for pid in self.pids.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        drop_schema(&self.schema);
    }
}

//! A worker process on a PostgreSQL store for the tests of workers on several machines
//! (`tests/tests/leases.rs`, `tests/tests/postgres_workers.rs`), standing for one machine of
//! several: the test gives each child its own `FLOW_MACHINE_ID`, so the children cannot see each
//! other's processes and only the claims' leases keep them apart.
//!
//! `lease_child enqueue ID STEPS MS` enqueues a run of `slow`; `lease_child enqueue-many
//! WORKFLOW PREFIX N STEPS MS [DELAY_MS]` enqueues N runs `PREFIX-0000`... of `soak` or
//! `careful`; `lease_child worker` runs a worker until the file `LEASE_STOP` exists, then
//! prints its report (`started finished interrupted`) on stdout. Settings come from the
//! environment: `LEASE_PG` (the server), `LEASE_SCHEMA`, `LEASE_MS` (the lease), `LEASE_LOG`,
//! where every step appends `start` and `end` lines with its name and the pid, and optionally
//! `LEASE_POLL_MS` (the worker's poll interval, default 20) and `LEASE_CONCURRENCY` (default
//! 16).

use flow_runtime as flow;
use flow_runtime::store::{PgOptions, PgStore};
use flow_tests::append_line;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

fn log(line: &str) -> Result<(), flow::Failure> {
    let path = PathBuf::from(env("LEASE_LOG"));
    append_line(&path, &format!("{line} pid={}", std::process::id()))
        .map_err(flow::Failure::permanent)
}

/// One unit of work: `start`, a pause in which the process can be frozen, `end`.
#[flow::step(idempotent, retry = "none")]
async fn work(name: String, ms: u64) -> Result<(), flow::Failure> {
    log(&format!("start {name}"))?;
    tokio::time::sleep(Duration::from_millis(ms)).await;
    log(&format!("end {name}"))
}

/// `steps` steps of `ms` each, one after the other.
#[flow::workflow]
async fn slow(steps: u32, ms: u64) -> Result<u32, flow::Failure> {
    for i in 0..steps {
        work(format!("step-{i}"), ms).await?;
    }
    Ok(steps)
}

/// One effect line: `start|end run=ID step=N attempt=A pid=P`, appended with one write call
/// (whole lines from every process, in the order they were written). Not synced: a SIGKILL
/// loses nothing a process wrote, only a machine's crash would.
fn effect(what: &str, step: u32) -> Result<(), flow::Failure> {
    use std::io::Write;
    let run = flow::run_id().map(|id| id.to_string()).unwrap_or_default();
    let attempt = flow::attempt().unwrap_or(0);
    let line = format!(
        "{what} run={run} step={step} attempt={attempt} pid={}\n",
        std::process::id()
    );
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(env("LEASE_LOG"))
        .and_then(|mut file| file.write_all(line.as_bytes()))
        .map_err(flow::Failure::permanent)
}

/// A step that may run again: its effect is logged at its start and its end.
#[flow::step(idempotent, retry = "none")]
async fn repeatable(step: u32, ms: u64) -> Result<(), flow::Failure> {
    effect("start", step)?;
    tokio::time::sleep(Duration::from_millis(ms)).await;
    effect("end", step)
}

/// A step that must never run twice: a run interrupted inside it needs an operator.
#[flow::step(at_most_once)]
async fn once(step: u32, ms: u64) -> Result<(), flow::Failure> {
    effect("start", step)?;
    tokio::time::sleep(Duration::from_millis(ms)).await;
    effect("end", step)
}

/// `steps` idempotent steps of `ms` each (the soak test).
#[flow::workflow]
async fn soak(steps: u32, ms: u64) -> Result<u32, flow::Failure> {
    for i in 0..steps {
        repeatable(i, ms).await?;
    }
    Ok(steps)
}

/// `steps` at-most-once steps of `ms` each (the connection-kill test).
#[flow::workflow]
async fn careful(steps: u32, ms: u64) -> Result<u32, flow::Failure> {
    for i in 0..steps {
        once(i, ms).await?;
    }
    Ok(steps)
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let options = PgOptions {
            schema: env("LEASE_SCHEMA"),
            pool_size: 4,
            password: None,
            ca_file: None,
        };
        let store = PgStore::connect_with(&env("LEASE_PG"), options)
            .await
            .unwrap();
        let lease = Duration::from_millis(env("LEASE_MS").parse().unwrap());
        let flow = flow::Flow::builder().lease(lease).store(Arc::new(store));
        match args.first().map(String::as_str) {
            Some("enqueue") => {
                let input = serde_json::json!({
                    "steps": args[2].parse::<u32>().unwrap(),
                    "ms": args[3].parse::<u64>().unwrap(),
                });
                flow.enqueue("slow", flow::RunOptions::new().id(args[1].as_str()), input)
                    .await
                    .unwrap();
            }
            Some("enqueue-many") => {
                let (workflow, prefix) = (args[1].as_str(), args[2].as_str());
                let n: u32 = args[3].parse().unwrap();
                let input = serde_json::json!({
                    "steps": args[4].parse::<u32>().unwrap(),
                    "ms": args[5].parse::<u64>().unwrap(),
                });
                let delay = args
                    .get(6)
                    .map(|ms| Duration::from_millis(ms.parse().unwrap()));
                for i in 0..n {
                    let mut options = flow::RunOptions::new().id(format!("{prefix}-{i:04}"));
                    if let Some(delay) = delay {
                        options = options.delay(delay);
                    }
                    flow.enqueue(workflow, options, input.clone())
                        .await
                        .unwrap();
                }
            }
            Some("worker") => {
                let stop = PathBuf::from(env("LEASE_STOP"));
                let report = flow
                    .worker()
                    .concurrency(env_or("LEASE_CONCURRENCY", 16) as usize)
                    .poll_interval(Duration::from_millis(env_or("LEASE_POLL_MS", 20)))
                    .recovery_interval(Duration::from_millis(100))
                    .grace(Duration::from_millis(100))
                    .run_until(async move {
                        while !stop.exists() {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    })
                    .await
                    .unwrap();
                println!(
                    "started={} resumed={} finished={} interrupted={}",
                    report.started,
                    report.resumed,
                    report.finished,
                    report.interrupted.len()
                );
            }
            other => panic!("unknown command {other:?}"),
        }
    });
}

//! A worker process on a PostgreSQL store for the lease tests (`tests/tests/leases.rs`),
//! standing for one machine of several: the test gives each child its own `FLOW_MACHINE_ID`, so
//! the children cannot see each other's processes and only the claims' leases keep them apart.
//!
//! `lease_child enqueue ID STEPS MS` enqueues a run of `slow`; `lease_child worker` runs a
//! worker until the file `LEASE_STOP` exists, then prints its report (`started finished
//! interrupted`) on stdout. Settings come from the environment: `LEASE_PG` (the server),
//! `LEASE_SCHEMA`, `LEASE_MS` (the lease) and `LEASE_LOG`, where every step appends `start`
//! and `end` lines with its name and the pid.

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
            Some("worker") => {
                let stop = PathBuf::from(env("LEASE_STOP"));
                let report = flow
                    .worker()
                    .poll_interval(Duration::from_millis(20))
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

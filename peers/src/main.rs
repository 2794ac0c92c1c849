//! flow against a peer: the `dbos` crate (DBOS Transact for Rust) on PostgreSQL, on one workload.
//!
//! Run with `cd peers && cargo run --release`. Prints one markdown table; the section "Against a
//! peer: dbos" of `BENCHMARKS.md` at the repository root explains it.
//!
//! The workload is a workflow of 10 checkpointed no-op steps, in two shapes:
//!
//! - 200 runs one at a time: each run is started and its outcome awaited before the next starts;
//! - 2,000 runs with 200 in flight: a sliding window, a new run starts as soon as one finishes.
//!
//! Each system is measured three times, interleaved (flow on redb strict, flow on redb with the
//! 5 ms window, flow on PostgreSQL, dbos, then again), every repetition in a fresh store: a new
//! redb file, or a dropped and recreated database (`flow_bench_flow` for flow, `flow_bench_dbos`
//! for dbos). A ratio is the median of the three per-repetition ratios.
//!
//! PostgreSQL: `FLOW_PEERS_POSTGRES` (default `postgres://postgres@127.0.0.1:5432`) names the
//! server. The benchmark drops and recreates its own two databases and touches no other; it
//! connects to the `postgres` maintenance database to do so. For both systems on PostgreSQL it
//! counts the transactions committed in their database (`pg_stat_database.xact_commit`) and the
//! server's WAL syncs (`pg_stat_wal.wal_sync`) per step.
//!
//! flow's store files live under `peers/target/tmp` (the disk the build is on, not a tmpfs
//! `/tmp`).

use flow_runtime as flow;
use flow_runtime::store::{PgOptions, PgStore, RedbStore};
use futures::StreamExt;
use std::error::Error;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Steps per run.
const STEPS: u32 = 10;

/// Repetitions of each measurement; the median is reported, with the range.
const REPEATS: usize = 3;

/// The databases this benchmark owns: dropped and recreated before each repetition on
/// PostgreSQL.
const DATABASE: &str = "flow_bench_dbos";
const DROP_DATABASE: &str = "DROP DATABASE IF EXISTS flow_bench_dbos WITH (FORCE)";
const FLOW_DATABASE: &str = "flow_bench_flow";
const DROP_FLOW_DATABASE: &str = "DROP DATABASE IF EXISTS flow_bench_flow WITH (FORCE)";
const CREATE_FLOW_DATABASE: &str = "CREATE DATABASE flow_bench_flow";

/// Where the PostgreSQL server is, unless `FLOW_PEERS_POSTGRES` says otherwise.
const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// Pooled connections of the dbos instance, unless `FLOW_PEERS_DBOS_POOL` says otherwise. Its
/// default is 10; with 200 runs in flight every step would wait for a connection, so the
/// benchmark gives it more (the server allows 100).
const DBOS_CONNECTIONS: u32 = 40;

fn dbos_connections() -> u32 {
    std::env::var("FLOW_PEERS_DBOS_POOL")
        .ok()
        .and_then(|pool| pool.parse().ok())
        .filter(|pool| *pool > 0)
        .unwrap_or(DBOS_CONNECTIONS)
}

/// One shape of the workload.
#[derive(Clone, Copy)]
struct Workload {
    label: &'static str,
    runs: u32,
    in_flight: usize,
}

const WORKLOADS: [Workload; 2] = [
    Workload {
        label: "200 × 10, one at a time",
        runs: 200,
        in_flight: 1,
    },
    Workload {
        label: "2,000 × 10, 200 in flight",
        runs: 2_000,
        in_flight: 200,
    },
];

/// The systems measured, in table order.
#[derive(Clone, Copy, PartialEq)]
enum System {
    FlowStrict,
    FlowWindow,
    FlowPostgres,
    Dbos,
}

impl System {
    const ALL: [System; 4] = [
        System::FlowStrict,
        System::FlowWindow,
        System::FlowPostgres,
        System::Dbos,
    ];

    fn label(self) -> &'static str {
        match self {
            System::FlowStrict => "flow (redb, exclusive, strict)",
            System::FlowWindow => "flow (redb, exclusive, 5 ms window)",
            System::FlowPostgres => "flow (PostgreSQL)",
            System::Dbos => "dbos 0.5.0 (PostgreSQL)",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// flow

#[flow::step(idempotent, retry = "none")]
async fn noop(run: u32, i: u32) -> Result<(), flow::Failure> {
    let _ = (run, i);
    Ok(())
}

#[flow::workflow]
async fn ten_noops(run: u32) -> Result<(), flow::Failure> {
    for i in 0..STEPS {
        noop(run, i).await?;
    }
    Ok(())
}

/// What one repetition measured.
struct Repetition {
    /// Wall time from the first start to the last outcome.
    took: Duration,
    /// Disk syncs: flow's durable commits; PostgreSQL's WAL syncs (`pg_stat_wal.wal_sync`).
    syncs: u64,
    /// On PostgreSQL: transactions committed in the system's database
    /// (`pg_stat_database.xact_commit`).
    transactions: Option<u64>,
}

/// One repetition of `workload` in a fresh exclusive store at `path`.
async fn flow_once(
    path: &Path,
    durability: flow::Durability,
    workload: Workload,
) -> Result<Repetition, Box<dyn Error>> {
    let store = Arc::new(RedbStore::open_with(path, flow::Sharing::Exclusive)?);
    store.set_durability(durability);
    let flow = flow::Flow::builder().store(store.clone());
    let took = flow_workload(&flow, workload).await?;
    Ok(Repetition {
        took,
        syncs: store.stats().commits,
        transactions: None,
    })
}

/// Starts `workload.runs` runs, `workload.in_flight` at a time, and waits for every outcome;
/// returns the time from the first start to the last outcome.
async fn flow_workload(flow: &flow::Flow, workload: Workload) -> Result<Duration, Box<dyn Error>> {
    let start = Instant::now();
    let mut outcomes = futures::stream::iter(0..workload.runs)
        .map(|run| async move {
            let options = flow::RunOptions::new().id(format!("run-{run:06}"));
            let handle = ten_noops::start_with(flow, options, run)
                .await
                .map_err(|e| format!("flow: run {run} did not start: {e}"))?;
            handle
                .outcome()
                .await
                .map_err(|e| format!("flow: run {run} did not succeed: {e:?}"))
        })
        .buffer_unordered(workload.in_flight);
    while let Some(outcome) = outcomes.next().await {
        outcome?;
    }
    Ok(start.elapsed())
}

/// One repetition of `workload` on flow's PostgreSQL store in a freshly created database, with
/// flow's default settings (a pool of 16 connections, `sslmode=prefer`, as dbos's sqlx). The
/// connect (and the migration it applies) is not timed, but its few transactions are counted.
async fn flow_postgres_once(
    admin: &sqlx::PgPool,
    server: &str,
    workload: Workload,
) -> Result<Repetition, Box<dyn Error>> {
    sqlx::raw_sql(DROP_FLOW_DATABASE).execute(admin).await?;
    sqlx::raw_sql(CREATE_FLOW_DATABASE).execute(admin).await?;
    let (syncs_before, transactions_before) = postgres_counts(admin, FLOW_DATABASE).await?;
    let url = format!("{server}/{FLOW_DATABASE}");
    let store = Arc::new(PgStore::connect_with(&url, PgOptions::default()).await?);
    let flow = flow::Flow::builder().store(store.clone());
    let took = flow_workload(&flow, workload).await;
    let commits = store.stats();
    // Closing the last handle closes the pool, so every session reports its counts
    drop(flow);
    drop(store);
    let took = took?;
    let (syncs, transactions) = postgres_counts(admin, FLOW_DATABASE).await?;
    eprintln!(
        "flow (PostgreSQL): {} group commits ({} of them deferred) for {} requests",
        commits.commits + commits.deferred_commits,
        commits.deferred_commits,
        commits.writes
    );
    Ok(Repetition {
        took,
        syncs: syncs.saturating_sub(syncs_before),
        transactions: Some(transactions.saturating_sub(transactions_before)),
    })
}

// ---------------------------------------------------------------------------------------------
// dbos

async fn dbos_ten_noops(run: u32) -> dbos::Result<()> {
    for i in 0..STEPS {
        dbos::step("noop", move || async move {
            let _ = (run, i);
            dbos::Result::Ok(())
        })
        .await?;
    }
    Ok(())
}

/// The maintenance connection used to drop and recreate [`DATABASE`].
async fn maintenance(server: &str) -> Result<sqlx::PgPool, Box<dyn Error>> {
    let url = format!("{server}/postgres");
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .map_err(|e| {
            format!(
                "cannot reach PostgreSQL at {url}: {e}; start it, or point FLOW_PEERS_POSTGRES at \
                 a server (e.g. postgres://user@host:5432) where this user may create databases"
            )
            .into()
        })
}

/// The server's WAL syncs so far and the transactions committed in `database`, once every
/// connection to it has gone: a backend reports its counts before it leaves
/// `pg_stat_activity`, so none is missing.
async fn postgres_counts(admin: &sqlx::PgPool, database: &str) -> Result<(u64, u64), sqlx::Error> {
    loop {
        let connected: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
                .bind(database)
                .fetch_one(admin)
                .await?;
        if connected == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (syncs, transactions): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT wal_sync FROM pg_stat_wal), \
         coalesce((SELECT xact_commit FROM pg_stat_database WHERE datname = $1), 0)",
    )
    .bind(database)
    .fetch_one(admin)
    .await?;
    Ok((syncs.max(0) as u64, transactions.max(0) as u64))
}

/// One repetition of `workload` against a freshly created database. Launch and migration are
/// not timed, nor counted: the instance is launched once to create and migrate the database,
/// shut down, counted, and launched again for the workload.
async fn dbos_once(
    admin: &sqlx::PgPool,
    server: &str,
    workload: Workload,
) -> Result<Repetition, Box<dyn Error>> {
    sqlx::raw_sql(DROP_DATABASE).execute(admin).await?;
    let config = dbos::Config {
        app_version: Some("1".to_owned()),
        max_connections: dbos_connections(),
        ..dbos::Config::new("flow_peers_bench", format!("{server}/{DATABASE}"))
    };
    let instance = dbos::DBOS::new(config);
    let workflow = instance.register_workflow("ten_noops", dbos_ten_noops)?;
    instance.launch().await?;
    instance.shutdown().await;
    let (syncs_before, transactions_before) = postgres_counts(admin, DATABASE).await?;
    instance.launch().await?;
    let workflow = &workflow;
    let start = Instant::now();
    let mut outcomes = futures::stream::iter(0..workload.runs)
        .map(|run| async move {
            let id = format!("run-{run:06}");
            let options = dbos::RunOptions {
                workflow_id: Some(&id),
                ..Default::default()
            };
            workflow
                .run_with(run, options)
                .await
                .map_err(|e| format!("dbos: run {run} did not succeed: {e}"))
        })
        .buffer_unordered(workload.in_flight);
    let mut failed = None;
    while let Some(outcome) = outcomes.next().await {
        if let Err(e) = outcome {
            failed = Some(e);
            break;
        }
    }
    let took = start.elapsed();
    drop(outcomes);
    instance.shutdown().await;
    if let Some(e) = failed {
        return Err(e.into());
    }
    let (syncs, transactions) = postgres_counts(admin, DATABASE).await?;
    Ok(Repetition {
        took,
        syncs: syncs.saturating_sub(syncs_before),
        transactions: Some(transactions.saturating_sub(transactions_before)),
    })
}

// ---------------------------------------------------------------------------------------------
// the table

/// The median of `values` and the lowest and highest.
fn median_and_range(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    (
        sorted[sorted.len() / 2],
        sorted[0],
        sorted[sorted.len() - 1],
    )
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

/// Every repetition, per workload and system.
struct Measured {
    /// `rates[workload][system][repeat]`: steps/s.
    rates: Vec<Vec<Vec<f64>>>,
    /// `syncs[workload][system]`: disk syncs per step over all repetitions.
    syncs: Vec<Vec<f64>>,
    /// `transactions[workload][system]`: PostgreSQL transactions per step over all repetitions
    /// (the systems on PostgreSQL only).
    transactions: Vec<Vec<Option<f64>>>,
}

impl Measured {
    fn rates(&self, workload: usize, system: System) -> &[f64] {
        let index = System::ALL.iter().position(|s| *s == system).unwrap_or(0);
        &self.rates[workload][index]
    }

    /// The median over the repetitions of flow's rate divided by dbos's in the same repetition,
    /// and the range.
    fn ratio(&self, workload: usize, system: System) -> (f64, f64, f64) {
        let ratios: Vec<f64> = self
            .rates(workload, system)
            .iter()
            .zip(self.rates(workload, System::Dbos))
            .map(|(flow, dbos)| flow / dbos)
            .collect();
        median_and_range(&ratios)
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let server = std::env::var("FLOW_PEERS_POSTGRES").unwrap_or_else(|_| DEFAULT_SERVER.into());
    let server = server.trim_end_matches('/').to_owned();
    let base = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/target/tmp"));
    std::fs::create_dir_all(base)?;
    let dir = tempfile::Builder::new().prefix("peers-").tempdir_in(base)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;

    let admin = runtime.block_on(maintenance(&server))?;
    let postgres = runtime.block_on(async {
        let version: String = sqlx::query_scalar("SHOW server_version")
            .fetch_one(&admin)
            .await?;
        let synchronous_commit: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&admin)
            .await?;
        let fsync: String = sqlx::query_scalar("SHOW fsync").fetch_one(&admin).await?;
        Ok::<_, sqlx::Error>(format!(
            "PostgreSQL {version}, synchronous_commit = {synchronous_commit}, fsync = {fsync}"
        ))
    })?;

    let mut measured = Measured {
        rates: vec![vec![Vec::new(); System::ALL.len()]; WORKLOADS.len()],
        syncs: vec![vec![0.0; System::ALL.len()]; WORKLOADS.len()],
        transactions: vec![vec![None; System::ALL.len()]; WORKLOADS.len()],
    };
    for (w, workload) in WORKLOADS.iter().enumerate() {
        for repeat in 0..REPEATS {
            for (s, system) in System::ALL.into_iter().enumerate() {
                let repetition = match system {
                    System::FlowStrict | System::FlowWindow => {
                        let durability = if system == System::FlowStrict {
                            flow::Durability::Strict
                        } else {
                            flow::Durability::Window(Duration::from_millis(5))
                        };
                        let path = dir.path().join(format!("flow-{w}-{s}-{repeat}.redb"));
                        runtime.block_on(flow_once(&path, durability, *workload))?
                    }
                    System::FlowPostgres => {
                        runtime.block_on(flow_postgres_once(&admin, &server, *workload))?
                    }
                    System::Dbos => runtime.block_on(dbos_once(&admin, &server, *workload))?,
                };
                let steps = f64::from(workload.runs * STEPS);
                let rate = steps / repetition.took.as_secs_f64();
                let all_steps = steps * REPEATS as f64;
                measured.syncs[w][s] += repetition.syncs as f64 / all_steps;
                if let Some(transactions) = repetition.transactions {
                    *measured.transactions[w][s].get_or_insert(0.0) +=
                        transactions as f64 / all_steps;
                }
                eprintln!(
                    "{} | {} | repetition {}: {rate:.0} steps/s",
                    workload.label,
                    system.label(),
                    repeat + 1
                );
                measured.rates[w][s].push(rate);
            }
        }
    }
    runtime.block_on(async {
        sqlx::raw_sql(DROP_DATABASE).execute(&admin).await?;
        sqlx::raw_sql(DROP_FLOW_DATABASE).execute(&admin).await?;
        admin.close().await;
        Ok::<_, sqlx::Error>(())
    })?;
    drop(runtime);

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    println!("## flow against dbos");
    println!();
    println!("- cores (nproc): {cores}");
    println!("- flow store files in: {}", dir.path().display());
    println!(
        "- {postgres}; dbos pool: {} connections",
        dbos_connections()
    );
    println!(
        "- {STEPS} no-op steps per run; median of {REPEATS} interleaved repetitions, each in a \
         fresh store; a ratio is the median of the per-repetition ratios"
    );
    println!();
    println!(
        "| workload | system | steps/s (median) | range | flow / dbos | disk syncs per step | PostgreSQL transactions per step |"
    );
    println!("|---|---|---:|---|---:|---:|---:|");
    for (w, workload) in WORKLOADS.iter().enumerate() {
        for system in System::ALL {
            let (rate, low, high) = median_and_range(measured.rates(w, system));
            let ratio = if system == System::Dbos {
                "1×".to_owned()
            } else {
                let (ratio, low, high) = measured.ratio(w, system);
                format!("{ratio:.1}× ({low:.1}–{high:.1})")
            };
            let index = System::ALL.iter().position(|s| *s == system).unwrap_or(0);
            let transactions = measured.transactions[w][index]
                .map_or_else(|| "–".to_owned(), |t| format!("{t:.3}"));
            println!(
                "| {} | {} | {rate:.0} | {low:.0}–{high:.0} | {ratio} | {:.3} | {transactions} |",
                workload.label,
                system.label(),
                measured.syncs[w][index],
            );
        }
    }
    println!();
    let targets = [
        (1, System::FlowWindow, 25.0),
        (0, System::FlowWindow, 10.0),
        (1, System::FlowPostgres, 3.0),
        (0, System::FlowPostgres, 1.5),
    ];
    for (w, system, target) in targets {
        let (ratio, _, _) = measured.ratio(w, system);
        let note = if ratio >= target {
            String::new()
        } else {
            format!(", short by {:.0}%", (1.0 - ratio / target) * 100.0)
        };
        println!(
            "- {}, {}: {ratio:.1}× dbos (target ≥ {target}×: {}{note})",
            WORKLOADS[w].label,
            system.label(),
            verdict(ratio >= target)
        );
    }
    Ok(())
}

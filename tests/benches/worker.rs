//! The worker: queue throughput and latency, recovery at start, and the cost of sleeping runs.
//!
//! Run with `cargo bench -p flow-tests --bench worker` (release profile). Prints one markdown
//! table; `BENCHMARKS.md` explains it. Every store is a fresh redb file opened exclusively (the
//! mode a worker runs in), under cargo's `target/tmp` (the build's disk, not a tmpfs).
//!
//! 1. enqueue → complete: 5,000 runs of a one-step workflow enqueued at once, drained by a
//!    worker at concurrency 64; runs/s from the first enqueue to the last step's end.
//! 2. queue latency: 2,000 runs enqueued one every 2 ms (500/s, below the worker's capacity);
//!    the time from `enqueue` returning to the step starting, p50 and p99.
//! 3. recovery: 10,000 runs left `running` by a process that is gone; a worker starts: time
//!    until the first of them executes again, and until all 10,000 finished.
//! 4. sleeping runs: 100,000 runs sleeping until tomorrow (timer entries); the worker's
//!    resident memory before and after it ran among them for 3 s, and the throughput of
//!    1,000 queued runs with them present (compare with row 1).

use flow_runtime as flow;
use flow_runtime::store::{
    Owner, QueuePlace, RedbStore, RunId, RunRecord, RunStatus, Store, Write,
};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

static ENDED: AtomicU64 = AtomicU64::new(0);

fn started() -> &'static Mutex<HashMap<u64, Instant>> {
    static STARTED: OnceLock<Mutex<HashMap<u64, Instant>>> = OnceLock::new();
    STARTED.get_or_init(Default::default)
}

fn first_start() -> &'static Mutex<Option<Instant>> {
    static FIRST: OnceLock<Mutex<Option<Instant>>> = OnceLock::new();
    FIRST.get_or_init(Default::default)
}

#[flow::step(idempotent, retry = "none")]
async fn touch(n: u64) -> Result<(), flow::Failure> {
    let now = Instant::now();
    started().lock().unwrap().insert(n, now);
    first_start().lock().unwrap().get_or_insert(now);
    ENDED.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// One step.
#[flow::workflow]
async fn one(n: u64) -> Result<(), flow::Failure> {
    touch(n).await
}

fn reset() {
    ENDED.store(0, Ordering::SeqCst);
    started().lock().unwrap().clear();
    *first_start().lock().unwrap() = None;
}

async fn wait_ended(n: u64) -> Instant {
    while ENDED.load(Ordering::SeqCst) < n {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    Instant::now()
}

fn open(dir: &Path, name: &str) -> (flow::Flow, Arc<RedbStore>) {
    let store = Arc::new(RedbStore::open_with(dir.join(name), flow::Sharing::Exclusive).unwrap());
    let flow = flow::Flow::builder().store(store.clone());
    (flow, store)
}

fn start_worker(
    flow: &flow::Flow,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let worker = flow
        .worker()
        .concurrency(64)
        .poll_interval(Duration::from_millis(5));
    let task = tokio::spawn(async move {
        worker
            .run_until(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    (tx, task)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn record(i: u64, status: RunStatus, owner: Option<Owner>, wake_at_ms: Option<u64>) -> RunRecord {
    let at = now_ms();
    RunRecord {
        id: RunId::from(format!("r-{i}")),
        workflow: "one".into(),
        status,
        input: serde_json::json!(i),
        output: None,
        error: None,
        trace_id: format!("{i:032x}"),
        created_at_ms: at,
        updated_at_ms: at,
        executions: 1,
        attention: None,
        owner,
        lease_expires_at_ms: None,
        queue: Some(QueuePlace {
            name: "default".into(),
            priority: 0,
            not_before_ms: None,
            concurrency_key: None,
        }),
        wake_at_ms,
        scheduled: None,
        app_version: None,
        traceparent: None,
    }
}

async fn put_all(store: &RedbStore, runs: impl Iterator<Item = RunRecord>) {
    let mut batch = Vec::new();
    for run in runs {
        batch.push(Write::PutRun(run));
        if batch.len() == 5_000 {
            store.commit(std::mem::take(&mut batch)).await.unwrap();
        }
    }
    if !batch.is_empty() {
        store.commit(batch).await.unwrap();
    }
}

async fn throughput(flow: &flow::Flow, runs: u64, offset: u64) -> f64 {
    reset();
    let (stop, task) = start_worker(flow);
    let begin = Instant::now();
    for n in offset..offset + runs {
        one::enqueue(flow, flow::RunOptions::new(), n)
            .await
            .unwrap();
    }
    let end = wait_ended(runs).await;
    let _ = stop.send(());
    task.await.unwrap();
    runs as f64 / (end - begin).as_secs_f64()
}

fn main() {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tmp");
    std::fs::create_dir_all(&target).unwrap();
    let dir = tempfile::tempdir_in(&target).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rows: Vec<(String, String)> = Vec::new();
    rt.block_on(async {
        // 4. 100,000 sleeping runs, first, in a fresh process: its memory is the worker's
        let (flow, store) = open(dir.path(), "sleeping.redb");
        let tomorrow = now_ms() + 86_400_000;
        put_all(
            &store,
            (0..100_000).map(|i| record(i, RunStatus::Sleeping, None, Some(tomorrow))),
        )
        .await;
        let before = rss_mib();
        let (stop, task) = start_worker(&flow);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let _ = stop.send(());
        task.await.unwrap();
        let after = rss_mib();
        rows.push((
            "process RSS with 100,000 sleeping runs: before / after a worker ran 3 s among them"
                .into(),
            format!("{before:.0} MiB / {after:.0} MiB"),
        ));
        let rate = throughput(&flow, 1_000, 1_000_000).await;
        rows.push((
            "enqueue → complete, 1,000 runs among the 100,000 sleeping ones".into(),
            format!("{rate:.0} runs/s"),
        ));
        drop(flow);
        drop(store);
        let (flow, _store) = open(dir.path(), "baseline.redb");
        let rate = throughput(&flow, 1_000, 2_000_000).await;
        rows.push((
            "enqueue → complete, 1,000 runs in an empty store".into(),
            format!("{rate:.0} runs/s"),
        ));
        drop(flow);

        // 1. throughput
        let (flow, _store) = open(dir.path(), "throughput.redb");
        let rate = throughput(&flow, 5_000, 0).await;
        rows.push((
            "enqueue → complete, 5,000 one-step runs, concurrency 64".into(),
            format!("{rate:.0} runs/s"),
        ));
        drop(flow);

        // 2. latency at a paced load
        let (flow, _store) = open(dir.path(), "latency.redb");
        reset();
        let (stop, task) = start_worker(&flow);
        let mut enqueued = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_millis(2));
        for n in 0..2_000u64 {
            tick.tick().await;
            one::enqueue(&flow, flow::RunOptions::new(), n)
                .await
                .unwrap();
            enqueued.insert(n, Instant::now());
        }
        wait_ended(2_000).await;
        let _ = stop.send(());
        task.await.unwrap();
        let started = started().lock().unwrap().clone();
        let mut waits: Vec<Duration> = enqueued
            .iter()
            .map(|(n, at)| started[n].saturating_duration_since(*at))
            .collect();
        waits.sort();
        rows.push((
            "queue latency (enqueue → step started) at 500 runs/s, p50 / p99".into(),
            format!(
                "{:.1} ms / {:.1} ms",
                percentile(&waits, 0.5).as_secs_f64() * 1e3,
                percentile(&waits, 0.99).as_secs_f64() * 1e3
            ),
        ));
        drop(flow);

        // 3. recovery of 10,000 interrupted runs
        let (flow, store) = open(dir.path(), "recovery.redb");
        let gone = Owner {
            machine_id: Owner::machine_id().unwrap_or_default(),
            pid: 0x3fff_fff0,
            start_ticks: 1,
            boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .unwrap_or_default()
                .trim()
                .to_owned(),
        };
        put_all(
            &store,
            (0..10_000).map(|i| record(i, RunStatus::Running, Some(gone.clone()), None)),
        )
        .await;
        reset();
        let begin = Instant::now();
        let (stop, task) = start_worker(&flow);
        let end = wait_ended(10_000).await;
        let first = first_start().lock().unwrap().unwrap();
        let _ = stop.send(());
        task.await.unwrap();
        rows.push((
            "recovery of 10,000 interrupted one-step runs: first runs again / all finished".into(),
            format!(
                "{:.0} ms / {:.2} s",
                (first - begin).as_secs_f64() * 1e3,
                (end - begin).as_secs_f64()
            ),
        ));
        drop(flow);
        drop(store);
    });
    println!("| worker | measured |");
    println!("|---|---|");
    for (what, value) in rows {
        println!("| {what} | {value} |");
    }
}

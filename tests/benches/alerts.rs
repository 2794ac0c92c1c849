//! Alerts: webhook delivery latency, and the cost of the worker's max-duration pass.
//!
//! Run with `cargo bench -p flow-tests --bench alerts` (release profile). Prints one markdown
//! table; `BENCHMARKS.md` explains it. Stores are fresh redb files opened exclusively (the mode
//! a worker runs in), under cargo's `target/tmp`; the webhook receiver is a plain HTTP/1.1
//! server on 127.0.0.1 in this process that answers 200 at once.
//!
//! 1. delivery latency, run ended in the worker's process: 100 runs of a workflow with
//!    `alert_after = 1`, failing and succeeding in turn, so each run end opens or resolves an
//!    alert (50 `fired`, 50 `resolved` notices). Measured from the run's outcome reaching its
//!    caller (the end is committed) to the receiver having read the POST; one run at a time.
//! 2. the same for runs ended by another `Flow` on the same store (as another process's run
//!    would be): the worker's deliverer finds them on its one-second poll, not at once.
//! 3. the max-duration pass (`Flow::watch_max_durations`, once a second in a worker) with
//!    10,000 and 100,000 sleeping runs of a watched workflow, none overdue: the time of one
//!    pass, median of 20.

use flow_runtime as flow;
use flow_runtime::store::{RedbStore, RunId, RunRecord, RunStatus, Store, Write};
use std::io::{BufRead, BufReader, Read, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Fails when told to; alerts after one failure, so every other run fires and the next one
/// resolves.
#[flow::workflow(alert_after = 1)]
async fn flip(fail: bool) -> Result<(), flow::Failure> {
    if fail {
        return Err(flow::Failure::permanent("told to fail"));
    }
    Ok(())
}

/// When each POST was read, in arrival order.
type Arrivals = Arc<Mutex<Vec<Instant>>>;

fn receiver() -> (String, Arrivals) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got: Arrivals = Arc::default();
    let arrivals = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            arrivals.lock().unwrap().push(Instant::now());
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, got)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Runs `n` runs of `flip` on `runner`, one at a time, and returns the time from each run's
/// outcome to the receiver reading its notice.
async fn latencies(runner: &flow::Flow, prefix: &str, n: usize, got: &Arrivals) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let before = got.lock().unwrap().len();
        let handle = runner
            .start(
                "flip",
                flow::RunOptions::new().id(format!("{prefix}-{i}")),
                serde_json::json!(i % 2 == 0),
            )
            .await
            .unwrap();
        let _ = handle.outcome().await;
        let ended = Instant::now();
        let deadline = ended + Duration::from_secs(10);
        let arrived = loop {
            if let Some(at) = got.lock().unwrap().get(before) {
                break *at;
            }
            assert!(Instant::now() < deadline, "notice {i} never arrived");
            tokio::time::sleep(Duration::from_micros(100)).await;
        };
        out.push(arrived.saturating_duration_since(ended));
    }
    out.sort();
    out
}

fn sleeping(i: u64, at: u64) -> RunRecord {
    let mut run = RunRecord::new(
        RunId::from(format!("s-{i}")),
        "flip",
        RunStatus::Sleeping,
        serde_json::json!(false),
        format!("{i:032x}"),
        at,
    );
    run.wake_at_ms = Some(at + 86_400_000);
    run
}

async fn pass_time(store: &Arc<RedbStore>, n: u64) -> Duration {
    let at = now_ms();
    let ids: Vec<u64> = (0..n).collect();
    for chunk in ids.chunks(5_000) {
        let writes = chunk
            .iter()
            .map(|&i| Write::PutRun(sleeping(i, at)))
            .collect();
        store.commit(writes).await.unwrap();
    }
    let flow = flow::Flow::builder()
        .alerts(flow::AlertSinks::new().max_duration("flip", Some(Duration::from_secs(3600))))
        .store(store.clone());
    let mut times = Vec::new();
    for _ in 0..20 {
        let begin = Instant::now();
        let pass = flow.watch_max_durations().await.unwrap();
        times.push(begin.elapsed());
        assert_eq!(pass.opened, 0);
    }
    times.sort();
    percentile(&times, 0.5)
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
        let (url, got) = receiver();
        let sinks = flow::AlertSinks::new()
            .webhook(flow::Webhook::new(url))
            .cooldown(Duration::ZERO);
        let store = Arc::new(
            RedbStore::open_with(dir.path().join("alerts.redb"), flow::Sharing::Exclusive).unwrap(),
        );
        let flow = flow::Flow::builder()
            .alerts(sinks.clone())
            .store(store.clone());
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let worker = flow.worker();
        let task = tokio::spawn(async move {
            worker
                .run_until(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });

        // 1. Ends in the worker's process wake its deliverer
        let own = latencies(&flow, "own", 100, &got).await;
        rows.push((
            "webhook delivery, run ended in the worker's process: p50 / p99 / max (100 notices)"
                .into(),
            format!(
                "{} / {} / {}",
                ms(percentile(&own, 0.5)),
                ms(percentile(&own, 0.99)),
                ms(*own.last().unwrap())
            ),
        ));

        // 2. Ends elsewhere are found by the deliverer's poll
        let elsewhere = flow::Flow::builder().alerts(sinks).store(store.clone());
        let other = latencies(&elsewhere, "other", 40, &got).await;
        rows.push((
            "webhook delivery, run ended by another Flow on the store: p50 / p99 / max (40 notices)"
                .into(),
            format!(
                "{} / {} / {}",
                ms(percentile(&other, 0.5)),
                ms(percentile(&other, 0.99)),
                ms(*other.last().unwrap())
            ),
        ));
        let _ = stop.send(());
        task.await.unwrap();
        drop(flow);
        drop(elsewhere);

        // 3. The max-duration pass among sleeping runs
        for n in [10_000u64, 100_000] {
            let store = Arc::new(
                RedbStore::open_with(
                    dir.path().join(format!("watch-{n}.redb")),
                    flow::Sharing::Exclusive,
                )
                .unwrap(),
            );
            let pass = pass_time(&store, n).await;
            rows.push((
                format!(
                    "max-duration pass with {n} sleeping runs of a watched workflow (median of 20)"
                ),
                ms(pass),
            ));
        }
    });
    println!("| alerts | |\n|---|---|");
    for (what, value) in rows {
        println!("| {what} | {value} |");
    }
}

//! Retention bounds the store: under a steady load with a short retention and a prune every few
//! thousand runs, the store file stops growing, while the same runs without pruning grow it
//! linearly, both with explicit prunes and through a worker that prunes by its retention.

use flow_runtime as flow;
use flow_runtime::store::RunFilter;
use flow_runtime::{Flow, Retention, RunOptions, Sharing};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Runs executed through the pruned store.
const RUNS: u64 = 50_000;
/// A prune after every this many runs.
const PRUNE_EVERY: u64 = 5_000;
/// Runs started together (the group commit batches their writes).
const WAVE: u64 = 500;
/// Runs executed through the store that is never pruned, to measure bytes per run.
const BASELINE_RUNS: u64 = 10_000;

#[flow::step(idempotent, retry = "none")]
async fn record(n: u64) -> Result<String, flow::Failure> {
    Ok(format!("record {n} synced to the remote system"))
}

#[flow::workflow]
async fn sync_one(n: u64) -> Result<String, flow::Failure> {
    record(n).await
}

/// Executes runs `from..to` in waves, each to its end; after each wave `peak` takes the file's
/// size if it is larger.
async fn execute(flow: &Flow, path: &Path, peak: &AtomicU64, from: u64, to: u64) {
    let mut n = from;
    while n < to {
        let end = (n + WAVE).min(to);
        let starts = (n..end)
            .map(|i| sync_one::start_with(flow, RunOptions::new().id(format!("run-{i:06}")), i));
        let handles = futures::future::join_all(starts).await;
        let outcomes = futures::future::join_all(
            handles
                .into_iter()
                .map(|h| h.expect("the run starts").outcome()),
        )
        .await;
        for (i, outcome) in (n..end).zip(outcomes) {
            assert_eq!(
                outcome.expect("the run succeeds"),
                format!("record {i} synced to the remote system")
            );
        }
        peak.fetch_max(size(path), Ordering::Relaxed);
        n = end;
    }
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).expect("the store file").len()
}

fn open(path: &Path) -> Flow {
    Flow::builder()
        .sharing(Sharing::Exclusive)
        .open(path)
        .expect("open the store")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_retention_keeps_the_store_file_from_growing() {
    let dir = tempfile::tempdir().expect("temp dir");

    // Bytes per run without pruning
    let unpruned_path = dir.path().join("unpruned.redb");
    let unpruned = open(&unpruned_path);
    execute(
        &unpruned,
        &unpruned_path,
        &AtomicU64::new(0),
        0,
        BASELINE_RUNS,
    )
    .await;
    drop(unpruned);
    let bytes_per_run = size(&unpruned_path) as f64 / BASELINE_RUNS as f64;

    // The same load with a prune every PRUNE_EVERY runs; a retention of zero deletes every
    // finished run at each prune, so the outcome does not depend on timing
    let path = dir.path().join("flow.redb");
    let flow = open(&path);
    let retention = Retention::all(Duration::ZERO);
    // The file's size moves as redb frees and reuses pages at its end, so each fifth of the
    // load is represented by the largest size seen during it
    let mut sizes = Vec::new();
    let peak = AtomicU64::new(0);
    let mut deleted = 0;
    let mut done = 0;
    while done < RUNS {
        execute(&flow, &path, &peak, done, done + PRUNE_EVERY).await;
        done += PRUNE_EVERY;
        let pruned = flow.prune(&retention).await.expect("prune");
        assert_eq!(pruned.runs, PRUNE_EVERY, "every finished run is pruned");
        assert_eq!(pruned.steps, PRUNE_EVERY, "with its one step");
        assert_eq!(pruned.succeeded, PRUNE_EVERY);
        deleted += pruned.runs;
        peak.fetch_max(size(&path), Ordering::Relaxed);
        if done % (RUNS / 5) == 0 {
            sizes.push(peak.swap(0, Ordering::Relaxed));
        }
    }
    assert_eq!(deleted, RUNS);
    let left = flow.runs(&RunFilter::default()).await.expect("list");
    assert!(left.is_empty(), "{} runs left", left.len());
    assert!(flow
        .store()
        .steps(&"run-000001".into())
        .await
        .expect("steps")
        .is_empty());
    drop(flow);

    println!("largest size in each fifth: {sizes:?}; unpruned: {bytes_per_run:.0} bytes per run");
    assert_eq!(sizes.len(), 5);
    // redb frees and reuses pages and trims the file's end as it goes, so the size moves around
    // its level and may step up once while the free pages settle (observed: 3.7 to 7.5 MB
    // here). Growth would show as a rising line, one fifth of the runs unpruned (about 9 MB)
    // more per fifth; leveling off means the last fifth stays near the highest earlier fifth.
    let per_fifth_unpruned = bytes_per_run * (RUNS / 5) as f64;
    let earlier_high = sizes[..4].iter().copied().max().unwrap_or(0) as f64;
    let last = sizes[4] as f64;
    assert!(
        last <= earlier_high + per_fifth_unpruned / 4.0,
        "the store kept growing under pruning: {sizes:?} ({per_fifth_unpruned:.0} bytes per fifth unpruned)"
    );
    let two_intervals_unpruned = bytes_per_run * (2 * PRUNE_EVERY) as f64;
    let largest = sizes.iter().copied().max().unwrap_or(0) as f64;
    assert!(
        largest < two_intervals_unpruned,
        "the pruned store reached {largest} bytes, more than the {two_intervals_unpruned:.0} bytes of two prune intervals' runs unpruned: {sizes:?}"
    );
    let unpruned_at_the_end = bytes_per_run * RUNS as f64;
    assert!(
        last < unpruned_at_the_end / 3.0,
        "the pruned store ({last} bytes) is not well below the {unpruned_at_the_end:.0} bytes the runs take unpruned"
    );
}

static RAN: AtomicU64 = AtomicU64::new(0);

#[flow::step(idempotent, retry = "none")]
async fn counted(n: u64) -> Result<u64, flow::Failure> {
    RAN.fetch_add(1, Ordering::SeqCst);
    Ok(n)
}

#[flow::workflow]
async fn queued_one(n: u64) -> Result<u64, flow::Failure> {
    counted(n).await
}

/// The same steady load through a worker: 50,000 runs enqueued in waves, executed by a worker
/// whose retention is zero and which prunes every 200 ms. The file levels off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_a_short_retention_keeps_the_store_file_from_growing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("flow.redb");
    let flow = open(&path);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = flow
        .worker()
        .concurrency(64)
        .poll_interval(Duration::from_millis(5))
        .retention(Retention::all(Duration::ZERO), Duration::from_millis(200));
    let task = tokio::spawn(worker.run_until(async {
        let _ = stopped.await;
    }));
    let mut sizes = Vec::new();
    let mut peak = 0;
    let mut enqueued = 0;
    while enqueued < RUNS {
        let wave = (enqueued..enqueued + WAVE)
            .map(|i| queued_one::enqueue(&flow, RunOptions::new().id(format!("q-{i:06}")), i));
        for id in futures::future::join_all(wave).await {
            id.expect("enqueued");
        }
        enqueued += WAVE;
        // Keep the queue short, as a steady load does
        while RAN.load(Ordering::SeqCst) + 1_000 < enqueued {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        peak = peak.max(size(&path));
        if enqueued % (RUNS / 5) == 0 {
            sizes.push(std::mem::take(&mut peak));
        }
    }
    while RAN.load(Ordering::SeqCst) < RUNS {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop.send(());
    let report = task.await.expect("the worker task").expect("the worker");
    assert_eq!(report.started, RUNS, "every run started once");
    println!("largest size in each fifth through the worker: {sizes:?}");
    // The first fifth fills the file to its working size; from then on it stays near it. Growth
    // would add about 9 MB per fifth (the test above measures bytes per run unpruned), so a
    // last fifth within a quarter of that of the highest earlier fifth has leveled off.
    let earlier_high = sizes[..4].iter().copied().max().unwrap_or(0) as f64;
    let last = sizes[4] as f64;
    assert!(
        last <= earlier_high + 2_250_000.0,
        "the store kept growing under the worker's pruning: {sizes:?}"
    );
    // Unpruned, 50,000 runs take about 45 MB here (the test above measures bytes per run)
    assert!(
        last < 20_000_000.0,
        "the store reached {last} bytes: {sizes:?}"
    );
}

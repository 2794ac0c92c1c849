//! Schedules: how long after its tick a scheduled run starts.
//!
//! Run with `cargo bench -p flow-tests --bench schedules` (release profile; about 100 s: it
//! waits for 100 real ticks). `-- --ticks N` takes another number of ticks. Prints one markdown
//! table; `BENCHMARKS.md` explains it.
//!
//! A worker with the default settings (system clock, exclusive redb store under cargo's
//! `target/tmp`) fires an every-second schedule (`* * * * * *`); the workflow's first step
//! records the wall clock when it starts. Tick-to-start latency is that time minus the tick's
//! time, per tick: the worker waking for the tick, the durable write that fires it, the take
//! from the queue (a second durable write) and the run's start.

use flow_runtime as flow;
use flow_runtime::{Flow, ScheduleConfig, Sharing};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `(tick ms, start ms)` of each run, as the step saw them.
static STARTS: Mutex<Vec<(u64, f64)>> = Mutex::new(Vec::new());

fn now_ms_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

#[flow::step(idempotent, retry = "none")]
async fn started() -> Result<(), flow::Failure> {
    let at = now_ms_f64();
    if let Some(tick) = flow::tick() {
        STARTS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((tick.at_ms, at));
    }
    Ok(())
}

#[flow::workflow]
async fn every_second() -> Result<(), flow::Failure> {
    started().await
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let ticks: usize = args
        .iter()
        .position(|a| a == "--ticks")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(100);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let base = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let latencies = runtime.block_on(async {
        let flow = Flow::builder()
            .sharing(Sharing::Exclusive)
            .schedule(
                "every_second",
                ScheduleConfig {
                    workflow: Some("every_second".into()),
                    cron: Some("* * * * * *".into()),
                    ..ScheduleConfig::default()
                },
            )
            .open(dir.path().join("flow.redb"))
            .expect("open the store");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = tokio::spawn(flow.worker().run_until(async {
            let _ = stopped.await;
        }));
        eprintln!("waiting for {ticks} ticks of an every-second schedule…");
        // The first tick after the worker starts is the first one measured
        while STARTS.lock().unwrap_or_else(|e| e.into_inner()).len() < ticks {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let _ = stop.send(());
        let _ = worker.await;
        let starts = STARTS.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut latencies: Vec<f64> = starts
            .iter()
            .take(ticks)
            .map(|(tick, at)| at - *tick as f64)
            .collect();
        latencies.sort_by(f64::total_cmp);
        latencies
    });
    println!("| schedule | ticks | tick → step start p50 | p99 | max |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| `* * * * * *`, one worker, exclusive store | {} | {:.1} ms | {:.1} ms | {:.1} ms |",
        latencies.len(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(f64::NAN),
    );
}

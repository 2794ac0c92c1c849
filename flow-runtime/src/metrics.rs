//! Prometheus metrics of this process, in the OpenMetrics text format: what the engine, the worker and the store count as they
//! go, and the queue gauges read from the store at each scrape. One registry per process (the
//! figures are the process's, as Prometheus expects of a target); [`encode`] renders it in the
//! text format, for the operator API (`Request::Metrics`) and the HTTP listener of
//! `flow.metrics.listen`.
//!
//! Built on `prometheus-client`, the Prometheus project's own Rust client: counters, gauges and
//! histograms with label families and the text encoder, and nothing else (no HTTP server, no
//! global recorder), so it adds four small crates.

use crate::engine::Flow;
use crate::store::{RunFilter, RunStatus};
use prometheus_client::encoding::text::encode as encode_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;

type Labels = Vec<(&'static str, String)>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// Every metric of the process.
struct Metrics {
    registry: Registry,
    runs_started: Family<Labels, Counter>,
    runs_finished: Family<Labels, Counter>,
    step_duration: Histograms,
    step_attempts: Family<Labels, Counter>,
    step_retries: Family<Labels, Counter>,
    queue_depth: Family<Labels, Gauge>,
    queue_age: Family<Labels, Gauge<f64, AtomicU64>>,
    schedule_lag: Histograms,
    alerts_fired: Family<Labels, Counter>,
    commit_latency: Histogram,
    commit_batch: Histogram,
}

/// Durations from 1 ms to about 9 minutes.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 20))
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let mut registry = Registry::with_prefix("flow");
        let m = Metrics {
            registry: Registry::default(),
            runs_started: Family::default(),
            runs_finished: Family::default(),
            step_duration: Family::new_with_constructor(seconds),
            step_attempts: Family::default(),
            step_retries: Family::default(),
            queue_depth: Family::default(),
            queue_age: Family::default(),
            schedule_lag: Family::new_with_constructor(seconds),
            alerts_fired: Family::default(),
            commit_latency: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
            commit_batch: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
        };
        registry.register(
            "runs_started",
            "Executions of runs started in this process (a resume counts again), by workflow",
            m.runs_started.clone(),
        );
        registry.register(
            "runs_finished",
            "Executions that ended in this process, by workflow and the run's status then",
            m.runs_finished.clone(),
        );
        registry.register_with_unit(
            "step_duration",
            "Step calls from their first attempt in an execution to their outcome, by step and outcome",
            Unit::Seconds,
            m.step_duration.clone(),
        );
        registry.register(
            "step_attempts",
            "Step attempts by step and outcome: succeeded, or the error's class (transient, permanent, unclassified)",
            m.step_attempts.clone(),
        );
        registry.register(
            "step_retries",
            "Attempts that failed and were retried, by step and error class",
            m.step_retries.clone(),
        );
        registry.register(
            "queue_depth",
            "Queued runs waiting to be taken, by queue (read from the store at each scrape)",
            m.queue_depth.clone(),
        );
        registry.register_with_unit(
            "queue_oldest_age",
            "Age of the oldest queued run, by queue (read from the store at each scrape)",
            Unit::Seconds,
            m.queue_age.clone(),
        );
        registry.register_with_unit(
            "schedule_lag",
            "From a schedule's tick to the queued run that fires it, by schedule",
            Unit::Seconds,
            m.schedule_lag.clone(),
        );
        registry.register(
            "alerts_fired",
            "Alerts opened by this process, by kind",
            m.alerts_fired.clone(),
        );
        registry.register_with_unit(
            "store_commit",
            "Store commits (one write transaction for a batch of requests), their latency",
            Unit::Seconds,
            m.commit_latency.clone(),
        );
        registry.register(
            "store_commit_batch_size",
            "Requests (each one or more writes) per store commit: the group commit's batch",
            m.commit_batch.clone(),
        );
        Metrics { registry, ..m }
    })
}

/// An execution of a run of `workflow` started.
pub(crate) fn run_started(workflow: &str) {
    metrics()
        .runs_started
        .get_or_create(&vec![("workflow", workflow.to_owned())])
        .inc();
}

/// An execution of a run ended with the run `status`.
pub(crate) fn run_finished(workflow: &str, status: RunStatus) {
    metrics()
        .runs_finished
        .get_or_create(&vec![
            ("workflow", workflow.to_owned()),
            ("status", status.as_str().to_owned()),
        ])
        .inc();
}

/// One attempt of `step` ended: `succeeded` or its error's class.
pub(crate) fn step_attempt(step: &str, outcome: &str) {
    metrics()
        .step_attempts
        .get_or_create(&vec![
            ("step", step.to_owned()),
            ("outcome", outcome.to_owned()),
        ])
        .inc();
}

/// An attempt of `step` failed with `class` and will be retried.
pub(crate) fn step_retried(step: &str, class: &str) {
    metrics()
        .step_retries
        .get_or_create(&vec![
            ("step", step.to_owned()),
            ("class", class.to_owned()),
        ])
        .inc();
}

/// A call of `step` ended (`succeeded` or `failed`) after `ms` since its first attempt here.
pub(crate) fn step_finished(step: &str, outcome: &str, ms: u64) {
    metrics()
        .step_duration
        .get_or_create(&vec![
            ("step", step.to_owned()),
            ("outcome", outcome.to_owned()),
        ])
        .observe(ms as f64 / 1000.0);
}

/// A schedule's tick was fired `lag_ms` after the tick's time.
pub(crate) fn schedule_fired(schedule: &str, lag_ms: u64) {
    metrics()
        .schedule_lag
        .get_or_create(&vec![("schedule", schedule.to_owned())])
        .observe(lag_ms as f64 / 1000.0);
}

/// An alert of `kind` was opened.
pub(crate) fn alert_fired(kind: &str) {
    metrics()
        .alerts_fired
        .get_or_create(&vec![("kind", kind.to_owned())])
        .inc();
}

/// A store commit of `requests` requests took `seconds`.
pub(crate) fn store_commit(requests: usize, seconds: f64) {
    let m = metrics();
    m.commit_latency.observe(seconds);
    m.commit_batch.observe(requests as f64);
}

/// The text exposition of every metric, with the queue gauges read from `flow`'s store now.
/// A queue seen once stays listed (at 0 when empty), so a scraper sees it drain.
pub(crate) async fn encode(flow: &Flow) -> Result<String, crate::Error> {
    let m = metrics();
    let queued = flow
        .runs(&RunFilter {
            status: Some(RunStatus::Queued),
            ..RunFilter::default()
        })
        .await?;
    let now = now_ms();
    let mut depth: std::collections::BTreeMap<String, (i64, u64)> = Default::default();
    for run in &queued {
        let Some(place) = &run.queue else { continue };
        let entry = depth.entry(place.name.clone()).or_insert((0, now));
        entry.0 += 1;
        entry.1 = entry.1.min(run.created_at_ms);
    }
    for queue in flow.queue_names() {
        depth.entry(queue).or_insert((0, now));
    }
    for (queue, (n, oldest)) in depth {
        let labels = vec![("queue", queue)];
        m.queue_depth.get_or_create(&labels).set(n);
        m.queue_age
            .get_or_create(&labels)
            .set(now.saturating_sub(oldest) as f64 / 1000.0);
    }
    let mut text = String::new();
    encode_text(&mut text, &m.registry)
        .map_err(|_| crate::Error::Encoding("the metrics could not be rendered".into()))?;
    Ok(text)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Serves `GET /metrics` over HTTP on `listener` until the task is aborted: the text format
/// for Prometheus scrapers (`flow.metrics.listen`).
pub(crate) fn serve_http(
    flow: Flow,
    listener: tokio::net::TcpListener,
) -> tokio::task::JoinHandle<()> {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let flow = flow.clone();
            async move {
                match encode(&flow).await {
                    Ok(text) => (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], text)
                        .into_response(),
                    Err(e) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("the metrics could not be read: {e}\n"),
                    )
                        .into_response(),
                }
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    })
}

/// The content type of what `prometheus-client` writes: the OpenMetrics text format, which
/// Prometheus scrapes (and prefers) since 2.5.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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

/// A call of `step` succeeded at its last attempt, `ms` after its first attempt here: both
/// [`step_attempt`] and [`step_finished`] with outcome `succeeded`. This is every checkpointed
/// step's path, so the two series are looked up once per thread and step name, not labelled
/// anew (two strings, a hash of them and the family's lock) at every call.
pub(crate) fn step_succeeded(step: &'static str, ms: u64) {
    type Series = (Counter, Histogram);
    thread_local! {
        // Keyed by the name's address and length: step names are the macros' literals
        static SUCCEEDED: std::cell::RefCell<std::collections::HashMap<(usize, usize), Series>> =
            std::cell::RefCell::default();
    }
    SUCCEEDED.with(|cache| {
        let mut cache = cache.borrow_mut();
        let (attempts, duration) = cache
            .entry((step.as_ptr() as usize, step.len()))
            .or_insert_with(|| {
                let m = metrics();
                let labels = vec![("step", step.to_owned()), ("outcome", "succeeded".into())];
                (
                    m.step_attempts.get_or_create(&labels).clone(),
                    m.step_duration.get_or_create(&labels).clone(),
                )
            });
        attempts.inc();
        duration.observe(ms as f64 / 1000.0);
    });
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

/// The samples of the text [`encode`] writes, as JSON for `metrics --output json`: one object
/// per sample (`name`, `labels`, `value`) with its family's `type` and `help`. A line this
/// parser does not understand is kept whole under `unparsed`, never dropped silently.
pub(crate) fn samples_json(text: &str) -> serde_json::Value {
    use serde_json::{json, Map, Value};
    let mut types: Vec<(String, String)> = Vec::new();
    let mut helps: std::collections::HashMap<String, String> = Default::default();
    let mut samples = Vec::new();
    let mut unparsed = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((name, kind)) = rest.split_once(' ') {
                types.push((name.to_owned(), kind.to_owned()));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            if let Some((name, help)) = rest.split_once(' ') {
                helps.insert(name.to_owned(), help.to_owned());
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, labels, value)) = sample_line(line) else {
            unparsed.push(Value::String(line.to_owned()));
            continue;
        };
        let family = types
            .iter()
            .filter(|(family, _)| name.starts_with(family.as_str()))
            .max_by_key(|(family, _)| family.len());
        let mut sample = Map::new();
        sample.insert("name".into(), json!(name));
        if let Some((family, kind)) = family {
            sample.insert("type".into(), json!(kind));
            if let Some(help) = helps.get(family) {
                sample.insert("help".into(), json!(help));
            }
        }
        sample.insert("labels".into(), json!(labels));
        // JSON has no infinity: `+Inf` (a histogram's top bucket bound is a label, but a
        // value may be one too) is written as the text
        sample.insert(
            "value".into(),
            value
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map_or_else(|| json!(value), |v| json!(v)),
        );
        samples.push(Value::Object(sample));
    }
    let mut out = json!({ "samples": samples });
    if !unparsed.is_empty() {
        out["unparsed"] = Value::Array(unparsed);
    }
    out
}

/// `name{label="value",...} value [timestamp]`: the name, the labels (unescaped) and the value.
fn sample_line(line: &str) -> Option<(String, std::collections::BTreeMap<String, String>, String)> {
    let mut labels = std::collections::BTreeMap::new();
    let (name, rest) = match line.find(['{', ' ']) {
        Some(at) if line.as_bytes()[at] == b'{' => {
            let mut rest = &line[at + 1..];
            loop {
                if let Some(after) = rest.strip_prefix('}') {
                    break (&line[..at], after);
                }
                let (key, after) = rest.split_once("=\"")?;
                let mut value = String::new();
                let mut chars = after.char_indices();
                let end = loop {
                    match chars.next()? {
                        (_, '\\') => match chars.next()?.1 {
                            'n' => value.push('\n'),
                            c => value.push(c),
                        },
                        (i, '"') => break i,
                        (_, c) => value.push(c),
                    }
                };
                labels.insert(key.to_owned(), value);
                rest = &after[end + 1..];
                rest = rest.strip_prefix(',').unwrap_or(rest);
            }
        }
        Some(at) => (&line[..at], &line[at..]),
        None => return None,
    };
    let value = rest.split_whitespace().next()?;
    Some((name.to_owned(), labels, value.to_owned()))
}

#[cfg(test)]
mod json_tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn the_text_format_becomes_samples() {
        let text = "# HELP flow_runs_started Runs started.\n# TYPE flow_runs_started counter\nflow_runs_started_total{workflow=\"a \\\"b\\\"\\\\c\"} 3\n# TYPE flow_store_commit_seconds histogram\nflow_store_commit_seconds_bucket{le=\"+Inf\"} 7\nflow_store_commit_seconds_sum 0.25\n# EOF\n";
        let json = super::samples_json(text);
        let samples = json["samples"].as_array().unwrap();
        assert_eq!(samples.len(), 3);
        assert_eq!(samples[0]["name"], "flow_runs_started_total");
        assert_eq!(samples[0]["type"], "counter");
        assert_eq!(samples[0]["help"], "Runs started.");
        assert_eq!(samples[0]["labels"]["workflow"], "a \"b\"\\c");
        assert_eq!(samples[0]["value"], 3.0);
        assert_eq!(samples[1]["labels"]["le"], "+Inf");
        assert_eq!(samples[1]["type"], "histogram");
        assert_eq!(samples[2]["value"], 0.25);
        assert!(json.get("unparsed").is_none());
        let odd = super::samples_json("what{is\n");
        assert_eq!(odd["unparsed"][0], "what{is");
    }
}

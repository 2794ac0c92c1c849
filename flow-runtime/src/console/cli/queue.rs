//! The `worker` and `enqueue` commands.

use super::args::OutputFormat;
use super::commands::{fail, print_json};
use super::Exit;
use crate::console::api::Operator;
use crate::console::settings::FlowSettings;
use crate::engine::Flow;
use crate::store::RunId;
use serde_json::json;

/// `worker`: executes until SIGTERM/SIGINT, then stops cleanly and exits 0.
pub(super) async fn worker(
    flow: &Flow,
    concurrency: u32,
    queues: Vec<String>,
    settings: &FlowSettings,
    output: OutputFormat,
) -> Exit {
    let mut worker = flow
        .worker()
        .concurrency(concurrency as usize)
        .grace(settings.shutdown_grace())
        .retention(settings.retention, std::time::Duration::from_secs(60));
    if !queues.is_empty() {
        worker = worker.queues(queues);
    }
    let metrics = match &settings.metrics.listen {
        Some(address) => match tokio::net::TcpListener::bind(address.as_str()).await {
            Ok(listener) => {
                let at = listener
                    .local_addr()
                    .map_or(address.clone(), |a| a.to_string());
                tracing::info!(address = %at, "serving metrics at http://{at}/metrics");
                Some(crate::metrics::serve_http(flow.clone(), listener))
            }
            Err(e) => {
                eprintln!(
                    "error: cannot listen for metrics on {address} (flow.metrics.listen): {e}; choose a free port or leave the setting out"
                );
                return Exit::Config;
            }
        },
        None => None,
    };
    let report = worker
        .run_until(async {
            let signal = super::signals::first_signal().await;
            tracing::warn!(signal = signal.name(), "stop signal: the worker stops");
        })
        .await;
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    let report = match report {
        Ok(report) => report,
        Err(e) => return fail(&e),
    };
    match output {
        OutputFormat::Json => print_json(&json!({
            "started": report.started,
            "resumed": report.resumed,
            "finished": report.finished,
            "left_resumable": report.interrupted,
        })),
        OutputFormat::Table => println!(
            "worker stopped: {} runs started, {} resumed, {} executions ended, {} left resumable",
            report.started,
            report.resumed,
            report.finished,
            report.interrupted.len()
        ),
    }
    Exit::Success
}

/// Prints what `enqueue` did: the run's id, queue and status (an id that existed keeps its
/// status).
pub(super) async fn enqueued(operator: &Operator, id: &RunId, output: OutputFormat) -> Exit {
    let run = match operator.show(id).await {
        Ok(view) => view.run,
        Err(e) => {
            eprintln!("error: {}", e.message);
            return Exit::Store;
        }
    };
    let queue = run.queue.as_ref().map(|q| q.name.clone());
    match output {
        OutputFormat::Json => print_json(&json!({
            "run_id": id,
            "workflow": run.workflow,
            "status": run.status,
            "queue": queue,
            "priority": run.queue.as_ref().map(|q| q.priority),
            "not_before_ms": run.queue.as_ref().and_then(|q| q.not_before_ms),
        })),
        OutputFormat::Table => {
            println!("{id}\t{}\t{}", run.status, queue.as_deref().unwrap_or("-"))
        }
    }
    Exit::Success
}

//! The `sync_records` workflow: fetch records from an API and push each one back with an
//! idempotency key, retrying transient failures and never retrying rejected records.

use crate::api::Record;
use flow_runtime as flow;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

/// The base URL of the records API. It is configuration, not workflow input, so a resumed run
/// talks to wherever the API lives now.
static API: OnceLock<String> = OnceLock::new();

/// Points the workflow's steps at the API.
pub fn set_api(base: String) {
    let _ = API.set(base);
}

fn api() -> &'static str {
    API.get()
        .map(String::as_str)
        .unwrap_or("http://127.0.0.1:9")
}

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(reqwest::Client::new)
}

/// Why a sync step failed. Only the transient variants are retried.
#[derive(Debug, thiserror::Error, flow::Classify)]
pub enum SyncError {
    /// The API answered 5xx.
    #[error("the API is unavailable (HTTP {0})")]
    #[flow(transient)]
    Unavailable(u16),
    /// The request did not get an answer.
    #[error("network error: {0}")]
    #[flow(transient)]
    Network(String),
    /// An attempt took longer than the step's timeout.
    #[error(transparent)]
    #[flow(transient)]
    Timeout(#[from] flow::StepTimeout),
    /// The API refused the record (4xx): retrying cannot help.
    #[error("record {id} was rejected: {reason}")]
    Rejected { id: String, reason: String },
}

impl From<reqwest::Error> for SyncError {
    fn from(e: reqwest::Error) -> Self {
        SyncError::Network(e.to_string())
    }
}

/// What the API said about one push.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    /// `created` or `duplicate` (the API had seen the idempotency key).
    pub outcome: String,
}

/// The workflow's input.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SyncInput {
    /// How many records to fetch.
    pub count: u32,
    /// Pushes in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Pause inside each push, to leave time to kill the process mid-run.
    #[serde(default)]
    pub delay_ms: u64,
}

fn default_concurrency() -> usize {
    8
}

/// What the run did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncReport {
    /// Records pushed (created or already there).
    pub pushed: u32,
    /// Records the API rejected, with the reason.
    pub rejected: Vec<String>,
}

/// Fetches the records to sync. It changes nothing, so a dry run executes it for real.
#[flow::step(read_only, retry(attempts = 8, initial = "50ms", max = "1s"))]
pub async fn fetch_records(count: u32) -> Result<Vec<Record>, SyncError> {
    let response = client()
        .get(format!("{}/records?count={count}", api()))
        .send()
        .await?;
    let status = response.status();
    if status.is_server_error() {
        return Err(SyncError::Unavailable(status.as_u16()));
    }
    Ok(response.json().await?)
}

/// Pushes one record. The record id is the idempotency key: the API deduplicates on it, so a
/// push repeated after a crash (effect done, checkpoint not yet written) changes nothing.
#[flow::step(
    idempotency_key = record.id,
    retry(attempts = 8, initial = "50ms", max = "1s"),
    timeout = "10s",
    dry_run = "default"
)]
pub async fn push_record(record: &Record, delay_ms: u64) -> Result<Receipt, SyncError> {
    if delay_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
    }
    // The step key (the record id) is stable across attempts and restarts; prefixing the run id
    // lets a later run push the same record again on purpose.
    let run = flow::run_id().map(|id| id.to_string()).unwrap_or_default();
    let key = format!(
        "{run}/{}",
        flow::step_key().unwrap_or_else(|| record.id.clone())
    );
    let response = client()
        .post(format!("{}/records", api()))
        .header("Idempotency-Key", key)
        .json(record)
        .send()
        .await?;
    let status = response.status();
    let body = response.text().await?;
    if status.is_server_error() {
        return Err(SyncError::Unavailable(status.as_u16()));
    }
    if status.is_client_error() {
        return Err(SyncError::Rejected {
            id: record.id.clone(),
            reason: body,
        });
    }
    Ok(Receipt { outcome: body })
}

/// Tells the team the sync finished. A notification must not be sent twice, so the step is
/// `at_most_once`: if the process dies during it, the run waits for an operator.
#[flow::step(at_most_once)]
pub async fn notify_team(summary: String) -> Result<(), SyncError> {
    let response = client()
        .post(format!("{}/notifications", api()))
        .body(summary)
        .send()
        .await?;
    if !response.status().is_success() {
        return Err(SyncError::Unavailable(response.status().as_u16()));
    }
    Ok(())
}

/// Syncs `count` records from the API back into it, `concurrency` pushes at a time.
#[flow::workflow]
pub async fn sync_records(input: SyncInput) -> Result<SyncReport, SyncError> {
    let records = fetch_records(input.count).await?;
    let delay_ms = input.delay_ms;
    let results: Vec<Result<Receipt, SyncError>> = futures::stream::iter(records)
        .map(|record| async move { push_record(&record, delay_ms).await })
        .buffered(input.concurrency.max(1))
        .collect()
        .await;
    let mut report = SyncReport::default();
    for result in results {
        match result {
            Ok(_) => report.pushed += 1,
            Err(SyncError::Rejected { id, reason }) => {
                report.rejected.push(format!("{id}: {reason}"))
            }
            Err(other) => return Err(other),
        }
    }
    if notify_team(format!(
        "synced {} records, {} rejected",
        report.pushed,
        report.rejected.len()
    ))
    .await
    .is_err()
    {
        // A lost notification is not worth failing the sync for.
    }
    Ok(report)
}

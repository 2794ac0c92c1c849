//! The `sync_records` workflow: fetch records from an API and push each one back with an
//! idempotency key, retrying transient failures and never retrying rejected records.

use crate::api::Record;
use flow_runtime as flow;
use serde::{Deserialize, Serialize};

/// The records API as the steps reach it: app state, registered once by the setup of `main`
/// (`flow::AppState::new().with(Api::new(..))`) and read in the workflow with
/// `flow::state::<Api>()`. It is configuration, not workflow input, so a resumed run talks to
/// wherever the API lives now; the steps take it as a `skip` parameter, left out of their keys
/// and stored arguments.
#[derive(Clone, Debug)]
pub struct Api {
    client: reqwest::Client,
    base: String,
    token: flow::Secret,
}

impl Api {
    /// The API at `base` (such as `http://127.0.0.1:8080`), authenticated with `token`.
    pub fn new(base: impl Into<String>, token: flow::Secret) -> Self {
        Api {
            client: reqwest::Client::new(),
            base: base.into(),
            token,
        }
    }

    /// A request to the API with its bearer token.
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token.expose()))
    }
}

/// How hard the workflow pushes: app state too.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Pushes in flight at once.
    pub batch_size: usize,
    /// Error budget: stop starting pushes once more than this share (percent) failed...
    pub max_failure_rate: f64,
    /// ...counted from this many finished pushes on.
    pub min_units: u64,
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
    /// The API refused the request (4xx): retrying cannot help.
    #[error("record {id} was rejected: {reason}")]
    Rejected { id: String, reason: String },
    /// Records failed, or too many of them (the error budget).
    #[error(transparent)]
    Units(#[from] flow::UnitsError),
}

impl From<reqwest::Error> for SyncError {
    fn from(e: reqwest::Error) -> Self {
        SyncError::Network(e.to_string())
    }
}

/// Turns a non-success status into the error it means.
fn check(status: reqwest::StatusCode, id: &str, body: String) -> Result<(), SyncError> {
    if status.is_server_error() {
        return Err(SyncError::Unavailable(status.as_u16()));
    }
    if status.is_client_error() {
        return Err(SyncError::Rejected {
            id: id.to_owned(),
            reason: format!("HTTP {}: {body}", status.as_u16()),
        });
    }
    Ok(())
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
    /// Pause inside each push, to leave time to kill the process mid-run.
    #[serde(default)]
    pub delay_ms: u64,
}

/// What the run did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncReport {
    /// Records pushed (created or already there).
    pub pushed: u64,
    /// Of those, pushed by an earlier execution of the run (replayed, not pushed again).
    pub replayed: u64,
}

/// Fetches the records to sync. It changes nothing, so a dry run executes it for real.
#[flow::step(
    read_only,
    skip(api),
    retry(attempts = 12, initial = "20ms", max = "200ms")
)]
pub async fn fetch_records(api: &Api, count: u32) -> Result<Vec<Record>, SyncError> {
    let response = api
        .request(reqwest::Method::GET, &format!("/records?count={count}"))
        .send()
        .await?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await?;
        check(status, "*", body)?;
        return Err(SyncError::Network(format!("unexpected HTTP {status}")));
    }
    Ok(response.json().await?)
}

/// Pushes one record. The record id is the idempotency key: the API deduplicates on it, so a
/// push repeated after a crash (effect done, checkpoint not yet written) changes nothing.
#[flow::step(
    idempotency_key = record.id,
    skip(api),
    retry(attempts = 12, initial = "20ms", max = "200ms"),
    timeout = "10s",
    dry_run = "default"
)]
pub async fn push_record(api: &Api, record: &Record, delay_ms: u64) -> Result<Receipt, SyncError> {
    if delay_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
    }
    // The step key (the record id) is stable across attempts and restarts; prefixing the run id
    // lets a later run push the same record again on purpose.
    let run = flow::run_id().map(|id| id.to_string()).unwrap_or_default();
    let key = format!("{run}/{}", flow::key());
    let response = api
        .request(reqwest::Method::POST, "/records")
        .header("Idempotency-Key", key)
        .json(record)
        .send()
        .await?;
    let status = response.status();
    let body = response.text().await?;
    check(status, &record.id, body.clone())?;
    Ok(Receipt { outcome: body })
}

/// Tells the team the sync finished. A notification must not be sent twice, so the step is
/// `at_most_once`: if the process dies during it, the run waits for an operator.
#[flow::step(at_most_once, skip(api))]
pub async fn notify_team(api: &Api, summary: String) -> Result<(), SyncError> {
    let response = api
        .request(reqwest::Method::POST, "/notifications")
        .body(summary)
        .send()
        .await?;
    let status = response.status();
    check(status, "notification", response.text().await?)
}

/// Syncs `count` records from the API back into it, one unit per record, `batch_size` pushes
/// at a time, within an error budget; then tells the team. A rejected record fails its unit,
/// not the others; the run then fails, and `runs retry-failed <id>` pushes only the failed
/// records again once their cause is fixed. `--rollout 5%` pushes a stable 5% of the records
/// first.
#[flow::workflow]
pub async fn sync_records(input: SyncInput) -> Result<SyncReport, SyncError> {
    let api = flow::state::<Api>();
    let limits = flow::state::<Limits>();
    let records = fetch_records(&api, input.count).await?;
    let delay_ms = input.delay_ms;
    let report = flow::units(records, |record| record.id.clone())
        .concurrency(limits.batch_size.max(1))
        .max_failure_rate(limits.max_failure_rate, limits.min_units)
        .run(|record| {
            let api = api.clone();
            async move { push_record(&api, &record, delay_ms).await }
        })
        .await?;
    let summary = format!("synced {} records", report.succeeded);
    // A lost notification is not worth failing the sync for; the run records it either way.
    let _ = notify_team(&api, summary).await;
    Ok(SyncReport {
        pushed: report.succeeded,
        replayed: report.replayed,
    })
}

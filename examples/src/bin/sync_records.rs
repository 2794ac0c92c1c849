//! `sync_records`: the flagship example, a `#[flow::main]` binary.
//!
//! Its setup starts a flaky records API on 127.0.0.1 (unless `SYNC_API_URL` points elsewhere)
//! and returns the clients the workflow's steps use, as app state; the generated CLI does the rest: `run`, `runs …`,
//! `runbook`, `check-config`.

use flow_examples::api::{self, ApiConfig};
use flow_examples::sync;
use flow_runtime as flow;
use std::path::PathBuf;

/// The example's settings: `[app]` in flow.toml, or `SYNC_*` environment variables.
#[derive(Debug, serde::Serialize, serde::Deserialize, garde::Validate)]
#[serde(default)]
struct Settings {
    /// The records API. Unset: the example starts its own flaky demo API on 127.0.0.1.
    #[garde(url)]
    api_url: Option<String>,
    /// Bearer token for the API.
    #[garde(custom(flow::non_empty_secret))]
    token: flow::Secret,
    /// Pushes in flight at once.
    #[garde(range(min = 1, max = 64))]
    batch_size: u32,
    /// Share of the demo API's requests that fail with 503.
    #[garde(range(min = 0.0, max = 1.0))]
    failure_rate: f64,
    /// Pause inside each of the demo API's notifications, to leave time to kill the process.
    #[garde(range(max = 60_000))]
    notify_delay_ms: u64,
    /// The demo API rejects every n-th record as invalid (0: none).
    #[garde(skip)]
    invalid_every: u32,
    /// The demo API accepts invalid records (the fix for rejected records).
    #[garde(skip)]
    accept_invalid: bool,
    /// Error budget: stop starting pushes once more than this percentage of them failed...
    #[garde(range(min = 0.0, max = 100.0))]
    max_failure_rate: f64,
    /// ...counted from this many finished pushes on.
    #[garde(range(min = 1))]
    min_units: u64,
    /// Where the demo API keeps its ledger of effects.
    #[garde(skip)]
    data_dir: PathBuf,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            api_url: None,
            token: String::from("demo-token").into(),
            batch_size: 8,
            failure_rate: 0.3,
            notify_delay_ms: 0,
            invalid_every: 0,
            accept_invalid: false,
            max_failure_rate: 10.0,
            min_units: 50,
            data_dir: PathBuf::from(".flow-demo"),
        }
    }
}

/// Sync records from a flaky API back into it, durably: kill it at any moment and run it
/// again; it resumes and repeats no completed push.
#[flow::main(env_prefix = "SYNC_")]
async fn main(settings: Settings) -> Result<flow::AppState, String> {
    let api = match settings.api_url {
        Some(url) => url,
        None => {
            std::fs::create_dir_all(&settings.data_dir)
                .map_err(|e| format!("cannot create {}: {e}", settings.data_dir.display()))?;
            let base = api::serve(ApiConfig {
                failure_rate: settings.failure_rate,
                invalid_every: settings.invalid_every,
                accept_invalid: settings.accept_invalid,
                ledger: settings.data_dir.join("api-ledger.jsonl"),
                token: settings.token.expose().to_owned(),
                notify_delay_ms: settings.notify_delay_ms,
            })
            .await
            .map_err(|e| format!("cannot start the demo API: {e}"))?;
            tracing::info!(api = %base, "demo records API listening");
            base
        }
    };
    // The workflow reads these by type (`flow::state::<sync::Api>()`) and hands the client to
    // its steps as a `skip` parameter.
    Ok(flow::AppState::new()
        .with(sync::Api::new(api, settings.token))
        .with(sync::Limits {
            batch_size: settings.batch_size as usize,
            max_failure_rate: settings.max_failure_rate,
            min_units: settings.min_units,
        }))
}

//! `#[flow::main]` with a settings type, an `env_prefix` and a `Result` return.
use flow_runtime as flow;

#[derive(serde::Serialize, serde::Deserialize, garde::Validate)]
struct Settings {
    #[garde(length(min = 1))]
    api_url: String,
    #[garde(range(min = 1, max = 64))]
    workers: u32,
}

/// Syncs records with the API at `api_url`.
#[flow::main(env_prefix = "SYNC_")]
async fn main(settings: Settings) -> Result<(), String> {
    if settings.workers == 0 {
        return Err(format!("no workers for {}", settings.api_url));
    }
    Ok(())
}

//! A small records API for the examples, served on 127.0.0.1.
//!
//! It behaves like the APIs automation jobs meet in production: about 30% of requests fail
//! with a 503, invalid records get a 422, and pushes carry an `Idempotency-Key` that the API
//! honours (a repeated key returns the first answer and changes nothing). Every accepted push
//! is appended to a ledger file with fsync, so the ledger survives the process being killed
//! and shows exactly which effects happened.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A record to sync.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Stable id.
    pub id: String,
    /// Contact email; records without an `@` are invalid.
    pub email: String,
}

/// One line of the ledger.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The idempotency key of the push.
    pub key: String,
    /// The record id.
    pub record: String,
    /// `created`, or `duplicate` when the key had been seen.
    pub outcome: String,
}

/// Knobs of the fake API.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Share of requests that fail with 503.
    pub failure_rate: f64,
    /// Every `invalid_every`-th record has an invalid email (0: none).
    pub invalid_every: u32,
    /// Accept invalid emails (the "fix" for rejected records).
    pub accept_invalid: bool,
    /// Where accepted pushes are appended.
    pub ledger: PathBuf,
    /// The bearer token requests must carry.
    pub token: String,
    /// Pause inside each notification, to leave time to kill the process during it.
    pub notify_delay_ms: u64,
}

struct Api {
    config: ApiConfig,
    seen: Mutex<HashMap<String, String>>,
    ledger: Mutex<std::fs::File>,
}

/// Reads a ledger file; a missing file is an empty ledger.
pub fn read_ledger(path: &Path) -> std::io::Result<Vec<LedgerEntry>> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut entries = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        // A kill can cut the last line short; it carries no completed effect.
        if let Ok(entry) = serde_json::from_str(&line) {
            entries.push(entry);
        }
    }
    Ok(entries)
}

/// The records the API serves: `count` records, every `invalid_every`-th without a valid email.
pub fn records(count: u32, invalid_every: u32) -> Vec<Record> {
    (1..=count)
        .map(|i| Record {
            id: format!("rec-{i:05}"),
            email: if invalid_every > 0 && i % invalid_every == 0 {
                format!("user{i}.example.com")
            } else {
                format!("user{i}@example.com")
            },
        })
        .collect()
}

fn flaky(api: &Api, headers: &HeaderMap) -> Result<(), (StatusCode, String)> {
    let expected = format!("Bearer {}", api.config.token);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return Err((
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token".into(),
        ));
    }
    if fastrand::f64() < api.config.failure_rate {
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily unavailable".into(),
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
struct ListQuery {
    count: u32,
}

async fn list(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<Record>>, (StatusCode, String)> {
    flaky(&api, &headers)?;
    Ok(Json(records(q.count, api.config.invalid_every)))
}

async fn push(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Json(record): Json<Record>,
) -> Result<(StatusCode, String), (StatusCode, String)> {
    flaky(&api, &headers)?;
    let Some(key) = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return Err((StatusCode::BAD_REQUEST, "missing Idempotency-Key".into()));
    };
    if !record.email.contains('@') && !api.config.accept_invalid {
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("invalid email `{}`", record.email),
        ));
    }
    let mut seen = api.seen.lock().unwrap_or_else(|e| e.into_inner());
    let outcome = if seen.contains_key(&key) {
        "duplicate"
    } else {
        seen.insert(key.clone(), record.id.clone());
        "created"
    };
    let entry = LedgerEntry {
        key,
        record: record.id,
        outcome: outcome.into(),
    };
    let line = serde_json::to_string(&entry)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let mut ledger = api.ledger.lock().unwrap_or_else(|e| e.into_inner());
    ledger
        .write_all(format!("{line}\n").as_bytes())
        .and_then(|()| ledger.sync_data())
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let status = if outcome == "created" {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, outcome.to_owned()))
}

async fn notify(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: String,
) -> Result<StatusCode, (StatusCode, String)> {
    flaky(&api, &headers)?;
    let _ = body;
    if api.config.notify_delay_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(api.config.notify_delay_ms)).await;
    }
    Ok(StatusCode::ACCEPTED)
}

/// Starts the API on an ephemeral port of 127.0.0.1 and returns its base URL.
pub async fn serve(config: ApiConfig) -> std::io::Result<String> {
    let seen = read_ledger(&config.ledger)?
        .into_iter()
        .map(|e| (e.key, e.record))
        .collect();
    let ledger = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&config.ledger)?;
    let api = Arc::new(Api {
        config,
        seen: Mutex::new(seen),
        ledger: Mutex::new(ledger),
    });
    let app = Router::new()
        .route("/records", get(list).post(push))
        .route("/notifications", post(notify))
        .with_state(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}"))
}

//! Every supported form of `#[step]` compiles.
use flow_runtime as flow;
use std::fmt;

#[derive(Debug, flow::Classify)]
enum SyncError {
    #[flow(transient)]
    Unavailable,
    #[flow(transient)]
    Timeout(flow::StepTimeout),
    Invalid(String),
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncError::Unavailable => f.write_str("the service is unavailable"),
            SyncError::Timeout(t) => write!(f, "{t}"),
            SyncError::Invalid(why) => write!(f, "invalid record: {why}"),
        }
    }
}

impl From<flow::StepTimeout> for SyncError {
    fn from(timeout: flow::StepTimeout) -> Self {
        SyncError::Timeout(timeout)
    }
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Record {
    id: u64,
    email: String,
}

/// Pushes one record.
#[flow::step(retry = "transient", idempotent)]
pub async fn sync_record(record_id: &str) -> Result<(), SyncError> {
    let _ = record_id;
    Ok(())
}

/// Charges an order once per order and attempt number.
#[flow::step(idempotency_key = format!("charge-{}-{n}", order_id, n = attempt))]
async fn charge(order_id: u64, attempt: u32) -> Result<u64, flow::Failure> {
    Ok(order_id + u64::from(attempt))
}

const PREFIX: &str = "key";

fn make_key(id: u64) -> String {
    format!("{PREFIX}-{id}")
}

#[flow::step(idempotency_key = make_key(record.id), retry = "none")]
async fn push(record: &Record) -> Result<(), SyncError> {
    let _ = record;
    Ok(())
}

#[flow::step(idempotency_key = (PREFIX, ids.iter().map(|i| i + 1).sum::<u64>()).1)]
async fn push_many(ids: Vec<u64>) -> Result<(), SyncError> {
    let _ = ids;
    Ok(())
}

#[flow::step(at_most_once)]
async fn send_email(to: String) -> Result<(), String> {
    let _ = to;
    Ok(())
}

#[flow::step(read_only)]
async fn fetch(id: u64) -> Result<Record, SyncError> {
    Ok(Record {
        id,
        email: String::new(),
    })
}

#[flow::step(read_only, idempotent, retry(attempts = 6, initial = "500ms", max = "30s", multiplier = 1.5, jitter = false))]
async fn fetch_slowly(id: u64) -> Result<Record, SyncError> {
    Ok(Record {
        id,
        email: String::new(),
    })
}

#[flow::step(idempotent, retry(attempts = 2))]
async fn two_attempts() -> Result<(), SyncError> {
    Ok(())
}

#[flow::step(idempotent, timeout = "1m30s")]
async fn slow(mut n: u32) -> Result<u32, SyncError> {
    n += 1;
    Ok(n)
}

#[flow::step(idempotent, name = "records::renamed")]
async fn renamed() -> Result<(), SyncError> {
    Ok(())
}

async fn stand_in(record: &Record, dry: bool) -> Result<Record, SyncError> {
    let _ = dry;
    Ok(record.clone())
}

#[flow::step(idempotent, dry_run = stand_in)]
async fn update<'a>(record: &'a Record, dry: bool) -> Result<Record, SyncError> {
    let _ = dry;
    Ok(record.clone())
}

#[flow::step(idempotent, dry_run = "default")]
#[allow(clippy::needless_return)]
async fn explicit_default() -> Result<Vec<u64>, SyncError> {
    return Ok(vec![1]);
}

type AppResult<T> = Result<T, flow::Failure>;

#[flow::step(idempotent)]
async fn aliased(x: u8) -> AppResult<u8> {
    Ok(x)
}

struct Service;

impl Service {
    #[flow::step(idempotent)]
    async fn associated(id: u64) -> Result<u64, SyncError> {
        Ok(id)
    }
}

fn main() {
    let _ = (sync_record("a"), charge(1, 2), push, push_many(vec![]), send_email(String::new()));
    let _ = (fetch(1), fetch_slowly(1), two_attempts(), slow(1), renamed());
    let r = Record { id: 1, email: String::new() };
    let _ = update(&r, true);
    let _ = (explicit_default(), aliased(1), Service::associated(1));
}

//! A `#[flow::main]` binary for the alert tests (`tests/tests/alerts.rs`): `flaky` fails while
//! the file named in its input exists, and alerts after 3 consecutive failed runs; `pay`
//! crashes in an `at_most_once` step while the file named in its input exists.

use flow_runtime as flow;

/// Fails while `flag` exists.
#[flow::step(idempotent, retry = "none")]
async fn check(flag: String) -> Result<(), flow::Failure> {
    if std::path::Path::new(&flag).exists() {
        return Err(flow::Failure::permanent("the upstream is down"));
    }
    Ok(())
}

/// One check; alerts after three failed runs in a row.
#[flow::workflow(alert_after = 3)]
async fn flaky(flag: String) -> Result<(), flow::Failure> {
    check(flag).await
}

/// Crashes the process while `crash` exists, as a kill during the call would.
#[flow::step(at_most_once)]
async fn charge(crash: String) -> Result<(), flow::Failure> {
    if std::path::Path::new(&crash).exists() {
        std::process::abort();
    }
    Ok(())
}

/// One at_most_once step: a crash during it leaves the run needing attention.
#[flow::workflow]
async fn pay(crash: String) -> Result<(), flow::Failure> {
    charge(crash).await
}

/// Test binary for the alert tests.
#[flow::main]
async fn main() {}

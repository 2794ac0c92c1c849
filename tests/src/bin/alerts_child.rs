//! A `#[flow::main]` binary for the alert tests (`tests/tests/alerts.rs`): `flaky` fails while
//! the file named in its input exists, and alerts after 3 consecutive failed runs; `pay`
//! crashes in an `at_most_once` step while the file named in its input exists; `slow` runs
//! while the file named in its input exists (the tests give it a max duration in settings) and
//! `nap` sleeps durably (its max duration is declared); `budget` fans out over ten units with an error budget of three
//! failures, and units `u2`, `u4`, `u6` fail while the file named in its input exists.

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

/// Waits while `flag` exists.
#[flow::step(idempotent, retry = "none")]
async fn hold(flag: String) -> Result<(), flow::Failure> {
    while std::path::Path::new(&flag).exists() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Runs as long as the file named in its input exists.
#[flow::workflow]
async fn slow(flag: String) -> Result<(), flow::Failure> {
    hold(flag).await
}

/// Sleeps durably for `ms` milliseconds (a worker releases the run meanwhile); alerts when a
/// run has not finished a second after it was created.
#[flow::workflow(max_duration = "1s")]
async fn nap(ms: u64) -> Result<(), flow::Failure> {
    flow::sleep(std::time::Duration::from_millis(ms)).await;
    Ok(())
}

/// Fails for `u2`, `u4` and `u6` while `flag` exists.
#[flow::step(idempotent, retry = "none")]
async fn sync_unit(unit: String, flag: String) -> Result<(), flow::Failure> {
    if ["u2", "u4", "u6"].contains(&unit.as_str()) && std::path::Path::new(&flag).exists() {
        return Err(flow::Failure::permanent(format!("{unit} was refused")));
    }
    Ok(())
}

/// Ten units, one at a time, stopped after three failures.
#[flow::workflow]
async fn budget(flag: String) -> Result<u64, flow::Failure> {
    let units: Vec<String> = (0..10).map(|i| format!("u{i}")).collect();
    let report = flow::units(units, |u| u.clone())
        .concurrency(1)
        .max_failures(3)
        .run(|unit| {
            let flag = flag.clone();
            async move { sync_unit(unit, flag).await }
        })
        .await?;
    Ok(report.succeeded)
}

/// Test binary for the alert tests.
#[flow::main]
async fn main() {}

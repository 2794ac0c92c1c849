//! Test binary for the runbook: workflows with and without units, a keyed step whose key is a
//! `format!` expression, and doc comments of several paragraphs.
use flow_runtime as flow;

/// Charges one invoice.
///
/// The payment API deduplicates on the key, so a charge repeated after a crash is harmless.
///
/// Declined cards are permanent errors and are never retried.
#[flow::step(idempotency_key = format!("inv-{}", invoice_id), retry = "none")]
async fn charge(invoice_id: u64, cents: u64) -> Result<u64, flow::Failure> {
    Ok(cents)
}

/// Charges every invoice of the day, one by one.
///
/// It runs no units: a failure stops the run.
#[flow::workflow]
async fn billing(invoices: Vec<u64>) -> Result<u64, flow::Failure> {
    let mut total = 0;
    for id in invoices {
        total += charge(id, 100).await?;
    }
    Ok(total)
}

/// Charges every invoice as a unit.
#[flow::workflow]
async fn billing_units(invoices: Vec<u64>) -> Result<u64, flow::Failure> {
    let report = flow::units(invoices, |id| id.to_string())
        .run(|id| async move { charge(id, 100).await })
        .await
        .map_err(flow::Failure::permanent)?;
    Ok(report.succeeded)
}

async fn charge_all(invoices: Vec<u64>) -> Result<u64, flow::Failure> {
    let report = flow::units(invoices, |id| id.to_string())
        .run(|id| async move { charge(id, 100).await })
        .await
        .map_err(flow::Failure::permanent)?;
    Ok(report.succeeded)
}

/// Charges every invoice as a unit, through a helper function.
#[flow::workflow(units)]
async fn billing_helper(invoices: Vec<u64>) -> Result<u64, flow::Failure> {
    charge_all(invoices).await
}

/// Test binary for the runbook.
#[flow::main]
async fn main() {}

//! A parameter that only the `idempotency_key` reads is used: no `unused variable` warning.
#![deny(warnings)]
use flow_runtime as flow;

#[derive(Clone, serde::Serialize)]
pub struct Invoice {
    pub id: u64,
    pub cents: u64,
}

/// Charges an invoice; the payment API deduplicates on the key, which the body reads through
/// `flow::step_key()`, so `invoice_id` appears only in the key.
#[flow::step(idempotency_key = format!("inv-{}", invoice_id))]
pub async fn charge(invoice_id: u64, cents: u64) -> Result<u64, flow::Failure> {
    let _key = flow::step_key();
    Ok(cents)
}

/// Format-string captures count as uses too.
#[flow::step(idempotency_key = format!("{order_id}/{line}"))]
pub async fn ship(order_id: String, line: u32, mut note: String) -> Result<(), flow::Failure> {
    note.push('!');
    Ok(())
}

/// A field of a parameter.
#[flow::step(idempotency_key = invoice.id)]
pub async fn mail(invoice: &Invoice) -> Result<(), flow::Failure> {
    Ok(())
}

fn main() {}

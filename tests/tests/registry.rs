//! The registry: every workflow and step linked into the binary, with its name, options, doc
//! comment and source location, for the CLI and the runbook.

use flow_runtime as flow;

/// Charges one customer.
///
/// Safe to repeat: the gateway deduplicates on the key.
#[flow::step(idempotency_key = customer, retry(attempts = 6, initial = "500ms", max = "30s"), timeout = "30s", name = "billing.charge")]
async fn charge(customer: &str) -> Result<(), flow::Failure> {
    let _ = customer;
    Ok(())
}

/// The monthly billing run.
#[flow::workflow(alert_after = 3)]
async fn monthly_billing(customers: Vec<String>) -> Result<(), flow::Failure> {
    for c in &customers {
        charge(c).await?;
    }
    Ok(())
}

#[test]
fn steps_and_workflows_register_their_metadata() {
    let step =
        flow::__private::registry::step("billing.charge").expect("registered under its name");
    assert_eq!(step.fn_name, "charge");
    assert_eq!(
        step.repeat,
        flow::__private::RepeatSafety::IdempotencyKey { expr: "customer" }
    );
    assert_eq!(
        step.retry,
        flow::__private::RetrySpec::Inline {
            attempts: 6,
            initial_ms: 500,
            max_ms: 30_000,
            multiplier: 2.0,
            jitter: true
        }
    );
    assert_eq!(step.timeout_ms, Some(30_000));
    assert_eq!(step.dry_run, flow::__private::DryRunSpec::Default);
    assert!(step.doc.contains("Charges one customer."), "{:?}", step.doc);
    assert!(step.doc.contains("deduplicates"), "{:?}", step.doc);
    assert!(step.file.ends_with("registry.rs"));
    assert!(step.line > 0);

    let wf = flow::__private::registry::workflow("monthly_billing").expect("registered");
    assert_eq!(wf.params, ["customers"]);
    assert_eq!(wf.alert_after, Some(3));
    assert!(wf.doc.contains("monthly billing run"));
    assert_eq!(monthly_billing::NAME, "monthly_billing");
    assert!(flow::__private::registry::workflows()
        .iter()
        .any(|w| w.name == "monthly_billing"));
}

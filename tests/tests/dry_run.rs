//! Dry runs: read-only steps run for real, every other step is skipped and listed in the plan
//! with its key and arguments, stand-ins replace their outputs, and nothing is stored.

use flow_runtime as flow;
use flow_tests::{bump, count, fresh_flow};

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct Invoice {
    number: String,
}

#[flow::step(read_only)]
async fn load_customers(tag: String) -> Result<Vec<String>, flow::Failure> {
    bump(&format!("{tag}/load"));
    Ok(vec!["acme".into(), "globex".into()])
}

#[flow::step(idempotency_key = customer, dry_run = "default")]
async fn send_invoice(tag: &str, customer: &str) -> Result<Invoice, flow::Failure> {
    bump(&format!("{tag}/send/{customer}"));
    Ok(Invoice {
        number: format!("INV-{customer}"),
    })
}

async fn pretend_charge(tag: &str, customer: &str) -> Result<u64, flow::Failure> {
    let _ = (tag, customer);
    Ok(999)
}

#[flow::step(idempotent, dry_run = pretend_charge)]
async fn charge(tag: &str, customer: &str) -> Result<u64, flow::Failure> {
    bump(&format!("{tag}/charge/{customer}"));
    Ok(1)
}

#[flow::workflow]
async fn invoicing(tag: String) -> Result<(Vec<Invoice>, u64), flow::Failure> {
    let customers = load_customers(tag.clone()).await?;
    let mut invoices = Vec::new();
    let mut charged = 0;
    for c in &customers {
        invoices.push(send_invoice(&tag, c).await?);
        charged += charge(&tag, c).await?;
    }
    flow::sleep(std::time::Duration::from_secs(3600)).await;
    Ok((invoices, charged))
}

#[tokio::test]
async fn a_dry_run_executes_reads_skips_writes_and_lists_them() {
    let (dir, flow) = fresh_flow();
    let dry = invoicing::dry_run(&flow, "d1".into())
        .await
        .expect("dry run");
    let (invoices, charged) = dry.result.expect("workflow result with stand-ins");
    assert_eq!(invoices, vec![Invoice::default(), Invoice::default()]);
    assert_eq!(charged, 999 * 2, "the dry_run function stood in for charge");

    assert_eq!(count("d1/load"), 1, "the read-only step ran for real");
    for c in ["acme", "globex"] {
        assert_eq!(
            count(&format!("d1/send/{c}")),
            0,
            "send_invoice was skipped"
        );
        assert_eq!(count(&format!("d1/charge/{c}")), 0, "charge was skipped");
    }
    let actions: Vec<&str> = dry.plan.iter().map(|p| p.action.as_str()).collect();
    assert_eq!(dry.plan.len(), 5, "{actions:?}");
    assert_eq!(dry.plan[0].key, "acme");
    assert!(dry.plan[0].step.ends_with("send_invoice"));
    assert_eq!(dry.plan[0].args, serde_json::json!(["d1", "acme"]));
    assert_eq!(dry.plan[0].action, "would call send_invoice key=acme");
    assert!(dry.plan[1].action.starts_with("would call charge key="));
    assert_eq!(dry.plan[2].key, "globex");
    assert!(dry.plan[4].action.starts_with("would sleep"));

    // Nothing reached the store.
    let runs = flow.runs(&flow::store::RunFilter::default()).await.unwrap();
    assert!(runs.is_empty(), "a dry run stored {runs:?}");
    drop(dir);
}

#[tokio::test]
async fn a_dry_run_by_name_takes_json() {
    let (_dir, flow) = fresh_flow();
    let dry = flow
        .dry_run("invoicing", serde_json::json!("d2"))
        .await
        .unwrap();
    assert_eq!(dry.plan.len(), 5);
    assert_eq!(count("d2/load"), 1);
    assert_eq!(count("d2/send/acme"), 0);
    assert!(flow
        .runs(&flow::store::RunFilter::default())
        .await
        .unwrap()
        .is_empty());
}

//! A keyed step's body reads its key without an `Option`: `flow::key()` is the declared
//! `idempotency_key`, in a run and in a plain call alike, and `flow::step_key()` is `Some` there.

use flow_runtime as flow;
use flow_tests::fresh_flow;

#[flow::step(idempotency_key = format!("order-{order_id}"))]
async fn charge(order_id: u64) -> Result<(String, Option<String>), flow::Failure> {
    Ok((flow::key(), flow::step_key()))
}

#[flow::step(idempotent)]
async fn look(order_id: u64) -> Result<Option<String>, flow::Failure> {
    let _ = order_id;
    Ok(flow::step_key())
}

#[flow::workflow]
async fn checkout(order_id: u64) -> Result<(String, Option<String>), flow::Failure> {
    charge(order_id).await
}

#[tokio::test]
async fn in_a_run_the_body_gets_the_declared_key() {
    let (_dir, flow) = fresh_flow();
    let (key, step_key) = checkout::run(&flow, 42).await.expect("run");
    assert_eq!(key, "order-42");
    assert_eq!(step_key.as_deref(), Some("order-42"));
}

#[tokio::test]
async fn in_a_plain_call_the_body_gets_the_declared_key_too() {
    let (key, step_key) = charge(7).await.expect("plain call");
    assert_eq!(key, "order-7");
    assert_eq!(step_key.as_deref(), Some("order-7"));
    // A step without `idempotency_key` has no key outside a run.
    assert_eq!(look(7).await.expect("plain call"), None);
}

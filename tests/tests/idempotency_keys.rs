//! Idempotency keys: the key comes from the `idempotency_key` expression, is handed to the body
//! as `flow::step_key()`, identifies the checkpoint, and is the same on every attempt.

use flow_runtime as flow;
use flow_tests::{bump, count, fresh_flow};
use std::sync::Mutex;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Order {
    id: String,
    cents: u64,
}

static SEEN_KEYS: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[flow::step(idempotency_key = format!("charge-{}", order.id), retry(attempts = 3, initial = "1ms", max = "1ms"))]
async fn charge(order: &Order) -> Result<u64, flow::Failure> {
    let key = flow::step_key().expect("inside a step");
    SEEN_KEYS.lock().unwrap().push(key.clone());
    if bump(&key) == 1 && order.id == "o-flaky" {
        return Err(flow::Failure::transient(std::io::Error::other(
            "gateway timeout",
        )));
    }
    Ok(order.cents)
}

#[flow::workflow]
async fn billing(orders: Vec<Order>) -> Result<u64, flow::Failure> {
    let mut total = 0;
    for order in &orders {
        total += charge(order).await?;
    }
    Ok(total)
}

#[tokio::test]
async fn the_key_is_derived_handed_to_the_body_and_stable_across_attempts() {
    let (_dir, flow) = fresh_flow();
    let orders = vec![
        Order {
            id: "o-1".into(),
            cents: 100,
        },
        Order {
            id: "o-flaky".into(),
            cents: 250,
        },
        Order {
            id: "o-1".into(),
            cents: 100,
        },
    ];
    let total = billing::start_with(&flow, flow::RunOptions::new().id("bill-1"), orders.clone())
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    assert_eq!(total, 450);
    let keys = SEEN_KEYS.lock().unwrap().clone();
    assert_eq!(
        keys,
        [
            "charge-o-1",
            "charge-o-flaky",
            "charge-o-flaky",
            "charge-o-1"
        ],
        "same key on the retry of o-flaky"
    );
    // The same key twice in one run is two calls: occurrences 0 and 1.
    let steps = flow.steps(&"bill-1".into()).await.unwrap();
    let mut ids: Vec<(String, u32)> = steps
        .iter()
        .map(|s| (s.id.key.clone(), s.id.occurrence))
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            ("charge-o-1".to_owned(), 0),
            ("charge-o-1".to_owned(), 1),
            ("charge-o-flaky".to_owned(), 0)
        ]
    );
    assert_eq!(count("charge-o-1"), 2);

    // Re-running the finished id executes nothing.
    billing::start_with(&flow, flow::RunOptions::new().id("bill-1"), orders)
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    assert_eq!(count("charge-o-1"), 2);
    assert_eq!(count("charge-o-flaky"), 2);
}

#[tokio::test]
async fn outside_a_run_a_keyed_step_is_a_plain_function_with_its_declared_key() {
    #[flow::step(idempotency_key = order.id, retry = "none")]
    async fn peek(order: &Order) -> Result<Option<String>, flow::Failure> {
        assert!(!order.id.is_empty());
        Ok(flow::step_key())
    }
    let order = Order {
        id: "o-9".into(),
        cents: 1,
    };
    // The body may send its key outside a run too (issue 14): the declared key, not a hash.
    assert_eq!(peek(&order).await.unwrap().as_deref(), Some("o-9"));
}

//! The child process of the stable-key test (`tests/tests/stable_keys.rs`).
//!
//! It builds a `HashMap` of 500 entries, whose iteration order (and so its serialization order)
//! is seeded at random in every process, runs a workflow whose step takes that map, and prints
//! the key the step's body was handed, the key its checkpoint is stored under, and the map's
//! JSON as serde writes it in this process (so the test can see that the order did vary).
//!
//! Usage: keys_child STORE RUN_ID. Prints `body=<key>`, `stored=<key>`, `order=<json>`.

use flow_runtime as flow;
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Mutex;

static BODY_KEY: Mutex<Option<String>> = Mutex::new(None);

/// Sums the counts; records the key it was handed.
#[flow::step(idempotent, retry = "none")]
async fn tally(counts: HashMap<String, u64>) -> Result<u64, flow::Failure> {
    let key = flow::step_key();
    *BODY_KEY.lock().unwrap_or_else(|e| e.into_inner()) = key;
    Ok(counts.values().sum())
}

#[flow::workflow]
async fn count_all(counts: HashMap<String, u64>) -> Result<u64, flow::Failure> {
    tally(counts).await
}

fn counts() -> HashMap<String, u64> {
    (0..500u64).map(|i| (format!("item-{i:03}"), i)).collect()
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, store, run_id] = args.as_slice() else {
        eprintln!("usage: keys_child STORE RUN_ID");
        return ExitCode::from(2);
    };
    let flow = match flow::Flow::open(store) {
        Ok(flow) => flow,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let counts = counts();
    let order = serde_json::to_string(&counts).unwrap_or_default();
    let options = flow::RunOptions::new().id(run_id.as_str());
    let outcome = match count_all::start_with(&flow, options, counts).await {
        Ok(handle) => handle.outcome().await,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = outcome {
        eprintln!("{e}");
        return ExitCode::from(1);
    }
    let steps = match flow.steps(&run_id.as_str().into()).await {
        Ok(steps) => steps,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let body = BODY_KEY.lock().unwrap_or_else(|e| e.into_inner()).clone();
    println!("body={}", body.unwrap_or_default());
    for step in steps {
        println!("stored={}", step.id.key);
    }
    println!("order={order}");
    ExitCode::SUCCESS
}

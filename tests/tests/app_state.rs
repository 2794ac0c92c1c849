//! App state for steps: values registered on the `Flow` are read by type in a run
//! (`flow::state`) and handed to steps as `skip` parameters, which are left out of the step's
//! key, its stored arguments and the dry-run plan, and need not be serializable.

use flow_runtime as flow;
use flow_tests::{bump, count};
use std::sync::{Arc, Mutex};

/// A client: not `Serialize`, so it could not be a step argument without `skip`.
#[derive(Clone)]
struct Api {
    name: &'static str,
    calls: Arc<Mutex<Vec<String>>>,
}

impl Api {
    fn new(name: &'static str) -> Self {
        Api {
            name,
            calls: Arc::default(),
        }
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

/// Configuration, registered as a second value.
struct Prefix(String);

#[flow::step(idempotent, skip(api, prefix))]
async fn push(api: &Api, prefix: &Prefix, id: u64) -> Result<String, flow::Failure> {
    let call = format!(
        "{}{id}@{} key={}",
        prefix.0,
        api.name,
        flow::step_key().unwrap_or_default()
    );
    api.calls.lock().unwrap().push(call.clone());
    bump(&format!("push/{}/{id}", api.name));
    Ok(call)
}

#[flow::workflow]
async fn sync_ids(ids: Vec<u64>) -> Result<Vec<String>, flow::Failure> {
    let api = flow::state::<Api>();
    let prefix = flow::state::<Prefix>();
    let mut done = Vec::new();
    for id in ids {
        done.push(push(&api, &prefix, id).await?);
    }
    Ok(done)
}

fn flow_with(dir: &tempfile::TempDir, api: Api) -> flow::Flow {
    flow::Flow::builder()
        .state(api)
        .state(Prefix("rec-".into()))
        .open(dir.path().join("flow.redb"))
        .expect("open store")
}

#[tokio::test]
async fn a_workflow_reads_registered_state_and_passes_it_to_steps() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::new("a");
    let flow = flow_with(&dir, api.clone());

    let out = sync_ids::run(&flow, vec![1, 2])
        .await
        .expect("run succeeds");
    assert_eq!(out.len(), 2);
    assert!(out[0].starts_with("rec-1@a key="), "{out:?}");
    assert_eq!(api.calls().len(), 2, "the registered client made the calls");
    assert_eq!(count("push/a/1"), 1);
}

#[tokio::test]
async fn skipped_parameters_are_not_part_of_the_key_nor_the_stored_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Api::new("keys-a"), Api::new("keys-b"));
    let run_a = flow_with(&dir, a.clone());
    sync_ids::run(&run_a, vec![7]).await.expect("run with a");
    drop(run_a);
    let run_b = flow_with(&dir, b.clone());
    sync_ids::run(&run_b, vec![7]).await.expect("run with b");

    let key = |calls: Vec<String>| calls[0].split(" key=").nth(1).unwrap().to_owned();
    assert_eq!(
        key(a.calls()),
        key(b.calls()),
        "another client gives the same key: only `id` is keyed"
    );

    // The checkpoint holds the output; nothing of the client is stored as an argument.
    let runs = run_b
        .runs(&flow::store::RunFilter::default())
        .await
        .unwrap();
    for run in runs {
        for step in run_b.steps(&run.id).await.unwrap() {
            let stored = serde_json::to_string(&step).unwrap_or_default();
            assert!(!stored.contains("calls"), "client state stored: {stored}");
        }
    }
}

#[tokio::test]
async fn the_dry_run_plan_lists_only_the_keyed_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::new("dry");
    let flow = flow_with(&dir, api.clone());
    let dry = sync_ids::dry_run(&flow, vec![3, 4]).await.expect("dry run");
    assert_eq!(dry.plan.len(), 2);
    assert_eq!(dry.plan[0].args, serde_json::json!([3]));
    assert_eq!(dry.plan[1].args, serde_json::json!([4]));
    assert!(api.calls().is_empty(), "a dry run skips the step");
}

#[tokio::test]
async fn missing_state_fails_the_run_with_the_type_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let flow = flow::Flow::builder()
        .state(Prefix("x".into()))
        .open(dir.path().join("flow.redb"))
        .expect("open store");
    let error = sync_ids::run(&flow, vec![1])
        .await
        .expect_err("no Api registered");
    let message = error.to_string();
    assert!(
        message.contains("no app state of type `app_state::Api`"),
        "{message}"
    );
    assert!(
        message.contains("Flow::builder().state(value)"),
        "{message}"
    );
    assert!(
        message.contains("app_state::Prefix"),
        "lists what is registered: {message}"
    );
}

#[tokio::test]
async fn outside_a_run_the_step_takes_the_state_directly() {
    let api = Api::new("plain");
    let out = push(&api, &Prefix("p-".into()), 9)
        .await
        .expect("plain call");
    assert_eq!(
        out, "p-9@plain key=",
        "ran as a plain function, with no step key"
    );
    assert_eq!(api.calls(), vec![out]);
    assert!(
        flow::try_state::<Api>().is_none(),
        "no app state outside a run"
    );
}

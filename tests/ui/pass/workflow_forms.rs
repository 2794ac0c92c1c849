//! Workflows with zero, one and two parameters, calling steps, with and without options.
use flow_runtime as flow;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SyncInput {
    pub ids: Vec<u64>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    pub synced: usize,
}

#[flow::step(idempotent)]
async fn push(id: u64) -> Result<(), flow::Failure> {
    let _ = id;
    Ok(())
}

/// Syncs every record.
#[flow::workflow]
pub async fn sync_records(input: SyncInput) -> Result<Summary, flow::Failure> {
    for id in &input.ids {
        push(*id).await?;
    }
    Ok(Summary {
        synced: input.ids.len(),
    })
}

#[flow::workflow(name = "nightly-report", alert_after = 3)]
async fn nightly() -> Result<(), flow::Failure> {
    push(0).await
}

#[flow::workflow]
pub(crate) async fn copy(mut from: String, to: String) -> Result<String, flow::Failure> {
    from.push_str(&to);
    Ok(from)
}

// Parameters named like the handle's own arguments do not collide with them.
#[flow::workflow]
async fn configure(flow: u32, options: Vec<String>) -> Result<usize, flow::Failure> {
    Ok(flow as usize + options.len())
}

type AppResult<T> = Result<T, flow::Failure>;

#[flow::workflow]
async fn aliased(n: u8) -> AppResult<u8> {
    Ok(n)
}

async fn use_handles(flow: &flow::Flow) -> Result<(), flow::Error> {
    let input = SyncInput { ids: vec![1, 2] };
    let _handle: flow::RunHandle<Summary, flow::Failure> =
        sync_records::start(flow, input.clone()).await?;
    let _ = sync_records::start_with(flow, flow::RunOptions::new().id("run-1"), input.clone()).await?;
    let _: Result<Summary, flow::RunError<flow::Failure>> = sync_records::run(flow, input.clone()).await;
    let _: flow::DryRun<Summary, flow::Failure> = sync_records::dry_run(flow, input).await?;
    let _ = nightly::start(flow).await?;
    let _ = copy::run(flow, "a".into(), "b".into()).await;
    let _ = configure::start(flow, 1, vec![]).await?;
    let _ = aliased::dry_run(flow, 1).await?;
    Ok(())
}

fn main() {
    assert_eq!(sync_records::NAME, "sync_records");
    assert_eq!(nightly::NAME, "nightly-report");
    let meta = nightly::meta();
    assert_eq!(meta.alert_after, Some(3));
    assert_eq!(meta.fn_name, "nightly");
    assert_eq!(copy::meta().params, &["from", "to"]);
    assert_eq!(sync_records::meta().doc, "Syncs every record.");
    // Still an ordinary async fn.
    let _ = sync_records(SyncInput { ids: vec![] });
    let _ = use_handles;
    assert!(flow::__private::registry::workflow("nightly-report").is_some());
    assert!(flow::__private::registry::step(concat!(module_path!(), "::push")).is_some());
}

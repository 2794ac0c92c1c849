//! Listing runs reads the newest runs only: the redb store keeps an index by creation time, so
//! `runs list --limit 20` decodes about 20 records whatever the store holds. Reads run off the
//! async workers.
//!
//! "Reads only the newest" is shown by an outcome, not a timing: an old record is damaged, and
//! listing the newest runs still succeeds, while a listing that reaches the old record reports
//! it.

#![allow(clippy::unwrap_used)]

use flow_runtime::store::{
    ClaimOutcome, ClaimRequest, CreateRun, RedbStore, RunFilter, RunId, RunRecord, RunStatus,
    Store, Write,
};
use redb::{Builder, ConcurrencyMode, TableDefinition};
use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::process::Command;
use std::task::Context;

const RUNS: TableDefinition<&str, &[u8]> = TableDefinition::new("runs");

/// How many runs the stores of these tests hold.
const RUN_COUNT: u64 = 2_000;

fn run(i: u64, created_at_ms: u64) -> RunRecord {
    RunRecord {
        id: RunId::from(format!("run-{i:05}")),
        workflow: if i % 100 == 7 { "rare" } else { "common" }.into(),
        status: if i.is_multiple_of(3) {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        },
        input: serde_json::json!({ "n": i }),
        output: None,
        error: None,
        trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
        created_at_ms,
        updated_at_ms: created_at_ms,
        executions: 1,
        attention: None,
        owner: None,
        lease_expires_at_ms: None,
        queue: None,
        wake_at_ms: None,
        scheduled: None,
        app_version: None,
        traceparent: None,
    }
}

fn ids(runs: &[RunRecord]) -> Vec<String> {
    runs.iter().map(|r| r.id.to_string()).collect()
}

/// A store of `RUN_COUNT` runs created at `1000 + i` ms (pairs share a millisecond, so the
/// run id breaks the tie), written in a few big commits, with run 10's record damaged.
async fn store_with_a_damaged_old_run(path: &Path) -> RedbStore {
    let store = RedbStore::open(path).unwrap();
    let records: Vec<Write> = (0..RUN_COUNT)
        .map(|i| Write::PutRun(run(i, 1000 + i / 2)))
        .collect();
    for chunk in records.chunks(500) {
        store.commit(chunk.to_vec()).await.unwrap();
    }
    // A second handle in this process is allowed in redb's multi-writer mode
    let mut builder = Builder::new();
    builder.set_concurrency_mode(ConcurrencyMode::MultiWriter);
    let raw = builder.open(path).unwrap();
    let txn = raw.begin_write().unwrap();
    txn.open_table(RUNS)
        .unwrap()
        .insert("run-00010", b"{damaged".as_slice())
        .unwrap();
    txn.commit().unwrap();
    store
}

/// The ids of the newest `n` runs, by (creation time, id) descending, from the test's model.
fn newest(n: usize, keep: impl Fn(&RunRecord) -> bool) -> Vec<String> {
    let mut all: Vec<RunRecord> = (0..RUN_COUNT)
        .map(|i| run(i, 1000 + i / 2))
        .filter(|r| keep(r))
        .collect();
    all.sort_by(|a, b| (b.created_at_ms, &b.id).cmp(&(a.created_at_ms, &a.id)));
    ids(&all[..n.min(all.len())])
}

#[tokio::test]
async fn listing_the_newest_runs_reads_only_the_newest_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_a_damaged_old_run(&dir.path().join("flow.redb")).await;

    let newest_20 = RunFilter {
        limit: Some(20),
        ..RunFilter::default()
    };
    let listed = store.runs(&newest_20).await.unwrap();
    assert_eq!(ids(&listed), newest(20, |_| true));
    assert_eq!(listed[0].id.as_str(), "run-01999");
    assert_eq!(
        listed[1].id.as_str(),
        "run-01998",
        "same millisecond: the id breaks the tie"
    );

    // A filter scans the index until it has `limit` matches
    let rare_failed = RunFilter {
        status: Some(RunStatus::Failed),
        workflow: Some("rare".into()),
        limit: Some(3),
    };
    let listed = store.runs(&rare_failed).await.unwrap();
    let expected = newest(3, |r| r.workflow == "rare" && r.status == RunStatus::Failed);
    assert_eq!(ids(&listed), expected);
    assert_eq!(listed.len(), 3);

    // A listing that reaches the damaged record says which one it is
    let err = store.runs(&RunFilter::default()).await.unwrap_err();
    assert!(err.to_string().contains("run run-00010"), "{err}");
    let all_but = RunFilter {
        limit: Some(RUN_COUNT as usize - 11),
        ..RunFilter::default()
    };
    let listed = store.runs(&all_but).await.unwrap();
    assert_eq!(listed.len(), RUN_COUNT as usize - 11);
    assert!(listed.iter().all(|r| r.id.as_str() > "run-00010"));
}

#[tokio::test]
async fn every_way_of_writing_a_run_keeps_one_entry_in_creation_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path().join("flow.redb")).unwrap();
    let list = || async { ids(&store.runs(&RunFilter::default()).await.unwrap()) };

    // Created, then rewritten by status changes and claims: still one entry, same place
    let created = store.create_run(run(1, 50)).await.unwrap();
    assert!(matches!(created, CreateRun::Created(_)));
    store.create_run(run(2, 60)).await.unwrap();
    store.create_run(run(1, 999)).await.unwrap(); // exists: nothing written
    let mut done = run(1, 50);
    done.status = RunStatus::Succeeded;
    store
        .commit(vec![Write::PutRun(done.clone())])
        .await
        .unwrap();
    store.commit(vec![Write::PutRun(done)]).await.unwrap();
    let claimed = store
        .claim(
            &RunId::from("run-00001"),
            ClaimRequest {
                owner: None,
                lease: std::time::Duration::from_secs(1),
                take: Box::new(|run| {
                    run.status = RunStatus::Running;
                    true
                }),
            },
        )
        .await
        .unwrap();
    assert!(matches!(claimed, ClaimOutcome::Claimed { .. }));
    assert_eq!(list().await, ["run-00002", "run-00001"]);

    // A record written with another creation time moves its entry
    store.commit(vec![Write::PutRun(run(2, 10))]).await.unwrap();
    store.commit(vec![Write::PutRun(run(3, 30))]).await.unwrap();
    assert_eq!(list().await, ["run-00001", "run-00003", "run-00002"]);
}

#[test]
fn reads_run_off_the_async_worker() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = RedbStore::open(dir.path().join("flow.redb")).unwrap();
        let records: Vec<Write> = (0..RUN_COUNT).map(|i| Write::PutRun(run(i, i))).collect();
        store.commit(records).await.unwrap();

        // On the only worker thread, a read that ran there would be done at its first poll;
        // handed to the blocking pool, the worker is free while the pool decodes 2,000 runs
        let mut read = pin!(store.runs(&RunFilter::default()));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(
            read.as_mut().poll(&mut cx).is_pending(),
            "the read ran on the async worker thread"
        );
        assert_eq!(read.await.unwrap().len(), RUN_COUNT as usize);
    });
}

#[tokio::test]
async fn the_cli_lists_the_newest_runs_of_a_store_with_a_damaged_old_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flow.redb");
    drop(store_with_a_damaged_old_run(&path).await);
    let out = Command::new(env!("CARGO_BIN_EXE_cli_child"))
        .args(["runs", "list", "--limit", "3", "--output", "json"])
        .current_dir(dir.path())
        .env("FLOW_STORE", &path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["run-01999", "run-01998", "run-01997"]);
}

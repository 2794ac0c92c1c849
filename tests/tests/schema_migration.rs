//! A schema-2 store (flow before queues) is upgraded in place by the first process that opens
//! it for writing: its runs get the indexes schema 3 added, so a worker finds an interrupted
//! run of the old store and a sleeping one's timer. A read-only open reads it unchanged.

use flow_runtime::store::{
    Owner, RedbStore, RunFilter, RunId, RunRecord, RunStatus, Store, Write, SCHEMA_VERSION,
};
use redb::{ReadableDatabase, TableDefinition, TableHandle};

const META: TableDefinition<&str, &str> = TableDefinition::new("meta");

fn run(id: &str, status: RunStatus, owner: Option<Owner>, wake_at_ms: Option<u64>) -> RunRecord {
    RunRecord {
        id: RunId::from(id),
        workflow: "w".into(),
        status,
        input: serde_json::json!(1),
        output: None,
        error: None,
        trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
        created_at_ms: 1_700_000_000_000,
        updated_at_ms: 1_700_000_000_000,
        executions: 1,
        attention: None,
        owner,
        lease_expires_at_ms: None,
        queue: None,
        wake_at_ms,
        scheduled: None,
        app_version: None,
        traceparent: None,
    }
}

/// Writes `runs` with this build, then turns the file into what schema 2 left: no tables of
/// schema 3, version 2 in the meta table.
fn schema_2_store(path: &std::path::Path, runs: Vec<RunRecord>) {
    let store = RedbStore::open(path).unwrap();
    flow_runtime::block_on(store.commit(runs.into_iter().map(Write::PutRun).collect()))
        .unwrap()
        .unwrap();
    drop(store);
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_write().unwrap();
    let names: Vec<String> = txn
        .list_tables()
        .unwrap()
        .map(|t| t.name().to_owned())
        .collect();
    for name in ["queued", "timers", "in_flight", "held", "starts"] {
        if names.iter().any(|n| n == name) {
            let table: TableDefinition<&str, ()> = TableDefinition::new(name);
            txn.delete_table(table).unwrap();
        }
    }
    txn.open_table(META)
        .unwrap()
        .insert("schema_version", "2")
        .unwrap();
    txn.commit().unwrap();
}

fn version(path: &std::path::Path) -> String {
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_read().unwrap();
    let meta = txn.open_table(META).unwrap();
    let v = meta
        .get("schema_version")
        .unwrap()
        .unwrap()
        .value()
        .to_owned();
    v
}

#[test]
fn a_schema_2_store_is_indexed_and_upgraded_by_its_first_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flow.redb");
    let gone = Owner {
        machine_id: String::new(),
        pid: 0x3fff_fff0,
        start_ticks: 1,
        boot_id: "another-boot".into(),
    };
    schema_2_store(
        &path,
        vec![
            run("interrupted", RunStatus::Running, Some(gone), None),
            run("sleeping", RunStatus::Sleeping, None, Some(5)),
            run("done", RunStatus::Succeeded, None, None),
        ],
    );
    assert_eq!(version(&path), "2");

    // Read-only: readable as it is, and left at version 2
    let reader = RedbStore::open_read_only(&path).unwrap();
    let listed = flow_runtime::block_on(reader.runs(&RunFilter::default()))
        .unwrap()
        .unwrap();
    assert_eq!(listed.len(), 3);
    drop(reader);
    assert_eq!(version(&path), "2");

    // A writer upgrades it and indexes every run
    let store = RedbStore::open(&path).unwrap();
    let held = flow_runtime::block_on(store.held_runs(10))
        .unwrap()
        .unwrap();
    assert_eq!(
        held.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["interrupted"]
    );
    let due = flow_runtime::block_on(store.due(10, 10)).unwrap().unwrap();
    assert_eq!(
        due.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["sleeping"]
    );
    drop(store);
    assert_eq!(version(&path), SCHEMA_VERSION.to_string());
}

//! A schema-2 store (flow before queues) is upgraded in place by the first process that opens
//! it for writing: its runs get the indexes schema 3 added, so a worker finds an interrupted
//! run of the old store and a sleeping one's timer. A read-only open reads it unchanged.

use flow_runtime::store::{
    Owner, RedbStore, RunFilter, RunId, RunRecord, RunStatus, Store, Write, SCHEMA_VERSION,
};
use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableHandle};

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

/// A schema-3 store's step values are JSON; schema 4 writes them in binary and reads both.
#[test]
fn a_schema_3_store_keeps_its_json_steps_readable_and_is_upgraded_by_its_first_writer() {
    use flow_runtime::store::{StepId, StepRecord, StepStatus};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flow.redb");
    let step = |name: &str, output: serde_json::Value| StepRecord {
        run_id: RunId::from("old"),
        id: StepId {
            name: name.into(),
            key: "k".into(),
            occurrence: 0,
        },
        status: StepStatus::Succeeded,
        attempt: 2,
        next_attempt_at_ms: None,
        output: Some(output),
        error: Some("first attempt timed out".into()),
        error_class: None,
        started_at_ms: 1_700_000_000_000,
        finished_at_ms: Some(1_700_000_000_250),
        args: None,
        failure: None,
    };
    let old = step("fetch", serde_json::json!({"rows": 3}));
    let store = RedbStore::open(&path).unwrap();
    flow_runtime::block_on(store.commit(vec![
        Write::PutRun(run("old", RunStatus::Running, None, None)),
        Write::PutStep(old.clone()),
    ]))
    .unwrap()
    .unwrap();
    drop(store);
    // What schema 3 wrote for that step, and its version number
    let steps: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("steps");
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(steps).unwrap();
            let key = table
                .iter()
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .0
                .value()
                .1
                .to_owned();
            table
                .insert(
                    ("old", key.as_str()),
                    br#"{"s":"succeeded","a":2,"o":{"rows":3},"e":"first attempt timed out","t0":1700000000000,"t1":1700000000250}"#.as_slice(),
                )
                .unwrap();
            txn.open_table(META)
                .unwrap()
                .insert("schema_version", "3")
                .unwrap();
        }
        txn.commit().unwrap();
    }

    // Read-only: the JSON step reads, and the file stays at version 3
    let reader = RedbStore::open_read_only(&path).unwrap();
    let read = flow_runtime::block_on(reader.steps(&RunId::from("old")))
        .unwrap()
        .unwrap();
    assert_eq!(read, vec![old.clone()]);
    drop(reader);
    assert_eq!(version(&path), "3");

    // A writer upgrades it; old and new step values read side by side
    let store = RedbStore::open(&path).unwrap();
    let new = step("load", serde_json::json!("done"));
    flow_runtime::block_on(store.commit(vec![Write::PutStep(new.clone())]))
        .unwrap()
        .unwrap();
    let mut read = flow_runtime::block_on(store.steps(&RunId::from("old")))
        .unwrap()
        .unwrap();
    read.sort_by(|a, b| a.id.name.cmp(&b.id.name));
    assert_eq!(read, vec![old, new]);
    drop(store);
    assert_eq!(version(&path), SCHEMA_VERSION.to_string());
    assert_eq!(SCHEMA_VERSION, 4);

    // The new value is the binary form (11 bytes plus its error and output), not JSON
    let db = redb::Database::open(&path).unwrap();
    let txn = db.begin_read().unwrap();
    let table = txn.open_table(steps).unwrap();
    let values: Vec<Vec<u8>> = table
        .iter()
        .unwrap()
        .map(|e| e.unwrap().1.value().to_vec())
        .collect();
    assert_eq!(values.len(), 2);
    assert!(
        values.iter().any(|v| v[0] == b'{'),
        "the old JSON value is left as it was"
    );
    let binary = values
        .iter()
        .find(|v| v[0] == 0x01)
        .expect("a binary value");
    assert!(binary.len() < 50, "{} bytes", binary.len());
}

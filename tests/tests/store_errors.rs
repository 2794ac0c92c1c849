//! The redb store refuses files it cannot use with a clear error, never a panic, and never
//! writes to them; and another process can read a store while this one has it open.

#![allow(clippy::unwrap_used)]

use flow_runtime::store::StoreError;
use flow_runtime::store::{
    CreateRun, RedbStore, RunFilter, RunId, RunRecord, RunStatus, Store, Write, SCHEMA_VERSION,
};
use redb::{Database, ReadableDatabase, TableDefinition};
use std::path::{Path, PathBuf};
use std::process::Command;

const META: TableDefinition<&str, &str> = TableDefinition::new("meta");

fn run(id: &str) -> RunRecord {
    RunRecord {
        id: RunId::from(id),
        workflow: "billing".into(),
        status: RunStatus::Running,
        input: serde_json::json!({}),
        output: None,
        error: None,
        trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
        created_at_ms: 1,
        updated_at_ms: 1,
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

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// A flow store with one run in it, closed again.
fn make_store(path: &Path) {
    let store = RedbStore::open(path).unwrap();
    let created = runtime().block_on(store.create_run(run("r1"))).unwrap();
    assert!(matches!(created, CreateRun::Created(_)));
}

fn assert_message(err: &StoreError, path: &Path, advice: &str) {
    let message = err.to_string();
    assert!(
        message.contains(&path.display().to_string()),
        "the message does not name {}: {message}",
        path.display()
    );
    assert!(
        message.contains(advice),
        "the message does not say `{advice}`: {message}"
    );
}

fn temp_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("flow.redb")
}

#[test]
fn a_store_held_exclusively_by_another_program_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_path(&dir);
    make_store(&path);
    // redb's default mode locks the whole file
    let holder = Database::create(&path).unwrap();

    let err = RedbStore::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert_message(&err, &path, "stop that process");

    let err = RedbStore::open_existing(&path).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");

    drop(holder);
    RedbStore::open(&path).unwrap();
}

#[test]
fn an_exclusive_store_locks_out_other_opens_until_it_closes() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_path(&dir);
    let exclusive = RedbStore::open_with(&path, flow_runtime::Sharing::Exclusive).unwrap();
    let created = runtime().block_on(exclusive.create_run(run("r1"))).unwrap();
    assert!(matches!(created, CreateRun::Created(_)));

    let err = RedbStore::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert_message(&err, &path, "Sharing::Exclusive");

    drop(exclusive);
    let shared = RedbStore::open_existing(&path).unwrap();
    let stored = runtime().block_on(shared.run(&"r1".into())).unwrap();
    assert!(stored.is_some(), "what the exclusive store wrote is there");
}

#[test]
fn a_file_that_is_not_a_database_is_corrupt_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_path(&dir);
    let garbage: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + 3) as u8).collect();
    std::fs::write(&path, &garbage).unwrap();

    for err in [
        RedbStore::open(&path).unwrap_err(),
        RedbStore::open_existing(&path).unwrap_err(),
    ] {
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
        assert_message(&err, &path, "move it aside");
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        garbage,
        "the file was changed"
    );
}

#[test]
fn a_truncated_store_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_path(&dir);
    make_store(&path);
    let bytes = std::fs::read(&path).unwrap();
    // Inside the header, and past it but short of the recorded layout
    for len in [100, bytes.len() / 2] {
        std::fs::write(&path, &bytes[..len]).unwrap();
        let err = RedbStore::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{len}: {err:?}");
        assert_message(&err, &path, "restore it from a backup");
        assert_eq!(std::fs::read(&path).unwrap(), &bytes[..len]);
    }
}

#[test]
fn a_store_with_damaged_pages_is_corrupt_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_path(&dir);
    {
        let store = RedbStore::open(&path).unwrap();
        let rt = runtime();
        let writes = (0..200)
            .map(|i| Write::PutRun(run(&format!("run-{i:04}"))))
            .collect();
        rt.block_on(store.commit(writes)).unwrap();
    }
    let clean = std::fs::read(&path).unwrap();
    // Flip bytes at several places; each must either open (the bytes were in free space)
    // or fail as Corrupt, and never panic
    let mut corrupt = 0;
    for tenth in 1..10 {
        let mut bytes = clean.clone();
        let at = bytes.len() * tenth / 10;
        for b in &mut bytes[at..at + 64] {
            *b ^= 0xff;
        }
        std::fs::write(&path, &bytes).unwrap();
        match RedbStore::open(&path) {
            Ok(_) => {}
            Err(err @ StoreError::Corrupt { .. }) => {
                assert_message(&err, &path, "flow will not overwrite it");
                corrupt += 1;
            }
            Err(err) => panic!("at {tenth}/10: {err:?}"),
        }
    }
    assert!(corrupt > 0, "no flipped region was detected");
}

#[test]
fn a_redb_file_of_another_program_is_foreign() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_path(&dir);
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        let other: TableDefinition<u64, u64> = TableDefinition::new("sensor_readings");
        txn.open_table(other).unwrap().insert(1, 2).unwrap();
        txn.commit().unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    for err in [
        RedbStore::open(&path).unwrap_err(),
        RedbStore::open_existing(&path).unwrap_err(),
    ] {
        assert!(matches!(err, StoreError::Foreign { .. }), "{err:?}");
        assert_message(&err, &path, "point flow at a new path");
        assert!(err.to_string().contains("sensor_readings"), "{err}");
    }
    // The foreign data is still there
    let db = Database::create(&path).unwrap();
    let other: TableDefinition<u64, u64> = TableDefinition::new("sensor_readings");
    let txn = db.begin_read().unwrap();
    let table = txn.open_table(other).unwrap();
    assert_eq!(
        redb::ReadableTable::get(&table, 1)
            .unwrap()
            .map(|v| v.value()),
        Some(2)
    );
    assert!(!before.is_empty());
}

#[test]
fn a_store_from_a_newer_flow_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_path(&dir);
    make_store(&path);
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert("schema_version", "99")
            .unwrap();
        txn.commit().unwrap();
    }
    let err = RedbStore::open(&path).unwrap_err();
    match &err {
        StoreError::NewerVersion {
            found, supported, ..
        } => {
            assert_eq!((*found, *supported), (99, SCHEMA_VERSION));
        }
        other => panic!("{other:?}"),
    }
    assert_message(&err, &path, "upgrade flow");
    let message = err.to_string();
    assert!(message.contains("99"), "{message}");
    assert!(
        message.contains(&format!("version {SCHEMA_VERSION}")),
        "{message}"
    );
}

#[test]
fn open_existing_does_not_create_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_path(&dir);
    let err = RedbStore::open_existing(&path).unwrap_err();
    assert!(matches!(err, StoreError::Missing { .. }), "{err:?}");
    assert_message(&err, &path, "no store at");
    assert_message(&err, &path, "check the store path");
    assert!(!path.exists(), "open_existing created a file");

    std::fs::write(&path, b"").unwrap();
    let err = RedbStore::open_existing(&path).unwrap_err();
    assert!(matches!(err, StoreError::Missing { .. }), "{err:?}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
}

#[test]
fn a_new_store_records_its_format_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_path(&dir);
    drop(RedbStore::open(&path).unwrap());
    let db = Database::create(&path).unwrap();
    let txn = db.begin_read().unwrap();
    let meta = txn.open_table(META).unwrap();
    let get = |key: &str| {
        redb::ReadableTable::get(&meta, key)
            .unwrap()
            .map(|v| v.value().to_owned())
    };
    assert_eq!(get("format").as_deref(), Some("flow"));
    assert_eq!(get("schema_version"), Some(SCHEMA_VERSION.to_string()));
}

const CHILD_STORE: &str = "FLOW_TEST_CHILD_STORE";

/// Runs only as the child of `another_process_reads_while_the_store_is_open`.
#[test]
fn child_lists_runs() {
    let Some(path) = std::env::var_os(CHILD_STORE) else {
        return;
    };
    let store = RedbStore::open_existing(&path).unwrap();
    let runs = runtime()
        .block_on(store.runs(&RunFilter::default()))
        .unwrap();
    let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    println!("CHILD-SAW-RUNS:{}", ids.join(","));
}

#[test]
fn another_process_reads_while_the_store_is_open() {
    if std::env::var_os(CHILD_STORE).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = temp_path(&dir);
    let store = RedbStore::open(&path).unwrap();
    let rt = runtime();
    rt.block_on(store.create_run(run("parent-run"))).unwrap();

    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_lists_runs",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_STORE, &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the child failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("CHILD-SAW-RUNS:parent-run\n"),
        "the child did not see the run: {stdout}"
    );

    // The parent's store still works after the child came and went
    rt.block_on(store.create_run(run("second-run"))).unwrap();
    assert_eq!(
        rt.block_on(store.runs(&RunFilter::default()))
            .unwrap()
            .len(),
        2
    );
}

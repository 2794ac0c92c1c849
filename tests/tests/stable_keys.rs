//! Step keys are stable: the key of a step without `idempotency_key` depends on its arguments'
//! values only, not on the order a `HashMap` iterates in (seeded at random in every process)
//! nor on the order of a struct's fields. A store written with the old keys (schema version 1)
//! is refused with a message that says so.

#![allow(clippy::unwrap_used)]

use flow_runtime as flow;
use flow_runtime::store::StoreError;
use flow_runtime::store::{RedbStore, SCHEMA_VERSION};
use flow_tests::fresh_flow;
use redb::{Database, TableDefinition};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;

#[test]
fn a_hash_map_argument_keeps_its_key_across_20_processes() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("flow.redb");
    let mut keys = BTreeSet::new();
    let mut orders = BTreeSet::new();
    for i in 0..20 {
        let out = Command::new(env!("CARGO_BIN_EXE_keys_child"))
            .arg(&store)
            .arg(format!("run-{i}"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child {i} failed: {}{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        let field = |name: &str| {
            stdout
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in {stdout}"))
                .to_owned()
        };
        let (body, stored) = (field("body="), field("stored="));
        assert_eq!(body, stored, "the body is handed the stored key");
        assert_eq!(body.len(), 32, "128 bits as hex: {body}");
        assert!(body.bytes().all(|b| b.is_ascii_hexdigit()), "{body}");
        keys.insert(body);
        orders.insert(field("order="));
    }
    // Without this the test would prove nothing: serde wrote the map in different orders
    assert!(
        orders.len() > 1,
        "every process iterated the map in the same order"
    );
    assert_eq!(
        keys.len(),
        1,
        "the step key changed between processes: {keys:?}"
    );
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Before {
    id: u64,
    name: String,
    tags: Vec<String>,
}

/// `Before` after a refactoring that reordered its fields.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct After {
    tags: Vec<String>,
    name: String,
    id: u64,
}

#[flow::step(idempotent, retry = "none")]
async fn save_before(record: Before) -> Result<u64, flow::Failure> {
    Ok(record.id)
}

#[flow::step(idempotent, retry = "none")]
async fn save_after(record: After) -> Result<u64, flow::Failure> {
    Ok(record.id)
}

#[flow::step(idempotent, retry = "none")]
async fn save_counts(counts: HashMap<String, u64>) -> Result<usize, flow::Failure> {
    Ok(counts.len())
}

#[flow::workflow]
async fn keyed(id: u64) -> Result<u64, flow::Failure> {
    let name = "ada".to_owned();
    let tags = vec!["x".to_owned(), "y".to_owned()];
    save_before(Before {
        id,
        name: name.clone(),
        tags: tags.clone(),
    })
    .await?;
    save_after(After { tags, name, id }).await?;
    // The same entries, inserted in opposite orders into two maps with their own seeds
    let forward: HashMap<String, u64> = (0..100).map(|i| (format!("k{i}"), i)).collect();
    let backward: HashMap<String, u64> = (0..100).rev().map(|i| (format!("k{i}"), i)).collect();
    save_counts(forward).await?;
    save_counts(backward).await?;
    Ok(id)
}

/// The stored (step name, key, occurrence) of a run.
async fn keys_of(flow: &flow::Flow, run: &str) -> Vec<(String, String, u32)> {
    let mut keys: Vec<_> = flow
        .steps(&run.into())
        .await
        .unwrap()
        .into_iter()
        .map(|s| {
            let name = s.id.name.rsplit("::").next().unwrap().to_owned();
            (name, s.id.key, s.id.occurrence)
        })
        .collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn reordered_fields_and_map_order_keep_the_key_and_values_change_it() {
    let (_dir, flow) = fresh_flow();
    for (run, id) in [("seven", 7), ("eight", 8)] {
        let options = flow::RunOptions::new().id(run);
        let out = keyed::start_with(&flow, options, id).await.unwrap();
        assert_eq!(out.outcome().await.unwrap(), id);
    }
    let seven = keys_of(&flow, "seven").await;
    let names: Vec<_> = seven.iter().map(|(n, _, o)| (n.as_str(), *o)).collect();
    assert_eq!(
        names,
        [
            ("save_after", 0),
            ("save_before", 0),
            ("save_counts", 0),
            ("save_counts", 1)
        ]
    );
    // Same values, fields in another order: the same key
    assert_eq!(seven[0].1, seven[1].1, "{seven:?}");
    // Same entries, another iteration order: one key, so the second call is occurrence 1
    assert_eq!(seven[2].1, seven[3].1, "{seven:?}");
    // Another value: another key
    let eight = keys_of(&flow, "eight").await;
    assert_ne!(seven[0].1, eight[0].1);
    assert_eq!(seven[2].1, eight[2].1, "the maps did not change");
}

const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
const RUNS: TableDefinition<&str, &[u8]> = TableDefinition::new("runs");

/// A store as flow wrote it before stable step keys: schema version 1, no `flow_version`.
fn version_1_store(path: &Path) {
    let db = Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut meta = txn.open_table(META).unwrap();
        meta.insert("format", "flow").unwrap();
        meta.insert("schema_version", "1").unwrap();
        let run = serde_json::json!({
            "id": "old-run", "workflow": "billing", "status": "running", "input": {},
            "trace_id": "0af7651916cd43dd8448eb211c80319c", "created_at_ms": 1, "updated_at_ms": 1,
        });
        let bytes = serde_json::to_vec(&run).unwrap();
        txn.open_table(RUNS)
            .unwrap()
            .insert("old-run", bytes.as_slice())
            .unwrap();
    }
    txn.commit().unwrap();
}

/// The old store still says version 1 and still holds its run: refusing it changed nothing.
fn assert_untouched(path: &Path) {
    use redb::{ReadableDatabase, ReadableTableMetadata, TableHandle};
    let db = Database::create(path).unwrap();
    let txn = db.begin_read().unwrap();
    let meta = txn.open_table(META).unwrap();
    let version = meta
        .get("schema_version")
        .unwrap()
        .map(|v| v.value().to_owned());
    assert_eq!(version.as_deref(), Some("1"));
    assert!(meta.get("flow_version").unwrap().is_none());
    let runs = txn.open_table(RUNS).unwrap();
    assert_eq!(runs.len().unwrap(), 1);
    assert!(runs.get("old-run").unwrap().is_some());
    assert!(txn
        .list_tables()
        .unwrap()
        .all(|t| t.name() != "runs_by_creation"));
}

#[test]
fn a_version_1_store_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flow.redb");
    version_1_store(&path);

    for opened in [
        RedbStore::open(&path),
        RedbStore::open_existing(&path),
        RedbStore::open_read_only(&path),
    ] {
        let err = opened.unwrap_err();
        match &err {
            StoreError::OlderVersion {
                found,
                supported,
                written_by,
                ..
            } => {
                assert_eq!((*found, *supported), (1, SCHEMA_VERSION));
                assert_eq!(written_by, "flow 0.1.0 before stable step keys");
            }
            other => panic!("{other:?}"),
        }
        let message = err.to_string();
        for part in [
            &path.display().to_string(),
            "schema version 1",
            "written by flow 0.1.0 before stable step keys",
            "cannot be resumed by this build",
            "point this build at a new store path",
        ] {
            assert!(message.contains(part), "`{part}` missing from: {message}");
        }
    }
    assert_untouched(&path);

    // The operator CLI says the same and exits non-zero, before any workflow runs
    let out = Command::new(env!("CARGO_BIN_EXE_cli_child"))
        .args(["runs", "list"])
        .current_dir(dir.path())
        .env("FLOW_STORE", &path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot be resumed by this build"),
        "{stderr}"
    );
    assert_untouched(&path);
}

#[test]
fn a_new_store_records_the_flow_version_that_created_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flow.redb");
    drop(RedbStore::open(&path).unwrap());
    let db = Database::create(&path).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    let meta = txn.open_table(META).unwrap();
    let version = redb::ReadableTable::get(&meta, "flow_version")
        .unwrap()
        .map(|v| v.value().to_owned());
    assert_eq!(version.as_deref(), Some(env!("CARGO_PKG_VERSION")));
}

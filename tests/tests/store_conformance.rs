//! One suite for every store: each test is written once against `Arc<dyn Store>` and runs on a
//! real redb file and on PostgreSQL (a schema of its own, dropped at the end).
//!
//! PostgreSQL: `postgres://postgres@127.0.0.1:5432/test` unless `FLOW_TEST_POSTGRES` names
//! another database (any URL the driver accepts; the user needs CREATE on the database).

use flow_runtime::store::{
    AlertFilter, AlertKind, AlertState, Claim, ClaimOutcome, ClaimRequest, CreateRun,
    DeliveryOutcome, Owner, PgOptions, PgStore, PruneRequest, QueueLimits, QueuePlace, QueueTake,
    RedbStore, RunAlert, RunEnd, RunEndOutcome, RunFilter, RunId, RunRecord, RunStatus,
    ScheduleFire, ScheduleWrite, StepId, StepRecord, StepStatus, Store, StoreError, Write,
};
use flow_runtime::Overlap;
use flow_tests::pg::{sql, url as postgres_url};
use serde_json::json;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A store under test and what to remove afterwards.
struct Fixture {
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    schema: Option<String>,
}

impl Fixture {
    fn redb() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path().join("flow.redb")).unwrap();
        Fixture {
            store: Arc::new(store),
            _dir: Some(dir),
            schema: None,
        }
    }

    async fn postgres() -> Fixture {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let schema = format!(
            "flow_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        drop_schema(&schema).await;
        let options = PgOptions {
            schema: schema.clone(),
            pool_size: 4,
            password: None,
            ca_file: None,
        };
        let store = PgStore::connect_with(&postgres_url(), options)
            .await
            .unwrap_or_else(|err| {
                panic!(
                    "PostgreSQL at {} (set FLOW_TEST_POSTGRES): {err}",
                    postgres_url()
                )
            });
        Fixture {
            store: Arc::new(store),
            _dir: None,
            schema: Some(schema),
        }
    }

    async fn finish(self) {
        let Fixture { store, schema, .. } = self;
        drop(store);
        if let Some(schema) = schema {
            drop_schema(&schema).await;
        }
    }
}

async fn drop_schema(schema: &str) {
    sql(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).await;
}

/// Each test once per store.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod redb_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let fixture = super::Fixture::redb();
                    super::$name(fixture.store.clone()).await;
                    fixture.finish().await;
                }
            )*
        }
        mod postgres_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let fixture = super::Fixture::postgres().await;
                    super::$name(fixture.store.clone()).await;
                    fixture.finish().await;
                }
            )*
        }
    };
}

conformance!(
    a_run_is_created_once_and_its_creator_holds_token_1,
    a_write_with_a_stale_claim_is_refused_whole,
    of_concurrent_claims_exactly_one_wins,
    steps_are_replaced_deleted_and_read_in_key_order,
    cancel_requests_are_set_and_cleared,
    runs_are_listed_newest_first_by_status_and_workflow,
    queued_runs_are_taken_in_priority_order_within_the_queue_limits,
    due_runs_and_held_runs_come_from_the_records,
    prune_deletes_only_selected_finished_runs_with_their_steps,
    a_schedule_tick_creates_its_run_once,
    consecutive_failures_open_one_alert_and_a_success_resolves_it,
    overdue_runs_are_found_and_alerted_once_and_an_end_or_a_cancel_resolves_them,
    prune_deletes_delivered_alerts_of_gone_runs_and_frees_the_run_for_a_new_alert,
    a_lease_is_renewed_only_by_the_latest_claim_and_holds_the_run_against_others,
);

const NOW: u64 = 1_700_000_000_000;

fn run(id: &str, status: RunStatus, created_at_ms: u64) -> RunRecord {
    RunRecord::new(
        RunId::from(id),
        "sync",
        status,
        json!({ "id": id, "nul": "a\u{0}b" }),
        "0af7651916cd43dd8448eb211c80319c".into(),
        created_at_ms,
    )
}

fn step(run: &str, name: &str, key: &str, output: serde_json::Value) -> StepRecord {
    StepRecord {
        run_id: RunId::from(run),
        id: StepId {
            name: name.into(),
            key: key.into(),
            occurrence: 0,
        },
        status: StepStatus::Succeeded,
        attempt: 1,
        next_attempt_at_ms: None,
        output: Some(output),
        error: None,
        error_class: None,
        started_at_ms: NOW,
        finished_at_ms: Some(NOW + 1),
        args: None,
        failure: None,
    }
}

/// Another process that runs on this machine (pid 1), so its claim holds.
fn remote_owner() -> Owner {
    owner_of(1)
}

/// The process `pid` of this machine as an owner.
fn owner_of(pid: u32) -> Owner {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    // Field 22 of /proc/PID/stat, the start time; fields after the name start at field 3
    let start_ticks = after_name.split(' ').nth(19).unwrap().parse().unwrap();
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    Owner {
        machine_id: Owner::machine_id().unwrap(),
        pid,
        start_ticks,
        boot_id: boot_id.trim().to_owned(),
    }
}

fn take_any() -> ClaimRequest {
    ClaimRequest {
        owner: None,
        lease: Duration::from_secs(30),
        take: Box::new(|run: &mut RunRecord| {
            run.status = RunStatus::Running;
            run.executions += 1;
            true
        }),
    }
}

async fn create(store: &Arc<dyn Store>, run: RunRecord) -> Claim {
    match store.create_run(run).await.unwrap() {
        CreateRun::Created(claim) => claim,
        CreateRun::Exists(run) => panic!("run {} exists", run.id),
    }
}

async fn a_run_is_created_once_and_its_creator_holds_token_1(store: Arc<dyn Store>) {
    let record = run("r1", RunStatus::Running, NOW);
    let claim = create(&store, record.clone()).await;
    assert_eq!(claim.token, 1);
    let mut other = record.clone();
    other.input = json!("another input");
    match store.create_run(other).await.unwrap() {
        CreateRun::Exists(found) => assert_eq!(found, record, "the first record is kept"),
        CreateRun::Created(_) => panic!("a second create of r1 succeeded"),
    }
    // The input, NUL character included, reads back as written
    assert_eq!(store.run(&RunId::from("r1")).await.unwrap(), Some(record));
    assert_eq!(store.run(&RunId::from("nope")).await.unwrap(), None);

    // Concurrent creates of one id: exactly one is created
    let attempts = (0..8).map(|_| store.create_run(run("r2", RunStatus::Running, NOW)));
    let outcomes = futures::future::join_all(attempts).await;
    let created = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(CreateRun::Created(_))))
        .count();
    assert_eq!(created, 1);
}

async fn a_write_with_a_stale_claim_is_refused_whole(store: Arc<dyn Store>) {
    let first = create(&store, run("r", RunStatus::Running, NOW)).await;
    let ClaimOutcome::Claimed { claim: second, run } =
        store.claim(&RunId::from("r"), take_any()).await.unwrap()
    else {
        panic!("the claim was not granted");
    };
    assert_eq!(second.token, 2);
    assert_eq!(run.executions, 1);

    let stale = store
        .commit(vec![
            Write::CheckClaim(first.clone()),
            Write::PutStep(step("r", "charge", "k", json!("old"))),
        ])
        .await;
    assert!(
        matches!(&stale, Err(StoreError::ClaimLost { run_id }) if run_id.as_str() == "r"),
        "{stale:?}"
    );
    assert!(store.steps(&RunId::from("r")).await.unwrap().is_empty());

    // In one batch: the stale commit is refused, the current one written
    let writes = [first, second].map(|claim| {
        let token = claim.token;
        store.commit(vec![
            Write::CheckClaim(claim),
            Write::PutStep(step("r", "charge", &format!("k{token}"), json!(token))),
        ])
    });
    let [old, new] = writes;
    let (old, new) = futures::join!(old, new);
    assert!(matches!(old, Err(StoreError::ClaimLost { .. })));
    new.unwrap();
    let steps = store.steps(&RunId::from("r")).await.unwrap();
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].output, Some(json!(2)));

    // A claim on a run that does not exist
    let missing = store.claim(&RunId::from("none"), take_any()).await.unwrap();
    assert!(matches!(missing, ClaimOutcome::Missing));
}

async fn of_concurrent_claims_exactly_one_wins(store: Arc<dyn Store>) {
    create(&store, run("r", RunStatus::Running, NOW)).await;
    let claims = (0..10).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .claim(
                    &RunId::from("r"),
                    ClaimRequest {
                        owner: Some(remote_owner()),
                        lease: Duration::from_secs(60),
                        take: Box::new(|run: &mut RunRecord| {
                            run.executions += 1;
                            true
                        }),
                    },
                )
                .await
                .unwrap()
        })
    });
    let outcomes = futures::future::join_all(claims).await;
    let won: Vec<u64> = outcomes
        .iter()
        .filter_map(|o| match o.as_ref().unwrap() {
            ClaimOutcome::Claimed { claim, .. } => Some(claim.token),
            _ => None,
        })
        .collect();
    assert_eq!(
        won,
        vec![2],
        "one winner, with the token after the creator's"
    );
    let held = outcomes
        .iter()
        .filter(|o| matches!(o.as_ref().unwrap(), ClaimOutcome::Held(_)))
        .count();
    assert_eq!(held, 9);
    let stored = store.run(&RunId::from("r")).await.unwrap().unwrap();
    assert_eq!(stored.executions, 1);
    assert_eq!(stored.owner, Some(remote_owner()));

    // A take that refuses writes nothing and moves no token
    let mut free = run("s", RunStatus::Succeeded, NOW);
    free.output = Some(json!(1));
    let claim = create(&store, free.clone()).await;
    let refused = store
        .claim(
            &RunId::from("s"),
            ClaimRequest {
                owner: None,
                lease: Duration::from_secs(1),
                take: Box::new(|run: &mut RunRecord| !run.status.is_finished()),
            },
        )
        .await
        .unwrap();
    assert!(matches!(refused, ClaimOutcome::Refused(r) if r == free));
    store.commit(vec![Write::CheckClaim(claim)]).await.unwrap();
}

async fn steps_are_replaced_deleted_and_read_in_key_order(store: Arc<dyn Store>) {
    let claim = create(&store, run("r", RunStatus::Running, NOW)).await;
    let c = || Write::CheckClaim(claim.clone());
    store
        .commit(vec![
            c(),
            Write::PutStep(step("r", "b", "2", json!("b2"))),
            Write::PutStep(step("r", "a", "1", json!("first"))),
            Write::PutStep(step("r", "a", "1", json!("second"))),
            Write::PutStep(step("r", "c", "x\u{1f}y", json!("sep"))),
        ])
        .await
        .unwrap();
    let b2 = step("r", "b", "2", json!("b2")).id;
    store
        .commit(vec![c(), Write::DeleteStep(RunId::from("r"), b2)])
        .await
        .unwrap();
    let steps = store.steps(&RunId::from("r")).await.unwrap();
    let seen: Vec<(String, String, serde_json::Value)> = steps
        .into_iter()
        .map(|s| (s.id.name, s.id.key, s.output.unwrap()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("a".into(), "1".into(), json!("second")),
            ("c".into(), "x\u{1f}y".into(), json!("sep")),
        ]
    );
    assert!(store.steps(&RunId::from("other")).await.unwrap().is_empty());
}

async fn cancel_requests_are_set_and_cleared(store: Arc<dyn Store>) {
    let ids: Vec<RunId> = ["a", "b", "c"].into_iter().map(RunId::from).collect();
    store
        .commit(vec![
            Write::RequestCancel(ids[2].clone()),
            Write::RequestCancel(ids[0].clone()),
        ])
        .await
        .unwrap();
    assert_eq!(
        store.cancel_requests(&ids).await.unwrap(),
        vec![ids[0].clone(), ids[2].clone()]
    );
    store
        .commit(vec![Write::ClearCancel(ids[0].clone())])
        .await
        .unwrap();
    assert_eq!(
        store.cancel_requests(&ids).await.unwrap(),
        vec![ids[2].clone()]
    );
}

async fn runs_are_listed_newest_first_by_status_and_workflow(store: Arc<dyn Store>) {
    for (i, status) in [RunStatus::Running, RunStatus::Failed, RunStatus::Running]
        .into_iter()
        .enumerate()
    {
        let mut r = run(&format!("r{i}"), status, NOW + i as u64);
        if i == 1 {
            r.workflow = "billing".into();
        }
        create(&store, r).await;
    }
    let ids = |runs: Vec<RunRecord>| {
        runs.into_iter()
            .map(|r| r.id.to_string())
            .collect::<Vec<_>>()
    };
    let all = store.runs(&RunFilter::default()).await.unwrap();
    assert_eq!(ids(all), ["r2", "r1", "r0"]);
    let running = RunFilter {
        status: Some(RunStatus::Running),
        ..RunFilter::default()
    };
    assert_eq!(ids(store.runs(&running).await.unwrap()), ["r2", "r0"]);
    let billing = RunFilter {
        workflow: Some("billing".into()),
        ..RunFilter::default()
    };
    assert_eq!(ids(store.runs(&billing).await.unwrap()), ["r1"]);
    let one = RunFilter {
        limit: Some(1),
        ..RunFilter::default()
    };
    assert_eq!(ids(store.runs(&one).await.unwrap()), ["r2"]);
}

fn queued(id: &str, priority: i32, key: Option<&str>, at: u64) -> RunRecord {
    let mut r = run(id, RunStatus::Queued, at);
    r.app_version = Some("1.0.0".into());
    r.queue = Some(QueuePlace {
        name: "q".into(),
        priority,
        not_before_ms: None,
        concurrency_key: key.map(str::to_owned),
    });
    r
}

async fn queued_runs_are_taken_in_priority_order_within_the_queue_limits(store: Arc<dyn Store>) {
    create(&store, queued("low", 5, None, NOW)).await;
    create(&store, queued("first", 0, Some("acme"), NOW + 1)).await;
    create(&store, queued("second", 0, Some("acme"), NOW + 2)).await;
    create(&store, queued("third", 0, Some("beta"), NOW + 3)).await;
    let mut other = queued("elsewhere", -9, None, NOW);
    other.workflow = "unknown".into();
    create(&store, other).await;
    let take = |max: usize| QueueTake {
        queues: vec![QueueLimits {
            name: "q".into(),
            take: max,
            concurrency: Some(3),
            per_key: Some(1),
            rate: None,
        }],
        max,
        workflows: vec!["sync".into()],
        owner: Some(remote_owner()),
        lease: Duration::from_secs(60),
        now_ms: NOW + 10,
        app_version: Some("2.0.0".into()),
    };
    let standing = store
        .queue_standing(&RunId::from("low"), None)
        .await
        .unwrap()
        .unwrap();
    // Every queued run of the queue ahead of it, whatever its workflow
    assert_eq!(standing.ahead, 4);
    let taken = store.take_queued(take(10)).await.unwrap();
    let ids: Vec<&str> = taken.iter().map(|t| t.run.id.as_str()).collect();
    // "second" waits for "first" (one per key); "low" fills the third slot
    assert_eq!(ids, ["first", "third", "low"]);
    for t in &taken {
        assert_eq!(t.claim.token, 2);
        assert_eq!(t.run.status, RunStatus::Running);
        assert_eq!(t.run.executions, 1);
        // The taking worker's version replaces the enqueuer's
        assert_eq!(t.run.app_version.as_deref(), Some("2.0.0"));
        let stored = store.run(&t.run.id).await.unwrap().unwrap();
        assert_eq!(stored, t.run);
    }
    // The queue is full: nothing more until a run ends
    assert!(store.take_queued(take(10)).await.unwrap().is_empty());
    let standing = store
        .queue_standing(&RunId::from("second"), None)
        .await
        .unwrap()
        .unwrap();
    // "elsewhere" (another workflow, priority -9) is ahead of it
    assert_eq!(
        (
            standing.ahead,
            standing.in_flight,
            standing.in_flight_with_key
        ),
        (1, 3, 1)
    );
    let mut done = taken[0].run.clone();
    done.status = RunStatus::Succeeded;
    done.owner = None;
    store
        .commit(vec![
            Write::CheckClaim(taken[0].claim.clone()),
            Write::PutRun(done),
        ])
        .await
        .unwrap();
    let next = store.take_queued(take(10)).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].run.id.as_str(), "second");
    assert_eq!(
        store
            .run(&RunId::from("elsewhere"))
            .await
            .unwrap()
            .unwrap()
            .status,
        RunStatus::Queued,
        "a workflow the worker cannot run stays queued"
    );
}

async fn due_runs_and_held_runs_come_from_the_records(store: Arc<dyn Store>) {
    assert_eq!(store.next_due().await.unwrap(), None);
    let mut sleeping = run("sleeping", RunStatus::Sleeping, NOW);
    sleeping.wake_at_ms = Some(NOW + 500);
    create(&store, sleeping).await;
    let mut delayed = queued("delayed", 0, None, NOW);
    delayed.wake_at_ms = Some(NOW + 100);
    create(&store, delayed).await;
    let mut held = run("held", RunStatus::Running, NOW);
    held.owner = Some(remote_owner());
    held.wake_at_ms = Some(NOW + 1);
    create(&store, held).await;
    create(&store, run("free", RunStatus::Running, NOW)).await;

    assert_eq!(store.next_due().await.unwrap(), Some(NOW + 100));
    let due = |now, limit| {
        let store = store.clone();
        async move {
            store
                .due(now, limit)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.id.to_string())
                .collect::<Vec<_>>()
        }
    };
    assert!(due(NOW + 99, 10).await.is_empty());
    assert_eq!(due(NOW + 100, 10).await, ["delayed"]);
    assert_eq!(due(NOW + 1000, 10).await, ["delayed", "sleeping"]);
    assert_eq!(due(NOW + 1000, 1).await, ["delayed"]);
    // A delayed queued run is not taken before it is due
    let take = QueueTake {
        queues: vec![QueueLimits {
            name: "q".into(),
            take: 5,
            ..QueueLimits::default()
        }],
        max: 5,
        workflows: vec!["sync".into()],
        owner: None,
        lease: Duration::from_secs(1),
        now_ms: NOW + 1000,
        app_version: None,
    };
    assert!(store.take_queued(take).await.unwrap().is_empty());
    let held: Vec<String> = store
        .held_runs(10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id.to_string())
        .collect();
    assert_eq!(held, ["held"]);
}

async fn prune_deletes_only_selected_finished_runs_with_their_steps(store: Arc<dyn Store>) {
    for (id, status, updated) in [
        ("old-ok", RunStatus::Succeeded, NOW),
        ("old-failed", RunStatus::Failed, NOW),
        ("new-ok", RunStatus::Succeeded, NOW + 10_000),
        ("old-running", RunStatus::Running, NOW),
    ] {
        let claim = create(&store, run(id, status, updated)).await;
        store
            .commit(vec![
                Write::CheckClaim(claim),
                Write::PutStep(step(id, "a", "1", json!(1))),
                Write::PutStep(step(id, "b", "1", json!(2))),
                Write::RequestCancel(RunId::from(id)),
            ])
            .await
            .unwrap();
    }
    let request = PruneRequest {
        updated_until_ms: vec![
            (RunStatus::Succeeded, NOW + 1),
            (RunStatus::Failed, NOW + 1),
            (RunStatus::Running, NOW + 1),
        ],
        dry_run: true,
        alerts_until_ms: None,
    };
    let counted = store.prune(&request).await.unwrap();
    assert_eq!(
        (
            counted.runs,
            counted.steps,
            counted.succeeded,
            counted.failed
        ),
        (2, 4, 1, 1)
    );
    assert_eq!(store.runs(&RunFilter::default()).await.unwrap().len(), 4);
    let pruned = store
        .prune(&PruneRequest {
            dry_run: false,
            ..request
        })
        .await
        .unwrap();
    assert_eq!(pruned, counted);
    let left: Vec<String> = store
        .runs(&RunFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id.to_string())
        .collect();
    assert_eq!(left.len(), 2);
    assert!(left.contains(&"new-ok".to_owned()) && left.contains(&"old-running".to_owned()));
    assert!(store
        .steps(&RunId::from("old-ok"))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.steps(&RunId::from("new-ok")).await.unwrap().len(), 2);
    let asked = [RunId::from("old-ok"), RunId::from("new-ok")];
    assert_eq!(
        store.cancel_requests(&asked).await.unwrap(),
        [RunId::from("new-ok")]
    );
    // The id is free again: a new run with it starts its tokens again
    let again = create(&store, run("old-ok", RunStatus::Running, NOW + 20_000)).await;
    assert_eq!(again.token, 1);
}

async fn a_schedule_tick_creates_its_run_once(store: Arc<dyn Store>) {
    let tick = NOW;
    let fire = |advance| {
        let id = flow_runtime::store::tick_run_id("nightly", tick);
        let mut r = run(id.as_str(), RunStatus::Queued, NOW);
        r.queue = Some(QueuePlace {
            name: "default".into(),
            priority: 0,
            not_before_ms: None,
            concurrency_key: None,
        });
        ScheduleWrite::Fire(ScheduleFire {
            name: "nightly".into(),
            advance,
            skipped: vec![],
            runs: vec![(tick, r)],
            overlap: Overlap::Skip,
            now_ms: NOW,
        })
    };
    // Two workers fire the same pass at once: one creates the run, the other is stale
    let (a, b) = futures::join!(
        store.schedule(fire(Some((None, tick)))),
        store.schedule(fire(Some((None, tick))))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let created = a.created.len() + b.created.len();
    assert_eq!(created, 1, "{a:?} {b:?}");
    assert!(a.stale != b.stale);
    // A backfill of the same tick finds the run
    let again = store.schedule(fire(None)).await.unwrap();
    assert_eq!(again.created.len(), 0);
    assert_eq!(again.existing.len() + again.skipped_overlap.len(), 1);
    let records = store.schedules().await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].through_ms, tick);
    let runs = store.runs(&RunFilter::default()).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, RunStatus::Queued);
}

fn ended(run: &str, outcome: RunEndOutcome, at: u64) -> Write {
    Write::RunEnded(RunEnd {
        workflow: "sync".into(),
        run_id: RunId::from(run),
        outcome,
        error: Some("boom".into()),
        trace_id: "t".into(),
        alert_after: Some(3),
        cooldown_ms: 0,
        sinks: vec!["log".into()],
        at_ms: at,
    })
}

async fn consecutive_failures_open_one_alert_and_a_success_resolves_it(store: Arc<dyn Store>) {
    // Four failures in two batches of concurrent commits: one alert, four failures counted
    let first = ["a", "b"].map(|r| store.commit(vec![ended(r, RunEndOutcome::Failed, NOW)]));
    let [x, y] = first;
    let (x, y) = futures::join!(x, y);
    x.unwrap();
    y.unwrap();
    for r in ["c", "d"] {
        store
            .commit(vec![ended(r, RunEndOutcome::Failed, NOW + 1)])
            .await
            .unwrap();
    }
    let alerts = store.alerts(&AlertFilter::default()).await.unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].failures, 4);
    let pending = AlertFilter {
        pending: true,
        ..AlertFilter::default()
    };
    assert_eq!(store.alerts(&pending).await.unwrap().len(), 1);
    store
        .commit(vec![ended("e", RunEndOutcome::Succeeded, NOW + 2)])
        .await
        .unwrap();
    let alerts = store.alerts(&AlertFilter::default()).await.unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].state, flow_runtime::store::AlertState::Resolved);
}

fn run_alert(run: &str, at: u64) -> Write {
    Write::RunAlert(RunAlert {
        kind: AlertKind::MaxDuration,
        workflow: "sync".into(),
        run_id: RunId::from(run),
        trace_id: "t".into(),
        error: Some("over its max duration".into()),
        detail: None,
        sinks: vec!["log".into()],
        at_ms: at,
    })
}

/// The ids of `runs`, sorted.
fn ids(runs: &[RunRecord]) -> Vec<String> {
    let mut ids: Vec<String> = runs.iter().map(|r| r.id.to_string()).collect();
    ids.sort();
    ids
}

/// Cancels `id` as an operator does when nobody executes the run.
fn cancel() -> ClaimRequest {
    ClaimRequest {
        owner: None,
        lease: Duration::ZERO,
        take: Box::new(|run: &mut RunRecord| {
            run.status = RunStatus::Cancelled;
            true
        }),
    }
}

/// Runs of `sync` past a 100 ms max duration at `NOW + 100`: one held by this process, one
/// queued; not overdue: a younger queued run, a finished one, and one of another workflow.
async fn overdue_fixture(store: &Arc<dyn Store>) {
    let mut late = run("late", RunStatus::Running, NOW);
    late.owner = Some(owner_of(std::process::id()));
    let mut waiting = queued("waiting", 0, None, NOW);
    waiting.workflow = "sync".into();
    let mut young = queued("young", 0, None, NOW + 50);
    young.workflow = "sync".into();
    let mut other = queued("other", 0, None, NOW);
    other.workflow = "report".into();
    let done = run("done", RunStatus::Succeeded, NOW);
    for record in [late, waiting, young, other, done] {
        store.commit(vec![Write::PutRun(record)]).await.unwrap();
    }
}

async fn overdue_runs_are_found_and_alerted_once_and_an_end_or_a_cancel_resolves_them(
    store: Arc<dyn Store>,
) {
    overdue_fixture(&store).await;
    let limits = vec![("sync".to_owned(), 100)];
    let early = store.overdue_runs(&limits, NOW + 99, 10).await.unwrap();
    assert!(early.runs.is_empty(), "{:?}", ids(&early.runs));
    assert_eq!(
        early.next_deadline_ms,
        Some(NOW + 100),
        "when to look again"
    );
    let due = store.overdue_runs(&limits, NOW + 100, 10).await.unwrap();
    assert_eq!(ids(&due.runs), ["late", "waiting"]);
    assert_eq!(
        due.next_deadline_ms,
        Some(NOW + 150),
        "the young run's deadline"
    );
    let cut = store.overdue_runs(&limits, NOW + 100, 1).await.unwrap();
    assert_eq!(cut.runs.len(), 1);
    assert_eq!(
        cut.next_deadline_ms,
        Some(NOW + 100),
        "cut short: look again now"
    );
    assert!(store
        .overdue_runs(&[], NOW + 100, 10)
        .await
        .unwrap()
        .runs
        .is_empty());

    // Three commits alert about the same run at once, one about a finished run: one alert
    let (a, b, c) = futures::join!(
        store.commit(vec![
            run_alert("late", NOW + 100),
            run_alert("done", NOW + 100)
        ]),
        store.commit(vec![run_alert("late", NOW + 101)]),
        store.commit(vec![run_alert("late", NOW + 102)]),
    );
    a.unwrap();
    b.unwrap();
    c.unwrap();
    store
        .commit(vec![run_alert("late", NOW + 103)])
        .await
        .unwrap();
    let alerts = store.alerts(&AlertFilter::default()).await.unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].kind, AlertKind::MaxDuration);
    assert_eq!(alerts[0].run_ids, [RunId::from("late")]);
    assert_eq!(alerts[0].state, AlertState::Open);
    let later = store.overdue_runs(&limits, NOW + 200, 10).await.unwrap();
    assert_eq!(
        ids(&later.runs),
        ["waiting", "young"],
        "an alerted run is not overdue again"
    );

    // The queued run's alert resolves when the run fails (it is over)
    store
        .commit(vec![run_alert("waiting", NOW + 200)])
        .await
        .unwrap();
    let mut failed = queued("waiting", 0, None, NOW);
    failed.workflow = "sync".into();
    failed.status = RunStatus::Failed;
    store
        .commit(vec![
            Write::PutRun(failed),
            ended("waiting", RunEndOutcome::Failed, NOW + 300),
        ])
        .await
        .unwrap();
    let alerts = store.alerts(&AlertFilter::default()).await.unwrap();
    let waiting = alerts
        .iter()
        .find(|a| a.run_ids == [RunId::from("waiting")])
        .unwrap();
    assert_eq!(waiting.state, AlertState::Resolved);
    assert_eq!(waiting.resolved_by, Some(RunId::from("waiting")));

    // An operator cancels the held run while nobody executes it: the claim resolves its alert
    let claimed = store.claim(&RunId::from("late"), cancel()).await.unwrap();
    assert!(
        matches!(claimed, ClaimOutcome::Claimed { .. }),
        "{claimed:?}"
    );
    let alerts = store.alerts(&AlertFilter::default()).await.unwrap();
    let late = alerts
        .iter()
        .find(|a| a.run_ids == [RunId::from("late")])
        .unwrap();
    assert_eq!(late.state, AlertState::Resolved);
    assert_eq!(late.resolved_by, Some(RunId::from("late")));
    assert_eq!(late.deliveries.len(), 2, "fired and resolved, to the log");
    // Nothing of `sync` is watched any more but the young run
    let end = store.overdue_runs(&limits, NOW + 400, 10).await.unwrap();
    assert_eq!(ids(&end.runs), ["young"]);
}

async fn prune_deletes_delivered_alerts_of_gone_runs_and_frees_the_run_for_a_new_alert(
    store: Arc<dyn Store>,
) {
    overdue_fixture(&store).await;
    store
        .commit(vec![run_alert("late", NOW + 100)])
        .await
        .unwrap();
    let claimed = store.claim(&RunId::from("late"), cancel()).await.unwrap();
    assert!(matches!(claimed, ClaimOutcome::Claimed { .. }));
    let alert = store
        .alerts(&AlertFilter::default())
        .await
        .unwrap()
        .remove(0);
    let far = flow_runtime::store::now_ms() + 60_000;
    let request = PruneRequest {
        updated_until_ms: vec![(RunStatus::Cancelled, far)],
        alerts_until_ms: Some(far),
        dry_run: true,
    };
    // Its notices are pending: the run may go, the alert stays
    let counted = store.prune(&request).await.unwrap();
    assert_eq!((counted.runs, counted.cancelled, counted.alerts), (1, 1, 0));
    for index in 0..2 {
        store
            .commit(vec![Write::AlertDelivery {
                alert_id: alert.id.clone(),
                index,
                outcome: DeliveryOutcome::Delivered,
            }])
            .await
            .unwrap();
    }
    // Delivered and resolved, but created after an earlier cutoff: kept
    let early = PruneRequest {
        alerts_until_ms: Some(NOW),
        ..request.clone()
    };
    assert_eq!(store.prune(&early).await.unwrap().alerts, 0);
    let counted = store.prune(&request).await.unwrap();
    assert_eq!((counted.runs, counted.alerts), (1, 1));
    assert_eq!(
        store.alerts(&AlertFilter::default()).await.unwrap().len(),
        1
    );
    let pruned = store
        .prune(&PruneRequest {
            dry_run: false,
            ..request.clone()
        })
        .await
        .unwrap();
    assert_eq!(pruned, counted);
    assert!(store
        .alerts(&AlertFilter::default())
        .await
        .unwrap()
        .is_empty());
    assert!(store.run(&RunId::from("late")).await.unwrap().is_none());
    // A new run under the id may alert again: the old run's entry went with it
    let mut again = run("late", RunStatus::Running, NOW);
    again.owner = Some(owner_of(std::process::id()));
    store.commit(vec![Write::PutRun(again)]).await.unwrap();
    store
        .commit(vec![run_alert("late", NOW + 100)])
        .await
        .unwrap();
    let alerts = store.alerts(&AlertFilter::default()).await.unwrap();
    assert_eq!(alerts.len(), 1);
    assert_ne!(alerts[0].id, alert.id);
}

/// A worker on another machine: this process cannot check it, only its lease holds its runs.
fn elsewhere(pid: u32) -> Owner {
    Owner {
        machine_id: "another-machine".into(),
        pid,
        start_ticks: 1,
        boot_id: "another-boot".into(),
    }
}

fn claim_for(owner: Owner, lease: Duration) -> ClaimRequest {
    ClaimRequest {
        owner: Some(owner),
        lease,
        take: Box::new(|run: &mut RunRecord| {
            run.executions += 1;
            true
        }),
    }
}

async fn a_lease_is_renewed_only_by_the_latest_claim_and_holds_the_run_against_others(
    store: Arc<dyn Store>,
) {
    let id = RunId::from("r");
    create(&store, run("r", RunStatus::Running, NOW)).await;
    // Worker A takes the run with a lease that is already over
    let a = match store
        .claim(&id, claim_for(elsewhere(10), Duration::ZERO))
        .await
        .unwrap()
    {
        ClaimOutcome::Claimed { claim, .. } => claim,
        other => panic!("{other:?}"),
    };
    let until = flow_runtime::store::now_ms() + 60_000;
    store.renew_lease(a.clone(), until).await.unwrap();
    let stored = store.run(&id).await.unwrap().unwrap();
    assert_eq!(stored.lease_expires_at_ms, Some(until));
    assert_eq!((stored.status, stored.executions), (RunStatus::Running, 1));
    assert_eq!(stored.owner, Some(elsewhere(10)));
    // A shorter renewal does not cut the lease
    store.renew_lease(a.clone(), until - 1_000).await.unwrap();
    let stored = store.run(&id).await.unwrap().unwrap();
    assert_eq!(stored.lease_expires_at_ms, Some(until));
    // The renewed lease holds the run against worker C
    let c = store
        .claim(&id, claim_for(elsewhere(30), Duration::from_secs(30)))
        .await
        .unwrap();
    assert!(matches!(c, ClaimOutcome::Held(_)), "{c:?}");

    // A pauses past its lease; worker B takes the run over
    let mut expired = stored.clone();
    expired.lease_expires_at_ms = Some(1);
    store.commit(vec![Write::PutRun(expired)]).await.unwrap();
    let b = match store
        .claim(&id, claim_for(elsewhere(20), Duration::from_secs(30)))
        .await
        .unwrap()
    {
        ClaimOutcome::Claimed { claim, .. } => claim,
        other => panic!("{other:?}"),
    };
    assert!(b.token > a.token);
    let taken = store.run(&id).await.unwrap().unwrap();
    // A wakes up and renews: refused, and B's lease is left as it is
    let refused = store.renew_lease(a, until + 60_000).await;
    assert!(
        matches!(refused, Err(StoreError::ClaimLost { ref run_id }) if run_id == &id),
        "{refused:?}"
    );
    let stored = store.run(&id).await.unwrap().unwrap();
    assert_eq!(stored, taken);
    assert_eq!(stored.owner, Some(elsewhere(20)));
    store.renew_lease(b.clone(), until + 1).await.unwrap();
    let stored = store.run(&id).await.unwrap().unwrap();
    assert_eq!(stored.lease_expires_at_ms, Some(until + 1));

    // A renewal in the commit after the run's end changes nothing
    let mut done = stored.clone();
    done.status = RunStatus::Succeeded;
    done.owner = None;
    done.lease_expires_at_ms = None;
    store
        .commit(vec![
            Write::CheckClaim(b.clone()),
            Write::PutRun(done.clone()),
        ])
        .await
        .unwrap();
    store.renew_lease(b, until + 2).await.unwrap();
    assert_eq!(store.run(&id).await.unwrap().unwrap(), done);
}

// ---- PostgreSQL only ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_processes_alerting_about_one_overdue_run_open_one_alert() {
    let fixture = Fixture::postgres().await;
    let options = || PgOptions {
        schema: fixture.schema.clone().unwrap(),
        pool_size: 4,
        password: None,
        ca_file: None,
    };
    // Two handles, as two worker processes have: their writers batch apart
    let one = PgStore::connect_with(&postgres_url(), options())
        .await
        .unwrap();
    let two = PgStore::connect_with(&postgres_url(), options())
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..20 {
        let id = format!("late{i}");
        let mut late = run(&id, RunStatus::Running, NOW);
        late.owner = Some(owner_of(std::process::id()));
        one.commit(vec![Write::PutRun(late)]).await.unwrap();
        ids.push(id);
    }
    fn alert_all<'a>(
        store: &'a PgStore,
        ids: &[String],
    ) -> futures::future::JoinAll<flow_runtime::store::BoxFuture<'a, Result<(), StoreError>>> {
        let writes: Vec<_> = ids
            .iter()
            .map(|id| store.commit(vec![run_alert(id, NOW + 100)]))
            .collect();
        futures::future::join_all(writes)
    }
    let (a, b) = futures::join!(alert_all(&one, &ids), alert_all(&two, &ids));
    for result in a.into_iter().chain(b) {
        result.unwrap();
    }
    let alerts = two.alerts(&AlertFilter::default()).await.unwrap();
    assert_eq!(alerts.len(), 20, "one alert per run");
    let limits = vec![("sync".to_owned(), 100)];
    assert!(one
        .overdue_runs(&limits, NOW + 100, 100)
        .await
        .unwrap()
        .runs
        .is_empty());
    drop((one, two));
    fixture.finish().await;
}

#[tokio::test]
async fn postgres_refuses_a_schema_written_by_a_newer_flow() {
    let fixture = Fixture::postgres().await;
    let schema = fixture.schema.clone().unwrap();
    sql(&format!(
        "UPDATE \"{schema}\".meta SET value = '999' WHERE key = 'schema_version'"
    ))
    .await;
    let options = PgOptions {
        schema: schema.clone(),
        pool_size: 2,
        password: None,
        ca_file: None,
    };
    let err = PgStore::connect_with(&postgres_url(), options)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, StoreError::NewerVersion { found: 999, .. }),
        "{message}"
    );
    assert!(message.contains("upgrade flow"), "{message}");
    assert!(message.contains(&schema), "{message}");
    fixture.finish().await;
}

#[tokio::test]
async fn postgres_refuses_a_schema_it_did_not_create() {
    let schema = format!("flow_test_foreign_{}", std::process::id());
    drop_schema(&schema).await;
    sql(&format!(
        "CREATE SCHEMA \"{schema}\"; CREATE TABLE \"{schema}\".orders (id int)"
    ))
    .await;
    let options = PgOptions {
        schema: schema.clone(),
        pool_size: 2,
        password: None,
        ca_file: None,
    };
    let err = PgStore::connect_with(&postgres_url(), options)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Foreign { .. }), "{err}");
    assert!(err.to_string().contains("`orders`"), "{err}");
    drop_schema(&schema).await;
}

#[tokio::test]
async fn postgres_unreachable_is_a_retryable_error_naming_the_server() {
    // Nothing listens on port 1
    let err = PgStore::connect("postgres://postgres:secret-pw@127.0.0.1:1/test")
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let message = err.to_string();
    assert!(message.contains("127.0.0.1:1/test"), "{message}");
    assert!(
        !message.contains("secret-pw"),
        "the password is never shown: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_group_commit_writes_many_runs_checkpoints_in_few_transactions() {
    let fixture = Fixture::postgres().await;
    let options = PgOptions {
        schema: fixture.schema.clone().unwrap(),
        pool_size: 4,
        password: None,
        ca_file: None,
    };
    let store = PgStore::connect_with(&postgres_url(), options)
        .await
        .unwrap();
    let mut claims = Vec::new();
    for i in 0..50 {
        let record = run(&format!("r{i}"), RunStatus::Running, NOW);
        match store.create_run(record).await.unwrap() {
            CreateRun::Created(claim) => claims.push(claim),
            CreateRun::Exists(run) => panic!("{} exists", run.id),
        }
    }
    let before = store.stats();
    let commits = claims.iter().map(|claim| {
        let id = claim.run_id.to_string();
        store.commit(vec![
            Write::CheckClaim(claim.clone()),
            Write::PutStep(step(&id, "a", "1", json!(id))),
        ])
    });
    for result in futures::future::join_all(commits).await {
        result.unwrap();
    }
    let after = store.stats();
    assert_eq!(after.writes - before.writes, 50);
    let transactions = after.commits - before.commits;
    assert!(
        transactions < 50,
        "50 concurrent commits took {transactions} transactions"
    );
    for claim in &claims {
        let steps = store.steps(&claim.run_id).await.unwrap();
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].output, Some(json!(claim.run_id.as_str())));
    }
    drop(store);
    fixture.finish().await;
}

/// Deferred checkpoints (repeat-safe steps) go to PostgreSQL as asynchronous commits: a batch of
/// deferred commits only is counted apart from the durable ones, a durable request makes its
/// batch durable, and what either wrote is read back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_deferred_commits_are_counted_apart_and_written() {
    let fixture = Fixture::postgres().await;
    let store = &fixture.store;
    let CreateRun::Created(claim) = store
        .create_run(run("deferred", RunStatus::Running, NOW))
        .await
        .unwrap()
    else {
        panic!("the run exists")
    };
    let pg = PgStore::connect_with(
        &postgres_url(),
        PgOptions {
            schema: fixture.schema.clone().unwrap(),
            pool_size: 2,
            ..PgOptions::default()
        },
    )
    .await
    .unwrap();
    let before = pg.stats();
    for (i, key) in ["a", "b", "c"].into_iter().enumerate() {
        pg.commit_deferred(vec![
            Write::CheckClaim(claim.clone()),
            Write::PutStep(step("deferred", key, "1", json!(i))),
        ])
        .await
        .unwrap();
    }
    pg.commit(vec![
        Write::CheckClaim(claim.clone()),
        Write::PutStep(step("deferred", "d", "1", json!(3))),
    ])
    .await
    .unwrap();
    let after = pg.stats();
    assert_eq!(after.deferred_commits - before.deferred_commits, 3);
    assert_eq!(after.commits - before.commits, 1);
    let outputs: Vec<_> = store
        .steps(&"deferred".into())
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.output)
        .collect();
    assert_eq!(
        outputs,
        vec![
            Some(json!(0)),
            Some(json!(1)),
            Some(json!(2)),
            Some(json!(3))
        ]
    );
    drop(pg);
    fixture.finish().await;
}

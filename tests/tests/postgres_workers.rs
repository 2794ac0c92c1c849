//! Worker processes on one PostgreSQL schema under faults (issue 11), each as a machine of its
//! own (`FLOW_MACHINE_ID`), executing `lease_child`'s workflows whose steps append `start` and
//! `end` lines (run, step, attempt, pid) to one effect log:
//!
//! - the soak: three workers, 500 queued runs of 10 steps, a random worker SIGKILLed and
//!   restarted every 2 s: every run succeeds, every step's checkpoint is stored once, a step
//!   runs again only when the worker that ran it was killed, and no run is ever executed by two
//!   workers at once;
//! - every session of the workers ended with `pg_terminate_backend` in the middle of runs of
//!   at-most-once steps: the workers reconnect and finish, and since a checkpoint whose
//!   connection died is written again (or found committed), no step is left in doubt and none
//!   runs twice;
//! - `LISTEN/NOTIFY`: a worker polling every 30 s starts a run enqueued by another process, and
//!   a delayed run when it comes due, within seconds.

use flow_runtime::store::{RunStatus, StepStatus, Store};
use flow_tests::pg::{block_on, number, Cluster};
use flow_tests::wait_until;
use std::collections::{BTreeMap, HashSet};
use std::process::Child;
use std::time::{Duration, Instant};

fn cluster(name: &str, lease_ms: u64) -> Cluster {
    Cluster::new(env!("CARGO_BIN_EXE_lease_child"), name, lease_ms)
}

/// One effect line.
#[derive(Clone, Debug)]
struct Effect {
    start: bool,
    run: String,
    step: u32,
    pid: u32,
}

fn effects(cluster: &Cluster) -> Vec<Effect> {
    cluster
        .effects()
        .iter()
        .map(|line| {
            let mut fields = line.split(' ');
            let kind = fields.next().unwrap();
            let mut value = |name: &str| {
                let field = fields.next().unwrap();
                field
                    .strip_prefix(name)
                    .unwrap_or_else(|| panic!("{line}"))
                    .to_owned()
            };
            let run = value("run=");
            let step = value("step=").parse().unwrap();
            let _attempt = value("attempt=");
            let pid = value("pid=").parse().unwrap();
            Effect {
                start: kind == "start",
                run,
                step,
                pid,
            }
        })
        .collect()
}

fn ids(prefix: &str, n: u32) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:04}")).collect()
}

/// Every run's executors in the order the log shows them must follow each other: once another
/// worker wrote a line for a run, the earlier one never writes for it again.
fn assert_one_executor_at_a_time(effects: &[Effect]) {
    let mut executors: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for e in effects {
        let seen = executors.entry(&e.run).or_default();
        if seen.last() != Some(&e.pid) {
            assert!(
                !seen.contains(&e.pid),
                "run {} went back to worker {} after {:?}: two workers executed it at once",
                e.run,
                e.pid,
                seen
            );
            seen.push(e.pid);
        }
    }
}

/// The starts of each (run, step), in log order, by pid.
fn starts(effects: &[Effect]) -> BTreeMap<(String, u32), Vec<u32>> {
    let mut starts: BTreeMap<(String, u32), Vec<u32>> = BTreeMap::new();
    for e in effects.iter().filter(|e| e.start) {
        starts
            .entry((e.run.clone(), e.step))
            .or_default()
            .push(e.pid);
    }
    starts
}

/// Checks every run of `ids` succeeded with `steps` checkpoints, each done.
fn assert_all_succeeded(cluster: &Cluster, ids: &[String], steps: usize) {
    let runs = cluster.finished_runs(ids, 120);
    let failed: Vec<_> = runs
        .iter()
        .filter(|run| run.status != RunStatus::Succeeded)
        .map(|run| (run.id.to_string(), run.status, run.error.clone()))
        .collect();
    assert!(failed.is_empty(), "runs that did not succeed: {failed:#?}");
    block_on(async {
        let store = cluster.store().await;
        for id in ids {
            let stored = store.steps(&id.as_str().into()).await.unwrap();
            assert_eq!(stored.len(), steps, "run {id}: {stored:#?}");
            assert!(
                stored.iter().all(|s| s.status == StepStatus::Succeeded),
                "run {id}: a checkpoint is not done: {stored:#?}"
            );
        }
    });
}

#[test]
fn three_workers_killed_at_random_finish_500_runs_with_every_effect_accounted_for() {
    const RUNS: u32 = 500;
    const STEPS: u32 = 10;
    const CONCURRENCY: usize = 8;
    let cluster = cluster("soak", 5_000).env("LEASE_CONCURRENCY", &CONCURRENCY.to_string());
    cluster.call(&[
        "enqueue-many",
        "soak",
        "soak",
        &RUNS.to_string(),
        &STEPS.to_string(),
        "50",
    ]);
    let ids = ids("soak", RUNS);
    let machines = ["machine-a", "machine-b", "machine-c"];
    let mut workers: Vec<Child> = machines.iter().map(|m| cluster.worker(m)).collect();
    let mut killed: HashSet<u32> = HashSet::new();
    let started = Instant::now();
    let finished = || {
        block_on(number(&format!(
            "SELECT count(*) FROM \"{}\".runs WHERE status = 'succeeded'",
            cluster.schema
        )))
    };
    // A worker killed every 2 s and started again on its machine, while runs remain
    while finished() < i64::from(RUNS) && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(1_500 + fastrand::u64(0..1_000)));
        let slot = fastrand::usize(0..workers.len());
        let victim = &mut workers[slot];
        victim.kill().unwrap();
        victim.wait().unwrap();
        killed.insert(victim.id());
        workers[slot] = cluster.worker(machines[slot]);
    }
    assert_all_succeeded(&cluster, &ids, STEPS as usize);
    let took = started.elapsed();
    let reports = cluster.stop(workers);
    assert!(
        killed.len() >= 3,
        "the soak killed {} workers in {took:?}; it must kill several to test anything",
        killed.len()
    );

    let effects = effects(&cluster);
    assert_one_executor_at_a_time(&effects);
    let starts = starts(&effects);
    let mut repeated = 0;
    for id in &ids {
        for step in 0..STEPS {
            let pids = starts
                .get(&(id.clone(), step))
                .unwrap_or_else(|| panic!("{id} step {step} never ran"));
            // A step runs again only if the worker that ran it was killed before its
            // checkpoint was stored: every start but the last is a killed worker's
            let (last, earlier) = pids.split_last().unwrap();
            assert!(
                earlier.iter().all(|pid| killed.contains(pid)),
                "{id} step {step} ran again though its worker was not killed: {pids:?}"
            );
            assert!(
                effects
                    .iter()
                    .any(|e| !e.start && e.run == *id && e.step == step && e.pid == *last),
                "{id} step {step}: its last execution never ended"
            );
            repeated += earlier.len();
        }
    }
    // Each kill repeats at most the steps its worker had in flight
    assert!(
        repeated <= killed.len() * CONCURRENCY,
        "{repeated} steps ran again after {} kills",
        killed.len()
    );
    eprintln!(
        "soak: {RUNS} runs in {took:?}, {} workers killed, {repeated} steps ran again; reports of the last workers: {reports:?}",
        killed.len()
    );
}

#[test]
fn workers_whose_sessions_are_terminated_reconnect_and_finish_without_a_step_in_doubt() {
    const RUNS: u32 = 100;
    const STEPS: u32 = 6;
    let app = format!("flow_test_kill_{}", std::process::id());
    let mut cluster = cluster("terminate", 5_000).env("LEASE_CONCURRENCY", "8");
    cluster.url = format!("{}?application_name={app}", cluster.url);
    cluster.call(&[
        "enqueue-many",
        "careful",
        "careful",
        &RUNS.to_string(),
        &STEPS.to_string(),
        "40",
    ]);
    let ids = ids("careful", RUNS);
    let workers = vec![cluster.worker("machine-a"), cluster.worker("machine-b")];
    let terminate = format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '{app}'"
    );
    // Every session of both workers (pool, writer, LISTEN), ended again and again while
    // steps are in flight
    wait_until(60, "the first steps", || cluster.effects().len() > 10);
    let mut rounds = 0;
    let mut terminated = 0;
    let started = Instant::now();
    while rounds < 6 && started.elapsed() < Duration::from_secs(60) {
        let ended = block_on(number(&terminate));
        if ended > 0 {
            rounds += 1;
            terminated += ended;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_all_succeeded(&cluster, &ids, STEPS as usize);
    let reports = cluster.stop(workers);
    assert_eq!(rounds, 6, "sessions were terminated in {rounds} rounds");

    let effects = effects(&cluster);
    assert_one_executor_at_a_time(&effects);
    for ((run, step), pids) in starts(&effects) {
        assert_eq!(
            pids.len(),
            1,
            "{run} step {step} (at most once) ran {pids:?}"
        );
    }
    let ends = effects.iter().filter(|e| !e.start).count();
    assert_eq!(ends, (RUNS * STEPS) as usize, "every step ended once");
    eprintln!("terminated {terminated} sessions in {rounds} rounds; reports: {reports:?}");
}

/// A worker that polls every 30 s; the test gives each wake-up 10 s, so only the notification
/// can start the runs in time.
#[test]
fn an_idle_worker_wakes_at_once_for_a_run_enqueued_elsewhere_and_for_a_run_coming_due() {
    let cluster = cluster("notify", 2_000).env("LEASE_POLL_MS", "30000");
    // The worker's first look finds one run; after it, it waits for its next poll
    cluster.call(&["enqueue-many", "soak", "first", "1", "1", "10"]);
    let worker = cluster.worker("machine-a");
    cluster.finished_runs(&ids("first", 1), 60);
    std::thread::sleep(Duration::from_millis(500));

    let enqueued = Instant::now();
    cluster.call(&["enqueue-many", "soak", "queued", "1", "1", "10"]);
    let cluster = &cluster;
    let started =
        |run: &'static str| move || effects(cluster).iter().any(|e| e.start && e.run == run);
    wait_until(
        10,
        "the run enqueued elsewhere to start",
        started("queued-0000"),
    );
    let queued_after = enqueued.elapsed();

    // A run delayed by 2 s: the listener wakes the worker when it is due
    let enqueued = Instant::now();
    cluster.call(&["enqueue-many", "soak", "delayed", "1", "1", "10", "2000"]);
    wait_until(10, "the delayed run to start", started("delayed-0000"));
    let delayed_after = enqueued.elapsed();
    cluster.finished_runs(&["queued-0000".into(), "delayed-0000".into()], 60);
    let reports = cluster.stop(vec![worker]);
    assert_eq!(
        reports,
        vec!["started=3 resumed=0 finished=3 interrupted=0".to_owned()]
    );
    assert!(
        delayed_after >= Duration::from_secs(2),
        "the delayed run started before its time: {delayed_after:?}"
    );
    eprintln!("started {queued_after:?} after its enqueue; the delayed one {delayed_after:?}");
}

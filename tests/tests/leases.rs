//! Leases across machines (issue 11): worker processes on one PostgreSQL store, each with its
//! own `FLOW_MACHINE_ID`, so none can look the others' processes up and only the claims' leases
//! keep them apart. A run longer than many leases stays with the worker that renews it; a
//! worker frozen with SIGSTOP past its lease loses the run to another, and once thawed its
//! writes are refused (the fencing token) and it stops that run. Assertions read the effect log
//! the steps append to (`lease_child`), the workers' reports and the store, never timings.

use flow_runtime::store::RunStatus;
use flow_tests::pg::Cluster;
use flow_tests::wait_until;
use std::collections::BTreeMap;
use std::process::{Child, Command};

fn cluster(name: &str, lease_ms: u64) -> Cluster {
    Cluster::new(env!("CARGO_BIN_EXE_lease_child"), name, lease_ms)
}

/// One effect line: what (`start`/`end`), the step and the pid.
fn parse(line: &str) -> (String, String, u32) {
    let (what, pid) = line.rsplit_once(" pid=").unwrap();
    let (kind, step) = what.split_once(' ').unwrap();
    (kind.to_owned(), step.to_owned(), pid.parse().unwrap())
}

/// The pids that started each step, in order.
fn starts(lines: &[String]) -> BTreeMap<String, Vec<u32>> {
    let mut by_step: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (kind, step, pid) in lines.iter().map(|l| parse(l)) {
        if kind == "start" {
            by_step.entry(step).or_default().push(pid);
        }
    }
    by_step
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// A run of 12 steps of 300 ms (3.6 s) under an 800 ms lease, with two workers on two
/// machines from its start to its end: the worker that took it renews its lease, so the other
/// never takes it over. Without renewal the lease ends after the third step and the other
/// worker's recovery (every 100 ms) resumes the run.
#[test]
fn a_run_longer_than_several_leases_stays_with_the_worker_that_renews_it() {
    let cluster = cluster("lease_long", 800);
    cluster.enqueue("long", 12, 300);
    let workers = vec![cluster.worker("machine-a"), cluster.worker("machine-b")];
    let run = cluster.finished_run("long");
    let reports = cluster.stop(workers);

    let effects = cluster.effects();
    let starts = starts(&effects);
    assert_eq!(starts.len(), 12, "{effects:#?}");
    let executor = starts["step-0"][0];
    for (step, pids) in &starts {
        assert_eq!(
            pids,
            &vec![executor],
            "{step} ran once, in the worker that took the run: {effects:#?}"
        );
    }
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(run.executions, 1, "never taken over");
    let mut reports = reports;
    reports.sort();
    assert_eq!(
        reports,
        vec![
            "started=0 resumed=0 finished=0 interrupted=0".to_owned(),
            "started=1 resumed=0 finished=1 interrupted=0".to_owned(),
        ],
        "one worker took the run and finished it; the other did nothing"
    );
}

/// Worker A executes a run of 8 steps of 500 ms under a 1 s lease; worker B (another machine)
/// waits beside it. A is frozen with SIGSTOP in the middle of the run: its lease runs out, B
/// resumes the run from A's checkpoints; A is thawed while B executes: A's writes are refused,
/// so it starts no further step and its execution ends. No step A checkpointed runs again; every
/// later step runs once, in B.
#[test]
fn a_worker_frozen_past_its_lease_loses_the_run_and_its_writes_are_refused() {
    let cluster = cluster("lease_frozen", 1_000);
    cluster.enqueue("frozen", 8, 500);
    let a = cluster.worker("machine-a");
    wait_until(60, "worker A's first step", || {
        cluster
            .effects()
            .iter()
            .any(|l| l.starts_with("start step-0 "))
    });
    let b = cluster.worker("machine-b");
    wait_until(60, "worker A's third step", || {
        cluster
            .effects()
            .iter()
            .any(|l| l.starts_with("start step-2 "))
    });
    signal(&a, "-STOP");
    let frozen = cluster.effects();
    let a_pid = a.id();
    let b_pid = b.id();
    // The step A had started last when it froze (a step starts once the one before is
    // checkpointed, so every step before it is stored)
    let in_flight: u32 = frozen
        .iter()
        .map(|l| parse(l))
        .filter(|(kind, _, pid)| kind == "start" && *pid == a_pid)
        .map(|(_, step, _)| step["step-".len()..].parse::<u32>().unwrap())
        .max()
        .unwrap();
    assert!(
        frozen.iter().all(|l| parse(l).2 == a_pid),
        "B took nothing while A renewed its lease: {frozen:#?}"
    );
    wait_until(60, "worker B taking the run over", || {
        cluster.effects().iter().any(|l| {
            let (kind, _, pid) = parse(l);
            kind == "start" && pid == b_pid
        })
    });
    signal(&a, "-CONT");
    let run = cluster.finished_run("frozen");
    let reports = cluster.stop(vec![a, b]);

    let effects = cluster.effects();
    // A froze with nothing written after `frozen`; what it wrote after the thaw is at most the
    // end of the step it had in flight: no step starts in an execution whose claim is lost
    let a_after: Vec<&String> = effects[frozen.len()..]
        .iter()
        .filter(|l| parse(l).2 == a_pid)
        .collect();
    assert!(
        a_after
            .iter()
            .all(|l| l.starts_with(&format!("end step-{in_flight} "))),
        "A started nothing after its lease was taken: {effects:#?}"
    );
    let starts = starts(&effects);
    for i in 0..8u32 {
        let step = format!("step-{i}");
        let pids = &starts[&step];
        if i < in_flight {
            assert_eq!(
                pids,
                &vec![a_pid],
                "{step} was checkpointed by A: {effects:#?}"
            );
        } else if i == in_flight {
            assert_eq!(pids[0], a_pid, "{effects:#?}");
            assert!(
                pids[1..].iter().all(|p| *p == b_pid) && pids.len() <= 2,
                "{effects:#?}"
            );
        } else {
            assert_eq!(pids, &vec![b_pid], "{step} ran once, in B: {effects:#?}");
        }
    }
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(run.executions, 2, "A's execution, then B's");
    assert_eq!(
        reports,
        vec![
            // A's execution ended (refused, not still holding the run) before it was stopped
            "started=1 resumed=0 finished=1 interrupted=0".to_owned(),
            "started=0 resumed=1 finished=1 interrupted=0".to_owned(),
        ]
    );
}

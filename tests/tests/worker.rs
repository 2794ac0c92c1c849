//! The worker, driven as an operator drives it: `worker_child worker` in a child process,
//! killed with SIGKILL and restarted, stopped with SIGTERM; runs enqueued with `enqueue`. The
//! steps log `start`/`end` lines with run, pid and time (see `src/bin/worker_child.rs`); the
//! tests check that log and the store.

use flow_runtime::store::{QueuePlace, RedbStore, RunFilter, RunId, RunRecord, RunStatus, Store};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_worker_child");

struct Env {
    _dir: tempfile::TempDir,
    store: PathBuf,
    log: PathBuf,
    config: PathBuf,
}

fn env(config: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("flow.toml");
    std::fs::write(&config_path, config).unwrap();
    Env {
        store: dir.path().join("flow.redb"),
        log: dir.path().join("effects.log"),
        config: config_path,
        _dir: dir,
    }
}

impl Env {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(["--store", self.store.to_str().unwrap()])
            .args(["--config", self.config.to_str().unwrap()])
            .args(args)
            .env("WORKER_LOG", &self.log)
            .env("FLOW_LOG_FORMAT", "json")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        cmd
    }

    fn worker(&self, concurrency: u32) -> Worker {
        Worker(
            self.command(&["worker", "--concurrency", &concurrency.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }

    fn enqueue(&self, workflow: &str, input: &str, extra: &[&str]) {
        let out = self
            .command(&["enqueue", workflow, "--input", input])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "enqueue failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn lines(&self) -> Vec<Line> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(Line::parse)
            .collect()
    }

    fn runs(&self) -> Vec<RunRecord> {
        let store = RedbStore::open_read_only(&self.store).unwrap();
        flow_runtime::block_on(store.runs(&RunFilter::default()))
            .unwrap()
            .unwrap()
    }

    fn wait_for_lines(&self, what: &str, min: usize, cond: impl Fn(&Line) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.lines().iter().filter(|l| cond(l)).count() < min {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A worker process, killed when the test ends (also when it fails), so that no worker
/// outlives its test.
struct Worker(Child);

impl std::ops::Deref for Worker {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Worker {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One line of the effect log: `start|end NAME run=ID pid=P ms=T`.
#[derive(Clone, Debug)]
struct Line {
    end: bool,
    name: String,
    run: String,
    pid: u32,
    ms: u64,
}

impl Line {
    fn parse(text: &str) -> Option<Line> {
        let mut words = text.split_whitespace();
        let end = match words.next()? {
            "start" => false,
            "end" => true,
            _ => return None,
        };
        let name = words.next()?.to_owned();
        let mut field = |key: &str| words.next()?.strip_prefix(key).map(str::to_owned);
        Some(Line {
            end,
            name,
            run: field("run=")?,
            pid: field("pid=")?.parse().ok()?,
            ms: field("ms=")?.parse().ok()?,
        })
    }
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the worker did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A queued run as `enqueue` stores it, written straight into the store to seed hundreds
/// of runs quickly.
fn queued(id: &str, workflow: &str, input: serde_json::Value, at: u64) -> RunRecord {
    RunRecord {
        id: RunId::from(id),
        workflow: workflow.to_owned(),
        status: RunStatus::Queued,
        input,
        output: None,
        error: None,
        trace_id: format!("{:032x}", at),
        created_at_ms: at,
        updated_at_ms: at,
        executions: 0,
        attention: None,
        owner: None,
        lease_expires_at_ms: None,
        queue: Some(QueuePlace {
            name: "default".into(),
            priority: 0,
            not_before_ms: None,
            concurrency_key: None,
        }),
        wake_at_ms: None,
        scheduled: None,
        app_version: None,
        traceparent: None,
    }
}

/// 500 queued one-step runs, 100 runs with a durable sleep and 20 slow runs; the worker is
/// killed with SIGKILL every 1 to 3 s and restarted until every run succeeded. Every step
/// ended at least once, a step started again only if a kill landed while it was in flight,
/// no run was executed by two processes at once, and each sleep lasted its duration.
#[test]
fn a_worker_killed_again_and_again_finishes_every_run() {
    let env = env("");
    {
        let store = RedbStore::open(&env.store).unwrap();
        let base = flow_runtime::store::now_ms();
        flow_runtime::block_on(async {
            for i in 0..500u64 {
                let run = queued(
                    &format!("job-{i}"),
                    "job",
                    serde_json::json!({"n": i, "ms": 20}),
                    base + i,
                );
                store.create_run(run).await.unwrap();
            }
            for i in 0..100u64 {
                let run = queued(
                    &format!("sleepy-{i}"),
                    "sleepy",
                    serde_json::json!({"n": i, "sleep_ms": 1500}),
                    base + 500 + i,
                );
                store.create_run(run).await.unwrap();
            }
            for i in 0..20u64 {
                let run = queued(
                    &format!("slow-{i}"),
                    "slow",
                    serde_json::json!({"n": i, "steps": 5, "ms": 200}),
                    base + 600 + i,
                );
                store.create_run(run).await.unwrap();
            }
        })
        .unwrap();
    }
    let concurrency = 32;
    let mut kills = 0;
    for round in 0.. {
        let mut worker = env.worker(concurrency);
        // Short lives first, so kills land everywhere; longer ones later so the work finishes
        let life = Duration::from_millis(1000 + fastrand::u64(0..2000) + round * 500);
        std::thread::sleep(life);
        worker.kill().unwrap();
        worker.wait().unwrap();
        kills += 1;
        let runs = env.runs();
        let done = runs
            .iter()
            .filter(|r| r.status == RunStatus::Succeeded)
            .count();
        assert!(
            runs.iter()
                .all(|r| !matches!(r.status, RunStatus::Failed | RunStatus::NeedsAttention)),
            "a run failed: {:?}",
            runs.iter().find(|r| r.status == RunStatus::Failed)
        );
        if done == 620 {
            break;
        }
        assert!(
            round < 40,
            "after {kills} kills only {done} of 620 runs succeeded"
        );
    }
    let lines = env.lines();
    let mut starts: HashMap<&str, usize> = HashMap::new();
    let mut ends: HashMap<&str, usize> = HashMap::new();
    for line in &lines {
        *if line.end { &mut ends } else { &mut starts }
            .entry(line.name.as_str())
            .or_default() += 1;
    }
    let expected = 500 + 100 * 2 + 20 * 5;
    assert_eq!(ends.len(), expected, "every step ended");
    let repeated: usize = starts.values().map(|n| n - 1).sum();
    assert!(
        repeated <= kills * concurrency as usize,
        "{repeated} steps started again after {kills} kills of a worker running {concurrency} runs"
    );
    // No run in two processes at once: per run, the spans of different pids do not overlap
    let mut spans: BTreeMap<(&str, u32), (u64, u64)> = BTreeMap::new();
    for line in &lines {
        let span = spans
            .entry((line.run.as_str(), line.pid))
            .or_insert((line.ms, line.ms));
        span.0 = span.0.min(line.ms);
        span.1 = span.1.max(line.ms);
    }
    let mut by_run: HashMap<&str, Vec<(u64, u64)>> = HashMap::new();
    for ((run, _), span) in spans {
        by_run.entry(run).or_default().push(span);
    }
    for (run, mut spans) in by_run {
        spans.sort();
        for pair in spans.windows(2) {
            assert!(
                pair[0].1 <= pair[1].0,
                "run {run} executed by two processes at once: {spans:?}"
            );
        }
    }
    // Each durable sleep lasted its 1.5 s, across kills
    for i in 0..100 {
        let a_end = lines
            .iter()
            .filter(|l| l.end && l.name == format!("sleepy-{i}-a"))
            .map(|l| l.ms)
            .min()
            .unwrap();
        let b_start = lines
            .iter()
            .filter(|l| !l.end && l.name == format!("sleepy-{i}-b"))
            .map(|l| l.ms)
            .min()
            .unwrap();
        assert!(
            b_start >= a_end + 1400,
            "sleepy-{i} slept {} ms",
            b_start - a_end
        );
    }
}

/// Queue limits hold while a worker with 16 slots drains three queues: at most 3 runs of
/// `limited` at once and one per concurrency key, at most 4 starts of `rated` in any second,
/// and `ordered` (one at a time) runs by priority, then in enqueue order.
#[test]
fn queue_limits_and_priority_hold() {
    let env = env(
        "[flow.queues.limited]\nconcurrency = 3\nper_key = 1\n\n[flow.queues.rated]\nrate = \"4/1s\"\n\n[flow.queues.ordered]\nworker_concurrency = 1\n",
    );
    for i in 0..12 {
        let key = format!("k{}", i % 4);
        env.enqueue(
            "job",
            &format!(r#"{{"n": {i}, "ms": 150}}"#),
            &[
                "--queue",
                "limited",
                "--concurrency-key",
                &key,
                "--id",
                &format!("limited-{i}"),
            ],
        );
    }
    for i in 100..110 {
        env.enqueue(
            "job",
            &format!(r#"{{"n": {i}, "ms": 10}}"#),
            &["--queue", "rated", "--id", &format!("rated-{i}")],
        );
    }
    let priorities = [5, 5, 0, 0, -1, -1];
    for (i, p) in priorities.iter().enumerate() {
        let i = 200 + i;
        env.enqueue(
            "job",
            &format!(r#"{{"n": {i}, "ms": 30}}"#),
            &[
                "--queue",
                "ordered",
                "--priority",
                &p.to_string(),
                "--id",
                &format!("ordered-{i}"),
            ],
        );
    }
    // Enqueueing an id again returns the run and adds nothing
    env.enqueue(
        "job",
        r#"{"n": 0, "ms": 150}"#,
        &[
            "--queue",
            "limited",
            "--concurrency-key",
            "k0",
            "--id",
            "limited-0",
        ],
    );
    let mut worker = env.worker(16);
    env.wait_for_lines("every job to end", 28, |l| l.end);
    std::thread::sleep(Duration::from_millis(500));
    sigterm(&worker);
    assert_eq!(
        wait_exit(&mut worker).code(),
        Some(0),
        "SIGTERM stops a worker with exit 0"
    );
    let lines = env.lines();
    let runs = env.runs();
    assert_eq!(runs.len(), 28);
    assert!(
        runs.iter().all(|r| r.status == RunStatus::Succeeded),
        "{runs:?}"
    );

    // limited: overlap of [start, end] intervals
    let span = |run: &str| {
        let start = lines.iter().find(|l| !l.end && l.run == run).unwrap().ms;
        let end = lines.iter().find(|l| l.end && l.run == run).unwrap().ms;
        (start, end)
    };
    let limited: Vec<(String, (u64, u64))> = (0..12)
        .map(|i| (format!("k{}", i % 4), span(&format!("limited-{i}"))))
        .collect();
    let mut max_overlap = 0;
    for (key, (start, _)) in &limited {
        let at = |t: u64| limited.iter().filter(move |(_, (s, e))| *s <= t && t < *e);
        let overlap = at(*start).count();
        max_overlap = max_overlap.max(overlap);
        assert!(overlap <= 3, "{overlap} runs of `limited` at once");
        let same_key = at(*start).filter(|(k, _)| k == key).count();
        assert!(same_key <= 1, "{same_key} runs with key {key} at once");
    }
    assert!(
        max_overlap >= 2,
        "the queue ran its runs concurrently ({max_overlap})"
    );

    // rated: at most 4 starts in any 1 s window (900 ms, for the time between claim and log)
    let mut starts: Vec<u64> = (100..110).map(|i| span(&format!("rated-{i}")).0).collect();
    starts.sort();
    for (i, t) in starts.iter().enumerate() {
        let within = starts[i..].iter().filter(|s| **s < t + 900).count();
        assert!(
            within <= 4,
            "{within} starts of `rated` within a second: {starts:?}"
        );
    }
    assert!(
        starts[9] - starts[0] >= 2000,
        "10 starts at 4 a second take 2 s at least: {starts:?}"
    );

    // ordered: priority -1 first, then 0, then 5; enqueue order within a priority
    let mut ordered: Vec<(u64, usize)> = (200..206)
        .map(|i| (span(&format!("ordered-{i}")).0, i))
        .collect();
    ordered.sort();
    let order: Vec<usize> = ordered.into_iter().map(|(_, i)| i).collect();
    assert_eq!(order, vec![204, 205, 202, 203, 200, 201]);
}

/// SIGTERM while runs execute: the steps in flight finish and are checkpointed, the worker
/// exits 0, and the next worker resumes the runs without executing any step twice.
#[test]
fn sigterm_lets_steps_in_flight_finish_and_the_next_worker_resumes() {
    let env = env("");
    for i in 0..4 {
        env.enqueue(
            "slow",
            &format!(r#"{{"n": {i}, "steps": 6, "ms": 400}}"#),
            &["--id", &format!("slow-{i}")],
        );
    }
    let mut worker = env.worker(8);
    env.wait_for_lines("the slow runs to be in their second step", 4, |l| {
        !l.end && l.name.ends_with("-1")
    });
    sigterm(&worker);
    assert_eq!(wait_exit(&mut worker).code(), Some(0));
    let lines = env.lines();
    let started = lines.iter().filter(|l| !l.end).count();
    let ended = lines.iter().filter(|l| l.end).count();
    assert_eq!(
        started, ended,
        "every step in flight finished before the exit"
    );
    let runs = env.runs();
    assert!(
        runs.iter()
            .all(|r| r.status == RunStatus::Running && !r.status.is_finished()),
        "{runs:?}"
    );

    let mut next = env.worker(8);
    env.wait_for_lines("every step to end", 24, |l| l.end);
    // The last step's end is logged before its checkpoint and the run's end are committed
    std::thread::sleep(Duration::from_millis(500));
    sigterm(&next);
    assert_eq!(wait_exit(&mut next).code(), Some(0));
    let lines = env.lines();
    let mut starts: HashMap<&str, usize> = HashMap::new();
    for l in lines.iter().filter(|l| !l.end) {
        *starts.entry(l.name.as_str()).or_default() += 1;
    }
    assert_eq!(starts.len(), 24);
    assert!(
        starts.values().all(|n| *n == 1),
        "a step executed twice: {starts:?}"
    );
    assert!(env.runs().iter().all(|r| r.status == RunStatus::Succeeded));
}

fn json_of(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// While a worker owns the store, operators reach it through its socket: `enqueue` (a delayed
/// run says why it waits), `runs list`, `runs show`, `runs cancel`; once the worker is killed,
/// the same commands open the store directly, and the next worker resumes the run it left.
#[test]
fn operators_reach_a_running_worker_through_its_socket() {
    let env = env("");
    let mut worker = env.worker(4);
    std::thread::sleep(Duration::from_millis(300));
    env.enqueue("slow", r#"{"n": 1, "steps": 8, "ms": 300}"#, &["--id", "a"]);
    env.enqueue("slow", r#"{"n": 2, "steps": 8, "ms": 300}"#, &["--id", "b"]);
    env.enqueue(
        "job",
        r#"{"n": 3, "ms": 1}"#,
        &["--id", "later", "--delay", "1h"],
    );
    env.wait_for_lines("both slow runs to start", 2, |l| {
        !l.end && l.name.ends_with("-0")
    });
    let socket = env.store.with_extension("redb.sock");
    assert!(socket.exists(), "the worker serves {}", socket.display());

    let listed = json_of(
        &env.command(&["runs", "list", "--output", "json"])
            .output()
            .unwrap(),
    );
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "{listed}");
    let later = json_of(
        &env.command(&["runs", "show", "later", "--output", "json"])
            .output()
            .unwrap(),
    );
    assert_eq!(later["run"]["status"], "queued");
    assert_eq!(later["queue"]["position"], 1);
    assert!(
        later["queue"]["waiting"]
            .as_str()
            .unwrap()
            .starts_with("not yet due"),
        "{later}"
    );

    let cancel = env.command(&["runs", "cancel", "b"]).output().unwrap();
    assert!(
        cancel.status.success(),
        "{}",
        String::from_utf8_lossy(&cancel.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let b = json_of(
            &env.command(&["runs", "show", "b", "--output", "json"])
                .output()
                .unwrap(),
        );
        if b["run"]["status"] == "cancelled" {
            break;
        }
        assert!(Instant::now() < deadline, "b was not cancelled: {b}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Enqueueing an existing id returns that run
    let again = json_of(
        &env.command(&[
            "enqueue",
            "slow",
            "--input",
            r#"{"n": 1, "steps": 8, "ms": 300}"#,
            "--id",
            "a",
            "--output",
            "json",
        ])
        .output()
        .unwrap(),
    );
    assert_eq!(again["status"], "running");

    worker.kill().unwrap();
    worker.wait().unwrap();
    assert!(socket.exists(), "a killed worker leaves its socket file");
    let a = json_of(
        &env.command(&["runs", "show", "a", "--output", "json"])
            .output()
            .unwrap(),
    );
    assert_eq!(
        a["run"]["status"], "running",
        "the killed worker's run waits to be resumed"
    );

    let mut next = env.worker(4);
    env.wait_for_lines("run a to finish", 8, |l| l.end && l.run == "a");
    std::thread::sleep(Duration::from_millis(500));
    sigterm(&next);
    assert_eq!(wait_exit(&mut next).code(), Some(0));
    let runs: HashMap<String, RunStatus> = env
        .runs()
        .into_iter()
        .map(|r| (r.id.to_string(), r.status))
        .collect();
    assert_eq!(runs["a"], RunStatus::Succeeded);
    assert_eq!(runs["b"], RunStatus::Cancelled);
    assert_eq!(runs["later"], RunStatus::Queued);
    let lines = env.lines();
    for i in 0..8 {
        let name = format!("slow-1-{i}");
        let n = lines.iter().filter(|l| l.end && l.name == name).count();
        assert!(n >= 1, "{name} ended");
    }
    assert!(
        lines
            .iter()
            .filter(|l| l.run == "b" && l.name.ends_with("-7"))
            .count()
            == 0,
        "cancelled b did not run to its end"
    );
}

/// `runs show` of a queued run names what holds it back: its queue's concurrency while a run
/// of the queue executes, and a start time given with `--at`.
#[test]
fn a_queued_run_says_why_it_waits() {
    let env = env("[flow.queues.one]\nconcurrency = 1\n");
    let mut worker = env.worker(4);
    std::thread::sleep(Duration::from_millis(300));
    env.enqueue(
        "slow",
        r#"{"n": 1, "steps": 6, "ms": 300}"#,
        &["--id", "first", "--queue", "one"],
    );
    env.wait_for_lines("the first run to start", 1, |l| !l.end && l.run == "first");
    env.enqueue(
        "slow",
        r#"{"n": 2, "steps": 1, "ms": 1}"#,
        &["--id", "second", "--queue", "one"],
    );
    env.enqueue(
        "job",
        r#"{"n": 3, "ms": 1}"#,
        &["--id", "dated", "--at", "2099-01-01T00:00:00Z"],
    );
    let second = json_of(
        &env.command(&["runs", "show", "second", "--output", "json"])
            .output()
            .unwrap(),
    );
    assert_eq!(second["run"]["status"], "queued", "{second}");
    let waiting = second["queue"]["waiting"].as_str().unwrap();
    assert!(waiting.starts_with("concurrency"), "{waiting}");
    assert_eq!(second["queue"]["in_flight"], 1);
    let dated = json_of(
        &env.command(&["runs", "show", "dated", "--output", "json"])
            .output()
            .unwrap(),
    );
    let waiting = dated["queue"]["waiting"].as_str().unwrap();
    assert!(waiting.contains("2099-01-01T00:00:00Z"), "{waiting}");
    sigterm(&worker);
    assert_eq!(wait_exit(&mut worker).code(), Some(0));
}

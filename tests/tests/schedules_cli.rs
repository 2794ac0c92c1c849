//! Schedules as an operator meets them: declared in `flow.toml` (`[flow.schedules.NAME]`),
//! listed, paused, resumed, triggered and backfilled with `schedule_child schedules ...` in child
//! processes, fired by real `worker` processes (one owning the store, or two sharing it). The
//! workflows append a line per execution to an effect log (`src/bin/schedule_child.rs`); the
//! tests check that log, the store and what the commands print.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_schedule_child");

struct Env {
    dir: tempfile::TempDir,
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
        dir,
    }
}

/// One execution, from the effect log: `WHAT run=ID tick=T pid=P ms=NOW`.
#[derive(Clone, Debug)]
struct Ran {
    what: String,
    run: String,
    tick: String,
    pid: u32,
}

impl Ran {
    fn parse(line: &str) -> Option<Ran> {
        let mut words = line.split_whitespace();
        let what = words.next()?.to_owned();
        let mut field = |key: &str| words.next()?.strip_prefix(key).map(str::to_owned);
        Some(Ran {
            what,
            run: field("run=")?,
            tick: field("tick=")?,
            pid: field("pid=")?.parse().ok()?,
        })
    }
}

impl Env {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(["--store", self.store.to_str().unwrap()])
            .args(["--config", self.config.to_str().unwrap()])
            .args(args)
            .current_dir(self.dir.path())
            .env("SCHEDULE_LOG", &self.log)
            .env("FLOW_LOG_FORMAT", "json")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs a command that must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["--output", "json"]);
        let text = self.ok(&args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
    }

    /// A worker whose log lines go to `worker-N.log`.
    fn worker(&self, n: u32) -> Worker {
        self.worker_with(n, &[])
    }

    /// [`Env::worker`] with more arguments to `worker`.
    fn worker_with(&self, n: u32, args: &[&str]) -> Worker {
        let log = std::fs::File::create(self.worker_log(n)).unwrap();
        let mut all = vec!["worker"];
        all.extend_from_slice(args);
        Worker(
            self.command(&all)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    }

    fn worker_log(&self, n: u32) -> PathBuf {
        self.dir.path().join(format!("worker-{n}.log"))
    }

    fn ran(&self) -> Vec<Ran> {
        flow_tests::lines(&self.log)
            .iter()
            .filter_map(|l| Ran::parse(l))
            .collect()
    }

    /// Every run, as `runs list --output json` shows it (through the owner's socket while a
    /// worker owns the store).
    fn runs(&self) -> Vec<Value> {
        match self.json(&["runs", "list", "--limit", "100000"]) {
            Value::Array(runs) => runs,
            other => panic!("runs list: {other}"),
        }
    }

    fn runs_of(&self, schedule: &str) -> BTreeMap<String, Value> {
        let prefix = format!("{schedule}@");
        self.runs()
            .into_iter()
            .filter(|r| r["run_id"].as_str().unwrap().starts_with(&prefix))
            .map(|r| (r["run_id"].as_str().unwrap().to_owned(), r))
            .collect()
    }

    fn schedule(&self, name: &str) -> Value {
        let list = self.json(&["schedules", "list"]);
        list.as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no schedule {name} in {list}"))
            .clone()
    }

    fn wait_for(&self, what: &str, cond: impl Fn(&[Ran]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !cond(&self.ran()) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A worker process, killed when the test ends (also when it fails).
struct Worker(Child);

impl Worker {
    /// SIGTERM, then waits for a clean exit.
    fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                assert!(status.success(), "the worker exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "the worker did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The tick of a run id `NAME@2026-11-28T02:00:00Z`, in ms.
fn tick_of(id: &str) -> u64 {
    let (_, tick) = id.split_once('@').unwrap();
    tick.parse::<jiff::Timestamp>().unwrap().as_millisecond() as u64
}

/// A settings schedule shows in `schedules list` (table and JSON) before any store exists;
/// paused with a note it shows so, and a worker started afterwards fires nothing for it while
/// it owns the store (the list, the runbook, the resume go through its socket); resumed, it
/// fires its next ticks and none of the pause.
#[test]
fn a_settings_schedule_is_listed_paused_and_resumed_while_a_worker_owns_the_store() {
    let env = env(r#"
[flow.schedules.hourly]
workflow = "tick_job"
cron = "0 * * * *"
timezone = "Europe/Berlin"

[flow.schedules.fast]
workflow = "tick_job"
cron = "* * * * * *"
"#);
    // No store yet: the schedules are listed from the settings
    let table = env.ok(&["schedules", "list"]);
    assert!(table.contains("0 * * * * Europe/Berlin"), "{table}");
    assert!(table.contains("* * * * * * UTC"), "{table}");
    assert!(table.contains("settings"), "{table}");
    let out = env.run(&["schedules", "list", "--json"]);
    assert!(stderr(&out).contains("no store yet"), "{}", stderr(&out));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let hourly = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "hourly")
        .unwrap();
    assert_eq!(hourly["workflow"], "tick_job");
    assert_eq!(hourly["timezone"], "Europe/Berlin");
    assert_eq!(hourly["source"], "settings");
    assert_eq!(hourly["paused"], false);
    assert_eq!(
        (hourly["catch_up"].clone(), hourly["overlap"].clone()),
        ("latest".into(), "skip".into())
    );
    // The next fire: the next whole hour, in UTC and in Berlin's time
    let next = tick_of(&format!("x@{}", hourly["next_fire"].as_str().unwrap()));
    let now = now_ms();
    assert!(
        next > now && next <= now + 3_600_000 && next.is_multiple_of(3_600_000),
        "{hourly}"
    );
    let local = hourly["next_fire_local"].as_str().unwrap();
    assert!(
        local.ends_with(":00:00 CET") || local.ends_with(":00:00 CEST"),
        "{local}"
    );

    let paused = env.ok(&["schedules", "pause", "fast", "--note", "db migration"]);
    assert!(
        paused.contains("paused schedule fast (note: db migration)"),
        "{paused}"
    );
    let table = env.ok(&["schedules", "list"]);
    assert!(table.contains("paused: db migration"), "{table}");

    let worker = env.worker(1);
    // The worker owns the store (the exclusive mode): these go through its socket. It passes
    // over the paused ticks, counting them as skipped.
    let deadline = Instant::now() + Duration::from_secs(60);
    let fast = loop {
        let fast = env.schedule("fast");
        if fast["skipped"].as_u64().unwrap() >= 2 {
            break fast;
        }
        assert!(
            Instant::now() < deadline,
            "the worker skipped no paused tick: {fast}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(fast["paused"], true, "{fast}");
    assert_eq!(fast["paused_note"], "db migration", "{fast}");
    assert_eq!(fast["next_fire"], Value::Null, "{fast}");
    assert_eq!(fast["last_run"], Value::Null, "{fast}");
    let ran_fast = || -> Vec<Ran> {
        // (`hourly` would fire too if the test crossed a whole hour)
        env.ran()
            .into_iter()
            .filter(|r| r.run.starts_with("fast@"))
            .collect()
    };
    assert!(
        ran_fast().is_empty(),
        "a paused schedule fired: {:?}",
        ran_fast()
    );
    assert!(env.runs_of("fast").is_empty());
    let runbook = env.ok(&["runbook"]);
    assert!(
        runbook.contains("schedule `fast`: `* * * * * *` in UTC (from settings); catch-up `latest` within 1day, overlap `skip`, queue `default`; next fire none; paused: db migration"),
        "{runbook}"
    );
    assert!(
        runbook.contains("schedule `hourly`: `0 * * * *` in Europe/Berlin"),
        "{runbook}"
    );

    let resumed_at = now_ms();
    let resumed = env.ok(&["schedules", "resume", "fast"]);
    assert!(
        resumed.contains("resumed schedule fast; its next tick:"),
        "{resumed}"
    );
    assert!(
        resumed.contains("ticks of the pause are not caught up; to run them: "),
        "{resumed}"
    );
    assert!(
        resumed.contains("schedules backfill fast --from "),
        "{resumed}"
    );
    env.wait_for("two ticks after the resume", |ran| {
        ran.iter().filter(|r| r.run.starts_with("fast@")).count() >= 2
    });
    let fast = env.schedule("fast");
    assert_eq!(fast["paused"], false, "{fast}");
    assert!(
        fast["last_run"].as_str().unwrap().starts_with("fast@"),
        "{fast}"
    );
    worker.stop();

    // Only ticks after the resume ran, each once, each as its tick's run
    let mut seen = BTreeSet::new();
    for r in &ran_fast() {
        assert_eq!(r.what, "ran");
        assert!(seen.insert(r.run.clone()), "{} ran twice", r.run);
        assert_eq!(r.run, format!("fast@{}", r.tick));
        assert!(
            tick_of(&r.run) > resumed_at - 1000,
            "a tick of the pause ran: {}",
            r.run
        );
    }
    for (id, run) in env.runs_of("fast") {
        assert!(
            tick_of(&id) > resumed_at - 1000,
            "a run for a tick of the pause: {id}"
        );
        assert!(run["executions"].as_u64().unwrap() <= 1, "{run}");
    }
}

/// `trigger` creates one run now (id `NAME@<now>`, the schedule's input); a worker executes
/// it; with the previous run unfinished and overlap `skip` it creates nothing and says why;
/// while a worker owns the store it goes through its socket and the worker runs it at once.
#[test]
fn trigger_creates_a_run_that_a_worker_executes() {
    // The schedules fire only on 29 February: every run here is a trigger
    let env = env(r#"
[flow.schedules.on_demand]
workflow = "tick_job"
cron = "0 3 29 2 *"

[flow.schedules.daily_report]
workflow = "report"
cron = "30 2 29 2 *"
timezone = "Europe/Berlin"
input = "today"
"#);
    let before = now_ms();
    let fired = env.json(&["schedules", "trigger", "on_demand"]);
    let created = fired["created"].as_array().unwrap();
    assert_eq!(created.len(), 1, "{fired}");
    let first = created[0].as_str().unwrap().to_owned();
    assert!(first.starts_with("on_demand@"), "{first}");
    let tick = tick_of(&first);
    assert!(
        tick >= before && tick <= now_ms(),
        "the tick is the trigger's time: {first}"
    );
    assert_eq!(
        fired["next"],
        format!("schedule_child runs show {first}"),
        "{fired}"
    );

    // The run waits for a worker; a second trigger finds it unfinished
    let again = env.ok(&["schedules", "trigger", "on_demand"]);
    assert!(
        again.contains(&format!("nothing was created: run {first} (queued) has not finished and the overlap policy is skip")),
        "{again}"
    );
    assert!(
        again.contains("schedules trigger on_demand --overlap allow"),
        "{again}"
    );
    assert_eq!(env.runs_of("on_demand").len(), 1);
    let report = env.ok(&["schedules", "trigger", "daily_report"]);
    assert!(report.contains("created run daily_report@"), "{report}");
    assert!(
        report.contains("follow it with: schedule_child runs show daily_report@"),
        "{report}"
    );

    let worker = env.worker(1);
    env.wait_for("both triggered runs", |ran| ran.len() >= 2);
    // Through the worker's socket: the previous run finished, so this one is created and run
    let fired = env.json(&["schedules", "trigger", "on_demand"]);
    let second = fired["created"][0].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    env.wait_for("the run triggered through the socket", |ran| {
        ran.iter().any(|r| r.run == second)
    });
    let on_demand = env.schedule("on_demand");
    assert_eq!(on_demand["last_run"], second.as_str(), "{on_demand}");
    assert_eq!(on_demand["last_status"], "succeeded", "{on_demand}");
    worker.stop();

    let ran = env.ran();
    let runs: Vec<&str> = ran.iter().map(|r| r.run.as_str()).collect();
    assert_eq!(
        runs.iter().filter(|r| r.starts_with("on_demand@")).count(),
        2,
        "{runs:?}"
    );
    assert!(runs.contains(&first.as_str()) && runs.contains(&second.as_str()));
    // The run reads its tick with flow::tick(); the report got the settings' input
    for r in &ran {
        assert_eq!(r.run.split_once('@').unwrap().1, r.tick, "{r:?}");
    }
    let report = ran
        .iter()
        .find(|r| r.run.starts_with("daily_report@"))
        .unwrap();
    assert_eq!(report.what, "report-today");
    let store = env.runs();
    assert_eq!(store.len(), 3, "{store:?}");
    for run in &store {
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(run["executions"], 1, "{run}");
    }
    let shown = env.json(&["runs", "show", &first]);
    assert_eq!(shown["run"]["workflow"], "tick_job");
    assert_eq!(shown["run"]["scheduled"]["schedule"], "on_demand");
    assert_eq!(shown["run"]["scheduled"]["tick_ms"], tick);
}

/// A schedule's `queue` setting puts its runs on that queue: a worker serving only `default`
/// leaves them queued, one serving the schedule's queue runs them. `trigger --overlap allow`
/// creates a run beside an unfinished one, which `skip` (the default) refuses.
#[test]
fn a_schedules_runs_go_to_its_queue_and_trigger_overlap_allow_adds_a_run() {
    let env = env(r#"
[flow.queues.reports]
concurrency = 1

[flow.schedules.nightly_report]
workflow = "report"
cron = "0 3 29 2 *"
input = "night"
queue = "reports"

[flow.schedules.on_demand]
workflow = "tick_job"
cron = "0 3 29 2 *"
"#);
    let first = env.json(&["schedules", "trigger", "nightly_report"]);
    let first = first["created"][0].as_str().unwrap().to_owned();
    // Still queued: skip refuses, allow adds one
    let refused = env.json(&["schedules", "trigger", "nightly_report"]);
    assert_eq!(
        refused["created"].as_array().map(Vec::len),
        Some(0),
        "{refused}"
    );
    let allowed = env.json(&[
        "schedules",
        "trigger",
        "nightly_report",
        "--overlap",
        "allow",
    ]);
    let second = allowed["created"][0].as_str().unwrap().to_owned();
    assert_ne!(first, second, "{allowed}");
    for id in [&first, &second] {
        let shown = env.json(&["runs", "show", id]);
        assert_eq!(shown["queue"]["name"], "reports", "{shown}");
        assert_eq!(shown["run"]["status"], "queued", "{shown}");
    }
    env.ok(&["schedules", "trigger", "on_demand"]);

    // A worker of `default` runs the on-demand tick, never the reports
    let worker = env.worker_with(1, &["--queues", "default"]);
    env.wait_for("the default queue's run", |ran| {
        ran.iter().any(|r| r.run.starts_with("on_demand@"))
    });
    worker.stop();
    let ran = env.ran();
    assert!(
        !ran.iter().any(|r| r.run.starts_with("nightly_report@")),
        "a worker of `default` ran a run of `reports`: {ran:?}"
    );

    let worker = env.worker_with(2, &["--queues", "reports"]);
    env.wait_for("both report runs", |ran| {
        ran.iter()
            .filter(|r| r.run.starts_with("nightly_report@"))
            .count()
            >= 2
    });
    worker.stop();
    let reports: Vec<Ran> = env
        .ran()
        .into_iter()
        .filter(|r| r.run.starts_with("nightly_report@"))
        .collect();
    assert_eq!(reports.len(), 2, "each report run once: {reports:?}");
    assert!(
        reports.iter().all(|r| r.what == "report-night"),
        "{reports:?}"
    );
    let ids: Vec<&str> = reports.iter().map(|r| r.run.as_str()).collect();
    assert!(
        ids.contains(&first.as_str()) && ids.contains(&second.as_str()),
        "{ids:?}"
    );
}

/// `backfill` creates one run per tick in the range, each with its tick's id (a daylight-saving
/// change neither skips nor doubles one); the same backfill again creates nothing and reports
/// the runs as existing, whatever the overlap; a worker runs each once with its tick.
#[test]
fn a_backfill_creates_each_ticks_run_once() {
    let env = env(r#"
[flow.schedules.nightly]
workflow = "tick_job"
cron = "30 2 * * *"
timezone = "Europe/Berlin"
"#);
    // Spring forward on 2026-03-29: 02:30 does not exist in Berlin; the tick is at 03:00 CEST
    let expected = [
        "nightly@2026-03-27T01:30:00Z",
        "nightly@2026-03-28T01:30:00Z",
        "nightly@2026-03-29T01:00:00Z",
        "nightly@2026-03-30T00:30:00Z",
    ];
    let args = [
        "schedules",
        "backfill",
        "nightly",
        "--from",
        "2026-03-27",
        "--to",
        "2026-03-30T23:59:59Z",
        "--overlap",
        "allow",
    ];
    let first = env.json(&args);
    assert_eq!(first["created"], serde_json::json!(expected), "{first}");
    assert_eq!(first["ticks"], 4);
    assert_eq!(
        env.runs_of("nightly").keys().cloned().collect::<Vec<_>>(),
        expected
    );

    let again = env.json(&args);
    assert_eq!(again["created"], serde_json::json!([]), "{again}");
    assert_eq!(again["existing"], serde_json::json!(expected), "{again}");
    // With overlap `skip`, the unfinished runs are found, not skipped
    let table = env.ok(&[&args[..8], &["skip"]].concat());
    assert!(
        table.contains(
            "backfill of nightly from 2026-03-27T00:00:00Z to 2026-03-30T23:59:59Z: 4 ticks"
        ),
        "{table}"
    );
    let row = |what: &str| {
        table
            .lines()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no {what} row in {table}"))
            .split_whitespace()
            .find(|w| w.chars().all(|c| c.is_ascii_digit()))
            .unwrap()
            .to_owned()
    };
    assert_eq!(row("existed already"), "4", "{table}");
    assert_eq!(row("created"), "0", "{table}");
    assert_eq!(row("skipped"), "0", "{table}");
    assert_eq!(env.schedule("nightly")["skipped"], 0);
    assert_eq!(env.runs_of("nightly").len(), 4);

    // A range without a tick, and bad ranges: nothing changes
    let none = env.ok(&[
        "schedules",
        "backfill",
        "nightly",
        "--from",
        "2026-03-27T02:00:00Z",
        "--to",
        "2026-03-27T03:00:00Z",
    ]);
    assert!(
        none.contains("holds no tick of nightly (`30 2 * * *` in Europe/Berlin)"),
        "{none}"
    );
    let bad = env.run(&[
        "schedules",
        "backfill",
        "nightly",
        "--from",
        "yesterday",
        "--to",
        "2026-03-30",
    ]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("expected an RFC 3339 time such as `2026-11-01T00:00:00Z`"),
        "{}",
        stderr(&bad)
    );
    let local = env.run(&[
        "schedules",
        "backfill",
        "nightly",
        "--from",
        "2026-03-27T00:00:00",
        "--to",
        "2026-03-30",
    ]);
    assert_eq!(
        local.status.code(),
        Some(2),
        "a time without offset is refused: {}",
        stderr(&local)
    );
    let reversed = env.run(&[
        "schedules",
        "backfill",
        "nightly",
        "--from",
        "2026-03-30",
        "--to",
        "2026-03-27",
    ]);
    assert_eq!(reversed.status.code(), Some(2), "{}", stderr(&reversed));
    assert!(
        stderr(&reversed).contains("the backfill range ends (2026-03-27T00:00:00Z) before it starts (2026-03-30T00:00:00Z)"),
        "{}",
        stderr(&reversed)
    );
    assert_eq!(env.runs_of("nightly").len(), 4);

    let worker = env.worker(1);
    // (the schedule's own tick fires too if the test crosses 02:30 in Berlin)
    let backfilled = |ran: &[Ran]| -> Vec<Ran> {
        ran.iter()
            .filter(|r| r.tick.starts_with("2026-03-"))
            .cloned()
            .collect()
    };
    env.wait_for("the four backfilled runs", |ran| backfilled(ran).len() >= 4);
    worker.stop();
    let ran = backfilled(&env.ran());
    let ids: Vec<&str> = ran.iter().map(|r| r.run.as_str()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, expected, "each backfilled run once: {ids:?}");
    for r in &ran {
        assert_eq!(
            format!("nightly@{}", r.tick),
            r.run,
            "flow::tick() is the run's tick"
        );
    }
}

/// Schedules in settings that do not work stop every command before it runs (exit 3), each
/// problem named with its key, its line and what to write instead.
#[test]
fn bad_schedule_settings_stop_every_command() {
    let cases: [(&str, &[&str]); 10] = [
        (
            "[flow.schedules.nightly]\nworkflow = \"tick_job\"\ncron = \"0 25 * * *\"\n",
            &["flow.schedules.nightly.cron: `0 25 * * *` is not a cron expression", "such as `0 2 * * *`", "line 3"],
        ),
        (
            "[flow.schedules.nightly]\nworkflow = \"tick_jbo\"\ncron = \"0 2 * * *\"\n",
            &["flow.schedules.nightly.workflow: unknown workflow `tick_jbo`; this binary has: ", "`tick_job`", "line 2"],
        ),
        (
            "[flow.schedules.nightly]\nworkflow = \"tick_job\"\ncron = \"0 2 * * *\"\ntimezone = \"Europe/Berln\"\n",
            &["flow.schedules.nightly.timezone: `Europe/Berln` is not a known time zone; use an IANA name such as \"UTC\" or \"Europe/Berlin\"", "line 4"],
        ),
        (
            "[flow.schedules.nightly]\nworkflow = \"tick_job\"\ncrn = \"0 2 * * *\"\n",
            &["flow.schedules.nightly.crn: no such setting; did you mean `cron`?", "line 3"],
        ),
        (
            "[flow.schedules.nightly]\nworkflow = \"report\"\ncron = \"0 2 * * *\"\ninput = { day = 1 }\n",
            &["flow.schedules.nightly.input: does not decode into the parameters of workflow `report` (day)", "takes the value itself", "line 4"],
        ),
        (
            "[flow.schedules.nightly]\nworkflow = \"tick_job\"\ncron = \"0 2 * * *\"\nqueue = \"imports\"\n",
            &["flow.schedules.nightly.queue: unknown queue `imports`; declare it as [flow.queues.imports]", "line 4"],
        ),
        (
            "[flow.schedules.nightly]\ncron = \"0 2 * * *\"\n",
            &["flow.schedules.nightly: no workflow declares this schedule, so settings must name one: add `workflow = \"...\"` under [flow.schedules.nightly] (workflows: leap_day, report, tick_job)", "line 1"],
        ),
        (
            "[flow.schedules.nightly]\nworkflow = \"tick_job\"\ncron = \"0 2 * * *\"\ncatch_up = \"sometimes\"\n",
            &["flow.schedules.nightly.catch_up: unknown value; expected one of `skip`, `latest`, `all`", "line 4"],
        ),
        (
            "[flow.schedules.nightly]\nworkflow = \"tick_job\"\ncron = \"0 2 * * *\"\noverlap = \"queue\"\ncatch_up_window = \"10s\"\n",
            &["flow.schedules.nightly.overlap: unknown value; expected one of `skip`, `buffer_one`, `buffer_all`, `allow`", "line 4", "flow.schedules.nightly.catch_up_window: `10s` is shorter than a minute", "line 5"],
        ),
        (
            "[flow.schedules.\"nightly@2\"]\nworkflow = \"tick_job\"\ncron = \"0 2 * * *\"\n",
            &["the schedule name \"nightly@2\" is not 1 to 64 of the characters"],
        ),
    ];
    for (i, (config, expected)) in cases.iter().enumerate() {
        let env = env(config);
        // Every command: one that reads, one that writes, the worker
        let commands: &[&[&str]] = match i {
            0 => &[
                &["runs", "list"],
                &["worker"],
                &["schedules", "list"],
                &["check-config"],
            ],
            _ => &[&["runs", "list"]],
        };
        for args in commands {
            let out = env.run(args);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(3), "{config}\n{args:?}: {err}");
            assert!(err.contains("error: invalid settings"), "{err}");
            for text in *expected {
                assert!(err.contains(text), "{config}\nexpected {text:?} in:\n{err}");
            }
            assert!(
                err.contains(&format!("file {}", env.config.display())),
                "{err}"
            );
        }
        assert!(!env.store.exists(), "nothing ran, so no store was created");
    }
}

/// The examples in `--help` name the binary.
#[test]
fn the_schedules_help_shows_examples_for_this_binary() {
    let env = env("");
    let help = env.ok(&["schedules", "backfill", "--help"]);
    assert!(help.contains("TIMES:"), "{help}");
    assert!(
        help.contains(
            "    schedule_child schedules backfill nightly --from 2026-11-01 --to 2026-11-07\n"
        ),
        "{help}"
    );
    assert!(help.contains("buffer_all: every tick waits"), "{help}");
    let help = env.ok(&["schedules", "pause", "--help"]);
    assert!(
        help.contains("    schedule_child schedules pause nightly --note"),
        "{help}"
    );
}

/// A schedule declared on a workflow is listed as `code`; settings override its fields
/// (`code + settings`) or disable it, and the runbook says so.
#[test]
fn settings_override_a_declared_schedule() {
    let env = env("");
    let leap = env.schedule("leap_day");
    assert_eq!(leap["source"], "code", "{leap}");
    assert_eq!(leap["cron"], "0 4 29 2 *");
    assert_eq!(leap["timezone"], "Europe/Berlin");
    assert_eq!(leap["overlap"], "buffer_one");
    assert_eq!(leap["next_fire_local"], "2028-02-29 04:00:00 CET", "{leap}");
    let runbook = env.ok(&["runbook"]);
    assert!(
        runbook.contains("- schedule `leap_day`: `0 4 29 2 *` in Europe/Berlin (from code); catch-up `latest` within 1day, overlap `buffer_one`, queue `default`; next fire 2028-02-29 04:00:00 CET (2028-02-29T03:00:00Z); active."),
        "{runbook}"
    );

    let env =
        self::env("[flow.schedules.leap_day]\ntimezone = \"America/New_York\"\nenabled = false\n");
    let leap = env.schedule("leap_day");
    assert_eq!(leap["source"], "code + settings", "{leap}");
    assert_eq!(
        leap["cron"], "0 4 29 2 *",
        "the declared expression is kept"
    );
    assert_eq!(leap["timezone"], "America/New_York");
    assert_eq!(leap["enabled"], false);
    assert_eq!(
        leap["next_fire"],
        Value::Null,
        "a disabled schedule has no next tick"
    );
    let table = env.ok(&["schedules", "list"]);
    assert!(table.contains("disabled in settings"), "{table}");
}

/// An unknown schedule is a usage error (exit 2) that lists the schedules.
#[test]
fn an_unknown_schedule_is_a_usage_error() {
    let env = env("[flow.schedules.nightly]\nworkflow = \"tick_job\"\ncron = \"0 2 * * *\"\n");
    for args in [
        &["schedules", "trigger", "nigthly"][..],
        &["schedules", "pause", "nigthly"],
        &["schedules", "resume", "nigthly"],
        &[
            "schedules",
            "backfill",
            "nigthly",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-02",
        ],
    ] {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(
                "error: unknown schedule `nigthly`; the schedules are: leap_day, nightly"
            ),
            "{}",
            stderr(&out)
        );
    }
    assert!(!env.store.exists(), "a misspelt name created a store");
    // With a store, and while a worker owns it, the same
    env.ok(&["schedules", "pause", "nightly"]);
    let worker = env.worker(1);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !env.dir.path().join("flow.redb.sock").exists() {
        assert!(Instant::now() < deadline, "the worker serves no socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = env.run(&["schedules", "trigger", "nigthly"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("unknown schedule `nigthly`"),
        "{}",
        stderr(&out)
    );
    worker.stop();
    assert!(env.runs().is_empty());
}

/// Two worker processes on one shared store, with an every-second schedule: each tick becomes
/// one run, created by one of the workers and executed once, and the ticks follow each other
/// second by second.
#[test]
fn two_workers_on_a_shared_store_fire_each_tick_once() {
    let env = env(r#"
[flow]
sharing = "shared"

[flow.schedules.every_second]
workflow = "tick_job"
cron = "* * * * * *"
catch_up = "all"
overlap = "allow"
"#);
    let started = now_ms();
    let workers = [env.worker(1), env.worker(2)];
    env.wait_for("the first tick", |ran| !ran.is_empty());
    std::thread::sleep(Duration::from_millis(3500));
    env.ok(&[
        "schedules",
        "pause",
        "every_second",
        "--note",
        "end of the test",
    ]);
    let paused = now_ms();
    // Let the runs fired before the pause finish
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let runs = env.runs_of("every_second");
        if !runs.is_empty() && runs.values().all(|r| r["status"] == "succeeded") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the fired runs did not finish: {runs:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for worker in workers {
        worker.stop();
    }

    let runs = env.runs_of("every_second");
    let ran = env.ran();
    // Every run executed exactly once
    let mut executions: BTreeMap<&str, u32> = BTreeMap::new();
    for r in &ran {
        *executions.entry(r.run.as_str()).or_default() += 1;
    }
    assert_eq!(
        executions.keys().map(|k| k.to_string()).collect::<Vec<_>>(),
        runs.keys().cloned().collect::<Vec<_>>(),
        "the executions are the stored runs"
    );
    for (id, n) in &executions {
        assert_eq!(*n, 1, "{id} executed {n} times");
        assert_eq!(runs[*id]["executions"], 1, "{}", runs[*id]);
    }
    // Each tick fired by exactly one of the two workers
    let mut fired: BTreeMap<String, u32> = BTreeMap::new();
    let mut by_worker = [0; 2];
    for n in [1, 2] {
        for line in flow_tests::lines(&env.worker_log(n)) {
            let Ok(event) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if event["fields"]["message"] == "schedule fired a run" {
                let id = event["fields"]["run_id"].as_str().unwrap().to_owned();
                *fired.entry(id).or_default() += 1;
                by_worker[n as usize - 1] += 1;
            }
        }
    }
    assert_eq!(
        fired.keys().cloned().collect::<Vec<_>>(),
        runs.keys().cloned().collect::<Vec<_>>(),
        "each stored run was fired by a worker"
    );
    assert!(
        fired.values().all(|n| *n == 1),
        "a tick fired twice: {fired:?}"
    );
    // One tick a second, none left out, within the time the workers ran
    let ticks: Vec<u64> = runs.keys().map(|id| tick_of(id)).collect();
    for pair in ticks.windows(2) {
        assert_eq!(pair[1] - pair[0], 1000, "ticks a second apart: {ticks:?}");
    }
    // A pass that read the record before the pause fires no tick later than its own now
    assert!(
        ticks[0] >= started && *ticks.last().unwrap() <= paused,
        "{ticks:?}"
    );
    let seconds = (paused - started) / 1000;
    assert!(
        ticks.len() >= 3 && ticks.len() as u64 <= seconds + 1,
        "{} ticks in {seconds} s",
        ticks.len()
    );
    let pids: BTreeSet<u32> = ran.iter().map(|r| r.pid).collect();
    eprintln!(
        "{} ticks in {seconds} s, fired by the workers {by_worker:?}, executed by {} process(es)",
        ticks.len(),
        pids.len()
    );
}

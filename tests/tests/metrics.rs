//! Prometheus metrics through the real binary: a worker serving `/metrics` over HTTP on
//! 127.0.0.1 (`flow.metrics.listen`) and through its operator socket (`app metrics`), scraped
//! while a run is still executing. The text is parsed here (a small parser of the OpenMetrics
//! text format that refuses what it does not understand) and the counters are checked against
//! what the store holds.

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

fn obs(dir: &Path) -> Command {
    flow_tests::child_command(env!("CARGO_BIN_EXE_obs_child"), dir)
}

fn json_of(dir: &Path, args: &[&str]) -> Value {
    let out = obs(dir)
        .args(args)
        .args(["--output", "json"])
        .output()
        .unwrap();
    flow_tests::assert_exit(&out, 0);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// One sample: the metric's name, its labels, its value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples of a text exposition, by series. Panics on anything that is not the text
/// format: a sample outside a declared family, a malformed label, a repeated series.
fn parse(text: &str) -> Vec<Sample> {
    let mut families: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(
                [
                    "counter",
                    "gauge",
                    "histogram",
                    "summary",
                    "untyped",
                    "info"
                ]
                .contains(&kind),
                "unknown type in {line:?}"
            );
            families.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") || line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment {line:?}");
        let (series, value) = line.rsplit_once(' ').expect("a sample is `series value`");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels end with }");
                (name.to_owned(), parse_labels(body, line))
            }
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        let family = families
            .keys()
            .filter(|f| name.starts_with(f.as_str()))
            .max_by_key(|f| f.len())
            .unwrap_or_else(|| panic!("sample of no declared family: {line:?}"));
        let suffix = &name[family.len()..];
        let allowed: &[&str] = match families[family].as_str() {
            "counter" => &["_total", "_created"],
            "histogram" => &["_bucket", "_sum", "_count", "_created"],
            _ => &[""],
        };
        assert!(allowed.contains(&suffix), "{name} in family {family}");
        assert!(
            seen.insert(format!("{name}{labels:?}")),
            "repeated series {line:?}"
        );
        samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    samples
}

fn parse_labels(body: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("bad label in {line:?}"));
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => panic!("bad escape in {line:?}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {line:?}"),
            }
        };
        assert!(
            labels.insert(key.to_owned(), value).is_none(),
            "repeated label in {line:?}"
        );
        rest = after[end + 1..]
            .strip_prefix(',')
            .unwrap_or(&after[end + 1..]);
    }
    labels
}

/// The value of the one series `name` whose labels include `labels`; 0 when there is none.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert!(found.len() <= 1, "{name} {labels:?} names several series");
    found.first().map_or(0.0, |s| s.value)
}

/// `GET /metrics` over plain HTTP/1.1.
fn scrape(port: u16) -> (String, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    (head.to_owned(), body.to_owned())
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A worker in `dir` serving `/metrics` on a free port of 127.0.0.1, once its operator socket
/// is up: the process (killed when dropped) and the port.
fn metrics_worker(dir: &Path) -> (flow_tests::KillOnDrop, u16) {
    let port = free_port();
    let worker = flow_tests::KillOnDrop(
        obs(dir)
            .env("FLOW_METRICS__LISTEN", format!("127.0.0.1:{port}"))
            .args(["worker"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    flow_tests::wait_until(60, "the worker's socket", || {
        dir.join("flow.redb.sock").exists()
    });
    (worker, port)
}

fn enqueue(dir: &Path, id: &str, input: &str, extra: &[&str]) {
    let out = obs(dir)
        .args(["enqueue", "report", "--id", id, "--input", input])
        .args(extra)
        .output()
        .unwrap();
    flow_tests::assert_exit(&out, 0);
}

#[test]
fn a_worker_serves_metrics_that_match_the_store_while_a_run_executes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Three runs whose render fails once and is retried, one whose render fails for good, one
    // that takes long enough to be scraped while it runs, and two delayed for an hour
    for i in 0..3 {
        enqueue(d, &format!("flaky-{i}"), r#"{"render_flaky": 1}"#, &[]);
    }
    enqueue(d, "broken", r#"{"render_fails": "permanent"}"#, &[]);
    enqueue(d, "slow", r#"{"fetch_ms": 60000}"#, &[]);
    for i in 0..2 {
        enqueue(d, &format!("later-{i}"), "{}", &["--delay", "1h"]);
    }

    let (_worker, port) = metrics_worker(d);
    // Until the four quick runs ended and the slow one is executing
    let mut runs = Value::Null;
    flow_tests::wait_until(60, "the quick runs to end", || {
        runs = json_of(d, &["runs", "list"]);
        let status = |id: &str| {
            runs.as_array()
                .unwrap()
                .iter()
                .find(|r| r["run_id"] == id)
                .map(|r| r["status"].as_str().unwrap().to_owned())
        };
        (0..3).all(|i| status(&format!("flaky-{i}")).as_deref() == Some("succeeded"))
            && status("broken").as_deref() == Some("failed")
            && status("slow").as_deref() == Some("running")
    });

    let (head, text) = scrape(port);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    let samples = parse(&text);
    let report = [("workflow", "report")];
    // Five runs started, four ended, as the store says; the slow one is still running
    assert_eq!(value(&samples, "flow_runs_started_total", &report), 5.0);
    let count = |status: &str| {
        runs.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] == status)
            .count() as f64
    };
    for status in ["succeeded", "failed"] {
        assert_eq!(
            value(
                &samples,
                "flow_runs_finished_total",
                &[("workflow", "report"), ("status", status)]
            ),
            count(status),
            "{status}: {text}"
        );
    }
    assert_eq!(count("succeeded"), 3.0);

    // Attempts and retries by class, as the step records of the ended runs say
    let mut retries = 0.0;
    let mut render = BTreeMap::<String, f64>::new();
    let mut fetch_ok = 0.0;
    for id in ["flaky-0", "flaky-1", "flaky-2", "broken"] {
        let shown = json_of(d, &["runs", "show", id]);
        for step in shown["steps"].as_array().unwrap() {
            let name = step["id"]["name"].as_str().unwrap();
            let attempt = step["attempt"].as_f64().unwrap();
            if name == "obs_child::render" {
                retries += attempt - 1.0;
                *render
                    .entry(step["status"].as_str().unwrap().to_owned())
                    .or_default() += 1.0;
            } else if step["status"] == "succeeded" {
                fetch_ok += 1.0;
            }
        }
    }
    assert_eq!(retries, 3.0, "one retry per flaky run");
    let render_step = ("step", "obs_child::render");
    assert_eq!(
        value(
            &samples,
            "flow_step_retries_total",
            &[render_step, ("class", "transient")]
        ),
        retries
    );
    assert_eq!(
        value(
            &samples,
            "flow_step_attempts_total",
            &[render_step, ("outcome", "transient")]
        ),
        retries
    );
    assert_eq!(
        value(
            &samples,
            "flow_step_attempts_total",
            &[render_step, ("outcome", "permanent")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "flow_step_attempts_total",
            &[render_step, ("outcome", "succeeded")]
        ),
        render["succeeded"]
    );
    // One duration per step call that ended: the fetch of the slow run has not
    assert_eq!(
        value(
            &samples,
            "flow_step_duration_seconds_count",
            &[("step", "obs_child::fetch"), ("outcome", "succeeded")]
        ),
        fetch_ok
    );
    assert_eq!(fetch_ok, 4.0);
    assert_eq!(
        value(
            &samples,
            "flow_step_duration_seconds_count",
            &[render_step, ("outcome", "failed")]
        ),
        render["failed"]
    );
    let inf = value(
        &samples,
        "flow_step_duration_seconds_bucket",
        &[render_step, ("outcome", "succeeded"), ("le", "+Inf")],
    );
    assert_eq!(inf, render["succeeded"]);

    // The two delayed runs wait in the default queue, an hour from now
    assert_eq!(
        value(&samples, "flow_queue_depth", &[("queue", "default")]),
        2.0
    );
    let age = value(
        &samples,
        "flow_queue_oldest_age_seconds",
        &[("queue", "default")],
    );
    assert!(age > 0.0 && (0.0..600.0).contains(&age), "{age}");
    // The store committed, in batches
    let commits = value(&samples, "flow_store_commit_seconds_count", &[]);
    assert!(commits >= 1.0, "{text}");
    assert_eq!(
        value(&samples, "flow_store_commit_batch_size_count", &[]),
        commits
    );
    assert!(value(&samples, "flow_store_commit_batch_size_sum", &[]) >= commits);
    // The same registry through the operator socket
    let out = obs(d).args(["metrics"]).output().unwrap();
    flow_tests::assert_exit(&out, 0);
    let through_socket = parse(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        value(&through_socket, "flow_runs_started_total", &report),
        5.0
    );
    assert_eq!(
        value(
            &through_socket,
            "flow_runs_finished_total",
            &[("workflow", "report"), ("status", "failed")]
        ),
        1.0
    );
    // `--output json` is not ignored: the same samples as JSON objects
    let out = obs(d)
        .args(["metrics", "--output", "json"])
        .output()
        .unwrap();
    flow_tests::assert_exit(&out, 0);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let started: Vec<&Value> = json["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"] == "flow_runs_started_total" && s["labels"]["workflow"] == "report")
        .collect();
    assert_eq!(started.len(), 1, "{json}");
    assert_eq!(started[0]["value"], 5.0);
    assert_eq!(started[0]["type"], "counter");
    assert!(json.get("unparsed").is_none(), "{json}");
}

#[test]
fn metrics_without_a_worker_or_with_a_bad_address_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = obs(d)
        .args(["run", "report", "--input", "{}"])
        .output()
        .unwrap();
    flow_tests::assert_exit(&out, 0);
    let out = obs(d).args(["metrics"]).output().unwrap();
    flow_tests::assert_exit(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no worker owns the store"), "{err}");
    assert!(err.contains("obs_child worker"), "{err}");

    let out = obs(d)
        .env("FLOW_METRICS__LISTEN", "localhost")
        .args(["worker"])
        .output()
        .unwrap();
    flow_tests::assert_exit(&out, 3);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("flow.metrics.listen"), "{err}");
    assert!(err.contains("such as `127.0.0.1:9464`"), "{err}");

    // A port in use: the worker says which setting to change, and stops
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = obs(d)
        .env("FLOW_METRICS__LISTEN", format!("127.0.0.1:{port}"))
        .args(["worker"])
        .output()
        .unwrap();
    flow_tests::assert_exit(&out, 3);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen for metrics on 127.0.0.1:{port}")),
        "{err}"
    );
}

/// Schedule lag and alerts: a schedule firing every second and a workflow that alerts on its
/// first failure; once the schedule is paused, the lag histogram has one observation per run
/// the schedule created and the alert counter one per alert the store holds.
#[test]
fn schedule_ticks_and_alerts_are_counted_as_the_store_records_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("flow.toml"),
        "[flow.schedules.every_second]\nworkflow = \"notify\"\ncron = \"* * * * * *\"\n",
    )
    .unwrap();
    enqueue_workflow(d, "fragile", "broken-1");
    let (_worker, port) = metrics_worker(d);
    let fired = |d: &Path| {
        json_of(d, &["runs", "list"])
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["run_id"].as_str().unwrap().starts_with("every_second@"))
            .count() as f64
    };
    flow_tests::wait_until(60, "two ticks fired", || fired(d) >= 2.0);
    let alerts = |d: &Path| json_of(d, &["alerts", "list"]);
    flow_tests::wait_until(60, "the alert delivered", || {
        let text = alerts(d).to_string();
        text.contains("fragile") && !text.contains("pending")
    });
    let out = obs(d)
        .args(["schedules", "pause", "every_second"])
        .output()
        .unwrap();
    flow_tests::assert_exit(&out, 0);
    // A pass that read the schedule before the pause may still fire its tick
    std::thread::sleep(std::time::Duration::from_millis(1500));

    let (_, text) = scrape(port);
    let samples = parse(&text);
    let ticks = fired(d);
    assert_eq!(
        value(
            &samples,
            "flow_schedule_lag_seconds_count",
            &[("schedule", "every_second")]
        ),
        ticks,
        "{text}"
    );
    let alerts = alerts(d);
    let stored = alerts.as_array().unwrap();
    assert_eq!(stored.len(), 1, "{alerts:#}");
    let kind = stored[0]["kind"].as_str().unwrap();
    assert_eq!(
        value(&samples, "flow_alerts_fired_total", &[("kind", kind)]),
        1.0,
        "{text}"
    );
}

fn enqueue_workflow(dir: &Path, workflow: &str, id: &str) {
    let out = obs(dir)
        .args(["enqueue", workflow, "--id", id])
        .output()
        .unwrap();
    flow_tests::assert_exit(&out, 0);
}

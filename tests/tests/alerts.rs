//! Alerts, driven as an operator meets them: `alerts_child run flaky` and `alerts_child worker`
//! in child processes, a real HTTP receiver on 127.0.0.1 in the test (it records every request
//! and answers 500 while told to), `alerts list` to read what the store keeps.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

const BIN: &str = env!("CARGO_BIN_EXE_alerts_child");
const SECRET: &str = "s3cr3t-token-value-42";

/// One request the receiver got, and the status it answered.
#[derive(Clone, Debug)]
struct Received {
    token: Option<String>,
    body: Value,
    status: u16,
}

/// An HTTP server on 127.0.0.1 that records every POST and answers 500 to the next `failing`
/// requests, 200 to the others.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    failing: Arc<AtomicU32>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let failing = Arc::new(AtomicU32::new(0));
        let (g, f) = (got.clone(), failing.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                let mut token = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        match name.to_ascii_lowercase().as_str() {
                            "content-length" => length = value.trim().parse().unwrap_or(0),
                            "x-token" => token = Some(value.trim().to_owned()),
                            _ => {}
                        }
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let fail = f
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                let status = if fail { 500 } else { 200 };
                g.lock().unwrap().push(Received {
                    token,
                    body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                    status,
                });
                let reason = if fail { "Internal Server Error" } else { "OK" };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        Receiver { url, got, failing }
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// The notices answered 200.
    fn accepted(&self) -> Vec<Value> {
        self.got()
            .into_iter()
            .filter(|r| r.status == 200)
            .map(|r| r.body)
            .collect()
    }
}

struct Env {
    dir: tempfile::TempDir,
    store: PathBuf,
    config: PathBuf,
    flag: PathBuf,
}

fn env(receiver: &Receiver, extra: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("flow.toml");
    std::fs::write(
        &config,
        format!(
            "[flow.alerts]\nbackoff = \"100ms\"\n{extra}\n[flow.alerts.webhook]\nurl = \"{}\"\nheader = \"X-Token\"\nsecret = \"{SECRET}\"\n",
            receiver.url
        ),
    )
    .unwrap();
    Env {
        store: dir.path().join("flow.redb"),
        flag: dir.path().join("upstream-down"),
        config,
        dir,
    }
}

impl Env {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(["--store", self.store.to_str().unwrap()])
            .args(["--config", self.config.to_str().unwrap()])
            .args(args)
            .env("FLOW_LOG_FORMAT", "json")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        cmd
    }

    fn input(&self) -> String {
        serde_json::to_string(&self.flag).unwrap()
    }

    /// `run flaky`, expecting `code`; returns the output.
    fn run(&self, code: i32) -> Output {
        let out = self
            .command(&["run", "flaky", "--input", &self.input()])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(code),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn alerts(&self) -> (Vec<Value>, String) {
        let out = self
            .command(&["--output", "json", "alerts", "list"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (serde_json::from_str(&text).unwrap(), text)
    }

    fn fail(&self, down: bool) {
        if down {
            std::fs::write(&self.flag, "down").unwrap();
        } else {
            let _ = std::fs::remove_file(&self.flag);
        }
    }

    fn worker(&self) -> Worker {
        Worker(
            self.command(&["worker"])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(self.dir.path().join("worker.log")).unwrap())
                .spawn()
                .unwrap(),
        )
    }

    fn enqueue(&self) {
        let out = self
            .command(&["enqueue", "flaky", "--input", &self.input()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A worker process, killed when dropped.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn deliveries(alert: &Value, sink: &str, notice: &str) -> Vec<Value> {
    alert["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["sink"] == sink && d["notice"] == notice)
        .cloned()
        .collect()
}

#[test]
fn three_failures_fire_one_alert_a_fourth_nothing_and_a_success_resolves_it() {
    let receiver = Receiver::start();
    let notices = tempfile::NamedTempFile::new().unwrap();
    let command = format!(
        "command = [\"sh\", \"-c\", \"cat >> '{}'\"]",
        notices.path().display()
    );
    let env = env(&receiver, &command);
    let mut logs = String::new();
    env.fail(true);
    for _ in 0..2 {
        logs += &String::from_utf8_lossy(&env.run(1).stderr);
    }
    assert!(receiver.got().is_empty(), "two failures fire nothing");
    logs += &String::from_utf8_lossy(&env.run(1).stderr);

    let got = receiver.got();
    assert_eq!(got.len(), 1, "the third failure fires one alert: {got:?}");
    let fired = &got[0];
    assert_eq!(
        fired.token.as_deref(),
        Some(SECRET),
        "the secret header is sent"
    );
    assert_eq!(fired.body["notice"], "fired");
    assert_eq!(fired.body["kind"], "consecutive-failures");
    assert_eq!(fired.body["workflow"], "flaky");
    assert_eq!(fired.body["failures"], 3);
    assert_eq!(fired.body["run_ids"].as_array().unwrap().len(), 3);
    assert!(fired.body["error"]
        .as_str()
        .unwrap()
        .contains("the upstream is down"));
    assert_eq!(fired.body["trace_id"].as_str().unwrap().len(), 32);
    let last_run = fired.body["run_ids"][2].as_str().unwrap();
    assert!(fired.body["inspect"]
        .as_str()
        .unwrap()
        .ends_with(&format!("runs show {last_run}")));
    let alert_id = fired.body["alert_id"].as_str().unwrap().to_owned();
    assert!(
        logs.contains("alert fired") && logs.contains(&alert_id),
        "the log sink reports the alert"
    );

    logs += &String::from_utf8_lossy(&env.run(1).stderr);
    assert_eq!(
        receiver.got().len(),
        1,
        "a fourth failure fires nothing new"
    );
    let (alerts, _) = env.alerts();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["state"], "open");
    assert_eq!(alerts[0]["failures"], 4);

    env.fail(false);
    logs += &String::from_utf8_lossy(&env.run(0).stderr);
    let got = receiver.got();
    assert_eq!(got.len(), 2, "the success sends one notice: {got:?}");
    assert_eq!(got[1].body["notice"], "resolved");
    assert_eq!(got[1].body["alert_id"], alert_id.as_str());
    assert_eq!(got[1].body["state"], "resolved");

    // The command read each notice on its standard input
    let read: Vec<Value> = std::fs::read_to_string(notices.path())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(read.len(), 2, "{read:?}");
    assert_eq!(read[0]["notice"], "fired");
    assert_eq!(read[1]["notice"], "resolved");
    assert_eq!(read[1]["alert_id"], alert_id.as_str());

    let (alerts, text) = env.alerts();
    assert_eq!(alerts.len(), 1);
    let alert = &alerts[0];
    assert_eq!(alert["alert_id"], alert_id.as_str());
    assert_eq!(alert["state"], "resolved");
    for notice in ["fired", "resolved"] {
        for sink in ["log", "webhook", "command"] {
            let d = deliveries(alert, sink, notice);
            assert_eq!(d.len(), 1, "{sink} {notice}: {alert}");
            assert_eq!(d[0]["state"], "delivered", "{sink} {notice}");
        }
    }
    // Nothing stored or printed holds the secret
    let table = env.command(&["alerts", "list"]).output().unwrap();
    let config = env.command(&["check-config"]).output().unwrap();
    for shown in [
        &logs,
        &text,
        &String::from_utf8_lossy(&table.stdout).into_owned(),
        &String::from_utf8_lossy(&config.stdout).into_owned(),
        &String::from_utf8_lossy(&std::fs::read(&env.store).unwrap()).into_owned(),
    ] {
        assert!(!shown.contains(SECRET), "the secret leaked: {shown}");
    }
    assert!(String::from_utf8_lossy(&table.stdout).contains(&alert_id));
}

#[test]
fn a_webhook_answering_500_is_retried_and_receives_the_alert_once() {
    let receiver = Receiver::start();
    receiver.failing.store(3, Ordering::SeqCst);
    let env = env(&receiver, "");
    env.fail(true);
    let _worker = env.worker();
    for _ in 0..3 {
        env.enqueue();
    }
    flow_tests::wait_until(60, "the alert accepted", || !receiver.accepted().is_empty());
    // Anything sent twice would arrive within a few passes of the deliverer
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let got = receiver.got();
    assert_eq!(
        got.len(),
        4,
        "three refused attempts, one accepted: {got:?}"
    );
    assert!(got[..3].iter().all(|r| r.status == 500));
    assert_eq!(receiver.accepted().len(), 1);
    assert!(got
        .iter()
        .all(|r| r.body["alert_id"] == got[0].body["alert_id"]));
    let (alerts, _) = env.alerts();
    assert_eq!(alerts.len(), 1);
    let webhook = deliveries(&alerts[0], "webhook", "fired");
    assert_eq!(webhook[0]["state"], "delivered");
    assert_eq!(webhook[0]["attempts"], 4);
}

#[test]
fn a_worker_killed_before_delivery_delivers_once_after_restart() {
    let receiver = Receiver::start();
    receiver.failing.store(u32::MAX, Ordering::SeqCst);
    let env = env(&receiver, "");
    env.fail(true);
    let worker = env.worker();
    for _ in 0..3 {
        env.enqueue();
    }
    // The alert is stored and its delivery refused: it is pending when the worker dies
    flow_tests::wait_until(60, "a refused attempt", || !receiver.got().is_empty());
    drop(worker);
    let (alerts, _) = env.alerts();
    assert_eq!(alerts.len(), 1);
    assert_eq!(
        deliveries(&alerts[0], "webhook", "fired")[0]["state"],
        "pending"
    );
    assert!(receiver.accepted().is_empty());

    receiver.failing.store(0, Ordering::SeqCst);
    let _worker = env.worker();
    flow_tests::wait_until(60, "the alert accepted", || !receiver.accepted().is_empty());
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(receiver.accepted().len(), 1, "{:?}", receiver.got());
    let (alerts, _) = env.alerts();
    assert_eq!(alerts.len(), 1, "the restart opened no second alert");
    assert_eq!(
        deliveries(&alerts[0], "webhook", "fired")[0]["state"],
        "delivered"
    );
    assert_eq!(
        deliveries(&alerts[0], "log", "fired")[0]["state"],
        "delivered"
    );
}

#[test]
fn bad_alert_settings_are_refused_with_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("flow.toml");
    for (toml, expected) in [
        (
            "[flow.alerts.webhook]\nurl = \"https://example.com/hook\"\n",
            "https webhooks are not supported",
        ),
        (
            "[flow.alerts.webhook]\nurl = \"http://127.0.0.1:9/hook\"\nheader = \"X-Token\"\n",
            "`header` is set without `secret`",
        ),
        (
            "[flow.alerts.webhook]\nurl = \"http://127.0.0.1:9/hook\"\nheader = \"X-Token\"\nsecret = \"tok\\u0001en-xyz\"\n",
            "not a valid HTTP header value",
        ),
        (
            "[flow.alerts]\ncooldown = \"soon\"\n",
            "`soon` is not a duration",
        ),
        ("[flow.alerts]\ncommand = [\"\"]\n", "the program to run"),
        ("[flow.alerts]\nwebhok = 1\n", "webhok"),
    ] {
        std::fs::write(&config, toml).unwrap();
        let out = Command::new(BIN)
            .args(["--config", config.to_str().unwrap(), "check-config"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{toml}: {stderr}");
        assert!(stderr.contains(expected), "{toml}: {stderr}");
        assert!(!stderr.contains("en-xyz"), "a secret is never shown: {stderr}");
    }
}

#[test]
fn a_run_that_needs_attention_fires_an_alert_resolved_when_it_succeeds() {
    let receiver = Receiver::start();
    let env = env(&receiver, "");
    let crash = env.dir.path().join("crash");
    std::fs::write(&crash, "").unwrap();
    let input = serde_json::to_string(&crash).unwrap();
    let out = env
        .command(&["run", "pay", "--id", "pay-1", "--input", &input])
        .output()
        .unwrap();
    assert!(!out.status.success(), "the step crashed the process");
    assert!(receiver.got().is_empty());

    std::fs::remove_file(&crash).unwrap();
    let out = env.command(&["runs", "resume", "pay-1"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = receiver.accepted();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["kind"], "needs-attention");
    assert_eq!(got[0]["notice"], "fired");
    assert_eq!(got[0]["run_ids"], serde_json::json!(["pay-1"]));
    assert!(got[0]["error"].as_str().unwrap().contains("charge"));

    let run = flow_tests::read_run(&env.store, "pay-1").unwrap();
    let key = run.attention.unwrap().step.key;
    let out = env
        .command(&["runs", "resolve", "pay-1", "--step", &key, "--rerun"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = env.command(&["runs", "resume", "pay-1"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = receiver.accepted();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1]["notice"], "resolved");
    assert_eq!(got[1]["alert_id"], got[0]["alert_id"]);
    assert_eq!(got[1]["resolved_by"], "pay-1");
}

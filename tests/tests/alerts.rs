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
    /// How long it takes to answer, in ms (a slow receiver).
    delay_ms: Arc<AtomicU32>,
}

impl Receiver {
    fn start() -> Receiver {
        Receiver::serve(None)
    }

    /// The same receiver behind TLS, with the test certificate for 127.0.0.1 that
    /// `tests/fixtures/tls/ca.pem` signed.
    fn start_tls() -> Receiver {
        use rustls_pki_types::pem::PemObject;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tls");
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(dir.join("server.pem"))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key =
            rustls_pki_types::PrivateKeyDer::from_pem_file(dir.join("server-key.pem")).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        Receiver::serve(Some(Arc::new(config)))
    }

    fn serve(tls: Option<Arc<rustls::ServerConfig>>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}/hook", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let failing = Arc::new(AtomicU32::new(0));
        let delay_ms = Arc::new(AtomicU32::new(0));
        let (g, f, d) = (got.clone(), failing.clone(), delay_ms.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (g, f, d) = (g.clone(), f.clone(), d.clone());
                let tls = tls.clone();
                // One thread per request: a slow answer keeps no other sender waiting
                std::thread::spawn(move || match &tls {
                    None => answer(stream, &g, &f, &d),
                    Some(config) => {
                        let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
                            return;
                        };
                        answer(rustls::StreamOwned::new(conn, stream), &g, &f, &d);
                    }
                });
            }
        });
        Receiver {
            url,
            got,
            failing,
            delay_ms,
        }
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

/// Reads one request from `stream`, records it, and answers 500 while `failing` counts down,
/// 200 after.
fn answer(
    mut stream: impl Read + Write,
    got: &Mutex<Vec<Received>>,
    failing: &AtomicU32,
    delay_ms: &AtomicU32,
) {
    let mut reader = BufReader::new(&mut stream);
    let mut length = 0;
    let mut token = None;
    loop {
        let mut line = String::new();
        // A client that gave up (a refused certificate, a timeout) ends the request
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
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
        return;
    }
    drop(reader);
    let fail = failing
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let status = if fail { 500 } else { 200 };
    got.lock().unwrap().push(Received {
        token,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        status,
    });
    std::thread::sleep(std::time::Duration::from_millis(u64::from(
        delay_ms.load(Ordering::SeqCst),
    )));
    let reason = if fail { "Internal Server Error" } else { "OK" };
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    let _ = stream.flush();
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
        self.enqueue_args(&["flaky", "--input", &self.input()]);
    }

    /// `enqueue ARGS…`, expecting success.
    fn enqueue_args(&self, args: &[&str]) {
        let out = self
            .command(&[&["enqueue"], args].concat())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A file in the test's directory, as a JSON string (a workflow's input).
    fn file(&self, name: &str, exists: bool) -> (PathBuf, String) {
        let path = self.dir.path().join(name);
        if exists {
            std::fs::write(&path, "").unwrap();
        }
        let json = serde_json::to_string(&path).unwrap();
        (path, json)
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
            "[flow.alerts.webhook]\nurl = \"ftp://example.com/hook\"\n",
            "`ftp:` is not a webhook scheme",
        ),
        (
            "[flow.alerts.webhook]\nurl = \"https://example.com/hook\"\nca_file = \"/nonexistent/ca.pem\"\n",
            "cannot read the CA file /nonexistent/ca.pem",
        ),
        (
            "[flow.alerts.max_duration]\nslwo = \"2h\"\n",
            "there is no workflow `slwo` in this binary; workflows: budget, flaky, nap, pay, slow",
        ),
        (
            "[flow.alerts.max_duration]\nslow = \"soon\"\n",
            "slow: `soon` is not a duration such as `90s` or `2h`, nor `off`",
        ),
        (
            "[flow.alerts.max_duration]\nslow = \"0s\"\n",
            "every run would alert at once",
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

/// The fired notices the receiver accepted, by kind.
fn fired(receiver: &Receiver, kind: &str) -> Vec<Value> {
    receiver
        .accepted()
        .into_iter()
        .filter(|b| b["notice"] == "fired" && b["kind"] == kind)
        .collect()
}

fn run_of(notice: &Value) -> String {
    notice["run_ids"][0].as_str().unwrap().to_owned()
}

#[test]
fn a_run_past_its_max_duration_alerts_once_whether_running_queued_or_sleeping_and_resolves_when_it_finishes(
) {
    let receiver = Receiver::start();
    let env = env(
        &receiver,
        // `nap` declares its max duration; `slow` gets one from settings
        "[flow.alerts.max_duration]\nslow = \"1s\"\n[flow.queues.serial]\nconcurrency = 1\n",
    );
    let (hold, held) = env.file("hold", true);
    let (_, free) = env.file("free", false);
    let _worker = env.worker();
    // `a` runs while `hold` exists, `b` waits in the queue behind it, `c` sleeps 3 s with no
    // process holding it, and `quick` finishes well within its max duration
    env.enqueue_args(&["slow", "--input", &held, "--id", "a", "--queue", "serial"]);
    env.enqueue_args(&["slow", "--input", &held, "--id", "b", "--queue", "serial"]);
    env.enqueue_args(&["nap", "--input", "3000", "--id", "c"]);
    env.enqueue_args(&["slow", "--input", &free, "--id", "quick"]);

    flow_tests::wait_until(30, "three max-duration alerts", || {
        fired(&receiver, "max-duration").len() == 3
    });
    let notices = fired(&receiver, "max-duration");
    let by_run: std::collections::BTreeMap<String, &Value> =
        notices.iter().map(|n| (run_of(n), n)).collect();
    assert_eq!(
        by_run.keys().collect::<Vec<_>>(),
        ["a", "b", "c"],
        "one alert per overdue run, none for `quick`: {notices:?}"
    );
    assert_eq!(by_run["a"]["run_status"], "running");
    assert_eq!(by_run["b"]["run_status"], "queued");
    assert_eq!(by_run["c"]["run_status"], "sleeping");
    for (run, notice) in &by_run {
        assert_eq!(notice["max_duration_ms"], 1000, "{run}");
        assert_eq!(notice["state"], "open");
        assert_eq!(notice["trace_id"].as_str().unwrap().len(), 32);
        let error = notice["error"].as_str().unwrap();
        assert!(
            error.contains(&format!("run {run} has not finished"))
                && error.contains("(max_duration 1s)"),
            "{error}"
        );
        assert!(notice["inspect"]
            .as_str()
            .unwrap()
            .ends_with(&format!("runs show {run}")));
    }

    // `c` wakes and finishes: its alert resolves; the others stay open and fire nothing new
    flow_tests::wait_until(30, "c resolved", || {
        receiver
            .accepted()
            .iter()
            .any(|b| b["notice"] == "resolved" && run_of(b) == "c")
    });
    assert_eq!(fired(&receiver, "max-duration").len(), 3, "once per run");
    let (alerts, _) = env.alerts();
    let state = |run: &str| {
        alerts
            .iter()
            .find(|a| a["run_ids"][0] == run)
            .map(|a| a["state"].as_str().unwrap().to_owned())
    };
    assert_eq!(state("a").as_deref(), Some("open"));
    assert_eq!(state("b").as_deref(), Some("open"));
    assert_eq!(state("quick"), None);

    std::fs::remove_file(&hold).unwrap();
    flow_tests::wait_until(30, "a and b resolved", || {
        receiver
            .accepted()
            .iter()
            .filter(|b| b["notice"] == "resolved")
            .count()
            == 3
    });
    // Anything sent twice would arrive within a few passes
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let got = receiver.accepted();
    assert_eq!(got.len(), 6, "three fired, three resolved: {got:?}");
    for notice in got.iter().filter(|b| b["notice"] == "resolved") {
        let fired = by_run[&run_of(notice)];
        assert_eq!(notice["alert_id"], fired["alert_id"]);
        assert_eq!(notice["resolved_by"], fired["run_ids"][0]);
    }
    let (alerts, _) = env.alerts();
    assert_eq!(alerts.len(), 3, "{alerts:?}");
    assert!(alerts
        .iter()
        .all(|a| a["kind"] == "max-duration" && a["state"] == "resolved"));
    assert!(alerts
        .iter()
        .all(|a| a["detail"]["max_duration_ms"] == 1000 && a["detail"]["kind"] == "max-duration"));
}

/// Two workers see each alert: one opens it, and one sends each notice, even to a receiver so
/// slow that the other worker's next delivery pass comes while the first is still sending (the
/// claim of [`flow::store::DeliveryOutcome::Claimed`]).
#[test]
fn two_workers_on_one_store_open_one_max_duration_alert_per_run() {
    let receiver = Receiver::start();
    receiver.delay_ms.store(1500, Ordering::SeqCst);
    let env = env(&receiver, "[flow.alerts.max_duration]\nslow = \"1s\"\n");
    let (hold, held) = env.file("hold", true);
    let shared = |mut cmd: Command| {
        cmd.env("FLOW_SHARING", "shared");
        cmd
    };
    let spawn = |n: u32| {
        Worker(
            shared(env.command(&["worker"]))
                .stdout(Stdio::null())
                .stderr(
                    std::fs::File::create(env.dir.path().join(format!("worker{n}.log"))).unwrap(),
                )
                .spawn()
                .unwrap(),
        )
    };
    let _one = spawn(1);
    let _two = spawn(2);
    for id in ["r1", "r2", "r3", "r4"] {
        let out = shared(env.command(&["enqueue", "slow", "--input", &held, "--id", id]))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    flow_tests::wait_until(30, "four max-duration alerts", || {
        fired(&receiver, "max-duration")
            .iter()
            .map(run_of)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            == 4
    });
    // Both workers look every second for three more seconds
    std::thread::sleep(std::time::Duration::from_secs(3));
    let out = shared(env.command(&["--output", "json", "alerts", "list"]))
        .output()
        .unwrap();
    let alerts: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(alerts.len(), 4, "one alert per run: {alerts:?}");
    let ids: std::collections::BTreeSet<_> = fired(&receiver, "max-duration")
        .iter()
        .map(|n| n["alert_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        ids.len(),
        4,
        "the receiver saw four alerts, whoever delivered them"
    );
    assert_eq!(
        fired(&receiver, "max-duration").len(),
        4,
        "each alert's notice was sent once: {:?}",
        receiver.got()
    );
    for alert in &alerts {
        let sent = deliveries(alert, "webhook", "fired");
        assert_eq!(sent[0]["state"], "delivered", "{alert}");
        assert_eq!(sent[0]["attempts"], 1, "{alert}");
        assert!(sent[0].get("claimed_by").is_none(), "{alert}");
    }
    std::fs::remove_file(&hold).unwrap();
}

#[test]
fn a_tripped_error_budget_alerts_once_per_run_with_its_figures_and_resolves_on_success() {
    let receiver = Receiver::start();
    let env = env(&receiver, "");
    let (flag, input) = env.file("refuse", true);
    let out = env
        .command(&["run", "budget", "--id", "b-1", "--input", &input])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logs = String::from_utf8_lossy(&out.stderr).into_owned();

    let got = fired(&receiver, "error-budget");
    assert_eq!(got.len(), 1, "{:?}", receiver.got());
    let alert = &got[0];
    assert_eq!(alert["workflow"], "budget");
    assert_eq!(alert["run_ids"], serde_json::json!(["b-1"]));
    assert_eq!(alert["budget"]["threshold"], "max_failures 3");
    assert_eq!(alert["budget"]["failed"], 3);
    assert_eq!(
        alert["budget"]["processed"], 7,
        "u0..u6 finished, one at a time"
    );
    assert_eq!(
        alert["budget"]["failed_units"],
        serde_json::json!(["u2", "u4", "u6"])
    );
    let error = alert["error"].as_str().unwrap();
    assert!(
        error.contains("error budget exceeded: max_failures 3 (3 of 7 units failed)")
            && error.contains("first failure: u2: u2 was refused"),
        "{error}"
    );
    assert!(
        logs.contains("alert fired") && logs.contains("error-budget"),
        "{logs}"
    );
    // No consecutive-failures alert: `budget` has no alert_after
    assert_eq!(receiver.accepted().len(), 1);

    // The same run trips its budget again when resumed: still one alert
    let out = env.command(&["runs", "resume", "b-1"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fired(&receiver, "error-budget").len(),
        1,
        "{:?}",
        receiver.got()
    );

    // Fixed and retried: the run succeeds and the alert resolves
    std::fs::remove_file(&flag).unwrap();
    let out = env
        .command(&["runs", "retry-failed", "b-1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = receiver.accepted();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1]["notice"], "resolved");
    assert_eq!(got[1]["alert_id"], alert["alert_id"]);
    assert_eq!(got[1]["resolved_by"], "b-1");
    let (alerts, _) = env.alerts();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["kind"], "error-budget");
    assert_eq!(alerts[0]["state"], "resolved");
    assert_eq!(alerts[0]["detail"]["threshold"], "max_failures 3");
    assert_eq!(
        alerts[0]["detail"]["failed_units"],
        serde_json::json!(["u2", "u4", "u6"])
    );
    assert_eq!(
        deliveries(&alerts[0], "webhook", "resolved")[0]["state"],
        "delivered"
    );
}

/// The tables of alerts in the store: (alerts, alerts with a pending delivery, per-run entries).
fn alert_tables(store: &std::path::Path) -> (u64, u64, u64) {
    use redb::{ReadableDatabase, ReadableTableMetadata, TableDefinition};
    // No process holds the store between the commands
    let db = redb::Database::open(store).unwrap();
    let txn = db.begin_read().unwrap();
    let len = |name: &str| -> u64 {
        match name {
            "alerts_by_run" => txn
                .open_table(TableDefinition::<(&str, &str), &str>::new(name))
                .map(|t| t.len().unwrap())
                .unwrap_or(0),
            "alerts_pending" => txn
                .open_table(TableDefinition::<&str, u64>::new(name))
                .map(|t| t.len().unwrap())
                .unwrap_or(0),
            _ => txn
                .open_table(TableDefinition::<&str, &[u8]>::new(name))
                .map(|t| t.len().unwrap())
                .unwrap_or(0),
        }
    };
    (len("alerts"), len("alerts_pending"), len("alerts_by_run"))
}

#[test]
fn runs_prune_deletes_settled_alerts_with_the_failed_runs_retention_and_counts_them_dry() {
    let receiver = Receiver::start();
    let env = env(&receiver, "cooldown = \"0s\"\n");
    // A: three failures, then a success: resolved, every notice delivered
    env.fail(true);
    for _ in 0..3 {
        env.run(1);
    }
    env.fail(false);
    env.run(0);
    // B: three more failures: open (a consecutive-failures alert only a success resolves)
    env.fail(true);
    for _ in 0..3 {
        env.run(1);
    }
    // C: an error budget tripped in a failed run: open while that run exists
    let (_, refuse) = env.file("refuse", true);
    let out = env
        .command(&["run", "budget", "--id", "b-1", "--input", &refuse])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let (alerts, _) = env.alerts();
    assert_eq!(alerts.len(), 3, "{alerts:?}");
    assert_eq!(alert_tables(&env.store), (3, 0, 1));

    // Kept for a week: nothing is old enough
    let out = env
        .command(&[
            "--output",
            "json",
            "runs",
            "prune",
            "--older-than",
            "7d",
            "--dry-run",
        ])
        .output()
        .unwrap();
    let counted: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(counted["alerts"], 0, "{counted}");

    let out = env
        .command(&["runs", "prune", "--older-than", "0s", "--dry-run"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("would delete 8 runs, ")
            && text.contains(" and 2 settled alerts; nothing was deleted"),
        "A is resolved, C's run goes with the prune, B stays open: {text}"
    );
    assert_eq!(
        alert_tables(&env.store),
        (3, 0, 1),
        "a dry run deletes nothing"
    );

    let out = env
        .command(&["--output", "json", "runs", "prune", "--older-than", "0s"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pruned: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pruned["runs"], 8, "{pruned}");
    assert_eq!(pruned["alerts"], 2, "{pruned}");
    assert_eq!(pruned["alerts_older_than"], "0s");
    let (alerts, _) = env.alerts();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["kind"], "consecutive-failures");
    assert_eq!(alerts[0]["state"], "open");
    assert_eq!(
        alert_tables(&env.store),
        (1, 0, 0),
        "C's per-run entry went with it"
    );

    // B's streak goes on: the next success resolves it, and the alert that stayed is it
    env.fail(false);
    env.run(0);
    let (alerts, _) = env.alerts();
    assert_eq!(alerts[0]["state"], "resolved");
    let out = env
        .command(&["--output", "json", "runs", "prune", "--older-than", "0s"])
        .output()
        .unwrap();
    let pruned: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pruned["alerts"], 1, "{pruned}");
    assert_eq!(alert_tables(&env.store), (0, 0, 0));
    let notices: Vec<(String, String)> = receiver
        .accepted()
        .iter()
        .map(|b| {
            (
                b["kind"].as_str().unwrap().to_owned(),
                b["notice"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let pair = |k: &str, n: &str| (k.to_owned(), n.to_owned());
    assert_eq!(
        notices,
        [
            pair("consecutive-failures", "fired"),
            pair("consecutive-failures", "resolved"),
            pair("consecutive-failures", "fired"),
            pair("error-budget", "fired"),
            pair("consecutive-failures", "resolved"),
        ],
        "pruning sent nothing"
    );
}

#[test]
fn an_https_webhook_is_delivered_to_a_receiver_whose_ca_is_configured() {
    let receiver = Receiver::start_tls();
    assert!(receiver.url.starts_with("https://127.0.0.1:"));
    let ca = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tls/ca.pem");
    let trusted = env(&receiver, "");
    let config = std::fs::read_to_string(&trusted.config).unwrap();
    std::fs::write(
        &trusted.config,
        format!(
            "{config}ca_file = {}\n",
            serde_json::to_string(&ca).unwrap()
        ),
    )
    .unwrap();
    trusted.fail(true);
    for _ in 0..3 {
        trusted.run(1);
    }
    let got = receiver.accepted();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["kind"], "consecutive-failures");
    assert_eq!(receiver.got()[0].token.as_deref(), Some(SECRET));

    // Without the CA the certificate is refused, and `alerts list` says why
    let untrusted = env(&receiver, "");
    untrusted.fail(true);
    for _ in 0..3 {
        untrusted.run(1);
    }
    assert_eq!(receiver.got().len(), 1, "nothing reached the receiver");
    let (alerts, _) = untrusted.alerts();
    let webhook = &deliveries(&alerts[0], "webhook", "fired")[0];
    assert_eq!(webhook["state"], "pending");
    let error = webhook["last_error"].as_str().unwrap();
    assert!(
        error.contains("the webhook could not be reached"),
        "{error}"
    );
}

#[test]
fn the_runbook_names_each_workflows_alert_conditions_and_where_alerts_go_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("flow.toml");
    std::fs::write(
        &config,
        format!(
            "[flow.alerts]\ncommand = [\"/usr/local/bin/notify\", \"--team\", \"data\"]\ncooldown = \"30m\"\n\
             [flow.alerts.max_duration]\nslow = \"2h\"\n\
             [flow.alerts.webhook]\nurl = \"https://bot:pw@alerts.example.com/flow?token=abc123\"\nheader = \"X-Token\"\nsecret = \"{SECRET}\"\n"
        ),
    )
    .unwrap();
    let runbook = |format: &str| {
        let out = Command::new(BIN)
            .args([
                "--config",
                config.to_str().unwrap(),
                "runbook",
                "--format",
                format,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let text = runbook("markdown");
    let section = |name: &str| {
        let start = text.find(&format!("## Workflow `{name}`")).unwrap();
        let rest = &text[start..];
        let end = rest[3..].find("\n## ").map_or(rest.len(), |e| e + 3);
        rest[..end].to_owned()
    };
    let flaky = section("flaky");
    assert!(flaky.contains("- alerts on:\n  - 3 consecutive failed runs (kind `consecutive-failures`; once per streak, no new one within the cool-down of 30m"), "{flaky}");
    assert!(
        flaky.contains("run duration: no max_duration set"),
        "{flaky}"
    );
    assert!(
        !flaky.contains("error budget"),
        "flaky runs no units: {flaky}"
    );
    let nap = section("nap");
    assert!(
        nap.contains("a run not finished 1s after it was created, queued, running or sleeping (kind `max-duration`, declared on the workflow; `[flow.alerts.max_duration]` `nap = \"...\"` or `\"off\"` overrides it"),
        "{nap}"
    );
    let slow = section("slow");
    assert!(
        slow.contains("a run not finished 2h after it was created, queued, running or sleeping (kind `max-duration`, set in settings"),
        "{slow}"
    );
    let budget = section("budget");
    assert!(
        budget.contains("an error budget of a units fan-out tripped (kind `error-budget`"),
        "{budget}"
    );
    for workflow in [&flaky, &slow, &budget] {
        assert!(workflow.contains("a run that needs attention (kind `needs-attention`"));
        assert!(workflow.contains(
            "- alerts go to:\n  - the log (an `alert fired` error line)\n  \
             - webhook: POST https://alerts.example.com/flow with header `X-Token` (its secret value is not shown)\n  \
             - command: `/usr/local/bin/notify --team data` (the notice's JSON on standard input)"
        ), "{workflow}");
    }
    let json: Value = serde_json::from_str(&runbook("json")).unwrap();
    let slow = json["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "slow")
        .unwrap();
    assert_eq!(slow["max_duration_ms"], 7_200_000);
    assert_eq!(slow["alerts"]["sinks"].as_array().unwrap().len(), 3);
    // An operator turns the declared one off
    std::fs::write(&config, "[flow.alerts.max_duration]\nnap = \"off\"\n").unwrap();
    let off = runbook("markdown");
    assert!(
        off.contains("run duration: the declared max_duration is turned off in settings (`[flow.alerts.max_duration]` `nap = \"off\"`)"),
        "{off}"
    );
    for shown in [&text, &json.to_string()] {
        for secret in [SECRET, "abc123", "bot:pw"] {
            assert!(!shown.contains(secret), "{secret} is shown");
        }
    }
}

#[test]
fn a_worker_with_a_retention_deletes_settled_alerts_at_start() {
    let receiver = Receiver::start();
    let env = env(&receiver, "");
    env.fail(true);
    for _ in 0..3 {
        env.run(1);
    }
    env.fail(false);
    env.run(0);
    let (alerts, _) = env.alerts();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["state"], "resolved");
    assert_eq!(alert_tables(&env.store), (1, 0, 0));

    let worker = Worker(
        env.command(&["worker"])
            .env("FLOW_RETENTION", "0s")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(env.dir.path().join("worker.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    flow_tests::wait_until(30, "the settled alert pruned", || env.alerts().0.is_empty());
    drop(worker);
    assert_eq!(alert_tables(&env.store), (0, 0, 0));
    let log = std::fs::read_to_string(env.dir.path().join("worker.log")).unwrap();
    assert!(
        log.contains("pruned finished runs and settled alerts past their retention")
            && log.contains("\"alerts\":1"),
        "{log}"
    );
}

//! OpenTelemetry traces through the real binary (built with the `otel` feature): an OTLP/HTTP
//! receiver on 127.0.0.1, started here, decodes every `POST /v1/traces` with
//! `opentelemetry-proto`'s messages; the test reads what arrived.
//!
//! - a run killed with SIGKILL mid-run and resumed by a new process is one trace: the stored
//!   trace id in both processes' exports, every step span of both under the run's span;
//! - `--traceparent` (and `TRACEPARENT`) makes a run a child of the caller's span;
//! - step spans carry step, key, attempt, error class and retry delay; a failed attempt has a
//!   span event and an error status;
//! - the headers of `[flow.otel]` reach the collector and never the logs.

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

/// One span as the receiver decoded it.
#[derive(Clone, Debug)]
struct Received {
    /// Which export request brought it (0 for the first).
    request: usize,
    service: String,
    trace_id: String,
    span_id: String,
    /// Empty for a root span.
    parent: String,
    name: String,
    attributes: BTreeMap<String, String>,
    events: Vec<(String, BTreeMap<String, String>)>,
    /// 0 unset, 1 ok, 2 error.
    status: i32,
}

impl Received {
    fn attr(&self, key: &str) -> &str {
        self.attributes.get(key).map_or("", String::as_str)
    }
}

#[derive(Default)]
struct Inbox {
    requests: usize,
    /// The `x-api-key` header of each request.
    keys: Vec<Option<String>>,
    spans: Vec<Received>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(n)) => n.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn attributes(list: &[KeyValue]) -> BTreeMap<String, String> {
    list.iter()
        .map(|kv| (kv.key.clone(), text(&kv.value)))
        .collect()
}

/// An OTLP/HTTP receiver on 127.0.0.1, on its own runtime thread, kept until the test ends.
struct Receiver {
    port: u16,
    inbox: Arc<Mutex<Inbox>>,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    fn start() -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let inbox = Arc::new(Mutex::new(Inbox::default()));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(receive))
            .with_state(inbox.clone());
        runtime.spawn(async move { axum::serve(listener, app).await });
        Receiver {
            port,
            inbox,
            _runtime: runtime,
        }
    }

    fn spans(&self) -> Vec<Received> {
        self.inbox.lock().unwrap().spans.clone()
    }

    fn requests(&self) -> usize {
        self.inbox.lock().unwrap().requests
    }

    fn keys(&self) -> Vec<Option<String>> {
        self.inbox.lock().unwrap().keys.clone()
    }

    /// The spans of one trace.
    fn trace(&self, trace_id: &str) -> Vec<Received> {
        let spans = self.spans();
        spans
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect()
    }
}

async fn receive(
    axum::extract::State(inbox): axum::extract::State<Arc<Mutex<Inbox>>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> (
    axum::http::StatusCode,
    [(&'static str, &'static str); 1],
    Vec<u8>,
) {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert_eq!(content_type, "application/x-protobuf");
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf request");
    let mut inbox = inbox.lock().unwrap();
    let index = inbox.requests;
    inbox.requests += 1;
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    inbox.keys.push(key);
    for resource in request.resource_spans {
        let service = resource
            .resource
            .as_ref()
            .map(|r| attributes(&r.attributes))
            .and_then(|a| a.get("service.name").cloned())
            .unwrap_or_default();
        for scope in resource.scope_spans {
            for span in scope.spans {
                inbox.spans.push(Received {
                    request: index,
                    service: service.clone(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent: hex(&span.parent_span_id),
                    name: span.name.clone(),
                    attributes: attributes(&span.attributes),
                    events: span
                        .events
                        .iter()
                        .map(|e| (e.name.clone(), attributes(&e.attributes)))
                        .collect(),
                    status: span.status.as_ref().map_or(0, |s| s.code),
                });
            }
        }
    }
    (
        axum::http::StatusCode::OK,
        [("content-type", "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}

const SECRET: &str = "s3cret-collector-key";

/// A store directory whose `flow.toml` exports to `receiver`.
fn setup(receiver: &Receiver) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("flow.toml"),
        format!(
            r#"[flow.otel]
endpoint = "http://127.0.0.1:{}"
export_every = "100ms"
service_name = "obs-test"

[flow.otel.headers]
x-api-key = "{SECRET}"
"#,
            receiver.port
        ),
    )
    .unwrap();
    dir
}

fn obs(dir: &Path) -> Command {
    let mut cmd = flow_tests::child_command(env!("CARGO_BIN_EXE_obs_child"), dir);
    cmd.env_remove("TRACEPARENT");
    cmd
}

#[test]
fn a_run_killed_and_resumed_in_another_process_is_one_trace() {
    let receiver = Receiver::start();
    let dir = setup(&receiver);
    let input = r#"{"steps": 10, "pause_ms": 300}"#;
    // Strict durability: a step whose span was sent has its checkpoint on disk, so the kill
    // cannot make the next process execute it again
    let mut first = obs(dir.path())
        .args(["run", "chatty", "--id", "crash-1", "--input", input])
        .env("FLOW_DURABILITY", "strict")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let steps = |spans: &[Received]| {
        spans
            .iter()
            .filter(|s| s.name == "obs_child::say_hello")
            .count()
    };
    flow_tests::wait_until(30, "two step spans of the first process", || {
        steps(&receiver.spans()) >= 2
    });
    first.kill().unwrap(); // SIGKILL: the first process's `run` span never ends
    first.wait().unwrap();
    // A request that arrived just before the kill is decoded by now
    std::thread::sleep(std::time::Duration::from_millis(300));
    let before_kill = receiver.requests();

    let out = obs(dir.path())
        .args(["run", "chatty", "--id", "crash-1", "--input", input])
        .output()
        .unwrap();
    flow_tests::assert_exit(&out, 0);
    let run = flow_tests::read_run(&dir.path().join("flow.redb"), "crash-1").unwrap();
    assert_eq!(run.executions, 2);

    // Everything the collector got for the run is in the run's stored trace
    let spans = receiver.trace(&run.trace_id);
    assert!(spans.iter().all(|s| s.service == "obs-test"), "{spans:#?}");
    let first_steps: Vec<&Received> = spans
        .iter()
        .filter(|s| s.name == "obs_child::say_hello" && s.request < before_kill)
        .collect();
    let second_steps: Vec<&Received> = spans
        .iter()
        .filter(|s| s.name == "obs_child::say_hello" && s.request >= before_kill)
        .collect();
    assert!(first_steps.len() >= 2, "{spans:#?}");
    assert!(!second_steps.is_empty(), "{spans:#?}");
    // No step span of the run is in another trace
    let elsewhere = receiver
        .spans()
        .into_iter()
        .filter(|s| s.name == "obs_child::say_hello" && s.trace_id != run.trace_id)
        .count();
    assert_eq!(elsewhere, 0);
    // The resumed process replayed the first one's steps: no key executed twice
    let keys = |list: &[&Received]| -> Vec<String> {
        list.iter().map(|s| s.attr("key").to_owned()).collect()
    };
    let (k1, k2) = (keys(&first_steps), keys(&second_steps));
    assert!(k1.iter().all(|k| !k2.contains(k)), "{k1:?} {k2:?}");
    assert!(k1.len() + k2.len() <= 10);

    // One root: the run's span, named after the workflow, exported by the process that
    // finished it; the executions and every step of both processes hang under it
    let roots: Vec<&Received> = spans.iter().filter(|s| s.parent.is_empty()).collect();
    assert_eq!(roots.len(), 1, "{spans:#?}");
    let root = roots[0];
    assert_eq!(root.name, "chatty");
    assert_eq!(root.attr("run_id"), "crash-1");
    assert_eq!(root.attr("status"), "succeeded");
    assert_eq!(root.attr("executions"), "2");
    assert_eq!(root.status, 1);
    assert!(root.request >= before_kill);
    for span in first_steps.iter().chain(&second_steps) {
        assert_eq!(span.parent, root.span_id, "{span:#?}");
    }
    let executions: Vec<&Received> = spans.iter().filter(|s| s.name == "run").collect();
    assert_eq!(
        executions.len(),
        1,
        "only the resumed execution's span ended"
    );
    assert_eq!(executions[0].parent, root.span_id);
    assert_eq!(executions[0].attr("run_id"), "crash-1");

    // The header went to the collector with every request, and never to the logs
    let sent = receiver.keys();
    assert!(!sent.is_empty());
    assert!(
        sent.iter().all(|k| k.as_deref() == Some(SECRET)),
        "{sent:?}"
    );
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(!logs.contains(SECRET));
    let config = obs(dir.path()).arg("check-config").output().unwrap();
    flow_tests::assert_exit(&config, 0);
    let shown = String::from_utf8_lossy(&config.stdout);
    assert!(
        shown.contains("x-api-key") && !shown.contains(SECRET),
        "{shown}"
    );
}

#[test]
fn a_traceparent_makes_the_run_a_child_and_steps_carry_their_attempts() {
    let receiver = Receiver::start();
    let dir = setup(&receiver);
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let traceparent = format!("00-{caller_trace}-{caller_span}-01");
    let out = obs(dir.path())
        .args([
            "run",
            "report",
            "--id",
            "tp-1",
            "--traceparent",
            &traceparent,
        ])
        .args(["--input", r#"{"render_flaky": 1}"#])
        .output()
        .unwrap();
    flow_tests::assert_exit(&out, 0);
    let run = flow_tests::read_run(&dir.path().join("flow.redb"), "tp-1").unwrap();
    assert_eq!(run.trace_id, caller_trace);
    assert_eq!(run.traceparent.as_deref(), Some(traceparent.as_str()));

    let shown = obs(dir.path())
        .args(["runs", "show", "tp-1"])
        .output()
        .unwrap();
    flow_tests::assert_exit(&shown, 0);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains(&format!("trace id:   {caller_trace}")),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("caller:     span {caller_span}")),
        "{shown}"
    );

    let spans = receiver.trace(caller_trace);
    // The run's span is the caller's child; everything else is the run's
    let root = spans
        .iter()
        .find(|s| s.name == "report")
        .unwrap_or_else(|| panic!("{spans:#?}"));
    assert_eq!(root.parent, caller_span);
    assert_eq!(root.attr("status"), "succeeded");
    for span in spans.iter().filter(|s| s.name != "report") {
        assert_eq!(span.parent, root.span_id, "{span:#?}");
    }

    let fetch: Vec<&Received> = spans
        .iter()
        .filter(|s| s.name == "obs_child::fetch")
        .collect();
    assert_eq!(fetch.len(), 1);
    assert_eq!(fetch[0].attr("step"), "obs_child::fetch");
    assert_eq!(fetch[0].attr("attempt"), "1");
    assert_eq!(fetch[0].attr("key").len(), 32);
    assert_eq!(fetch[0].status, 0);

    let mut render: Vec<&Received> = spans
        .iter()
        .filter(|s| s.name == "obs_child::render")
        .collect();
    render.sort_by_key(|s| s.attr("attempt").to_owned());
    assert_eq!(render.len(), 2, "{spans:#?}");
    let (failed, retried) = (render[0], render[1]);
    assert_eq!(failed.attr("attempt"), "1");
    assert_eq!(failed.attr("error_class"), "transient");
    let delay: u64 = failed.attr("retry_delay_ms").parse().unwrap();
    assert!(delay <= 2, "{failed:#?}");
    assert_eq!(failed.status, 2);
    let (event, fields) = failed
        .events
        .iter()
        .find(|(name, _)| name.starts_with("attempt failed"))
        .unwrap_or_else(|| panic!("no event for the failed attempt: {failed:#?}"));
    assert!(event.contains("retrying"), "{event}");
    assert_eq!(fields.get("class").map(String::as_str), Some("transient"));
    assert_eq!(fields.get("next_attempt").map(String::as_str), Some("2"));
    assert_eq!(retried.attr("attempt"), "2");
    assert_eq!(retried.attr("key"), failed.attr("key"));
    assert_eq!(retried.attr("error_class"), "");
    assert_eq!(retried.status, 0);

    // From the environment, on `enqueue` through a worker's operator socket: the worker
    // executes the run as a child of that caller
    let worker = flow_tests::KillOnDrop(
        obs(dir.path())
            .arg("worker")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    flow_tests::wait_until(60, "the worker's socket", || {
        dir.path().join("flow.redb.sock").exists()
    });
    let (queued_trace, queued_caller) = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
    let out = obs(dir.path())
        .args(["enqueue", "report", "--id", "tp-2", "--input", "{}"])
        .env(
            "TRACEPARENT",
            format!("00-{queued_trace}-{queued_caller}-01"),
        )
        .output()
        .unwrap();
    flow_tests::assert_exit(&out, 0);
    flow_tests::wait_until(30, "the worker's run span", || {
        receiver
            .trace(queued_trace)
            .iter()
            .any(|s| s.name == "report" && s.parent == queued_caller)
    });
    let steps = receiver.trace(queued_trace);
    assert!(
        steps.iter().any(|s| s.name == "obs_child::render"),
        "{steps:#?}"
    );
    drop(worker);

    // A value that is not a traceparent is refused before anything is stored
    let out = obs(dir.path())
        .args(["run", "report", "--id", "tp-3", "--input", "{}"])
        .args(["--traceparent", "00-xyz"])
        .output()
        .unwrap();
    flow_tests::assert_exit(&out, 2);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("00-<32 hex digits"), "{said}");
    assert!(flow_tests::read_run(&dir.path().join("flow.redb"), "tp-3").is_none());
}

#[test]
fn a_sampling_of_zero_exports_nothing_and_bad_settings_exit_3() {
    let receiver = Receiver::start();
    let dir = setup(&receiver);
    let out = obs(dir.path())
        .args(["run", "report", "--id", "s-1", "--input", "{}"])
        .env("FLOW_OTEL__SAMPLING", "0")
        .output()
        .unwrap();
    flow_tests::assert_exit(&out, 0);
    let run = flow_tests::read_run(&dir.path().join("flow.redb"), "s-1").unwrap();
    assert!(receiver.trace(&run.trace_id).is_empty());

    for (var, value, said) in [
        ("FLOW_OTEL__PROTOCOL", "grpc", "4318"),
        ("FLOW_OTEL__ENDPOINT", "127.0.0.1:4318", "http://"),
        ("FLOW_OTEL__SAMPLING", "1.5", "flow.otel.sampling"),
    ] {
        let out = obs(dir.path())
            .args(["run", "report", "--id", "s-2", "--input", "{}"])
            .env(var, value)
            .output()
            .unwrap();
        flow_tests::assert_exit(&out, 3);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(said), "{var}={value}: {stderr}");
    }
}

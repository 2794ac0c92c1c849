//! The web console over HTTP, served by the real binary (`ui`, and `worker` with
//! `flow.ui.listen`) on 127.0.0.1: the runs page with its counts and filters, a run's page with
//! its timeline and advice, what the user typed shown as text (never markup), the cancel button
//! of a live run, and the bearer token required beyond loopback.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// A run's record, read from the store by another thread (the test's runtime must not block).
async fn stored(store: &Path, id: &str) -> flow_runtime::store::RunRecord {
    let (store, id) = (store.to_path_buf(), id.to_owned());
    tokio::task::spawn_blocking(move || flow_tests::read_run(&store, &id))
        .await
        .unwrap()
        .unwrap()
}

fn child(dir: &Path) -> Command {
    flow_tests::console_command(env!("CARGO_BIN_EXE_console_child"), dir)
}

fn run(dir: &Path, args: &[&str], code: i32) {
    let out = child(dir).args(args).output().unwrap();
    flow_tests::assert_exit(&out, code);
}

/// A child process killed when the test ends, whatever happens.
struct Server {
    child: Child,
    base: String,
    /// The lines of its stderr, as they come.
    stderr: mpsc::Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines_of(read: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(read).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_for(
    rx: &mpsc::Receiver<String>,
    what: &str,
    find: impl Fn(&str) -> Option<String>,
) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(found) = find(&line) {
                    return found;
                }
            }
            Err(_) => break,
        }
    }
    panic!("timed out waiting for {what}");
}

/// `ui` with `args`, its address read from the line it prints.
fn ui(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
    let mut cmd = child(dir);
    cmd.arg("ui")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = lines_of(child.stdout.take().unwrap());
    let stderr = lines_of(child.stderr.take().unwrap());
    let base = wait_for(&stdout, "the console's address", |l| {
        l.strip_prefix("web console: ")
            .map(|u| u.trim_end_matches('/').to_owned())
    });
    Server {
        child,
        base,
        stderr,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn get(url: &str) -> (u16, String) {
    let response = client().get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// The `data-status` count of the runs page, or 0.
fn count(page: &str, status: &str) -> u64 {
    let marker = format!("data-status=\"{status}\">{status} <span class=\"n\">");
    page.split_once(&marker)
        .and_then(|(_, rest)| rest.split_once('<'))
        .map_or(0, |(n, _)| n.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runs_page_counts_and_filters_and_a_run_page_draws_its_timeline() {
    let dir = tempfile::tempdir().unwrap();
    run(
        dir.path(),
        &["run", "boom", "--input", "\"plain\"", "--id", "boom-1"],
        1,
    );
    run(
        dir.path(),
        &[
            "run",
            "fanout",
            "--input",
            r#"{"n": 50, "fail_every": 7}"#,
            "--id",
            "fan-1",
        ],
        1,
    );
    run(
        dir.path(),
        &[
            "run",
            "slow",
            "--input",
            r#"{"steps": 3, "ms": 20}"#,
            "--id",
            "slow-1",
        ],
        0,
    );
    let server = ui(dir.path(), &["--port", "0"], &[]);
    let base = &server.base;

    let (status, page) = get(&format!("{base}/runs")).await;
    assert_eq!(status, 200, "{page}");
    for id in ["boom-1", "fan-1", "slow-1"] {
        assert!(
            page.contains(&format!("href=\"/run?id={id}\"")),
            "{id} missing: {page}"
        );
    }
    assert_eq!(count(&page, "failed"), 2, "{page}");
    assert_eq!(count(&page, "succeeded"), 1, "{page}");
    assert!(
        page.contains("<meta http-equiv=\"refresh\" content=\"5\">"),
        "auto-refresh"
    );

    let (_, failed) = get(&format!("{base}/runs?status=failed")).await;
    assert!(failed.contains("/run?id=boom-1") && failed.contains("/run?id=fan-1"));
    assert!(!failed.contains("/run?id=slow-1"), "{failed}");
    let (_, by_workflow) = get(&format!("{base}/runs?workflow=slow")).await;
    assert!(by_workflow.contains("/run?id=slow-1") && !by_workflow.contains("/run?id=boom-1"));
    let (_, by_text) = get(&format!("{base}/runs?q=an-")).await;
    assert!(by_text.contains("/run?id=fan-1") && !by_text.contains("/run?id=slow-1"));
    // Created in the last hour: all three; in the last 0 s: none
    let (_, recent) = get(&format!("{base}/runs?since=1h")).await;
    assert_eq!(
        count(&recent, "failed") + count(&recent, "succeeded"),
        3,
        "{recent}"
    );
    let (_, none) = get(&format!("{base}/runs?since=0s")).await;
    assert!(
        none.contains("No runs match") && none.contains("<strong>0</strong> runs"),
        "{none}"
    );
    let (code, _) = get(&format!("{base}/runs?since=lately")).await;
    assert_eq!(code, 400);
    let (code, bad) = get(&format!("{base}/runs?status=exploded")).await;
    assert_eq!(code, 400);
    assert!(bad.contains("not a run status"), "{bad}");

    // The slow run: one bar per step, all succeeded, its output
    let (code, slow) = get(&format!("{base}/run?id=slow-1")).await;
    assert_eq!(code, 200, "{slow}");
    assert_eq!(slow.matches("class=\"bar succeeded\"").count(), 3, "{slow}");
    assert!(slow.contains("<pre id=\"output\">3</pre>"), "{slow}");
    assert!(
        !slow.contains("http-equiv=\"refresh\""),
        "a finished run does not refresh"
    );

    // The fan-out: the units aggregated into a few bars, failures red, the advice of `runs show`
    let (_, fan) = get(&format!("{base}/run?id=fan-1")).await;
    assert!(fan.contains("units (50)"), "{fan}");
    assert!(fan.contains("class=\"bar failed\""), "{fan}");
    assert!(
        fan.matches("class=\"bar ").count() <= 3,
        "units are aggregated: {fan}"
    );
    assert!(fan.contains("Failed units (8)"), "{fan}");
    assert!(
        fan.contains("item 0 refused") && fan.contains("item 49 refused"),
        "{fan}"
    );
    assert!(
        fan.contains("console_child runs retry-failed fan-1"),
        "the next: advice: {fan}"
    );
    assert!(fan.contains(">Retry failed units</a>"), "{fan}");
    assert!(
        fan.contains(
            "<pre id=\"input\">{\n  &quot;fail_every&quot;: 7,\n  &quot;n&quot;: 50\n}</pre>"
        ),
        "pretty input: {fan}"
    );

    let (code, missing) = get(&format!("{base}/run?id=nobody")).await;
    assert_eq!(code, 400);
    assert!(missing.contains("nobody"), "{missing}");

    // Another host name is refused without a token: a web page cannot rebind a name to it
    let response = client()
        .get(format!("{base}/runs"))
        .header("Host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    // A form posted from another site is refused, and nothing is done
    let response = client()
        .post(format!("{base}/run/cancel"))
        .header("Origin", "http://evil.example")
        .form(&[("id", "slow-1")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_users_typed_is_shown_as_text_never_as_markup() {
    let dir = tempfile::tempdir().unwrap();
    let evil = "<script>alert('x')</script>";
    run(
        dir.path(),
        &[
            "run",
            "boom",
            "--input",
            &serde_json::to_string(evil).unwrap(),
            "--id",
            "xss-1",
        ],
        1,
    );
    let server = ui(dir.path(), &["--port", "0"], &[]);
    let base = &server.base;

    let response = client()
        .get(format!("{base}/run?id=xss-1"))
        .send()
        .await
        .unwrap();
    let csp = response
        .headers()
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    let page = response.text().await.unwrap();
    assert!(!page.contains("<script"), "raw markup on the page: {page}");
    let shown = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;";
    assert!(
        page.contains(&format!("<pre id=\"input\">&quot;{shown}&quot;</pre>")),
        "{page}"
    );
    assert!(
        page.contains(&format!("exploded on {shown}")),
        "the error: {page}"
    );

    let (_, runs) = get(&format!("{base}/runs")).await;
    assert!(!runs.contains("<script"), "{runs}");
    assert!(runs.contains(&format!("exploded on {shown}")), "{runs}");

    // A run id cannot hold markup, and the refusal shows it as text; so do the filters
    let (code, page) = get(&format!("{base}/run?id=%3Cscript%3Ealert(1)%3C/script%3E")).await;
    assert_eq!(code, 400);
    assert!(!page.contains("<script"), "{page}");
    assert!(page.contains("&lt;script&gt;alert(1)"), "{page}");
    let (_, page) = get(&format!(
        "{base}/runs?q=%22%3E%3Cscript%3E&workflow=%3Cscript%3E"
    ))
    .await;
    assert!(!page.contains("<script"), "{page}");
    assert!(
        page.contains("value=\"&quot;&gt;&lt;script&gt;\""),
        "{page}"
    );
    let (_, page) = get(&format!("{base}/run/cancel?id=a%22%3E%3Cscript%3E")).await;
    assert!(!page.contains("<script"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_loopback_every_request_needs_the_token() {
    let dir = tempfile::tempdir().unwrap();
    // Without a token it refuses to start
    let out = child(dir.path())
        .args(["ui", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    flow_tests::assert_exit(&out, 3);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("beyond loopback, without a token") && stderr.contains("FLOW_UI__TOKEN"),
        "{stderr}"
    );

    // A queued run, which a cancel would change
    run(
        dir.path(),
        &[
            "enqueue",
            "slow",
            "--input",
            r#"{"steps": 1, "ms": 1}"#,
            "--id",
            "queued-1",
        ],
        0,
    );
    let server = ui(
        dir.path(),
        &["--listen", "0.0.0.0:0"],
        &[("FLOW_UI__TOKEN", TOKEN)],
    );
    let port = server.base.rsplit_once(':').unwrap().1.to_owned();
    let base = format!("http://127.0.0.1:{port}");
    let http = client();
    for token in [None, Some("wrong"), Some(&TOKEN[..31])] {
        let mut request = http.get(format!("{base}/runs"));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401, "token {token:?}");
        let body = response.text().await.unwrap();
        assert!(!body.contains("queued-1"), "{body}");
        let mut post = http
            .post(format!("{base}/run/cancel"))
            .form(&[("id", "queued-1")]);
        if let Some(t) = token {
            post = post.bearer_auth(t);
        }
        assert_eq!(post.send().await.unwrap().status().as_u16(), 401);
        // The other pages and forms alike
        for path in ["/stats", "/schedules", "/alerts"] {
            let mut request = http.get(format!("{base}{path}"));
            if let Some(t) = token {
                request = request.bearer_auth(t);
            }
            assert_eq!(
                request.send().await.unwrap().status().as_u16(),
                401,
                "{path}"
            );
        }
        let mut post = http
            .post(format!("{base}/schedules/pause"))
            .form(&[("name", "nightly")]);
        if let Some(t) = token {
            post = post.bearer_auth(t);
        }
        assert_eq!(post.send().await.unwrap().status().as_u16(), 401);
    }
    let store = dir.path().join("flow.redb");
    assert_eq!(
        stored(&store, "queued-1").await.status,
        flow_runtime::store::RunStatus::Queued,
        "a refused cancel changed nothing"
    );
    let response = http
        .get(format!("{base}/runs"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.text().await.unwrap().contains("queued-1"));
    let response = http
        .post(format!("{base}/run/cancel"))
        .bearer_auth(TOKEN)
        .form(&[("id", "queued-1")])
        .send()
        .await
        .unwrap();
    // Then the run page, to which the action redirects
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.url().path(), "/run");
    assert_eq!(
        stored(&store, "queued-1").await.status,
        flow_runtime::store::RunStatus::Cancelled
    );
    let logged = wait_for(&server.stderr, "the action in the log", |l| {
        (l.contains("web console action") && l.contains("queued-1")).then(|| l.to_owned())
    });

    // A browser signs in with a form: a wrong token is refused, the right one sets a cookie
    // (a digest of the token, not the token) that opens the pages
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let (code, login) = {
        let r = plain.get(format!("{base}/login")).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(code, 200);
    assert!(login.contains("<label for=\"token\">"), "{login}");
    let wrong = plain
        .post(format!("{base}/login"))
        .form(&[("token", "not-the-token-at-all")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    let right = plain
        .post(format!("{base}/login"))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(right.status().as_u16(), 303);
    let cookie = right
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains(TOKEN),
        "the cookie holds a digest: {cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_owned();
    let page = plain
        .get(format!("{base}/runs"))
        .header("Cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("queued-1"));
    let forged = plain
        .get(format!("{base}/runs"))
        .header("Cookie", "flow_ui=0000")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 401);
    assert!(
        logged.contains("cancel") && logged.contains("token holder at 127.0.0.1"),
        "{logged}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_serves_the_console_and_its_cancel_button_stops_a_live_run() {
    let dir = tempfile::tempdir().unwrap();
    let (worker, url, stderr) =
        flow_tests::console_worker(env!("CARGO_BIN_EXE_console_child"), dir.path());
    let server = Server {
        child: worker,
        base: url,
        stderr,
    };
    let base = &server.base;
    run(
        dir.path(),
        &[
            "enqueue",
            "slow",
            "--input",
            r#"{"steps": 100, "ms": 100}"#,
            "--id",
            "live-1",
        ],
        0,
    );

    // The run page while it runs: running, refreshing, a bar per step so far, a cancel button
    let mut page = String::new();
    for _ in 0..300 {
        page = get(&format!("{base}/run?id=live-1")).await.1;
        if page.matches("class=\"bar succeeded\"").count() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(page.contains("s-running"), "{page}");
    assert!(
        page.matches("class=\"bar succeeded\"").count() >= 2,
        "{page}"
    );
    assert!(page.contains("http-equiv=\"refresh\""), "{page}");
    assert!(page.contains("href=\"/run/cancel?id=live-1\""), "{page}");
    // The worker executes it: no Resume, and the advice says who runs it
    assert!(!page.contains("action-resume"), "{page}");
    assert!(page.contains("next: executing in process"), "{page}");

    let (code, confirm) = get(&format!("{base}/run/cancel?id=live-1")).await;
    assert_eq!(code, 200);
    assert!(
        confirm.contains("<button type=\"submit\" class=\"danger\" id=\"confirm\">Cancel</button>"),
        "{confirm}"
    );
    let response = client()
        .post(format!("{base}/run/cancel"))
        .form(&[("id", "live-1")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.url().path(), "/run");

    // The store, read through the worker that owns it, says cancelled soon after
    let mut shown = serde_json::Value::Null;
    for _ in 0..200 {
        let out = child(dir.path())
            .args(["runs", "show", "live-1", "--output", "json"])
            .output()
            .unwrap();
        shown = serde_json::from_slice(&out.stdout).unwrap();
        if shown["run"]["status"] == "cancelled" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(shown["run"]["status"], "cancelled", "{shown:#}");
    let done = shown["steps"].as_array().unwrap().len();
    assert!(done < 100, "the run stopped early, after {done} steps");
    let logged = wait_for(&server.stderr, "the action in the log", |l| {
        l.contains("web console action").then(|| l.to_owned())
    });
    assert!(
        logged.contains("live-1") && logged.contains("127.0.0.1"),
        "{logged}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_of_ten_thousand_units_draws_a_few_aggregated_bars() {
    let dir = tempfile::tempdir().unwrap();
    run(
        dir.path(),
        &[
            "run",
            "fanout",
            "--input",
            r#"{"n": 10000, "fail_every": 97}"#,
            "--id",
            "big-1",
        ],
        1,
    );
    let server = ui(dir.path(), &["--port", "0"], &[]);
    let (code, page) = get(&format!("{}/run?id=big-1", server.base)).await;
    assert_eq!(code, 200);
    // Two bars (the units, the step inside them), not 20,000
    assert_eq!(page.matches("class=\"bar ").count(), 2, "{page}");
    assert!(
        page.contains("units (10000): 104 failed, 9896 succeeded"),
        "{page}"
    );
    assert!(page.contains("Failed units (104)"), "{page}");
    assert_eq!(page.matches("refused</span></li>").count(), 20, "{page}");
    assert!(page.contains("and 84 more"), "{page}");
    assert!(
        page.len() < 64 * 1024,
        "the page stays small: {} bytes",
        page.len()
    );
    // The units: counted by state, then 200 a page in groups of 50, each summarised by its
    // counts; a group with a failure is open
    assert!(
        page.contains("data-state=\"failed\">failed <span class=\"n\">104</span>")
            && page.contains("data-state=\"succeeded\">succeeded <span class=\"n\">9896</span>"),
        "{page}"
    );
    assert_eq!(
        page.matches("<details class=\"units\"").count(),
        4,
        "{page}"
    );
    assert_eq!(page.matches("<tr><td><code>u").count(), 200, "{page}");
    assert!(page.contains("page 1 of 50, in groups of 50"), "{page}");
    // A group is open exactly when it holds a failed unit, which its summary counts
    for group in page.split("<details class=\"units\"").skip(1) {
        let summary = group.split_once("</summary>").unwrap().0;
        assert_eq!(
            group.starts_with(" open>"),
            summary.contains(" failed"),
            "{summary}"
        );
        assert!(summary.contains(" succeeded"), "{summary}");
    }
    assert!(page.contains("<summary>Units 1–50: "), "{page}");
    assert!(
        page.contains("<a href=\"/run?id=big-1&amp;page=2#units\" rel=\"next\">"),
        "{page}"
    );
    let base = server.base.clone();
    let get_page = |query: &str| {
        let url = format!("{base}/run?id=big-1&{query}");
        async move { get(&url).await }
    };
    let (code, last) = get_page("page=50").await;
    assert_eq!(code, 200);
    assert!(
        last.contains("units 9801–10000 of 10000, page 50 of 50"),
        "{last}"
    );
    assert_eq!(last.matches("<tr><td><code>u").count(), 200);
    // Only the failed units: 104 on one page, every group open
    let (_, failed) = get_page("units=failed").await;
    assert_eq!(failed.matches("<tr><td><code>u").count(), 104, "{failed}");
    assert_eq!(failed.matches("<details class=\"units\" open>").count(), 3);
    assert_eq!(
        failed.matches("class=\"s-failed\">failed</td>").count(),
        104
    );
    assert!(failed.contains("u9991</code>") && failed.contains("item 9991 refused"));
    assert!(failed.len() < 64 * 1024, "{} bytes", failed.len());
    for (query, message) in [
        ("page=51", "past the last page of these units, 50"),
        ("page=zero", "is not a page number"),
        ("units=exploded", "is not a unit state"),
    ] {
        let (code, page) = get_page(query).await;
        assert_eq!(code, 400, "{query}");
        assert!(page.contains(message), "{query}: {page}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_name_with_many_records_gets_one_bar_and_a_few_get_one_each() {
    let dir = tempfile::tempdir().unwrap();
    run(
        dir.path(),
        &["run", "many", "--input", "150", "--id", "many-1"],
        0,
    );
    run(
        dir.path(),
        &["run", "many", "--input", "40", "--id", "few-1"],
        0,
    );
    let server = ui(dir.path(), &["--port", "0"], &[]);
    let (_, many) = get(&format!("{}/run?id=many-1", server.base)).await;
    assert_eq!(many.matches("class=\"bar ").count(), 1, "{many}");
    assert!(many.contains("pause ×150"), "{many}");
    let (_, few) = get(&format!("{}/run?id=few-1", server.base)).await;
    assert_eq!(few.matches("class=\"bar succeeded\"").count(), 40, "{few}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_step_shows_its_attempts_beside_its_bar() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), &["run", "retried", "--id", "retried-1"], 0);
    let server = ui(dir.path(), &["--port", "0"], &[]);
    let (_, page) = get(&format!("{}/run?id=retried-1", server.base)).await;
    assert_eq!(page.matches("class=\"bar succeeded\"").count(), 1, "{page}");
    assert!(page.contains(" ms · 3 attempts</text>"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_id_links_to_the_trace_viewer_of_the_settings() {
    let dir = tempfile::tempdir().unwrap();
    run(
        dir.path(),
        &[
            "run",
            "slow",
            "--input",
            r#"{"steps": 1, "ms": 1}"#,
            "--id",
            "traced-1",
        ],
        0,
    );
    let server = ui(
        dir.path(),
        &["--port", "0"],
        &[(
            "FLOW_UI__TRACE_URL",
            "http://traces.invalid/trace/{trace_id}?a=1&b=2",
        )],
    );
    let trace = stored(&dir.path().join("flow.redb"), "traced-1")
        .await
        .trace_id;
    let (_, page) = get(&format!("{}/run?id=traced-1", server.base)).await;
    assert!(
        page.contains(&format!(
            "<a href=\"http://traces.invalid/trace/{trace}?a=1&amp;b=2\">{trace}</a>"
        )),
        "{page}"
    );
    // A template without the placeholder is refused when the settings load
    let out = child(dir.path())
        .args(["ui", "--port", "0"])
        .env("FLOW_UI__TRACE_URL", "http://traces.invalid/")
        .output()
        .unwrap();
    flow_tests::assert_exit(&out, 3);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("flow.ui.trace_url") && stderr.contains("{trace_id}"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stats_page_gives_each_workflows_figures() {
    let dir = tempfile::tempdir().unwrap();
    run(
        dir.path(),
        &[
            "run",
            "slow",
            "--input",
            r#"{"steps": 2, "ms": 5}"#,
            "--id",
            "s-1",
        ],
        0,
    );
    run(
        dir.path(),
        &[
            "run",
            "slow",
            "--input",
            r#"{"steps": 2, "ms": 5}"#,
            "--id",
            "s-2",
        ],
        0,
    );
    run(
        dir.path(),
        &["run", "boom", "--input", "\"x\"", "--id", "b-1"],
        1,
    );
    let server = ui(dir.path(), &["--port", "0"], &[]);
    let (code, page) = get(&format!("{}/stats", server.base)).await;
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("3 runs and 5 steps read"), "{page}");
    assert!(
        page.contains("<h2>slow</h2>") && page.contains("<h2>boom</h2>"),
        "{page}"
    );
    // slow: 2 runs, all succeeded; boom: 1 run, failed
    assert!(
        page.contains("<tr><td>runs</td><td>2</td><td>100.0%</td>"),
        "{page}"
    );
    assert!(
        page.contains("<tr><td>runs</td><td>1</td><td>0.0%</td>"),
        "{page}"
    );
    assert!(
        page.contains("<td>console_child::pause</td><td>4</td><td>100.0%</td>"),
        "{page}"
    );
    assert!(
        page.contains("1 permanent") || page.contains("1 unclassified"),
        "{page}"
    );
    assert!(page.matches("class=\"p95\"").count() >= 4, "{page}");

    let (_, only) = get(&format!("{}/stats?workflow=boom", server.base)).await;
    assert!(
        only.contains("<h2>boom</h2>") && !only.contains("<h2>slow</h2>"),
        "{only}"
    );
    let (code, bad) = get(&format!("{}/stats?since=%3Cb%3Eyesterday", server.base)).await;
    assert_eq!(code, 400);
    assert!(
        bad.contains("`&lt;b&gt;yesterday` is not a duration"),
        "{bad}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_in_doubt_is_resolved_from_its_page() {
    let dir = tempfile::tempdir().unwrap();
    let crash = dir.path().join("crash");
    std::fs::write(&crash, "").unwrap();
    let input = serde_json::to_string(&crash).unwrap();
    let out = child(dir.path())
        .args(["run", "pay", "--id", "pay-1", "--input", &input])
        .output()
        .unwrap();
    assert!(!out.status.success(), "the step crashed the process");
    std::fs::remove_file(&crash).unwrap();
    run(dir.path(), &["runs", "resume", "pay-1"], 4);

    let server = ui(dir.path(), &["--port", "0"], &[]);
    let base = &server.base;
    let (_, page) = get(&format!("{base}/run?id=pay-1")).await;
    assert!(page.contains("s-needs-attention"), "{page}");
    assert!(page.contains("href=\"/run/resolve?id=pay-1\""), "{page}");
    let (code, form) = get(&format!("{base}/run/resolve?id=pay-1")).await;
    assert_eq!(code, 200, "{form}");
    assert!(
        form.contains("console_child::charge"),
        "the step in doubt: {form}"
    );
    assert!(form.contains("<pre id=\"args\">"), "its call: {form}");

    // Not JSON: refused, nothing settled
    let response = client()
        .post(format!("{base}/run/resolve"))
        .form(&[("id", "pay-1"), ("settle", "done"), ("output", "{oops")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert!(response.text().await.unwrap().contains("not JSON"));
    let response = client()
        .post(format!("{base}/run/resolve"))
        .form(&[("id", "pay-1"), ("settle", "done"), ("output", "7")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.url().path(), "/run");
    drop(server);

    // The step is settled with that output: a resume finishes the run without calling it
    let store = dir.path().join("flow.redb");
    let steps = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || flow_tests::read_steps(&store, "pay-1"))
            .await
            .unwrap()
    };
    let charge = steps
        .iter()
        .find(|s| s.id.name.ends_with("charge"))
        .unwrap();
    assert_eq!(charge.output, Some(serde_json::json!(7)), "{charge:?}");
    let out = child(dir.path())
        .args(["runs", "resume", "pay-1"])
        .output()
        .unwrap();
    flow_tests::assert_exit(&out, 0);
    assert_eq!(
        stored(&store, "pay-1").await.output,
        Some(serde_json::json!(7))
    );
}

/// The `<svg class="chart" ...>` element of the stats page with these data attributes.
fn chart<'a>(page: &'a str, workflow: &str, step: &str, figure: &str) -> &'a str {
    let marker = format!(
        "<svg class=\"chart\" data-workflow=\"{workflow}\" data-step=\"{step}\" data-figure=\"{figure}\""
    );
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no chart {marker}: {page}"));
    let end = page[start..].find("</svg>").unwrap() + start;
    &page[start..end]
}

/// The points of one series of a chart.
fn points(chart: &str, series: &str) -> usize {
    let marker = format!("<g class=\"series\" data-series=\"{series}\">");
    chart.split_once(&marker).map_or(0, |(_, rest)| {
        rest.split_once("</g>")
            .unwrap()
            .0
            .matches("class=\"pt\"")
            .count()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stats_page_charts_latency_and_errors_per_bucket_and_compares_two_versions() {
    let dir = tempfile::tempdir().unwrap();
    let slow = |id: &str, ms: u32, version: &str| {
        let out = child(dir.path())
            .args([
                "run",
                "slow",
                "--input",
                &format!(r#"{{"steps": 2, "ms": {ms}}}"#),
                "--id",
                id,
            ])
            .env("FLOW_APP_VERSION", version)
            .output()
            .unwrap();
        flow_tests::assert_exit(&out, 0);
    };
    // Version 1: two fast runs more than a second apart, so in two buckets of one second;
    // version 2: two slow ones, in one more bucket (or two); and a failed run
    slow("s-1", 1, "1.0.0");
    std::thread::sleep(Duration::from_millis(1100));
    slow("s-2", 1, "1.0.0");
    std::thread::sleep(Duration::from_millis(1100));
    run(
        dir.path(),
        &["run", "boom", "--input", "\"x\"", "--id", "b-1"],
        1,
    );
    let server = ui(dir.path(), &["--port", "0"], &[]);
    let base = &server.base;

    let (code, page) = get(&format!("{base}/stats?since=10m&bucket=1s&workflow=slow")).await;
    assert_eq!(code, 200, "{page}");
    // Two buckets hold runs: two points in each latency series, two error-rate points
    let runs = chart(&page, "slow", "", "latency");
    for series in ["p50", "p95", "p99"] {
        assert_eq!(points(runs, series), 2, "{series}: {runs}");
    }
    let errors = chart(&page, "slow", "", "errors");
    assert_eq!(points(errors, "error rate"), 2, "{errors}");
    assert_eq!(
        errors.matches("error rate 0.0% (0 of 1 finished)").count(),
        2,
        "{errors}"
    );
    // Each step has its own charts: two calls of pause per run, so each point has two
    let step = chart(&page, "slow", "console_child::pause", "latency");
    assert_eq!(points(step, "p95"), 2, "{step}");
    assert_eq!(step.matches("(2 finished)").count(), 6, "{step}");
    assert!(!page.contains("data-workflow=\"boom\""), "{page}");
    // The charts are described for screen readers and as a table
    assert!(
        runs.contains("role=\"img\"") && runs.contains("aria-label=\"Duration of runs of slow"),
        "{runs}"
    );

    // The failed run: one bucket, an error rate of 100%
    let (_, page) = get(&format!("{base}/stats?since=10m&bucket=1s")).await;
    let boom = chart(&page, "boom", "", "errors");
    assert_eq!(points(boom, "error rate"), 1, "{boom}");
    assert!(
        boom.contains("error rate 100.0% (1 of 1 finished)"),
        "{boom}"
    );
    // Without a bucket, one is chosen from the window: hourly over a day
    let (_, day) = get(&format!("{base}/stats")).await;
    assert!(day.contains("one point per bucket of 1h"), "{day}");
    let (code, tiny) = get(&format!("{base}/stats?since=30d&bucket=1s")).await;
    assert_eq!(code, 400);
    assert!(tiny.contains("choose a wider bucket"), "{tiny}");

    // Version 2 is slower: the comparison marks its p95 as worse, as `stats --compare` does
    slow("s-3", 80, "2.0.0");
    slow("s-4", 80, "2.0.0");
    let (code, page) = get(&format!(
        "{base}/stats?workflow=slow&before_version=1.0.0&after_version=2.0.0"
    ))
    .await;
    assert_eq!(code, 200, "{page}");
    let table = page.split_once("<table id=\"comparison\">").unwrap().1;
    let row = table
        .split("<tr")
        .find(|r| r.contains("<td>slow</td>"))
        .unwrap();
    assert!(row.starts_with(" class=\"worse\""), "{row}");
    assert!(row.contains("<td>2 -&gt; 2</td>"), "{row}");
    assert!(row.contains("!! latency"), "{row}");
    assert!(
        page.contains("Before: runs created the first run .. now of version 1.0.0."),
        "{page}"
    );
    let out = child(dir.path())
        .args([
            "stats",
            "--workflow",
            "slow",
            "--compare",
            "--before-version",
            "1.0.0",
            "--after-version",
            "2.0.0",
        ])
        .output()
        .unwrap();
    let cli = String::from_utf8_lossy(&out.stdout);
    assert!(cli.contains("!! latency"), "the CLI agrees: {cli}");
    // One side alone is refused with the fix
    let (code, one) = get(&format!("{base}/stats?before_version=1.0.0")).await;
    assert_eq!(code, 400);
    assert!(one.contains("giving both"), "{one}");
    let (code, bad) = get(&format!("{base}/stats?before=yesterday&after=today")).await;
    assert_eq!(code, 400);
    assert!(bad.contains("the before window `yesterday`"), "{bad}");
}

/// The next 02:00 in Berlin, in UTC as the console writes it.
fn next_two_in_berlin() -> String {
    let tz = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
    let now = jiff::Zoned::now().with_time_zone(tz.clone());
    let today = now.date().at(2, 0, 0, 0).to_zoned(tz.clone()).unwrap();
    let next = if today > now {
        today
    } else {
        now.date()
            .tomorrow()
            .unwrap()
            .at(2, 0, 0, 0)
            .to_zoned(tz)
            .unwrap()
    };
    format!("{:.0}", next.timestamp())
}

/// The `schedules list --json` entry of `name`.
fn listed(dir: &Path, name: &str) -> serde_json::Value {
    let out = child(dir)
        .args(["schedules", "list", "--json"])
        .output()
        .unwrap();
    flow_tests::assert_exit(&out, 0);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedules_page_shows_next_fire_times_and_its_form_pauses_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("flow.toml"),
        "[flow.schedules.nightly]\nworkflow = \"slow\"\ncron = \"0 2 * * *\"\ntimezone = \"Europe/Berlin\"\ninput = { steps = 1, ms = 1 }\n",
    )
    .unwrap();
    run(
        dir.path(),
        &["run", "slow", "--input", r#"{"steps": 1, "ms": 1}"#],
        0,
    );
    let server = ui(dir.path(), &["--port", "0"], &[]);
    let base = &server.base;
    let expected = next_two_in_berlin();

    let (code, page) = get(&format!("{base}/schedules")).await;
    assert_eq!(code, 200, "{page}");
    let row = page
        .split_once("<tr data-schedule=\"nightly\">")
        .unwrap()
        .1
        .split_once("</tr>")
        .unwrap()
        .0;
    assert!(
        row.contains(&format!("<td class=\"next-utc\">{expected}</td>")),
        "{row}"
    );
    assert!(
        row.contains("<code>0 2 * * *</code> Europe/Berlin"),
        "{row}"
    );
    assert!(row.contains("<td class=\"state\">active</td>"), "{row}");
    assert!(
        row.contains("href=\"/schedules/pause?name=nightly\""),
        "{row}"
    );

    // The button leads to a confirmation with a labelled note; its form pauses it in the store
    let (code, confirm) = get(&format!("{base}/schedules/pause?name=nightly")).await;
    assert_eq!(code, 200, "{confirm}");
    assert!(
        confirm.contains("<label for=\"note\">")
            && confirm.contains("id=\"confirm\">Pause</button>"),
        "{confirm}"
    );
    let response = client()
        .post(format!("{base}/schedules/pause"))
        .form(&[("name", "nightly"), ("note", "db <migration>")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.url().path(), "/schedules");
    let page = response.text().await.unwrap();
    assert!(
        page.contains("paused: db &lt;migration&gt; (since "),
        "{page}"
    );
    assert!(
        page.contains("href=\"/schedules/resume?name=nightly\""),
        "{page}"
    );
    let stored = listed(dir.path(), "nightly");
    assert_eq!(stored["paused"], true, "{stored}");
    assert_eq!(stored["paused_note"], "db <migration>", "{stored}");
    assert_eq!(stored["next_fire"], serde_json::Value::Null, "{stored}");
    let logged = wait_for(&server.stderr, "the pause in the log", |l| {
        (l.contains("web console action") && l.contains("nightly")).then(|| l.to_owned())
    });
    assert!(
        logged.contains("\"action\":\"pause\"") && logged.contains("127.0.0.1"),
        "{logged}"
    );

    // An unknown schedule or action is refused, and nothing changes
    let response = client()
        .post(format!("{base}/schedules/resume"))
        .form(&[("name", "nighty")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("the schedules are: nightly"));
    let response = client()
        .post(format!("{base}/schedules/delete"))
        .form(&[("name", "nightly")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    assert_eq!(listed(dir.path(), "nightly")["paused"], true);

    let response = client()
        .post(format!("{base}/schedules/resume"))
        .form(&[("name", "nightly")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let stored = listed(dir.path(), "nightly");
    assert_eq!(stored["paused"], false, "{stored}");
    assert_eq!(stored["next_fire"], expected.as_str(), "{stored}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alerts_page_shows_an_alert_with_links_to_its_runs_until_it_resolves() {
    let dir = tempfile::tempdir().unwrap();
    for id in ["d-1", "d-2"] {
        run(
            dir.path(),
            &["run", "doomed", "--input", "true", "--id", id],
            1,
        );
    }
    let server = ui(dir.path(), &["--port", "0"], &[]);
    let base = &server.base;
    let (code, page) = get(&format!("{base}/alerts")).await;
    assert_eq!(code, 200, "{page}");
    let rows: Vec<&str> = page.split("<tr data-alert=").skip(1).collect();
    assert_eq!(rows.len(), 1, "one alert: {page}");
    let row = rows[0];
    for part in [
        "<td>doomed</td>",
        "<td>consecutive-failures</td>",
        "<span class=\"alert-open\">open</span>",
        "<a href=\"/run?id=d-2\">d-2</a> <a href=\"/run?id=d-1\">d-1</a>",
        "2 failed runs in a row; exploded on the upstream",
    ] {
        assert!(row.contains(part), "{part}: {row}");
    }
    let (_, resolved) = get(&format!("{base}/alerts?state=resolved")).await;
    assert!(resolved.contains("No alerts match"), "{resolved}");

    // A run that succeeds resolves it
    run(
        dir.path(),
        &["run", "doomed", "--input", "false", "--id", "d-3"],
        0,
    );
    let (_, page) = get(&format!("{base}/alerts?state=resolved")).await;
    let row = page.split_once("<tr data-alert=").unwrap().1;
    assert!(
        row.contains("<span class=\"alert-resolved\">resolved</span> at ")
            && row.contains(" by <a href=\"/run?id=d-3\">d-3</a>"),
        "{row}"
    );
    let (code, _) = get(&format!("{base}/alerts?state=sideways")).await;
    assert_eq!(code, 400);
}

//! The web console in a real headless browser: Debian's `chromium`, driven through
//! `chromedriver` (package `chromium-driver`, which `.ci/run` installs) with fantoccini. A
//! worker serves the console; the test opens the runs page during a live run, follows the
//! run's link, sees the timeline's bars appear as steps finish, cancels the run through its
//! button and confirmation, and checks the store; then it looks at the stats page's charts and
//! pauses a schedule from the keyboard. Screenshots go to `target/web-console/`.

use fantoccini::{Client, ClientBuilder, Locator};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn child(dir: &Path) -> Command {
    flow_tests::console_command(env!("CARGO_BIN_EXE_console_child"), dir)
}

/// Child processes killed when the test ends, whatever happens.
struct Killed(Vec<Child>);

impl Drop for Killed {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn shots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("web-console");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    let path = shots().join(name);
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// chromedriver on a free port, and a headless chromium session through it.
async fn browser(killed: &mut Killed) -> Client {
    assert!(
        which("chromedriver") && which("chromium"),
        "this test needs Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver (.ci/run installs them)"
    );
    let port = free_port();
    let driver = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    killed.0.push(driver);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a chromium session through chromedriver")
}

/// Polls `check` every 100 ms until it returns true; panics with `what` after `secs`.
async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Types `text` into the element with this id, as a keyboard would.
async fn keys(browser: &Client, id: &str, text: &str) {
    browser
        .find(Locator::Id(id))
        .await
        .unwrap()
        .send_keys(text)
        .await
        .unwrap();
}

/// Clicks the element with this id.
async fn click(browser: &Client, id: &str) {
    browser
        .find(Locator::Id(id))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn bars(browser: &Client, class: &str) -> usize {
    browser
        .find_all(Locator::Css(&format!("svg#timeline rect.bar.{class}")))
        .await
        .map_or(0, |b| b.len())
}

fn stored_status(dir: &Path, id: &str) -> serde_json::Value {
    let out = child(dir)
        .args(["runs", "show", id, "--output", "json"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_a_live_run_see_its_bars_and_cancel_it_with_the_button() {
    let dir = tempfile::tempdir().unwrap();
    // A schedule for the schedules page; it fires at 02:00 in Berlin only
    std::fs::write(
        dir.path().join("flow.toml"),
        "[flow.schedules.nightly]\nworkflow = \"slow\"\ncron = \"0 2 * * *\"\ntimezone = \"Europe/Berlin\"\ninput = { steps = 1, ms = 1 }\n",
    )
    .unwrap();
    let mut killed = Killed(Vec::new());
    let (worker, base, _log) =
        flow_tests::console_worker(env!("CARGO_BIN_EXE_console_child"), dir.path());
    killed.0.push(worker);
    let out = child(dir.path())
        .args([
            "enqueue",
            "slow",
            "--input",
            r#"{"steps": 60, "ms": 150}"#,
            "--id",
            "live-1",
        ])
        .output()
        .unwrap();
    flow_tests::assert_exit(&out, 0);

    let browser = browser(&mut killed).await;
    // The runs page, while the run is live
    eventually(20, "the run listed as running", || async {
        browser.goto(&format!("{base}/runs")).await.unwrap();
        browser
            .source()
            .await
            .is_ok_and(|s| s.contains("/run?id=live-1") && s.contains("s-running"))
    })
    .await;
    shot(&browser, "runs.png").await;

    // Follow the run's link, a real one
    let link = browser
        .find(Locator::Css("a[href='/run?id=live-1']"))
        .await
        .unwrap();
    link.click().await.unwrap();
    assert_eq!(browser.current_url().await.unwrap().path(), "/run");
    let first = bars(&browser, "succeeded").await;
    // The page refreshes itself: more bars appear as steps finish, without the test reloading
    eventually(30, "new timeline bars from the auto-refresh", || async {
        bars(&browser, "succeeded").await >= first + 3
    })
    .await;
    shot(&browser, "run-timeline.png").await;

    // Cancel through the button and its confirmation (the link may be replaced by a refresh
    // between finding and clicking it: try again then)
    eventually(20, "the confirmation page", || async {
        if let Ok(button) = browser.find(Locator::Id("action-cancel")).await {
            let _ = button.click().await;
        }
        browser
            .current_url()
            .await
            .is_ok_and(|u| u.path() == "/run/cancel")
    })
    .await;
    shot(&browser, "cancel-confirm.png").await;
    click(&browser, "confirm").await;

    // The store says cancelled, read through the worker that owns it
    let mut shown = serde_json::Value::Null;
    eventually(20, "the run cancelled in the store", || {
        shown = stored_status(dir.path(), "live-1");
        let done = shown["run"]["status"] == "cancelled";
        async move { done }
    })
    .await;
    let steps = shown["steps"].as_array().map_or(0, Vec::len);
    assert!(
        steps < 60,
        "the run stopped early, after {steps} of 60 steps"
    );
    // And the page the browser landed on shows it
    eventually(20, "the page showing the run cancelled", || async {
        browser
            .goto(&format!("{base}/run?id=live-1"))
            .await
            .unwrap();
        browser
            .find(Locator::Css("#status .s-cancelled"))
            .await
            .is_ok()
    })
    .await;
    shot(&browser, "run-cancelled.png").await;

    // The stats page draws its charts
    browser.goto(&format!("{base}/stats")).await.unwrap();
    let charts = browser
        .find_all(Locator::Css("svg.chart[data-workflow='slow']"))
        .await
        .unwrap();
    assert!(charts.len() >= 2, "{} charts", charts.len());
    shot(&browser, "stats.png").await;

    // The schedules page, used from the keyboard: Enter on the Pause link, a note typed into
    // its labelled field, then the confirmation; the worker's store says paused
    browser.goto(&format!("{base}/schedules")).await.unwrap();
    shot(&browser, "schedules.png").await;
    // U+E007 is WebDriver's Enter key
    keys(&browser, "pause-nightly", "\u{E007}").await;
    eventually(10, "the pause confirmation", || async {
        browser
            .current_url()
            .await
            .is_ok_and(|u| u.path() == "/schedules/pause")
    })
    .await;
    keys(&browser, "note", "paused from the browser").await;
    click(&browser, "confirm").await;
    eventually(10, "the schedule paused in the store", || {
        let out = child(dir.path())
            .args(["schedules", "list", "--json"])
            .output()
            .unwrap();
        let list: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        let paused = list[0]["paused_note"] == "paused from the browser";
        async move { paused }
    })
    .await;
    shot(&browser, "schedules-paused.png").await;
    browser.close().await.unwrap();
}

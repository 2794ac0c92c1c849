//! The web console: how long a run of 10,000 units takes to serve as a page, and how big the
//! page is.
//!
//! Run with `cargo bench -p flow-tests --bench web_console` (release profile). Prints one
//! markdown table; `BENCHMARKS.md` explains it. The test binary `console_child` runs a fan-out
//! of 10,000 units (one `item` step each, every 97th failing) into a fresh redb store under
//! cargo's `target/tmp`, then serves the console two ways: `console_child ui` (which opens
//! the store for each request, as every CLI command does) and a `console_child worker` with
//! `flow.ui.listen` (which owns the store; its console reads it through the worker's socket).
//! Each page is fetched over HTTP on 127.0.0.1, one request at a time, 20 times after one
//! warm-up; the time is from sending the request to having read the whole body, so it is the
//! server's time to the full HTML plus a loopback round trip.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_console_child");
const UNITS: u64 = 10_000;
const REQUESTS: usize = 20;

fn child(dir: &Path) -> Command {
    flow_tests::console_command(BIN, dir)
}

/// A child process killed when the bench ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The first line of `read` that `find` accepts, mapped.
fn first_line(read: impl std::io::Read, find: impl Fn(&str) -> Option<String>) -> String {
    BufReader::new(read)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| find(&l))
        .expect("the console's address")
}

fn ui(dir: &Path) -> (Killed, String) {
    let mut c = child(dir)
        .args(["ui", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = c.stdout.take().unwrap();
    let base = first_line(out, |l| {
        l.strip_prefix("web console: ")
            .map(|u| u.trim_end_matches('/').to_owned())
    });
    (Killed(c), base)
}

/// A worker serving the console, and the receiver of its log lines (kept so that the thread
/// reading them goes on).
fn worker(dir: &Path) -> (Killed, String, std::sync::mpsc::Receiver<String>) {
    let (c, base, log) = flow_tests::console_worker(BIN, dir);
    (Killed(c), base, log)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Fetches `url` once to warm up, then `REQUESTS` times: (sorted times, body size).
async fn measure(http: &reqwest::Client, url: &str) -> (Vec<Duration>, usize) {
    let mut size = 0;
    let mut times = Vec::new();
    for i in 0..=REQUESTS {
        let start = Instant::now();
        let response = http.get(url).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{url}");
        let body = response.bytes().await.unwrap();
        let took = start.elapsed();
        size = body.len();
        if i > 0 {
            times.push(took);
        }
    }
    times.sort();
    (times, size)
}

fn main() {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tmp");
    std::fs::create_dir_all(&target).unwrap();
    let dir = tempfile::tempdir_in(&target).unwrap();
    let started = Instant::now();
    let out = child(dir.path())
        .args([
            "run",
            "fanout",
            "--input",
            &format!(r#"{{"n": {UNITS}, "fail_every": 97}}"#),
            "--id",
            "big-1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "104 units fail: {out:?}");
    eprintln!(
        "a run of {UNITS} units stored in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pages = [
        ("run page, first page of units", "/run?id=big-1"),
        ("run page, last page of units", "/run?id=big-1&page=50"),
        (
            "run page, the 104 failed units",
            "/run?id=big-1&units=failed",
        ),
        ("runs page", "/runs"),
        ("stats page (24 h, hourly charts)", "/stats"),
    ];
    let mut rows = Vec::new();
    rt.block_on(async {
        let http = reqwest::Client::new();
        for server in ["ui", "worker's console"] {
            // One at a time: with a worker alive, `ui` would read through its socket
            let (killed, base, _log) = if server == "ui" {
                let (killed, base) = ui(dir.path());
                (killed, base, None)
            } else {
                let (killed, base, log) = worker(dir.path());
                (killed, base, Some(log))
            };
            for (page, path) in pages {
                let (times, size) = measure(&http, &format!("{base}{path}")).await;
                rows.push(format!(
                    "| {server} | {page} | {:.1} KB | {} | {} | {} |",
                    size as f64 / 1024.0,
                    ms(percentile(&times, 0.5)),
                    ms(percentile(&times, 0.95)),
                    ms(*times.last().unwrap())
                ));
            }
            drop(killed);
        }
    });
    println!("| served by | page ({UNITS} units, 20,000 step records) | size | p50 | p95 | max |");
    println!("|---|---|---:|---:|---:|---:|");
    for row in rows {
        println!("{row}");
    }
}

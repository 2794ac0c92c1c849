//! Helpers shared by flow's behaviour tests: a fresh store per test and execution counters.

pub mod pg;

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// A fresh redb store in a temporary directory (kept alive by the returned guard).
pub fn fresh_flow() -> (tempfile::TempDir, flow_runtime::Flow) {
    let dir = tempfile::tempdir().expect("temp dir");
    let flow = flow_runtime::Flow::open(dir.path().join("flow.redb")).expect("open store");
    (dir, flow)
}

fn counters() -> &'static Mutex<HashMap<String, u32>> {
    static COUNTERS: OnceLock<Mutex<HashMap<String, u32>>> = OnceLock::new();
    COUNTERS.get_or_init(Default::default)
}

/// Counts one execution of `what` and returns the new count.
pub fn bump(what: &str) -> u32 {
    let mut map = counters().lock().unwrap_or_else(|e| e.into_inner());
    let n = map.entry(what.to_owned()).or_insert(0);
    *n += 1;
    *n
}

/// How many times `what` was executed.
pub fn count(what: &str) -> u32 {
    let map = counters().lock().unwrap_or_else(|e| e.into_inner());
    map.get(what).copied().unwrap_or(0)
}

/// Appends a line to a file and fsyncs it: an external effect that survives SIGKILL.
pub fn append_line(path: &std::path::Path, line: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    // One write call for the whole line: a kill between the text and its newline would glue
    // this line to the next process's first one.
    file.write_all(format!("{line}\n").as_bytes())?;
    file.sync_data()
}

/// The lines of a file; none if it does not exist.
pub fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Polls `cond` every 10 ms until it holds; panics with `what` after `secs` seconds.
pub fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Reads one run of a store that another process may have open.
pub fn read_run(store: &std::path::Path, id: &str) -> Option<flow_runtime::store::RunRecord> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let flow = flow_runtime::Flow::open(store).ok()?;
        flow.run_record(&id.into()).await.ok().flatten()
    })
}

/// Reads the steps of one run of a store that another process may have open.
pub fn read_steps(store: &std::path::Path, id: &str) -> Vec<flow_runtime::store::StepRecord> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let Ok(flow) = flow_runtime::Flow::open(store) else {
            return Vec::new();
        };
        flow.steps(&id.into()).await.unwrap_or_default()
    })
}

/// Spawns a test child binary (`env!("CARGO_BIN_EXE_…")`) with `args`, output captured.
pub fn spawn_child<S: AsRef<std::ffi::OsStr>>(exe: &str, args: &[S]) -> std::process::Child {
    std::process::Command::new(exe)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {exe}: {e}"))
}

/// Asserts that a child exited with `code`, showing its stderr otherwise.
pub fn assert_exit(out: &std::process::Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// How a child binary reports a run's outcome: the output on stdout and exit 0, exit 3 when
/// the run needs attention, exit 1 for anything else.
pub fn report<T: std::fmt::Display>(
    outcome: Result<T, flow_runtime::RunError<flow_runtime::Failure>>,
) -> std::process::ExitCode {
    match outcome {
        Ok(v) => {
            println!("{v}");
            std::process::ExitCode::SUCCESS
        }
        Err(flow_runtime::RunError::NeedsAttention(a)) => {
            eprintln!("needs attention: {}", a.reason);
            std::process::ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::from(1)
        }
    }
}

/// A command of a test binary (`bin`: `env!("CARGO_BIN_EXE_…")`) run in `dir`, with its store
/// there (`flow.redb`), JSON logs, and no `RUST_LOG` taken from the environment.
pub fn child_command(bin: &str, dir: &std::path::Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(bin);
    cmd.current_dir(dir)
        .env("FLOW_STORE", dir.join("flow.redb"))
        .env("FLOW_LOG_FORMAT", "json")
        .env_remove("RUST_LOG");
    cmd
}

/// A command of the web console's test binary (`bin`: `env!("CARGO_BIN_EXE_console_child")`)
/// as [`child_command`] makes it, with none of the console's settings taken from the
/// environment.
pub fn console_command(bin: &str, dir: &std::path::Path) -> std::process::Command {
    let mut cmd = child_command(bin, dir);
    cmd.env_remove("FLOW_UI__TOKEN")
        .env_remove("FLOW_UI__LISTEN");
    cmd
}

/// Starts `bin worker` in `dir` (see [`console_command`]) serving the web console on a free
/// port of 127.0.0.1: the child, the console's address (without the trailing slash) and the
/// lines of its stderr, read on a thread as they come so the worker never blocks on a full
/// pipe. Panics if the address is not logged within 30 s.
pub fn console_worker(
    bin: &str,
    dir: &std::path::Path,
) -> (
    std::process::Child,
    String,
    std::sync::mpsc::Receiver<String>,
) {
    use std::io::BufRead;
    let mut child = console_command(bin, dir)
        .arg("worker")
        .env("FLOW_UI__LISTEN", "127.0.0.1:0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the worker starts");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(url) = console_url(&line) {
                    return (child, url, rx);
                }
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the worker did not log the console's address within 30 s");
            }
        }
    }
}

/// The console's address in a worker's JSON log line `serving the web console`, without the
/// trailing slash; `None` for any other line.
pub fn console_url(log_line: &str) -> Option<String> {
    if !log_line.contains("serving the web console") {
        return None;
    }
    let (_, rest) = log_line.split_once("\"url\":\"")?;
    Some(rest.split_once('"')?.0.trim_end_matches('/').to_owned())
}

/// A child process (a worker, say) that is killed and reaped when this is dropped, so a test
/// that fails half-way leaves no process behind.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

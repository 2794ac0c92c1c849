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

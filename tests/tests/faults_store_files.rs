//! Faults in the store file (issue 7, items 6 and 13), through the `cli_child` binary:
//!
//! - a store is created complete or not at all: a kill at any moment of the first run, or a
//!   full disk at creation, leaves no file or a valid one, never one that later commands call
//!   corrupt; an empty file left by an old version still counts as "no store yet";
//! - `runs list` and `runs show` open the store read-only: they never change its bytes or its
//!   mtime, work on a file they cannot write, and see a live writer's commits.
//! - a damaged step record is a store error (exit 5) naming the run, the step and what is wrong,
//!   for `runs show` and `runs resume`, and is left in place.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

fn cli(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cli_child"));
    cmd.args(args)
        .current_dir(dir)
        .env("FLOW_STORE", dir.join("flow.redb"))
        .env("FLOW_LOG_FORMAT", "json")
        // One attempt: `run busy` fails at once (exit 1) after creating the store and its run.
        .env("FLOW_RETRY__TRANSIENT__ATTEMPTS", "1")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn output(mut cmd: Command) -> Output {
    cmd.output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `runs list` works on whatever a killed creation left: no store (exit 2, "no store at") or a
/// valid one (exit 0), never a corrupt one.
fn assert_absent_or_valid(dir: &Path, attempt: usize) {
    let listed = output(cli(dir, &["runs", "list", "--output", "json"]));
    let store = dir.join("flow.redb");
    let present = std::fs::metadata(&store).is_ok_and(|m| m.len() > 0);
    if present {
        assert_eq!(
            listed.status.code(),
            Some(0),
            "try {attempt}: the store left by the kill is not usable: {}",
            text(&listed)
        );
    } else {
        assert_eq!(
            listed.status.code(),
            Some(2),
            "try {attempt}: {}",
            text(&listed)
        );
        assert!(text(&listed).contains("no store at"), "{}", text(&listed));
    }
}

#[test]
fn a_kill_at_any_moment_of_the_first_run_leaves_no_store_or_a_valid_one() {
    let mut present = 0;
    for attempt in 0..40 {
        let dir = tempfile::tempdir().unwrap();
        let mut child = cli(dir.path(), &["run", "busy"]).spawn().unwrap();
        std::thread::sleep(Duration::from_micros(fastrand::u64(0..15_000)));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        present += usize::from(dir.path().join("flow.redb").exists());
        assert_absent_or_valid(dir.path(), attempt);
        // And the next run works on it: the workflow runs and fails as it always does (exit 1),
        // not with a store error (exit 5).
        let again = output(cli(dir.path(), &["run", "busy"]));
        assert_eq!(
            again.status.code(),
            Some(1),
            "try {attempt}: {}",
            text(&again)
        );
    }
    eprintln!("{present} of 40 kills left a store, the others none");
}

#[test]
fn an_empty_file_counts_as_no_store_yet() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("flow.redb"), b"").unwrap();
    let listed = output(cli(dir.path(), &["runs", "list"]));
    assert_eq!(listed.status.code(), Some(2), "{}", text(&listed));
    let ran = output(cli(dir.path(), &["run", "busy", "--id", "first"]));
    assert_eq!(ran.status.code(), Some(1), "{}", text(&ran));
    let shown = output(cli(dir.path(), &["runs", "show", "first"]));
    assert_eq!(shown.status.code(), Some(0), "{}", text(&shown));
    let leftovers: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "flow.redb")
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn two_first_runs_at_once_share_one_valid_store() {
    for attempt in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let children: Vec<_> = ["one", "two"]
            .iter()
            .map(|id| {
                cli(dir.path(), &["run", "busy", "--id", id])
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert_eq!(out.status.code(), Some(1), "try {attempt}: {}", text(&out));
        }
        let listed = output(cli(dir.path(), &["runs", "list", "--output", "json"]));
        assert_eq!(listed.status.code(), Some(0), "{}", text(&listed));
        let runs: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
        assert_eq!(
            runs.as_array().map(Vec::len),
            Some(2),
            "try {attempt}: both runs are in the one store: {runs}"
        );
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Unmounts the tmpfs when the test ends, whatever happens.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_at_creation_leaves_no_store_and_the_next_run_creates_it() {
    if !is_root() {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(dir.path())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        mounted,
        "could not mount a tmpfs on {}",
        dir.path().display()
    );
    let _mount = Mount(dir.path().to_path_buf());

    // Fill the disk to the last byte.
    let filler = dir.path().join("filler");
    let mut fill = std::fs::File::create(&filler).unwrap();
    let chunk = vec![1u8; 4096];
    while std::io::Write::write_all(&mut fill, &chunk).is_ok() {}
    drop(fill);

    let full = output(cli(dir.path(), &["run", "busy", "--id", "full"]));
    assert_eq!(full.status.code(), Some(5), "{}", text(&full));
    assert!(text(&full).contains("no space left"), "{}", text(&full));
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["filler"], "no store and no temporary file is left");
    let listed = output(cli(dir.path(), &["runs", "list"]));
    assert_eq!(
        listed.status.code(),
        Some(2),
        "no store yet: {}",
        text(&listed)
    );
    assert!(!text(&listed).contains("corrupt"), "{}", text(&listed));

    std::fs::remove_file(&filler).unwrap();
    let ran = output(cli(dir.path(), &["run", "busy", "--id", "full"]));
    assert_eq!(ran.status.code(), Some(1), "{}", text(&ran));
    let listed = output(cli(dir.path(), &["runs", "list"]));
    assert_eq!(listed.status.code(), Some(0), "{}", text(&listed));
}

fn snapshot(path: &Path) -> (Vec<u8>, SystemTime) {
    let bytes = std::fs::read(path).unwrap();
    let mtime = std::fs::metadata(path).unwrap().modified().unwrap();
    (bytes, mtime)
}

#[test]
fn runs_list_and_show_never_write_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let ran = output(cli(dir.path(), &["run", "busy", "--id", "seen"]));
    assert_eq!(ran.status.code(), Some(1), "{}", text(&ran));
    let store = dir.path().join("flow.redb");
    let before = snapshot(&store);
    // A coarse mtime granularity must not hide a write.
    std::thread::sleep(Duration::from_millis(20));
    for args in [
        &["runs", "list"][..],
        &["runs", "list", "--output", "json"],
        &["runs", "show", "seen"],
        &["runs", "show", "seen", "--output", "json"],
    ] {
        let out = output(cli(dir.path(), args));
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
        assert!(text(&out).contains("seen"), "{args:?}: {}", text(&out));
        let after = snapshot(&store);
        assert!(before.0 == after.0, "{args:?} changed the store's bytes");
        assert_eq!(before.1, after.1, "{args:?} changed the store's mtime");
    }
}

#[test]
fn a_store_the_user_cannot_write_can_be_inspected() {
    let dir = tempfile::tempdir().unwrap();
    let ran = output(cli(dir.path(), &["run", "busy", "--id", "seen"]));
    assert_eq!(ran.status.code(), Some(1), "{}", text(&ran));
    let store = dir.path().join("flow.redb");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o444)).unwrap();
    let before = snapshot(&store);

    // As this user (root ignores the mode, so this checks the read-only open works at all).
    for args in [&["runs", "list"][..], &["runs", "show", "seen"]] {
        let out = output(cli(dir.path(), args));
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
    }

    // As `nobody`, who really cannot write it.
    let setpriv = Path::new("/usr/bin/setpriv");
    let has_nobody = std::fs::read_to_string("/etc/passwd")
        .is_ok_and(|p| p.lines().any(|l| l.starts_with("nobody:")));
    if !(is_root() && setpriv.exists() && has_nobody) {
        eprintln!("skipped the unprivileged part: needs root, setpriv and a `nobody` user");
        return;
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.path().join("cli_child");
    std::fs::copy(env!("CARGO_BIN_EXE_cli_child"), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    for args in [&["runs", "list"][..], &["runs", "show", "seen"]] {
        let out = Command::new(setpriv)
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(&exe)
            .args(args)
            .current_dir(dir.path())
            .env("FLOW_STORE", &store)
            .env("FLOW_LOG_FORMAT", "json")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "as nobody, {args:?}: {}",
            text(&out)
        );
        assert!(text(&out).contains("seen"), "{}", text(&out));
    }
    let after = snapshot(&store);
    assert!(before.0 == after.0, "the store's bytes changed");
    assert_eq!(before.1, after.1, "the store's mtime changed");
}

#[test]
fn a_read_only_listing_sees_a_live_writers_commits() {
    let dir = tempfile::tempdir().unwrap();
    // The first attempt fails and the run waits a minute before the next: it stays running.
    let mut writer = cli(dir.path(), &["run", "busy", "--id", "live"])
        .env("FLOW_RETRY__TRANSIENT__ATTEMPTS", "2")
        .env("FLOW_RETRY__TRANSIENT__INITIAL", "60s")
        .env("FLOW_RETRY__TRANSIENT__MAX", "60s")
        .env("FLOW_RETRY__TRANSIENT__JITTER", "false")
        // Where the step records its attempts; without it the step fails permanently at once.
        .env("CLI_CHILD_LOG", dir.path().join("attempts.log"))
        .spawn()
        .unwrap();
    let mut seen = String::new();
    flow_tests::wait_until(30, "the live run to be listed", || {
        let out = output(cli(dir.path(), &["runs", "list", "--output", "json"]));
        seen = text(&out);
        out.status.code() == Some(0) && seen.contains("live")
    });
    let shown = output(cli(
        dir.path(),
        &["runs", "show", "live", "--output", "json"],
    ));
    assert_eq!(shown.status.code(), Some(0), "{}", text(&shown));
    assert!(
        writer.try_wait().unwrap().is_none(),
        "the writer was still running while the store was read"
    );
    let _ = writer.kill();
    let _ = writer.wait();
}

/// The step values of the store, in key order.
fn step_values(store: &Path) -> Vec<Vec<u8>> {
    use redb::{ReadableDatabase, ReadableTable, TableDefinition};
    let steps: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("steps");
    let db = redb::Database::open(store).unwrap();
    let txn = db.begin_read().unwrap();
    let table = txn.open_table(steps).unwrap();
    table
        .iter()
        .unwrap()
        .map(|e| e.unwrap().1.value().to_vec())
        .collect()
}

/// Every step value of the store replaced by `bytes`.
fn damage_steps(store: &Path, bytes: &[u8]) {
    use redb::{ReadableTable, TableDefinition};
    let steps: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("steps");
    let db = redb::Database::open(store).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut table = txn.open_table(steps).unwrap();
        let keys: Vec<(String, String)> = table
            .iter()
            .unwrap()
            .map(|e| {
                let key = e.unwrap().0;
                let (run, step) = key.value();
                (run.to_owned(), step.to_owned())
            })
            .collect();
        assert!(!keys.is_empty(), "the run left no step records");
        for (run, step) in &keys {
            table.insert((run.as_str(), step.as_str()), bytes).unwrap();
        }
    }
    txn.commit().unwrap();
}

#[test]
fn a_damaged_step_record_is_a_clear_error_for_show_and_resume_and_is_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let ran = output(cli(dir.path(), &["run", "busy", "--id", "seen"]));
    assert_eq!(ran.status.code(), Some(1), "{}", text(&ran));
    let store = dir.path().join("flow.redb");
    // A binary step value (schema 4) with a status code no flow writes
    let damaged = [0x01, 9, 0x10, 1, 1, 1];
    damage_steps(&store, &damaged);
    let values_before = step_values(&store).len();
    for args in [
        &["runs", "show", "seen"][..],
        &["runs", "show", "seen", "--output", "json"],
        &["runs", "resume", "seen"],
    ] {
        let out = output(cli(dir.path(), args));
        let said = text(&out);
        // 5: the store's exit code (docs/DESIGN.md)
        assert_eq!(out.status.code(), Some(5), "{args:?}: {said}");
        assert!(said.contains("could not be decoded"), "{args:?}: {said}");
        assert!(
            said.contains("status code 9 is unknown"),
            "{args:?}: {said}"
        );
        assert!(said.contains("of run seen"), "{args:?}: {said}");
        assert!(!said.contains("panicked"), "{args:?}: {said}");
    }
    // Nothing replaced the damaged records: they are there to be looked at
    assert_eq!(step_values(&store), vec![damaged.to_vec(); values_before]);
}

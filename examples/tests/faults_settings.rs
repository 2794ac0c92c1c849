//! Faults in settings (issue 7, items 5 and 9), driven through the `sync_records` binary: a
//! settings error never echoes a value (it may be a secret), names every bad field once with its
//! real path and source (file and line, or environment variable), refuses keys that are no
//! setting, unknown retry policies and log filters that name no level; and nothing runs.
#![allow(clippy::unwrap_used)] // in a test an unwrap is an assertion

use std::path::Path;
use std::process::{Command, Output, Stdio};

const SECRET: &str = "TOPSECRET-9f8e7d";

fn command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sync_records"));
    cmd.args(args)
        .current_dir(dir)
        .env("FLOW_STORE", dir.join("flow.redb"))
        .env("FLOW_LOG_FORMAT", "json")
        .env("SYNC_DATA_DIR", dir)
        .env_remove("SYNC_FAILURE_RATE")
        .env_remove("SYNC_TOKEN")
        .env_remove("SYNC_BATCH_SIZE")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs the sync with `toml` as flow.toml; returns the output and stdout + stderr.
fn run_with_file(toml: &str) -> (Output, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("flow.toml"), toml).unwrap();
    let out = command(
        dir.path(),
        &["run", "sync_records", "--input", r#"{"count": 3}"#],
    )
    // The file's own store setting must not be masked; the default is flow.redb in `dir`.
    .env_remove("FLOW_STORE")
    .output()
    .unwrap();
    assert!(
        !dir.path().join("flow.redb").exists(),
        "nothing ran, no store was created"
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, all)
}

/// The problem lines of the report (`  - key: problem (from source)`).
fn problem_lines(all: &str) -> Vec<&str> {
    all.lines().filter(|l| l.starts_with("  - ")).collect()
}

fn line_for<'a>(all: &'a str, key: &str) -> &'a str {
    let prefix = format!("  - {key}: ");
    let lines: Vec<&str> = all.lines().filter(|l| l.starts_with(&prefix)).collect();
    assert_eq!(lines.len(), 1, "`{key}` is reported exactly once: {all}");
    lines[0]
}

#[test]
fn a_syntax_error_on_the_token_line_names_the_file_and_line_never_the_secret() {
    let (out, all) = run_with_file(&format!(
        "[app]\nbatch_size = 3\ntoken = \"{SECRET}\nfailure_rate = 0.1\n"
    ));
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert!(!all.contains(SECRET), "the secret leaked: {all}");
    assert!(
        !all.contains("TOPSECRET"),
        "part of the secret leaked: {all}"
    );
    let line = line_for(&all, "app.token");
    assert!(line.contains("flow.toml"), "{line}");
    assert!(line.contains("line 3"), "{line}");
    assert!(line.contains("not valid TOML"), "{line}");
    assert_eq!(
        all.matches("not valid TOML").count(),
        1,
        "a parse error is printed once: {all}"
    );
}

#[test]
fn a_syntax_error_inside_a_multi_line_secret_names_no_text_of_it() {
    // The bad line continues a string: what precedes `=` on it is secret text, not a key.
    let (out, all) = run_with_file(&format!(
        "[app]\ntoken = \"\"\"first-half\n{SECRET}=x\\q\"\"\"\n"
    ));
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert!(!all.contains(SECRET), "the secret leaked: {all}");
    assert!(!all.contains("first-half"), "the secret leaked: {all}");
    let problems = problem_lines(&all);
    assert_eq!(problems.len(), 1, "{all}");
    assert!(
        problems[0].contains("flow.toml") && problems[0].contains("line 3"),
        "{all}"
    );
}

#[test]
fn a_token_of_the_wrong_type_names_the_field_file_and_line_never_the_value() {
    for (value, shown) in [
        ("918273645546372", "918273645546372"),
        (&*format!("[\"{SECRET}\"]"), SECRET),
        (&*format!("{{ value = \"{SECRET}\" }}"), SECRET),
    ] {
        let (out, all) = run_with_file(&format!("[app]\nbatch_size = 3\ntoken = {value}\n"));
        assert_eq!(out.status.code(), Some(3), "{all}");
        assert!(!all.contains(shown), "the value leaked: {all}");
        let line = line_for(&all, "app.token");
        assert!(
            line.contains("flow.toml") && line.contains("line 3"),
            "{line}"
        );
        assert!(line.contains("expected a string"), "{line}");
    }
}

#[test]
fn every_bad_field_is_reported_once_with_its_real_path_and_source() {
    let (out, all) =
        run_with_file("[flow]\nstore = 5\n\n[app]\nbatch_size = \"many\"\nfailure_rate = 7\n");
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert!(all.contains("3 problems"), "{all}");
    assert_eq!(problem_lines(&all).len(), 3, "{all}");
    for (key, line) in [
        ("flow.store", "line 2"),
        ("app.batch_size", "line 5"),
        ("app.failure_rate", "line 6"),
    ] {
        let reported = line_for(&all, key);
        assert!(
            reported.contains("flow.toml") && reported.contains(line),
            "{key} is named with its file and {line}: {reported}"
        );
    }
    for wrong in ["store.flow", "batch_size.app", "from default", "\"many\""] {
        assert!(!all.contains(wrong), "`{wrong}` in: {all}");
    }
}

#[test]
fn bad_values_from_the_environment_name_their_variable() {
    let dir = tempfile::tempdir().unwrap();
    let out = command(dir.path(), &["check-config"])
        .env("SYNC_BATCH_SIZE", "many")
        .env("SYNC_FAILURE_RATE", "7")
        .env("FLOW_SHARING", "sometimes")
        .output()
        .unwrap();
    let all = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert_eq!(problem_lines(&all).len(), 3, "{all}");
    assert!(
        line_for(&all, "app.batch_size").contains("(from environment variable SYNC_BATCH_SIZE)"),
        "{all}"
    );
    assert!(
        line_for(&all, "app.failure_rate")
            .contains("(from environment variable SYNC_FAILURE_RATE)"),
        "{all}"
    );
    let sharing = line_for(&all, "flow.sharing");
    assert!(
        sharing.contains("(from environment variable FLOW_SHARING)"),
        "{all}"
    );
    assert!(
        sharing.contains("`shared`") && sharing.contains("`exclusive`"),
        "{all}"
    );
    assert!(!all.contains("from default"), "{all}");
}

#[test]
fn unknown_keys_unknown_retry_policies_and_levelless_log_filters_are_refused() {
    let (out, all) = run_with_file(
        "[flow]\nlog_level = \"nonsense\"\n\n[flow.retry.transent]\nattempts = 3\n\n\
         [flow.retry.transient]\nattemps = 5\n\n[app]\nbatch_sise = 3\n\n[ap]\nx = 1\n",
    );
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert_eq!(problem_lines(&all).len(), 5, "{all}");
    let batch = line_for(&all, "app.batch_sise");
    assert!(batch.contains("did you mean `batch_size`?"), "{batch}");
    assert!(batch.contains("line 11"), "{batch}");
    let attempts = line_for(&all, "flow.retry.transient.attemps");
    assert!(attempts.contains("did you mean `attempts`?"), "{attempts}");
    let policy = line_for(&all, "flow.retry.transent");
    assert!(
        policy.contains("`transient`") && policy.contains("`none`"),
        "the known policies are listed: {policy}"
    );
    let level = line_for(&all, "flow.log_level");
    assert!(level.contains("line 2"), "{level}");
    assert!(
        line_for(&all, "ap").contains("did you mean `app`?"),
        "{all}"
    );

    // A filter whose every directive names a level is fine.
    let (ok, all) =
        run_with_file("[flow]\nlog_level = \"warn,flow_runtime=debug\"\n[app]\nbatch_size = 0\n");
    assert_eq!(ok.status.code(), Some(3), "{all}");
    assert_eq!(
        problem_lines(&all).len(),
        1,
        "only batch_size is wrong: {all}"
    );
}

#[test]
fn a_misspelt_environment_variable_is_a_warning_and_unrelated_ones_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let out = command(dir.path(), &["check-config", "--output", "json"])
        .env("SYNC_BATCH_SISE", "3")
        .env("SYNC_SOMETHING_ELSE_ENTIRELY", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{err}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(
        warnings[0].contains("SYNC_BATCH_SISE") && warnings[0].contains("SYNC_BATCH_SIZE"),
        "{err}"
    );
}

#[test]
fn check_config_names_the_line_each_file_value_comes_from() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("flow.toml"),
        "# settings\n[app]\n\nbatch_size = 4\n",
    )
    .unwrap();
    let out = command(dir.path(), &["check-config", "--output", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let batch = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "app.batch_size")
        .unwrap();
    let source = batch["source"].as_str().unwrap();
    assert!(
        source.contains("flow.toml") && source.ends_with("line 4"),
        "{source}"
    );
}

//! Logs as an operator meets them, through a real `#[flow::main]` binary: JSON lines whose
//! objects never repeat a key, log lines and the progress display sharing a terminal (tmux)
//! without writing over each other, and an ignored `at_most_once` failure told in words an
//! operator can act on.

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::process::{Command, Output};

fn obs(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_obs_child"))
        .args(args)
        .current_dir(dir)
        .env("FLOW_STORE", dir.join("flow.redb"))
        .env("FLOW_LOG_FORMAT", "json")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// Walks a JSON document and fails on an object with a key twice, which `serde_json::Value`
/// would accept silently (the last value wins).
struct UniqueKeys;

impl<'de> DeserializeSeed<'de> for UniqueKeys {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(UniqueKeys)
    }
}

impl<'de> Visitor<'de> for UniqueKeys {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(UniqueKeys)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(A::Error::custom(format!("the key `{key}` appears twice")));
            }
            map.next_value_seed(UniqueKeys)?;
        }
        Ok(())
    }
}

fn check_unique_keys(line: &str) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_str(line);
    UniqueKeys.deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())
}

#[test]
fn the_duplicate_key_check_catches_a_repeated_key() {
    // The check itself: what serde_json::Value accepts, it refuses.
    let repeated = r#"{"span":{"name":"a::b","name":"step"}}"#;
    assert!(serde_json::from_str::<Value>(repeated).is_ok());
    let err = check_unique_keys(repeated).unwrap_err();
    assert!(err.contains("`name` appears twice"), "{err}");
    assert!(check_unique_keys(r#"{"span":{"name":"step","step":"a::b"}}"#).is_ok());
}

#[test]
fn every_json_log_line_is_an_object_with_unique_keys_and_step_spans_name_their_step() {
    let dir = tempfile::tempdir().unwrap();
    // Log lines inside steps, retries (WARN from the engine) and a step's own line
    let report = obs(
        dir.path(),
        &[
            "run",
            "report",
            "--input",
            r#"{"fetch_ms": 1, "render_ms": 1, "render_flaky": 2}"#,
            "--id",
            "r1",
        ],
    );
    let chatty = obs(
        dir.path(),
        &["run", "chatty", "--input", r#"{"steps": 3, "pause_ms": 1}"#],
    );
    let mut step_lines = 0;
    let mut steps_named = HashSet::new();
    for out in [&report, &chatty] {
        flow_tests::assert_exit(out, 0);
        for line in String::from_utf8_lossy(&out.stderr).lines() {
            let entry: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line}"));
            assert!(entry.is_object(), "{line}");
            if let Err(e) = check_unique_keys(line) {
                panic!("{e}: {line}");
            }
            if entry["span"]["name"] == "step" {
                step_lines += 1;
                let step = entry["span"]["step"]
                    .as_str()
                    .unwrap_or_else(|| panic!("a step span names its step under `step`: {line}"));
                steps_named.insert(step.to_owned());
                assert!(entry["span"]["key"].is_string(), "{line}");
                assert!(entry["span"]["attempt"].is_u64(), "{line}");
            }
        }
    }
    // 2 retries of render, 3 hellos
    assert_eq!(step_lines, 5, "{}", String::from_utf8_lossy(&report.stderr));
    assert_eq!(
        steps_named,
        HashSet::from(["obs_child::render".into(), "obs_child::say_hello".into()])
    );
}

#[test]
fn an_ignored_at_most_once_failure_says_what_happened_and_what_to_check() {
    let dir = tempfile::tempdir().unwrap();
    let out = obs(dir.path(), &["run", "notify", "--id", "n1"]);
    flow_tests::assert_exit(&out, 0);
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The run succeeded, so nothing is logged at ERROR
    assert!(lines.iter().all(|l| l["level"] != "ERROR"), "{:#?}", lines);
    let failed: Vec<&Value> = lines
        .iter()
        .filter(|l| l["span"]["step"] == "obs_child::send_notice")
        .collect();
    assert_eq!(failed.len(), 1, "{lines:#?}");
    let line = failed[0];
    assert_eq!(line["level"], "WARN");
    assert_eq!(line["fields"]["error"], "the mail server refused `done`");
    assert!(
        line["fields"].get("class").is_none(),
        "no made-up class: {line}"
    );
    let message = line["fields"]["message"].as_str().unwrap();
    for words in [
        "at_most_once step failed and was not retried",
        "its effect may have happened",
        "check whether its effect took place and redo it by hand",
    ] {
        assert!(message.contains(words), "{message}");
    }
    let run = flow_tests::read_run(&dir.path().join("flow.redb"), "n1").unwrap();
    assert_eq!(run.status, flow_runtime::store::RunStatus::Succeeded);
}

/// A tmux server of this test's own, killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap()
    }

    /// The pane's whole history, wrapped lines joined.
    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-J", "-S", "-"]).stdout)
            .into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

#[test]
fn on_a_terminal_log_lines_and_the_progress_display_do_not_write_over_each_other() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("tmux is not installed: skipping the terminal test");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tmux = Tmux {
        socket: format!("flow-logs-{}", std::process::id()),
    };
    let exe = env!("CARGO_BIN_EXE_obs_child");
    let store = dir.path().join("flow.redb");
    let script = format!(
        "FLOW_STORE='{}' RUST_LOG=warn,flow_runtime=info '{exe}' run chatty \
         --input '{{\"steps\": 16, \"pause_ms\": 150}}' --id tty; echo EXITED $?; sleep 60",
        store.display()
    );
    let started = tmux.cmd(&[
        "new-session",
        "-d",
        "-x",
        "200",
        "-y",
        "60",
        "sh",
        "-c",
        &script,
    ]);
    assert!(started.status.success(), "{started:?}");

    // The progress display is on screen while the run logs
    let mut saw_progress = false;
    flow_tests::wait_until(60, "the run to end in tmux", || {
        let screen = tmux.screen();
        saw_progress |= screen.contains("steps done");
        screen.contains("EXITED")
    });
    let screen = tmux.screen();
    assert!(screen.contains("EXITED 0"), "{screen}");
    assert!(saw_progress, "the progress display was never shown");

    // Each log line is whole, on a line of its own, and none is lost
    let hellos: Vec<&str> = screen
        .lines()
        .filter(|l| l.contains("hello from"))
        .collect();
    assert_eq!(hellos.len(), 16, "{screen}");
    for (i, line) in hellos.iter().enumerate() {
        assert!(
            line.starts_with("20") && line.contains(" WARN "),
            "a log line begins with its timestamp: {line:?}\n{screen}"
        );
        assert!(
            line.trim_end()
                .ends_with(&format!("hello from step {i} i={i}")),
            "{line:?}\n{screen}"
        );
        assert!(!line.contains("steps done"), "{line:?}\n{screen}");
    }
    // The display is cleared when the run ends: what is left is the log and the outcome
    assert!(!screen.contains("steps done"), "{screen}");
    assert!(screen.contains("run tty succeeded"), "{screen}");
}

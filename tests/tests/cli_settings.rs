//! Framework settings take effect: a named retry policy tuned from the environment changes how
//! often a step is attempted.

use flow_tests::lines;
use std::os::unix::ffi::OsStrExt;
use std::process::Command;

#[test]
fn a_retry_policy_override_from_the_environment_takes_effect() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("attempts.log");
    let out = Command::new(env!("CARGO_BIN_EXE_cli_child"))
        .args(["run", "busy", "--output", "json"])
        .current_dir(dir.path())
        .env("FLOW_STORE", dir.path().join("flow.redb"))
        .env("CLI_CHILD_LOG", &log)
        .env("FLOW_RETRY__TRANSIENT__ATTEMPTS", "3")
        .env("FLOW_RETRY__TRANSIENT__INITIAL", "1ms")
        .env("FLOW_RETRY__TRANSIENT__MAX", "2ms")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        lines(&log),
        ["attempt 1", "attempt 2", "attempt 3"],
        "3 attempts, not the built-in 4"
    );

    // The runbook describes the policy in force, overrides included.
    let runbook = Command::new(env!("CARGO_BIN_EXE_cli_child"))
        .args(["runbook"])
        .current_dir(dir.path())
        .env("FLOW_RETRY__TRANSIENT__ATTEMPTS", "6")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&runbook.stdout);
    assert!(text.contains("transient: 6 attempts, 1s to 20s"), "{text}");

    let bad = Command::new(env!("CARGO_BIN_EXE_cli_child"))
        .args(["check-config"])
        .current_dir(dir.path())
        .env("FLOW_RETRY__TRANSIENT__INITIAL", "soon")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(3));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("flow.retry.transient.initial"), "{err}");
    assert!(
        err.contains("environment variable FLOW_RETRY__TRANSIENT__INITIAL"),
        "{err}"
    );
}

/// A log filter with white space before a non-ASCII character made tracing-subscriber's parser
/// panic (found by `fuzz_decoders`): as a setting it is refused with exit code 3, and in
/// `RUST_LOG` it is reported and the settings' level used.
#[test]
fn a_malformed_log_filter_is_refused_or_reported_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let cmd = |var: &str, value: &str| {
        Command::new(env!("CARGO_BIN_EXE_cli_child"))
            .args(["check-config"])
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .env(var, value)
            .output()
            .unwrap()
    };
    for value in ["\ta\u{a1}[", " n\u{e9}=x", "\n\u{cc819}["] {
        let bad = cmd("FLOW_LOG_LEVEL", value);
        let err = String::from_utf8_lossy(&bad.stderr);
        assert_eq!(bad.status.code(), Some(3), "{value:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(err.contains("flow.log_level"), "{err}");
        assert!(err.contains("environment variable FLOW_LOG_LEVEL"), "{err}");

        let env = cmd("RUST_LOG", value);
        let err = String::from_utf8_lossy(&env.stderr);
        assert_eq!(env.status.code(), Some(0), "{value:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            err.contains("RUST_LOG") && err.contains("is not a log filter"),
            "{err}"
        );
    }
    // A `RUST_LOG` that is not UTF-8 is reported too, not dropped silently.
    let not_utf8 = Command::new(env!("CARGO_BIN_EXE_cli_child"))
        .args(["check-config"])
        .current_dir(dir.path())
        .env("RUST_LOG", std::ffi::OsStr::from_bytes(b"info\xff"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&not_utf8.stderr);
    assert_eq!(not_utf8.status.code(), Some(0), "{err}");
    assert!(
        err.contains("RUST_LOG") && err.contains("is not UTF-8"),
        "{err}"
    );

    // White space around directives is only trimmed: a well-formed filter still passes.
    let spaced = cmd("FLOW_LOG_LEVEL", " warn , cli_child=debug ");
    let err = String::from_utf8_lossy(&spaced.stderr);
    assert_eq!(spaced.status.code(), Some(0), "{err}");
}

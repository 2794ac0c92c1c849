//! Faults in the generated runbook: a step's doc comment lost its later paragraphs, a key
//! expression was printed with token spacing (`format! ("inv-{}", …)`), and every workflow got
//! the units and rollout actions, also one that runs no units.

use serde_json::Value;
use std::process::{Command, Output};

fn runbook(format: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_runbook_child"))
        .args(["runbook", "--format", format])
        .current_dir(dir.path())
        .env("FLOW_STORE", dir.path().join("flow.redb"))
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn markdown() -> String {
    let out = runbook("markdown");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The markdown section that starts with `heading`, up to the next heading of that level.
fn section<'a>(text: &'a str, heading: &str) -> &'a str {
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading}: {text}"));
    let level = heading.split(' ').next().unwrap();
    let rest = &text[start + heading.len()..];
    let end = rest
        .find(&format!("\n{level} "))
        .map_or(rest.len(), |i| i + 1);
    &rest[..end]
}

#[test]
fn the_step_doc_keeps_every_paragraph() {
    let text = markdown();
    let step = section(&text, "### Step `runbook_child::charge`");
    for paragraph in [
        "Charges one invoice.",
        "The payment API deduplicates on the key, so a charge repeated after a crash is harmless.",
        "Declined cards are permanent errors and are never retried.",
    ] {
        assert!(step.contains(paragraph), "{paragraph}: {step}");
    }
    assert!(step.contains("- returns: `u64`"), "{step}");
    // The table's summary is the whole first paragraph.
    assert!(
        text.contains("| skipped; returns Default::default() | Charges one invoice. |"),
        "{text}"
    );
}

#[test]
fn a_key_expression_reads_as_written() {
    let text = markdown();
    assert!(
        text.contains(r#"idempotency_key = format!("inv-{}", invoice_id)"#),
        "{text}"
    );
    let out = runbook("json");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let charge = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "runbook_child::charge")
        .unwrap();
    assert_eq!(
        charge["repeat_safety"],
        r#"idempotency_key = format!("inv-{}", invoice_id)"#
    );
    assert_eq!(charge["output_type"], "u64");
}

#[test]
fn units_actions_only_for_workflows_that_run_units() {
    let text = markdown();
    let plain = section(&text, "## Workflow `billing`");
    assert!(plain.contains("It runs no units"), "{plain}");
    assert!(plain.contains("- **failed**:"), "{plain}");
    for units_only in [
        "failed with failed units",
        "**paused**",
        "--rollout",
        "retry-unit",
    ] {
        assert!(!plain.contains(units_only), "{units_only}: {plain}");
    }
    for name in ["billing_units", "billing_helper"] {
        let with_units = section(&text, &format!("## Workflow `{name}`"));
        assert!(
            with_units.contains("- **failed with failed units**:")
                && with_units.contains("- **paused**:"),
            "{name}: {with_units}"
        );
    }

    let out = runbook("json");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let units: Vec<(String, bool)> = json["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["name"].as_str().unwrap().to_owned(), w["units"] == true))
        .collect();
    assert_eq!(
        units,
        [
            ("billing".to_owned(), false),
            ("billing_helper".to_owned(), true),
            ("billing_units".to_owned(), true),
        ]
    );
}

//! The runbook: generated from the registry and the doc comments of workflows and steps, with
//! the exact commands of this binary for every state a run can be left in.

use super::args::{RunbookFormat, EXIT_CODES};
use super::{AppInfo, Exit};
use crate::engine::alerts::AlertSinks;
use crate::engine::registry::{self, DryRunSpec, RepeatSafety, RetrySpec, StepMeta, WorkflowMeta};
use crate::engine::retry::RetryPolicies;
use crate::engine::schedules::ScheduleView;
use crate::store::format_tick;
use serde_json::{json, Value};

fn repeat_safety(step: &StepMeta) -> String {
    match step.repeat {
        RepeatSafety::Idempotent if step.read_only => "read_only (idempotent)".into(),
        RepeatSafety::Idempotent => "idempotent".into(),
        RepeatSafety::IdempotencyKey { expr } => format!("idempotency_key = {expr}"),
        RepeatSafety::AtMostOnce => "at_most_once".into(),
    }
}

fn retry(step: &StepMeta, policies: &RetryPolicies) -> String {
    if step.repeat == RepeatSafety::AtMostOnce {
        return "never retried".into();
    }
    let policy = policies.resolve(&step.retry);
    match step.retry {
        RetrySpec::Named(name) => format!("{name}: {policy} (tunable: flow.retry.{name})"),
        RetrySpec::Inline { .. } => policy.to_string(),
    }
}

fn dry_run(step: &StepMeta) -> String {
    match step.dry_run {
        DryRunSpec::Execute => "runs for real (read-only)".into(),
        DryRunSpec::Default => "skipped; returns Default::default()".into(),
        DryRunSpec::Function(f) => format!("skipped; {f} stands in"),
    }
}

/// The doc comment's first paragraph as one line, for a table cell (its later paragraphs are
/// in the step's own section).
fn summary(doc: &str) -> String {
    doc.trim()
        .lines()
        .map(str::trim)
        .take_while(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// What an operator does for each state a run of `w` can be left in.
fn actions(app: &AppInfo, w: &WorkflowMeta) -> Vec<(&'static str, String)> {
    let bin = app.name;
    let name = w.name;
    let mut actions = vec![(
        "failed",
        format!("Read the error: `{bin} runs show <id>`. Fix its cause (a permanent error is never retried by itself), then `{bin} runs resume <id>`, or `{bin} runs retry-failed --workflow {name}` for all of them. Completed steps are replayed, not repeated. To redo part of a run: `{bin} runs fork <id> --from-step <step>`."),
    )];
    // Failed units and staged rollouts exist only in workflows that run units.
    if w.units {
        actions.extend([
        (
            "failed with failed units",
            format!("`{bin} runs show <id>` lists the failed units and the most frequent errors. After the fix, `{bin} runs retry-failed <id>` re-executes only the failed and unfinished units (succeeded ones are replayed), or `{bin} runs retry-unit <id> --unit <key>` one of them. A tripped error budget names its threshold in the error."),
        ),
        (
            "paused",
            format!("A staged rollout processed its share of units. Check the results, then `{bin} run {name} --input '<the same input>' --id <id> --rollout 25%` processes more; `--rollout 100%` finishes the run."),
        ),
        ]);
    }
    actions.extend([
        (
            "needs-attention",
            format!("An at_most_once step was interrupted and its effect is unknown. Check the external system. If the effect happened: `{bin} runs resolve <id> --step <key> --done --step-output '<json>'`; if not: `{bin} runs resolve <id> --step <key> --rerun`. Then `{bin} runs resume <id>`."),
        ),
        (
            "stuck in backoff",
            format!("`{bin} runs show <id>` names the step, its last error and when its next attempt is due. If the process is alive it retries by itself; if it died, `{bin} runs resume <id>` continues with the next attempt after the remaining delay. To give up: `{bin} runs cancel <id>`."),
        ),
        (
            "running, but no process executes it",
            format!("The process died (crash, kill, reboot). `{bin} runs resume <id>` continues where it stopped, with the same trace id."),
        ),
    ]);
    actions
}

/// What raises an alert about runs of `w`, one line each.
fn alert_conditions(w: &WorkflowMeta, sinks: &AlertSinks) -> Vec<String> {
    let mut conditions = Vec::new();
    match w.alert_after {
        Some(n) => conditions.push(format!(
            "{n} consecutive failed runs (kind `consecutive-failures`; once per streak, no new one within the cool-down of {}; resolved by the next success)",
            humantime::format_duration(sinks.cooldown_period())
        )),
        None => conditions.push(
            "consecutive failures: no threshold set (`#[workflow(alert_after = N)]`)".to_owned(),
        ),
    }
    let source = if sinks.overrides_max_duration(w.name) {
        format!("set in settings: `[flow.alerts.max_duration]` `{}`", w.name)
    } else {
        format!(
            "declared on the workflow; `[flow.alerts.max_duration]` `{} = \"...\"` or `\"off\"` overrides it",
            w.name
        )
    };
    match sinks.max_duration_of(w) {
        Some(limit) => conditions.push(format!(
            "a run not finished {} after it was created, queued, running or sleeping (kind `max-duration`, {source}; once per run, seen by a worker within a second; resolved when the run finishes)",
            humantime::format_duration(limit),
        )),
        None if w.max_duration_ms.is_some() => conditions.push(format!(
            "run duration: the declared max_duration is turned off in settings (`[flow.alerts.max_duration]` `{} = \"off\"`)",
            w.name
        )),
        None => conditions.push(format!(
            "run duration: no max_duration set (`[flow.alerts.max_duration]` `{} = \"2h\"`)",
            w.name
        )),
    }
    if w.units {
        conditions.push(
            "an error budget of a units fan-out tripped (kind `error-budget`; once per run, with the threshold, the counts and the failed units; resolved when the run succeeds)".to_owned(),
        );
    }
    conditions.push(
        "a run that needs attention (kind `needs-attention`; resolved when it succeeds or is cancelled)".to_owned(),
    );
    conditions
}

/// Where alerts go: the log always, then the webhook (its URL without credentials or query;
/// the secret header by name only) and the command.
fn alert_sinks(sinks: &AlertSinks) -> Vec<String> {
    let mut out = vec!["the log (an `alert fired` error line)".to_owned()];
    if let Some(url) = sinks.webhook_url() {
        let header = sinks
            .webhook_header_name()
            .map(|h| format!(" with header `{h}` (its secret value is not shown)"))
            .unwrap_or_default();
        out.push(format!("webhook: POST {url}{header}"));
    }
    if let Some(argv) = sinks.command_argv() {
        out.push(format!(
            "command: `{}` (the notice's JSON on standard input)",
            argv.join(" ")
        ));
    }
    out
}

/// The schedules the runbook describes: their settings and, when the store could be read, their
/// stored state (`note` says why not).
#[derive(Default)]
pub(super) struct Schedules {
    pub views: Vec<(ScheduleView, std::time::Duration)>,
    pub note: Option<String>,
}

impl Schedules {
    fn of<'a>(
        &'a self,
        workflow: &'a str,
    ) -> impl Iterator<Item = &'a (ScheduleView, std::time::Duration)> {
        self.views
            .iter()
            .filter(move |(v, _)| v.workflow == workflow)
    }
}

/// One schedule as the runbook describes it: cron and zone, policies, next fire time, state.
fn schedule_line(app: &AppInfo, v: &ScheduleView, window: std::time::Duration) -> String {
    let next = match (&v.next_local, v.next_ms) {
        (Some(local), Some(ms)) => format!("{local} ({})", format_tick(ms)),
        _ => "none".to_owned(),
    };
    format!(
        "schedule `{}`: `{}` in {} (from {}); catch-up `{}` within {}, overlap `{}`, queue `{}`; next fire {next}; {}. Operate it with `{bin} schedules pause {0} --note '<why>'`, `{bin} schedules resume {0}`, `{bin} schedules trigger {0}` (one run now) and `{bin} schedules backfill {0} --from <time> --to <time>` (the runs of past ticks). Ticks that pass while no worker runs and that the catch-up leaves out raise an alert (kind `missed-tick`, once per worker pass that left ticks out, with the backfill command; it does not resolve).",
        v.name,
        v.cron,
        v.timezone,
        v.source,
        v.catch_up.as_str(),
        humantime::format_duration(window),
        v.overlap.as_str(),
        v.queue,
        super::schedules::state(v),
        bin = app.name,
    )
}

pub(super) fn print(
    app: &AppInfo,
    format: RunbookFormat,
    policies: &RetryPolicies,
    schedules: &Schedules,
    sinks: &AlertSinks,
) -> Exit {
    let workflows = registry::workflows();
    let steps = registry::steps();
    match format {
        RunbookFormat::Json => {
            let doc = json!({
                "app": app.name,
                "version": app.version,
                "about": app.doc.trim(),
                "workflows": workflows.iter().map(|w| json!({
                    "name": w.name,
                    "doc": w.doc.trim(),
                    "params": w.params,
                    "units": w.units,
                    "alert_after": w.alert_after,
                    "max_duration_ms": sinks.max_duration_of(w).map(|d| d.as_millis() as u64),
                    "alerts": {
                        "conditions": alert_conditions(w, sinks),
                        "sinks": alert_sinks(sinks),
                    },
                    "source": format!("{}:{}", w.file, w.line),
                    "actions": actions(app, w).into_iter().map(|(state, what)| (state.to_owned(), Value::String(what))).collect::<serde_json::Map<_, _>>(),
                })).collect::<Vec<_>>(),
                "steps": steps.iter().map(|s| json!({
                    "name": s.name,
                    "doc": s.doc.trim(),
                    "output_type": s.output_type,
                    "repeat_safety": repeat_safety(s),
                    "retry": retry(s, policies),
                    "timeout_ms": s.timeout_ms,
                    "dry_run": dry_run(s),
                    "source": format!("{}:{}", s.file, s.line),
                })).collect::<Vec<_>>(),
                "schedules": schedules.views.iter().map(|(v, window)| json!({
                    "name": v.name,
                    "workflow": v.workflow,
                    "cron": v.cron,
                    "timezone": v.timezone,
                    "catch_up": v.catch_up.as_str(),
                    "catch_up_window": humantime::format_duration(*window).to_string(),
                    "overlap": v.overlap.as_str(),
                    "queue": v.queue,
                    "source": v.source,
                    "next_fire": v.next_ms.map(format_tick),
                    "next_fire_local": v.next_local,
                    "state": super::schedules::state(v),
                })).collect::<Vec<_>>(),
                "schedules_note": schedules.note,
                "exit_codes": EXIT_CODES.lines().skip(1).map(str::trim).collect::<Vec<_>>(),
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&doc).unwrap_or_else(|_| doc.to_string())
            );
        }
        RunbookFormat::Markdown => {
            println!("# Runbook: {}\n", app.name);
            if !app.doc.trim().is_empty() {
                println!("{}\n", app.doc.trim());
            }
            println!("Inspect runs with `{0} runs list` and `{0} runs show <id>`; every command takes `--output json`.\n", app.name);
            for w in &workflows {
                println!("## Workflow `{}`\n", w.name);
                if !w.doc.trim().is_empty() {
                    println!("{}\n", w.doc.trim());
                }
                println!(
                    "- start: `{} run {} --input '<json>' --id <run-id>` (parameters: {})",
                    app.name,
                    w.name,
                    if w.params.is_empty() {
                        "none".to_owned()
                    } else {
                        w.params.join(", ")
                    }
                );
                println!(
                    "- preview: `{} run {} --input '<json>' --dry-run`",
                    app.name, w.name
                );
                for (v, window) in schedules.of(w.name) {
                    println!("- {}", schedule_line(app, v, *window));
                }
                if let Some(note) = schedules
                    .note
                    .as_ref()
                    .filter(|_| schedules.of(w.name).next().is_some())
                {
                    println!("  ({note})");
                }
                println!("- source: {}:{}", w.file, w.line);
                println!("- alerts on:");
                for condition in alert_conditions(w, sinks) {
                    println!("  - {condition}");
                }
                println!("- alerts go to:");
                for sink in alert_sinks(sinks) {
                    println!("  - {sink}");
                }
                println!();
                println!("What to do when a run of `{}` is:\n", w.name);
                for (state, what) in actions(app, w) {
                    println!("- **{state}**: {what}");
                }
                println!();
            }
            println!("## Steps\n");
            println!("| step | repeat safety | retry | timeout | dry run | what it does |");
            println!("|---|---|---|---|---|---|");
            for s in &steps {
                println!(
                    "| `{}` | {} | {} | {} | {} | {} |",
                    s.name,
                    repeat_safety(s),
                    retry(s, policies),
                    s.timeout_ms
                        .map(|t| format!("{t} ms per attempt"))
                        .unwrap_or_else(|| "none".into()),
                    dry_run(s),
                    summary(s.doc)
                );
            }
            println!();
            for s in &steps {
                println!("### Step `{}`\n", s.name);
                if !s.doc.trim().is_empty() {
                    println!("{}\n", s.doc.trim());
                }
                println!("- returns: `{}`", s.output_type);
                println!("- source: {}:{}\n", s.file, s.line);
            }
            println!(
                "## Exit codes\n\n```text\n{}\n```",
                EXIT_CODES.lines().skip(1).collect::<Vec<_>>().join("\n")
            );
        }
    }
    Exit::Success
}

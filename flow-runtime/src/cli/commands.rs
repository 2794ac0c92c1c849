//! The subcommands: each turns its arguments into engine calls and prints a table or JSON.

use super::args::{Cli, Command, OutputFormat, RunsCommand};
use super::{AppInfo, Exit};
use crate::engine::{Error, Flow, Resolution, RunError, RunOptions};
use crate::registry::WorkflowFailure;
use crate::settings::{FlowSettings, Loaded, SharingSetting};
use crate::store::{
    RedbStore, RunFilter, RunId, RunRecord, RunStatus, Sharing, StepId, StepRecord, StepStatus,
    StoreError,
};
use comfy_table::{presets, Table};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_preset(presets::ASCII_BORDERS_ONLY_CONDENSED);
    table.set_header(header.iter().copied());
    table
}

fn time(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// Maps an engine error to its message and exit code.
fn fail(e: &Error) -> Exit {
    eprintln!("error: {e}");
    match e {
        Error::Store(_) | Error::Interrupted { .. } | Error::Encoding(_) => Exit::Store,
        _ => Exit::Usage,
    }
}

fn open_store(settings: &FlowSettings, must_exist: bool) -> Result<Flow, Exit> {
    let sharing = match settings.sharing {
        SharingSetting::Shared => Sharing::Shared,
        SharingSetting::Exclusive => Sharing::Exclusive,
    };
    // Commands that must find a store only read it: they open it read-only and never write.
    let store = if must_exist {
        RedbStore::open_read_only(&settings.store)
    } else {
        RedbStore::open_with(&settings.store, sharing)
    };
    match store {
        Ok(store) => Ok(Flow::builder()
            .retry_policies(settings.retry_policies())
            .store(Arc::new(store))),
        Err(e) => {
            eprintln!("error: {e}");
            Err(match e {
                StoreError::Missing { .. } => Exit::Usage,
                _ => Exit::Store,
            })
        }
    }
}

pub(super) fn check_config<S: serde::Serialize>(loaded: &Loaded<S>, output: OutputFormat) -> Exit {
    let rows = loaded.describe();
    match output {
        OutputFormat::Json => print_json(&Value::Array(
            rows.into_iter()
                .map(|(key, value, source)| json!({ "key": key, "value": value, "source": source }))
                .collect(),
        )),
        OutputFormat::Table => {
            let mut t = table(&["SETTING", "VALUE", "SOURCE"]);
            for (key, value, source) in rows {
                t.add_row([key, value.to_string(), source]);
            }
            println!("{t}");
        }
    }
    Exit::Success
}

pub(super) async fn dispatch(app: &AppInfo, settings: &FlowSettings, cli: Cli) -> Exit {
    let output = cli.output;
    let Some(command) = cli.command else {
        return Exit::Usage;
    };
    match command {
        Command::Run {
            workflow,
            input,
            input_file,
            id,
            dry_run,
            rollout,
        } => {
            let input = match read_input(input, input_file.as_deref()) {
                Ok(input) => input,
                Err(message) => {
                    eprintln!("error: {message}");
                    return Exit::Usage;
                }
            };
            let flow = match open_store(settings, false) {
                Ok(flow) => flow,
                Err(exit) => return exit,
            };
            if dry_run {
                return dry(&flow, &workflow, input, output).await;
            }
            let mut options = RunOptions::new();
            if let Some(id) = id {
                options = options.id(id);
            }
            if let Some(percent) = rollout {
                options = options.rollout(percent);
            }
            let started = flow.start(&workflow, options, input).await;
            follow(app, &flow, started, output).await
        }
        Command::Runs(runs) => runs_command(app, settings, runs, output).await,
        Command::Runbook { format } => {
            super::runbook::print(app, format, &settings.retry_policies())
        }
        Command::CheckConfig | Command::Completions { .. } => Exit::Success,
    }
}

/// Waits for a started (or resumed) run, with a progress display on a terminal, and reports
/// its outcome.
async fn follow(
    app: &AppInfo,
    flow: &Flow,
    started: Result<crate::engine::RunHandle<Value, WorkflowFailure>, Error>,
    output: OutputFormat,
) -> Exit {
    let handle = match started {
        Ok(handle) => handle,
        Err(e) => return fail(&e),
    };
    let id = handle.run_id().clone();
    let progress = super::progress::start(flow, &id);
    let waited = super::signals::outcome(flow, handle).await;
    drop(progress);
    match waited {
        super::signals::Waited::Ended(outcome) => {
            report_outcome(flow, &id, outcome, output, app).await
        }
        super::signals::Waited::Stopped { signal, in_grace } => {
            super::signals::report_stopped(app, &id, signal, in_grace)
        }
    }
}

fn read_input(input: Option<String>, file: Option<&Path>) -> Result<Value, String> {
    let (text, what) = match (input, file) {
        (Some(text), _) => (text, "--input".to_owned()),
        (None, Some(path)) if path == Path::new("-") => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|e| format!("cannot read the input from standard input: {e}"))?;
            (text, "the standard input".to_owned())
        }
        (None, Some(path)) => (
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
            path.display().to_string(),
        ),
        (None, None) => return Ok(Value::Null),
    };
    serde_json::from_str(&text).map_err(|e| {
        format!("{what} is not valid JSON ({e}); pass the workflow's input as JSON, for example --input '{{\"count\": 10}}'")
    })
}

async fn dry(flow: &Flow, workflow: &str, input: Value, output: OutputFormat) -> Exit {
    let dry = match flow.dry_run(workflow, input).await {
        Ok(dry) => dry,
        Err(e) => return fail(&e),
    };
    let (result, exit) = match &dry.result {
        Ok(v) => (json!({ "output": v }), Exit::Success),
        Err(e) => (json!({ "error": e.to_string() }), Exit::WorkflowFailed),
    };
    match output {
        OutputFormat::Json => print_json(&json!({
            "dry_run": true,
            "workflow": workflow,
            "plan": dry.plan,
            "result": result,
        })),
        OutputFormat::Table => {
            println!(
                "dry run of {workflow}: {} step(s) would change something; nothing was changed",
                dry.plan.len()
            );
            let mut t = table(&["STEP", "KEY", "WOULD", "ARGUMENTS"]);
            for p in &dry.plan {
                t.add_row([
                    p.step.clone(),
                    p.key.clone(),
                    p.action.clone(),
                    p.args.to_string(),
                ]);
            }
            println!("{t}");
            println!("result with stand-ins: {result}");
        }
    }
    exit
}

async fn report_outcome(
    flow: &Flow,
    id: &RunId,
    outcome: Result<Value, RunError<WorkflowFailure>>,
    output: OutputFormat,
    app: &AppInfo,
) -> Exit {
    let record = flow.run_record(id).await.ok().flatten();
    let trace = record
        .as_ref()
        .map(|r| r.trace_id.clone())
        .unwrap_or_default();
    let status = record
        .as_ref()
        .map(|r| r.status.as_str())
        .unwrap_or("unknown");
    let (exit, detail) = match &outcome {
        Ok(v) => (Exit::Success, json!({ "output": v })),
        Err(RunError::NeedsAttention(a)) => (
            Exit::NeedsAttention,
            json!({ "attention": a, "next": attention_commands(app, id, &a.step) }),
        ),
        Err(RunError::Paused { summary }) => (Exit::Success, json!({ "paused": summary })),
        Err(RunError::Engine(e @ (Error::Store(_) | Error::Interrupted { .. }))) => {
            (Exit::Store, json!({ "error": e.to_string() }))
        }
        Err(e) => (Exit::WorkflowFailed, json!({ "error": e.to_string() })),
    };
    match output {
        OutputFormat::Json => {
            let mut doc = json!({ "run_id": id, "trace_id": trace, "status": status });
            if let (Value::Object(doc), Value::Object(detail)) = (&mut doc, detail) {
                doc.extend(detail);
            }
            print_json(&doc);
        }
        OutputFormat::Table => {
            println!("run {id} {status} (trace {trace})");
            match &outcome {
                Ok(v) => println!("output: {v}"),
                Err(RunError::NeedsAttention(a)) => {
                    println!("needs attention: {}", a.reason);
                    for c in attention_commands(app, id, &a.step) {
                        println!("  {c}");
                    }
                }
                Err(RunError::Paused { summary }) => {
                    let workflow = record
                        .as_ref()
                        .map(|r| r.workflow.as_str())
                        .unwrap_or("<workflow>");
                    println!("paused after the rollout: {summary}");
                    println!(
                        "  process more: {} run {workflow} --input '<the same input>' --id {id} --rollout <percent> (100% finishes it)",
                        app.name
                    );
                }
                Err(e) => println!("error: {e}"),
            }
        }
    }
    exit
}

fn attention_commands(app: &AppInfo, id: &RunId, step: &StepId) -> Vec<String> {
    vec![
        format!(
            "if its effect happened: {} runs resolve {id} --step {} --done [--step-output JSON]",
            app.name, step.key
        ),
        format!(
            "if it did not: {} runs resolve {id} --step {} --rerun",
            app.name, step.key
        ),
        format!("then: {} runs resume {id}", app.name),
    ]
}

async fn runs_command(
    app: &AppInfo,
    settings: &FlowSettings,
    command: RunsCommand,
    output: OutputFormat,
) -> Exit {
    let read_only = matches!(command, RunsCommand::List { .. } | RunsCommand::Show { .. });
    let flow = match open_store(settings, read_only) {
        Ok(flow) => flow,
        Err(exit) => return exit,
    };
    match command {
        RunsCommand::List {
            status,
            workflow,
            limit,
        } => {
            let filter = RunFilter {
                status,
                workflow,
                limit: Some(limit),
            };
            match flow.runs(&filter).await {
                Ok(runs) => {
                    list(&runs, output);
                    Exit::Success
                }
                Err(e) => fail(&e),
            }
        }
        RunsCommand::Show { id } => show(app, &flow, &RunId::from(id), output).await,
        RunsCommand::Resume { id } | RunsCommand::RetryFailed { id: Some(id), .. } => {
            let id = RunId::from(id);
            let started = flow.resume(&id).await;
            follow(app, &flow, started, output).await
        }
        RunsCommand::RetryFailed { id: None, workflow } => {
            retry_failed(app, &flow, workflow, output).await
        }
        RunsCommand::RetryUnit { id, unit } => {
            let id = RunId::from(id);
            let started = flow
                .resume_with(&id, RunOptions::new().only_units([unit]))
                .await;
            follow(app, &flow, started, output).await
        }
        RunsCommand::Cancel { id } => {
            let id = RunId::from(id);
            match flow.cancel(&id).await {
                Ok(()) => {
                    let status = flow
                        .run_record(&id)
                        .await
                        .ok()
                        .flatten()
                        .map(|r| r.status.as_str())
                        .unwrap_or("unknown");
                    let note = if status == "cancelled" {
                        "cancelled"
                    } else {
                        "cancel requested; the run stops at its next step boundary"
                    };
                    match output {
                        OutputFormat::Json => {
                            print_json(&json!({ "run_id": id, "status": status, "note": note }))
                        }
                        OutputFormat::Table => println!("run {id}: {note}"),
                    }
                    Exit::Success
                }
                Err(e) => fail(&e),
            }
        }
        RunsCommand::Fork {
            id,
            from_step,
            new_id,
        } => {
            let id = RunId::from(id);
            let started = flow.fork(&id, &from_step, new_id.map(RunId::from)).await;
            if let (Ok(handle), OutputFormat::Table) = (&started, output) {
                println!(
                    "forked {id} from step {from_step} as run {}",
                    handle.run_id()
                );
            }
            follow(app, &flow, started, output).await
        }
        RunsCommand::Resolve {
            id,
            step,
            done,
            step_output,
            rerun: _,
        } => {
            let id = RunId::from(id);
            let steps = match flow.steps(&id).await {
                Ok(steps) => steps,
                Err(e) => return fail(&e),
            };
            let Some(target) = steps
                .iter()
                .find(|s| s.id.key == step && s.status == StepStatus::Started)
                .or_else(|| steps.iter().find(|s| s.id.key == step))
            else {
                eprintln!(
                    "error: run {id} has no step with key `{step}`; `{} runs show {id}` lists the keys",
                    app.name
                );
                return Exit::Usage;
            };
            let resolution = if done {
                match step_output.as_deref().map(serde_json::from_str).transpose() {
                    Ok(v) => Resolution::Done(v.unwrap_or(Value::Null)),
                    Err(e) => {
                        eprintln!("error: --step-output is not valid JSON ({e})");
                        return Exit::Usage;
                    }
                }
            } else {
                Resolution::Rerun
            };
            match flow.resolve(&id, &target.id, resolution).await {
                Ok(()) => {
                    let next = format!("{} runs resume {id}", app.name);
                    match output {
                        OutputFormat::Json => print_json(
                            &json!({ "run_id": id, "step": target.id, "resolved": if done { "done" } else { "rerun" }, "next": next }),
                        ),
                        OutputFormat::Table => {
                            println!("resolved step {} of run {id}; next: {next}", target.id)
                        }
                    }
                    Exit::Success
                }
                Err(e) => fail(&e),
            }
        }
    }
}

fn list(runs: &[RunRecord], output: OutputFormat) {
    match output {
        OutputFormat::Json => print_json(&json!(runs
            .iter()
            .map(|r| json!({
                "run_id": r.id,
                "workflow": r.workflow,
                "status": r.status,
                "created_at": time(r.created_at_ms),
                "updated_at": time(r.updated_at_ms),
                "executions": r.executions,
                "trace_id": r.trace_id,
            }))
            .collect::<Vec<_>>())),
        OutputFormat::Table => {
            let mut t = table(&[
                "RUN ID",
                "WORKFLOW",
                "STATUS",
                "CREATED",
                "UPDATED",
                "EXECUTIONS",
            ]);
            for r in runs {
                t.add_row([
                    r.id.to_string(),
                    r.workflow.clone(),
                    r.status.to_string(),
                    time(r.created_at_ms),
                    time(r.updated_at_ms),
                    r.executions.to_string(),
                ]);
            }
            println!("{t}");
        }
    }
}

/// What an operator can do next with a run, as commands for this binary.
fn next_steps(app: &AppInfo, run: &RunRecord, steps: &[StepRecord]) -> Vec<String> {
    let id = &run.id;
    let bin = app.name;
    match run.status {
        RunStatus::NeedsAttention => match &run.attention {
            Some(a) => attention_commands(app, id, &a.step),
            None => vec![format!("{bin} runs resume {id}")],
        },
        RunStatus::Paused => vec![format!(
            "a staged rollout paused it; process more units with: {bin} run {} --id {id} --rollout <percent> (100 finishes it)",
            run.workflow
        )],
        RunStatus::Failed => vec![
            format!("fix the cause of the error, then: {bin} runs resume {id}"),
            format!("or redo from a step: {bin} runs fork {id} --from-step <step>"),
        ],
        RunStatus::Running | RunStatus::Sleeping => {
            let live = run
                .owner
                .as_ref()
                .is_some_and(|o| o.is_another_live_process());
            let mut next = Vec::new();
            if let Some(b) = steps.iter().find(|s| s.status == StepStatus::Backoff) {
                next.push(format!(
                    "step {} is in backoff after attempt {}; the next attempt is due at {}",
                    b.id,
                    b.attempt,
                    b.next_attempt_at_ms.map(time).unwrap_or_default()
                ));
            }
            if live {
                next.push(format!(
                    "executing in process {}; to stop it: {bin} runs cancel {id}",
                    run.owner.as_ref().map(|o| o.pid).unwrap_or_default()
                ));
            } else {
                next.push(format!(
                    "no process is executing it (interrupted); continue with: {bin} runs resume {id}"
                ));
            }
            next
        }
        RunStatus::Queued => vec![format!("{bin} runs cancel {id}")],
        RunStatus::Succeeded | RunStatus::Cancelled => Vec::new(),
    }
}

async fn show(app: &AppInfo, flow: &Flow, id: &RunId, output: OutputFormat) -> Exit {
    let run = match flow.run_record(id).await {
        Ok(Some(run)) => run,
        Ok(None) => return fail(&Error::UnknownRun(id.clone())),
        Err(e) => return fail(&e),
    };
    let mut steps = match flow.steps(id).await {
        Ok(steps) => steps,
        Err(e) => return fail(&e),
    };
    timeline_order(&mut steps);
    let next = next_steps(app, &run, &steps);
    let units = units_summary(&steps);
    match output {
        OutputFormat::Json => {
            print_json(&json!({ "run": run, "steps": steps, "units": units, "next": next }))
        }
        OutputFormat::Table => {
            println!("run:        {}", run.id);
            println!("workflow:   {}", run.workflow);
            println!("status:     {}", run.status);
            println!("trace id:   {}", run.trace_id);
            println!("created:    {}", time(run.created_at_ms));
            println!("updated:    {}", time(run.updated_at_ms));
            println!("executions: {}", run.executions);
            if let Some(e) = &run.error {
                println!("error:      {e}");
            }
            if let Some(a) = &run.attention {
                println!("attention:  {}", a.reason);
            }
            let mut t = table(&[
                "STEP", "KEY", "#", "STATUS", "ATTEMPTS", "DURATION", "ERROR", "OUTPUT",
            ]);
            for s in &steps {
                let duration = s
                    .finished_at_ms
                    .map(|f| format!("{} ms", f.saturating_sub(s.started_at_ms)))
                    .unwrap_or_else(|| "-".into());
                let size = s
                    .output
                    .as_ref()
                    .map(|o| format!("{} B", o.to_string().len()))
                    .unwrap_or_else(|| "-".into());
                t.add_row([
                    s.id.name.clone(),
                    s.id.key.clone(),
                    s.id.occurrence.to_string(),
                    format!("{:?}", s.status).to_lowercase(),
                    s.attempt.to_string(),
                    duration,
                    s.error.clone().unwrap_or_default(),
                    size,
                ]);
            }
            println!("{t}");
            if let Some(units) = units {
                println!(
                    "units: {} succeeded, {} failed",
                    units["succeeded"], units["failed"]
                );
                for f in units["failures"].as_array().into_iter().flatten().take(20) {
                    println!(
                        "  failed unit {}: {}",
                        f["key"].as_str().unwrap_or(""),
                        f["error"].as_str().unwrap_or("")
                    );
                }
                if units["failed"].as_u64().unwrap_or(0) > 20 {
                    println!("  ... most frequent errors:");
                    for e in units["errors"].as_array().into_iter().flatten() {
                        println!("    {} × {}", e["count"], e["error"].as_str().unwrap_or(""));
                    }
                }
            }
            for line in next {
                println!("next: {line}");
            }
        }
    }
    Exit::Success
}

/// Orders steps for display: by start time, each unit's record directly followed by the steps
/// keyed under it (a unit and its first step often start in the same millisecond).
fn timeline_order(steps: &mut [StepRecord]) {
    let unit_starts: std::collections::HashMap<String, u64> = steps
        .iter()
        .filter(|s| s.id.name == crate::units::UNIT_STEP)
        .map(|s| (s.id.key.clone(), s.started_at_ms))
        .collect();
    let group = |s: &StepRecord| -> (u64, String, bool) {
        if s.id.name == crate::units::UNIT_STEP {
            return (s.started_at_ms, s.id.key.clone(), false);
        }
        match s
            .id
            .key
            .split_once('/')
            .and_then(|(unit, _)| unit_starts.get(unit).map(|t| (unit, *t)))
        {
            Some((unit, start)) => (start, unit.to_owned(), true),
            None => (s.started_at_ms, String::new(), true),
        }
    };
    steps.sort_by_cached_key(|s| (group(s), s.started_at_ms, s.id.clone()));
}

/// The run's fan-out units, summarised: counts, the first 100 failures, the most frequent
/// errors. `None` when the run has no units.
fn units_summary(steps: &[StepRecord]) -> Option<Value> {
    let units: Vec<&StepRecord> = steps
        .iter()
        .filter(|s| s.id.name == crate::units::UNIT_STEP)
        .collect();
    if units.is_empty() {
        return None;
    }
    let failed: Vec<&&StepRecord> = units
        .iter()
        .filter(|s| s.status == StepStatus::Failed)
        .collect();
    let mut by_error: std::collections::BTreeMap<&str, u64> = Default::default();
    for f in &failed {
        *by_error
            .entry(f.error.as_deref().unwrap_or(""))
            .or_default() += 1;
    }
    let mut errors: Vec<(&str, u64)> = by_error.into_iter().collect();
    errors.sort_by_key(|e| std::cmp::Reverse(e.1));
    Some(json!({
        "succeeded": units.iter().filter(|s| s.status == StepStatus::Succeeded).count(),
        "failed": failed.len(),
        "failures": failed.iter().take(100).map(|f| json!({ "key": f.id.key, "error": f.error })).collect::<Vec<_>>(),
        "errors": errors.into_iter().take(5).map(|(error, count)| json!({ "error": error, "count": count })).collect::<Vec<_>>(),
    }))
}

async fn retry_failed(
    app: &AppInfo,
    flow: &Flow,
    workflow: Option<String>,
    output: OutputFormat,
) -> Exit {
    let filter = RunFilter {
        status: Some(RunStatus::Failed),
        workflow,
        limit: None,
    };
    let failed = match flow.runs(&filter).await {
        Ok(runs) => runs,
        Err(e) => return fail(&e),
    };
    let mut results = Vec::new();
    let mut exit = Exit::Success;
    for run in failed {
        let result = match flow.resume(&run.id).await {
            Ok(handle) => match super::signals::outcome(flow, handle).await {
                super::signals::Waited::Ended(outcome) => outcome.map_err(|e| e.to_string()),
                super::signals::Waited::Stopped { signal, in_grace } => {
                    return super::signals::report_stopped(app, &run.id, signal, in_grace)
                }
            },
            Err(e) => Err(e.to_string()),
        };
        if result.is_err() {
            exit = Exit::WorkflowFailed;
        }
        results.push((run.id, result));
    }
    match output {
        OutputFormat::Json => print_json(&json!(results
            .iter()
            .map(|(id, r)| match r {
                Ok(v) => json!({ "run_id": id, "status": "succeeded", "output": v }),
                Err(e) => json!({ "run_id": id, "status": "failed", "error": e }),
            })
            .collect::<Vec<_>>())),
        OutputFormat::Table => {
            if results.is_empty() {
                println!("no failed runs");
            }
            let mut t = table(&["RUN ID", "RESULT"]);
            for (id, r) in &results {
                t.add_row([
                    id.to_string(),
                    match r {
                        Ok(_) => "succeeded".to_owned(),
                        Err(e) => format!("failed again: {e}"),
                    },
                ]);
            }
            if !results.is_empty() {
                println!("{t}");
            }
            if exit != Exit::Success {
                println!("see `{} runs show <id>` for each failure", app.name);
            }
        }
    }
    exit
}

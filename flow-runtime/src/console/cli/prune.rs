//! `runs prune`: deletes finished runs older than a retention, and the settled alerts older
//! than the failed runs' retention, or counts them (`--dry-run`).
//!
//! It decides which retention applies (the flags, else the settings' `flow.retention`) and
//! prints what was deleted; the deleting is [`Flow::prune`]'s.

use super::args::{FinishedStatus, OutputFormat};
use super::output::escape;
use super::Exit;
use crate::console::settings::FlowSettings;
use crate::engine::prune::Retention;
use crate::engine::Flow;
use crate::store::{Pruned, RedbStore, RunStatus, StoreError};
use comfy_table::{presets, Table};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const FINISHED: [RunStatus; 3] = [
    RunStatus::Succeeded,
    RunStatus::Failed,
    RunStatus::Cancelled,
];

pub(super) async fn command(
    settings: &FlowSettings,
    older_than: Option<Duration>,
    status: Option<FinishedStatus>,
    dry_run: bool,
    output: OutputFormat,
) -> Exit {
    let retention = match retention(&settings.retention, older_than, status.map(Into::into)) {
        Ok(retention) => retention,
        Err(message) => {
            eprintln!("error: {message}");
            return Exit::Usage;
        }
    };
    if settings.postgres_url().is_some() {
        let flow = match super::commands::open_postgres(settings).await {
            Ok(store) => Flow::builder().store(store),
            Err(e) => return super::commands::fail_api(&e),
        };
        return prune_with(&flow, &retention, dry_run, output).await;
    }
    // A dry run only reads: it opens the store read-only, as `runs list` does
    let store = if dry_run {
        RedbStore::open_read_only(&settings.store)
    } else {
        RedbStore::open_existing(&settings.store)
    };
    let flow = match store {
        Ok(store) => Flow::builder().store(Arc::new(store)),
        Err(e) => {
            eprintln!("error: {}", escape(&e.to_string()));
            return match e {
                StoreError::Missing { .. } => Exit::Usage,
                _ => Exit::Store,
            };
        }
    };
    prune_with(&flow, &retention, dry_run, output).await
}

async fn prune_with(
    flow: &Flow,
    retention: &Retention,
    dry_run: bool,
    output: OutputFormat,
) -> Exit {
    let pruned = if dry_run {
        flow.prune_dry_run(retention).await
    } else {
        flow.prune(retention).await
    };
    match pruned {
        Ok(pruned) => {
            report(retention, &pruned, dry_run, output);
            Exit::Success
        }
        Err(e) => {
            eprintln!("error: {}", escape(&e.to_string()));
            Exit::Store
        }
    }
}

/// The retention to prune by: `--older-than` for `--status` (or every finished status), else
/// the settings' retention (of `--status` only, if given). An error says what to pass.
fn retention(
    settings: &Retention,
    older_than: Option<Duration>,
    status: Option<RunStatus>,
) -> Result<Retention, String> {
    let retention = match (older_than, status) {
        (Some(keep), Some(status)) => Retention::only(status, keep).unwrap_or(Retention::FOREVER),
        (Some(keep), None) => Retention::all(keep),
        (None, Some(status)) => settings
            .of(status)
            .and_then(|keep| Retention::only(status, keep))
            .unwrap_or(Retention::FOREVER),
        (None, None) => *settings,
    };
    if !retention.keeps_everything() {
        return Ok(retention);
    }
    let which = match status {
        Some(status) => format!("{status} runs"),
        None => "every run".to_owned(),
    };
    Err(format!(
        "nothing to prune: the settings' flow.retention keeps {which} forever (the default); \
         pass --older-than DURATION (such as `--older-than 30d`), or set a retention: \
         `retention = \"30d\"` under [flow] in flow.toml, or FLOW_RETENTION=30d"
    ))
}

fn report(retention: &Retention, pruned: &Pruned, dry_run: bool, output: OutputFormat) {
    let count = |status: RunStatus| match status {
        RunStatus::Succeeded => pruned.succeeded,
        RunStatus::Failed => pruned.failed,
        RunStatus::Cancelled => pruned.cancelled,
        _ => 0,
    };
    let keep = |status: RunStatus| retention.of(status).map(humantime::format_duration);
    match output {
        OutputFormat::Json => {
            let by_status: serde_json::Map<_, _> = FINISHED
                .iter()
                .map(|&s| {
                    let older_than = keep(s).map(|k| k.to_string());
                    (
                        s.as_str().to_owned(),
                        json!({ "runs": count(s), "older_than": older_than }),
                    )
                })
                .collect();
            let value = json!({
                "dry_run": dry_run,
                "runs": pruned.runs,
                "steps": pruned.steps,
                "alerts": pruned.alerts,
                "alerts_older_than": keep(RunStatus::Failed).map(|k| k.to_string()),
                "by_status": by_status,
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string())
            );
        }
        OutputFormat::Table => {
            let mut table = Table::new();
            table.load_style(presets::ASCII_BORDERS_ONLY_CONDENSED);
            let verb = if dry_run { "would delete" } else { "deleted" };
            table.set_header(["status", "older than", verb]);
            for status in FINISHED {
                let older_than = keep(status).map_or_else(|| "kept".to_owned(), |k| k.to_string());
                let runs = count(status).to_string();
                table.add_row([status.as_str().to_owned(), older_than, runs]);
            }
            println!("{table}");
            let plural =
                |n: u64, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
            let runs = plural(pruned.runs, "run");
            let steps = plural(pruned.steps, "step");
            let alerts = plural(pruned.alerts, "settled alert");
            if dry_run {
                println!(
                    "would delete {runs}, {steps} and {alerts}; nothing was deleted (dry run)"
                );
            } else {
                println!("deleted {runs}, {steps} and {alerts}");
            }
        }
    }
}

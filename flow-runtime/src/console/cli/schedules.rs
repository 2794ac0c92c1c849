//! `schedules list | pause | resume | trigger | backfill`: the operator's side of schedules,
//! through the operator API, so each works while a worker owns the store.
//!
//! This module prints what the engine did and what to do next; it decides nothing about ticks
//! (the engine and the store do).

use super::args::{OutputFormat, SchedulesCommand};
use super::commands::{
    add_row, cmd, fail, fail_api, open_operator, print_json, release, say, table, time,
};
use super::{AppInfo, Exit};
use crate::console::api::open::{Access, Opened};
use crate::console::api::Operator;
use crate::console::settings::FlowSettings;
use crate::engine::registry::{self, Overlap};
use crate::engine::schedules::{self, Fired, ScheduleView};
use crate::store::{format_tick, RunId};
use serde_json::{json, Value};

pub(super) async fn command(
    app: &AppInfo,
    settings: &FlowSettings,
    command: SchedulesCommand,
    output: OutputFormat,
) -> Exit {
    if let SchedulesCommand::List { json } = command {
        let output = if json { OutputFormat::Json } else { output };
        return list_command(app, settings, output).await;
    }
    // A misspelt name is refused before the store is opened (and so never creates one)
    let name = match &command {
        SchedulesCommand::Pause { name, .. }
        | SchedulesCommand::Resume { name }
        | SchedulesCommand::Trigger { name, .. }
        | SchedulesCommand::Backfill { name, .. } => name.as_str(),
        SchedulesCommand::List { .. } => "",
    };
    if let Ok(known) = resolved(settings) {
        if !known.iter().any(|s| s.name == name) {
            return fail(&crate::engine::Error::UnknownSchedule {
                name: name.to_owned(),
                known: known.into_iter().map(|s| s.name).collect(),
            });
        }
    }
    let opened = match open_operator(settings, Access::Write).await {
        Ok(opened) => opened,
        Err(exit) => return exit,
    };
    let Opened { operator, server } = opened;
    let op = &operator;
    let exit = match command {
        // Handled above
        SchedulesCommand::List { .. } => Exit::Usage,
        SchedulesCommand::Pause { name, note } => pause(app, op, &name, note, output).await,
        SchedulesCommand::Resume { name } => resume(app, settings, op, &name, output).await,
        SchedulesCommand::Trigger { name, overlap } => {
            match op.trigger_schedule(&name, overlap).await {
                Ok(fired) => triggered(app, op, &name, overlap, &fired, output).await,
                Err(e) => fail_api(&e),
            }
        }
        SchedulesCommand::Backfill {
            name,
            from,
            to,
            overlap,
        } => match op.backfill_schedule(&name, from, to, overlap).await {
            Ok(fired) => backfilled(app, op, &name, (from, to), overlap, &fired, output).await,
            Err(e) => fail_api(&e),
        },
    };
    release(server).await;
    exit
}

async fn list_command(app: &AppInfo, settings: &FlowSettings, output: OutputFormat) -> Exit {
    // Before the first worker or run there is no store: the schedules are still worth seeing
    if settings.postgres_url().is_none() && !settings.store.exists() {
        return match stateless_views(settings) {
            Ok(views) => {
                eprintln!(
                    "note: no store yet at {}: nothing has fired; a worker creates it",
                    super::output::escape(&settings.store.display().to_string())
                );
                list(app, &views, output);
                Exit::Success
            }
            Err(message) => {
                eprintln!("error: {}", super::output::escape(&message));
                Exit::Config
            }
        };
    }
    let Opened { operator, server } = match open_operator(settings, Access::Read).await {
        Ok(opened) => opened,
        Err(exit) => return exit,
    };
    let exit = match operator.schedules().await {
        Ok(views) => {
            list(app, &views, output);
            Exit::Success
        }
        Err(e) => fail_api(&e),
    };
    release(server).await;
    exit
}

/// The schedules of these settings (checked when the command started).
fn resolved(settings: &FlowSettings) -> Result<Vec<schedules::Schedule>, String> {
    let configs = crate::console::schedule_settings::configs(settings);
    schedules::resolve(&registry::workflows(), &configs).map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// One schedule of these settings, to compute its ticks here.
fn resolved_one(settings: &FlowSettings, name: &str) -> Option<schedules::Schedule> {
    resolved(settings)
        .ok()?
        .into_iter()
        .find(|s| s.name == name)
}

/// The schedules of these settings with no stored state: nothing fired, nothing paused.
pub(super) fn stateless_views(settings: &FlowSettings) -> Result<Vec<ScheduleView>, String> {
    let resolved = resolved(settings)?;
    let now = crate::store::now_ms();
    Ok(resolved
        .into_iter()
        .map(|s| ScheduleView::of(s, None, None, now))
        .collect())
}

/// `active`, `paused: NOTE (since T)` or `disabled in settings`.
pub(super) fn state(view: &ScheduleView) -> String {
    match (&view.paused, view.enabled) {
        (Some(p), _) => {
            let note = p
                .note
                .as_deref()
                .map(|n| format!(": {n}"))
                .unwrap_or_default();
            format!("paused{note} (since {})", time(p.at_ms))
        }
        (None, false) => "disabled in settings".to_owned(),
        (None, true) => "active".to_owned(),
    }
}

fn list(app: &AppInfo, views: &[ScheduleView], output: OutputFormat) {
    match output {
        OutputFormat::Json => print_json(&json!(views
            .iter()
            .map(|v| json!({
                "name": v.name,
                "workflow": v.workflow,
                "cron": v.cron,
                "timezone": v.timezone,
                "source": v.source,
                "enabled": v.enabled,
                "paused": v.paused.is_some(),
                "paused_note": v.paused.as_ref().and_then(|p| p.note.clone()),
                "paused_at": v.paused.as_ref().map(|p| time(p.at_ms)),
                "catch_up": v.catch_up.as_str(),
                "overlap": v.overlap.as_str(),
                "queue": v.queue,
                "next_fire": v.next_ms.map(format_tick),
                "next_fire_local": v.next_local,
                "last_run": v.last_run,
                "last_status": v.last_status,
                "buffered": v.buffered,
                "skipped": v.skipped,
            }))
            .collect::<Vec<_>>())),
        OutputFormat::Table if views.is_empty() => say(format!(
            "no schedules: declare one with #[workflow(schedule = \"0 2 * * *\")] or a [flow.schedules.NAME] table in the settings (see `{}`)",
            cmd(app, &["schedules", "--help"])
        )),
        OutputFormat::Table => {
            let mut t = table(&[
                "SCHEDULE",
                "WORKFLOW",
                "CRON",
                "NEXT (ZONE)",
                "NEXT (UTC)",
                "STATE",
                "LAST RUN",
                "BUFFERED",
                "SKIPPED",
                "SOURCE",
            ]);
            for v in views {
                let last = match (&v.last_run, v.last_status) {
                    (Some(id), Some(status)) => format!("{id} ({status})"),
                    (Some(id), None) => format!("{id} (pruned)"),
                    (None, _) => "-".to_owned(),
                };
                add_row(
                    &mut t,
                    [
                        v.name.clone(),
                        v.workflow.clone(),
                        format!("{} {}", v.cron, v.timezone),
                        v.next_local.clone().unwrap_or_else(|| "-".into()),
                        v.next_ms.map(format_tick).unwrap_or_else(|| "-".into()),
                        state(v),
                        last,
                        v.buffered.to_string(),
                        v.skipped.to_string(),
                        v.source.clone(),
                    ],
                );
            }
            println!("{t}");
        }
    }
}

/// The schedule's view, to tell the operator about its state around an operation; `None` if
/// it cannot be read (the operation's own answer is what counts).
async fn view(op: &Operator, name: &str) -> Option<ScheduleView> {
    op.schedules()
        .await
        .ok()?
        .into_iter()
        .find(|v| v.name == name)
}

async fn pause(
    app: &AppInfo,
    op: &Operator,
    name: &str,
    note: Option<String>,
    output: OutputFormat,
) -> Exit {
    if let Err(e) = op.pause_schedule(name, true, note.clone()).await {
        return fail_api(&e);
    }
    let resume = cmd(app, &["schedules", "resume", name]);
    match output {
        OutputFormat::Json => {
            print_json(&json!({ "schedule": name, "paused": true, "note": note, "next": resume }))
        }
        OutputFormat::Table => {
            let note = note.map(|n| format!(" (note: {n})")).unwrap_or_default();
            say(format!(
                "paused schedule {name}{note}: no tick fires until it is resumed, and the ticks meanwhile are skipped"
            ));
            say(format!("resume it with: {resume}"));
        }
    }
    Exit::Success
}

async fn resume(
    app: &AppInfo,
    settings: &FlowSettings,
    op: &Operator,
    name: &str,
    output: OutputFormat,
) -> Exit {
    let before = view(op, name).await;
    if let Err(e) = op.pause_schedule(name, false, None).await {
        return fail_api(&e);
    }
    let was_paused = before.as_ref().and_then(|v| v.paused.clone());
    let after = view(op, name).await;
    // The ticks of the pause are gone; a backfill brings them back if they are needed
    let missed = match (&was_paused, resolved_one(settings, name)) {
        (Some(p), Some(schedule)) => {
            schedule.ticks(p.at_ms, crate::store::now_ms(), schedules::MAX_TICKS)
        }
        _ => Vec::new(),
    };
    let backfill = match (missed.first(), missed.last()) {
        (Some(first), Some(last)) => Some(cmd(
            app,
            &[
                "schedules",
                "backfill",
                name,
                "--from",
                &format_tick(*first),
                "--to",
                &format_tick(*last),
            ],
        )),
        _ => None,
    };
    match output {
        OutputFormat::Json => print_json(&json!({
            "schedule": name,
            "was_paused": was_paused.is_some(),
            "next_fire": after.as_ref().and_then(|v| v.next_ms).map(format_tick),
            "missed_ticks": missed.len(),
            "backfill": backfill,
        })),
        OutputFormat::Table if was_paused.is_none() => {
            say(format!("schedule {name} was not paused; nothing changed"))
        }
        OutputFormat::Table => {
            let next = after
                .as_ref()
                .and_then(|v| {
                    Some(format!(
                        "{} ({})",
                        v.next_local.clone()?,
                        format_tick(v.next_ms?)
                    ))
                })
                .unwrap_or_else(|| "none".into());
            say(format!("resumed schedule {name}; its next tick: {next}"));
            if let Some(backfill) = backfill {
                say(format!(
                    "the {} ticks of the pause are not caught up; to run them: {backfill}",
                    missed.len()
                ));
            }
        }
    }
    Exit::Success
}

async fn triggered(
    app: &AppInfo,
    op: &Operator,
    name: &str,
    overlap: Option<Overlap>,
    fired: &Fired,
    output: OutputFormat,
) -> Exit {
    let schedule = view(op, name).await;
    let policy = overlap
        .or(schedule.as_ref().map(|v| v.overlap))
        .unwrap_or_default();
    let last = schedule.as_ref().and_then(|v| v.last_run.clone());
    let next = fired
        .created
        .first()
        .or(fired.existing.first())
        .map(|id| cmd(app, &["runs", "show", id.as_str()]))
        .or_else(|| {
            fired
                .buffered
                .first()
                .map(|_| cmd(app, &["schedules", "list"]))
        });
    match output {
        OutputFormat::Json => {
            let mut value = fired_json(name, fired);
            value["overlap"] = json!(policy.as_str());
            value["next"] = json!(next);
            print_json(&value);
        }
        OutputFormat::Table => {
            let queue = schedule.as_ref().map_or("default", |v| v.queue.as_str());
            let previous = match (&last, &schedule) {
                (Some(id), Some(v)) if v.last_status.is_some() => {
                    format!(
                        "run {id} ({})",
                        v.last_status.map(|s| s.to_string()).unwrap_or_default()
                    )
                }
                (Some(id), _) => format!("run {id}"),
                (None, _) => "the previous run".to_owned(),
            };
            if let Some(id) = fired.created.first() {
                say(format!(
                    "created run {id} on queue {queue}; a worker serving that queue executes it"
                ));
            } else if let Some(id) = fired.existing.first() {
                say(format!("run {id} exists already; nothing was created"));
            } else if let Some(id) = fired.buffered.first() {
                say(format!(
                    "{previous} has not finished: run {id} waits for it (overlap {}) and is created when it ends",
                    policy.as_str()
                ));
            } else if !fired.skipped.is_empty() {
                say(format!(
                    "nothing was created: {previous} has not finished and the overlap policy is {}",
                    policy.as_str()
                ));
                say(format!(
                    "to run one anyway: {} (beside it), or --overlap buffer_one (after it)",
                    cmd(app, &["schedules", "trigger", name, "--overlap", "allow"])
                ));
            }
            if let Some(next) = next {
                say(format!("follow it with: {next}"));
            }
        }
    }
    Exit::Success
}

fn fired_json(name: &str, fired: &Fired) -> Value {
    json!({
        "schedule": name,
        "created": fired.created,
        "existing": fired.existing,
        "buffered": fired.buffered,
        "skipped": fired.skipped,
    })
}

/// At most this many run ids of each kind are printed in a table (JSON has them all).
const SHOWN: usize = 10;

fn ids(ids: &[RunId]) -> String {
    let mut text = ids
        .iter()
        .take(SHOWN)
        .map(RunId::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > SHOWN {
        text.push_str(&format!(" and {} more", ids.len() - SHOWN));
    }
    text
}

async fn backfilled(
    app: &AppInfo,
    op: &Operator,
    name: &str,
    (from, to): (u64, u64),
    overlap: Option<Overlap>,
    fired: &Fired,
    output: OutputFormat,
) -> Exit {
    let schedule = view(op, name).await;
    // The engine's default for a backfill: the schedule's `skip` would keep only the first tick
    let policy = overlap.unwrap_or(Overlap::BufferAll);
    let ticks =
        fired.created.len() + fired.existing.len() + fired.buffered.len() + fired.skipped.len();
    let follow = schedule
        .as_ref()
        .map(|v| cmd(app, &["runs", "list", "--workflow", &v.workflow]));
    match output {
        OutputFormat::Json => {
            let mut value = fired_json(name, fired);
            value["from"] = json!(format_tick(from));
            value["to"] = json!(format_tick(to));
            value["overlap"] = json!(policy.as_str());
            value["ticks"] = json!(ticks);
            value["next"] = json!(follow);
            print_json(&value);
        }
        OutputFormat::Table => {
            let cron = schedule
                .as_ref()
                .map(|v| format!("`{}` in {}", v.cron, v.timezone))
                .unwrap_or_default();
            if ticks == 0 {
                say(format!(
                    "the range {} to {} holds no tick of {name} ({cron}); nothing was created",
                    format_tick(from),
                    format_tick(to)
                ));
                return Exit::Success;
            }
            say(format!(
                "backfill of {name} from {} to {}: {ticks} ticks",
                format_tick(from),
                format_tick(to)
            ));
            let mut t = table(&["RUNS", "COUNT", "RUN IDS"]);
            for (what, list) in [
                ("created", &fired.created),
                ("existed already", &fired.existing),
                ("buffered", &fired.buffered),
                ("skipped", &fired.skipped),
            ] {
                add_row(&mut t, [what.to_owned(), list.len().to_string(), ids(list)]);
            }
            println!("{t}");
            if !fired.skipped.is_empty() {
                say(format!(
                    "{} ticks were skipped because the run before them had not finished (overlap {}); to create them, backfill again with --overlap buffer_all (one after another) or --overlap allow (side by side)",
                    fired.skipped.len(),
                    policy.as_str()
                ));
            }
            if !fired.buffered.is_empty() {
                say("buffered ticks become runs one by one as the run before each finishes");
            }
            if let Some(follow) = follow {
                say(format!("follow them with: {follow}"));
            }
        }
    }
    Exit::Success
}

/// The schedules for the runbook, with their stored state when the store can be read (through
/// its owner if one serves it); without, their settings alone and a note saying so.
pub(super) async fn for_runbook(settings: &FlowSettings) -> super::runbook::Schedules {
    let stateless = stateless_views(settings).unwrap_or_default();
    if stateless.is_empty() {
        return super::runbook::Schedules::default();
    }
    let (views, note) = if settings.postgres_url().is_none() && !settings.store.exists() {
        (
            stateless,
            Some("no store yet, so nothing is paused and nothing has fired".to_owned()),
        )
    } else {
        match super::commands::open_store(settings, Access::Read).await {
            Ok(Opened { operator, server }) => {
                let views = operator.schedules().await;
                release(server).await;
                match views {
                    Ok(views) => (views, None),
                    Err(e) => (
                        stateless,
                        Some(format!("whether it is paused is unknown: {}", e.message)),
                    ),
                }
            }
            Err(e) => (
                stateless,
                Some(format!("whether it is paused is unknown: {}", e.message)),
            ),
        }
    };
    let window = |name: &str| {
        settings
            .schedules
            .get(name)
            .and_then(|s| s.config().catch_up_window)
            .unwrap_or(schedules::DEFAULT_CATCH_UP_WINDOW)
    };
    super::runbook::Schedules {
        views: views
            .into_iter()
            .map(|v| {
                let w = window(&v.name);
                (v, w)
            })
            .collect(),
        note,
    }
}

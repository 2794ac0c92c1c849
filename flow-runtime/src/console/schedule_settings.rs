//! `[flow.schedules.NAME]`: schedules declared or overridden in settings, validated in two
//! passes. What needs nothing but the text (a cron expression, a time zone, a duration, a
//! policy's name) is checked when the settings load, each problem at its key's line; what needs
//! the binary's workflows (the workflow, its input) or the other settings (the queue) is checked
//! right after ([`check`]), before any command runs.
//!
//! This module owns the settings' shape and those checks, and turns them into the engine's
//! [`ScheduleConfig`]s; it fires nothing.

use super::settings::{FlowSettings, SettingProblem};
use crate::engine::registry::{self, CatchUp, Overlap};
use crate::engine::schedules::{self, ScheduleConfig};
use garde::Validate;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One schedule (`[flow.schedules.NAME]`). Every field is optional: a schedule that a workflow
/// declares with `#[workflow(schedule = ...)]` keeps the declared value of each field left
/// out; one declared here alone needs `workflow` and `cron`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSetting {
    /// The workflow to run (default: the workflow whose name is the schedule's).
    #[garde(skip)]
    pub workflow: Option<String>,
    /// The cron expression: 5 fields (`0 2 * * *`), or 6 with seconds first.
    #[garde(inner(custom(cron_setting)))]
    pub cron: Option<String>,
    /// The IANA time zone the expression is read in (default `UTC`).
    #[garde(inner(custom(zone_setting)))]
    pub timezone: Option<String>,
    /// The input of each run, as for `run --input`: the value of a one-parameter workflow, a
    /// table keyed by parameter name otherwise.
    #[garde(skip)]
    pub input: Option<serde_json::Value>,
    /// `false` stops the schedule until it is set to `true` again (default `true`).
    #[garde(skip)]
    pub enabled: Option<bool>,
    /// Ticks missed while no worker ran: `skip`, `latest` (the default) or `all`.
    #[garde(skip)]
    pub catch_up: Option<CatchUp>,
    /// Missed ticks older than this are never caught up (default `1d`).
    #[garde(inner(custom(window_setting)))]
    pub catch_up_window: Option<String>,
    /// A tick while the previous run has not finished: `skip` (the default), `buffer_one`,
    /// `buffer_all` or `allow`.
    #[garde(skip)]
    pub overlap: Option<Overlap>,
    /// The queue of its runs (default `default`; another must be declared in `[flow.queues]`).
    #[garde(skip)]
    pub queue: Option<String>,
}

impl ScheduleSetting {
    /// The engine's form (validated when the settings load).
    pub fn config(&self) -> ScheduleConfig {
        ScheduleConfig {
            workflow: self.workflow.clone(),
            cron: self.cron.clone(),
            timezone: self.timezone.clone(),
            input: self.input.clone(),
            enabled: self.enabled,
            catch_up: self.catch_up,
            catch_up_window: self
                .catch_up_window
                .as_deref()
                .and_then(|w| humantime::parse_duration(w).ok()),
            overlap: self.overlap,
            queue: self.queue.clone(),
        }
    }
}

/// The schedules of `settings`, in the engine's form, by name.
pub fn configs(settings: &FlowSettings) -> BTreeMap<String, ScheduleConfig> {
    settings
        .schedules
        .iter()
        .map(|(name, s)| (name.clone(), s.config()))
        .collect()
}

fn cron_setting(value: &str, _: &()) -> garde::Result {
    schedules::parse_cron(value).map(|_| ()).map_err(|e| {
        garde::Error::new(format!(
            "`{value}` is not a cron expression ({e}); write 5 fields, minute hour day-of-month month day-of-week, such as `0 2 * * *` (02:00 every day), or 6 with seconds first"
        ))
    })
}

fn zone_setting(value: &str, _: &()) -> garde::Result {
    schedules::parse_zone(value)
        .map(|_| ())
        .map_err(garde::Error::new)
}

/// A catch-up window shorter than the minute within which a tick still counts as on time would
/// count a tick that a busy worker sees a few seconds late as missed.
fn window_setting(value: &str, _: &()) -> garde::Result {
    match humantime::parse_duration(value) {
        Ok(window) if window >= schedules::ON_TIME => Ok(()),
        Ok(_) => Err(garde::Error::new(format!(
            "`{value}` is shorter than a minute, so a tick that a busy worker sees a few seconds late would count as missed; use at least `1m` (the default is `1d`)"
        ))),
        Err(e) => Err(garde::Error::new(format!(
            "`{value}` is not a duration such as `1h` or `2d` ({e})"
        ))),
    }
}

/// Schedule names become the prefix of run ids (`NAME@2026-11-28T02:00:00Z`), so they keep to
/// the characters of queue names.
pub(crate) fn schedule_names(
    schedules: &BTreeMap<String, ScheduleSetting>,
    _: &(),
) -> garde::Result {
    for name in schedules.keys() {
        let ok = !name.is_empty()
            && name.len() <= 64
            && !name.starts_with('-')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !ok {
            return Err(garde::Error::new(format!(
                "the schedule name {name:?} is not 1 to 64 of the characters A-Z a-z 0-9 . _ - (not starting with -); it starts the id of each of its runs"
            )));
        }
    }
    Ok(())
}

/// What the loaded settings alone cannot tell: that each schedule names a workflow of this
/// binary, with input that decodes into its parameters, on a declared queue, and that every
/// schedule (the workflows' own included) resolves. `source_of` names where a key was set
/// (`file flow.toml, line 12`). Every problem of every schedule is returned.
pub(crate) fn check(
    settings: &FlowSettings,
    source_of: &dyn Fn(&str) -> String,
) -> Vec<SettingProblem> {
    let mut problems = Vec::new();
    let workflows = registry::workflows();
    let names = || {
        workflows
            .iter()
            .map(|w| format!("`{}`", w.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut reported = Vec::new();
    for (name, s) in &settings.schedules {
        let mut problem = |field: &str, text: String| {
            let key = format!("flow.schedules.{name}.{field}");
            problems.push(SettingProblem {
                source: source_of(&key),
                key,
                problem: text,
            });
            reported.push(name.clone());
        };
        if let Some(queue) = s.queue.as_deref() {
            if queue != crate::engine::queue::DEFAULT_QUEUE && !settings.queues.contains_key(queue)
            {
                problem(
                    "queue",
                    format!(
                        "unknown queue `{queue}`; declare it as [flow.queues.{queue}], or leave `queue` out for the `default` queue"
                    ),
                );
            }
        }
        let meta = match s.workflow.as_deref() {
            Some(workflow) => match registry::workflow(workflow) {
                Some(meta) => Some(meta),
                None => {
                    problem(
                        "workflow",
                        format!(
                            "unknown workflow `{workflow}`; this binary has: {}",
                            names()
                        ),
                    );
                    continue;
                }
            },
            // As in the resolution: a workflow's own name counts only if it declares a schedule
            None => registry::workflow(name).filter(|w| w.schedule.is_some()),
        };
        if let (Some(meta), Some(input)) = (meta, &s.input) {
            if let Err(e) = (meta.check_input)(input) {
                let shape = match meta.params {
                    [] => "it takes no input: leave `input` out".to_owned(),
                    [one] => format!("its one parameter `{one}` takes the value itself, such as `input = \"...\"` for a string"),
                    _ => "give a table keyed by parameter name, such as `input = { name = \"...\" }`".to_owned(),
                };
                problem(
                    "input",
                    format!(
                        "does not decode into the parameters of workflow `{}` ({}): {}; {shape}",
                        meta.name,
                        meta.params.join(", "),
                        e.message
                    ),
                );
            }
        }
    }
    if let Err(errors) = schedules::resolve(&workflows, &configs(settings)) {
        for error in errors.into_iter().filter(|e| !reported.contains(&e.name)) {
            let (key, source) = match settings.schedules.contains_key(&error.name) {
                true => {
                    let key = format!("flow.schedules.{}", error.name);
                    let source = source_of(&key);
                    (key, source)
                }
                // A schedule a workflow declares is checked when it compiles; this is a default
                // input that does not serialize, say
                false => (
                    format!("schedule {}", error.name),
                    match registry::workflow(&error.name) {
                        Some(w) => format!("#[workflow(schedule = ...)] at {}:{}", w.file, w.line),
                        None => "the workflow's declaration".to_owned(),
                    },
                ),
            };
            problems.push(SettingProblem {
                key,
                problem: error.message,
                source,
            });
        }
    }
    problems
}

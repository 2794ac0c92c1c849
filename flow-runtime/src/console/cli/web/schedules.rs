//! The schedules page (next fire times, pause state and note, pause and resume behind a
//! confirmation) and the alerts page (alert history with links to the runs).
//!
//! Pause and resume go through the operator API as `schedules pause` and `schedules resume`
//! do, so they work while a worker owns the store; each is logged with who asked (the log
//! line's time says when).

use super::{api_error, error_page, esc, page, status_span, time, url_value, who, Console};
use crate::console::api::open::Access;
use crate::console::cli::alerts::deliveries;
use crate::console::cli::commands::{open_store, release};
use crate::console::cli::schedules::{state, stateless_views};
use crate::engine::schedules::ScheduleView;
use crate::store::{format_tick, AlertDetail, AlertFilter, AlertRecord, AlertState};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

/// The most alerts the alerts page lists (newest first).
const ALERTS_SHOWN: usize = 200;
/// The runs of an alert linked from its row (the most recent).
const ALERT_RUNS_SHOWN: usize = 5;

/// Every schedule with its stored state; from the settings alone before there is a store.
async fn views(console: &Console) -> Result<Vec<ScheduleView>, Response> {
    let settings = &console.settings;
    if settings.postgres_url().is_none() && !settings.store.exists() {
        return stateless_views(settings)
            .map_err(|m| error_page(StatusCode::INTERNAL_SERVER_ERROR, "Invalid schedules", &m));
    }
    let opened = open_store(settings, Access::Read)
        .await
        .map_err(|e| api_error(&e))?;
    let views = opened.operator.schedules().await;
    release(opened.server).await;
    views.map_err(|e| api_error(&e))
}

pub(super) async fn schedules_page(State(console): State<Arc<Console>>) -> Response {
    let views = match views(&console).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let mut b = String::from("<h1>Schedules</h1>");
    if views.is_empty() {
        let _ = write!(
            b,
            "<p>No schedules: declare one with <code>#[workflow(schedule = \"0 2 * * *\")]</code> or a <code>[flow.schedules.NAME]</code> table in the settings.</p>"
        );
        return page("Schedules", None, &b);
    }
    let _ = write!(
        b,
        "<p>Times in each schedule's zone, and in UTC. A paused schedule skips its ticks; resuming does not catch them up (<code>schedules backfill</code> does).</p><table id=\"schedules\"><thead><tr><th scope=\"col\">Schedule</th><th scope=\"col\">Workflow</th><th scope=\"col\">Cron</th><th scope=\"col\">Next fire (zone)</th><th scope=\"col\">Next fire (UTC)</th><th scope=\"col\">State</th><th scope=\"col\">Last run</th><th scope=\"col\">Buffered</th><th scope=\"col\">Skipped</th><th scope=\"col\">Action</th></tr></thead><tbody>"
    );
    for v in &views {
        let last = match (&v.last_run, v.last_status) {
            (Some(id), Some(status)) => format!(
                "<a href=\"/run?id={}\">{}</a> {}",
                esc(&url_value(id.as_str())),
                esc(id.as_str()),
                status_span(status)
            ),
            (Some(id), None) => format!("{} (pruned)", esc(id.as_str())),
            (None, _) => "-".to_owned(),
        };
        let name = esc(&url_value(&v.name));
        let action = match (&v.paused, v.enabled) {
            (Some(_), _) => format!(
                "<a class=\"action\" id=\"resume-{0}\" href=\"/schedules/resume?name={name}\">Resume</a>",
                esc(&v.name)
            ),
            (None, true) => format!(
                "<a class=\"action\" id=\"pause-{0}\" href=\"/schedules/pause?name={name}\">Pause</a>",
                esc(&v.name)
            ),
            (None, false) => String::new(),
        };
        let _ = write!(
            b,
            "<tr data-schedule=\"{}\"><td>{}</td><td>{}</td><td><code>{}</code> {}</td><td class=\"next\">{}</td><td class=\"next-utc\">{}</td><td class=\"state\">{}</td><td>{last}</td><td>{}</td><td>{}</td><td>{action}</td></tr>",
            esc(&v.name),
            esc(&v.name),
            esc(&v.workflow),
            esc(&v.cron),
            esc(&v.timezone),
            esc(v.next_local.as_deref().unwrap_or("-")),
            esc(&v.next_ms.map(format_tick).unwrap_or_else(|| "-".into())),
            esc(&state(v)),
            v.buffered,
            v.skipped,
        );
    }
    let _ = write!(b, "</tbody></table>");
    page("Schedules", None, &b)
}

#[derive(Debug, Deserialize)]
pub(super) struct NameQuery {
    name: String,
}

/// The schedule named `name`, or the page that says there is none.
async fn known(console: &Console, name: &str) -> Result<ScheduleView, Response> {
    let views = views(console).await?;
    let names: Vec<&str> = views.iter().map(|v| v.name.as_str()).collect();
    match views.iter().find(|v| v.name == name) {
        Some(v) => Ok(v.clone()),
        None => Err(error_page(
            StatusCode::NOT_FOUND,
            "Unknown schedule",
            &format!(
                "there is no schedule `{name}`; the schedules are: {}",
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            ),
        )),
    }
}

fn unknown_action() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "Unknown action",
        "A schedule can be paused or resumed.",
    )
}

pub(super) async fn confirm_page(
    State(console): State<Arc<Console>>,
    Path(action): Path<String>,
    Query(query): Query<NameQuery>,
) -> Response {
    if action != "pause" && action != "resume" {
        return unknown_action();
    }
    let view = match known(&console, &query.name).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let name = esc(&view.name);
    let body = if action == "pause" {
        format!(
            "<h1>Pause schedule <code>{name}</code>?</h1><p>No tick fires until it is resumed, and the ticks meanwhile are skipped. Its next tick would be {}.</p><form method=\"post\" action=\"/schedules/pause\"><input type=\"hidden\" name=\"name\" value=\"{name}\"><p><label for=\"note\">Note for the other operators (why, until when)</label></p><p><textarea id=\"note\" name=\"note\" rows=\"2\" cols=\"60\"></textarea></p><p><button type=\"submit\" class=\"danger\" id=\"confirm\">Pause</button> <a href=\"/schedules\">Back</a></p></form>",
            esc(view.next_local.as_deref().unwrap_or("none"))
        )
    } else {
        let since = view
            .paused
            .as_ref()
            .map(|p| format!(" It has been paused since {}.", esc(&time(p.at_ms))))
            .unwrap_or_else(|| " It is not paused.".to_owned());
        format!(
            "<h1>Resume schedule <code>{name}</code>?</h1><p>Its ticks fire again from now on; the ticks of the pause are not caught up (<code>schedules backfill</code> runs them).{since}</p><form method=\"post\" action=\"/schedules/resume\"><input type=\"hidden\" name=\"name\" value=\"{name}\"><button type=\"submit\" id=\"confirm\">Resume</button> <a href=\"/schedules\">Back</a></form>"
        )
    };
    page(&format!("{action} {}", view.name), None, &body)
}

#[derive(Debug, Deserialize)]
pub(super) struct PauseForm {
    name: String,
    note: Option<String>,
}

pub(super) async fn act(
    State(console): State<Arc<Console>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(action): Path<String>,
    headers: HeaderMap,
    Form(form): Form<PauseForm>,
) -> Response {
    let pause = match action.as_str() {
        "pause" => true,
        "resume" => false,
        _ => return unknown_action(),
    };
    // A misspelt name is refused before anything is written
    if let Err(r) = known(&console, &form.name).await {
        return r;
    }
    let note = form
        .note
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty() && pause);
    let (who, agent) = who(&console, peer, &headers);
    let opened = match open_store(&console.settings, Access::Write).await {
        Ok(opened) => opened,
        Err(e) => return api_error(&e),
    };
    let result = opened
        .operator
        .pause_schedule(&form.name, pause, note.clone())
        .await;
    release(opened.server).await;
    match &result {
        Ok(()) => {
            tracing::info!(action = %action, schedule = %form.name, note = note.as_deref().unwrap_or(""), who = %who, user_agent = %agent, "web console action")
        }
        Err(e) => {
            tracing::warn!(action = %action, schedule = %form.name, who = %who, user_agent = %agent, error = %e.message, "web console action failed")
        }
    }
    match result {
        Ok(()) => Redirect::to("/schedules").into_response(),
        Err(e) => api_error(&e),
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct AlertsQuery {
    workflow: Option<String>,
    /// `open` or `resolved`.
    state: Option<String>,
}

fn state_name(state: AlertState) -> &'static str {
    match state {
        AlertState::Open => "open",
        AlertState::Resolved => "resolved",
    }
}

fn run_link(id: &crate::store::RunId) -> String {
    format!(
        "<a href=\"/run?id={}\">{}</a>",
        esc(&url_value(id.as_str())),
        esc(id.as_str())
    )
}

/// What an alert is about, in a sentence.
fn about(alert: &AlertRecord) -> String {
    match &alert.detail {
        Some(AlertDetail::MaxDuration {
            max_duration_ms,
            status,
            ..
        }) => format!(
            "not finished {} after it was created ({status} when it opened)",
            humantime::format_duration(std::time::Duration::from_millis(*max_duration_ms))
        ),
        Some(AlertDetail::ErrorBudget(trip)) => format!(
            "error budget `{}` tripped: {} of {} units failed",
            trip.threshold, trip.failed, trip.processed
        ),
        Some(AlertDetail::MissedTicks {
            schedule,
            count,
            first_ms,
            last_ms,
        }) => format!(
            "{count} ticks of schedule {schedule} did not run, {} to {}",
            format_tick(*first_ms),
            format_tick(*last_ms)
        ),
        None if alert.failures > 0 => format!("{} failed runs in a row", alert.failures),
        None => String::new(),
    }
}

pub(super) async fn alerts_page(
    State(console): State<Arc<Console>>,
    Query(query): Query<AlertsQuery>,
) -> Response {
    let wanted = match query.state.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some("open") => Some(AlertState::Open),
        Some("resolved") => Some(AlertState::Resolved),
        Some(other) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Unknown state",
                &format!("`{other}` is not an alert state: open or resolved"),
            )
        }
    };
    let workflow = query.workflow.clone().filter(|w| !w.trim().is_empty());
    let opened = match open_store(&console.settings, Access::Read).await {
        Ok(opened) => opened,
        Err(e) => return api_error(&e),
    };
    let listed = opened
        .operator
        .alerts(&AlertFilter {
            pending: false,
            workflow: workflow.clone(),
            limit: None,
        })
        .await;
    release(opened.server).await;
    let alerts = match listed {
        Ok(a) => a,
        Err(e) => return api_error(&e),
    };
    let open = alerts
        .iter()
        .filter(|a| a.state == AlertState::Open)
        .count();
    let mut b = String::from("<h1>Alerts</h1>");
    let _ = write!(
        b,
        "<p class=\"counts\" id=\"alert-counts\"><strong>{}</strong> alerts: <a href=\"/alerts?state=open\">open <span class=\"n\">{open}</span></a> <a href=\"/alerts?state=resolved\">resolved <span class=\"n\">{}</span></a> <a href=\"/alerts\">all</a></p>",
        alerts.len(),
        alerts.len() - open
    );
    let _ = write!(
        b,
        "<form method=\"get\" action=\"/alerts\" role=\"search\"><label for=\"workflow\">Workflow</label><input id=\"workflow\" name=\"workflow\" value=\"{}\"> <label for=\"state\">State</label><select id=\"state\" name=\"state\"><option value=\"\">any</option>",
        esc(workflow.as_deref().unwrap_or(""))
    );
    for s in [AlertState::Open, AlertState::Resolved] {
        let _ = write!(
            b,
            "<option value=\"{0}\"{1}>{0}</option>",
            state_name(s),
            if wanted == Some(s) { " selected" } else { "" }
        );
    }
    let _ = write!(
        b,
        "</select> <button type=\"submit\">Filter</button></form>"
    );
    let shown: Vec<&AlertRecord> = alerts
        .iter()
        .filter(|a| wanted.is_none_or(|s| a.state == s))
        .collect();
    if shown.is_empty() {
        let _ = write!(b, "<p>No alerts match.</p>");
        return page("Alerts", None, &b);
    }
    let _ = write!(
        b,
        "<table id=\"alerts\"><thead><tr><th scope=\"col\">Opened</th><th scope=\"col\">Workflow</th><th scope=\"col\">Kind</th><th scope=\"col\">State</th><th scope=\"col\">Runs</th><th scope=\"col\">What</th><th scope=\"col\">Deliveries</th></tr></thead><tbody>"
    );
    for a in shown.iter().take(ALERTS_SHOWN) {
        let state = match (a.state, a.resolved_at_ms, &a.resolved_by) {
            (AlertState::Resolved, at, by) => format!(
                "<span class=\"alert-resolved\">resolved</span>{}{}",
                at.map(|t| format!(" at {}", esc(&time(t))))
                    .unwrap_or_default(),
                by.as_ref()
                    .map(|id| format!(" by {}", run_link(id)))
                    .unwrap_or_default()
            ),
            (AlertState::Open, ..) => "<span class=\"alert-open\">open</span>".to_owned(),
        };
        let runs: Vec<String> = a
            .run_ids
            .iter()
            .rev()
            .take(ALERT_RUNS_SHOWN)
            .map(run_link)
            .collect();
        let more = a.run_ids.len().saturating_sub(ALERT_RUNS_SHOWN);
        let mut what = about(a);
        if let Some(e) = &a.last_error {
            if !what.is_empty() {
                what.push_str("; ");
            }
            what.push_str(e);
        }
        let _ = write!(
            b,
            "<tr data-alert=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{state}</td><td>{}{}</td><td>{}</td><td>{}</td></tr>",
            esc(&a.id),
            esc(&time(a.created_at_ms)),
            esc(&a.workflow),
            esc(a.kind.as_str()),
            runs.join(" "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            },
            esc(&what),
            esc(&deliveries(a))
        );
    }
    let _ = write!(b, "</tbody></table>");
    if shown.len() > ALERTS_SHOWN {
        let _ = write!(
            b,
            "<p>{} older alerts match; <code>alerts list --output json</code> lists them all.</p>",
            shown.len() - ALERTS_SHOWN
        );
    }
    page("Alerts", Some(30), &b)
}

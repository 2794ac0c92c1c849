//! The units of a run's page: counts by status, then the units in groups (collapsible
//! `<details>`, each summarised by its counts), a page of groups at a time, so a run of 10,000
//! units gives a page of a few hundred rows with links to the others.

use super::{esc, state_of, url_value, Refused};
use crate::engine::units::UNIT_STEP;
use crate::store::{StepRecord, StepStatus};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Units per group.
pub(super) const GROUP: usize = 50;
/// Units per page (whole groups).
pub(super) const PAGE: usize = 4 * GROUP;

/// Which units the page shows: those of one state, and which page of them.
pub(super) struct Shown {
    pub state: Option<&'static str>,
    /// From 1.
    pub page: usize,
}

const STATES: [&str; 4] = ["failed", "backoff", "running", "succeeded"];

/// Reads the `units` and `page` query values; refuses what they cannot mean.
pub(super) fn shown(state: Option<&str>, page: Option<&str>) -> Result<Shown, Refused> {
    let state = match state.map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(STATES.into_iter().find(|st| *st == s).ok_or_else(|| {
            Refused::bad_request(
                "Unknown unit state",
                format!("`{s}` is not a unit state; one of: {}", STATES.join(", ")),
            )
        })?),
    };
    let page = match page.map(str::trim).filter(|p| !p.is_empty()) {
        None => 1,
        Some(p) => match p.parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => {
                return Err(Refused::bad_request(
                    "Invalid page",
                    format!("`{p}` is not a page number: pages count from 1"),
                ))
            }
        },
    };
    Ok(Shown { state, page })
}

/// The link to a page of units of run `id`.
fn href(id: &str, state: Option<&str>, page: usize) -> String {
    let mut h = format!("/run?id={}", url_value(id));
    if let Some(s) = state {
        let _ = write!(h, "&units={s}");
    }
    if page > 1 {
        let _ = write!(h, "&page={page}");
    }
    h.push_str("#units");
    esc(&h)
}

fn counts_text(counts: &BTreeMap<&str, usize>) -> String {
    STATES
        .iter()
        .filter_map(|s| counts.get(s).map(|n| format!("{n} {s}")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes the units section of run `id` (nothing when it has no units).
pub(super) fn section(
    b: &mut String,
    id: &str,
    steps: &[StepRecord],
    shown: &Shown,
) -> Result<(), Refused> {
    let units: Vec<&StepRecord> = steps.iter().filter(|s| s.id.name == UNIT_STEP).collect();
    if units.is_empty() {
        return Ok(());
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for u in &units {
        *counts.entry(state_of(u.status)).or_default() += 1;
    }
    let listed: Vec<&StepRecord> = units
        .iter()
        .copied()
        .filter(|u| shown.state.is_none_or(|s| state_of(u.status) == s))
        .collect();
    let pages = listed.len().div_ceil(PAGE).max(1);
    if shown.page > pages {
        return Err(Refused::bad_request(
            "Invalid page",
            format!(
                "page {} is past the last page of these units, {pages}",
                shown.page
            ),
        ));
    }
    let _ = write!(
        b,
        "<h2 id=\"units\">Units ({})</h2><p class=\"counts\" id=\"unit-counts\">",
        units.len()
    );
    for s in STATES {
        if let Some(n) = counts.get(s) {
            let _ = write!(
                b,
                "<a href=\"{}\" data-state=\"{s}\">{s} <span class=\"n\">{n}</span></a> ",
                href(id, Some(s), 1)
            );
        }
    }
    if shown.state.is_some() {
        let _ = write!(b, "<a href=\"{}\">all</a>", href(id, None, 1));
    }
    let first = (shown.page - 1) * PAGE;
    let on_page = &listed[first.min(listed.len())..(first + PAGE).min(listed.len())];
    let _ = write!(
        b,
        "</p><p id=\"unit-page\">{} units {}–{} of {}{}, page {} of {pages}, in groups of {GROUP}.</p>",
        shown.state.map_or("All".to_owned(), |s| format!("The {s}")),
        (first + 1).min(listed.len()),
        first + on_page.len(),
        listed.len(),
        if shown.state.is_some() { " listed" } else { "" },
        shown.page
    );
    for (g, group) in on_page.chunks(GROUP).enumerate() {
        let mut group_counts: BTreeMap<&str, usize> = BTreeMap::new();
        for u in group {
            *group_counts.entry(state_of(u.status)).or_default() += 1;
        }
        let start = first + g * GROUP + 1;
        let failing = group_counts.contains_key("failed");
        let _ = write!(
            b,
            "<details class=\"units\"{}><summary>Units {start}–{}: {} (<code>{}</code> … <code>{}</code>)</summary><table><thead><tr><th scope=\"col\">Unit</th><th scope=\"col\">State</th><th scope=\"col\">Attempts</th><th scope=\"col\">Duration</th><th scope=\"col\">Error</th></tr></thead><tbody>",
            if failing { " open" } else { "" },
            start + group.len() - 1,
            counts_text(&group_counts),
            esc(group.first().map_or("", |u| u.id.key.as_str())),
            esc(group.last().map_or("", |u| u.id.key.as_str())),
        );
        for u in group {
            let duration = match (u.status, u.finished_at_ms) {
                (StepStatus::Succeeded | StepStatus::Failed, Some(end)) => {
                    format!("{} ms", end.saturating_sub(u.started_at_ms))
                }
                _ => "-".to_owned(),
            };
            let _ = write!(
                b,
                "<tr><td><code>{key}</code></td><td class=\"s-{state}\">{state}</td><td>{attempts}</td><td>{duration}</td><td class=\"error\">{error}</td></tr>",
                key = esc(&u.id.key),
                state = state_of(u.status),
                attempts = u.attempt,
                error = esc(u.error.as_deref().unwrap_or(""))
            );
        }
        let _ = write!(b, "</tbody></table></details>");
    }
    if pages > 1 {
        let state = shown.state;
        let _ = write!(b, "<nav class=\"pager\" aria-label=\"Pages of units\">");
        let mut link = |label: &str, page: usize, rel: &str| {
            if page != shown.page && (1..=pages).contains(&page) {
                let _ = write!(
                    b,
                    "<a href=\"{}\" rel=\"{rel}\">{label}</a> ",
                    href(id, state, page)
                );
            } else {
                let _ = write!(b, "<span aria-disabled=\"true\">{label}</span> ");
            }
        };
        link("« First", 1, "first");
        link("‹ Previous", shown.page.saturating_sub(1), "prev");
        link("Next ›", shown.page + 1, "next");
        link("Last »", pages, "last");
        let _ = write!(
            b,
            "<form method=\"get\" action=\"/run#units\" class=\"inline\"><input type=\"hidden\" name=\"id\" value=\"{}\">{}<label for=\"page\">Page</label><input id=\"page\" name=\"page\" type=\"number\" min=\"1\" max=\"{pages}\" size=\"4\" value=\"{}\"> <button type=\"submit\">Go</button></form></nav>",
            esc(id),
            state.map_or(String::new(), |s| format!(
                "<input type=\"hidden\" name=\"units\" value=\"{s}\">"
            )),
            shown.page
        );
    }
    Ok(())
}

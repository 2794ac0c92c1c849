//! The stats page: the figures of `stats` per workflow and step, the same figures over time as
//! charts (latency p50/p95/p99 and error rate per bucket of time), and the before/after
//! comparison of `stats --compare` with its worse-mark.
//!
//! The figures come from the operator API (`api::stats`, asked for buckets with
//! [`StatsQuery::bucket_ms`]); this module only chooses the windows and draws. Charts are
//! inline SVG written here: no script, no chart library, nothing fetched (see docs/DESIGN.md).

use super::{api_error, error_page, esc, page, time, Console, Refused};
use crate::console::api::open::Access;
use crate::console::api::stats::{compare, Figures, Stats, StatsQuery, Thresholds};
use crate::console::cli::args::parse_window;
use crate::console::cli::commands::{open_store, release};
use crate::console::cli::stats::{comparison_cells, ms, rate, window, COMPARE_HEADERS};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::fmt::Write as _;
use std::sync::Arc;

#[derive(Debug, Default, Deserialize)]
pub(super) struct StatsPageQuery {
    workflow: Option<String>,
    /// How far back the window reaches, such as `24h` or `7d`.
    since: Option<String>,
    /// The width of a chart's bucket, such as `1h`; chosen from the window when absent.
    bucket: Option<String>,
    /// The comparison's sides: windows `A..B` and app versions, as `stats --compare` takes.
    before: Option<String>,
    after: Option<String>,
    before_version: Option<String>,
    after_version: Option<String>,
}

/// Bucket widths chosen for a window, narrowest first: the first that cuts the window into at
/// most [`AUTO_BUCKETS`] buckets.
const WIDTHS: [u64; 7] = [
    60_000,
    5 * 60_000,
    15 * 60_000,
    3_600_000,
    6 * 3_600_000,
    24 * 3_600_000,
    7 * 24 * 3_600_000,
];
const AUTO_BUCKETS: u64 = 48;
/// The most buckets a chart is drawn with, whatever bucket is asked for.
const MAX_BUCKETS: u64 = 1000;

fn width_for(span_ms: u64) -> u64 {
    WIDTHS
        .into_iter()
        .find(|w| span_ms.div_ceil(*w) <= AUTO_BUCKETS)
        .unwrap_or(WIDTHS[WIDTHS.len() - 1])
}

/// A query value, `None` when absent or blank.
fn given(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn duration(text: &str, title: &'static str, example: &str) -> Result<u64, Refused> {
    humantime::parse_duration(text)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .map_err(|e| {
            Refused::bad_request(
                title,
                format!("`{text}` is not a duration such as `{example}`: {e}"),
            )
        })
}

/// The two sides of the comparison the query asks for, if any; the rules of `stats --compare`.
fn sides(
    query: &StatsPageQuery,
    workflow: &Option<String>,
) -> Result<Option<(StatsQuery, StatsQuery)>, Refused> {
    let (before, after) = (given(&query.before), given(&query.after));
    let (before_version, after_version) =
        (given(&query.before_version), given(&query.after_version));
    if before.is_none() && after.is_none() && before_version.is_none() && after_version.is_none() {
        return Ok(None);
    }
    let refuse = |message: &str| Err(Refused::bad_request("Invalid comparison", message));
    if before_version.is_some() != after_version.is_some() {
        return refuse(
            "compare two versions by giving both: the version before and the version after",
        );
    }
    if before_version.is_none() && (before.is_none() || after.is_none()) {
        return refuse("compare two windows by giving both, such as `2026-11-20..2026-11-27` before and `2026-11-27..` after; or give two versions");
    }
    let window = |text: Option<String>, side: &str| match text {
        None => Ok((None, None)),
        Some(t) => parse_window(&t).map_err(|e| {
            Refused::bad_request(
                "Invalid comparison",
                format!("the {side} window `{t}`: {e}"),
            )
        }),
    };
    let (b, a) = (window(before, "before")?, window(after, "after")?);
    let side = |(from_ms, to_ms): (Option<u64>, Option<u64>), app_version| StatsQuery {
        from_ms,
        to_ms,
        workflow: workflow.clone(),
        app_version,
        bucket_ms: None,
        rollout: None,
    };
    Ok(Some((side(b, before_version), side(a, after_version))))
}

pub(super) async fn stats_page(
    State(console): State<Arc<Console>>,
    Query(query): Query<StatsPageQuery>,
) -> Response {
    let since_text = given(&query.since).unwrap_or_else(|| "24h".to_owned());
    let since = match duration(&since_text, "Invalid window", "24h") {
        Ok(ms) => ms.max(1),
        Err(r) => return r.into_response(),
    };
    let bucket_text = given(&query.bucket);
    let width = match &bucket_text {
        None => width_for(since),
        Some(t) => match duration(t, "Invalid bucket", "1h") {
            Ok(0) => {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    "Invalid bucket",
                    "a bucket of 0 s holds nothing: give a width such as `1h`",
                )
            }
            Ok(w) => w,
            Err(r) => return r.into_response(),
        },
    };
    if since.div_ceil(width) > MAX_BUCKETS {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Invalid bucket",
            &format!(
                "a bucket of `{}` cuts the window of `{since_text}` into more than {MAX_BUCKETS} pieces: choose a wider bucket or a shorter window",
                bucket_text.unwrap_or_default()
            ),
        );
    }
    let workflow = given(&query.workflow);
    let comparison = match sides(&query, &workflow) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let now = crate::store::now_ms();
    let from = now.saturating_sub(since);
    let stats_query = StatsQuery {
        from_ms: Some(from),
        to_ms: None,
        workflow: workflow.clone(),
        app_version: None,
        bucket_ms: Some(width),
        rollout: None,
    };
    let opened = match open_store(&console.settings, Access::Read).await {
        Ok(opened) => opened,
        Err(e) => return api_error(&e),
    };
    let computed = async {
        let stats = opened.operator.stats(&stats_query).await?;
        let compared = match &comparison {
            Some((b, a)) => Some((
                opened.operator.stats(b).await?,
                opened.operator.stats(a).await?,
            )),
            None => None,
        };
        Ok((stats, compared))
    }
    .await;
    release(opened.server).await;
    let (stats, compared) = match computed {
        Ok(c) => c,
        Err(e) => return api_error(&e),
    };

    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>Stats</h1><form method=\"get\" action=\"/stats\"><label for=\"workflow\">Workflow</label><input id=\"workflow\" name=\"workflow\" value=\"{}\"> <label for=\"since\">Runs created in the last</label><input id=\"since\" name=\"since\" size=\"6\" value=\"{}\"> <label for=\"bucket\">Chart bucket</label><input id=\"bucket\" name=\"bucket\" size=\"6\" placeholder=\"{}\" value=\"{}\"> <button type=\"submit\">Show</button></form><p>{} runs and {} steps read. The bar is each row's p95 against the longest on the page. Charts: one point per bucket of {} that holds runs, by the runs' creation time.</p>",
        esc(workflow.as_deref().unwrap_or("")),
        esc(&since_text),
        esc(&humantime::format_duration(std::time::Duration::from_millis(width)).to_string()),
        esc(query.bucket.as_deref().unwrap_or("")),
        stats.runs_read,
        stats.steps_read,
        esc(&humantime::format_duration(std::time::Duration::from_millis(width)).to_string()),
    );
    if stats.workflows.is_empty() {
        let _ = write!(b, "<p>No runs in this window.</p>");
    }
    let max_p95 = stats
        .workflows
        .iter()
        .flat_map(|w| std::iter::once(&w.runs).chain(w.steps.values()))
        .filter_map(|f| f.p95_ms)
        .max()
        .unwrap_or(1);
    let axis = Axis {
        t0: from,
        t1: now,
        width,
    };
    for w in &stats.workflows {
        let _ = write!(
            b,
            "<h2>{}</h2><table class=\"stats\"><thead><tr><th scope=\"col\">Runs / step</th><th scope=\"col\">Count</th><th scope=\"col\">Success</th><th scope=\"col\">p50</th><th scope=\"col\">p95</th><th scope=\"col\">p99</th><th scope=\"col\">p95 bar</th><th scope=\"col\">Retries</th><th scope=\"col\">Error rate</th><th scope=\"col\">Errors</th></tr></thead><tbody>",
            esc(&w.workflow)
        );
        figures_row(&mut b, "runs", &w.runs, max_p95);
        for (step, f) in &w.steps {
            figures_row(&mut b, step, f, max_p95);
        }
        let _ = write!(b, "</tbody></table>");
        charts(&mut b, &stats, &axis, &w.workflow, None);
        for step in w.steps.keys() {
            let _ = write!(
                b,
                "<details class=\"step-charts\"><summary>Step <code>{}</code> over time</summary>",
                esc(step)
            );
            charts(&mut b, &stats, &axis, &w.workflow, Some(step));
            let _ = write!(b, "</details>");
        }
    }
    comparison_section(&mut b, &query, compared.as_ref());
    page("Stats", None, &b)
}

fn percent(rate: Option<f64>) -> String {
    rate.map_or("-".to_owned(), |r| format!("{:.1}%", r * 100.0))
}

/// One row of figures, with a bar of its p95 against the page's longest.
fn figures_row(b: &mut String, name: &str, f: &Figures, max_p95: u64) {
    let errors: Vec<String> = f.errors.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let width = f
        .p95_ms
        .map_or(0.0, |p| 200.0 * p as f64 / max_p95.max(1) as f64);
    let _ = write!(
        b,
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><svg width=\"204\" height=\"12\" aria-hidden=\"true\"><rect class=\"p95\" x=\"0\" y=\"1\" width=\"{width:.1}\" height=\"10\" fill=\"#1565c0\"/></svg></td><td>{}</td><td>{}</td><td class=\"error\">{}</td></tr>",
        esc(name),
        f.count,
        percent(f.success_rate()),
        ms(f.p50_ms),
        ms(f.p95_ms),
        ms(f.p99_ms),
        f.retries,
        percent(f.error_rate()),
        esc(&errors.join(", "))
    );
}

/// The time axis of the charts: the window, cut into buckets of `width` ms.
struct Axis {
    t0: u64,
    t1: u64,
    width: u64,
}

/// A time for an axis or a point's title: minutes, in UTC.
fn short_time(ms: u64) -> String {
    let t = time(ms);
    // `time` writes RFC 3339 (`1970-01-02T01:01:01.000Z`), or a number past the year 9999
    match t.get(..16) {
        Some(minutes) if t.as_bytes().get(10) == Some(&b'T') => {
            format!("{}Z", minutes.replacen('T', " ", 1))
        }
        _ => t,
    }
}

/// One line of a chart.
struct Series {
    name: &'static str,
    color: &'static str,
    /// `stroke-dasharray`, so the lines differ by more than their colour.
    dash: &'static str,
    /// (bucket start, value, title)
    points: Vec<(u64, f64, String)>,
}

/// A round number at or above `max`: 1, 2 or 5 times a power of ten.
fn nice_ceiling(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let power = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|v| *v >= max)
        .unwrap_or(10.0 * power)
}

/// The latency and error-rate charts of a workflow's runs (`step` None) or of one step.
fn charts(b: &mut String, stats: &Stats, axis: &Axis, workflow: &str, step: Option<&str>) {
    let figures = stats.series.iter().filter_map(|bucket| {
        let w = bucket.workflows.iter().find(|w| w.workflow == workflow)?;
        let f = match step {
            None => &w.runs,
            Some(s) => w.steps.get(s)?,
        };
        Some((bucket.from_ms, f))
    });
    let what = step.map_or_else(|| "runs".to_owned(), |s| format!("step {s}"));
    let span = |from: u64| {
        format!(
            "{} – {}",
            short_time(from),
            short_time(from.saturating_add(axis.width))
        )
    };
    let mut latency = [
        ("p50", "#1565c0", ""),
        ("p95", "#6a1b9a", "6 3"),
        ("p99", "#bf360c", "2 2"),
    ]
    .map(|(name, color, dash)| Series {
        name,
        color,
        dash,
        points: Vec::new(),
    });
    let mut errors = Series {
        name: "error rate",
        color: "#c62828",
        dash: "",
        points: Vec::new(),
    };
    let mut rows = String::new();
    for (from, f) in figures {
        for (series, value) in latency.iter_mut().zip([f.p50_ms, f.p95_ms, f.p99_ms]) {
            if let Some(v) = value {
                series.points.push((
                    from,
                    v as f64,
                    format!(
                        "{}: {} {v} ms ({} finished)",
                        span(from),
                        series.name,
                        f.finished
                    ),
                ));
            }
        }
        if let Some(r) = f.error_rate() {
            errors.points.push((
                from,
                r * 100.0,
                format!(
                    "{}: error rate {} ({} of {} finished)",
                    span(from),
                    rate(Some(r)),
                    f.finished - f.succeeded,
                    f.finished
                ),
            ));
        }
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&span(from)),
            f.count,
            ms(f.p50_ms),
            ms(f.p95_ms),
            ms(f.p99_ms),
            rate(f.error_rate())
        );
    }
    if rows.is_empty() {
        let _ = write!(b, "<p>Nothing finished in this window to draw.</p>");
        return;
    }
    let max_ms = latency
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    let max_rate = errors.points.iter().map(|p| p.1).fold(0.0, f64::max);
    let _ = write!(b, "<div class=\"charts\">");
    chart(
        b,
        axis,
        &Chart {
            workflow,
            step,
            figure: "latency",
            label: format!("Duration of {what} of {workflow}: p50, p95 and p99 per bucket"),
            top: nice_ceiling(max_ms),
            unit: "ms",
        },
        &latency,
    );
    chart(
        b,
        axis,
        &Chart {
            workflow,
            step,
            figure: "errors",
            label: format!("Error rate of {what} of {workflow} per bucket"),
            top: [10.0, 25.0, 50.0, 100.0]
                .into_iter()
                .find(|t| *t >= max_rate)
                .unwrap_or(100.0),
            unit: "%",
        },
        std::slice::from_ref(&errors),
    );
    let _ = write!(
        b,
        "</div><details><summary>The charts as a table</summary><table><thead><tr><th scope=\"col\">Bucket (UTC)</th><th scope=\"col\">Count</th><th scope=\"col\">p50</th><th scope=\"col\">p95</th><th scope=\"col\">p99</th><th scope=\"col\">Error rate</th></tr></thead><tbody>{rows}</tbody></table></details>"
    );
}

/// What a chart shows, for its attributes and its label.
struct Chart<'a> {
    workflow: &'a str,
    step: Option<&'a str>,
    /// `latency` or `errors`.
    figure: &'static str,
    label: String,
    /// The value at the top of the y axis.
    top: f64,
    unit: &'static str,
}

/// Draws `series` as lines with a point per bucket on the window's time axis.
fn chart(b: &mut String, axis: &Axis, chart: &Chart<'_>, series: &[Series]) {
    const W: f64 = 560.0;
    const H: f64 = 170.0;
    const LEFT: f64 = 62.0;
    const RIGHT: f64 = 10.0;
    const TOP: f64 = 24.0;
    const BOTTOM: f64 = 22.0;
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let span = axis.t1.saturating_sub(axis.t0).max(1) as f64;
    let x_of = |from: u64| {
        let mid = from.saturating_add(axis.width / 2).clamp(axis.t0, axis.t1);
        LEFT + pw * (mid - axis.t0) as f64 / span
    };
    let y_of = |v: f64| TOP + ph * (1.0 - (v / chart.top).clamp(0.0, 1.0));
    let value = |v: f64| {
        if chart.unit == "%" {
            format!("{v}%")
        } else {
            format!("{v} ms")
        }
    };
    let _ = write!(
        b,
        "<svg class=\"chart\" data-workflow=\"{}\" data-step=\"{}\" data-figure=\"{}\" role=\"img\" aria-label=\"{}\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" xmlns=\"http://www.w3.org/2000/svg\" style=\"max-width:100%;font:11px sans-serif\"><title>{}</title>",
        esc(chart.workflow),
        esc(chart.step.unwrap_or("")),
        chart.figure,
        esc(&chart.label),
        esc(&chart.label)
    );
    // Grid lines at 0, half and the top, with their values
    for share in [0.0, 0.5, 1.0] {
        let y = y_of(chart.top * share);
        let _ = write!(
            b,
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#bbb\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#333\">{}</text>",
            LEFT + pw,
            LEFT - 4.0,
            y + 4.0,
            value(chart.top * share)
        );
    }
    let _ = write!(
        b,
        "<text x=\"{LEFT}\" y=\"{}\" fill=\"#333\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#333\">{}</text>",
        H - 6.0,
        esc(&short_time(axis.t0)),
        LEFT + pw,
        H - 6.0,
        esc(&short_time(axis.t1))
    );
    let mut legend = LEFT;
    for s in series {
        let points: Vec<String> = s
            .points
            .iter()
            .map(|(from, v, _)| format!("{:.1},{:.1}", x_of(*from), y_of(*v)))
            .collect();
        let _ = write!(
            b,
            "<g class=\"series\" data-series=\"{}\"><polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" stroke-dasharray=\"{}\" points=\"{}\"/>",
            s.name,
            s.color,
            s.dash,
            points.join(" ")
        );
        for (from, v, title) in &s.points {
            let _ = write!(
                b,
                "<circle class=\"pt\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{}\"><title>{}</title></circle>",
                x_of(*from),
                y_of(*v),
                s.color,
                esc(title)
            );
        }
        let _ = write!(
            b,
            "<line x1=\"{legend}\" x2=\"{}\" y1=\"10\" y2=\"10\" stroke=\"{}\" stroke-width=\"2\" stroke-dasharray=\"{}\"/><text x=\"{}\" y=\"14\" fill=\"#333\">{}</text></g>",
            legend + 22.0,
            s.color,
            s.dash,
            legend + 26.0,
            s.name
        );
        legend += 90.0;
    }
    let _ = write!(b, "</svg>");
}

/// The comparison form, and the comparison itself when both sides were given.
fn comparison_section(b: &mut String, query: &StatsPageQuery, compared: Option<&(Stats, Stats)>) {
    let value = |v: &Option<String>| esc(v.as_deref().unwrap_or(""));
    let _ = write!(
        b,
        "<h2 id=\"compare\">Before and after</h2><p>Two windows (<code>A..B</code>, such as <code>2026-11-20..2026-11-27</code>; <code>C..</code> runs until now), two app versions, or both, as <code>stats --compare</code> takes them.</p><form method=\"get\" action=\"/stats#compare\"><input type=\"hidden\" name=\"workflow\" value=\"{}\"><label for=\"before\">Before window</label><input id=\"before\" name=\"before\" value=\"{}\"> <label for=\"after\">After window</label><input id=\"after\" name=\"after\" value=\"{}\"> <label for=\"before_version\">Before version</label><input id=\"before_version\" name=\"before_version\" size=\"8\" value=\"{}\"> <label for=\"after_version\">After version</label><input id=\"after_version\" name=\"after_version\" size=\"8\" value=\"{}\"> <button type=\"submit\">Compare</button></form>",
        value(&query.workflow),
        value(&query.before),
        value(&query.after),
        value(&query.before_version),
        value(&query.after_version),
    );
    let Some((before, after)) = compared else {
        return;
    };
    let limits = Thresholds::DEFAULT;
    let rows = compare(before, after, limits);
    let _ = write!(
        b,
        "<p>Before: {}.<br>After: {}.</p>",
        esc(&window(&before.query)),
        esc(&window(&after.query))
    );
    if rows.is_empty() {
        let _ = write!(b, "<p>Neither side holds a run.</p>");
        return;
    }
    let _ = write!(b, "<table id=\"comparison\"><thead><tr>");
    for h in COMPARE_HEADERS {
        let _ = write!(b, "<th scope=\"col\">{}</th>", esc(&h.to_lowercase()));
    }
    let _ = write!(
        b,
        "<th scope=\"col\">p95 before / after</th></tr></thead><tbody>"
    );
    let top = rows
        .iter()
        .flat_map(|c| [&c.before, &c.after])
        .filter_map(|f| f.as_ref()?.p95_ms)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    for c in &rows {
        let worse = c.latency_worse || c.errors_worse;
        let _ = write!(b, "<tr{}>", if worse { " class=\"worse\"" } else { "" });
        for cell in comparison_cells(c) {
            let _ = write!(b, "<td>{}</td>", esc(cell.trim()));
        }
        let bar = |f: &Option<Figures>| {
            f.as_ref()
                .and_then(|f| f.p95_ms)
                .map_or(0.0, |p| 120.0 * p as f64 / top)
        };
        let _ = write!(
            b,
            "<td><svg width=\"124\" height=\"22\" aria-hidden=\"true\"><rect x=\"0\" y=\"1\" width=\"{:.1}\" height=\"9\" fill=\"#9e9e9e\"/><rect x=\"0\" y=\"12\" width=\"{:.1}\" height=\"9\" fill=\"{}\"/></svg></td></tr>",
            bar(&c.before),
            bar(&c.after),
            if c.latency_worse { "#c62828" } else { "#1565c0" }
        );
    }
    let _ = write!(
        b,
        "</tbody></table><p>!! marks a p95 that grew by more than {:.0}% and {} ms, or an error rate that grew by more than {:.1} points (the defaults of <code>stats --compare</code>). In the bars, grey is before and the other colour after.</p>",
        limits.latency * 100.0,
        limits.min_change_ms,
        limits.error_rate * 100.0
    );
}

#[cfg(test)]
mod tests {
    use super::{nice_ceiling, short_time, width_for};

    #[test]
    fn the_bucket_follows_the_window() {
        const H: u64 = 3_600_000;
        assert_eq!(width_for(H), 5 * 60_000);
        assert_eq!(width_for(24 * H), H);
        assert_eq!(width_for(7 * 24 * H), 6 * H);
        assert_eq!(width_for(30 * 24 * H), 24 * H);
        assert_eq!(width_for(3650 * 24 * H), 7 * 24 * H);
    }

    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(4177.0), 5000.0);
        assert_eq!(nice_ceiling(100.0), 100.0);
        assert_eq!(nice_ceiling(101.0), 200.0);
        assert_eq!(nice_ceiling(0.3), 0.5);
    }

    #[test]
    fn axis_times_are_minutes_in_utc() {
        assert_eq!(short_time(90_061_000), "1970-01-02 01:01Z");
        assert_eq!(short_time(u64::MAX), format!("{} ms after 1970", u64::MAX));
    }
}

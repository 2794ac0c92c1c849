//! `stats`: the figures of one window, or two windows side by side with the change of each
//! figure and a mark where latency or the error rate got worse beyond the thresholds. The
//! figures come from the operator API (`api::stats`); this module only chooses the windows and
//! prints.

use super::args::{OutputFormat, StatsArgs};
use super::commands::{
    add_row, error, fail_api, open_operator, print_json, release, say, table, time,
};
use super::Exit;
use crate::console::api::open::Access;
use crate::console::api::stats::{compare, Change, Figures, Stats, StatsQuery, Thresholds};
use crate::console::settings::FlowSettings;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DAY: Duration = Duration::from_secs(24 * 3600);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(super) async fn command(
    settings: &FlowSettings,
    args: StatsArgs,
    output: OutputFormat,
) -> Exit {
    // clap pairs the versions and asks for a window or a version on each side; two windows
    // are compared only together
    let versions = args.before_version.is_some() || args.before_rollout.is_some();
    if args.compare && !versions && (args.before.is_none() || args.after.is_none()) {
        let given = if args.before.is_some() {
            "--before"
        } else {
            "--after"
        };
        error(format!(
            "`--compare {given}` needs the other window too: `--before A..B --after C..D`; or compare two versions with `--before-version A --after-version B`"
        ));
        return Exit::Usage;
    }
    let opened = match open_operator(settings, Access::Read).await {
        Ok(opened) => opened,
        Err(exit) => return exit,
    };
    let query =
        |(from_ms, to_ms): (Option<u64>, Option<u64>), app_version: Option<String>| StatsQuery {
            from_ms,
            to_ms,
            workflow: args.workflow.clone(),
            app_version,
            bucket_ms: None,
            rollout: None,
        };
    let op = &opened.operator;
    let exit = if args.compare {
        // A side without a window (comparing versions or rollout stages) spans every run
        let before = StatsQuery {
            rollout: args.before_rollout,
            ..query(args.before.unwrap_or_default(), args.before_version)
        };
        let after = StatsQuery {
            rollout: args.after_rollout,
            ..query(args.after.unwrap_or_default(), args.after_version)
        };
        let stats = match op.stats(&before).await {
            Ok(b) => op.stats(&after).await.map(|a| (b, a)),
            Err(e) => Err(e),
        };
        match stats {
            Ok((before, after)) => {
                // A flag wins over `[flow.stats]`, which has the built-in defaults
                let set = &settings.stats;
                let limits = Thresholds {
                    latency: args
                        .latency_threshold
                        .unwrap_or_else(|| set.latency_threshold())
                        / 100.0,
                    min_change_ms: args
                        .min_change
                        .unwrap_or_else(|| set.min_change())
                        .as_millis() as u64,
                    error_rate: args
                        .error_threshold
                        .unwrap_or_else(|| set.error_threshold())
                        / 100.0,
                };
                print_comparison(&before, &after, limits, output);
                Exit::Success
            }
            Err(e) => fail_api(&e),
        }
    } else {
        let window = match (args.since, args.from, args.to) {
            (Some(since), _, _) => {
                let since = since.as_millis().min(u128::from(u64::MAX)) as u64;
                (Some(now_ms().saturating_sub(since)), None)
            }
            (None, None, None) => (Some(now_ms().saturating_sub(DAY.as_millis() as u64)), None),
            (None, from, to) => (from, to),
        };
        match op.stats(&query(window, args.app_version.clone())).await {
            Ok(stats) => {
                print_one(&stats, output);
                Exit::Success
            }
            Err(e) => fail_api(&e),
        }
    };
    release(opened.server).await;
    exit
}

/// Which runs a figure covers, for people: `runs created A .. B`, and `of version V`.
pub(super) fn window(query: &StatsQuery) -> String {
    let end = |t: Option<u64>, open: &str| t.map_or(open.to_owned(), time);
    let mut text = format!(
        "runs created {} .. {}",
        end(query.from_ms, "the first run"),
        end(query.to_ms, "now")
    );
    if let Some(version) = &query.app_version {
        text.push_str(&format!(" of version {version}"));
    }
    if let Some((from, to)) = query.rollout {
        text.push_str(&format!(
            ", units in rollout stage {from}%..{to}% (the workflow's row counts units)"
        ));
    }
    text
}

pub(super) fn rate(r: Option<f64>) -> String {
    r.map_or("-".to_owned(), |r| format!("{:.1}%", r * 100.0))
}

/// A duration for people: ms below 10 s, then seconds with one decimal (JSON keeps ms).
pub(super) fn ms(v: Option<u64>) -> String {
    match v {
        None => "-".to_owned(),
        Some(v) if v < 10_000 => format!("{v} ms"),
        Some(v) => format!("{:.1} s", v as f64 / 1000.0),
    }
}

fn errors(f: &Figures) -> String {
    if f.errors.is_empty() {
        return "-".to_owned();
    }
    f.errors
        .iter()
        .map(|(class, n)| format!("{class} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn figures_json(f: &Figures) -> Value {
    json!({
        "count": f.count,
        "finished": f.finished,
        "succeeded": f.succeeded,
        "success_rate": f.success_rate(),
        "error_rate": f.error_rate(),
        "errors": f.errors,
        "p50_ms": f.p50_ms,
        "p95_ms": f.p95_ms,
        "p99_ms": f.p99_ms,
        "retries": f.retries,
    })
}

fn query_json(q: &StatsQuery) -> Value {
    json!({
        "from": q.from_ms.map(time),
        "to": q.to_ms.map(time),
        "workflow": q.workflow,
        "app_version": q.app_version,
        "rollout": q.rollout.map(|(from, to)| json!({ "from_percent": from, "to_percent": to })),
    })
}

/// A step's row label: its name under its workflow.
fn step_label(name: &str) -> String {
    format!("  step {name}")
}

fn print_one(stats: &Stats, output: OutputFormat) {
    match output {
        OutputFormat::Json => print_json(&json!({
            "window": query_json(&stats.query),
            "runs_read": stats.runs_read,
            "steps_read": stats.steps_read,
            "workflows": stats.workflows.iter().map(|w| json!({
                "workflow": w.workflow,
                "runs": figures_json(&w.runs),
                "steps": w.steps.iter().map(|(name, f)| {
                    let mut v = figures_json(f);
                    v["step"] = json!(name);
                    v
                }).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })),
        OutputFormat::Table => {
            say(format!(
                "{}: {} runs read, {} steps read",
                window(&stats.query),
                stats.runs_read,
                stats.steps_read
            ));
            if stats.workflows.is_empty() {
                match &stats.query.app_version {
                    Some(version) => say(format!(
                        "no run of version {version} was created in this window"
                    )),
                    None => println!("no run was created in this window"),
                }
                return;
            }
            let mut t = table(&[
                "WORKFLOW / STEP",
                "COUNT",
                "SUCCESS",
                "ERRORS",
                "P50",
                "P95",
                "P99",
                "RETRIES",
            ]);
            let row = |t: &mut comfy_table::Table, label: String, f: &Figures| {
                add_row(
                    t,
                    [
                        label,
                        f.count.to_string(),
                        rate(f.success_rate()),
                        errors(f),
                        ms(f.p50_ms),
                        ms(f.p95_ms),
                        ms(f.p99_ms),
                        f.retries.to_string(),
                    ],
                );
            };
            for w in &stats.workflows {
                row(&mut t, w.workflow.clone(), &w.runs);
                for (name, f) in &w.steps {
                    row(&mut t, step_label(name), f);
                }
            }
            println!("{t}");
        }
    }
}

fn change_pct(c: Option<f64>) -> String {
    c.map_or(String::new(), |c| format!(" ({:+.0}%)", c * 100.0))
}

fn side<T>(f: Option<&Figures>, get: impl Fn(&Figures) -> T, show: impl Fn(T) -> String) -> String {
    f.map_or("-".to_owned(), |f| show(get(f)))
}

/// The columns of a comparison, in the table of `stats --compare` and on the web console.
pub(super) const COMPARE_HEADERS: [&str; 9] = [
    "WORKFLOW / STEP",
    "COUNT",
    "SUCCESS",
    "P50",
    "P95",
    "P99",
    "ERROR RATE",
    "RETRIES",
    "WORSE",
];

/// One row of a comparison: each figure `before -> after`, with the change of p95 and of the
/// error rate, and `!! latency, errors` where it got worse.
pub(super) fn comparison_cells(c: &Change) -> [String; 9] {
    let (b, a) = (c.before.as_ref(), c.after.as_ref());
    let pair = |get: &dyn Fn(&Figures) -> String| {
        format!(
            "{} -> {}",
            b.map_or("-".to_owned(), get),
            a.map_or("-".to_owned(), get)
        )
    };
    let mut worse = Vec::new();
    if c.latency_worse {
        worse.push("latency");
    }
    if c.errors_worse {
        worse.push("errors");
    }
    [
        c.step.as_deref().map_or(c.workflow.clone(), step_label),
        pair(&|f| f.count.to_string()),
        pair(&|f| rate(f.success_rate())),
        pair(&|f| ms(f.p50_ms)),
        pair(&|f| ms(f.p95_ms)) + &change_pct(c.p95_change),
        pair(&|f| ms(f.p99_ms)),
        format!(
            "{} -> {}{}",
            side(b, Figures::error_rate, rate),
            side(a, Figures::error_rate, rate),
            c.error_rate_change
                .map_or(String::new(), |d| format!(" ({:+.1} pts)", d * 100.0))
        ),
        pair(&|f| f.retries.to_string()),
        if worse.is_empty() {
            String::new()
        } else {
            format!("!! {}", worse.join(", "))
        },
    ]
}

fn print_comparison(before: &Stats, after: &Stats, limits: Thresholds, output: OutputFormat) {
    let rows = compare(before, after, limits);
    match output {
        OutputFormat::Json => print_json(&json!({
            "before": query_json(&before.query),
            "after": query_json(&after.query),
            "thresholds": {
                "latency": limits.latency,
                "min_change_ms": limits.min_change_ms,
                "error_rate": limits.error_rate,
            },
            "runs_read": before.runs_read + after.runs_read,
            "steps_read": before.steps_read + after.steps_read,
            "rows": rows.iter().map(|c: &Change| json!({
                "workflow": c.workflow,
                "step": c.step,
                "before": c.before.as_ref().map(figures_json),
                "after": c.after.as_ref().map(figures_json),
                "p95_change": c.p95_change,
                "error_rate_change": c.error_rate_change,
                "latency_worse": c.latency_worse,
                "errors_worse": c.errors_worse,
            })).collect::<Vec<_>>(),
        })),
        OutputFormat::Table => {
            say(format!("before: {}", window(&before.query)));
            say(format!("after:  {}", window(&after.query)));
            let mut t = table(&COMPARE_HEADERS);
            for c in &rows {
                add_row(&mut t, comparison_cells(c));
            }
            println!("{t}");
            println!(
                "!! marks a p95 that grew by more than {:.0}% and {} ms, or an error rate that grew by more than {:.1} points",
                limits.latency * 100.0,
                limits.min_change_ms,
                limits.error_rate * 100.0
            );
        }
    }
}

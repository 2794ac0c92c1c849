//! The progress bar of `run` and `runs resume` on a terminal: steps done, the current step and
//! retries, read from the store while the run executes (it never slows the run down). While it
//! is shown, log lines are written around it (`telemetry::share_screen`).

use crate::engine::Flow;
use crate::store::{RunId, StepStatus};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

/// A progress display that stops when dropped.
pub(super) struct Progress {
    bar: ProgressBar,
    poller: tokio::task::JoinHandle<()>,
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.poller.abort();
        crate::console::telemetry::release_screen();
        self.bar.finish_and_clear();
    }
}

/// Starts the display for run `id` when stderr is a terminal; `None` otherwise (scripts and
/// JSON logs get log lines only).
pub(super) fn start(flow: &Flow, id: &RunId) -> Option<Progress> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    // Log lines are printed above the bar from now on, instead of over it
    crate::console::telemetry::share_screen(&bar);
    let (flow, id, shown) = (flow.clone(), id.clone(), bar.clone());
    let poller = tokio::spawn(async move {
        loop {
            if let Some(units) = crate::engine::units::progress(id.as_str()) {
                let secs = (units.elapsed_ms as f64 / 1000.0).max(0.001);
                let rate = units.started as f64 / secs;
                let seen = units.succeeded + units.failed + units.skipped;
                let eta = match units.total {
                    Some(total) if rate > 0.0 && total > seen => {
                        format!(", ETA {:.0} s", (total - seen) as f64 / rate)
                    }
                    _ => String::new(),
                };
                shown.set_message(format!(
                    "run {id}: units {} done, {} failed, {} skipped by the rollout; {rate:.0} units/s{eta}",
                    units.succeeded, units.failed, units.skipped
                ));
            } else if let Ok(steps) = flow.steps(&id).await {
                let done = steps
                    .iter()
                    .filter(|s| s.status == StepStatus::Succeeded)
                    .count();
                let retries: u32 = steps.iter().map(|s| s.attempt.saturating_sub(1)).sum();
                let current = steps
                    .iter()
                    .filter(|s| matches!(s.status, StepStatus::Started | StepStatus::Backoff))
                    .max_by_key(|s| s.started_at_ms)
                    .or_else(|| steps.iter().max_by_key(|s| s.finished_at_ms))
                    .map(|s| {
                        let name = s.id.name.rsplit("::").next().unwrap_or(&s.id.name);
                        format!("{name} {}", s.id.key)
                    })
                    .unwrap_or_default();
                // A step key comes from the workflow's data: shown escaped, as in every table
                shown.set_message(super::output::escape(&format!(
                    "run {id}: {done} steps done, {retries} retries; latest: {current}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    Some(Progress { bar, poller })
}

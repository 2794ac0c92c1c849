//! Schedules: cron expressions in a time zone that fire runs of a workflow, once per tick.
//!
//! A schedule is declared on a workflow (`#[workflow(schedule = "0 2 * * *")]`, checked at
//! compile time) or in settings (`[flow.schedules.NAME]`), which may also override or disable a
//! declared one. This module resolves the two into [`Schedule`]s, computes ticks (croner over
//! jiff's time zones, so daylight-saving changes neither skip nor double a tick), and turns
//! due ticks into store writes ([`ScheduleWrite`]): the store decides, in one transaction, which
//! ticks become runs. A tick's run id is `NAME@<tick in UTC>`, so however many workers pass
//! over a tick, and however often they restart, it runs once.
//!
//! The worker calls [`Flow::fire_due_ticks`] on every pass with its [`Clock`]; the CLI's
//! `schedules` commands call the rest.

use super::registry::{self, CatchUp, Overlap, WorkflowMeta};
use super::{find_workflow, new_trace_id, queue::DEFAULT_QUEUE, Error, Flow};
use crate::store::{
    format_tick, tick_run_id, Pause, QueuePlace, RunId, RunRecord, RunStatus, ScheduleFire,
    ScheduleOutcome, ScheduleRecord, ScheduleWrite, ScheduledTick, SkipReason,
};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// How long after its time a tick still counts as on time for `catch_up = "skip"`: a worker
/// that looks every 100 ms sees each tick well within it; a tick older than this passed while
/// no worker ran.
pub const ON_TIME: Duration = Duration::from_secs(60);

/// The default catch-up window: ticks older than this are never caught up.
pub const DEFAULT_CATCH_UP_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// At most this many ticks fire in one pass or one backfill request (a backfill of a larger
/// range is refused with a message asking for a smaller one).
pub const MAX_TICKS: usize = 10_000;

/// Where a worker's scheduler reads the time. The system clock in production; tests pass a
/// clock they move by hand to cross missed ticks and daylight-saving changes in milliseconds.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Now, ms since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        crate::store::now_ms()
    }
}

/// A clock that moves only when told: `clock.set_ms(..)`, `clock.advance(..)`.
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicU64);

impl ManualClock {
    /// A clock showing `now_ms`.
    pub fn new(now_ms: u64) -> Arc<ManualClock> {
        Arc::new(ManualClock(std::sync::atomic::AtomicU64::new(now_ms)))
    }

    /// Shows `now_ms` from now on.
    pub fn set_ms(&self, now_ms: u64) {
        self.0.store(now_ms, std::sync::atomic::Ordering::SeqCst);
    }

    /// Moves the clock on by `by`.
    pub fn advance(&self, by: Duration) {
        self.0
            .fetch_add(by.as_millis() as u64, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A schedule as settings declare or override it (`[flow.schedules.NAME]`); every field left
/// out keeps the value declared on the workflow.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScheduleConfig {
    /// The workflow to run; required for a schedule that no workflow declares.
    pub workflow: Option<String>,
    /// The cron expression.
    pub cron: Option<String>,
    /// The IANA time zone.
    pub timezone: Option<String>,
    /// The input of each run, as JSON.
    pub input: Option<serde_json::Value>,
    /// `false` disables the schedule: no tick fires until it is enabled again.
    pub enabled: Option<bool>,
    /// What to do with ticks missed while no worker ran.
    pub catch_up: Option<CatchUp>,
    /// Ticks older than this are never caught up.
    pub catch_up_window: Option<Duration>,
    /// What to do with a tick while the previous run still runs.
    pub overlap: Option<Overlap>,
    /// The queue its runs go to (default `default`).
    pub queue: Option<String>,
}

/// A resolved schedule: what the worker fires.
#[derive(Clone)]
pub struct Schedule {
    /// Its name, the prefix of its runs' ids.
    pub name: String,
    /// The workflow it runs.
    pub workflow: String,
    /// The cron expression.
    pub cron: String,
    /// The time zone's name.
    pub timezone: String,
    /// The input of each run.
    pub input: serde_json::Value,
    /// Whether it fires (settings may disable it).
    pub enabled: bool,
    /// Catch-up policy.
    pub catch_up: CatchUp,
    /// Catch-up window.
    pub catch_up_window: Duration,
    /// Overlap policy.
    pub overlap: Overlap,
    /// The queue of its runs.
    pub queue: String,
    /// Where it comes from: `code`, `settings`, or `code + settings`.
    pub source: &'static str,
    parsed: croner::Cron,
    zone: jiff::tz::TimeZone,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schedule")
            .field("name", &self.name)
            .field("workflow", &self.workflow)
            .field("cron", &self.cron)
            .field("timezone", &self.timezone)
            .field("enabled", &self.enabled)
            .field("catch_up", &self.catch_up)
            .field("overlap", &self.overlap)
            .finish_non_exhaustive()
    }
}

/// Parses a cron expression exactly as `#[workflow(schedule = ...)]` checks it: 5 fields, or 6
/// with seconds first, no year field (croner: Vixie cron plus `L`, `W`, `#` and `@daily`-style
/// nicknames; a day matching either a restricted day of month or day of week runs).
pub fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .year(croner::parser::Year::Disallowed)
        .build()
        .parse(expr)
        .map_err(|e| e.to_string())
}

/// A time zone by its IANA name, from the tz database bundled into the binary (the one
/// `#[workflow(timezone = ...)]` was checked against), not the machine's zone files.
pub fn parse_zone(name: &str) -> Result<jiff::tz::TimeZone, String> {
    jiff::tz::TimeZoneDatabase::bundled().get(name).map_err(|_| {
        format!("`{name}` is not a known time zone; use an IANA name such as \"UTC\" or \"Europe/Berlin\"")
    })
}

/// Why a schedule does not resolve.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("schedule `{name}`: {message}")]
pub struct ScheduleError {
    /// The schedule.
    pub name: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl Schedule {
    /// The first tick strictly after `after_ms`, if the expression has one.
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        let start = jiff::Timestamp::from_millisecond(i64::try_from(after_ms).ok()?)
            .ok()?
            .to_zoned(self.zone.clone());
        let next = self.parsed.find_next_occurrence(&start, false).ok()?;
        u64::try_from(next.timestamp().as_millisecond()).ok()
    }

    /// The ticks in `(after_ms, through_ms]`, oldest first, at most `limit`.
    pub fn ticks(&self, after_ms: u64, through_ms: u64, limit: usize) -> Vec<u64> {
        let mut ticks = Vec::new();
        let mut at = after_ms;
        while ticks.len() < limit {
            match self.next_after(at) {
                Some(tick) if tick <= through_ms && tick > at => {
                    ticks.push(tick);
                    at = tick;
                }
                _ => break,
            }
        }
        ticks
    }

    /// The tick's time in the schedule's zone, for people (`2026-11-28 03:00:00 CET`).
    pub fn local(&self, tick_ms: u64) -> String {
        match jiff::Timestamp::from_millisecond(tick_ms as i64) {
            Ok(ts) => ts
                .to_zoned(self.zone.clone())
                .strftime("%Y-%m-%d %H:%M:%S %Z")
                .to_string(),
            Err(_) => format_tick(tick_ms),
        }
    }

    /// The queued run of `tick_ms` (its id derived from the tick).
    fn run_of(&self, tick_ms: u64, now_ms: u64) -> RunRecord {
        RunRecord {
            queue: Some(QueuePlace {
                name: self.queue.clone(),
                priority: 0,
                not_before_ms: None,
                concurrency_key: None,
            }),
            scheduled: Some(ScheduledTick {
                schedule: self.name.clone(),
                tick_ms,
            }),
            ..RunRecord::new(
                tick_run_id(&self.name, tick_ms),
                self.workflow.clone(),
                RunStatus::Queued,
                self.input.clone(),
                new_trace_id(),
                now_ms,
            )
        }
    }

    /// The last tick at or before `at_ms`, if the expression has one.
    pub fn last_at_or_before(&self, at_ms: u64) -> Option<u64> {
        let at = jiff::Timestamp::from_millisecond(i64::try_from(at_ms).ok()?)
            .ok()?
            .to_zoned(self.zone.clone());
        let last = self.parsed.find_previous_occurrence(&at, true).ok()?;
        u64::try_from(last.timestamp().as_millisecond()).ok()
    }

    /// What a pass at `now_ms` over a record handled through `through_ms` does: the ticks to
    /// fire, those the catch-up policy or window leaves out (at most [`MAX_TICKS`] listed), and
    /// how far the record is then handled. Never walks more than [`MAX_TICKS`] ticks, however
    /// long no worker ran: `latest` and `skip` look up the last tick directly, and `all` goes on
    /// in the next pass when more than that many ticks are due.
    fn plan(&self, through_ms: u64, now_ms: u64, paused: bool) -> Plan {
        let mut plan = Plan {
            fire: Vec::new(),
            skipped: Vec::new(),
            through_ms,
        };
        let Some(last) = self.last_at_or_before(now_ms).filter(|l| *l > through_ms) else {
            return plan;
        };
        plan.through_ms = last;
        let missed = |from: u64, to: u64, reason: SkipReason| -> Vec<(u64, SkipReason)> {
            self.ticks(from, to, MAX_TICKS)
                .into_iter()
                .map(|t| (t, reason))
                .collect()
        };
        if paused {
            plan.skipped = missed(through_ms, last, SkipReason::Paused);
            return plan;
        }
        let window_start = now_ms.saturating_sub(self.catch_up_window.as_millis() as u64);
        match self.catch_up {
            CatchUp::All => {
                let from = through_ms.max(window_start.saturating_sub(1));
                if from > through_ms {
                    plan.skipped = missed(through_ms, from, SkipReason::Missed);
                }
                plan.fire = self.ticks(from, now_ms, MAX_TICKS);
                if plan.fire.len() == MAX_TICKS {
                    // The rest in the next pass
                    plan.through_ms = plan.fire.last().copied().unwrap_or(last);
                }
            }
            CatchUp::Latest | CatchUp::Skip => {
                let on_time = now_ms.saturating_sub(ON_TIME.as_millis() as u64);
                let keep =
                    last >= window_start && (self.catch_up == CatchUp::Latest || last >= on_time);
                plan.skipped = missed(through_ms, last - 1, SkipReason::Missed);
                if keep {
                    plan.fire.push(last);
                } else if plan.skipped.len() < MAX_TICKS {
                    plan.skipped.push((last, SkipReason::Missed));
                }
            }
        }
        plan
    }
}

/// What one pass does with one schedule ([`Schedule::plan`]).
struct Plan {
    fire: Vec<u64>,
    skipped: Vec<(u64, SkipReason)>,
    through_ms: u64,
}

/// Resolves the schedules declared on workflows (`declared`: registry entries) with the
/// settings' `configs`. Every problem of every schedule is reported.
pub fn resolve(
    declared: &[&'static WorkflowMeta],
    configs: &BTreeMap<String, ScheduleConfig>,
) -> Result<Vec<Schedule>, Vec<ScheduleError>> {
    let mut names: Vec<&str> = declared
        .iter()
        .filter(|w| w.schedule.is_some())
        .map(|w| w.name)
        .collect();
    names.extend(configs.keys().map(String::as_str));
    names.sort_unstable();
    names.dedup();
    let (mut schedules, mut errors) = (Vec::new(), Vec::new());
    for name in names {
        let code = declared
            .iter()
            .find(|w| w.name == name && w.schedule.is_some());
        match resolve_one(name, code.copied(), configs.get(name)) {
            Ok(schedule) => schedules.push(schedule),
            Err(message) => errors.push(ScheduleError {
                name: name.to_owned(),
                message,
            }),
        }
    }
    if errors.is_empty() {
        Ok(schedules)
    } else {
        Err(errors)
    }
}

fn resolve_one(
    name: &str,
    code: Option<&'static WorkflowMeta>,
    config: Option<&ScheduleConfig>,
) -> Result<Schedule, String> {
    let empty = ScheduleConfig::default();
    let config = config.unwrap_or(&empty);
    crate::store::RunId::from(format!("{name}@2026-01-01T00:00:00Z"))
        .validate()
        .map_err(|e| format!("the name does not make valid run ids: {e}"))?;
    let meta: &'static WorkflowMeta = match (&config.workflow, code) {
        (Some(workflow), _) => find_workflow(workflow).map_err(|e| e.to_string())?,
        (None, Some(meta)) => meta,
        (None, None) => {
            return Err(format!(
                "no workflow declares this schedule, so settings must name one: add `workflow = \"...\"` under [flow.schedules.{name}] (workflows: {})",
                registry::workflows().iter().map(|w| w.name).collect::<Vec<_>>().join(", ")
            ))
        }
    };
    // The declaration applies to its own workflow only
    let spec = code
        .filter(|c| c.name == meta.name)
        .and_then(|c| c.schedule);
    let cron = match (&config.cron, &spec) {
        (Some(cron), _) => cron.clone(),
        (None, Some(spec)) => spec.cron.to_owned(),
        (None, None) => {
            return Err(format!(
            "it has no cron expression: add `cron = \"0 2 * * *\"` under [flow.schedules.{name}]"
        ))
        }
    };
    let parsed =
        parse_cron(&cron).map_err(|e| format!("the cron expression `{cron}` is invalid: {e}"))?;
    let timezone = config
        .timezone
        .clone()
        .or_else(|| spec.map(|s| s.timezone.to_owned()))
        .unwrap_or_else(|| "UTC".to_owned());
    let zone = parse_zone(&timezone)?;
    let input = match (&config.input, &spec) {
        (Some(input), _) => input.clone(),
        (None, Some(spec)) => (spec.input)().map_err(|e| format!("its default input: {e}"))?,
        (None, None) if meta.params.is_empty() => serde_json::Value::Null,
        (None, None) => {
            return Err(format!(
                "workflow `{}` takes input ({}) and declares no schedule with a default, so settings must give it: add `input = {{ ... }}` under [flow.schedules.{name}]",
                meta.name,
                meta.params.join(", ")
            ))
        }
    };
    (meta.check_input)(&input).map_err(|e| e.to_string())?;
    let source = match (code.is_some(), config != &empty) {
        (true, true) => "code + settings",
        (true, false) => "code",
        _ => "settings",
    };
    Ok(Schedule {
        name: name.to_owned(),
        workflow: meta.name.to_owned(),
        cron,
        timezone,
        input,
        enabled: config.enabled.unwrap_or(true),
        catch_up: config
            .catch_up
            .or(spec.map(|s| s.catch_up))
            .unwrap_or_default(),
        catch_up_window: config.catch_up_window.unwrap_or(DEFAULT_CATCH_UP_WINDOW),
        overlap: config
            .overlap
            .or(spec.map(|s| s.overlap))
            .unwrap_or_default(),
        queue: config
            .queue
            .clone()
            .unwrap_or_else(|| DEFAULT_QUEUE.to_owned()),
        source,
        parsed,
        zone,
    })
}

/// One schedule as `schedules list` shows it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ScheduleView {
    /// The schedule's name.
    pub name: String,
    /// The workflow.
    pub workflow: String,
    /// The cron expression.
    pub cron: String,
    /// The time zone.
    pub timezone: String,
    /// `code`, `settings` or `code + settings`.
    pub source: String,
    /// Whether settings enable it.
    pub enabled: bool,
    /// Catch-up policy.
    pub catch_up: CatchUp,
    /// Overlap policy.
    pub overlap: Overlap,
    /// The queue of its runs.
    pub queue: String,
    /// The next tick (ms since the epoch), unless disabled or paused.
    pub next_ms: Option<u64>,
    /// The next tick in the schedule's zone.
    pub next_local: Option<String>,
    /// The pause, if paused.
    pub paused: Option<Pause>,
    /// The last run it fired, and its status (`None` once pruned).
    pub last_run: Option<RunId>,
    /// The last run's status.
    pub last_status: Option<RunStatus>,
    /// Ticks waiting for the running run.
    pub buffered: usize,
    /// Ticks skipped so far.
    pub skipped: u64,
}

/// What a trigger or a backfill did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fired {
    /// Runs created.
    pub created: Vec<RunId>,
    /// Ticks whose run already existed.
    pub existing: Vec<RunId>,
    /// Ticks now waiting for the running run.
    pub buffered: Vec<RunId>,
    /// Ticks skipped because the previous run is unfinished (overlap `skip`).
    pub skipped: Vec<RunId>,
}

impl From<ScheduleOutcome> for Fired {
    fn from(o: ScheduleOutcome) -> Fired {
        Fired {
            created: o.created,
            existing: o.existing,
            buffered: o.buffered,
            skipped: o.skipped_overlap,
        }
    }
}

impl Flow {
    /// Every schedule: those declared on workflows, with the settings' overrides, and those
    /// declared in settings alone. An error names each schedule that does not resolve.
    pub fn schedules(&self) -> Result<Vec<Schedule>, Error> {
        resolve(&registry::workflows(), &self.inner.schedules).map_err(|errors| {
            Error::Schedule(
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })
    }

    /// One schedule by name.
    pub fn schedule(&self, name: &str) -> Result<Schedule, Error> {
        let schedules = self.schedules()?;
        let known: Vec<String> = schedules.iter().map(|s| s.name.clone()).collect();
        schedules
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| Error::UnknownSchedule {
                name: name.to_owned(),
                known,
            })
    }

    /// Fires the due ticks of `schedules` at `now_ms` (a worker's pass): each schedule's ticks
    /// since its record's `through_ms`, by its catch-up policy, as runs on its queue; and any
    /// buffered tick whose predecessor finished. Returns the runs created. A schedule first seen
    /// now starts now. Another worker's pass over the same ticks makes this one a no-op.
    pub async fn fire_due_ticks(
        &self,
        schedules: &[Schedule],
        now_ms: u64,
    ) -> Result<Vec<RunId>, Error> {
        let records = self.schedule_records().await?;
        let mut created = Vec::new();
        for schedule in schedules.iter().filter(|s| s.enabled) {
            let record = records.get(&schedule.name);
            let through = record.map_or(now_ms, |r| r.through_ms);
            let waiting = record.is_some_and(|r| !r.buffered.is_empty());
            let next_due = schedule.next_after(through).is_some_and(|t| t <= now_ms);
            if record.is_some() && !next_due && !waiting {
                continue;
            }
            let paused = record.is_some_and(|r| r.paused.is_some());
            let plan = schedule.plan(through, now_ms, paused);
            let (fire, skipped) = (plan.fire, plan.skipped);
            let new_through = if record.is_none() {
                now_ms
            } else {
                plan.through_ms
            };
            let missed: Vec<u64> = skipped
                .iter()
                .filter(|(_, r)| *r == SkipReason::Missed)
                .map(|(t, _)| *t)
                .collect();
            if let (Some((first, reason)), Some((last, _))) = (skipped.first(), skipped.last()) {
                tracing::warn!(
                    schedule = %schedule.name,
                    ticks = skipped.len(),
                    first = %format_tick(*first),
                    last = %format_tick(*last),
                    reason = reason.as_str(),
                    "schedule ticks were skipped"
                );
            }
            // Ticks caught up together run one after another (or side by side with `allow`):
            // `skip` would keep only the first of the ticks `catch_up = "all"` asked for
            let overlap = match schedule.overlap {
                Overlap::Skip | Overlap::BufferOne if fire.len() > 1 => Overlap::BufferAll,
                overlap => overlap,
            };
            let ticks = fire.clone();
            let outcome = self
                .inner
                .store
                .schedule(ScheduleWrite::Fire(ScheduleFire {
                    name: schedule.name.clone(),
                    advance: Some((record.map(|r| r.through_ms), new_through)),
                    skipped,
                    runs: fire
                        .into_iter()
                        .map(|t| (t, schedule.run_of(t, now_ms)))
                        .collect(),
                    overlap,
                    now_ms,
                }))
                .await?;
            log_outcome(schedule, &outcome);
            if !outcome.stale {
                self.alert_missed(schedule, &missed).await;
            }
            for tick in ticks {
                if outcome.created.contains(&tick_run_id(&schedule.name, tick)) {
                    crate::metrics::schedule_fired(&schedule.name, now_ms.saturating_sub(tick));
                }
            }
            created.extend(outcome.created);
        }
        if !created.is_empty() {
            self.inner.queue_changed.notify_waiters();
        }
        Ok(created)
    }

    /// Opens a missed-tick alert for ticks of `schedule` the catch-up policy or window left
    /// out, once per pass that left some out (the pass's record move is the once: a second
    /// worker's pass over the same ticks is stale and gets here with none). An alert that
    /// cannot be stored is logged; the schedule goes on.
    async fn alert_missed(&self, schedule: &Schedule, missed: &[u64]) {
        let (Some(first), Some(last)) = (missed.first(), missed.last()) else {
            return;
        };
        let error = format!(
            "schedule {} missed {} tick(s) from {} to {} while no worker ran (catch_up = \"{}\", window {}); they did not run",
            schedule.name,
            missed.len(),
            schedule.local(*first),
            schedule.local(*last),
            schedule.catch_up.as_str(),
            humantime::format_duration(schedule.catch_up_window),
        );
        let write = crate::store::Write::RunAlert(crate::store::RunAlert {
            kind: crate::store::AlertKind::MissedTick,
            workflow: schedule.workflow.clone(),
            run_id: tick_run_id(&schedule.name, *first),
            trace_id: new_trace_id(),
            error: Some(error),
            detail: Some(crate::store::AlertDetail::MissedTicks {
                schedule: schedule.name.clone(),
                count: missed.len() as u64,
                first_ms: *first,
                last_ms: *last,
            }),
            sinks: self.inner.alerts.names(),
            at_ms: crate::store::now_ms(),
        });
        match self.inner.store.commit(vec![write]).await {
            Ok(()) => self.inner.alerts_changed.notify_one(),
            Err(e) => {
                tracing::error!(schedule = %schedule.name, error = %e, "could not store the missed-tick alert")
            }
        }
    }

    /// When the next tick of any enabled schedule is due, after `now_ms`.
    pub fn next_tick(&self, schedules: &[Schedule], now_ms: u64) -> Option<u64> {
        schedules
            .iter()
            .filter(|s| s.enabled)
            .filter_map(|s| s.next_after(now_ms))
            .min()
    }

    /// Fires one run of schedule `name` now (`schedules trigger`), with its tick set to now,
    /// by the schedule's overlap policy unless `overlap` is given.
    pub async fn trigger_schedule(
        &self,
        name: &str,
        overlap: Option<Overlap>,
    ) -> Result<Fired, Error> {
        let schedule = self.schedule(name)?;
        let now = crate::store::now_ms();
        self.fire_ticks(&schedule, vec![now], overlap.unwrap_or(schedule.overlap))
            .await
    }

    /// Fires the ticks of schedule `name` in `[from_ms, to_ms]` (`schedules backfill`), each
    /// with its tick's run id, so a repeated backfill adds nothing. Without `overlap` the ticks
    /// run one after another in tick order (`buffer_all`): the schedule's own `skip` would
    /// drop every backfilled tick but the first.
    pub async fn backfill_schedule(
        &self,
        name: &str,
        from_ms: u64,
        to_ms: u64,
        overlap: Option<Overlap>,
    ) -> Result<Fired, Error> {
        let schedule = self.schedule(name)?;
        if to_ms < from_ms {
            return Err(Error::Schedule(format!(
                "the backfill range ends ({}) before it starts ({})",
                format_tick(to_ms),
                format_tick(from_ms)
            )));
        }
        let ticks = schedule.ticks(from_ms.saturating_sub(1), to_ms, MAX_TICKS + 1);
        if ticks.len() > MAX_TICKS {
            return Err(Error::Schedule(format!(
                "the range holds more than {MAX_TICKS} ticks of `{}`; backfill a smaller range at a time",
                schedule.cron
            )));
        }
        self.fire_ticks(&schedule, ticks, overlap.unwrap_or(Overlap::BufferAll))
            .await
    }

    async fn fire_ticks(
        &self,
        schedule: &Schedule,
        ticks: Vec<u64>,
        overlap: Overlap,
    ) -> Result<Fired, Error> {
        let now = crate::store::now_ms();
        let outcome = self
            .inner
            .store
            .schedule(ScheduleWrite::Fire(ScheduleFire {
                name: schedule.name.clone(),
                advance: None,
                skipped: Vec::new(),
                runs: ticks
                    .into_iter()
                    .map(|t| (t, schedule.run_of(t, now)))
                    .collect(),
                overlap,
                now_ms: now,
            }))
            .await?;
        log_outcome(schedule, &outcome);
        if !outcome.created.is_empty() {
            self.inner.queue_changed.notify_waiters();
        }
        Ok(outcome.into())
    }

    /// Pauses schedule `name` (no tick fires until it is resumed; the ticks meanwhile are
    /// skipped, not caught up), with an operator's note.
    pub async fn pause_schedule(&self, name: &str, note: Option<String>) -> Result<(), Error> {
        let schedule = self.schedule(name)?;
        let now = crate::store::now_ms();
        self.inner
            .store
            .schedule(ScheduleWrite::Pause {
                name: schedule.name,
                pause: Some(Pause { note, at_ms: now }),
                now_ms: now,
            })
            .await?;
        Ok(())
    }

    /// Resumes schedule `name`: its next tick after now fires.
    pub async fn resume_schedule(&self, name: &str) -> Result<(), Error> {
        let schedule = self.schedule(name)?;
        let now = crate::store::now_ms();
        self.inner
            .store
            .schedule(ScheduleWrite::Pause {
                name: schedule.name,
                pause: None,
                now_ms: now,
            })
            .await?;
        Ok(())
    }

    /// Every schedule with its stored state, for `schedules list`.
    pub async fn schedule_views(&self) -> Result<Vec<ScheduleView>, Error> {
        let schedules = self.schedules()?;
        let records = self.schedule_records().await?;
        let now = crate::store::now_ms();
        let mut views = Vec::new();
        for s in schedules {
            let record = records.get(&s.name);
            let last_status = match record.and_then(|r| r.last_run.as_ref()) {
                Some(id) => self.inner.store.run(id).await?.map(|r| r.status),
                None => None,
            };
            views.push(ScheduleView::of(s, record, last_status, now));
        }
        Ok(views)
    }

    /// The stored schedule records, by name.
    async fn schedule_records(&self) -> Result<BTreeMap<String, ScheduleRecord>, Error> {
        Ok(self
            .inner
            .store
            .schedules()
            .await?
            .into_iter()
            .map(|r| (r.name.clone(), r))
            .collect())
    }
}

impl ScheduleView {
    /// `schedule` as `schedules list` shows it at `now_ms`, with its stored `record` (none
    /// before a worker first saw it) and the status of its last run.
    pub fn of(
        schedule: Schedule,
        record: Option<&ScheduleRecord>,
        last_status: Option<RunStatus>,
        now_ms: u64,
    ) -> ScheduleView {
        let s = schedule;
        let paused = record.and_then(|r| r.paused.clone());
        let next_ms = (s.enabled && paused.is_none())
            .then(|| s.next_after(now_ms))
            .flatten();
        ScheduleView {
            next_local: next_ms.map(|t| s.local(t)),
            name: s.name,
            workflow: s.workflow,
            cron: s.cron,
            timezone: s.timezone,
            source: s.source.to_owned(),
            enabled: s.enabled,
            catch_up: s.catch_up,
            overlap: s.overlap,
            queue: s.queue,
            next_ms,
            paused,
            last_run: record.and_then(|r| r.last_run.clone()),
            last_status,
            buffered: record.map_or(0, |r| r.buffered.len()),
            skipped: record.map_or(0, |r| r.skipped),
        }
    }
}

fn log_outcome(schedule: &Schedule, outcome: &ScheduleOutcome) {
    for id in &outcome.created {
        tracing::info!(schedule = %schedule.name, run_id = %id, "schedule fired a run");
    }
    for id in &outcome.buffered {
        tracing::info!(schedule = %schedule.name, run_id = %id, "schedule tick waits for the previous run (overlap)");
    }
    for id in &outcome.skipped_overlap {
        tracing::warn!(schedule = %schedule.name, run_id = %id, overlap = schedule.overlap.as_str(), "schedule tick skipped: the previous run has not finished");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(cron: &str, zone: &str) -> Schedule {
        Schedule {
            name: "s".into(),
            workflow: "w".into(),
            cron: cron.into(),
            timezone: zone.into(),
            input: serde_json::Value::Null,
            enabled: true,
            catch_up: CatchUp::Latest,
            catch_up_window: DEFAULT_CATCH_UP_WINDOW,
            overlap: Overlap::Skip,
            queue: "default".into(),
            source: "code",
            parsed: parse_cron(cron).expect("cron"),
            zone: parse_zone(zone).expect("zone"),
        }
    }

    fn ms(rfc3339: &str) -> u64 {
        rfc3339
            .parse::<jiff::Timestamp>()
            .expect("timestamp")
            .as_millisecond() as u64
    }

    #[test]
    fn daylight_saving_neither_skips_nor_doubles_a_daily_tick() {
        let s = schedule("30 2 * * *", "Europe/Berlin");
        // Spring forward, 2026-03-29: 02:30 does not exist; the tick is at 03:00 CEST
        let ticks = s.ticks(ms("2026-03-27T12:00:00Z"), ms("2026-03-31T12:00:00Z"), 10);
        let ids: Vec<String> = ticks.iter().map(|t| format_tick(*t)).collect();
        assert_eq!(
            ids,
            [
                "2026-03-28T01:30:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-30T00:30:00Z",
                "2026-03-31T00:30:00Z"
            ]
        );
        // Fall back, 2026-10-25: 02:30 happens twice; the tick fires once
        let ticks = s.ticks(ms("2026-10-23T12:00:00Z"), ms("2026-10-27T12:00:00Z"), 10);
        let ids: Vec<String> = ticks.iter().map(|t| format_tick(*t)).collect();
        assert_eq!(
            ids,
            [
                "2026-10-24T00:30:00Z",
                "2026-10-25T00:30:00Z",
                "2026-10-26T01:30:00Z",
                "2026-10-27T01:30:00Z"
            ]
        );
    }

    #[test]
    fn a_long_outage_fires_one_latest_tick_without_walking_every_missed_one() {
        let mut s = schedule("* * * * * *", "UTC");
        let through = ms("2026-11-20T00:00:00Z");
        let now = ms("2026-11-28T00:00:00.500Z");
        let plan = s.plan(through, now, false);
        assert_eq!(plan.fire, vec![ms("2026-11-28T00:00:00Z")]);
        assert_eq!(plan.through_ms, ms("2026-11-28T00:00:00Z"));
        assert_eq!(plan.skipped.len(), MAX_TICKS, "listed up to the cap");
        // `all` fires the window's ticks, MAX_TICKS a pass, and goes on from there
        s.catch_up = CatchUp::All;
        let plan = s.plan(through, now, false);
        assert_eq!(plan.fire.len(), MAX_TICKS);
        assert_eq!(
            plan.fire[0],
            ms("2026-11-27T00:00:01Z"),
            "the window's first tick"
        );
        assert_eq!(plan.through_ms, *plan.fire.last().expect("ticks"));
        let next = s.plan(plan.through_ms, now, false);
        assert_eq!(next.fire[0], plan.through_ms + 1000);
        assert!(next.skipped.is_empty());
        // Paused: every tick skipped, the record moves to the last
        let plan = s.plan(through, now, true);
        assert!(plan.fire.is_empty());
        assert_eq!(plan.through_ms, ms("2026-11-28T00:00:00Z"));
    }

    #[test]
    fn catch_up_policies_choose_among_missed_ticks() {
        let mut s = schedule("0 * * * *", "UTC");
        let through = ms("2026-11-28T00:00:00Z");
        let now = ms("2026-11-28T05:00:30Z");
        s.catch_up = CatchUp::All;
        let Plan { fire, skipped, .. } = s.plan(through, now, false);
        assert_eq!((fire.len(), skipped.len()), (5, 0));
        s.catch_up = CatchUp::Latest;
        let Plan { fire, skipped, .. } = s.plan(through, now, false);
        assert_eq!(fire, vec![ms("2026-11-28T05:00:00Z")]);
        assert_eq!(skipped.len(), 4);
        s.catch_up = CatchUp::Skip;
        // The 05:00 tick is 30 s old: on time, it fires; the rest were missed
        let Plan { fire, skipped, .. } = s.plan(through, now, false);
        assert_eq!((fire.len(), skipped.len()), (1, 4));
        let Plan { fire, skipped, .. } = s.plan(through, now + 120_000, false);
        assert_eq!((fire.len(), skipped.len()), (0, 5));
        // Outside the window, nothing is caught up
        s.catch_up = CatchUp::All;
        s.catch_up_window = Duration::from_secs(2 * 3600 + 60);
        let Plan { fire, skipped, .. } = s.plan(through, now, false);
        assert_eq!((fire.len(), skipped.len()), (3, 2));
    }
}

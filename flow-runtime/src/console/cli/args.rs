//! The command line, declared with clap: global flags, subcommands and their `--help` text.

use crate::console::settings::LogFormat;
use crate::engine::registry::Overlap;
use crate::store::RunStatus;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

pub(crate) const EXIT_CODES: &str = "\
EXIT CODES:
    0  success
    1  the workflow failed or was cancelled
    2  usage error: bad arguments, malformed JSON input, unknown workflow, run, step or schedule
    3  configuration error: invalid settings, schedules included (every bad field is listed)
    4  the run needs attention: an at_most_once step's outcome is unknown
    5  store error: the store is locked, corrupt, full or unreadable
  130  stopped by SIGINT (143: SIGTERM); the run is left resumable";

#[derive(Debug, Parser)]
pub(crate) struct Cli {
    /// Settings file (TOML, with [flow] and [app] tables) [default: flow.toml if present]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Store file, overriding the settings' flow.store
    #[arg(long, global = true, value_name = "PATH")]
    pub store: Option<PathBuf>,
    /// Log format, overriding the settings' flow.log_format
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// More log output (-v debug, -vv trace); RUST_LOG wins over both
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less log output (-q warnings, -qq errors only)
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,
    /// Output of the command: a table for people, JSON for scripts
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Without a command, the help is printed.
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a workflow and wait for its outcome
    ///
    /// A run id that already finished returns its stored outcome and executes nothing; an
    /// unfinished one resumes.
    Run {
        /// The workflow's name (see `runbook`)
        workflow: String,
        /// Input as JSON: the value of a one-parameter workflow, an object keyed by parameter
        /// name otherwise
        #[arg(long, conflicts_with = "input_file")]
        input: Option<String>,
        /// Read the JSON input from a file (`-` for standard input)
        #[arg(long, value_name = "FILE")]
        input_file: Option<PathBuf>,
        /// The run id, the idempotency key of the whole run [default: a new UUID]
        #[arg(long)]
        id: Option<String>,
        /// Execute read_only steps, skip every other step and print the plan; changes nothing
        #[arg(long)]
        dry_run: bool,
        /// Staged rollout: fan-outs process only the units whose key hashes into this share
        /// (such as `5%`), then the run pauses; run the same id again with more (`25%`, `100%`)
        #[arg(long, value_name = "PERCENT", value_parser = parse_percent)]
        rollout: Option<f64>,
        /// If the run id exists unfinished with another input, continue it with its stored
        /// input instead of refusing
        #[arg(long)]
        use_stored_input: bool,
        /// Make the run part of the caller's trace: its W3C traceparent
        /// (`00-<trace id>-<parent span id>-<flags>`); the run keeps that trace id and, with
        /// OpenTelemetry export on, its spans are children of that span
        #[arg(long, env = "TRACEPARENT", value_name = "TRACEPARENT", value_parser = parse_traceparent)]
        traceparent: Option<String>,
    },
    /// Enqueue a run for a worker and print its id at once
    ///
    /// The run id deduplicates: enqueueing an id that exists prints that run and enqueues
    /// nothing. The queue must be declared in settings ([flow.queues.NAME]); `default` always
    /// exists.
    Enqueue {
        /// The workflow's name (see `runbook`)
        workflow: String,
        /// Input as JSON: the value of a one-parameter workflow, an object keyed by parameter
        /// name otherwise
        #[arg(long, conflicts_with = "input_file")]
        input: Option<String>,
        /// Read the JSON input from a file (`-` for standard input)
        #[arg(long, value_name = "FILE")]
        input_file: Option<PathBuf>,
        /// The run id, the idempotency key of the whole run [default: a new UUID]
        #[arg(long)]
        id: Option<String>,
        /// The queue [default: default]
        #[arg(long)]
        queue: Option<String>,
        /// Lower runs first (as in DBOS and Temporal); negative values jump ahead
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        priority: i32,
        /// Start no sooner than this from now, such as `10m` or `1h 30m`
        #[arg(long, value_parser = parse_duration, conflicts_with = "at")]
        delay: Option<std::time::Duration>,
        /// Start no sooner than this time, RFC 3339 (`2026-11-29T02:00:00Z`)
        #[arg(long, value_parser = parse_time)]
        at: Option<std::time::SystemTime>,
        /// Runs with the same key share the queue's per-key concurrency limit
        #[arg(long, value_name = "KEY")]
        concurrency_key: Option<String>,
        /// Make the run part of the caller's trace: its W3C traceparent
        /// (`00-<trace id>-<parent span id>-<flags>`); the run keeps that trace id and, with
        /// OpenTelemetry export on, its spans are children of that span
        #[arg(long, env = "TRACEPARENT", value_name = "TRACEPARENT", value_parser = parse_traceparent)]
        traceparent: Option<String>,
    },
    /// Execute queued runs, wake sleeping runs when due, resume runs whose process died
    ///
    /// Runs until SIGTERM or SIGINT: then it stops taking runs, lets the steps in flight
    /// finish (flow.shutdown_grace), leaves the rest resumable for the next worker, and exits 0.
    Worker {
        /// At most this many runs execute at once in this worker
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        concurrency: u32,
        /// Serve only these queues (comma-separated) [default: every declared queue and `default`]
        #[arg(long, value_delimiter = ',')]
        queues: Vec<String>,
    },
    /// Serve the web console (runs, timelines, actions) without a worker, until SIGTERM or SIGINT
    ///
    /// Listens on 127.0.0.1 unless --listen or flow.ui.listen say otherwise; any other address
    /// requires flow.ui.token, which every request must then carry as `Authorization: Bearer`.
    /// A worker serves the same console when flow.ui.listen is set.
    Ui {
        /// The port, on the address of flow.ui.listen or 127.0.0.1 [default: 8080]
        #[arg(long)]
        port: Option<u16>,
        /// The address and port, such as `0.0.0.0:8080`
        #[arg(long, conflicts_with = "port")]
        listen: Option<std::net::SocketAddr>,
    },
    /// List, inspect and operate runs in the store
    #[command(subcommand)]
    Runs(RunsCommand),
    /// List alerts (repeated failures, runs that need attention, runs past their max
    /// duration, tripped error budgets) and their delivery
    #[command(subcommand)]
    Alerts(AlertsCommand),
    /// List, pause, resume, trigger and backfill schedules (cron that fires runs)
    ///
    /// Schedules are declared on workflows (#[workflow(schedule = "0 2 * * *")]) or in settings
    /// ([flow.schedules.NAME]); a worker fires their ticks, each as the run
    /// `NAME@<tick in UTC>`, so a tick runs once however many workers there are.
    #[command(subcommand)]
    Schedules(SchedulesCommand),
    /// Per workflow and step: runs, success rate, errors by class, p50/p95/p99 duration and
    /// retries; with --compare, two windows or two app versions side by side with what got
    /// worse marked
    #[command(after_help = "\
EXAMPLES:
    app stats                                   # runs created in the last 24 hours
    app stats --since 7d --workflow sync_records
    app stats --from 2026-11-20 --to 2026-11-27 --output json
    app stats --compare --before 2026-11-20..2026-11-27 --after 2026-11-27..
    app stats --compare --before-version 1.4.2 --after-version 1.5.0
    app stats --compare --before-version 1.4.2 --after-version 1.5.0 --after 2026-11-27..

A window A..B holds the runs created from A (included) to B (excluded); either end may be left
out. Times are RFC 3339 (`2026-11-27T09:30:00Z`, `+01:00`) or dates (midnight UTC). A run's
version is the app version that last executed it (`runs show` prints it): the package version,
or `flow.app_version` in settings.")]
    Stats(StatsArgs),
    /// Print the Prometheus metrics of the worker that owns the store, through its socket
    ///
    /// Runs started and finished, step durations, attempts and retries by error class, queue
    /// depth, schedule lag, alerts fired and store commits, in the Prometheus text format.
    /// Scrapers use the worker's HTTP listener instead (flow.metrics.listen =
    /// "127.0.0.1:9464"). With --output json, one object per sample (name, type, help,
    /// labels, value).
    Metrics,
    /// Print the operator's runbook for this binary
    Runbook {
        #[arg(long, value_enum, default_value_t = RunbookFormat::Markdown)]
        format: RunbookFormat,
    },
    /// Print the effective settings, secrets redacted, with the source of each value
    CheckConfig,
    /// Apply the store's schema migrations (ahead of a deploy) and print its schema version
    Migrate,
    /// Print a shell completion script
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
}

fn parse_time(s: &str) -> Result<std::time::SystemTime, String> {
    humantime::parse_rfc3339_weak(s)
        .map_err(|e| format!("expected a time such as `2026-11-29T02:00:00Z` ({e})"))
}

/// A share of the units: `N` or `N%`, N a plain decimal (`5`, `12.5`) from 0 to 100. Nothing
/// else: no spaces, signs, exponents or a second `%`, so a typo is refused, not reinterpreted.
fn parse_percent(s: &str) -> Result<f64, String> {
    crate::console::settings::parse_percent(s)
}

impl Command {
    /// Whether the command may execute workflow code (and so needs the app's setup).
    pub fn executes_workflows(&self) -> bool {
        match self {
            // `ui` resumes runs for its Resume button when no worker owns the store
            Command::Run { .. } | Command::Worker { .. } | Command::Ui { .. } => true,
            Command::Runs(runs) => matches!(
                runs,
                RunsCommand::Resume { .. }
                    | RunsCommand::RetryFailed { .. }
                    | RunsCommand::RetryUnit { .. }
                    | RunsCommand::Fork { .. }
            ),
            Command::Runbook { .. }
            | Command::Stats(_)
            | Command::Metrics
            | Command::Alerts(_)
            | Command::Schedules(_)
            | Command::CheckConfig
            | Command::Migrate
            | Command::Completions { .. }
            | Command::Enqueue { .. } => false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum RunbookFormat {
    Markdown,
    Json,
}

/// `--status` takes the store's own statuses, by their kebab-case names.
impl ValueEnum for RunStatus {
    fn value_variants<'a>() -> &'a [Self] {
        &RunStatus::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum AlertsCommand {
    /// List alerts, newest first, with each sink's delivery state (secrets are never shown)
    List {
        /// Only alerts with a delivery still pending
        #[arg(long)]
        pending: bool,
        #[arg(long)]
        workflow: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum SchedulesCommand {
    /// List schedules: cron and zone, next fire time, paused or not, last run and its status
    #[command(after_help = "\
EXAMPLES:
    app schedules list
    app schedules list --json          # the same as --output json")]
    List {
        /// Print JSON (the same as --output json)
        #[arg(long)]
        json: bool,
    },
    /// Pause a schedule: no tick fires until it is resumed, and the ticks meanwhile are skipped
    #[command(after_help = "\
EXAMPLES:
    app schedules pause nightly --note \"upstream migration until Friday, ask #data\"")]
    Pause {
        /// The schedule (see `schedules list`)
        name: String,
        /// Why, for the other operators: shown by `schedules list`
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
    },
    /// Resume a paused schedule: its next tick fires; the ticks of the pause are not caught up
    /// (backfill them if they are needed)
    #[command(after_help = "\
EXAMPLES:
    app schedules resume nightly")]
    Resume {
        /// The schedule (see `schedules list`)
        name: String,
    },
    /// Fire one run of a schedule now, with the schedule's input and queue
    ///
    /// The run's id is `NAME@<now in UTC>` and a worker executes it. While the schedule's
    /// previous run has not finished, the overlap policy decides: `skip` creates nothing,
    /// `buffer_one`/`buffer_all` queue it behind that run, `allow` runs it beside it.
    #[command(after_help = "\
EXAMPLES:
    app schedules trigger nightly
    app schedules trigger nightly --overlap allow   # even while the last run still runs")]
    Trigger {
        /// The schedule (see `schedules list`)
        name: String,
        /// The overlap policy for this run [default: the schedule's]
        #[arg(long, value_name = "POLICY")]
        overlap: Option<Overlap>,
    },
    /// Create the runs of the ticks in a past range, each with its tick's id
    ///
    /// Both ends are included. A tick whose run exists (an earlier backfill, or the worker) is
    /// left as it is, so a repeated backfill adds nothing. The ticks run one after another in
    /// tick order (`buffer_all`: each waits for the run before it); `--overlap allow` runs them
    /// side by side, `skip` creates only the first while the schedule's last run is unfinished.
    #[command(after_help = "\
TIMES:
    RFC 3339 (2026-11-01T00:00:00Z, 2026-11-01T02:00:00+01:00) or a date (2026-11-01),
    which means midnight UTC.

EXAMPLES:
    app schedules backfill nightly --from 2026-11-01 --to 2026-11-07
    app schedules backfill hourly --from 2026-11-28T00:00:00Z --to 2026-11-28T12:00:00Z --overlap allow")]
    Backfill {
        /// The schedule (see `schedules list`)
        name: String,
        /// The first instant of the range (RFC 3339, or a date meaning midnight UTC)
        #[arg(long, value_name = "TIME", value_parser = parse_instant)]
        from: u64,
        /// The last instant of the range, included (RFC 3339, or a date meaning midnight UTC)
        #[arg(long, value_name = "TIME", value_parser = parse_instant)]
        to: u64,
        /// The overlap policy between these runs [default: buffer_all, one after another]
        #[arg(long, value_name = "POLICY")]
        overlap: Option<Overlap>,
    },
}

/// The examples of `command`'s subcommands name the binary: `    app schedules ...` becomes
/// `    sync_records schedules ...`.
pub(crate) fn name_examples(command: clap::Command, bin: &str) -> clap::Command {
    let names: Vec<String> = command
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .collect();
    names.iter().fold(command, |command, name| {
        command.mut_subcommand(name, |c| match c.get_after_help() {
            Some(help) => {
                let text = help.to_string().replace("    app ", &format!("    {bin} "));
                c.after_help(text)
            }
            None => c,
        })
    })
}

/// `--overlap` takes the policies by their names in settings and attributes.
impl ValueEnum for Overlap {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            Overlap::Skip,
            Overlap::BufferOne,
            Overlap::BufferAll,
            Overlap::Allow,
        ]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let help = match self {
            Overlap::Skip => "create nothing while the previous run has not finished",
            Overlap::BufferOne => "one tick waits for the previous run; later ones are skipped",
            Overlap::BufferAll => "every tick waits, and they run one after another",
            Overlap::Allow => "run beside the previous run",
        };
        Some(clap::builder::PossibleValue::new(self.as_str()).help(help))
    }
}

/// A time for `schedules backfill`, as ms since the epoch: RFC 3339 with an offset, or a date,
/// meaning midnight UTC.
pub(crate) fn parse_instant(s: &str) -> Result<u64, String> {
    let hint = "expected an RFC 3339 time such as `2026-11-01T00:00:00Z` (or with an offset, `+01:00`), or a date such as `2026-11-01` (midnight UTC)";
    let text = s.trim();
    // A date alone: jiff would also read the date out of a full time, and drop the rest
    let date_only = text.len() == 10 && text.bytes().all(|b| b.is_ascii_digit() || b == b'-');
    let instant = if date_only {
        let date = text
            .parse::<jiff::civil::Date>()
            .map_err(|e| format!("{hint} ({e})"))?;
        date.to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp())
            .map_err(|e| format!("{hint} ({e})"))?
    } else {
        text.parse::<jiff::Timestamp>()
            .map_err(|e| format!("{hint} ({e})"))?
    };
    u64::try_from(instant.as_millisecond())
        .map_err(|_| format!("{hint}; times before 1970 have no ticks"))
}

/// `stats`: which runs, and when a change is marked as worse.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("sides").args(["before", "before_version", "before_rollout"]).multiple(true)))]
pub(crate) struct StatsArgs {
    /// Runs created this long ago or later, such as `24h`, `7d`
    #[arg(long, value_parser = parse_duration, conflicts_with_all = ["from", "to", "compare"])]
    pub since: Option<std::time::Duration>,
    /// Runs created at or after this time [default: 24 hours ago, unless --to is given]
    #[arg(long, value_parser = parse_instant, conflicts_with = "compare")]
    pub from: Option<u64>,
    /// Runs created before this time
    #[arg(long, value_parser = parse_instant, conflicts_with = "compare")]
    pub to: Option<u64>,
    /// Only this workflow
    #[arg(long)]
    pub workflow: Option<String>,
    /// Only runs of this app version
    #[arg(long, value_name = "VERSION", conflicts_with = "compare")]
    pub app_version: Option<String>,
    /// Compare two sides: the --before window with the --after window, the --before-rollout
    /// stage with the --after-rollout stage, the
    /// --before-version with the --after-version, or both
    #[arg(long, requires = "sides")]
    pub compare: bool,
    /// The window to compare against, `A..B` (`2026-11-20..2026-11-27`); with versions, a
    /// window narrows its side (every run otherwise)
    #[arg(long, value_parser = parse_window, requires = "compare", value_name = "A..B")]
    pub before: Option<(Option<u64>, Option<u64>)>,
    /// The window under judgement, `C..D` or `C..` (until now)
    #[arg(long, value_parser = parse_window, requires = "compare", value_name = "C..D")]
    pub after: Option<(Option<u64>, Option<u64>)>,
    /// The app version to compare against (runs it executed)
    #[arg(long, requires_all = ["compare", "after_version"], value_name = "VERSION")]
    pub before_version: Option<String>,
    /// The app version under judgement
    #[arg(long, requires_all = ["compare", "before_version"], value_name = "VERSION")]
    pub after_version: Option<String>,
    /// The rollout stage to compare against, as the share of unit keys `A..B` in percent:
    /// `0..5` is what `run --rollout 5%` processed; only units of fan-outs and their steps
    #[arg(long, value_parser = parse_stage, requires_all = ["compare", "after_rollout"], value_name = "A..B")]
    pub before_rollout: Option<(f64, f64)>,
    /// The rollout stage under judgement, such as `5..25` (what `--rollout 25%` added)
    #[arg(long, value_parser = parse_stage, requires_all = ["compare", "before_rollout"], value_name = "C..D")]
    pub after_rollout: Option<(f64, f64)>,
    /// Mark a p95 duration that grew by more than this share [default: flow.stats.latency_threshold, 20%]
    #[arg(long, value_parser = parse_percent, value_name = "P%")]
    pub latency_threshold: Option<f64>,
    /// ... and by at least this much, so that 2 ms becoming 3 ms is not marked [default: flow.stats.min_change, 10ms]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub min_change: Option<std::time::Duration>,
    /// Mark an error rate that grew by more than this many points [default: flow.stats.error_threshold, 5%]
    #[arg(long, value_parser = parse_percent, value_name = "P%")]
    pub error_threshold: Option<f64>,
}

/// A rollout stage `A..B` in percent (`0..5`, `5%..25%`), A below B.
fn parse_stage(s: &str) -> Result<(f64, f64), String> {
    let hint = "expected a rollout stage `A..B` in percent, such as `0..5` (what `--rollout 5%` processed) or `5..25` (what `--rollout 25%` added)";
    let (from, to) = s.split_once("..").ok_or(hint)?;
    let from = parse_percent(from.trim()).map_err(|e| format!("{hint}: {e}"))?;
    let to = parse_percent(to.trim()).map_err(|e| format!("{hint}: {e}"))?;
    if from >= to {
        return Err(format!("{hint}; `{s}` ends before it starts"));
    }
    Ok((from, to))
}

/// A window `A..B`, either end optional, as ms since the epoch.
pub(crate) fn parse_window(s: &str) -> Result<(Option<u64>, Option<u64>), String> {
    let Some((from, to)) = s.split_once("..") else {
        return Err("expected a window `A..B`, such as `2026-11-20..2026-11-27` or `2026-11-27T09:00:00Z..` (until now)".to_owned());
    };
    let end = |t: &str| {
        let t = t.trim();
        (!t.is_empty()).then(|| parse_instant(t)).transpose()
    };
    let (from, to) = (end(from)?, end(to)?);
    if let (Some(a), Some(b)) = (from, to) {
        if a >= b {
            return Err(
                "the window ends before it starts: write the earlier time first".to_owned(),
            );
        }
    }
    Ok((from, to))
}

#[derive(Debug, Subcommand)]
pub(crate) enum RunsCommand {
    /// List runs, newest first
    List {
        #[arg(long, value_enum)]
        status: Option<RunStatus>,
        #[arg(long)]
        workflow: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show a run: its steps with status, attempts, durations and errors, and what to do next
    Show { id: String },
    /// Resume an interrupted or failed run: completed steps replay, the rest execute
    Resume { id: String },
    /// Resume failed runs: one run by id (only its failed and unfinished units execute), or
    /// every failed run (of one workflow)
    RetryFailed {
        /// The run [default: every failed run]
        id: Option<String>,
        #[arg(long, conflicts_with = "id")]
        workflow: Option<String>,
    },
    /// Re-execute one unit of a run's fan-out, by its key; the other units are left as they are
    RetryUnit {
        id: String,
        /// The unit's key (see `runs show`)
        #[arg(long)]
        unit: String,
    },
    /// Cancel a run; a running run stops at its next step boundary
    Cancel { id: String },
    /// Start a new run that reuses the checkpoints taken before a step, and runs from there
    Fork {
        id: String,
        /// The step to run again (full name or function name), and everything after it
        #[arg(long)]
        from_step: String,
        /// The new run's id [default: a new UUID]
        #[arg(long)]
        new_id: Option<String>,
    },
    /// Settle an at_most_once step whose outcome is unknown
    Resolve {
        id: String,
        /// The step's key (see `runs show`)
        #[arg(long)]
        step: String,
        /// Its effect happened: record it as done
        #[arg(long, conflicts_with = "rerun", required_unless_present = "rerun")]
        done: bool,
        /// With --done: the step's output as JSON [default: null]
        #[arg(long, requires = "done", value_name = "JSON")]
        step_output: Option<String>,
        /// Its effect did not happen: let it run again on resume
        #[arg(long)]
        rerun: bool,
    },
    /// Delete finished runs older than a retention, with their steps
    ///
    /// Deletes succeeded, failed and cancelled runs whose last change is older than
    /// --older-than, or, without it, than the settings' flow.retention for their status.
    /// Queued, running, sleeping, paused and needs-attention runs are never deleted. Starting a
    /// deleted run's id again executes the workflow anew.
    Prune {
        /// Delete runs last changed longer ago than this, such as `30d`, `12h` or `0s`
        /// [default: the settings' flow.retention]
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        older_than: Option<std::time::Duration>,
        /// Only runs with this status [default: every finished status]
        #[arg(long, value_enum)]
        status: Option<FinishedStatus>,
        /// Count what would be deleted and delete nothing
        #[arg(long)]
        dry_run: bool,
    },
}

/// The statuses `runs prune` can delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum FinishedStatus {
    Succeeded,
    Failed,
    Cancelled,
}

impl From<FinishedStatus> for RunStatus {
    fn from(status: FinishedStatus) -> RunStatus {
        match status {
            FinishedStatus::Succeeded => RunStatus::Succeeded,
            FinishedStatus::Failed => RunStatus::Failed,
            FinishedStatus::Cancelled => RunStatus::Cancelled,
        }
    }
}

/// A duration in humantime's grammar, as in the settings.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("expected a duration such as `30d`, `12h`, `90min` or `0s` ({e})"))
}

/// A W3C traceparent, normalized (lowercase flags `00` or `01`).
fn parse_traceparent(value: &str) -> Result<String, String> {
    crate::trace::TraceParent::parse(value).map(|parent| parent.to_string())
}

#[cfg(test)]
mod tests {
    use super::{parse_instant, parse_percent};

    #[test]
    fn a_backfill_time_is_rfc3339_with_an_offset_or_a_date_at_midnight_utc() {
        for (text, ms) in [
            ("2026-11-01", 1_793_491_200_000),
            ("2026-11-01T00:00:00Z", 1_793_491_200_000),
            ("2026-11-01T01:00:00+01:00", 1_793_491_200_000),
            ("2026-11-01T00:00:00.250Z", 1_793_491_200_250),
            ("1970-01-01", 0),
        ] {
            assert_eq!(parse_instant(text), Ok(ms), "{text}");
        }
        // A time without offset is ambiguous; a date with a time part is a time
        for text in [
            "2026-11-01T00:00:00",
            "2026-11-01 02:00",
            "yesterday",
            "2026-13-01",
            "1969-12-31",
            "",
        ] {
            assert!(parse_instant(text).is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn a_rollout_is_a_plain_percentage() {
        for (text, value) in [
            ("5", 5.0),
            ("5%", 5.0),
            ("12.5%", 12.5),
            ("0", 0.0),
            ("100%", 100.0),
        ] {
            assert_eq!(parse_percent(text), Ok(value), "{text}");
        }
        for text in [
            " 5%", "5% ", "50%%", "1e2%", "1e2", "-5", "+5", "101", ".5", "5.", "", "%", "inf",
            "NaN",
        ] {
            assert!(parse_percent(text).is_err(), "{text:?} was accepted");
        }
    }
}

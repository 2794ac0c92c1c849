//! The subcommands: each turns its arguments into engine calls and prints a table or JSON.
//!
//! Whatever a command prints that came from a user, a file or an external system (ids, keys,
//! errors) has its control characters escaped, and every command it suggests is quoted for a
//! shell, so output can be read and pasted safely (see `output`).

use super::args::{Cli, Command, OutputFormat, RunsCommand};
use super::output::{escape, shell_quote};
use super::{AppInfo, Exit};
use crate::console::api::open::{self, Access, Opened};
use crate::console::api::{ApiError, ErrorKind, Operator, Settle, StartOptions, Started};
use crate::console::settings::{FlowSettings, Loaded, SharingSetting};
use crate::engine::registry::WorkflowFailure;
use crate::engine::{Error, Flow, RunError};
use crate::store::{
    RedbStore, RunFilter, RunId, RunRecord, RunStatus, Sharing, StepId, StepRecord, StepStatus,
};
use comfy_table::{presets, Table};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

pub(super) fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_style(presets::ASCII_BORDERS_ONLY_CONDENSED);
    table.set_header(header.iter().copied());
    table
}

/// Adds a row whose cells are shown with their control characters escaped: a newline in a
/// step key must not start a fake row.
pub(super) fn add_row<const N: usize>(table: &mut Table, cells: [String; N]) {
    table.add_row(cells.map(|cell| escape(&cell)));
}

/// Prints one line of text that may hold values from users or external systems, escaped.
pub(super) fn say(text: impl std::fmt::Display) {
    println!("{}", escape(&text.to_string()));
}

/// Prints an error message, escaped.
pub(super) fn error(text: impl std::fmt::Display) {
    eprintln!("error: {}", escape(&text.to_string()));
}

/// A command line for this binary, each word quoted for a shell where it needs it. Words
/// written `<like-this>` are placeholders for the operator to fill in and are left as they are.
pub(super) fn cmd(app: &AppInfo, words: &[&str]) -> String {
    std::iter::once(app.name)
        .chain(words.iter().copied())
        .map(|w| {
            if w.starts_with('<') && w.ends_with('>') || w.starts_with('[') && w.ends_with(']') {
                w.to_owned()
            } else {
                shell_quote(w)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A run id from the command line, checked against the rule documented on [`RunId`].
fn run_id(text: String) -> Result<RunId, Exit> {
    RunId::new(text).map_err(|e| {
        error(e);
        Exit::Usage
    })
}

pub(super) fn time(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

pub(super) fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// Maps an engine error to its message and exit code.
pub(super) fn fail(e: &Error) -> Exit {
    error(e);
    match e {
        Error::Store(_) | Error::Interrupted { .. } | Error::Encoding(_) => Exit::Store,
        _ => Exit::Usage,
    }
}

/// Maps an operator error to its message and exit code: the same whether the operation ran
/// here or in the process that owns the store.
pub(super) fn fail_api(e: &ApiError) -> Exit {
    error(&e.message);
    match e.kind {
        ErrorKind::Usage | ErrorKind::Input | ErrorKind::InProgress => Exit::Usage,
        ErrorKind::Config => Exit::Config,
        ErrorKind::Store | ErrorKind::Unavailable => Exit::Store,
    }
}

fn sharing(settings: &FlowSettings) -> Sharing {
    match settings.sharing {
        SharingSetting::Shared => Sharing::Shared,
        SharingSetting::Exclusive => Sharing::Exclusive,
    }
}

/// Opens the store for a command: itself, or through the socket of the process that owns it.
pub(super) async fn open_operator(settings: &FlowSettings, access: Access) -> Result<Opened, Exit> {
    open_store(settings, access).await.map_err(|e| fail_api(&e))
}

/// [`open_operator`], leaving the error to the caller.
pub(super) async fn open_store(
    settings: &FlowSettings,
    access: Access,
) -> Result<Opened, ApiError> {
    if settings.postgres_url().is_some() {
        // Every process talks to the database; claims keep executions apart, so there is no
        // owner and no socket.
        let store = open_postgres(settings).await?;
        return Ok(Opened {
            operator: Operator::Local(flow_builder(settings).store(store)),
            server: None,
        });
    }
    let durability = settings.durability();
    let settings_here = settings.clone();
    let build = move |store: RedbStore| {
        store.set_durability(durability);
        flow_builder(&settings_here).store(Arc::new(store))
    };
    open::open(&settings.store, sharing(settings), access, &build).await
}

/// A builder with everything the settings and the app's setup give, but the store.
fn flow_builder(settings: &FlowSettings) -> crate::engine::FlowBuilder {
    let schedules = crate::console::schedule_settings::configs(settings);
    let mut builder = schedules.iter().fold(Flow::builder(), |b, (name, config)| {
        b.schedule(name.clone(), config.clone())
    });
    if let Some(version) = &settings.app_version {
        builder = builder.app_version(version.clone());
    }
    builder
        .lease(settings.lease())
        .alerts(settings.alerts.sinks())
        .retry_policies(settings.retry_policies())
        .queues(settings.queues())
        .app_state(super::setup_state())
}

/// Connects to the PostgreSQL store `flow.store` names, applying its migrations.
#[cfg(feature = "postgres")]
pub(super) async fn open_postgres(
    settings: &FlowSettings,
) -> Result<Arc<dyn crate::store::Store>, ApiError> {
    let store = connect_postgres(settings).await?;
    Ok(Arc::new(store))
}

#[cfg(feature = "postgres")]
pub(super) async fn connect_postgres(
    settings: &FlowSettings,
) -> Result<crate::store::PgStore, ApiError> {
    let url = settings.postgres_url().unwrap_or_default();
    let options = crate::store::PgOptions {
        schema: settings.postgres.schema.clone(),
        pool_size: settings.postgres.pool_size as usize,
        password: settings
            .postgres
            .password
            .as_ref()
            .map(|p| p.expose().to_owned()),
        ca_file: settings.postgres.ca_file.clone(),
    };
    crate::store::PgStore::connect_with(url, options)
        .await
        .map_err(|e| {
            let kind = match e {
                crate::store::StoreError::Unavailable { .. } => ErrorKind::Unavailable,
                crate::store::StoreError::Backend(_) => ErrorKind::Config,
                _ => ErrorKind::Store,
            };
            ApiError::new(kind, e.to_string())
        })
}

#[cfg(not(feature = "postgres"))]
pub(super) async fn open_postgres(
    _settings: &FlowSettings,
) -> Result<Arc<dyn crate::store::Store>, ApiError> {
    Err(ApiError::new(
        ErrorKind::Config,
        "flow.store is a PostgreSQL URL, but this binary was built without flow-runtime's `postgres` feature; enable it, or give a redb file path",
    ))
}

/// `migrate`: applies the store's schema migrations ahead of a deploy and prints the version.
pub(super) async fn migrate(settings: &FlowSettings) -> Exit {
    if settings.postgres_url().is_some() {
        #[cfg(feature = "postgres")]
        {
            return match connect_postgres(settings).await {
                Ok(store) => {
                    say(format!(
                        "{}: schema version {} (up to date)",
                        store.target(),
                        crate::store::PG_SCHEMA_VERSION
                    ));
                    Exit::Success
                }
                Err(e) => fail_api(&e),
            };
        }
        #[cfg(not(feature = "postgres"))]
        return match open_postgres(settings).await {
            Ok(_) => Exit::Success,
            Err(e) => fail_api(&e),
        };
    }
    // A redb file is upgraded by the first process that opens it for writing.
    match open_store(settings, Access::Write).await {
        Ok(Opened { server, .. }) => {
            say(format!(
                "{}: schema version {} (up to date)",
                settings.store.display(),
                crate::store::SCHEMA_VERSION
            ));
            release(server).await;
            Exit::Success
        }
        Err(e) => fail_api(&e),
    }
}

/// How long a command keeps trying when the store's owner went away while it answered.
const OWNER_GONE_RETRY: Duration = Duration::from_secs(10);

/// The owner closed the connection without an answer: it was stopping. The command opens the
/// store again (itself, or through the next owner) and sends the same request, which names its
/// run id, so it cannot start a second run.
fn owner_went_away<T>(operator: &Operator, result: &Result<T, ApiError>) -> bool {
    matches!(operator, Operator::Remote(_))
        && matches!(
            result,
            Err(ApiError {
                kind: ErrorKind::Unavailable,
                ..
            })
        )
}

/// After the command: an owner stops serving, and the runs it executed for other commands are
/// stopped gracefully, so that those commands take them over.
pub(super) async fn release(server: Option<crate::console::api::ServeHandle>) {
    if let Some(server) = server {
        server
            .shutdown("the process that owned the store finished its own command")
            .await;
    }
}

pub(super) fn check_config<S: serde::Serialize>(loaded: &Loaded<S>, output: OutputFormat) -> Exit {
    let rows = loaded.describe();
    match output {
        OutputFormat::Json => print_json(&Value::Array(
            rows.into_iter()
                .map(|(key, value, source)| json!({ "key": key, "value": value, "source": source }))
                .collect(),
        )),
        OutputFormat::Table => {
            let mut t = table(&["SETTING", "VALUE", "SOURCE"]);
            for (key, value, source) in rows {
                add_row(&mut t, [key, value.to_string(), source]);
            }
            println!("{t}");
        }
    }
    Exit::Success
}

pub(super) async fn dispatch(app: &AppInfo, settings: &FlowSettings, cli: Cli) -> Exit {
    let output = cli.output;
    let Some(command) = cli.command else {
        return Exit::Usage;
    };
    match command {
        Command::Run {
            workflow,
            input,
            input_file,
            id,
            dry_run,
            rollout,
            use_stored_input,
            traceparent,
        } => {
            let id = match id.map(run_id).transpose() {
                Ok(id) => id,
                Err(exit) => return exit,
            };
            let given = input.is_some() || input_file.is_some();
            let limit = settings.max_input_size.0;
            let input = match read_input(input, input_file.as_deref(), limit) {
                Ok(input) => input,
                Err(message) => {
                    error(message);
                    return Exit::Usage;
                }
            };
            let mut opened = match open_operator(settings, Access::Execute).await {
                Ok(opened) => opened,
                Err(exit) => return exit,
            };
            if dry_run {
                return match opened.operator.flow() {
                    Some(flow) => dry(app, flow, &workflow, input, given, output).await,
                    None => dry_elsewhere(app, &workflow, input, given, output).await,
                };
            }
            // The id is chosen here, so that a start sent again after the owner went away
            // names the same run
            let options = StartOptions {
                id: Some(id.unwrap_or_else(RunId::generate)),
                rollout,
                use_stored_input,
                traceparent,
            };
            let mut started = opened
                .operator
                .start(&workflow, input.clone(), options.clone())
                .await;
            let deadline = std::time::Instant::now() + OWNER_GONE_RETRY;
            while owner_went_away(&opened.operator, &started)
                && std::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
                opened = match open_operator(settings, Access::Execute).await {
                    Ok(opened) => opened,
                    Err(exit) => return exit,
                };
                started = opened
                    .operator
                    .start(&workflow, input.clone(), options.clone())
                    .await;
            }
            let Opened { operator, server } = opened;
            let exit = match &started {
                Err(
                    e @ ApiError {
                        kind: ErrorKind::Input,
                        ..
                    },
                ) => input_error(app, &e.message, given),
                _ => follow(app, settings, &operator, started, output, Paused::ByRollout).await,
            };
            release(server).await;
            exit
        }
        Command::Runs(runs) => runs_command(app, settings, runs, output).await,
        Command::Alerts(alerts) => super::alerts::command(settings, alerts, output).await,
        Command::Stats(stats) => super::stats::command(settings, stats, output).await,
        Command::Metrics => {
            let opened = match open_operator(settings, Access::Read).await {
                Ok(opened) => opened,
                Err(exit) => return exit,
            };
            let exit = match opened.operator.metrics().await {
                Ok(Some(text)) if output == OutputFormat::Json => {
                    print_json(&crate::metrics::samples_json(&text));
                    Exit::Success
                }
                Ok(Some(text)) => {
                    super::output::raw(text.as_bytes());
                    Exit::Success
                }
                Ok(None) if settings.postgres_url().is_some() => {
                    // No process owns a PostgreSQL store (and its URL may hold a password)
                    error("on PostgreSQL every worker counts its own metrics and none owns the store: scrape each worker's flow.metrics.listen address");
                    Exit::Usage
                }
                Ok(None) => {
                    error(format!(
                        "no worker owns the store {}, and metrics are counted by the process that executes workflows; start one with `{}`, or scrape its flow.metrics.listen address",
                        settings.store.display(),
                        cmd(app, &["worker"])
                    ));
                    Exit::Usage
                }
                Err(e) => fail_api(&e),
            };
            release(opened.server).await;
            exit
        }
        Command::Schedules(schedules) => {
            super::schedules::command(app, settings, schedules, output).await
        }
        Command::Worker {
            concurrency,
            queues,
        } => {
            let Opened { operator, server } = match open_operator(settings, Access::Execute).await {
                Ok(opened) => opened,
                Err(exit) => return exit,
            };
            // The web console beside the work, when flow.ui.listen asks for it
            let console = match &settings.ui.listen {
                Some(listen) if matches!(operator, Operator::Local(_)) => {
                    let listen = match listen.parse() {
                        Ok(listen) => listen,
                        Err(_) => {
                            error(format!("flow.ui.listen `{listen}` is not an address and port such as `127.0.0.1:8080`"));
                            release(server).await;
                            return Exit::Config;
                        }
                    };
                    match super::web::bind(*app, settings, listen).await {
                        Ok(bound) => {
                            tracing::info!(url = %format!("http://{}/", bound.addr()), "serving the web console");
                            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                            let task = tokio::spawn(super::web::serve(bound, async move {
                                let _ = stopped.await;
                            }));
                            Some((stop, task))
                        }
                        Err(message) => {
                            error(message);
                            release(server).await;
                            return Exit::Config;
                        }
                    }
                }
                _ => None,
            };
            let exit = match &operator {
                Operator::Local(flow) => {
                    super::queue::worker(flow, concurrency, queues, settings, output).await
                }
                Operator::Remote(_) => {
                    error("another process owns the store (a worker, or a `run`): in the exclusive mode one process executes the runs of a store; stop it first, or set flow.sharing = \"shared\" (FLOW_SHARING=shared) on every process to run several workers");
                    Exit::Store
                }
            };
            if let Some((stop, task)) = console {
                let _ = stop.send(());
                let _ = task.await;
            }
            release(server).await;
            exit
        }
        Command::Ui { port, listen } => {
            let configured: Option<std::net::SocketAddr> =
                settings.ui.listen.as_deref().and_then(|l| l.parse().ok());
            let listen = match (listen, port, configured) {
                (Some(listen), _, _) => listen,
                (None, Some(port), Some(mut configured)) => {
                    configured.set_port(port);
                    configured
                }
                (None, None, Some(configured)) => configured,
                (None, port, None) => {
                    std::net::SocketAddr::from(([127, 0, 0, 1], port.unwrap_or(8080)))
                }
            };
            let bound = match super::web::bind(*app, settings, listen).await {
                Ok(bound) => bound,
                Err(message) => {
                    error(message);
                    return Exit::Config;
                }
            };
            say(format!("web console: http://{}/", bound.addr()));
            super::web::serve(bound, async {
                let signal = super::signals::first_signal().await;
                tracing::info!(signal = signal.name(), "stop signal: the web console stops");
            })
            .await;
            Exit::Success
        }
        Command::Enqueue {
            workflow,
            input,
            input_file,
            id,
            queue,
            priority,
            delay,
            at,
            concurrency_key,
            traceparent,
        } => {
            let id = match id.map(run_id).transpose() {
                Ok(id) => id,
                Err(exit) => return exit,
            };
            let input = match read_input(input, input_file.as_deref(), settings.max_input_size.0) {
                Ok(input) => input,
                Err(message) => {
                    error(message);
                    return Exit::Usage;
                }
            };
            let now = crate::store::now_ms();
            let not_before_ms = delay
                .map(|d| now.saturating_add(d.as_millis() as u64))
                .or_else(|| {
                    at.map(|t| {
                        t.duration_since(UNIX_EPOCH)
                            .map_or(0, |d| d.as_millis() as u64)
                    })
                });
            let options = crate::console::api::EnqueueOptions {
                id,
                queue,
                priority,
                not_before_ms,
                concurrency_key,
                traceparent,
            };
            let mut options = options;
            options.id = Some(options.id.unwrap_or_else(RunId::generate));
            let mut opened = match open_operator(settings, Access::Write).await {
                Ok(opened) => opened,
                Err(exit) => return exit,
            };
            let mut enqueued = opened
                .operator
                .enqueue(&workflow, input.clone(), options.clone())
                .await;
            let deadline = std::time::Instant::now() + OWNER_GONE_RETRY;
            while owner_went_away(&opened.operator, &enqueued)
                && std::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
                opened = match open_operator(settings, Access::Write).await {
                    Ok(opened) => opened,
                    Err(exit) => return exit,
                };
                enqueued = opened
                    .operator
                    .enqueue(&workflow, input.clone(), options.clone())
                    .await;
            }
            let Opened { operator, server } = opened;
            let exit = match enqueued {
                Err(e) => fail_api(&e),
                Ok(id) => super::queue::enqueued(&operator, &id, output).await,
            };
            release(server).await;
            exit
        }
        Command::Runbook { format } => {
            let schedules = super::schedules::for_runbook(settings).await;
            super::runbook::print(
                app,
                format,
                &settings.retry_policies(),
                &schedules,
                &settings.alerts.sinks(),
            )
        }
        Command::Migrate => migrate(settings).await,
        Command::CheckConfig | Command::Completions { .. } => Exit::Success,
    }
}

/// Input that does not decode into the workflow's parameters: nothing was stored.
fn input_error(app: &AppInfo, e: impl std::fmt::Display, given: bool) -> Exit {
    error(e);
    let hint = if given {
        "nothing was stored; fix the input"
    } else {
        "nothing was stored; no input was given: pass it with --input JSON or --input-file FILE"
    };
    eprintln!(
        "  {hint} (`{}` lists the workflow's parameters)",
        escape(&cmd(app, &["runbook"]))
    );
    Exit::Usage
}

/// What paused a run, so that the report talks about what the operator did.
#[derive(Clone, Debug)]
enum Paused {
    /// A staged rollout (`run --rollout`).
    ByRollout,
    /// `runs retry-unit`: the other unfinished units were left alone.
    ByUnitRetry(String),
}

/// Waits for a started (or resumed) run, with a progress display on a terminal when it runs
/// here, and reports its outcome.
async fn follow(
    app: &AppInfo,
    settings: &FlowSettings,
    op: &Operator,
    started: Result<Started, ApiError>,
    output: OutputFormat,
    paused: Paused,
) -> Exit {
    let started = match started {
        Ok(started) => started,
        Err(e) => return fail_api(&e),
    };
    let id = started.run_id().clone();
    match wait(settings, op, started).await {
        Waited::Ended(outcome, record) => {
            report_outcome(record, &id, outcome, output, app, paused).await
        }
        Waited::Stopped { signal, in_grace } => {
            super::signals::report_stopped(app, &id, signal, in_grace)
        }
        Waited::Left(signal) => {
            eprintln!(
                "{}: stopped following run {}; it goes on executing in the process that owns the store; see it with: {}",
                signal.name(),
                escape(id.as_str()),
                escape(&cmd(app, &["runs", "show", id.as_str()]))
            );
            signal.exit()
        }
        Waited::Failed(e) => fail_api(&e),
        Waited::Exit(exit) => exit,
    }
}

type Outcome = Result<Value, RunError<WorkflowFailure>>;

/// How waiting for an execution ended.
// One value per command, moved once: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Waited {
    /// It ended: its outcome and the run's record after it.
    Ended(Outcome, Option<RunRecord>),
    /// A signal stopped this process's runs; the run is resumable.
    Stopped {
        signal: super::signals::Signal,
        in_grace: bool,
    },
    /// A signal stopped this command while the run executes in the owner, which goes on.
    Left(super::signals::Signal),
    /// Following it failed.
    Failed(ApiError),
    /// Following it failed, and the error is reported already.
    Exit(Exit),
}

/// Sends the alerts the run opened or resolved before the command exits, for a bounded time;
/// what is not delivered by then stays pending for the next worker or run.
async fn deliver_alerts_before_exit(flow: &Flow) {
    match tokio::time::timeout(ALERT_GRACE, flow.deliver_alerts()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "alerts could not be delivered; they stay pending")
        }
        Err(_) => tracing::warn!("alert delivery took too long; what is left stays pending"),
    }
}

/// How long `run` spends delivering alerts before it exits.
const ALERT_GRACE: Duration = Duration::from_secs(15);

/// Waits for an execution wherever it runs. One that runs in the process owning the store is
/// followed through `show` until it is no longer active; if that process goes away first (it
/// finished its own work and stopped the runs it executed for others), this process opens the
/// store itself and resumes the run, so the command still ends with the run's outcome.
fn wait<'a>(
    settings: &'a FlowSettings,
    op: &'a Operator,
    started: Started,
) -> crate::store::BoxFuture<'a, Waited> {
    Box::pin(async move {
        let id = match started {
            Started::Here(handle) => {
                let Some(flow) = op.flow() else {
                    return Waited::Failed(ApiError::new(
                        ErrorKind::Store,
                        "an execution started here without a store",
                    ));
                };
                let id = handle.run_id().clone();
                let progress = super::progress::start(flow, &id);
                let waited = super::signals::outcome(flow, handle).await;
                drop(progress);
                return match waited {
                    super::signals::Waited::Ended(outcome) => {
                        deliver_alerts_before_exit(flow).await;
                        let record = flow.run_record(&id).await.ok().flatten();
                        Waited::Ended(outcome, record)
                    }
                    super::signals::Waited::Stopped { signal, in_grace } => {
                        Waited::Stopped { signal, in_grace }
                    }
                };
            }
            Started::There(id) => id,
        };
        loop {
            let shown = tokio::select! {
                shown = op.show(&id) => shown,
                signal = super::signals::first_signal() => return Waited::Left(signal),
            };
            match shown {
                Ok(view) if is_active(view.run.status) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(view) => return Waited::Ended(outcome_of(&view.run), Some(view.run)),
                Err(e) if e.kind == ErrorKind::Unavailable => {
                    return take_over(settings, &id).await;
                }
                Err(e) => return Waited::Failed(e),
            }
        }
    })
}

/// Queued, running or sleeping: an execution is (or will be) under way.
fn is_active(status: RunStatus) -> bool {
    matches!(
        status,
        RunStatus::Queued | RunStatus::Running | RunStatus::Sleeping
    )
}

/// The owner went away while this process followed one of its runs: open the store (as the
/// new owner, or through whoever owns it now) and continue the run.
async fn take_over(settings: &FlowSettings, id: &RunId) -> Waited {
    tracing::info!(run_id = %id, "the process that owned the store stopped; continuing the run here");
    let opened = match open_operator(settings, Access::Execute).await {
        Ok(opened) => opened,
        // The message is printed already; the exit code follows from the kind.
        Err(exit) => return Waited::Exit(exit),
    };
    let Opened { operator, server } = opened;
    let waited = loop {
        match operator.show(id).await {
            Ok(view) if !is_active(view.run.status) => {
                break Waited::Ended(outcome_of(&view.run), Some(view.run))
            }
            Ok(_) => {}
            Err(e) => break Waited::Failed(e),
        }
        match operator.resume(id, None).await {
            Ok(started) => break wait(settings, &operator, started).await,
            // The old owner is still exiting: its pid is alive a moment longer.
            Err(e) if e.kind == ErrorKind::InProgress => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => break Waited::Failed(e),
        }
    };
    release(server).await;
    waited
}

/// The outcome of a run that ended in another process, from its record.
fn outcome_of(run: &RunRecord) -> Outcome {
    match run.status {
        RunStatus::Succeeded => Ok(run.output.clone().unwrap_or(Value::Null)),
        RunStatus::Failed => Err(RunError::Failed {
            message: run.error.clone().unwrap_or_default(),
        }),
        RunStatus::Cancelled => Err(RunError::Cancelled),
        RunStatus::NeedsAttention => match &run.attention {
            Some(a) => Err(RunError::NeedsAttention(a.clone())),
            None => Err(RunError::Failed {
                message: run.error.clone().unwrap_or_default(),
            }),
        },
        RunStatus::Paused => Err(RunError::Paused {
            summary: run.error.clone().unwrap_or_default(),
        }),
        _ => Err(RunError::Engine(Error::Interrupted {
            run_id: run.id.clone(),
            reason: format!("it stopped {}", run.status),
        })),
    }
}

/// Reads the workflow's input: `--input`, a file, or standard input (`-`), at most `limit`
/// bytes (the `flow.max_input_size` setting) so that `/dev/zero` cannot exhaust memory.
fn read_input(input: Option<String>, file: Option<&Path>, limit: u64) -> Result<Value, String> {
    let too_large = |what: &str| {
        format!(
            "{what} is larger than {}, the flow.max_input_size setting; pass a smaller input, or raise the limit (FLOW_MAX_INPUT_SIZE=64MiB)",
            crate::console::settings::ByteSize(limit)
        )
    };
    let read = |reader: &mut dyn std::io::Read, what: &str| -> Result<String, String> {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(reader, limit.saturating_add(1)),
            &mut bytes,
        )
        .map_err(|e| format!("cannot read the input from {what}: {e}"))?;
        if bytes.len() as u64 > limit {
            return Err(too_large(what));
        }
        String::from_utf8(bytes).map_err(|e| format!("the input in {what} is not UTF-8 text ({e})"))
    };
    let (text, what) = match (input, file) {
        (Some(text), _) => {
            if text.len() as u64 > limit {
                return Err(too_large("--input"));
            }
            (text, "--input".to_owned())
        }
        (None, Some(path)) if path == Path::new("-") => {
            let what = "the standard input".to_owned();
            (read(&mut std::io::stdin().lock(), &what)?, what)
        }
        (None, Some(path)) => {
            let what = path.display().to_string();
            let mut file =
                std::fs::File::open(path).map_err(|e| format!("cannot read {what}: {e}"))?;
            (read(&mut file, &what)?, what)
        }
        (None, None) => return Ok(Value::Null),
    };
    serde_json::from_str(&text).map_err(|e| {
        format!("{what} is not valid JSON ({e}); pass the workflow's input as JSON, for example --input '{{\"count\": 10}}'")
    })
}

async fn dry(
    app: &AppInfo,
    flow: &Flow,
    workflow: &str,
    input: Value,
    given: bool,
    output: OutputFormat,
) -> Exit {
    let dry = match flow.dry_run(workflow, input).await {
        Ok(dry) => dry,
        Err(e @ Error::Input { .. }) => return input_error(app, e, given),
        Err(e) => return fail(&e),
    };
    let (result, exit) = match &dry.result {
        Ok(v) => (json!({ "output": v }), Exit::Success),
        Err(e) => (json!({ "error": e.to_string() }), Exit::WorkflowFailed),
    };
    match output {
        OutputFormat::Json => print_json(&json!({
            "dry_run": true,
            "workflow": workflow,
            "plan": dry.plan,
            "result": result,
        })),
        OutputFormat::Table => {
            say(format!(
                "dry run of {workflow}: {} step(s) would change something; nothing was changed",
                dry.plan.len()
            ));
            let mut t = table(&["STEP", "KEY", "WOULD", "ARGUMENTS"]);
            for p in &dry.plan {
                add_row(
                    &mut t,
                    [
                        p.step.clone(),
                        p.key.clone(),
                        p.action.clone(),
                        p.args.to_string(),
                    ],
                );
            }
            println!("{t}");
            say(format!("result with stand-ins: {result}"));
        }
    }
    exit
}

/// A dry run while another process owns the store: the dry run reads and writes no store, so
/// it runs on a scratch store that is removed afterwards.
async fn dry_elsewhere(
    app: &AppInfo,
    workflow: &str,
    input: Value,
    given: bool,
    output: OutputFormat,
) -> Exit {
    let scratch = std::env::temp_dir().join(format!(
        "flow-dry-run-{}-{}.redb",
        std::process::id(),
        crate::store::RunId::generate()
    ));
    let exit = match RedbStore::open_with(&scratch, Sharing::Exclusive) {
        Ok(store) => {
            let flow = Flow::builder()
                .app_state(super::setup_state())
                .store(Arc::new(store));
            dry(app, &flow, workflow, input, given, output).await
        }
        Err(e) => {
            error(format!(
                "cannot create a scratch store for the dry run: {e}"
            ));
            Exit::Store
        }
    };
    let _ = std::fs::remove_file(&scratch);
    exit
}

async fn report_outcome(
    record: Option<RunRecord>,
    id: &RunId,
    outcome: Result<Value, RunError<WorkflowFailure>>,
    output: OutputFormat,
    app: &AppInfo,
    paused: Paused,
) -> Exit {
    if let Err(RunError::Engine(e @ (Error::Store(_) | Error::Interrupted { .. }))) = &outcome {
        return report_interrupted(app, id, e, output);
    }
    let trace = record
        .as_ref()
        .map(|r| r.trace_id.clone())
        .unwrap_or_default();
    let status = record
        .as_ref()
        .map(|r| r.status.as_str())
        .unwrap_or("unknown");
    let more = match (&paused, &record) {
        (Paused::ByRollout, Some(r)) => vec![cmd(
            app,
            &[
                "run",
                &r.workflow,
                "--input",
                &r.input.to_string(),
                "--id",
                id.as_str(),
                "--rollout",
                "<percent>",
            ],
        )],
        (Paused::ByRollout, None) => vec![cmd(
            app,
            &[
                "run",
                "<workflow>",
                "--input",
                "<the same input>",
                "--id",
                id.as_str(),
                "--rollout",
                "<percent>",
            ],
        )],
        (Paused::ByUnitRetry(_), _) => vec![
            cmd(app, &["runs", "retry-failed", id.as_str()]),
            cmd(app, &["runs", "retry-unit", id.as_str(), "--unit", "<key>"]),
        ],
    };
    let (exit, detail) = match &outcome {
        Ok(v) => (Exit::Success, json!({ "output": v })),
        Err(RunError::NeedsAttention(a)) => (
            Exit::NeedsAttention,
            json!({ "attention": a, "next": attention_commands(app, id, &a.step) }),
        ),
        Err(RunError::Paused { summary }) => {
            (Exit::Success, json!({ "paused": summary, "next": more }))
        }
        Err(e) => (Exit::WorkflowFailed, json!({ "error": e.to_string() })),
    };
    match output {
        OutputFormat::Json => {
            let mut doc = json!({ "run_id": id, "trace_id": trace, "status": status });
            if let (Value::Object(doc), Value::Object(detail)) = (&mut doc, detail) {
                doc.extend(detail);
            }
            print_json(&doc);
        }
        OutputFormat::Table => {
            say(format!("run {id} {status} (trace {trace})"));
            match &outcome {
                Ok(v) => say(format!("output: {v}")),
                Err(RunError::NeedsAttention(a)) => {
                    say(format!("needs attention: {}", a.reason));
                    for c in attention_commands(app, id, &a.step) {
                        say(format!("  {c}"));
                    }
                }
                Err(RunError::Paused { summary }) => match &paused {
                    Paused::ByRollout => {
                        say(format!("paused after the rollout: {summary}"));
                        say(format!(
                            "  process more: {} (100% finishes it)",
                            more.join(" ")
                        ));
                    }
                    Paused::ByUnitRetry(unit) => {
                        say(format!(
                            "retried unit {unit}; the run's other unfinished units were left as they are, so it is paused"
                        ));
                        say(format!("  retry the rest: {}", more[0]));
                        say(format!("  or one more unit: {}", more[1]));
                    }
                },
                Err(e) => say(format!("error: {e}")),
            }
        }
    }
    exit
}

/// The run stopped because the store failed (a full disk, an I/O error): its record may be
/// unreadable now, so say what is known and how to continue rather than print an empty status.
fn report_interrupted(app: &AppInfo, id: &RunId, e: &Error, output: OutputFormat) -> Exit {
    let resume = cmd(app, &["runs", "resume", id.as_str()]);
    let e = match e {
        Error::Interrupted { reason, .. } => reason.clone(),
        other => other.to_string(),
    };
    match output {
        OutputFormat::Json => print_json(&json!({
            "run_id": id,
            "status": "interrupted",
            "error": e.to_string(),
            "next": [resume],
        })),
        OutputFormat::Table => {
            say(format!("run {id} was interrupted by a store error: {e}"));
            say(format!(
                "  the checkpoints committed before it are kept; once the cause is fixed, continue with: {resume}"
            ));
        }
    }
    Exit::Store
}

fn attention_commands(app: &AppInfo, id: &RunId, step: &StepId) -> Vec<String> {
    let resolve = |how: &[&str]| {
        let mut words = vec!["runs", "resolve", id.as_str(), "--step", step.key.as_str()];
        words.extend_from_slice(how);
        cmd(app, &words)
    };
    vec![
        format!(
            "if its effect happened: {}",
            resolve(&["--done", "[--step-output JSON]"])
        ),
        format!("if it did not: {}", resolve(&["--rerun"])),
        format!("then: {}", cmd(app, &["runs", "resume", id.as_str()])),
    ]
}

async fn runs_command(
    app: &AppInfo,
    settings: &FlowSettings,
    command: RunsCommand,
    output: OutputFormat,
) -> Exit {
    if let RunsCommand::Prune {
        older_than,
        status,
        dry_run,
    } = command
    {
        return super::prune::command(settings, older_than, status, dry_run, output).await;
    }
    // Every id is checked before the store is opened: a bad id is a usage error, whatever the
    // state of the store.
    let id = match &command {
        RunsCommand::Show { id }
        | RunsCommand::Resume { id }
        | RunsCommand::RetryFailed { id: Some(id), .. }
        | RunsCommand::RetryUnit { id, .. }
        | RunsCommand::Cancel { id }
        | RunsCommand::Fork { id, .. }
        | RunsCommand::Resolve { id, .. } => match run_id(id.clone()) {
            Ok(id) => Some(id),
            Err(exit) => return exit,
        },
        RunsCommand::List { .. }
        | RunsCommand::RetryFailed { id: None, .. }
        | RunsCommand::Prune { .. } => None,
    };
    let new_id = match &command {
        RunsCommand::Fork {
            new_id: Some(new_id),
            ..
        } => match run_id(new_id.clone()) {
            Ok(id) => Some(id),
            Err(exit) => return exit,
        },
        _ => None,
    };
    let access = match command {
        RunsCommand::List { .. } | RunsCommand::Show { .. } => Access::Read,
        RunsCommand::Cancel { .. } | RunsCommand::Resolve { .. } => Access::Write,
        _ => Access::Execute,
    };
    let opened = match open_operator(settings, access).await {
        Ok(opened) => opened,
        Err(exit) => return exit,
    };
    // `list` and `retry-failed` without an id are the only commands that never read it.
    let id = id.unwrap_or_else(|| RunId::from(""));
    let Opened { operator, server } = opened;
    let exit = runs_on(app, settings, &operator, command, id, new_id, output).await;
    release(server).await;
    exit
}

async fn runs_on(
    app: &AppInfo,
    settings: &FlowSettings,
    op: &Operator,
    command: RunsCommand,
    id: RunId,
    new_id: Option<RunId>,
    output: OutputFormat,
) -> Exit {
    match command {
        RunsCommand::List {
            status,
            workflow,
            limit,
        } => {
            let filter = RunFilter {
                status,
                workflow,
                limit: Some(limit),
            };
            match op.list(&filter).await {
                Ok(runs) => {
                    list(&runs, output);
                    Exit::Success
                }
                Err(e) => fail_api(&e),
            }
        }
        RunsCommand::Show { .. } => show(app, op, &id, output).await,
        RunsCommand::Resume { .. } | RunsCommand::RetryFailed { id: Some(_), .. } => {
            let started = op.resume(&id, None).await;
            follow(app, settings, op, started, output, Paused::ByRollout).await
        }
        RunsCommand::RetryFailed { id: None, workflow } => {
            retry_failed(app, settings, op, workflow, output).await
        }
        RunsCommand::RetryUnit { unit, .. } => {
            let started = op.resume(&id, Some(vec![unit.clone()])).await;
            follow(
                app,
                settings,
                op,
                started,
                output,
                Paused::ByUnitRetry(unit),
            )
            .await
        }
        RunsCommand::Cancel { .. } => match op.cancel(&id).await {
            Ok(status) => {
                let note = if status == RunStatus::Cancelled {
                    "cancelled"
                } else {
                    "cancel requested; the run stops at its next step boundary"
                };
                match output {
                    OutputFormat::Json => print_json(
                        &json!({ "run_id": id, "status": status.as_str(), "note": note }),
                    ),
                    OutputFormat::Table => say(format!("run {id}: {note}")),
                }
                Exit::Success
            }
            Err(e) => fail_api(&e),
        },
        RunsCommand::Fork { from_step, .. } => {
            let started = op.fork(&id, &from_step, new_id).await;
            if let (Ok(started), OutputFormat::Table) = (&started, output) {
                say(format!(
                    "forked {id} from step {from_step} as run {}",
                    started.run_id()
                ));
            }
            follow(app, settings, op, started, output, Paused::ByRollout).await
        }
        RunsCommand::Resolve {
            step,
            done,
            step_output,
            ..
        } => {
            let steps = match op.show(&id).await {
                Ok(view) => view.steps,
                Err(e) => return fail_api(&e),
            };
            let Some(target) = steps
                .iter()
                .find(|s| s.id.key == step && s.status == StepStatus::Started)
                .or_else(|| steps.iter().find(|s| s.id.key == step))
            else {
                error(format!(
                    "run {id} has no step with key `{step}`; `{}` lists the keys",
                    cmd(app, &["runs", "show", id.as_str()])
                ));
                return Exit::Usage;
            };
            let settle = if done {
                match step_output.as_deref().map(serde_json::from_str).transpose() {
                    Ok(v) => Settle::Done(v.unwrap_or(Value::Null)),
                    Err(e) => {
                        error(format!("--step-output is not valid JSON ({e})"));
                        return Exit::Usage;
                    }
                }
            } else {
                Settle::Rerun
            };
            match op.resolve(&id, &target.id, settle).await {
                Ok(()) => {
                    let next = cmd(app, &["runs", "resume", id.as_str()]);
                    match output {
                        OutputFormat::Json => print_json(
                            &json!({ "run_id": id, "step": target.id, "resolved": if done { "done" } else { "rerun" }, "next": next }),
                        ),
                        OutputFormat::Table => say(format!(
                            "resolved step {} of run {id}; next: {next}",
                            target.id
                        )),
                    }
                    Exit::Success
                }
                Err(e) => fail_api(&e),
            }
        }
        // Handled before any id is read or the store opened, by `prune::command`
        RunsCommand::Prune { .. } => Exit::Usage,
    }
}

fn list(runs: &[RunRecord], output: OutputFormat) {
    match output {
        OutputFormat::Json => print_json(&json!(runs
            .iter()
            .map(|r| json!({
                "run_id": r.id,
                "workflow": r.workflow,
                "status": r.status,
                "created_at": time(r.created_at_ms),
                "updated_at": time(r.updated_at_ms),
                "executions": r.executions,
                "trace_id": r.trace_id,
            }))
            .collect::<Vec<_>>())),
        OutputFormat::Table => {
            let mut t = table(&[
                "RUN ID",
                "WORKFLOW",
                "STATUS",
                "CREATED",
                "UPDATED",
                "EXECUTIONS",
            ]);
            for r in runs {
                add_row(
                    &mut t,
                    [
                        r.id.to_string(),
                        r.workflow.clone(),
                        r.status.to_string(),
                        time(r.created_at_ms),
                        time(r.updated_at_ms),
                        r.executions.to_string(),
                    ],
                );
            }
            println!("{t}");
        }
    }
}

/// What an operator can do next with a run, as commands for this binary.
pub(super) fn next_steps(app: &AppInfo, run: &RunRecord, steps: &[StepRecord]) -> Vec<String> {
    let id = run.id.as_str();
    match run.status {
        RunStatus::NeedsAttention => match &run.attention {
            Some(a) => attention_commands(app, &run.id, &a.step),
            None => vec![cmd(app, &["runs", "resume", id])],
        },
        RunStatus::Paused => vec![format!(
            "a staged rollout paused it; process more units with: {} (100 finishes it)",
            cmd(
                app,
                &[
                    "run",
                    &run.workflow,
                    "--input",
                    &run.input.to_string(),
                    "--id",
                    id,
                    "--rollout",
                    "<percent>"
                ]
            )
        )],
        RunStatus::Failed => {
            let failed_units = steps.iter().any(|s| {
                s.id.name == crate::engine::units::UNIT_STEP && s.status == StepStatus::Failed
            });
            let mut next = if failed_units {
                vec![
                    format!(
                        "fix the cause of the failed units, then re-execute only the failed and unfinished ones: {}",
                        cmd(app, &["runs", "retry-failed", id])
                    ),
                    format!(
                        "or one unit: {}",
                        cmd(app, &["runs", "retry-unit", id, "--unit", "<key>"])
                    ),
                ]
            } else {
                vec![format!(
                    "fix the cause of the error, then: {}",
                    cmd(app, &["runs", "resume", id])
                )]
            };
            next.push(format!(
                "or redo from a step: {}",
                cmd(app, &["runs", "fork", id, "--from-step", "<step>"])
            ));
            next
        }
        RunStatus::Running | RunStatus::Sleeping => {
            // This process too: the web console of a worker shows the worker's runs
            let live = run.owner.as_ref().is_some_and(|o| o.is_live_process());
            let mut next = Vec::new();
            if let Some(b) = steps.iter().find(|s| s.status == StepStatus::Backoff) {
                next.push(format!(
                    "step {} is in backoff after attempt {}; the next attempt is due at {}",
                    b.id,
                    b.attempt,
                    b.next_attempt_at_ms.map(time).unwrap_or_default()
                ));
            }
            if live {
                next.push(format!(
                    "executing in process {}; to stop it: {}",
                    run.owner.as_ref().map(|o| o.pid).unwrap_or_default(),
                    cmd(app, &["runs", "cancel", id])
                ));
            } else {
                next.push(format!(
                    "no process is executing it (interrupted); continue with: {}",
                    cmd(app, &["runs", "resume", id])
                ));
            }
            next
        }
        RunStatus::Queued => vec![cmd(app, &["runs", "cancel", id])],
        RunStatus::Succeeded | RunStatus::Cancelled => Vec::new(),
    }
}

async fn show(app: &AppInfo, op: &Operator, id: &RunId, output: OutputFormat) -> Exit {
    let (run, mut steps, cancel_requested, queue) = match op.show(id).await {
        Ok(view) => (view.run, view.steps, view.cancel_requested, view.queue),
        Err(e) => return fail_api(&e),
    };
    timeline_order(&mut steps);
    let next = next_steps(app, &run, &steps);
    let units = units_summary(&steps);
    match output {
        OutputFormat::Json => print_json(
            &json!({ "run": run, "steps": steps, "units": units, "cancel_requested": cancel_requested, "queue": queue, "next": next }),
        ),
        OutputFormat::Table => {
            say(format!("run:        {}", run.id));
            say(format!("workflow:   {}", run.workflow));
            say(format!("status:     {}", run.status));
            say(format!("trace id:   {}", run.trace_id));
            if let Some(caller) = &run.traceparent {
                // `00-<trace>-<span>-<flags>`: the caller's span is the third field
                let span = caller.split('-').nth(2).unwrap_or(caller.as_str());
                say(format!(
                    "caller:     span {span} (started with a traceparent)"
                ));
            }
            say(format!("created:    {}", time(run.created_at_ms)));
            say(format!("updated:    {}", time(run.updated_at_ms)));
            say(format!("executions: {}", run.executions));
            if let Some(version) = &run.app_version {
                say(format!("version:    {version}"));
            }
            if let Some(e) = &run.error {
                say(format!("error:      {e}"));
            }
            if let Some(a) = &run.attention {
                say(format!("attention:  {}", a.reason));
            }
            if cancel_requested {
                say("cancel:     requested; the run stops at its next step boundary");
            }
            if let Some(q) = &queue {
                say(format!(
                    "queue:      {} (priority {}), position {}, {} in flight",
                    q.name, q.priority, q.position, q.in_flight
                ));
                say(format!("waiting:    {}", q.waiting));
            }
            let mut t = table(&[
                "STEP", "KEY", "#", "STATUS", "ATTEMPTS", "DURATION", "ERROR", "OUTPUT",
            ]);
            for s in &steps {
                let duration = s
                    .finished_at_ms
                    .map(|f| format!("{} ms", f.saturating_sub(s.started_at_ms)))
                    .unwrap_or_else(|| "-".into());
                let size = s
                    .output
                    .as_ref()
                    .map(|o| format!("{} B", o.to_string().len()))
                    .unwrap_or_else(|| "-".into());
                add_row(
                    &mut t,
                    [
                        s.id.name.clone(),
                        s.id.key.clone(),
                        s.id.occurrence.to_string(),
                        format!("{:?}", s.status).to_lowercase(),
                        s.attempt.to_string(),
                        duration,
                        s.error.clone().unwrap_or_default(),
                        size,
                    ],
                );
            }
            println!("{t}");
            if let Some(units) = units {
                println!(
                    "units: {} succeeded, {} failed",
                    units["succeeded"], units["failed"]
                );
                for f in units["failures"].as_array().into_iter().flatten().take(20) {
                    say(format!(
                        "  failed unit {}: {}",
                        f["key"].as_str().unwrap_or(""),
                        f["error"].as_str().unwrap_or("")
                    ));
                }
                if units["failed"].as_u64().unwrap_or(0) > 20 {
                    println!("  ... most frequent errors:");
                    for e in units["errors"].as_array().into_iter().flatten() {
                        say(format!(
                            "    {} × {}",
                            e["count"],
                            e["error"].as_str().unwrap_or("")
                        ));
                    }
                }
            }
            for line in next {
                say(format!("next: {line}"));
            }
        }
    }
    Exit::Success
}

/// Orders steps for display: by start time, each unit's record directly followed by the steps
/// keyed under it (a unit and its first step often start in the same millisecond).
pub(super) fn timeline_order(steps: &mut [StepRecord]) {
    let unit_starts: std::collections::HashMap<String, u64> = steps
        .iter()
        .filter(|s| s.id.name == crate::engine::units::UNIT_STEP)
        .map(|s| (s.id.key.clone(), s.started_at_ms))
        .collect();
    let group = |s: &StepRecord| -> (u64, String, bool) {
        if s.id.name == crate::engine::units::UNIT_STEP {
            return (s.started_at_ms, s.id.key.clone(), false);
        }
        match s
            .id
            .key
            .split_once('/')
            .and_then(|(unit, _)| unit_starts.get(unit).map(|t| (unit, *t)))
        {
            Some((unit, start)) => (start, unit.to_owned(), true),
            None => (s.started_at_ms, String::new(), true),
        }
    };
    steps.sort_by_cached_key(|s| (group(s), s.started_at_ms, s.id.clone()));
}

/// The run's fan-out units, summarised: counts, the first 100 failures, the most frequent
/// errors. `None` when the run has no units.
fn units_summary(steps: &[StepRecord]) -> Option<Value> {
    let units: Vec<&StepRecord> = steps
        .iter()
        .filter(|s| s.id.name == crate::engine::units::UNIT_STEP)
        .collect();
    if units.is_empty() {
        return None;
    }
    let failed: Vec<&&StepRecord> = units
        .iter()
        .filter(|s| s.status == StepStatus::Failed)
        .collect();
    let mut by_error: std::collections::BTreeMap<&str, u64> = Default::default();
    for f in &failed {
        *by_error
            .entry(f.error.as_deref().unwrap_or(""))
            .or_default() += 1;
    }
    let mut errors: Vec<(&str, u64)> = by_error.into_iter().collect();
    errors.sort_by_key(|e| std::cmp::Reverse(e.1));
    Some(json!({
        "succeeded": units.iter().filter(|s| s.status == StepStatus::Succeeded).count(),
        "failed": failed.len(),
        "failures": failed.iter().take(100).map(|f| json!({ "key": f.id.key, "error": f.error })).collect::<Vec<_>>(),
        "errors": errors.into_iter().take(5).map(|(error, count)| json!({ "error": error, "count": count })).collect::<Vec<_>>(),
    }))
}

async fn retry_failed(
    app: &AppInfo,
    settings: &FlowSettings,
    op: &Operator,
    workflow: Option<String>,
    output: OutputFormat,
) -> Exit {
    let filter = RunFilter {
        status: Some(RunStatus::Failed),
        workflow,
        limit: None,
    };
    let failed = match op.list(&filter).await {
        Ok(runs) => runs,
        Err(e) => return fail_api(&e),
    };
    let mut results = Vec::new();
    let mut exit = Exit::Success;
    for run in failed {
        let result = match op.resume(&run.id, None).await {
            Ok(started) => match wait(settings, op, started).await {
                Waited::Ended(outcome, _) => outcome.map_err(|e| e.to_string()),
                Waited::Stopped { signal, in_grace } => {
                    return super::signals::report_stopped(app, &run.id, signal, in_grace)
                }
                Waited::Left(signal) => return signal.exit(),
                Waited::Failed(e) => Err(e.message),
                Waited::Exit(exit) => return exit,
            },
            Err(e) => Err(e.message),
        };
        if result.is_err() {
            exit = Exit::WorkflowFailed;
        }
        results.push((run.id, result));
    }
    match output {
        OutputFormat::Json => print_json(&json!(results
            .iter()
            .map(|(id, r)| match r {
                Ok(v) => json!({ "run_id": id, "status": "succeeded", "output": v }),
                Err(e) => json!({ "run_id": id, "status": "failed", "error": e }),
            })
            .collect::<Vec<_>>())),
        OutputFormat::Table => {
            if results.is_empty() {
                println!("no failed runs");
            }
            let mut t = table(&["RUN ID", "RESULT"]);
            for (id, r) in &results {
                add_row(
                    &mut t,
                    [
                        id.to_string(),
                        match r {
                            Ok(_) => "succeeded".to_owned(),
                            Err(e) => format!("failed again: {e}"),
                        },
                    ],
                );
            }
            if !results.is_empty() {
                println!("{t}");
            }
            if exit != Exit::Success {
                say(format!(
                    "see `{}` for each failure",
                    cmd(app, &["runs", "show", "<id>"])
                ));
            }
        }
    }
    exit
}

//! Alert delivery: sending the pending notices of stored alerts to their sinks.
//!
//! The store decides when an alert fires or resolves (in the commit that ends a run) and keeps
//! every notice's delivery state; this module reads the pending ones, sends them (the log, a
//! webhook, a command) and records each outcome right after the sink answered. A crash between
//! a sink accepting a notice and that record sends it once more: delivery is at least once, and
//! every notice carries the alert's stable id for the receiver to drop a repeat. One sink
//! failing never stops the others, the worker or a run.

use super::{Error, Flow};
use crate::console::settings::Secret;
use crate::store::{
    now_ms, AlertDetail, AlertFilter, AlertKind, AlertRecord, DeliveryOutcome, Notice, RunAlert,
    RunEnd, RunEndOutcome, Write,
};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

/// Where alerts go, and how hard delivery tries; set with [`crate::FlowBuilder::alerts`] (the
/// generated main reads `[flow.alerts]`). The log always receives every alert.
///
/// ```
/// use flow_runtime::{AlertSinks, Webhook};
/// use std::time::Duration;
/// let sinks = AlertSinks::new()
///     .webhook(Webhook::new("https://alerts.example.com/flow").timeout(Duration::from_secs(5)))
///     .cooldown(Duration::from_secs(3600));
/// ```
#[derive(Clone, Debug)]
pub struct AlertSinks {
    webhook: Option<Webhook>,
    command: Option<Vec<String>>,
    cooldown: Duration,
    attempts: u32,
    backoff: Duration,
    max_durations: BTreeMap<String, Option<Duration>>,
}

/// A webhook sink: an HTTP POST of the alert's JSON.
#[derive(Clone, Debug)]
pub struct Webhook {
    url: String,
    header: Option<(String, Secret)>,
    timeout: Duration,
    roots: Option<Vec<u8>>,
}

impl Webhook {
    /// POSTs to `url` (`https://` or `http://`), with a 5 s timeout. An `https://` URL is
    /// checked against the public (Mozilla) roots, and those of [`Webhook::root_certificates`].
    pub fn new(url: impl Into<String>) -> Webhook {
        Webhook {
            url: url.into(),
            header: None,
            timeout: Duration::from_secs(5),
            roots: None,
        }
    }

    /// Also trusts the CA certificates in `pem` (one or more `BEGIN CERTIFICATE` blocks), for
    /// a receiver whose certificate a private CA signed.
    pub fn root_certificates(mut self, pem: Vec<u8>) -> Webhook {
        self.roots = Some(pem);
        self
    }

    /// The HTTP client for this webhook: its own roots added to the public ones.
    fn client(&self) -> Result<reqwest::Client, String> {
        let mut builder = reqwest::Client::builder();
        if let Some(pem) = &self.roots {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("the webhook's CA certificates do not parse: {e}"))?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        builder
            .build()
            .map_err(|e| format!("the webhook's HTTP client could not be built: {e}"))
    }

    /// Sends header `name` with the value `secret` (never logged nor stored).
    pub fn header(mut self, name: impl Into<String>, secret: Secret) -> Webhook {
        self.header = Some((name.into(), secret));
        self
    }

    /// How long one attempt may take.
    pub fn timeout(mut self, timeout: Duration) -> Webhook {
        self.timeout = timeout;
        self
    }
}

impl Default for AlertSinks {
    fn default() -> Self {
        AlertSinks {
            webhook: None,
            command: None,
            cooldown: Duration::from_secs(3600),
            attempts: 10,
            backoff: Duration::from_secs(1),
            max_durations: BTreeMap::new(),
        }
    }
}

/// The longest wait between two attempts of one delivery.
const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// How long a command sink may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

impl AlertSinks {
    /// The log only; a 1 h cool-down; 10 attempts per delivery, 1 s apart and doubling.
    pub fn new() -> AlertSinks {
        AlertSinks::default()
    }

    /// Also POST every notice to `webhook`.
    pub fn webhook(mut self, webhook: Webhook) -> AlertSinks {
        self.webhook = Some(webhook);
        self
    }

    /// Also run `argv` (program and arguments) with every notice's JSON on standard input; exit
    /// status 0 means delivered.
    pub fn command(mut self, argv: Vec<String>) -> AlertSinks {
        self.command = Some(argv).filter(|a| !a.is_empty());
        self
    }

    /// No new consecutive-failures alert of a workflow fires within this long of its last one.
    pub fn cooldown(mut self, cooldown: Duration) -> AlertSinks {
        self.cooldown = cooldown;
        self
    }

    /// Attempts per delivery before it is marked failed (at least 1).
    pub fn attempts(mut self, attempts: u32) -> AlertSinks {
        self.attempts = attempts.max(1);
        self
    }

    /// The wait after the first failed attempt; it doubles after each one, up to 10 minutes.
    pub fn backoff(mut self, backoff: Duration) -> AlertSinks {
        self.backoff = backoff;
        self
    }

    /// Overrides the `max_duration` of workflow `workflow` (`None` turns its alert off): a
    /// worker alerts once about each run of it that has not finished this long after it was
    /// created.
    pub fn max_duration(
        mut self,
        workflow: impl Into<String>,
        limit: Option<Duration>,
    ) -> AlertSinks {
        self.max_durations.insert(workflow.into(), limit);
        self
    }

    /// The max duration that applies to `workflow`: the override, else its declared one.
    pub(crate) fn max_duration_of(
        &self,
        workflow: &super::registry::WorkflowMeta,
    ) -> Option<Duration> {
        match self.max_durations.get(workflow.name) {
            Some(limit) => *limit,
            None => workflow.max_duration_ms.map(Duration::from_millis),
        }
    }

    /// Whether settings override the `max_duration` of `workflow` (with a limit or `off`).
    pub(crate) fn overrides_max_duration(&self, workflow: &str) -> bool {
        self.max_durations.contains_key(workflow)
    }

    /// Whether a webhook sink is configured, and where it posts (without the query string,
    /// which may hold a token).
    pub(crate) fn webhook_url(&self) -> Option<String> {
        self.webhook
            .as_ref()
            .map(|w| match reqwest::Url::parse(&w.url) {
                Ok(mut url) => {
                    url.set_query(None);
                    let _ = url.set_password(None);
                    let _ = url.set_username("");
                    url.to_string()
                }
                Err(_) => w.url.clone(),
            })
    }

    /// The name of the webhook's secret header, if it sends one.
    pub(crate) fn webhook_header_name(&self) -> Option<&str> {
        self.webhook
            .as_ref()
            .and_then(|w| w.header.as_ref())
            .map(|(name, _)| name.as_str())
    }

    /// The cool-down between two consecutive-failures alerts of a workflow.
    pub(crate) fn cooldown_period(&self) -> Duration {
        self.cooldown
    }

    /// The command sink's program and arguments, if one is configured.
    pub(crate) fn command_argv(&self) -> Option<&[String]> {
        self.command.as_deref()
    }

    /// The configured sinks' names, `log` first.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut names = vec!["log".to_owned()];
        if self.webhook.is_some() {
            names.push("webhook".to_owned());
        }
        if self.command.is_some() {
            names.push("command".to_owned());
        }
        names
    }

    /// How long a claim to send a notice holds ([`DeliveryOutcome::Claimed`]): the longest
    /// attempt here and a margin. A process that dies while sending leaves its notices to
    /// others after that.
    fn delivery_lease(&self) -> Duration {
        let webhook = self.webhook.as_ref().map_or(Duration::ZERO, |w| w.timeout);
        let command = if self.command.is_some() {
            COMMAND_TIMEOUT
        } else {
            Duration::ZERO
        };
        webhook.max(command) + Duration::from_secs(5)
    }

    fn retry_after(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(20));
        self.backoff.saturating_mul(factor).min(MAX_BACKOFF)
    }
}

/// The alert part of the write that ends a run, if the run's end concerns alerts.
pub(crate) fn run_end(
    sinks: &AlertSinks,
    run: &crate::store::RunRecord,
    alert_after: Option<u32>,
) -> Option<Write> {
    let outcome = match run.status {
        crate::RunStatus::Succeeded => RunEndOutcome::Succeeded,
        crate::RunStatus::Failed => RunEndOutcome::Failed,
        crate::RunStatus::NeedsAttention => RunEndOutcome::NeedsAttention,
        crate::RunStatus::Cancelled => RunEndOutcome::Cancelled,
        _ => return None,
    };
    let error = match outcome {
        RunEndOutcome::NeedsAttention => run
            .attention
            .as_ref()
            .map(|a| format!("step {} is in doubt: {}", a.step, a.reason)),
        _ => run.error.clone(),
    };
    Some(Write::RunEnded(RunEnd {
        workflow: run.workflow.clone(),
        run_id: run.id.clone(),
        outcome,
        error,
        trace_id: run.trace_id.clone(),
        alert_after,
        cooldown_ms: sinks.cooldown.as_millis() as u64,
        sinks: sinks.names(),
        at_ms: now_ms(),
    }))
}

/// What one max-duration pass did ([`Flow::watch_max_durations`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MaxDurationPass {
    /// Alerts it asked the store to open (the store opens each once per run, so another
    /// worker may have opened some of them first).
    pub opened: u64,
    /// When a run can next be overdue (ms since the epoch): the earliest deadline of the runs
    /// it saw, or one max duration from now for runs not created yet; `None` when no workflow
    /// has a max duration.
    pub next_check_ms: Option<u64>,
}

/// What one delivery pass did ([`Flow::deliver_alerts`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliveryPass {
    /// Notices a sink accepted.
    pub delivered: u64,
    /// Attempts that failed (to be retried, or given up).
    pub failed: u64,
    /// When the next pending delivery is due (ms since the epoch), if any is left.
    pub next_due_ms: Option<u64>,
}

/// The JSON body of a notice, as documented in the README.
pub fn notice_body(alert: &AlertRecord, notice: Notice, program: &str) -> serde_json::Value {
    let last = alert.run_ids.last().map(|r| r.as_str()).unwrap_or_default();
    let mut body = json!({
        "alert_id": alert.id,
        "notice": notice.as_str(),
        "kind": alert.kind.as_str(),
        "workflow": alert.workflow,
        "state": match alert.state {
            crate::store::AlertState::Open => "open",
            crate::store::AlertState::Resolved => "resolved",
        },
        "run_ids": alert.run_ids,
        "failures": alert.failures,
        "error": alert.last_error,
        "trace_id": alert.trace_id,
        "created_at_ms": alert.created_at_ms,
        "resolved_at_ms": alert.resolved_at_ms,
        "resolved_by": alert.resolved_by,
        "inspect": format!("{program} runs show {last}"),
    });
    match &alert.detail {
        Some(AlertDetail::MaxDuration {
            max_duration_ms,
            run_created_at_ms,
            status,
        }) => {
            body["max_duration_ms"] = json!(max_duration_ms);
            body["run_created_at_ms"] = json!(run_created_at_ms);
            body["run_status"] = json!(status.as_str());
        }
        Some(AlertDetail::ErrorBudget(trip)) => body["budget"] = json!(trip),
        Some(AlertDetail::MissedTicks {
            schedule,
            count,
            first_ms,
            last_ms,
        }) => {
            body["schedule"] = json!(schedule);
            body["missed_ticks"] = json!(count);
            body["first_missed_tick"] = json!(crate::store::format_tick(*first_ms));
            body["last_missed_tick"] = json!(crate::store::format_tick(*last_ms));
            // No run to show: the schedule's state, and the command that runs what was missed
            body["inspect"] = json!(format!("{program} schedules list"));
            body["backfill"] = json!(format!(
                "{program} schedules backfill {schedule} --from {} --to {}",
                crate::store::format_tick(*first_ms),
                crate::store::format_tick(*last_ms)
            ));
        }
        None => {}
    }
    body
}

/// The alert that opens when a units fan-out's error budget trips in run `ctx`, with the
/// threshold, the counts and the first failed units' keys.
pub(crate) fn budget_alert(
    workflow: &str,
    run_id: &crate::RunId,
    trace_id: &str,
    trip: crate::store::BudgetTrip,
    first_error: Option<&str>,
    sinks: Vec<String>,
) -> Write {
    let mut error = format!(
        "error budget exceeded: {} ({} of {} units failed); no new units were started",
        trip.threshold, trip.failed, trip.processed
    );
    if let Some(first) = first_error {
        error.push_str(&format!("; first failure: {first}"));
    }
    Write::RunAlert(RunAlert {
        kind: AlertKind::ErrorBudget,
        workflow: workflow.to_owned(),
        run_id: run_id.clone(),
        trace_id: trace_id.to_owned(),
        error: Some(error),
        detail: Some(AlertDetail::ErrorBudget(trip)),
        sinks,
        at_ms: now_ms(),
    })
}

fn program() -> String {
    std::env::args_os()
        .next()
        .and_then(|p| {
            std::path::Path::new(&p)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "app".to_owned())
}

/// One attempt's result: `Err((message, permanent))`.
type Sent = Result<(), (String, bool)>;

impl Flow {
    /// Sends every pending alert notice that is due to the sinks this process knows, and
    /// records each outcome in the store. A notice for a sink not configured here stays pending
    /// for a process that has it. The worker calls this continuously; `run` once at its end.
    pub async fn deliver_alerts(&self) -> Result<DeliveryPass, Error> {
        let mut total = DeliveryPass::default();
        loop {
            let pass = self.deliver_claimed().await?;
            total.delivered += pass.delivered;
            total.failed += pass.failed;
            total.next_due_ms = pass.next_due_ms;
            // A "resolved" notice waits for its "fired" one: it is due once that one is sent
            if pass.delivered == 0 || pass.next_due_ms.is_none_or(|due| due > now_ms()) {
                return Ok(total);
            }
        }
    }

    /// One pass of [`Flow::deliver_alerts`]: claims the notices due now, sends them and
    /// records each outcome.
    async fn deliver_claimed(&self) -> Result<DeliveryPass, Error> {
        let sinks = self.inner.alerts.clone();
        let filter = AlertFilter {
            pending: true,
            ..AlertFilter::default()
        };
        let known = sinks.names();
        // Claim what is due first, in one write: of the processes that see the same pending
        // notice, the store lets one claim it, and only that one sends it
        let token = format!(
            "pid {} ({})",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        );
        let now = now_ms();
        let lease = sinks.delivery_lease().as_millis() as u64;
        let mut alerts = self.inner.store.alerts(&filter).await?;
        let claims: Vec<Write> = alerts
            .iter()
            .flat_map(|alert| {
                (0..alert.deliveries.len())
                    .filter(|&i| {
                        known.contains(&alert.deliveries[i].sink) && alert.sendable(i, now)
                    })
                    .map(|index| Write::AlertDelivery {
                        alert_id: alert.id.clone(),
                        index,
                        outcome: DeliveryOutcome::Claimed {
                            by: token.clone(),
                            until_ms: now + lease,
                        },
                    })
            })
            .collect();
        if !claims.is_empty() {
            self.inner.store.commit(claims).await?;
            alerts = self.inner.store.alerts(&filter).await?;
        }
        let program = program();
        let mut pass = DeliveryPass::default();
        let mut client = None;
        for mut alert in alerts.into_iter().rev() {
            for index in 0..alert.deliveries.len() {
                let d = &alert.deliveries[index];
                if !known.contains(&d.sink) {
                    continue;
                }
                let ours = d.state == crate::store::DeliveryState::Pending
                    && d.claimed_by.as_deref() == Some(token.as_str());
                if !ours {
                    if d.state == crate::store::DeliveryState::Pending {
                        pass.next_due_ms = Some(
                            pass.next_due_ms
                                .map_or(d.next_try_ms, |n| n.min(d.next_try_ms)),
                        );
                    }
                    continue;
                }
                let notice = d.notice;
                let body = notice_body(&alert, notice, &program);
                let sent = match d.sink.as_str() {
                    "log" => {
                        log_notice(&alert, notice, &body);
                        // Every alert has the log sink, which fires it once
                        if notice == Notice::Fired {
                            crate::metrics::alert_fired(alert.kind.as_str());
                        }
                        Ok(())
                    }
                    "webhook" => match &sinks.webhook {
                        Some(webhook) => {
                            if client.is_none() {
                                client = Some(webhook.client());
                            }
                            match &client {
                                Some(Ok(client)) => post(client, webhook, &body).await,
                                Some(Err(e)) => Err((e.clone(), true)),
                                None => continue,
                            }
                        }
                        None => continue,
                    },
                    "command" => match &sinks.command {
                        Some(argv) => run_command(argv, &body).await,
                        None => continue,
                    },
                    _ => continue,
                };
                let attempts = d.attempts + 1;
                let outcome = match sent {
                    Ok(()) => {
                        pass.delivered += 1;
                        DeliveryOutcome::Delivered
                    }
                    Err((error, permanent)) => {
                        pass.failed += 1;
                        if permanent || attempts >= sinks.attempts {
                            tracing::error!(alert_id = %alert.id, sink = %d.sink, attempts, error = %error, "alert delivery failed for good");
                            DeliveryOutcome::GaveUp { error }
                        } else {
                            let next_try_ms =
                                now_ms() + sinks.retry_after(attempts).as_millis() as u64;
                            tracing::warn!(alert_id = %alert.id, sink = %d.sink, attempts, error = %error, "alert delivery failed; it is tried again");
                            pass.next_due_ms =
                                Some(pass.next_due_ms.map_or(next_try_ms, |n| n.min(next_try_ms)));
                            DeliveryOutcome::Retry { next_try_ms, error }
                        }
                    }
                };
                crate::store::record_delivery(&mut alert, index, &outcome, now_ms());
                self.inner
                    .store
                    .commit(vec![Write::AlertDelivery {
                        alert_id: alert.id.clone(),
                        index,
                        outcome,
                    }])
                    .await?;
            }
            // A resolved notice that waited for its fired one may be due now
            if let Some(due) = alert.next_due_ms() {
                pass.next_due_ms = Some(pass.next_due_ms.map_or(due, |n| n.min(due)));
            }
        }
        Ok(pass)
    }

    /// Opens a `max-duration` alert for each run of this binary's workflows that has not
    /// finished its workflow's max duration after it was created (queued, running or
    /// sleeping), once per run however many workers look. The worker calls it again when the
    /// pass says (at the next deadline, at most once a second and at least once a minute). Runs are found through the
    /// store's indexes of unfinished runs ([`crate::store::Store::overdue_runs`]), and the
    /// store decides in one write whether an alert opens, so two workers that see the same run
    /// open one alert.
    pub async fn watch_max_durations(&self) -> Result<MaxDurationPass, Error> {
        let sinks = &self.inner.alerts;
        let now = now_ms();
        let limits: BTreeMap<&str, Duration> = super::registry::workflows()
            .into_iter()
            .filter_map(|w| Some((w.name, sinks.max_duration_of(w)?)))
            .collect();
        let Some(shortest) = limits.values().min() else {
            return Ok(MaxDurationPass::default());
        };
        // A run created from now on is due one max duration from now at the earliest
        let horizon = now.saturating_add(shortest.as_millis() as u64);
        let as_ms: Vec<(String, u64)> = limits
            .iter()
            .map(|(w, d)| ((*w).to_owned(), d.as_millis() as u64))
            .collect();
        let found = self.inner.store.overdue_runs(&as_ms, now, 1000).await?;
        let mut pass = MaxDurationPass {
            opened: 0,
            next_check_ms: Some(found.next_deadline_ms.map_or(horizon, |d| d.min(horizon))),
        };
        if found.runs.is_empty() {
            return Ok(pass);
        }
        let names = sinks.names();
        let writes: Vec<Write> = found
            .runs
            .iter()
            .filter_map(|run| {
                let limit = *limits.get(run.workflow.as_str())?;
                let age =
                    Duration::from_millis(now.saturating_sub(run.created_at_ms) / 1000 * 1000);
                Some(Write::RunAlert(RunAlert {
                    kind: AlertKind::MaxDuration,
                    workflow: run.workflow.clone(),
                    run_id: run.id.clone(),
                    trace_id: run.trace_id.clone(),
                    error: Some(format!(
                        "run {} has not finished {} after it was created (max_duration {}); it is {}",
                        run.id,
                        humantime::format_duration(age),
                        humantime::format_duration(limit),
                        run.status
                    )),
                    detail: Some(AlertDetail::MaxDuration {
                        max_duration_ms: limit.as_millis() as u64,
                        run_created_at_ms: run.created_at_ms,
                        status: run.status,
                    }),
                    sinks: names.clone(),
                    at_ms: now,
                }))
            })
            .collect();
        pass.opened = writes.len() as u64;
        self.inner.store.commit(writes).await?;
        self.inner.alerts_changed.notify_one();
        Ok(pass)
    }

    /// Delivers alerts until the task is dropped: after each pass, waits for the next due
    /// delivery, a run's end in this process, or a second (for other processes' alerts).
    pub(crate) async fn deliver_alerts_forever(self) {
        loop {
            let changed = self.inner.alerts_changed.notified();
            let wait = match self.deliver_alerts().await {
                Ok(pass) => pass
                    .next_due_ms
                    .map(|due| Duration::from_millis(due.saturating_sub(now_ms())))
                    .unwrap_or(Duration::from_secs(1))
                    .min(Duration::from_secs(1)),
                Err(e) => {
                    tracing::warn!(error = %e, "alert delivery could not read the store; it tries again");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

fn log_notice(alert: &AlertRecord, notice: Notice, body: &serde_json::Value) {
    let runs = alert
        .run_ids
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let error = alert.last_error.as_deref().unwrap_or("");
    match notice {
        Notice::Fired => tracing::error!(
            alert = true,
            alert_id = %alert.id,
            kind = alert.kind.as_str(),
            workflow = %alert.workflow,
            failures = alert.failures,
            runs = %runs,
            error = %error,
            trace_id = %alert.trace_id,
            inspect = %body["inspect"].as_str().unwrap_or_default(),
            max_duration_ms = body["max_duration_ms"].as_u64(),
            budget = body.get("budget").map(|b| tracing::field::display(b.to_string())),
            "alert fired"
        ),
        Notice::Resolved => tracing::warn!(
            alert = true,
            alert_id = %alert.id,
            kind = alert.kind.as_str(),
            workflow = %alert.workflow,
            resolved_by = %alert.resolved_by.as_ref().map(|r| r.as_str()).unwrap_or_default(),
            "alert resolved"
        ),
    }
}

async fn post(client: &reqwest::Client, webhook: &Webhook, body: &serde_json::Value) -> Sent {
    let mut request = client
        .post(&webhook.url)
        .timeout(webhook.timeout)
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some((name, secret)) = &webhook.header {
        let Ok(mut value) = reqwest::header::HeaderValue::from_str(secret.expose()) else {
            return Err((
                format!("the secret of the webhook header `{name}` is not a valid header value (it holds a control or non-ASCII character); fix flow.alerts.webhook.secret"),
                true,
            ));
        };
        // Kept out of reqwest's Debug output, and so out of any error or log line
        value.set_sensitive(true);
        request = request.header(name.as_str(), value);
    }
    match request.send().await {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => {
            let status = response.status();
            // A 4xx other than a timeout or a rate limit refuses this body for good
            let permanent = status.is_client_error()
                && status != reqwest::StatusCode::REQUEST_TIMEOUT
                && status != reqwest::StatusCode::TOO_MANY_REQUESTS;
            Err((format!("the webhook answered HTTP {status}"), permanent))
        }
        // Without the URL: it may hold a token in its query
        Err(e) => Err((
            format!("the webhook could not be reached: {}", e.without_url()),
            false,
        )),
    }
}

async fn run_command(argv: &[String], body: &serde_json::Value) -> Sent {
    use tokio::io::AsyncWriteExt;
    let Some((program, args)) = argv.split_first() else {
        return Err(("the alert command is empty".to_owned(), true));
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            (
                format!("the alert command `{program}` could not start: {e}"),
                false,
            )
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let mut line = body.to_string();
        line.push('\n');
        // A command that does not read its input may close it: its exit status decides
        let _ = stdin.write_all(line.as_bytes()).await;
    }
    match tokio::time::timeout(COMMAND_TIMEOUT, child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err((
            format!("the alert command `{program}` exited with {status}"),
            false,
        )),
        Ok(Err(e)) => Err((format!("the alert command `{program}` failed: {e}"), false)),
        Err(_) => Err((
            format!(
                "the alert command `{program}` took over {}s and was stopped",
                COMMAND_TIMEOUT.as_secs()
            ),
            false,
        )),
    }
}

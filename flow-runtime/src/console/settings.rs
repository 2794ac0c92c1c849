//! Settings: the framework's own (`[flow]`, `FLOW_*`) and the app's (`[app]`, `<PREFIX>*`),
//! layered defaults < `flow.toml` (or `--config`) < environment < command-line flags, then
//! validated all at once.
//!
//! This module loads, validates and describes settings (where each value came from); it never
//! prints them with secrets, and it does not act on them (the CLI does).

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use garde::Validate;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A secret setting (a token, a password). It never appears in logs, `--help`, `check-config`,
/// checkpoints or panic messages: `Debug`, `Display` and `Serialize` all print `[redacted]`.
/// Read it with [`Secret::expose`] where it is used.
///
/// Because it serializes as `[redacted]`, a secret cannot be a workflow input or a step
/// argument (the macros refuse it; pass it as a `skip` parameter or app state), and
/// deserializing the text `[redacted]` is an error: a stored placeholder never comes back as
/// the secret's value.
#[derive(Clone)]
pub struct Secret(secrecy::SecretString);

/// What a secret serializes as.
const REDACTED: &str = "[redacted]";

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = String::deserialize(d)?;
        if value == REDACTED {
            return Err(serde::de::Error::custom(
                "found the placeholder `[redacted]` where a secret's value belongs: a secret is never stored, so it cannot be read back from a checkpoint, a run's input or printed settings; give the real value (in `flow.toml` or an environment variable)",
            ));
        }
        Ok(Secret(value.into()))
    }
}

impl Secret {
    /// The secret's value. Call it where the value is used, never to log it.
    pub fn expose(&self) -> &str {
        secrecy::ExposeSecret::expose_secret(&self.0)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value.into())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

/// A secret may be required to be non-empty: `#[garde(custom(flow::non_empty_secret))]`.
pub fn non_empty_secret(secret: &Secret, _: &()) -> garde::Result {
    if secret.expose().is_empty() {
        return Err(garde::Error::new("must not be empty"));
    }
    Ok(())
}

/// How log lines look.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Pretty on a terminal, JSON otherwise.
    #[default]
    Auto,
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Whether other processes may open the store while this one runs workflows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SharingSetting {
    /// Every process opens the file in redb's multi-process mode (two fsyncs per commit).
    Shared,
    /// The process executing runs holds the file alone (one fsync per commit) and serves the
    /// operator API on `<store>.sock`; other commands go through it.
    #[default]
    Exclusive,
}

/// An override of a named retry policy; unset fields keep the built-in value.
#[derive(Clone, Debug, Default, Serialize, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct RetryOverride {
    /// Total attempts.
    #[garde(inner(range(min = 1, max = 1000)))]
    pub attempts: Option<u32>,
    /// First delay, such as `500ms`.
    #[garde(inner(custom(duration)))]
    pub initial: Option<String>,
    /// Largest delay, such as `30s`.
    #[garde(inner(custom(duration)))]
    pub max: Option<String>,
    /// Growth factor, at least 1.
    #[garde(inner(range(min = 1.0, max = 100.0)))]
    pub multiplier: Option<f64>,
    /// Full jitter.
    #[garde(skip)]
    pub jitter: Option<bool>,
}

/// One queue's limits (`[flow.queues.NAME]`); every limit is optional.
#[derive(Clone, Debug, Default, Serialize, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct QueueSetting {
    /// At most this many runs of the queue in flight across all workers.
    #[garde(inner(range(min = 1, max = 1_000_000)))]
    pub concurrency: Option<u32>,
    /// At most this many runs of the queue in flight in one worker.
    #[garde(inner(range(min = 1, max = 1_000_000)))]
    pub worker_concurrency: Option<u32>,
    /// At most this many runs in flight with the same concurrency key.
    #[garde(inner(range(min = 1, max = 1_000_000)))]
    pub per_key: Option<u32>,
    /// At most N starts per period, written `N/PERIOD`: `10/1m`, `100/1s`.
    #[garde(inner(custom(rate_setting)))]
    pub rate: Option<String>,
}

impl QueueSetting {
    /// The queue these settings declare.
    pub fn queue(&self) -> crate::Queue {
        crate::Queue {
            concurrency: self.concurrency,
            worker_concurrency: self.worker_concurrency,
            per_key: self.per_key,
            rate: self.rate.as_deref().and_then(|r| parse_rate(r).ok()),
        }
    }
}

/// `N/PERIOD`, such as `10/1m`.
pub(crate) fn parse_rate(value: &str) -> Result<(u32, std::time::Duration), String> {
    let hint = format!("`{value}` is not a rate such as `10/1m` (at most 10 starts a minute)");
    let (n, period) = value.split_once('/').ok_or_else(|| hint.clone())?;
    let n: u32 = n.trim().parse().map_err(|_| hint.clone())?;
    let period = humantime::parse_duration(period.trim()).map_err(|_| hint.clone())?;
    if n == 0 || period.is_zero() {
        return Err(format!("{hint}; both parts must be above zero"));
    }
    Ok((n, period))
}

fn rate_setting(value: &str, _: &()) -> garde::Result {
    parse_rate(value).map(|_| ()).map_err(garde::Error::new)
}

fn queue_names(queues: &BTreeMap<String, QueueSetting>, _: &()) -> garde::Result {
    for name in queues.keys() {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !ok {
            return Err(garde::Error::new(format!(
                "the queue name {name:?} is not 1 to 64 of the characters A-Z a-z 0-9 . _ -"
            )));
        }
    }
    Ok(())
}

fn parse_durability(value: &str) -> Result<crate::store::Durability, String> {
    let text = value.trim();
    if text.eq_ignore_ascii_case("strict") {
        return Ok(crate::store::Durability::Strict);
    }
    match humantime::parse_duration(text) {
        Ok(window) if window.is_zero() => Ok(crate::store::Durability::Strict),
        Ok(window) if window <= std::time::Duration::from_secs(10) => {
            Ok(crate::store::Durability::Window(window))
        }
        Ok(_) => Err(format!(
            "`{value}` is a window over 10s; a crash may lose that much of the steps' checkpoints: choose `strict` or a window such as `5ms`"
        )),
        Err(_) => Err(format!(
            "`{value}` is neither `strict` nor a window such as `5ms` or `20ms`"
        )),
    }
}

fn durability_setting(value: &str, _: &()) -> garde::Result {
    parse_durability(value)
        .map(|_| ())
        .map_err(garde::Error::new)
}

fn duration(value: &str, _: &()) -> garde::Result {
    humantime::parse_duration(value).map(|_| ()).map_err(|e| {
        garde::Error::new(format!(
            "`{value}` is not a duration such as `500ms` or `30s` ({e})"
        ))
    })
}

fn lease_setting(value: &str, _: &()) -> garde::Result {
    duration(value, &())?;
    let lease = humantime::parse_duration(value).unwrap_or_default();
    if lease < std::time::Duration::from_millis(200) {
        return Err(garde::Error::new(format!(
            "`{value}` is shorter than the shortest lease, 200ms; choose a lease longer than the pauses a process may see (30s is the default)"
        )));
    }
    Ok(())
}

/// A log filter in `RUST_LOG` syntax in which every directive names a level: `info`,
/// `warn,my_app=debug`. `EnvFilter` alone accepts any word as a target (`nonsense` means
/// "everything from the target `nonsense`"), which hides typos such as `inf` or `verbose`.
fn log_filter(value: &str, _: &()) -> garde::Result {
    let hint = "a log filter such as `info` or `warn,my_app=debug`";
    if let Err(e) = crate::console::telemetry::parse_filter(value) {
        return Err(garde::Error::new(format!("`{value}` is not {hint} ({e})")));
    }
    for directive in split_directives(value) {
        let directive = directive.trim();
        if directive.is_empty() {
            continue;
        }
        let level = match directive.rfind('=') {
            Some(eq) if directive[eq..].find(']').is_none() => &directive[eq + 1..],
            _ => directive,
        };
        if !is_level(level) {
            return Err(garde::Error::new(format!(
                "`{directive}` names no level; expected {hint}, with levels \
                 `trace`, `debug`, `info`, `warn`, `error` or `off`"
            )));
        }
    }
    Ok(())
}

/// The directives of a filter: commas inside `[...]` or `{...}` (span field filters) do not
/// separate directives.
fn split_directives(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in value.char_indices() {
        match c {
            '[' | '{' => depth += 1,
            ']' | '}' => depth -= 1,
            ',' if depth <= 0 => {
                out.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&value[start..]);
    out
}

fn is_level(word: &str) -> bool {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    let word = word.trim();
    LEVELS.iter().any(|l| l.eq_ignore_ascii_case(word))
        || matches!(word, "0" | "1" | "2" | "3" | "4" | "5")
}

/// The framework's settings: the `[flow]` table of `flow.toml`, `FLOW_*` variables.
#[derive(Clone, Debug, Serialize, Deserialize, Validate)]
#[serde(default)]
pub struct FlowSettings {
    /// The store: a redb file, or a PostgreSQL database given by a `postgres://` or
    /// `postgresql://` URL (`postgres://user@host:5432/db`; see [`FlowSettings::postgres`]).
    #[garde(custom(non_empty_path))]
    pub store: PathBuf,
    /// How the PostgreSQL store is reached when `store` is a URL (`[flow.postgres]`).
    #[garde(dive)]
    pub postgres: PostgresSettings,
    /// Whether operator processes may open the store while runs execute.
    #[garde(skip)]
    pub sharing: SharingSetting,
    /// Log format.
    #[garde(skip)]
    pub log_format: LogFormat,
    /// Log filter (`RUST_LOG` syntax); `RUST_LOG`, `-v` and `-q` override it.
    #[garde(custom(log_filter))]
    pub log_level: String,
    /// How long a stopping process (SIGTERM, SIGINT) lets the steps in flight finish before
    /// it exits anyway, such as `10s`. A second signal stops at once.
    #[garde(custom(duration))]
    pub shutdown_grace: String,
    /// When the checkpoints of repeat-safe steps reach the disk: `strict` (before each step
    /// returns) or a window such as `5ms` (within it; an `at_most_once` step, a run's start
    /// and end are always durable first).
    #[garde(custom(durability_setting))]
    pub durability: String,
    /// How long a process's claim of a run holds where other processes cannot check that it
    /// lives (workers on other machines sharing a PostgreSQL store), such as `30s`; renewed
    /// while the run executes. A process frozen or cut off longer than this loses its runs.
    #[garde(custom(lease_setting))]
    pub lease: String,
    /// Overrides of named retry policies, by name (`transient`).
    #[garde(dive)]
    pub retry: BTreeMap<String, RetryOverride>,
    /// The largest workflow input the CLI reads (`--input`, `--input-file`, stdin), such as
    /// `16MiB`, `512KiB` or `1000000`.
    #[garde(skip)]
    pub max_input_size: ByteSize,
    /// Queues and their limits, by name (`[flow.queues.syncs]`); `default` exists undeclared.
    #[garde(dive, custom(queue_names))]
    pub queues: BTreeMap<String, QueueSetting>,
    /// How long finished runs are kept: one duration for every finished status (`30d`) or a
    /// table per status (`succeeded`, `failed`, `cancelled`); `forever` (the default) keeps
    /// them. `runs prune` and the worker delete what is older.
    #[garde(skip)]
    pub retention: crate::engine::prune::Retention,
    /// Settings of the worker (queue, cron); reserved.
    #[garde(skip)]
    pub worker: serde_json::Value,
    /// Where alerts go (`[flow.alerts]`): a webhook, a command, the cool-down and retries.
    #[garde(dive)]
    pub alerts: super::alert_settings::AlertSettings,
    /// Schedules declared or overridden, by name (`[flow.schedules.nightly]`).
    #[garde(dive, custom(super::schedule_settings::schedule_names))]
    pub schedules: BTreeMap<String, super::schedule_settings::ScheduleSetting>,
    /// The app's version recorded on each run (`1.4.2`, a commit id), for `stats --compare
    /// --before-version A --after-version B`; the package version of the binary when unset.
    #[garde(custom(version_label))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
    /// Prometheus metrics (`[flow.metrics]`).
    #[garde(dive)]
    pub metrics: MetricsSettings,
    /// The web console (`[flow.ui]`): off unless `listen` is set.
    #[garde(dive)]
    pub ui: UiSettings,
    /// When `stats --compare` marks a change as worse (`[flow.stats]`); the command's flags
    /// override each.
    #[garde(dive)]
    pub stats: StatsSettings,
    /// OpenTelemetry traces (`[flow.otel]`): off unless `endpoint` is set; exported only by a
    /// binary built with the `otel` feature of flow-runtime.
    #[garde(dive)]
    pub otel: OtelSettings,
}

/// `[flow.stats]`: the thresholds of `stats --compare`'s "worse" mark.
#[derive(Clone, Debug, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct StatsSettings {
    /// A p95 duration that grew by more than this share is marked, such as `20%`.
    #[garde(custom(percent_setting))]
    pub latency_threshold: String,
    /// ... if it also grew by at least this much, such as `10ms`.
    #[garde(custom(duration))]
    pub min_change: String,
    /// An error rate that grew by more than this many points is marked, such as `5%`.
    #[garde(custom(percent_setting))]
    pub error_threshold: String,
}

impl Default for StatsSettings {
    fn default() -> Self {
        StatsSettings {
            latency_threshold: "20%".into(),
            min_change: "10ms".into(),
            error_threshold: "5%".into(),
        }
    }
}

impl StatsSettings {
    /// [`StatsSettings::latency_threshold`] as a share from 0 to 100.
    pub fn latency_threshold(&self) -> f64 {
        parse_percent(&self.latency_threshold).unwrap_or(20.0)
    }

    /// [`StatsSettings::min_change`] as a duration.
    pub fn min_change(&self) -> std::time::Duration {
        humantime::parse_duration(&self.min_change).unwrap_or(std::time::Duration::from_millis(10))
    }

    /// [`StatsSettings::error_threshold`] as a share from 0 to 100.
    pub fn error_threshold(&self) -> f64 {
        parse_percent(&self.error_threshold).unwrap_or(5.0)
    }
}

fn percent_setting(value: &str, _: &()) -> garde::Result {
    parse_percent(value).map(|_| ()).map_err(garde::Error::new)
}

/// A share written `5%`, `12.5%` or `100`, as a number from 0 to 100.
pub(crate) fn parse_percent(s: &str) -> Result<f64, String> {
    let number = s.strip_suffix('%').unwrap_or(s);
    let plain = match number.split_once('.') {
        Some((whole, fraction)) => {
            !whole.is_empty()
                && !fraction.is_empty()
                && whole
                    .bytes()
                    .chain(fraction.bytes())
                    .all(|b| b.is_ascii_digit())
        }
        None => !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()),
    };
    match number.parse::<f64>() {
        Ok(p) if plain && (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err("expected a share from 0% to 100%, written as a number with an optional `%`, such as `5%`, `12.5%` or `100`".to_owned()),
    }
}

/// `[flow.otel]`: where and how runs and steps are exported as OpenTelemetry spans (OTLP).
#[derive(Clone, Debug, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct OtelSettings {
    /// The collector's OTLP/HTTP address, such as `http://127.0.0.1:4318` (`/v1/traces` is
    /// added when the URL has no path) or a full URL such as
    /// `https://api.honeycomb.io/v1/traces`; unset (the default), nothing is exported.
    #[garde(custom(otel_endpoint))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The wire protocol: `http/protobuf` (the only one; a gRPC collector also listens for
    /// OTLP/HTTP, on port 4318).
    #[garde(custom(otel_protocol))]
    pub protocol: String,
    /// Headers sent with every export, such as an API key (`x-honeycomb-team`); values are
    /// secrets, never printed or logged.
    #[garde(custom(otel_headers))]
    pub headers: BTreeMap<String, Secret>,
    /// The `service.name` of the spans; the app's binary name when unset.
    #[garde(inner(length(min = 1, max = 255)))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// The share of runs traced, from 0.0 to 1.0, decided by the run's trace id (so every
    /// execution of a run, in any process, decides alike); a run started with a
    /// `traceparent` follows its caller's decision.
    #[garde(range(min = 0.0, max = 1.0))]
    pub sampling: f64,
    /// How often finished spans are sent, such as `1s`: what a killed process can lose.
    #[garde(custom(duration))]
    pub export_every: String,
}

impl Default for OtelSettings {
    fn default() -> Self {
        OtelSettings {
            endpoint: None,
            protocol: "http/protobuf".into(),
            headers: BTreeMap::new(),
            service_name: None,
            sampling: 1.0,
            export_every: "1s".into(),
        }
    }
}

impl OtelSettings {
    /// The URL spans are posted to: the endpoint, with `/v1/traces` added when it has no path.
    pub fn traces_url(&self) -> Option<String> {
        let endpoint = self.endpoint.as_deref()?.trim_end_matches('/');
        let after_scheme = endpoint
            .split_once("://")
            .map_or(endpoint, |(_, rest)| rest);
        Some(if after_scheme.contains('/') {
            endpoint.to_owned()
        } else {
            format!("{endpoint}/v1/traces")
        })
    }

    /// [`OtelSettings::export_every`] as a duration (validated when the settings load).
    pub fn export_every(&self) -> std::time::Duration {
        humantime::parse_duration(&self.export_every).unwrap_or(std::time::Duration::from_secs(1))
    }
}

fn otel_endpoint(value: &Option<String>, _: &()) -> garde::Result {
    let Some(v) = value else {
        return Ok(());
    };
    let host = v
        .strip_prefix("http://")
        .or_else(|| v.strip_prefix("https://"))
        .map(|rest| rest.split('/').next().unwrap_or(""));
    match host {
        None => Err(garde::Error::new(format!(
            "`{v}` must start with http:// or https://, such as `http://127.0.0.1:4318`"
        ))),
        Some("") => Err(garde::Error::new(format!(
            "`{v}` has no host; write it such as `http://127.0.0.1:4318`"
        ))),
        Some(_) if v.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            Err(garde::Error::new(format!(
                "`{}` holds a space or a control character",
                v.escape_debug()
            )))
        }
        Some(_) => Ok(()),
    }
}

fn otel_protocol(value: &str, _: &()) -> garde::Result {
    match value {
        "http/protobuf" => Ok(()),
        "grpc" => Err(garde::Error::new(
            "`grpc` is not supported: flow exports with `http/protobuf`; point `endpoint` at the collector's OTLP/HTTP port (4318 by default) instead of its gRPC port (4317)",
        )),
        other => Err(garde::Error::new(format!(
            "`{other}` is not a protocol flow exports with; use `http/protobuf`"
        ))),
    }
}

fn otel_headers(headers: &BTreeMap<String, Secret>, _: &()) -> garde::Result {
    for (name, value) in headers {
        let token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            return Err(garde::Error::new(format!(
                "the header name {name:?} is not an HTTP header name (letters, digits and - such as `x-api-key`)"
            )));
        }
        // The value is a secret: say which header, never what it holds
        if !value
            .expose()
            .bytes()
            .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
        {
            return Err(garde::Error::new(format!(
                "the value of header `{name}` holds a character an HTTP header cannot carry (a line break, a control or non-ASCII character)"
            )));
        }
    }
    Ok(())
}

/// `[flow.metrics]`: where a worker serves `GET /metrics` over HTTP.
#[derive(Clone, Debug, Default, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// The address to listen on, such as `127.0.0.1:9464`; unset (the default), no listener
    /// (the metrics are still served through the worker's operator socket: `app metrics`).
    #[garde(custom(listen_address))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
}

fn listen_address(value: &Option<String>, _: &()) -> garde::Result {
    match value {
        Some(text) if text.parse::<std::net::SocketAddr>().is_err() => Err(garde::Error::new(
            format!("`{text}` is not an address and port such as `127.0.0.1:9464` (or `0.0.0.0:9464` to accept scrapes from other machines)"),
        )),
        _ => Ok(()),
    }
}

/// `[flow.ui]`: the web console that `worker` serves beside its work (and `ui` alone).
#[derive(Clone, Debug, Default, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct UiSettings {
    /// Where the worker serves the console, such as `127.0.0.1:8080`; off when absent. Any
    /// address other than a loopback one requires `token`.
    #[garde(custom(listen_setting))]
    pub listen: Option<String>,
    /// The bearer token every request must carry (`Authorization: Bearer ...`) when the
    /// console listens beyond loopback; better given as FLOW_UI__TOKEN than in the file.
    #[garde(custom(token_setting))]
    pub token: Option<Secret>,
    /// A trace viewer's URL with `{trace_id}` in it, such as
    /// `http://jaeger:16686/trace/{trace_id}`: the run page links the trace id there.
    #[garde(custom(trace_url_setting))]
    pub trace_url: Option<String>,
}

fn listen_setting(value: &Option<String>, _: &()) -> garde::Result {
    match value {
        Some(v) if v.parse::<std::net::SocketAddr>().is_err() => Err(garde::Error::new(format!(
            "`{v}` is not an address and port such as `127.0.0.1:8080`"
        ))),
        _ => Ok(()),
    }
}

fn token_setting(value: &Option<Secret>, _: &()) -> garde::Result {
    match value {
        Some(t) if t.expose().len() < 16 => Err(garde::Error::new(
            "is shorter than 16 characters; use a long random value (`openssl rand -hex 32`)",
        )),
        Some(t) if !t.expose().bytes().all(|b| b.is_ascii_graphic()) => Err(garde::Error::new(
            "must be printable ASCII without spaces (it travels in an HTTP header)",
        )),
        _ => Ok(()),
    }
}

/// A version as runs record it: a short label of printable characters, without spaces.
fn version_label(value: &Option<String>, _: &()) -> garde::Result {
    let Some(value) = value else {
        return Ok(());
    };
    if value.is_empty() {
        return Err(garde::Error::new(
            "must not be empty; leave it out to record the package version",
        ));
    }
    if value.chars().count() > 64 {
        return Err(garde::Error::new(
            "is longer than 64 characters; use a release number or a commit id such as `1.4.2` or `9f3c2ab`",
        ));
    }
    if let Some(c) = value.chars().find(|c| c.is_whitespace() || c.is_control()) {
        let what = if c == ' ' {
            "a space".to_owned()
        } else {
            format!("the character {c:?}")
        };
        return Err(garde::Error::new(format!(
            "holds {what}; a version has no spaces or control characters, such as `1.4.2` or `9f3c2ab`"
        )));
    }
    Ok(())
}

fn trace_url_setting(value: &Option<String>, _: &()) -> garde::Result {
    match value {
        Some(v) if !(v.starts_with("http://") || v.starts_with("https://")) => Err(
            garde::Error::new(format!("`{v}` must start with http:// or https://")),
        ),
        Some(v) if !v.contains("{trace_id}") => Err(garde::Error::new(format!(
            "`{v}` must contain `{{trace_id}}`, where the run's trace id goes"
        ))),
        _ => Ok(()),
    }
}

/// A size in bytes, written in settings as `16MiB`, `512 KiB`, `10MB` or a plain number of bytes:
/// a whole number and an optional unit, B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers
/// of 1024), in any case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        match n {
            0 => f.write_str("0"),
            n if n % (1 << 30) == 0 => write!(f, "{}GiB", n >> 30),
            n if n % (1 << 20) == 0 => write!(f, "{}MiB", n >> 20),
            n if n % (1 << 10) == 0 => write!(f, "{}KiB", n >> 10),
            n => write!(f, "{n}B"),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as `16MiB`, `512KiB`, `10MB` or `1000` (bytes)")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(n))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<ByteSize, E> {
                u64::try_from(n)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<ByteSize, E> {
                byte_size(text).map(ByteSize).map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

fn byte_size(value: &str) -> Result<u64, String> {
    let text = value.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000 * 1000,
        "gb" => 1000 * 1000 * 1000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => 0,
    };
    match number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
    {
        Some(bytes) if scale > 0 => Ok(bytes),
        _ => Err(format!(
            "`{value}` is not a size such as `16MiB`, `512KiB`, `10MB` or `1000` (bytes)"
        )),
    }
}

fn non_empty_path(path: &Path, _: &()) -> garde::Result {
    if path.as_os_str().is_empty() {
        return Err(garde::Error::new("must not be empty"));
    }
    Ok(())
}

impl Default for FlowSettings {
    fn default() -> Self {
        FlowSettings {
            store: PathBuf::from("flow.redb"),
            postgres: PostgresSettings::default(),
            sharing: SharingSetting::Exclusive,
            log_format: LogFormat::Auto,
            log_level: "info".into(),
            shutdown_grace: "10s".into(),
            durability: "5ms".into(),
            lease: "30s".into(),
            retry: BTreeMap::new(),
            queues: BTreeMap::new(),
            max_input_size: ByteSize(16 << 20),
            retention: crate::engine::prune::Retention::FOREVER,
            worker: serde_json::Value::Object(Default::default()),
            alerts: Default::default(),
            schedules: BTreeMap::new(),
            app_version: None,
            metrics: MetricsSettings::default(),
            ui: UiSettings::default(),
            stats: StatsSettings::default(),
            otel: OtelSettings::default(),
        }
    }
}

/// `[flow.postgres]`: the PostgreSQL store's pool, schema and password.
#[derive(Clone, Debug, Serialize, Deserialize, Validate)]
#[serde(default)]
pub struct PostgresSettings {
    /// Connections in the pool, the group-commit writer's included.
    #[garde(range(min = 2, max = 1000))]
    pub pool_size: u32,
    /// The schema holding flow's tables: ASCII letters, digits and `_`, not starting with a
    /// digit, at most 63 characters. Several stores can share a database, each in a schema.
    #[garde(custom(schema_name))]
    pub schema: String,
    /// The password, where the URL has none (`FLOW_POSTGRES__PASSWORD`).
    #[garde(skip)]
    pub password: Option<Secret>,
    /// The CA certificates (a PEM file) that sign the server's certificate, trusted by
    /// `sslmode=verify-full`, `verify-ca` and `require` in the URL instead of the bundled
    /// Mozilla roots.
    #[garde(inner(custom(super::alert_settings::ca_file_setting)))]
    pub ca_file: Option<PathBuf>,
}

impl Default for PostgresSettings {
    fn default() -> Self {
        PostgresSettings {
            pool_size: 16,
            schema: "flow".into(),
            password: None,
            ca_file: None,
        }
    }
}

fn schema_name(name: &str, _: &()) -> garde::Result {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if valid {
        return Ok(());
    }
    Err(garde::Error::new(format!(
        "`{name}` is not a schema name flow accepts: use ASCII letters, digits and `_`, not starting with a digit, at most 63 characters (such as `flow` or `flow_staging`)"
    )))
}

impl FlowSettings {
    /// The PostgreSQL URL, when `store` is one (`postgres://` or `postgresql://`); `None`
    /// for a redb file.
    pub(crate) fn postgres_url(&self) -> Option<&str> {
        let text = self.store.to_str()?;
        (text.starts_with("postgres://") || text.starts_with("postgresql://")).then_some(text)
    }

    /// [`FlowSettings::shutdown_grace`] as a duration (validated when the settings load).
    pub fn shutdown_grace(&self) -> std::time::Duration {
        humantime::parse_duration(&self.shutdown_grace)
            .unwrap_or(std::time::Duration::from_secs(10))
    }

    /// [`FlowSettings::lease`] as a duration (validated when the settings load).
    pub fn lease(&self) -> std::time::Duration {
        humantime::parse_duration(&self.lease).unwrap_or(crate::engine::DEFAULT_LEASE)
    }

    /// [`FlowSettings::durability`] (validated when the settings load).
    pub fn durability(&self) -> crate::store::Durability {
        parse_durability(&self.durability).unwrap_or_default()
    }

    /// The declared queues.
    pub fn queues(&self) -> Vec<(String, crate::Queue)> {
        self.queues
            .iter()
            .map(|(name, q)| (name.clone(), q.queue()))
            .collect()
    }

    /// The retry policies with the overrides applied.
    pub fn retry_policies(&self) -> crate::RetryPolicies {
        let mut policies = crate::RetryPolicies::default();
        for (name, o) in &self.retry {
            let mut policy = policies
                .get(name)
                .cloned()
                .unwrap_or(crate::RetryPolicy::TRANSIENT);
            let parse =
                |s: &Option<String>| s.as_deref().and_then(|s| humantime::parse_duration(s).ok());
            policy.attempts = o.attempts.unwrap_or(policy.attempts);
            policy.initial = parse(&o.initial).unwrap_or(policy.initial);
            policy.max = parse(&o.max).unwrap_or(policy.max);
            policy.multiplier = o.multiplier.unwrap_or(policy.multiplier);
            policy.jitter = o.jitter.unwrap_or(policy.jitter);
            policies.set(name.clone(), policy);
        }
        policies
    }
}

/// One bad setting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SettingProblem {
    /// The setting, such as `app.batch_size`.
    pub key: String,
    /// What is wrong.
    pub problem: String,
    /// Where the value came from, such as `environment variable SYNC_BATCH_SIZE`.
    pub source: String,
}

impl fmt::Display for SettingProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (from {})", self.key, self.problem, self.source)
    }
}

/// The settings variables whose value figment's parser cannot read: it slices a quoted value
/// at a backslash by character count, not byte offset, and panics when a non-ASCII character
/// comes before the backslash (figment 0.10). Such a value is refused with the variable's name
/// (never its value, which may be a secret) instead of reaching the parser.
fn unreadable_env_values(app_prefix: &str) -> Vec<SettingProblem> {
    let breaks_parser = |value: &str| value.find('\\').is_some_and(|at| !value[..at].is_ascii());
    std::env::vars_os()
        .filter_map(|(name, value)| {
            let name = name.to_str()?.to_owned();
            let ours = name.starts_with("FLOW_")
                || (!app_prefix.is_empty() && name.starts_with(app_prefix));
            (ours && value.to_str().is_some_and(breaks_parser)).then(|| SettingProblem {
                key: name.clone(),
                problem: "holds a non-ASCII character before a backslash, which the settings parser cannot read; write the backslash as part of a TOML file value instead, or remove it".into(),
                source: format!("environment variable {name}"),
            })
        })
        .collect()
}

/// The retry policies that steps can name, so the only ones settings can tune.
const RETRY_POLICY_NAMES: [&str; 2] = ["transient", "none"];

/// Where settings come from.
pub struct SettingsSource {
    figment: Figment,
    app_prefix: String,
    file: Option<SettingsFile>,
}

/// The settings file as parsed here, kept to name the line of each key in messages.
struct SettingsFile {
    doc: toml_edit::ImDocument<String>,
}

/// Values set by command-line flags; the type's name tells their source apart from defaults.
#[derive(Serialize)]
#[serde(transparent)]
struct CommandLine<'a>(&'a serde_json::Value);

/// Loaded, validated settings and where each value came from.
pub struct Loaded<S> {
    /// The framework's settings.
    pub flow: FlowSettings,
    /// The app's settings.
    pub app: S,
    /// Problems that do not stop the process: environment variables with the settings' prefix
    /// that are no setting but look like a misspelt one.
    pub warnings: Vec<SettingProblem>,
    source: SettingsSource,
}

impl SettingsSource {
    /// Layers defaults < `config` (a TOML file; a missing default `flow.toml` is fine) <
    /// environment < `overrides` (from command-line flags, as `flow.*` keys).
    ///
    /// The file is parsed here first: a syntax error is reported once, by file, line and column,
    /// and never with the text of the line, which may hold a secret.
    pub fn new(
        config: &Path,
        config_required: bool,
        app_prefix: &str,
        overrides: &[(&str, serde_json::Value)],
    ) -> Result<SettingsSource, Vec<SettingProblem>> {
        if config_required && !config.is_file() {
            return Err(vec![SettingProblem {
                key: "--config".into(),
                problem: format!("no settings file at {}", config.display()),
                source: "the command line".into(),
            }]);
        }
        let file = if config_required || config.exists() {
            Some(SettingsFile::read(config).map_err(|problem| vec![problem])?)
        } else {
            None
        };
        let unreadable = unreadable_env_values(app_prefix);
        if !unreadable.is_empty() {
            return Err(unreadable);
        }
        let mut figment = Figment::new()
            .merge(Serialized::default("flow", FlowSettings::default()))
            .merge(Serialized::default("app", serde_json::json!({})));
        if file.is_some() {
            figment = figment.merge(Toml::file(config));
        }
        figment = figment
            .merge(
                Env::prefixed("FLOW_")
                    .split("__")
                    .map(|key| format!("flow.{key}").into()),
            )
            .merge(
                Env::prefixed(app_prefix)
                    .split("__")
                    .map(|key| format!("app.{key}").into()),
            );
        for (key, value) in overrides {
            figment = figment.merge(Serialized::default(key, CommandLine(value)));
        }
        Ok(SettingsSource {
            figment,
            app_prefix: app_prefix.to_owned(),
            file,
        })
    }

    /// Where the value at `key` (`app.batch_size`) came from: `default`, `file flow.toml, line
    /// 3`, `environment variable SYNC_BATCH_SIZE` or `the command line`.
    pub fn source_of(&self, key: &str) -> String {
        let path: Vec<String> = key.split('.').map(str::to_owned).collect();
        self.source_at(&path)
    }

    fn source_at(&self, path: &[String]) -> String {
        let Ok(root) = self.figment.find_value("") else {
            return "default".into();
        };
        let mut value = &root;
        for key in path {
            match value {
                figment::value::Value::Dict(_, dict) => match dict.get(key) {
                    Some(inner) => value = inner,
                    None => return "default".into(),
                },
                _ => return "default".into(),
            }
        }
        let Some(meta) = self.figment.get_metadata(value.tag()) else {
            return "default".into();
        };
        if let Some(figment::Source::File(file)) = &meta.source {
            let line = self
                .file
                .as_ref()
                .and_then(|f| f.line_of(path))
                .map(|line| format!(", line {line}"))
                .unwrap_or_default();
            return format!("file {}{line}", file.display());
        }
        if meta.name.contains("environment") {
            return format!("environment variable {}", self.env_var(path));
        }
        if meta.name.contains("CommandLine") {
            return "the command line".into();
        }
        "default".into()
    }

    /// The environment variable that sets `path` (`FLOW_RETRY__TRANSIENT__ATTEMPTS`).
    fn env_var(&self, path: &[String]) -> String {
        let (prefix, rest) = match path.split_first() {
            Some((table, rest)) if table == "flow" => ("FLOW_", rest),
            Some((_, rest)) => (self.app_prefix.as_str(), rest),
            None => ("", path),
        };
        format!("{prefix}{}", rest.join("__").to_uppercase())
    }

    fn set_by_environment(&self, path: &[String]) -> bool {
        self.source_at(path).starts_with("environment variable")
    }

    /// Extracts and validates both tables, reporting every problem found, each once.
    pub fn load<S: DeserializeOwned + Serialize + Validate<Context = ()>>(
        self,
    ) -> Result<Loaded<S>, Vec<SettingProblem>> {
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        self.check_tables(&mut problems);
        let flow = self.extract::<FlowSettings>("flow", &mut problems, &mut warnings);
        self.check_retry_names(&mut problems);
        let app = self.extract::<S>("app", &mut problems, &mut warnings);
        match (flow, app) {
            (Some(flow), Some(app)) if problems.is_empty() => Ok(Loaded {
                flow,
                app,
                warnings,
                source: self,
            }),
            // Nothing runs: a likely misspelt variable may be the cause, so it is listed too.
            _ => {
                problems.extend(warnings);
                Err(problems)
            }
        }
    }

    /// Only `[flow]` and `[app]` may appear at the top of the file.
    fn check_tables(&self, problems: &mut Vec<SettingProblem>) {
        let Ok(figment::value::Value::Dict(_, root)) = self.figment.find_value("") else {
            return;
        };
        for key in root.keys() {
            if key != "flow" && key != "app" {
                let path = vec![key.clone()];
                problems.push(SettingProblem {
                    key: key.clone(),
                    problem: unknown_key(key, &["flow", "app"]),
                    source: self.source_at(&path),
                });
            }
        }
    }

    /// `[flow.retry.NAME]` may only tune the policies that steps can name.
    fn check_retry_names(&self, problems: &mut Vec<SettingProblem>) {
        let Ok(figment::value::Value::Dict(_, retry)) = self.figment.find_value("flow.retry")
        else {
            return;
        };
        for name in retry.keys() {
            if RETRY_POLICY_NAMES.contains(&name.as_str()) {
                continue;
            }
            let path = vec!["flow".to_owned(), "retry".to_owned(), name.clone()];
            let known = RETRY_POLICY_NAMES
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let mut problem = format!("unknown retry policy `{name}`; the known ones are {known}");
            if let Some(close) = closest(name, &RETRY_POLICY_NAMES) {
                problem.push_str(&format!(" (did you mean `{close}`?)"));
            }
            problems.push(SettingProblem {
                key: path.join("."),
                problem,
                source: self.source_at(&path),
            });
        }
    }

    /// Deserializes one table. A bad value is reported and taken out (its field falls back to
    /// its default) and the table is read again, so that every bad field is reported, not only
    /// the first; then the fields are validated and keys that are no setting are reported.
    fn extract<T: DeserializeOwned + Serialize + Validate<Context = ()>>(
        &self,
        table: &str,
        problems: &mut Vec<SettingProblem>,
        warnings: &mut Vec<SettingProblem>,
    ) -> Option<T> {
        let prefix = [table.to_owned()];
        let before = problems.len();
        let original = match self.figment.find_value(table) {
            Ok(value) => value,
            Err(e) => {
                problems.push(SettingProblem {
                    key: table.to_owned(),
                    problem: describe(&e.kind),
                    source: self.source_at(&prefix),
                });
                return None;
            }
        };
        let mut value = original;
        let mut removed: Vec<Vec<String>> = Vec::new();
        let parsed = loop {
            let errors = match T::deserialize(&value) {
                Ok(parsed) => break Some(parsed),
                Err(errors) => errors,
            };
            let mut progressed = false;
            for error in errors {
                if let figment::error::Kind::MissingField(field) = &error.kind {
                    let mut missing = error.path.clone();
                    missing.push(field.to_string());
                    if removed.contains(&missing) {
                        // Its bad value is already reported.
                        continue;
                    }
                }
                let path: Vec<String> = prefix.iter().chain(&error.path).cloned().collect();
                let unknown_from_env = matches!(error.kind, figment::error::Kind::UnknownField(..))
                    && self.set_by_environment(&path);
                let problem = SettingProblem {
                    key: path.join("."),
                    problem: describe(&error.kind),
                    source: self.source_at(&path),
                };
                if unknown_from_env {
                    warnings.push(problem);
                } else {
                    problems.push(problem);
                }
                if !error.path.is_empty() && remove(&mut value, &error.path) {
                    removed.push(error.path.clone());
                    progressed = true;
                }
            }
            if !progressed {
                break None;
            }
        };
        let parsed = parsed?;
        if let Err(report) = parsed.validate() {
            for (path, error) in report.iter() {
                let path = path.to_string();
                let relative: Vec<String> = if path.is_empty() {
                    Vec::new()
                } else {
                    path.split('.').map(str::to_owned).collect()
                };
                if removed.iter().any(|r| relative.starts_with(r)) {
                    continue;
                }
                let full: Vec<String> = prefix.iter().chain(&relative).cloned().collect();
                problems.push(SettingProblem {
                    key: full.join("."),
                    problem: error.message().to_owned(),
                    source: self.source_at(&full),
                });
            }
        }
        if let Ok(known) = serde_json::to_value(&parsed) {
            self.unknown_keys(&prefix, &value, &known, problems, warnings);
        }
        if problems.len() == before {
            Some(parsed)
        } else {
            None
        }
    }

    /// Keys given but not read: compares what was given with what the parsed settings serialize
    /// back to. A misspelt key in a file is an error. The environment is shared with other
    /// programs, so an unknown variable with the prefix is ignored unless it looks like a
    /// misspelt setting, which is a warning.
    fn unknown_keys(
        &self,
        path: &[String],
        given: &figment::value::Value,
        known: &serde_json::Value,
        problems: &mut Vec<SettingProblem>,
        warnings: &mut Vec<SettingProblem>,
    ) {
        let (figment::value::Value::Dict(_, given), serde_json::Value::Object(known)) =
            (given, known)
        else {
            return;
        };
        let names: Vec<&str> = known.keys().map(String::as_str).collect();
        for (key, value) in given {
            let mut inner = path.to_vec();
            inner.push(key.clone());
            match known.get(key) {
                Some(known) => self.unknown_keys(&inner, value, known, problems, warnings),
                None => {
                    let source = self.source_at(&inner);
                    if source.starts_with("environment variable") {
                        if let Some(close) = closest(key, &names) {
                            let mut suggestion = path.to_vec();
                            suggestion.push(close.to_owned());
                            warnings.push(SettingProblem {
                                key: inner.join("."),
                                problem: format!(
                                    "no such setting, ignored; did you mean {}?",
                                    self.env_var(&suggestion)
                                ),
                                source,
                            });
                        }
                        continue;
                    }
                    problems.push(SettingProblem {
                        key: inner.join("."),
                        problem: unknown_key(key, &names),
                        source,
                    });
                }
            }
        }
    }
}

impl SettingsFile {
    /// Reads and parses the file; a problem names the file and the line, never the text.
    fn read(path: &Path) -> Result<SettingsFile, SettingProblem> {
        let file_problem = |problem: String, source: String| SettingProblem {
            key: "settings file".into(),
            problem,
            source,
        };
        let name = format!("file {}", path.display());
        let bytes = std::fs::read(path)
            .map_err(|e| file_problem(format!("cannot be read: {e}"), name.clone()))?;
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                let (line, _) = position(e.as_bytes(), at);
                return Err(file_problem(
                    "is not UTF-8 text".into(),
                    format!("{name}, line {line}"),
                ));
            }
        };
        match toml_edit::ImDocument::parse(text.clone()) {
            Ok(doc) => Ok(SettingsFile { doc }),
            Err(e) => {
                let at = e.span().map(|s| s.start).unwrap_or(0);
                let (line, column) = position(text.as_bytes(), at);
                // The parser's message names what it expected, never the text it found.
                let message = e.message().trim().replace('\n', "; ");
                Err(SettingProblem {
                    key: key_at_line(&text, at).unwrap_or_else(|| "settings file".into()),
                    problem: format!("not valid TOML: {message}"),
                    source: format!("{name}, line {line}, column {column}"),
                })
            }
        }
    }

    /// The line of `path`'s key in the file, if it is written there.
    fn line_of(&self, path: &[String]) -> Option<usize> {
        let (last, parents) = path.split_last()?;
        let mut table: &dyn toml_edit::TableLike = self.doc.as_table();
        for key in parents {
            table = table.get(key)?.as_table_like()?;
        }
        let span = table
            .key(last)
            .and_then(toml_edit::Key::span)
            .or_else(|| table.get(last).and_then(toml_edit::Item::span))?;
        Some(position(self.doc.raw().as_bytes(), span.start).0)
    }
}

/// The 1-based line and column of byte `at`.
fn position(text: &[u8], at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = &text[..at];
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let column = String::from_utf8_lossy(&text[line_start..at])
        .chars()
        .count()
        + 1;
    (line, column)
}

/// The key (`app.token`) whose line holds a syntax error, when the text before that line is a
/// valid document (so the line starts a statement rather than continuing a multi-line string)
/// and the line starts with `key =`.
fn key_at_line(text: &str, at: usize) -> Option<String> {
    let at = at.min(text.len());
    let line_start = text.get(..at)?.rfind('\n').map_or(0, |i| i + 1);
    let before = toml_edit::ImDocument::parse(text.get(..line_start)?.to_owned()).ok()?;
    let line = text.get(line_start..)?.lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    let bare = |k: &str| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if !key.split('.').all(|k| bare(k.trim())) {
        return None;
    }
    let mut path = current_table(&before);
    path.extend(key.split('.').map(|k| k.trim().to_owned()));
    Some(path.join("."))
}

/// The table the next line of a document belongs to: the explicit `[table]` header written
/// last.
fn current_table(doc: &toml_edit::ImDocument<String>) -> Vec<String> {
    fn visit(table: &toml_edit::Table, path: &mut Vec<String>, best: &mut (usize, Vec<String>)) {
        for (key, item) in table.iter() {
            path.push(key.to_owned());
            if let Some(inner) = item.as_table() {
                if let Some(span) = inner.span() {
                    if span.start >= best.0 {
                        *best = (span.start, path.clone());
                    }
                }
                visit(inner, path, best);
            }
            path.pop();
        }
    }
    let mut best = (0, Vec::new());
    visit(doc.as_table(), &mut Vec::new(), &mut best);
    best.1
}

/// Takes the value at `path` out of a table; false if there is none.
fn remove(value: &mut figment::value::Value, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut value = value;
    for key in parents {
        match value {
            figment::value::Value::Dict(_, dict) => match dict.get_mut(key) {
                Some(inner) => value = inner,
                None => return false,
            },
            _ => return false,
        }
    }
    match value {
        figment::value::Value::Dict(_, dict) => dict.remove(last).is_some(),
        _ => false,
    }
}

/// What is wrong, in words that never repeat the value: the value may be a secret.
fn describe(kind: &figment::error::Kind) -> String {
    use figment::error::Kind;
    match kind {
        Kind::InvalidType(actual, expected) => {
            format!("expected {expected}, found {}", what(actual))
        }
        Kind::InvalidValue(actual, expected) => {
            format!("invalid value ({}): expected {expected}", what(actual))
        }
        Kind::InvalidLength(len, expected) => {
            format!("invalid length {len}: expected {expected}")
        }
        Kind::UnknownVariant(_, expected) => format!(
            "unknown value; expected one of {}",
            expected
                .iter()
                .map(|v| format!("`{v}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Kind::UnknownField(field, expected) => unknown_key(field, expected),
        Kind::MissingField(field) => format!("missing `{field}`, which has no default"),
        Kind::DuplicateField(field) => format!("`{field}` is given twice"),
        Kind::ISizeOutOfRange(_) | Kind::USizeOutOfRange(_) => "number out of range".into(),
        Kind::Unsupported(actual) => format!("unsupported value: {}", what(actual)),
        Kind::UnsupportedKey(actual, expected) => {
            format!("unsupported key: {}, expected {expected}", what(actual))
        }
        Kind::Message(message) => message.clone(),
    }
}

/// The kind of a value, without the value.
fn what(actual: &figment::error::Actual) -> &'static str {
    use figment::error::Actual;
    match actual {
        Actual::Bool(_) => "a boolean",
        Actual::Unsigned(_) | Actual::Signed(_) => "an integer",
        Actual::Float(_) => "a float",
        Actual::Char(_) => "a character",
        Actual::Str(_) => "a string",
        Actual::Bytes(_) => "bytes",
        Actual::Unit => "nothing",
        Actual::Option => "an option",
        Actual::Seq => "an array",
        Actual::Map => "a table",
        _ => "a value of another type",
    }
}

fn unknown_key(key: &str, known: &[&str]) -> String {
    match closest(key, known) {
        Some(close) => format!("no such setting; did you mean `{close}`?"),
        None if known.is_empty() => "no such setting".into(),
        None => format!(
            "no such setting; expected one of {}",
            known
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The known name closest to `given`, if it is close enough to be a likely typo.
fn closest<'a>(given: &str, known: &[&'a str]) -> Option<&'a str> {
    let limit = (given.chars().count() / 3).clamp(1, 3);
    known
        .iter()
        .map(|k| (edit_distance(given, k), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

impl<S> Loaded<S> {
    /// Where the value at `key` (`flow.schedules.nightly.cron`) came from, as in messages.
    pub fn source_of(&self, key: &str) -> String {
        self.source.source_of(key)
    }
}

impl<S: Serialize> Loaded<S> {
    /// Every effective value (secrets redacted) with its source, as `(key, value, source)`.
    pub fn describe(&self) -> Vec<(String, serde_json::Value, String)> {
        let mut rows = Vec::new();
        let tables = [
            ("flow", serde_json::to_value(&self.flow)),
            ("app", serde_json::to_value(&self.app)),
        ];
        for (table, value) in tables {
            if let Ok(value) = value {
                flatten(table, &value, &mut rows);
            }
        }
        rows.into_iter()
            .map(|(key, value)| {
                let mut source = self.source.source_of(&key);
                // A PostgreSQL URL may carry the password: printed settings never show it
                let value = match (key.as_str(), &value) {
                    ("flow.store", serde_json::Value::String(url)) => {
                        serde_json::Value::String(redact_url_password(url))
                    }
                    _ => value,
                };
                // Unset in every source, it is filled in from the binary (`main_entry`)
                if key == "flow.app_version" && source == "default" {
                    source = "the package version (Cargo.toml)".into();
                }
                (key, value, source)
            })
            .collect()
    }
}

/// `postgres://user:secret@host/db` as `postgres://user:[redacted]@host/db`; anything else
/// (a file path, a URL without a password) unchanged.
fn redact_url_password(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return text.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:{REDACTED}@{host}{path}"),
        None => text.to_owned(),
    }
}

fn flatten(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
    match value {
        serde_json::Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                flatten(&format!("{prefix}.{k}"), v, out);
            }
        }
        other => out.push((prefix.to_owned(), other.clone())),
    }
}

#[cfg(test)]
mod secret_tests {
    use super::Secret;

    #[test]
    fn a_password_in_a_store_url_is_redacted() {
        use super::redact_url_password as r;
        assert_eq!(
            r("postgres://flow:s3cr:et@db.internal:5432/prod"),
            "postgres://flow:[redacted]@db.internal:5432/prod"
        );
        assert_eq!(r("postgresql://flow:x@h"), "postgresql://flow:[redacted]@h");
        assert_eq!(r("postgres://flow@h/db"), "postgres://flow@h/db");
        assert_eq!(r("data/flow.redb"), "data/flow.redb");
        assert_eq!(r("postgres://h/db?user=a@b"), "postgres://h/db?user=a@b");
    }

    #[test]
    fn a_secret_never_round_trips_through_its_placeholder() {
        let secret: Secret = serde_json::from_str("\"hunter2\"").expect("a real value loads");
        assert_eq!(secret.expose(), "hunter2");
        let stored = serde_json::to_string(&secret).expect("serializes");
        assert_eq!(stored, "\"[redacted]\"");
        let error =
            serde_json::from_str::<Secret>(&stored).expect_err("the placeholder is refused");
        assert!(
            error.to_string().contains("placeholder `[redacted]`"),
            "{error}"
        );
    }
}

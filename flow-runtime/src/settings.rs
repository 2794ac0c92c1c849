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
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(secrecy::SecretString);

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
        s.serialize_str("[redacted]")
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
    /// Operator commands work while runs execute (two fsyncs per commit).
    #[default]
    Shared,
    /// One fsync per commit; other processes are locked out.
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

fn duration(value: &str, _: &()) -> garde::Result {
    humantime::parse_duration(value).map(|_| ()).map_err(|e| {
        garde::Error::new(format!(
            "`{value}` is not a duration such as `500ms` or `30s` ({e})"
        ))
    })
}

fn log_filter(value: &str, _: &()) -> garde::Result {
    tracing_subscriber::EnvFilter::try_new(value)
        .map(|_| ())
        .map_err(|e| {
            garde::Error::new(format!(
                "`{value}` is not a log filter such as `info` or `warn,my_app=debug` ({e})"
            ))
        })
}

/// The framework's settings: the `[flow]` table of `flow.toml`, `FLOW_*` variables.
#[derive(Clone, Debug, Serialize, Deserialize, Validate)]
#[serde(default)]
pub struct FlowSettings {
    /// The store file.
    #[garde(custom(non_empty_path))]
    pub store: PathBuf,
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
    /// Overrides of named retry policies, by name (`transient`).
    #[garde(dive)]
    pub retry: BTreeMap<String, RetryOverride>,
    /// Settings of the worker (queue, cron); reserved.
    #[garde(skip)]
    pub worker: serde_json::Value,
    /// Settings of alerts; reserved.
    #[garde(skip)]
    pub alerts: serde_json::Value,
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
            sharing: SharingSetting::Shared,
            log_format: LogFormat::Auto,
            log_level: "info".into(),
            shutdown_grace: "10s".into(),
            retry: BTreeMap::new(),
            worker: serde_json::Value::Object(Default::default()),
            alerts: serde_json::Value::Object(Default::default()),
        }
    }
}

impl FlowSettings {
    /// [`FlowSettings::shutdown_grace`] as a duration (validated when the settings load).
    pub fn shutdown_grace(&self) -> std::time::Duration {
        humantime::parse_duration(&self.shutdown_grace)
            .unwrap_or(std::time::Duration::from_secs(10))
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

/// Where settings come from.
pub struct SettingsSource {
    figment: Figment,
    app_prefix: String,
}

/// Loaded, validated settings and where each value came from.
pub struct Loaded<S> {
    /// The framework's settings.
    pub flow: FlowSettings,
    /// The app's settings.
    pub app: S,
    source: SettingsSource,
}

impl SettingsSource {
    /// Layers defaults < `config` (a TOML file; a missing default `flow.toml` is fine) <
    /// environment < `overrides` (from command-line flags, as `flow.*` keys).
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
        let mut figment = Figment::new()
            .merge(Serialized::default("flow", FlowSettings::default()))
            .merge(Serialized::default("app", serde_json::json!({})))
            .merge(Toml::file(config))
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
            figment = figment.merge(Serialized::default(key, value));
        }
        Ok(SettingsSource {
            figment,
            app_prefix: app_prefix.to_owned(),
        })
    }

    /// Where the value at `key` (`app.batch_size`) came from.
    pub fn source_of(&self, key: &str) -> String {
        let Some(meta) = self.figment.find_metadata(key) else {
            return "default".into();
        };
        if let Some(figment::Source::File(path)) = &meta.source {
            return format!("file {}", path.display());
        }
        let name = meta.name.to_string();
        if name.contains("environment") {
            let (prefix, rest) = match key.split_once('.') {
                Some(("flow", rest)) => ("FLOW_", rest),
                Some((_, rest)) => (self.app_prefix.as_str(), rest),
                None => ("", key),
            };
            return format!(
                "environment variable {prefix}{}",
                rest.replace('.', "__").to_uppercase()
            );
        }
        // The framework's defaults are serialized from `FlowSettings::default()`; the only other
        // values set in code are the command-line flags.
        if name.contains("FlowSettings") {
            return "default".into();
        }
        if matches!(meta.source, Some(figment::Source::Code(_))) {
            return "the command line".into();
        }
        name
    }

    /// Extracts and validates both tables, reporting every problem found.
    pub fn load<S: DeserializeOwned + Validate<Context = ()>>(
        self,
    ) -> Result<Loaded<S>, Vec<SettingProblem>> {
        let mut problems = Vec::new();
        let flow = self.extract::<FlowSettings>("flow", &mut problems);
        let app = self.extract::<S>("app", &mut problems);
        if !problems.is_empty() {
            return Err(problems);
        }
        match (flow, app) {
            (Some(flow), Some(app)) => Ok(Loaded {
                flow,
                app,
                source: self,
            }),
            _ => Err(problems),
        }
    }

    fn extract<T: DeserializeOwned + Validate<Context = ()>>(
        &self,
        table: &str,
        problems: &mut Vec<SettingProblem>,
    ) -> Option<T> {
        let value: T = match self.figment.extract_inner(table) {
            Ok(value) => value,
            Err(errors) => {
                for e in errors {
                    let key = if e.path.is_empty() {
                        table.to_owned()
                    } else {
                        e.path.join(".")
                    };
                    let source = e
                        .metadata
                        .as_ref()
                        .map(|_| self.source_of(&key))
                        .unwrap_or_else(|| "default".into());
                    problems.push(SettingProblem {
                        key,
                        problem: e.kind.to_string(),
                        source,
                    });
                }
                return None;
            }
        };
        if let Err(report) = value.validate() {
            for (path, error) in report.iter() {
                let path = path.to_string();
                let key = if path.is_empty() {
                    table.to_owned()
                } else {
                    format!("{table}.{path}")
                };
                problems.push(SettingProblem {
                    source: self.source_of(&key),
                    key,
                    problem: error.message().to_owned(),
                });
            }
            return None;
        }
        Some(value)
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
                let source = self.source.source_of(&key);
                (key, value, source)
            })
            .collect()
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

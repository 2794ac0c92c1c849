//! `[flow.alerts]`: where alerts go, as settings, validated when the settings load.
//!
//! This module owns the settings' shape and checks, and turns them into the engine's
//! [`AlertSinks`]; it sends nothing.

use crate::engine::alerts::{AlertSinks, Webhook};
use crate::Secret;
use garde::Validate;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// `[flow.alerts]`: the log always receives alerts; a webhook and a command are optional.
#[derive(Clone, Debug, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct AlertSettings {
    /// POST every notice's JSON here: `webhook = { url = "http://...", header = "X-Token",
    /// secret = "...", timeout = "5s" }`.
    #[garde(dive, custom(webhook_pair))]
    pub webhook: Option<WebhookSetting>,
    /// Run this program with the notice's JSON on standard input; exit 0 means delivered:
    /// `command = ["/usr/local/bin/notify", "--team", "data"]`.
    #[garde(custom(command_setting))]
    pub command: Vec<String>,
    /// No new alert of a workflow's failures fires within this long of its last one (`1h`).
    #[garde(custom(duration_setting))]
    pub cooldown: String,
    /// Attempts per delivery before it is marked failed.
    #[garde(range(min = 1, max = 1000))]
    pub attempts: u32,
    /// The wait after a failed attempt, doubling after each, up to 10 minutes (`1s`).
    #[garde(custom(duration_setting))]
    pub backoff: String,
    /// Per workflow, how long a run may take from its creation before a worker alerts about
    /// it once (`[flow.alerts.max_duration]` with `nightly_import = "2h"`); overrides
    /// `#[workflow(max_duration = "...")]`, and `"off"` turns the declared one off.
    #[garde(custom(max_duration_setting))]
    pub max_duration: BTreeMap<String, String>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            webhook: None,
            command: Vec::new(),
            cooldown: "1h".into(),
            attempts: 10,
            backoff: "1s".into(),
            max_duration: BTreeMap::new(),
        }
    }
}

/// `[flow.alerts.webhook]`.
#[derive(Clone, Debug, Serialize, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct WebhookSetting {
    /// Where to POST: an `https://` or `http://` URL.
    #[garde(custom(url_setting))]
    pub url: String,
    /// A PEM file of CA certificates to trust for an `https://` URL besides the public ones
    /// (a relay with a private CA).
    #[garde(inner(custom(ca_file_setting)))]
    pub ca_file: Option<std::path::PathBuf>,
    /// A header to send with `secret` as its value (`X-Token`, `Authorization`).
    #[garde(inner(custom(header_setting)))]
    pub header: Option<String>,
    /// The header's value; never logged nor shown.
    #[garde(inner(custom(secret_setting)))]
    pub secret: Option<Secret>,
    /// How long one attempt may take (`5s`).
    #[serde(default = "default_timeout")]
    #[garde(custom(duration_setting))]
    pub timeout: String,
}

fn default_timeout() -> String {
    "5s".into()
}

fn parse(value: &str) -> Duration {
    humantime::parse_duration(value).unwrap_or_default()
}

impl AlertSettings {
    /// The sinks these settings declare (validated when the settings load).
    pub fn sinks(&self) -> AlertSinks {
        let mut sinks = AlertSinks::new()
            .cooldown(parse(&self.cooldown))
            .attempts(self.attempts)
            .backoff(parse(&self.backoff));
        if let Some(w) = &self.webhook {
            let mut webhook = Webhook::new(w.url.clone()).timeout(parse(&w.timeout));
            if let Some(pem) = w.ca_file.as_ref().and_then(|f| std::fs::read(f).ok()) {
                webhook = webhook.root_certificates(pem);
            }
            if let (Some(header), Some(secret)) = (&w.header, &w.secret) {
                webhook = webhook.header(header.clone(), secret.clone());
            }
            sinks = sinks.webhook(webhook);
        }
        if !self.command.is_empty() {
            sinks = sinks.command(self.command.clone());
        }
        for (workflow, limit) in &self.max_duration {
            sinks = sinks.max_duration(workflow.clone(), parse_limit(limit).ok().flatten());
        }
        sinks
    }
}

fn duration_setting(value: &str, _: &()) -> garde::Result {
    humantime::parse_duration(value).map(|_| ()).map_err(|e| {
        garde::Error::new(format!(
            "`{value}` is not a duration such as `30s` or `1h` ({e})"
        ))
    })
}

/// What turns a declared max duration off.
const OFF: &str = "off";

/// A max duration as written: a duration, or `off` (`None`).
fn parse_limit(value: &str) -> Result<Option<Duration>, String> {
    let text = value.trim();
    if text.eq_ignore_ascii_case(OFF) {
        return Ok(None);
    }
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err(format!(
            "`{value}` is zero: every run would alert at once; give a duration such as `2h`, or `off`"
        )),
        Ok(d) => Ok(Some(d)),
        Err(e) => Err(format!(
            "`{value}` is not a duration such as `90s` or `2h`, nor `off` ({e})"
        )),
    }
}

fn max_duration_setting(limits: &BTreeMap<String, String>, _: &()) -> garde::Result {
    let known: Vec<&str> = crate::engine::registry::workflows()
        .iter()
        .map(|w| w.name)
        .collect();
    for (workflow, limit) in limits {
        parse_limit(limit).map_err(|e| garde::Error::new(format!("{workflow}: {e}")))?;
        // A binary without workflows (a library's own settings) has nothing to check against
        if !known.is_empty() && !known.contains(&workflow.as_str()) {
            return Err(garde::Error::new(format!(
                "there is no workflow `{workflow}` in this binary; workflows: {}",
                known.join(", ")
            )));
        }
    }
    Ok(())
}

fn url_setting(value: &str, _: &()) -> garde::Result {
    let parsed = reqwest::Url::parse(value)
        .map_err(|e| garde::Error::new(format!("`{value}` is not a URL ({e})")))?;
    match parsed.scheme() {
        "http" | "https" => Ok(()),
        other => Err(garde::Error::new(format!(
            "`{other}:` is not a webhook scheme; use an https:// (or http://) URL"
        ))),
    }
}

pub(crate) fn ca_file_setting(path: &std::path::PathBuf, _: &()) -> garde::Result {
    let pem = std::fs::read(path).map_err(|e| {
        garde::Error::new(format!("cannot read the CA file {}: {e}", path.display()))
    })?;
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(certs) if !certs.is_empty() => Ok(()),
        _ => Err(garde::Error::new(format!(
            "{} holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
            path.display()
        ))),
    }
}

fn header_setting(value: &str, _: &()) -> garde::Result {
    reqwest::header::HeaderName::from_bytes(value.as_bytes())
        .map(|_| ())
        .map_err(|_| garde::Error::new(format!("`{value}` is not an HTTP header name")))
}

fn secret_setting(value: &Secret, _: &()) -> garde::Result {
    if value.expose().is_empty() {
        return Err(garde::Error::new("must not be empty"));
    }
    reqwest::header::HeaderValue::from_str(value.expose())
        .map(|_| ())
        .map_err(|_| {
            garde::Error::new(
                "is not a valid HTTP header value (it holds a control or non-ASCII character)",
            )
        })
}

fn command_setting(value: &[String], _: &()) -> garde::Result {
    if value.first().is_some_and(|p| p.trim().is_empty()) {
        return Err(garde::Error::new(
            "the first element must be the program to run",
        ));
    }
    Ok(())
}

fn webhook_pair(webhook: &Option<WebhookSetting>, _: &()) -> garde::Result {
    match webhook.as_ref().map(|w| (w.header.is_some(), w.secret.is_some())) {
        Some((true, false)) => Err(garde::Error::new("`header` is set without `secret`: give the header's value as `secret` (or in FLOW_ALERTS__WEBHOOK__SECRET)")),
        Some((false, true)) => Err(garde::Error::new("`secret` is set without `header`: name the header that carries it, such as `header = \"X-Token\"`")),
        _ => Ok(()),
    }
}

//! Logging: `tracing-subscriber`, pretty on a terminal and JSON otherwise, filtered by the
//! settings' level, `RUST_LOG`, `-v` and `-q`.
//!
//! Lines inside a run carry the `run` span's fields (workflow, run id, trace id) and, inside a
//! step, the `step` span's (name, key, attempt): in JSON as `span` and `spans`, in pretty mode
//! as the span prefix. The engine creates those spans at the `INFO` level (their true level, as
//! an OpenTelemetry exporter will see it), and the filter always enables them, so that any
//! enabled log line, whatever the level asked for, carries them. This module only installs the
//! subscriber.

use crate::console::settings::LogFormat;
use std::io::IsTerminal;
use tracing_subscriber::filter::{filter_fn, FilterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// flow's own `run` and `step` spans: enabled whatever the level, so `-q` lines keep their run.
fn is_flow_span(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_span()
        && meta.target().starts_with("flow_runtime")
        && matches!(meta.name(), "run" | "step")
}

/// The filter: `RUST_LOG` if set, else the settings' level moved by `-v`/`-q`.
fn filter(level: &str, verbosity: i8) -> EnvFilter {
    if let Ok(env) = EnvFilter::try_from_default_env() {
        return env;
    }
    let level = match verbosity {
        v if v >= 2 => "trace",
        1 => "debug",
        0 => level,
        -1 => "warn",
        _ => "error",
    };
    EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Installs the global subscriber, writing to stderr (stdout is for command output). A second
/// call does nothing.
pub(crate) fn init(format: LogFormat, level: &str, verbosity: i8) {
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let filter = filter(level, verbosity).or(filter_fn(is_flow_span));
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let layer = if json {
        layer
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_filter(filter)
            .boxed()
    } else {
        layer
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter)
            .boxed()
    };
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

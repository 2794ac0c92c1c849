//! Logging: `tracing-subscriber`, pretty on a terminal and JSON otherwise, filtered by the
//! settings' level, `RUST_LOG`, `-v` and `-q`.
//!
//! Lines inside a run carry the `run` span's fields (workflow, run id, trace id) and, inside a
//! step, the `step` span's (step, key, attempt): in JSON as `span` and `spans`, in pretty mode
//! as the span prefix. No span field is called `name`: the JSON writer puts the span's own name
//! under that key, and a field of the same name would make the key appear twice. The engine creates those spans at the `INFO` level (their true level, as
//! an OpenTelemetry exporter will see it), and the filter always enables them, so that any
//! enabled log line, whatever the level asked for, carries them.
//!
//! On a terminal, a progress display may be drawing on stderr: each log line is then written
//! through [`share_screen`]'s bar, which clears its line, lets the log line out and draws itself
//! again below it, so neither overwrites the other. This module installs the subscriber and
//! owns that hand-over; it knows nothing of what the bar shows.

use crate::console::settings::LogFormat;
use indicatif::ProgressBar;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use tracing_subscriber::filter::{filter_fn, FilterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The progress display drawing on stderr now, if any.
static SCREEN: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Routes log lines through `bar` until [`release_screen`]: each line is printed while the bar
/// is cleared, then the bar is drawn again.
pub(crate) fn share_screen(bar: &ProgressBar) {
    *SCREEN.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
}

/// Log lines go straight to stderr again (the bar is about to be cleared).
pub(crate) fn release_screen() {
    *SCREEN.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// Makes one [`LogLine`] per event.
struct ScreenWriter;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for ScreenWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine(Vec::new())
    }
}

/// One formatted event, written to stderr in one piece when dropped: around the progress bar
/// if one is shown, so the bar's redraw never lands in the middle of the line.
struct LogLine(Vec<u8>);

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        // The bar is cloned out so that the lock is not held while it redraws
        let bar = SCREEN.lock().unwrap_or_else(|e| e.into_inner()).clone();
        // A log line that cannot be written has nowhere else to go
        let write = || {
            let _ = std::io::stderr().lock().write_all(&self.0);
        };
        match bar {
            Some(bar) if !bar.is_finished() => bar.suspend(write),
            _ => write(),
        }
    }
}

/// flow's own `run` and `step` spans: enabled whatever the level, so `-q` lines keep their run.
fn is_flow_span(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_span()
        && meta.target().starts_with("flow_runtime")
        && matches!(meta.name(), "run" | "step")
}

/// The filter: `RUST_LOG` if set and valid, else the settings' level moved by `-v`/`-q`.
fn filter(level: &str, verbosity: i8) -> EnvFilter {
    if let Some(env) = std::env::var_os("RUST_LOG") {
        match env.to_str().map(parse_filter) {
            Some(Ok(env)) => return env,
            // The log is not set up yet: say so on stderr rather than drop the variable silently.
            Some(Err(e)) => eprintln!(
                "warning: RUST_LOG {env:?} is not a log filter ({e}); using the settings' level"
            ),
            None => eprintln!("warning: RUST_LOG {env:?} is not UTF-8; using the settings' level"),
        }
    }
    let level = match verbosity {
        v if v >= 2 => "trace",
        1 => "debug",
        0 => level,
        -1 => "warn",
        _ => "error",
    };
    parse_filter(level).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// A filter in `RUST_LOG` syntax, each comma-separated directive trimmed before
/// `tracing-subscriber` sees it.
///
/// Its directive parser slices the untrimmed text at offsets taken from the trimmed one, so a
/// directive with leading white space before a non-ASCII character (`"\ta\u{a1}["`) panicked
/// instead of being refused; trimmed first, every offset falls on a character boundary.
pub(crate) fn parse_filter(
    value: &str,
) -> Result<EnvFilter, tracing_subscriber::filter::ParseError> {
    let trimmed: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    EnvFilter::builder().parse(trimmed.join(","))
}

/// What [`init`] sets up besides the log lines.
#[cfg_attr(not(feature = "otel"), allow(dead_code))]
pub(crate) struct Export<'a> {
    /// `[flow.otel]`.
    pub otel: &'a crate::console::settings::OtelSettings,
    /// The default `service.name` of the spans: the app's binary name.
    pub service: &'a str,
}

/// Installs the global subscriber, writing to stderr (stdout is for command output), and, with
/// the `otel` feature and `[flow.otel] endpoint` set, the OpenTelemetry layer that exports the
/// same spans (and the events inside them, as span events) over OTLP. A second call does
/// nothing. Fails only if the exporter cannot be built.
#[cfg_attr(not(feature = "otel"), allow(unused_variables))]
pub(crate) fn init(
    format: LogFormat,
    level: &str,
    verbosity: i8,
    export: Export<'_>,
) -> Result<(), String> {
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let lines = filter(level, verbosity).or(filter_fn(is_flow_span));
    let layer = tracing_subscriber::fmt::layer().with_writer(ScreenWriter);
    let layer = if json {
        layer
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_filter(lines)
            .boxed()
    } else {
        layer
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(lines)
            .boxed()
    };
    #[cfg_attr(not(feature = "otel"), allow(unused_mut))]
    let mut layers = vec![layer];
    #[cfg(feature = "otel")]
    if export.otel.endpoint.is_some() {
        // Spans and events as the log filter lets them through, and flow's spans always
        let spans = filter(level, verbosity).or(filter_fn(is_flow_span));
        let otel = crate::trace::export::install(export.otel, export.service)?;
        layers.push(otel.with_filter(spans).boxed());
    }
    let _ = tracing_subscriber::registry().with(layers).try_init();
    Ok(())
}

/// Sends the spans not yet exported (waiting at most a few seconds for the collector) and stops
/// the exporter; the generated main calls it before the process exits.
pub(crate) fn shutdown() {
    #[cfg(feature = "otel")]
    crate::trace::export::shutdown(std::time::Duration::from_secs(5));
}

//! W3C trace context for runs, and (with the `otel` feature) their OpenTelemetry spans.
//!
//! Every run stores a W3C trace id, chosen when it is created: a new one, or its caller's
//! when it was started with a `traceparent` (which the run stores too). Its spans are built
//! from the stored values, never from the process, so every execution of a run (resumed after
//! a crash, in another process, another day) continues the same trace:
//!
//! - the run's own span (named after its workflow) has a span id derived from the trace id and
//!   the run id ([`root_span_id`]); its parent is the caller's span, if any. The execution
//!   that finishes the run exports it, from the run's creation to its end;
//! - each execution's `run` span and each step attempt's `step` span are children of that run
//!   span: their parent context is set explicitly to (stored trace id, run span id), so the
//!   steps of an execution killed with SIGKILL (whose `run` span never ends) still hang under
//!   the run.
//!
//! Without the `otel` feature, or without `[flow.otel] endpoint`, the span functions here do
//! nothing; the trace id still reaches the logs.

use crate::store::RunId;
use std::fmt;

#[cfg(feature = "otel")]
pub(crate) mod export;

/// A parsed `traceparent` header (W3C Trace Context, version `00`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TraceParent {
    /// 32 lowercase hex digits, not all zero.
    pub trace_id: String,
    /// The caller's span: 16 lowercase hex digits, not all zero.
    pub span_id: String,
    /// The caller sampled its trace.
    pub sampled: bool,
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flags = if self.sampled { "01" } else { "00" };
        write!(f, "00-{}-{}-{flags}", self.trace_id, self.span_id)
    }
}

fn is_lower_hex(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl TraceParent {
    /// Parses a `traceparent` value such as
    /// `00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01`. A later version's value is
    /// read by its first four fields, as the W3C recommendation asks.
    pub(crate) fn parse(value: &str) -> Result<TraceParent, String> {
        let value = value.trim();
        let hint = "a traceparent is `00-<32 hex digits: trace id>-<16 hex digits: parent span id>-<2 hex digits: flags>`, such as `00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01`";
        let shown = value.escape_debug();
        let fields: Vec<&str> = value.splitn(5, '-').collect();
        let [version, trace_id, span_id, flags, rest @ ..] = fields.as_slice() else {
            return Err(format!("`{shown}` is not a traceparent; {hint}"));
        };
        let sizes = [(version, 2), (trace_id, 32), (span_id, 16), (flags, 2)];
        if sizes
            .iter()
            .any(|(field, len)| field.len() != *len || !is_lower_hex(field))
        {
            return Err(format!(
                "`{shown}` is not a traceparent (each field is lowercase hex of a fixed length); {hint}"
            ));
        }
        if *version == "ff" || (*version == "00" && !rest.is_empty()) {
            return Err(format!(
                "`{shown}` is not a valid traceparent of version {version}; {hint}"
            ));
        }
        if trace_id.bytes().all(|b| b == b'0') || span_id.bytes().all(|b| b == b'0') {
            return Err(format!(
                "`{shown}` has an all-zero trace or span id, which W3C Trace Context forbids; {hint}"
            ));
        }
        let flags = u8::from_str_radix(flags, 16).unwrap_or(0);
        Ok(TraceParent {
            trace_id: (*trace_id).to_owned(),
            span_id: (*span_id).to_owned(),
            sampled: flags & 1 == 1,
        })
    }
}

/// The span id of a run's own span: the first 8 bytes of SHA-256 over the trace id and the
/// run id (never zero), so that every execution of the run, in any process, names the same
/// parent, and two runs in one caller's trace name different ones.
#[cfg_attr(not(feature = "otel"), allow(dead_code))]
pub(crate) fn root_span_id(trace_id: &str, run_id: &RunId) -> u64 {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(trace_id.as_bytes());
    hasher.update(b"/");
    hasher.update(run_id.as_str().as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first).max(1)
}

/// What the spans of one execution of a run hang under.
#[derive(Clone, Debug, Default)]
pub(crate) struct RunTrace {
    #[cfg(feature = "otel")]
    parent: Option<opentelemetry::Context>,
}

impl RunTrace {
    /// The parent of the spans of a run with `trace_id` and `run_id`, started by the caller
    /// `traceparent` (stored on the run) if any. Empty when no spans are exported.
    #[cfg_attr(not(feature = "otel"), allow(unused_variables))]
    pub(crate) fn of_run(trace_id: &str, run_id: &RunId, traceparent: Option<&str>) -> RunTrace {
        RunTrace {
            #[cfg(feature = "otel")]
            parent: export::run_parent(trace_id, run_id, traceparent),
        }
    }

    /// Makes `span` (an execution's `run` span or a step's span, not yet entered) a child of
    /// the run's span.
    #[cfg_attr(not(feature = "otel"), allow(unused_variables))]
    pub(crate) fn adopt(&self, span: &tracing::Span) {
        #[cfg(feature = "otel")]
        if let Some(parent) = &self.parent {
            export::adopt(span, parent.clone());
        }
    }
}

/// Whether spans are exported by this process.
pub(crate) fn exporting() -> bool {
    #[cfg(feature = "otel")]
    return export::installed();
    #[cfg(not(feature = "otel"))]
    false
}

/// Marks a step attempt's span as failed (OpenTelemetry status `error`).
#[cfg_attr(not(feature = "otel"), allow(unused_variables))]
pub(crate) fn attempt_failed(span: &tracing::Span, message: &str) {
    #[cfg(feature = "otel")]
    if export::installed() {
        export::failed(span, message);
    }
}

/// Exports the run's own span once the run has finished (succeeded, failed, cancelled): from
/// its creation to now, under its caller if it has one. Called outside every span.
#[cfg_attr(not(feature = "otel"), allow(unused_variables))]
pub(crate) fn run_finished(run: &crate::store::RunRecord, now_ms: u64) {
    #[cfg(feature = "otel")]
    if export::installed() && run.status.is_finished() {
        export::run_span(run, now_ms);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::{root_span_id, TraceParent};
    use crate::store::RunId;

    #[test]
    fn traceparent_parses_and_prints_back() {
        let text = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let parsed = TraceParent::parse(text).unwrap();
        assert_eq!(parsed.trace_id, "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(parsed.span_id, "b7ad6b7169203331");
        assert!(parsed.sampled);
        assert_eq!(parsed.to_string(), text);
        let unsampled =
            TraceParent::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00").unwrap();
        assert!(!unsampled.sampled);
        // A later version: its first four fields are read
        let later = TraceParent::parse(
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-comes-next",
        )
        .unwrap();
        assert_eq!(later.span_id, "b7ad6b7169203331");
    }

    #[test]
    fn bad_traceparents_are_refused_with_the_format() {
        for bad in [
            "",
            "nonsense",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
        ] {
            let error = TraceParent::parse(bad).unwrap_err();
            assert!(error.contains("00-<32 hex digits"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn the_run_span_id_depends_on_trace_and_run() {
        let trace = "0af7651916cd43dd8448eb211c80319c";
        let a = root_span_id(trace, &RunId::from("a"));
        assert_eq!(a, root_span_id(trace, &RunId::from("a")));
        assert_ne!(a, root_span_id(trace, &RunId::from("b")));
        assert_ne!(
            a,
            root_span_id("1af7651916cd43dd8448eb211c80319c", &RunId::from("a"))
        );
        assert_ne!(a, 0);
    }
}

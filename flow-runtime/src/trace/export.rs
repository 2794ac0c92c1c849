//! The OpenTelemetry side (feature `otel`): the tracer provider with its OTLP/HTTP exporter,
//! the `tracing` layer that turns flow's spans into OpenTelemetry spans, and the explicit
//! parent contexts that tie each run's spans to its stored trace id.
//!
//! Crates: `opentelemetry` and `opentelemetry_sdk` (the SDK batches spans on its own thread and
//! samples them), `opentelemetry-otlp` (the OTLP protobuf encoding over HTTP), and
//! `tracing-opentelemetry` (the bridge from `tracing`). The exporter sends through a reqwest
//! 0.12 blocking client (the reqwest flow already builds, with rustls), adapted here to
//! `opentelemetry-http`'s `HttpClient`: the SDK's batch thread has no async runtime, and a
//! blocking client needs none, so spans are also sent after the app's runtime has stopped.

use crate::console::settings::OtelSettings;
use crate::store::{RunId, RunRecord, RunStatus};
use opentelemetry::trace::{
    Span as _, SpanBuilder, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags,
    TraceId, TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, IdGenerator, RandomIdGenerator, Sampler,
    SamplingDecision, SdkTracer, SdkTracerProvider, ShouldSample,
};
use std::cell::Cell;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The installed exporter: set once, by the generated main, when `[flow.otel] endpoint` is set.
static OTEL: OnceLock<Otel> = OnceLock::new();

struct Otel {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    /// `[flow.otel] sampling`.
    ratio: f64,
}

pub(crate) fn installed() -> bool {
    OTEL.get().is_some()
}

thread_local! {
    /// The ids the next span built on this thread gets ([`run_span`] sets them around one
    /// synchronous build; every other span gets random ones).
    static FORCED_IDS: Cell<Option<(TraceId, SpanId)>> = const { Cell::new(None) };
}

/// Random ids, except for the one span [`run_span`] builds with the run's stored ids: the SDK
/// takes a root span's ids from its generator only.
#[derive(Debug, Default)]
struct RunIds(RandomIdGenerator);

impl IdGenerator for RunIds {
    fn new_trace_id(&self) -> TraceId {
        match FORCED_IDS.with(Cell::get) {
            Some((trace_id, _)) => trace_id,
            None => self.0.new_trace_id(),
        }
    }

    fn new_span_id(&self) -> SpanId {
        match FORCED_IDS.with(Cell::get) {
            Some((_, span_id)) => span_id,
            None => self.0.new_span_id(),
        }
    }
}

/// The exporter's HTTP client: reqwest's blocking client, called on the SDK's batch thread.
#[derive(Debug)]
struct Client(reqwest::blocking::Client);

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for Client {
    async fn send_bytes(
        &self,
        request: http::Request<opentelemetry_http::Bytes>,
    ) -> Result<http::Response<opentelemetry_http::Bytes>, opentelemetry_http::HttpError> {
        let (parts, body) = request.into_parts();
        let response = self
            .0
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body.to_vec())
            .send()?;
        let status = response.status();
        let body = response.bytes()?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            return Err(format!("the collector answered {status}: {text}").into());
        }
        Ok(http::Response::builder().status(status).body(body)?)
    }
}

/// Builds the exporter and the provider for `settings` (whose `endpoint` is set) and returns
/// the layer that feeds them. `service` is the default `service.name`.
pub(crate) fn install<S>(
    settings: &OtelSettings,
    service: &str,
) -> Result<tracing_opentelemetry::OpenTelemetryLayer<S, SdkTracer>, String>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
    let url = settings.traces_url().ok_or("[flow.otel] has no endpoint")?;
    // Built on this thread, before the app's runtime starts: a blocking client must not be
    // created inside one
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("the OTLP exporter's HTTP client could not start: {e}"))?;
    let headers = settings
        .headers
        .iter()
        .map(|(name, value)| (name.clone(), value.expose().to_owned()))
        .collect();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(Client(client))
        .with_endpoint(url.clone())
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_headers(headers)
        .with_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("the OTLP exporter for {url} could not be built: {e}"))?;
    let batches = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(settings.export_every())
                // A fan-out of quick steps makes thousands of spans a second: the SDK's
                // 2,048 would drop some between two sends (a span is about 1 KB here)
                .with_max_queue_size(16_384)
                .build(),
        )
        .build();
    let service = settings
        .service_name
        .as_deref()
        .unwrap_or(service)
        .to_owned();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(batches)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            settings.sampling,
        ))))
        .with_id_generator(RunIds::default())
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        )
        .build();
    let tracer = provider.tracer("flow");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer.clone())
        .with_threads(false);
    OTEL.set(Otel {
        provider,
        tracer,
        ratio: settings.sampling,
    })
    .map_err(|_| "the OpenTelemetry exporter is already installed".to_owned())?;
    tracing::debug!(url = %url, "exporting traces over OTLP/HTTP");
    Ok(layer)
}

/// Sends the spans not yet sent and stops the exporter, waiting at most `timeout`.
pub(crate) fn shutdown(timeout: Duration) {
    if let Some(otel) = OTEL.get() {
        if let Err(e) = otel.provider.shutdown_with_timeout(timeout) {
            tracing::warn!(error = %e, "the last spans could not be sent to the OTLP collector");
        }
    }
}

/// Whether a trace without a caller is sampled: the ratio sampler's decision on its id alone,
/// the same in every process.
fn sampled(otel: &Otel, trace_id: TraceId) -> bool {
    let decision = Sampler::TraceIdRatioBased(otel.ratio).should_sample(
        None,
        trace_id,
        "run",
        &SpanKind::Internal,
        &[],
        &[],
    );
    decision.decision == SamplingDecision::RecordAndSample
}

/// The trace id, the caller (its span and sampling) and the run's own span id of a run.
struct Ids {
    trace_id: TraceId,
    caller: Option<(SpanId, bool)>,
    run_span: SpanId,
}

fn ids(trace_id: &str, run_id: &RunId, traceparent: Option<&str>) -> Option<Ids> {
    let caller = traceparent
        .and_then(|t| super::TraceParent::parse(t).ok())
        .and_then(|t| Some((SpanId::from_hex(&t.span_id).ok()?, t.sampled)));
    Some(Ids {
        trace_id: TraceId::from_hex(trace_id).ok()?,
        caller,
        run_span: SpanId::from(super::root_span_id(trace_id, run_id)),
    })
}

fn remote(trace_id: TraceId, span_id: SpanId, sampled: bool) -> Context {
    let flags = if sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    Context::new().with_remote_span_context(SpanContext::new(
        trace_id,
        span_id,
        flags,
        true,
        TraceState::default(),
    ))
}

/// The context the spans of a run's executions hang under: the run's own span, in the run's
/// stored trace, sampled as the run's span is. `None` when nothing is exported (or the stored
/// trace id is not one, as in a store written by hand).
pub(crate) fn run_parent(
    trace_id: &str,
    run_id: &RunId,
    traceparent: Option<&str>,
) -> Option<Context> {
    let otel = OTEL.get()?;
    let ids = ids(trace_id, run_id, traceparent)?;
    let sampled = match ids.caller {
        Some((_, sampled)) => sampled,
        None => sampled(otel, ids.trace_id),
    };
    Some(remote(ids.trace_id, ids.run_span, sampled))
}

/// Sets `span`'s OpenTelemetry parent, and names a step's span after its step.
pub(crate) fn adopt(span: &tracing::Span, parent: Context) {
    // Fails only if the span is disabled or already started: then it is not exported anyway
    let _ = span.set_parent(parent);
}

/// Marks `span` failed.
pub(crate) fn failed(span: &tracing::Span, message: &str) {
    span.set_status(Status::error(message.to_owned()));
}

fn time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Exports the run's own span, with the run's stored ids, from its creation to `now_ms`.
pub(crate) fn run_span(run: &RunRecord, now_ms: u64) {
    let Some(otel) = OTEL.get() else {
        return;
    };
    let Some(ids) = ids(&run.trace_id, &run.id, run.traceparent.as_deref()) else {
        return;
    };
    let parent = match ids.caller {
        Some((span_id, sampled)) => remote(ids.trace_id, span_id, sampled),
        None => Context::new(),
    };
    let mut attributes = vec![
        KeyValue::new("workflow", run.workflow.clone()),
        KeyValue::new("run_id", run.id.as_str().to_owned()),
        KeyValue::new("status", run.status.to_string()),
        KeyValue::new("executions", i64::from(run.executions)),
    ];
    if let Some(version) = &run.app_version {
        attributes.push(KeyValue::new("app_version", version.clone()));
    }
    let builder = SpanBuilder::from_name(run.workflow.clone())
        .with_kind(SpanKind::Internal)
        .with_start_time(time(run.created_at_ms))
        .with_attributes(attributes);
    // The SDK takes a span's ids from the generator: these, for this one build on this thread
    FORCED_IDS.with(|ids_cell| ids_cell.set(Some((ids.trace_id, ids.run_span))));
    let mut span = otel.tracer.build_with_context(builder, &parent);
    FORCED_IDS.with(|ids_cell| ids_cell.set(None));
    match run.status {
        RunStatus::Failed => span.set_status(Status::error(run.error.clone().unwrap_or_default())),
        RunStatus::Cancelled => span.set_status(Status::error("cancelled")),
        _ => span.set_status(Status::Ok),
    }
    span.end_with_timestamp(time(now_ms.max(run.created_at_ms)));
}

//! Export of each hop's span over OTLP/HTTP (JSON) with the OpenTelemetry SDK, batched on the
//! SDK's own thread: `--otlp-endpoint http://collector:4318` on any role. Spans keep the ids
//! of the `traceparent` headers ([`crate::trace`]).

use std::time::Duration;

use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState,
    Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, Tracer};

use crate::trace::{Span, SpanSink};

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot export traces to {endpoint}: {message}")]
pub struct OtlpError {
    endpoint: String,
    message: String,
}

/// The OTLP exporter.
#[derive(Debug)]
pub struct Otlp {
    provider: SdkTracerProvider,
    tracer: Tracer,
}

impl Otlp {
    /// An exporter sending to `endpoint` (the collector's base URL; `/v1/traces` is added),
    /// naming the process `service_name`, flushing at least every `delay`.
    pub fn new(endpoint: &str, service_name: &str, delay: Duration) -> Result<Self, OtlpError> {
        let err = |m: String| OtlpError {
            endpoint: endpoint.to_owned(),
            message: m,
        };
        let url = url::Url::parse(endpoint).map_err(|e| err(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(err("the endpoint must be an http(s) URL".into()));
        }
        let traces = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        // The blocking HTTP client must be built off the async runtime.
        let exporter = std::thread::spawn(move || {
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpJson)
                .with_endpoint(traces)
                .with_timeout(Duration::from_secs(10))
                .build()
        })
        .join()
        .map_err(|_| err("the exporter could not be built".into()))?
        .map_err(|e| err(e.to_string()))?;
        let batch = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_scheduled_delay(delay)
                    .with_max_queue_size(8_192)
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(batch)
            .with_resource(
                Resource::builder()
                    .with_service_name(service_name.to_owned())
                    .build(),
            )
            .build();
        let tracer = opentelemetry::trace::TracerProvider::tracer(&provider, "rma");
        Ok(Otlp { provider, tracer })
    }

    /// Sends what is batched now.
    pub fn flush(&self) {
        let _ = self.provider.force_flush();
    }
}

impl SpanSink for Otlp {
    fn export(&self, s: Span) {
        let trace_id = TraceId::from_bytes(s.context.trace_id);
        let parent = match s.parent {
            Some(p) => Context::new().with_remote_span_context(SpanContext::new(
                trace_id,
                SpanId::from_bytes(p),
                TraceFlags::SAMPLED,
                true,
                TraceState::default(),
            )),
            None => Context::new(),
        };
        let attributes: Vec<KeyValue> = s
            .attributes
            .into_iter()
            .map(|(k, v)| KeyValue::new(k, v))
            .collect();
        let mut span = self
            .tracer
            .span_builder(s.name)
            .with_kind(SpanKind::Server)
            .with_trace_id(trace_id)
            .with_span_id(SpanId::from_bytes(s.context.span_id))
            .with_start_time(s.start)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &parent);
        span.end_with_timestamp(s.end);
    }
}

/// Starts exporting this process's spans to `endpoint`; a second call is a no-op.
pub fn start(endpoint: &str, service_name: &str) -> Result<(), OtlpError> {
    if crate::trace::exporting() {
        return Ok(());
    }
    let otlp = Otlp::new(endpoint, service_name, Duration::from_millis(500))?;
    crate::trace::install(Box::new(otlp));
    tracing::info!(%endpoint, "exporting traces over OTLP");
    Ok(())
}

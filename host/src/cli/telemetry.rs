//! Where the host's diagnostics go: log lines on stderr (`-v`, or `RUST_LOG`), and, when
//! `$OTEL_EXPORTER_OTLP_ENDPOINT` is set (with the `otlp` feature), the spans of runs and
//! attempts (run id, tenant, node, agent, attempt, status) to an OpenTelemetry collector over
//! OTLP/HTTP, batched on a thread of their own. The standard `OTEL_*` variables apply
//! (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `_HEADERS`, `_TIMEOUT`, `OTEL_SERVICE_NAME`).

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Flushes exported spans when dropped (outside any async runtime: the exporter's HTTP client
/// blocks).
#[derive(Debug)]
pub(super) struct Telemetry {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

pub(super) fn init(verbose: u8) -> Telemetry {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    let registry =
        tracing_subscriber::registry().with(tracing_subscriber::Layer::with_filter(fmt, filter));
    #[cfg(feature = "otlp")]
    {
        let provider = otlp();
        let layer = provider.as_ref().map(|provider| {
            use opentelemetry::trace::TracerProvider as _;
            let tracer = provider.tracer("wasm-orch");
            tracing_subscriber::Layer::with_filter(
                tracing_opentelemetry::layer().with_tracer(tracer),
                EnvFilter::new("wasm_orch=info"),
            )
        });
        let _ = registry.with(layer).try_init();
        Telemetry { provider }
    }
    #[cfg(not(feature = "otlp"))]
    {
        let _ = registry.try_init();
        Telemetry {}
    }
}

#[cfg(feature = "otlp")]
fn otlp() -> Option<opentelemetry_sdk::trace::SdkTracerProvider> {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    if !set("OTEL_EXPORTER_OTLP_ENDPOINT") && !set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        return None;
    }
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
    {
        Ok(exporter) => exporter,
        Err(e) => {
            eprintln!("warning: spans are not exported over OTLP: {e}");
            return None;
        }
    };
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "wasm-orch".to_owned());
    Some(
        opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(service)
                    .build(),
            )
            .build(),
    )
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("warning: spans not all exported over OTLP: {e}");
        }
    }
}

//! An OTLP/HTTP trace receiver of the test's own, on loopback. Jaeger's query API merges spans
//! that arrive twice with the same IDs, so it cannot tell whether the operator exported a span
//! once or three times; this receiver records every span of every request, duplicates included.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use prost::Message;

use crate::cluster::Cluster;
use crate::operator::free_port;

/// One span as it arrived.
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    /// Hex, as the status and Jaeger spell them.
    pub trace_id: String,
    pub span_id: String,
    /// `None` for a root.
    pub parent: Option<String>,
    pub name: String,
    pub start_ns: u64,
    pub end_ns: u64,
    /// Span attributes, their values as text (`true`, `2`, `done`).
    pub attributes: BTreeMap<String, String>,
    /// The Resource's `service.name` (the reporting controller).
    pub service: String,
    /// When the receiver got it, for waiting until deliveries settle.
    pub received: Instant,
}

impl ReceivedSpan {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

type Spans = Arc<Mutex<Vec<ReceivedSpan>>>;

/// The receiver, serving on its own thread (the e2e harness is synchronous) until dropped.
pub struct Receiver {
    port: u16,
    spans: Spans,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    pub fn start() -> Result<Receiver, String> {
        // Bound here, before the thread starts, so the port is listening once this returns.
        let port = free_port();
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))
            .map_err(|e| format!("receiver on 127.0.0.1:{port}: {e}"))?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let spans = Spans::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let state = spans.clone();
        let thread = std::thread::Builder::new()
            .name("otlp-receiver".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let app = Router::new().route(
                        "/v1/traces",
                        post(move |headers: HeaderMap, body: Bytes| {
                            let state = state.clone();
                            async move { receive(&state, &headers, &body) }
                        }),
                    );
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("a listener in non-blocking mode");
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await;
                });
            })
            .map_err(|e| e.to_string())?;
        Ok(Receiver {
            port,
            spans,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The base URL a session's `otlp.endpoint` names (`/v1/traces` is appended).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn receive(spans: &Spans, headers: &HeaderMap, body: &[u8]) -> axum::response::Response {
    let raw = if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
        let mut out = Vec::new();
        if let Err(e) =
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(body), &mut out)
        {
            return (StatusCode::BAD_REQUEST, format!("gzip: {e}")).into_response();
        }
        out
    } else {
        body.to_vec()
    };
    let request = match ExportTraceServiceRequest::decode(&raw[..]) {
        Ok(r) => r,
        // A 400 is permanent for the exporter: a decoding bug here shows as dropped spans.
        Err(e) => return (StatusCode::BAD_REQUEST, format!("protobuf: {e}")).into_response(),
    };
    let now = Instant::now();
    let mut got = Vec::new();
    for resource_spans in &request.resource_spans {
        let service = resource_spans
            .resource
            .as_ref()
            .and_then(|r| attributes(&r.attributes).remove("service.name"))
            .unwrap_or_default();
        for span in resource_spans.scope_spans.iter().flat_map(|s| &s.spans) {
            got.push(ReceivedSpan {
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent: (!span.parent_span_id.is_empty()).then(|| hex(&span.parent_span_id)),
                name: span.name.clone(),
                start_ns: span.start_time_unix_nano,
                end_ns: span.end_time_unix_nano,
                attributes: attributes(&span.attributes),
                service: service.clone(),
                received: now,
            });
        }
    }
    spans.lock().unwrap().extend(got);
    (
        [("content-type", "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
        .into_response()
}

/// A session exporting to the test's own receiver (spans are counted there, never through
/// Jaeger, which merges duplicates), Ready. `extra` follows the receiver in `spec.exporters`
/// (more exporters), then may go on with other `spec` fields.
pub fn receiver_session(
    c: &Cluster,
    ns: &str,
    name: &str,
    rx: &Receiver,
    extra: &str,
) -> Result<(), String> {
    c.apply(&format!(
        "apiVersion: eventspan.dev/v1alpha1\nkind: TraceSession\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  exporters:\n  - name: receiver\n    otlp: {{endpoint: \"{}\", protocol: http/protobuf}}\n{extra}",
        rx.endpoint()
    ))?;
    c.kubectl(&[
        "-n",
        ns,
        "wait",
        "--for=condition=Ready",
        &format!("tracesession/{name}"),
        "--timeout=30s",
    ])?;
    Ok(())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
        .collect()
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

//! The benchmark's own OTLP/HTTP receiver: records every span it receives, duplicates too, with
//! the time it arrived, one JSON line each. Nothing is de-duplicated or checked here; the report
//! does that from the file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;

use crate::analysis::SpanRecord;

#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    #[error("cannot create {path}: {source}")]
    Create {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("serving: {0}")]
    Serve(std::io::Error),
}

struct State {
    out: Mutex<BufWriter<File>>,
    receipts: AtomicU64,
    requests: AtomicU64,
    rejected: AtomicU64,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn text(value: &Option<Value>) -> String {
    match value {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The records of one export request, all stamped with its arrival.
pub fn records_of(request: &ExportTraceServiceRequest, received_ns: u64) -> Vec<SpanRecord> {
    let spans = request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans);
    spans
        .map(|s| SpanRecord {
            trace: hex(&s.trace_id),
            span: hex(&s.span_id),
            parent: hex(&s.parent_span_id),
            name: s.name.clone(),
            start_ns: s.start_time_unix_nano,
            end_ns: s.end_time_unix_nano,
            received_ns,
            attrs: s
                .attributes
                .iter()
                .filter(|kv| !kv.key.ends_with(".uid"))
                .map(|kv| {
                    (
                        kv.key.clone(),
                        text(&kv.value.as_ref().and_then(|v| v.value.clone())),
                    )
                })
                .collect(),
        })
        .collect()
}

fn decode(headers: &HeaderMap, body: &[u8]) -> Result<ExportTraceServiceRequest, String> {
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v == "gzip");
    let raw = if gzip {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(body), &mut out)
            .map_err(|e| format!("gzip: {e}"))?;
        out
    } else {
        body.to_vec()
    };
    ExportTraceServiceRequest::decode(&raw[..]).map_err(|e| format!("protobuf: {e}"))
}

impl State {
    fn export(&self, headers: HeaderMap, body: Bytes) -> axum::response::Response {
        let received = now_ns();
        self.requests.fetch_add(1, Ordering::Relaxed);
        let request = match decode(&headers, &body) {
            Ok(r) => r,
            Err(why) => {
                // Counted and answered 400, so a broken exporter shows in the report, not as
                // silently missing spans.
                self.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%why, "undecodable export request");
                return (StatusCode::BAD_REQUEST, why).into_response();
            }
        };
        let records = records_of(&request, received);
        let written = {
            let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
            records
                .iter()
                .try_for_each(|r| {
                    serde_json::to_writer(&mut *out, r).map_err(std::io::Error::other)?;
                    out.write_all(b"\n")
                })
                .and_then(|()| out.flush())
        };
        if let Err(e) = written {
            tracing::error!(error = %e, "cannot record spans");
            return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
        }
        self.receipts
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        (
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            ExportTraceServiceResponse::default().encode_to_vec(),
        )
            .into_response()
    }

    fn stats(&self) -> String {
        format!(
            "receipts {}\nrequests {}\nrejected {}\n",
            self.receipts.load(Ordering::Relaxed),
            self.requests.load(Ordering::Relaxed),
            self.rejected.load(Ordering::Relaxed)
        )
    }
}

/// Serves `POST /v1/traces` and `GET /stats` until SIGTERM or Ctrl-C.
pub async fn serve(addr: SocketAddr, out: &Path) -> Result<(), ReceiverError> {
    let file = File::create(out).map_err(|source| ReceiverError::Create {
        path: out.display().to_string(),
        source,
    })?;
    let state = Arc::new(State {
        out: Mutex::new(BufWriter::new(file)),
        receipts: AtomicU64::new(0),
        requests: AtomicU64::new(0),
        rejected: AtomicU64::new(0),
    });
    let (export, stats) = (state.clone(), state.clone());
    let app = Router::new()
        .route(
            "/v1/traces",
            post(
                move |headers: HeaderMap, body: Bytes| async move { export.export(headers, body) },
            ),
        )
        .route("/stats", get(move || async move { stats.stats() }))
        // The exporter sends up to 512 spans a request; a large rollout's attributes gzipped
        // stay far below this, but the default 2 MiB would turn a big batch into lost spans.
        .layer(DefaultBodyLimit::max(64 << 20));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ReceiverError::Listen { addr, source })?;
    tracing::info!(%addr, out = %out.display(), "receiving OTLP/HTTP");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        })
        .await
        .map_err(ReceiverError::Serve)?;
    tracing::info!(stats = %state.stats().replace('\n', " "), "stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    #[test]
    fn records_keep_ids_times_and_attributes_but_not_uids() {
        let kv = |k: &str, v: Value| KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        };
        let span = Span {
            trace_id: vec![0xab; 16],
            span_id: vec![1, 2, 3, 4, 5, 6, 7, 8],
            parent_span_id: vec![],
            name: "Pod.Pulled".into(),
            start_time_unix_nano: 5,
            end_time_unix_nano: 9,
            attributes: vec![
                kv("k8s.pod.name", Value::StringValue("web-a".into())),
                kv("k8s.pod.uid", Value::StringValue("1234".into())),
                kv("k8s.event.count", Value::IntValue(3)),
            ],
            ..Default::default()
        };
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![span.clone(), span],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&request.encode_to_vec()).unwrap();
            e.finish().unwrap()
        };
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
        let decoded = decode(&headers, &gz).unwrap();
        let records = records_of(&decoded, 42);
        assert_eq!(records.len(), 2, "both copies are recorded");
        let r = &records[0];
        assert_eq!(r.trace, "ab".repeat(16));
        assert_eq!(
            (r.span.as_str(), r.parent.as_str()),
            ("0102030405060708", "")
        );
        assert_eq!((r.start_ns, r.end_ns, r.received_ns), (5, 9, 42));
        assert_eq!(
            r.attrs.get("k8s.event.count").map(String::as_str),
            Some("3")
        );
        assert!(!r.attrs.contains_key("k8s.pod.uid"));
        assert!(
            decode(&HeaderMap::new(), &gz).is_err(),
            "gzip without its header"
        );
    }
}

//! The OTLP exporter against receivers that misbehave on purpose: throttling with Retry-After,
//! partial success, a dead endpoint, a full queue; and log export, checked against in-process
//! gRPC and HTTP receivers (Jaeger, which the end-to-end tests export to, has no logs API).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, post};
use eventspan::engine::model::FinishedSpan;
use eventspan::engine::time::Timestamp;
use eventspan::export::{
    Buckets, DestinationPolicy, EventToExport, Exporter, ExporterSettings, ExporterSpec,
    NOT_PERMITTED, Protocol,
};
use eventspan::otlp::SpanShape;
use eventspan::otlp::shape::{ParentTraceMode, ServiceNaming, TraceIdFormat};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

fn spans() -> Vec<Arc<FinishedSpan>> {
    let input = include_str!("scenarios/deployment-rollout.jsonl");
    eventspan::replay::replay(input, Default::default())
        .spans
        .into_iter()
        .map(Arc::new)
        .collect()
}

fn spec(protocol: Protocol, url: String) -> ExporterSpec {
    ExporterSpec {
        name: "test".into(),
        protocol,
        url,
        headers: vec![("x-tenant".into(), "shop".into())],
        ca_pem: None,
        insecure: false,
        gzip: true,
        timeout: Duration::from_secs(2),
        shape: Default::default(),
        logs: false,
    }
}

fn fast() -> ExporterSettings {
    ExporterSettings {
        flush_interval: Duration::from_millis(50),
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        ..ExporterSettings::default()
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A scripted answer: HTTP status and an optional `Retry-After` value.
type Answer = (u16, Option<&'static str>);

/// What an internal service might answer: it must never reach a tenant's status.
const SECRET_BODY: &str = "internal-token=hunter2-from-the-metadata-service";

/// An OTLP/HTTP receiver whose answers a test scripts: each request pops a status (200 when none
/// is left), records what it got.
#[derive(Clone, Default)]
struct HttpReceiver {
    script: Arc<Mutex<Vec<Answer>>>,
    spans: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    headers: Arc<Mutex<Vec<HeaderMap>>>,
    reject_per_request: Arc<AtomicUsize>,
}

impl HttpReceiver {
    async fn serve(self) -> SocketAddr {
        let state = self.clone();
        let app = Router::new().route(
            "/v1/traces",
            post(move |headers: HeaderMap, body: Bytes| {
                let r = state.clone();
                async move { r.handle(headers, body) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    }

    fn handle(&self, headers: HeaderMap, body: Bytes) -> axum::response::Response {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let next = self.script.lock().unwrap().pop();
        if let Some((status, retry_after)) = next.filter(|(s, _)| *s != 200) {
            let mut response = (StatusCode::from_u16(status).unwrap(), SECRET_BODY).into_response();
            if let Some(after) = retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", after.parse().unwrap());
            }
            return response;
        }
        assert_eq!(headers["content-type"], "application/x-protobuf");
        let raw = if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut out)
                .unwrap();
            out
        } else {
            body.to_vec()
        };
        let request = ExportTraceServiceRequest::decode(&raw[..]).unwrap();
        let n: usize = request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.spans.fetch_add(n, Ordering::SeqCst);
        self.headers.lock().unwrap().push(headers);
        let rejected = self.reject_per_request.load(Ordering::SeqCst) as i64;
        let response = ExportTraceServiceResponse {
            partial_success: (rejected > 0).then(|| ExportTracePartialSuccess {
                rejected_spans: rejected,
                error_message: "too old".into(),
            }),
        };
        response.encode_to_vec().into_response()
    }
}

#[tokio::test]
async fn http_delivers_with_gzip_and_headers_and_counts_partial_success() {
    let receiver = HttpReceiver::default();
    receiver.reject_per_request.store(1, Ordering::SeqCst);
    let addr = receiver.clone().serve().await;
    let exporter = Exporter::start(
        spec(Protocol::HttpProtobuf, format!("http://{addr}/v1/traces")),
        fast(),
    )
    .unwrap();
    let spans = spans();
    for s in &spans {
        exporter.offer(s.clone());
    }
    eventually("all spans received", || {
        receiver.spans.load(Ordering::SeqCst) == spans.len()
    })
    .await;
    let headers = receiver.headers.lock().unwrap()[0].clone();
    assert_eq!(headers["x-tenant"], "shop");
    let stats = exporter.shutdown(Duration::from_secs(2)).await;
    let requests = receiver.requests.load(Ordering::SeqCst) as u64;
    assert_eq!(
        stats.rejected, requests,
        "one rejected span per request was reported"
    );
    assert_eq!(stats.exported, spans.len() as u64 - stats.rejected);
    assert!(
        stats.healthy && stats.errors == 0 && stats.dropped == 0,
        "{stats:?}"
    );
}

#[tokio::test]
async fn throttling_is_retried_honouring_retry_after() {
    let receiver = HttpReceiver::default();
    // Popped from the end: 503 without, then 429 with Retry-After: 1.
    *receiver.script.lock().unwrap() = vec![(429, Some("1")), (503, None)];
    let addr = receiver.clone().serve().await;
    let exporter = Exporter::start(
        spec(Protocol::HttpProtobuf, format!("http://{addr}/v1/traces")),
        fast(),
    )
    .unwrap();
    let spans = spans();
    let started = Instant::now();
    for s in &spans[..10] {
        exporter.offer(s.clone());
    }
    eventually("the batch delivered after retries", || {
        receiver.spans.load(Ordering::SeqCst) == 10
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was not honoured"
    );
    let stats = exporter.shutdown(Duration::from_secs(2)).await;
    assert_eq!(
        (stats.errors, stats.exported, stats.dropped),
        (2, 10, 0),
        "{stats:?}"
    );
    assert!(stats.healthy, "healthy again after the success");
}

/// The injected wall clock of the event-to-export test: ten seconds after the scenario's last
/// event (2026-11-24T10:00:33Z, its second rollout) and 38 s after its first rollout ended.
fn acknowledged_at() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-24T10:00:43Z").unwrap()
}

#[tokio::test]
async fn each_acknowledged_span_is_timed_from_its_end_by_the_injected_clock() {
    let receiver = HttpReceiver::default();
    let addr = receiver.clone().serve().await;
    let settings = ExporterSettings {
        clock: acknowledged_at,
        ..fast()
    };
    let exporter = Exporter::start(
        spec(Protocol::HttpProtobuf, format!("http://{addr}/v1/traces")),
        settings,
    )
    .unwrap();
    let spans = spans();
    for s in &spans {
        exporter.offer(s.clone());
    }
    eventually("all spans received", || {
        receiver.spans.load(Ordering::SeqCst) == spans.len()
    })
    .await;
    let stats = exporter.shutdown(Duration::from_secs(2)).await;
    let delays = &stats.event_to_export;
    assert_eq!(delays.count, spans.len() as u64);
    // The first rollout's spans ended by 10:00:02 (over 30 s before the clock), the second's
    // from 10:00:30 on (within 15 s of it).
    let second = spans
        .iter()
        .filter(|s| s.end >= Timestamp::parse_rfc3339("2026-11-24T10:00:30Z").unwrap())
        .count() as u64;
    assert!(second > 0 && second < spans.len() as u64, "{second}");
    let at = |bound: f64| {
        let i = EventToExport::BOUNDS
            .iter()
            .position(|b| *b == bound)
            .unwrap();
        delays.cumulative[i]
    };
    assert_eq!(
        (at(7.5), at(15.0), at(30.0), at(60.0)),
        (0, second, second, spans.len() as u64)
    );
    let sum: Duration = spans.iter().map(|s| acknowledged_at().since(s.end)).sum();
    assert_eq!(delays.sum_micros, sum.as_micros() as u64);
}

#[tokio::test]
async fn permanent_errors_drop_the_batch_and_report_it() {
    let receiver = HttpReceiver::default();
    *receiver.script.lock().unwrap() = vec![(400, None)];
    let addr = receiver.clone().serve().await;
    let exporter = Exporter::start(
        spec(Protocol::HttpProtobuf, format!("http://{addr}/v1/traces")),
        fast(),
    )
    .unwrap();
    for s in &spans()[..5] {
        exporter.offer(s.clone());
    }
    eventually("the request", || {
        receiver.requests.load(Ordering::SeqCst) == 1
    })
    .await;
    eventually("the drop counted", || exporter.stats().dropped == 5).await;
    let stats = exporter.stats();
    assert!(!stats.healthy);
    assert!(
        stats.last_error.as_deref().unwrap_or("").contains("400"),
        "{stats:?}"
    );
}

#[tokio::test]
async fn a_dead_endpoint_never_blocks_and_memory_stays_bounded() {
    // Nothing listens on this port (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let settings = ExporterSettings {
        queue_capacity: 100,
        batch_size: 10,
        ..fast()
    };
    let exporter = Exporter::start(
        spec(Protocol::Grpc, format!("http://127.0.0.1:{port}")),
        settings,
    )
    .unwrap();
    let spans = spans();
    let started = Instant::now();
    for _ in 0..50 {
        for s in &spans {
            exporter.offer(s.clone());
        }
    }
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "offering must not wait on the endpoint"
    );
    eventually("failures seen", || exporter.stats().errors > 0).await;
    let stats = exporter.stats();
    assert_eq!(
        stats.last_error.as_deref(),
        Some("connection refused"),
        "{stats:?}"
    );
    assert!(stats.queued <= 100, "queue bounded: {stats:?}");
    assert!(
        stats.dropped >= (50 * spans.len() - 110) as u64,
        "oldest dropped and counted: {stats:?}"
    );
    assert!(!stats.healthy);
    let stats = exporter.shutdown(Duration::from_secs(3)).await;
    assert_eq!(stats.exported, 0);
    assert_eq!(
        stats.dropped,
        50 * spans.len() as u64,
        "every span is either exported or counted dropped"
    );
}

#[derive(Default, Clone)]
struct GrpcReceiver {
    spans: Arc<AtomicUsize>,
    tenant: Arc<Mutex<Option<String>>>,
}

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let tenant = request
            .metadata()
            .get("x-tenant")
            .map(|v| v.to_str().unwrap().to_string());
        *self.tenant.lock().unwrap() = tenant;
        let n: usize = request
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.spans.fetch_add(n, Ordering::SeqCst);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tokio::test]
async fn grpc_delivers_with_gzip_and_metadata() {
    let receiver = GrpcReceiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = TraceServiceServer::new(receiver.clone())
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let exporter = Exporter::start(spec(Protocol::Grpc, format!("http://{addr}")), fast()).unwrap();
    let spans = spans();
    for s in &spans {
        exporter.offer(s.clone());
    }
    eventually("all spans received", || {
        receiver.spans.load(Ordering::SeqCst) == spans.len()
    })
    .await;
    assert_eq!(receiver.tenant.lock().unwrap().as_deref(), Some("shop"));
    let stats = exporter.shutdown(Duration::from_secs(2)).await;
    assert_eq!(
        (stats.exported, stats.dropped, stats.errors),
        (spans.len() as u64, 0, 0)
    );
    assert!(stats.latency.count > 0);
    assert!(stats.latency.sum_micros > 0);
    assert_eq!(
        stats.latency.cumulative.last().copied(),
        Some(stats.latency.count),
        "every loopback export takes under 10 s"
    );
}

/// (trace ID, span ID) as sent.
type Ids = (Vec<u8>, Vec<u8>);

/// The IDs a receiver got, of spans and of log records.
#[derive(Default, Clone)]
struct Received {
    spans: Arc<Mutex<Vec<Ids>>>,
    logs: Arc<Mutex<Vec<Ids>>>,
    log_records: Arc<Mutex<Vec<opentelemetry_proto::tonic::logs::v1::LogRecord>>>,
}

/// An OTLP/HTTP traces endpoint that records what it receives into `r`.
fn traces_receiver(r: Received) -> MethodRouter {
    post(move |body: Bytes| {
        let r = r.clone();
        async move {
            r.spans_of(&ExportTraceServiceRequest::decode(&gunzip(&body)[..]).unwrap());
            ExportTraceServiceResponse::default()
                .encode_to_vec()
                .into_response()
        }
    })
}

/// An OTLP/HTTP logs endpoint that records what it receives into `r`.
fn logs_receiver(r: Received) -> MethodRouter {
    post(move |body: Bytes| {
        let r = r.clone();
        async move {
            r.logs_of(&ExportLogsServiceRequest::decode(&gunzip(&body)[..]).unwrap());
            ExportLogsServiceResponse::default()
                .encode_to_vec()
                .into_response()
        }
    })
}

impl Received {
    fn spans_of(&self, request: &ExportTraceServiceRequest) {
        self.spans.lock().unwrap().extend(
            request
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .flat_map(|s| &s.spans)
                .map(|s| (s.trace_id.clone(), s.span_id.clone())),
        );
    }

    fn logs_of(&self, request: &ExportLogsServiceRequest) {
        let records = request
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records);
        for r in records {
            self.logs
                .lock()
                .unwrap()
                .push((r.trace_id.clone(), r.span_id.clone()));
            self.log_records.lock().unwrap().push(r.clone());
        }
    }

    /// Every log record carries the trace and span ID of a span the receiver got, and every
    /// span made from an event has its record.
    fn assert_correlated(&self, spans: &[Arc<FinishedSpan>]) {
        let received_spans = self.spans.lock().unwrap().clone();
        let logs = self.logs.lock().unwrap().clone();
        let with_event = spans.iter().filter(|s| s.event.is_some()).count();
        assert!(with_event > 0 && with_event < spans.len());
        assert_eq!(
            logs.len(),
            with_event,
            "one record per span made from an event"
        );
        for ids in &logs {
            assert!(
                received_spans.contains(ids),
                "a log record's IDs match no span: {ids:?}"
            );
        }
        let span_ids: std::collections::BTreeSet<_> = logs.iter().map(|(_, s)| s).collect();
        assert_eq!(span_ids.len(), logs.len(), "no span logged twice");
    }
}

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.spans_of(request.get_ref());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        assert_eq!(
            request
                .metadata()
                .get("x-tenant")
                .map(|v| v.to_str().unwrap()),
            Some("shop"),
            "logs carry the exporter's headers too"
        );
        self.logs_of(request.get_ref());
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

/// Spans of the rollout as if applied by a pipeline: its traceparent on their trace root.
/// Offers the pipeline's spans, waits until the receiver has every span and every log record,
/// and checks they correlate; returns the spans and how many of them carry an event.
async fn deliver_pipeline_spans(
    exporter: &Exporter,
    received: &Received,
) -> (Vec<Arc<FinishedSpan>>, usize) {
    let spans = pipeline_spans();
    for s in &spans {
        exporter.offer(s.clone());
    }
    let with_event = spans.iter().filter(|s| s.event.is_some()).count();
    eventually("all spans and records received", || {
        received.spans.lock().unwrap().len() == spans.len()
            && received.logs.lock().unwrap().len() == with_event
    })
    .await;
    received.assert_correlated(&spans);
    (spans, with_event)
}

fn pipeline_spans() -> Vec<Arc<FinishedSpan>> {
    let remote = eventspan::wire::parse_traceparent(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )
    .unwrap();
    spans()
        .into_iter()
        .map(|s| {
            let mut root = (*s.root).clone();
            root.traceparent = Some(remote);
            Arc::new(FinishedSpan {
                root: Arc::new(root),
                ..(*s).clone()
            })
        })
        .collect()
}

#[tokio::test]
async fn grpc_sends_logs_whose_ids_are_the_shaped_spans() {
    let received = Received::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(
                TraceServiceServer::new(received.clone())
                    .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
            )
            .add_service(
                LogsServiceServer::new(received.clone())
                    .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
            )
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let shape = SpanShape {
        trace_ids: TraceIdFormat::AwsXRay,
        parent_trace: ParentTraceMode::Link,
        service: ServiceNaming::Fixed("rollouts".into()),
        ..Default::default()
    };
    let exporter = Exporter::start(
        ExporterSpec {
            shape: shape.clone(),
            logs: true,
            ..spec(Protocol::Grpc, format!("http://{addr}"))
        },
        fast(),
    )
    .unwrap();
    let (spans, with_event) = deliver_pipeline_spans(&exporter, &received).await;
    // The IDs are the shaped ones: X-Ray, not the engine's (Link mode keeps the own trace).
    for s in &spans {
        let id = (
            shape.trace_id(s).to_bytes().to_vec(),
            s.span_id.to_bytes().to_vec(),
        );
        assert_ne!(shape.trace_id(s), s.trace_id);
        assert!(received.spans.lock().unwrap().contains(&id));
    }
    let records = received.log_records.lock().unwrap().clone();
    assert!(
        records
            .iter()
            .all(|r| matches!(r.severity_text.as_str(), "Normal" | "Warning"))
    );
    assert!(
        records.iter().all(|r| r
            .attributes
            .iter()
            .any(|a| a.key == "k8s.event.reporting_controller")),
        "a fixed service name moves the component into attributes, of records too"
    );
    let stats = exporter.shutdown(Duration::from_secs(2)).await;
    assert_eq!(
        (
            stats.exported,
            stats.logs_exported,
            stats.logs_dropped,
            stats.errors
        ),
        (spans.len() as u64, with_event as u64, 0, 0)
    );
}

#[tokio::test]
async fn http_sends_logs_to_v1_logs_beside_v1_traces() {
    let received = Received::default();
    let app = Router::new()
        .route("/otlp/v1/traces", traces_receiver(received.clone()))
        .route("/otlp/v1/logs", logs_receiver(received.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    // Parent mode: every span and record joins the pipeline's trace.
    let exporter = Exporter::start(
        ExporterSpec {
            logs: true,
            ..spec(
                Protocol::HttpProtobuf,
                format!("http://{addr}/otlp/v1/traces"),
            )
        },
        fast(),
    )
    .unwrap();
    let (spans, with_event) = deliver_pipeline_spans(&exporter, &received).await;
    let remote = hex_bytes("4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(
        received
            .logs
            .lock()
            .unwrap()
            .iter()
            .all(|(trace, _)| *trace == remote),
        "records carry the remote trace ID, as their spans do"
    );
    let stats = exporter.shutdown(Duration::from_secs(2)).await;
    assert_eq!(
        (stats.logs_exported, stats.exported),
        (with_event as u64, spans.len() as u64)
    );
}

#[tokio::test]
async fn failing_logs_never_hold_up_spans_and_are_counted() {
    let received = Received::default();
    let app = Router::new()
        .route("/v1/traces", traces_receiver(received.clone()))
        // A collector with no logs pipeline.
        .route(
            "/v1/logs",
            post(|| async { (StatusCode::NOT_FOUND, "no logs here").into_response() }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let exporter = Exporter::start(
        ExporterSpec {
            logs: true,
            ..spec(Protocol::HttpProtobuf, format!("http://{addr}/v1/traces"))
        },
        fast(),
    )
    .unwrap();
    let spans = spans();
    for s in &spans {
        exporter.offer(s.clone());
    }
    let with_event = spans.iter().filter(|s| s.event.is_some()).count() as u64;
    eventually("spans delivered and the records' drop counted", || {
        let stats = exporter.stats();
        stats.exported == spans.len() as u64 && stats.logs_dropped == with_event
    })
    .await;
    let stats = exporter.stats();
    assert_eq!(stats.logs_exported, 0);
    assert!(stats.errors >= 1 && !stats.healthy, "{stats:?}");
    assert!(
        stats
            .last_error
            .as_deref()
            .unwrap_or("")
            .starts_with("logs: HTTP 404"),
        "{stats:?}"
    );
    let stats = exporter.shutdown(Duration::from_secs(2)).await;
    assert_eq!((stats.exported, stats.dropped), (spans.len() as u64, 0));
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(body), &mut out).unwrap();
    out
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// A policy denying loopback, as `--exporter-deny 127.0.0.0/8 --exporter-deny ::1` makes it.
fn deny_loopback() -> ExporterSettings {
    ExporterSettings {
        destinations: Arc::new(DestinationPolicy::new(
            vec![],
            vec!["127.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()],
            true,
        )),
        ..fast()
    }
}

/// Offers 5 spans to an exporter that the policy stops, and checks the refusal: nothing
/// reached the receiver, the batch was dropped at the first attempt (no retry), and what status
/// reads says only "destination not permitted".
async fn assert_refused(exporter: Exporter, reached: impl Fn() -> usize) {
    for s in &spans()[..5] {
        exporter.offer(s.clone());
    }
    eventually("the refusal counted", || exporter.stats().dropped == 5).await;
    // Longer than the backoff: a retry would show as a second error.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = exporter.shutdown(Duration::from_secs(2)).await;
    assert_eq!(reached(), 0, "nothing may reach a denied destination");
    assert_eq!(
        (stats.errors, stats.refused, stats.dropped, stats.exported),
        (1, 1, 5, 0),
        "one attempt, refused, not retried: {stats:?}"
    );
    assert!(!stats.healthy && stats.not_permitted, "{stats:?}");
    assert_eq!(stats.last_error.as_deref(), Some(NOT_PERMITTED));
}

#[tokio::test]
async fn a_denied_destination_is_refused_at_connect_by_address_and_by_name() {
    let receiver = HttpReceiver::default();
    let addr = receiver.clone().serve().await;
    // An IP literal (the connector checks it) and a name (checked once resolved: localhost is
    // not denied as a name, only its addresses are).
    for url in [
        format!("http://{addr}/v1/traces"),
        format!("http://localhost:{}/v1/traces", addr.port()),
    ] {
        let exporter =
            Exporter::start(spec(Protocol::HttpProtobuf, url.clone()), deny_loopback()).unwrap();
        let requests = receiver.requests.clone();
        assert_refused(exporter, move || requests.load(Ordering::SeqCst)).await;
    }
    // The same receiver, under the default policy (loopback permitted): delivered.
    let exporter = Exporter::start(
        spec(
            Protocol::HttpProtobuf,
            format!("http://localhost:{}/v1/traces", addr.port()),
        ),
        fast(),
    )
    .unwrap();
    for s in &spans()[..5] {
        exporter.offer(s.clone());
    }
    eventually("delivered where permitted", || {
        receiver.spans.load(Ordering::SeqCst) == 5
    })
    .await;
    let stats = exporter.shutdown(Duration::from_secs(2)).await;
    assert_eq!((stats.exported, stats.refused), (5, 0));
}

#[tokio::test]
async fn an_allow_list_admits_only_what_it_names() {
    let receiver = HttpReceiver::default();
    let addr = receiver.clone().serve().await;
    let only = |entries: &[&str]| ExporterSettings {
        destinations: Arc::new(DestinationPolicy::new(
            entries.iter().map(|e| e.parse().unwrap()).collect(),
            vec![],
            true,
        )),
        ..fast()
    };
    let url = format!("http://localhost:{}/v1/traces", addr.port());
    let outside = Exporter::start(
        spec(Protocol::HttpProtobuf, url.clone()),
        only(&["10.0.0.0/8", "*.corp.example"]),
    )
    .unwrap();
    let requests = receiver.requests.clone();
    assert_refused(outside, move || requests.load(Ordering::SeqCst)).await;
    // Admitted by name; localhost's addresses are not denied.
    let by_name = Exporter::start(spec(Protocol::HttpProtobuf, url), only(&["localhost"])).unwrap();
    for s in &spans()[..5] {
        by_name.offer(s.clone());
    }
    eventually("delivered to the allowed name", || {
        receiver.spans.load(Ordering::SeqCst) == 5
    })
    .await;
    by_name.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn grpc_to_a_denied_destination_is_refused_too() {
    let receiver = GrpcReceiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(
                TraceServiceServer::new(receiver.clone())
                    .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
            )
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    for url in [
        format!("http://{addr}"),
        format!("http://localhost:{}", addr.port()),
    ] {
        let exporter = Exporter::start(spec(Protocol::Grpc, url), deny_loopback()).unwrap();
        let spans = receiver.spans.clone();
        assert_refused(exporter, move || spans.load(Ordering::SeqCst)).await;
    }
}

#[tokio::test]
async fn error_bodies_never_reach_the_status() {
    let receiver = HttpReceiver::default();
    *receiver.script.lock().unwrap() = vec![(500, None)];
    let addr = receiver.clone().serve().await;
    let exporter = Exporter::start(
        spec(Protocol::HttpProtobuf, format!("http://{addr}/v1/traces")),
        fast(),
    )
    .unwrap();
    for s in &spans()[..5] {
        exporter.offer(s.clone());
    }
    eventually("the 500 counted", || exporter.stats().dropped == 5).await;
    let stats = exporter.stats();
    assert_eq!(stats.last_error.as_deref(), Some("HTTP 500"), "{stats:?}");
    let status = status_text(stats);
    assert!(status.contains("test: HTTP 500"), "{status}");
    assert!(!status.contains("hunter2"), "the body leaked: {status}");
}

/// A gRPC receiver that fails every export with a message of its own.
struct Failing(tonic::Code);

#[tonic::async_trait]
impl TraceService for Failing {
    async fn export(
        &self,
        _: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        Err(tonic::Status::new(self.0, SECRET_BODY))
    }
}

#[tokio::test]
async fn grpc_status_messages_never_reach_the_status() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(
                TraceServiceServer::new(Failing(tonic::Code::PermissionDenied))
                    .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
            )
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let exporter = Exporter::start(spec(Protocol::Grpc, format!("http://{addr}")), fast()).unwrap();
    for s in &spans()[..5] {
        exporter.offer(s.clone());
    }
    eventually("the refusal counted", || exporter.stats().dropped == 5).await;
    let stats = exporter.stats();
    assert_eq!(
        stats.last_error.as_deref(),
        Some("gRPC PERMISSION_DENIED"),
        "{stats:?}"
    );
    let status = status_text(stats);
    assert!(!status.contains("hunter2"), "the message leaked: {status}");
}

/// The session status the operator would write for one exporter with these stats, as JSON.
fn status_text(stats: eventspan::export::ExporterStats) -> String {
    use eventspan::operator::conditions::{Readiness, Reason};
    use eventspan::operator::status::{CarriedTraces, Counts, Verdict, compose};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    let verdict = Verdict {
        generation: 1,
        phase: eventspan::operator::crd::Phase::Active,
        ready: Readiness::ready(Reason::Active, "tracing shop"),
        started_at: None,
        trace_url_template: None,
        baseline: Counts::default(),
        carried: CarriedTraces::default(),
        max_recent_traces: 10,
        previous_conditions: vec![],
    };
    let runtime = eventspan::operator::snapshot::SessionSnapshot {
        exporters: vec![("test".into(), stats)],
        ..Default::default()
    };
    let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    serde_json::to_string(&compose(&verdict, Some(&runtime), &now)).unwrap()
}

#[tokio::test]
async fn tls_and_timeout_failures_read_as_fixed_words() {
    // https:// to a plain-HTTP receiver: the TLS handshake fails.
    let receiver = HttpReceiver::default();
    let addr = receiver.clone().serve().await;
    let tls = Exporter::start(
        spec(Protocol::HttpProtobuf, format!("https://{addr}/v1/traces")),
        fast(),
    )
    .unwrap();
    tls.offer(spans()[0].clone());
    eventually("the TLS failure", || tls.stats().errors > 0).await;
    assert_eq!(
        tls.stats().last_error.as_deref(),
        Some("TLS handshake failed")
    );
    tls.shutdown(Duration::ZERO).await;
    // A receiver that accepts and never answers: the request times out.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let slow = Exporter::start(
        ExporterSpec {
            timeout: Duration::from_millis(200),
            ..spec(
                Protocol::HttpProtobuf,
                format!("http://{silent_addr}/v1/traces"),
            )
        },
        fast(),
    )
    .unwrap();
    slow.offer(spans()[0].clone());
    eventually("the timeout", || slow.stats().errors > 0).await;
    assert_eq!(slow.stats().last_error.as_deref(), Some("timed out"));
    slow.shutdown(Duration::ZERO).await;
}

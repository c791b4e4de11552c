//! Sending one OTLP `ExportTraceServiceRequest` or `ExportLogsServiceRequest`: gRPC (tonic) or
//! HTTP/protobuf (hyper), over the same rustls connector, which connects only to destinations
//! the operator's [`DestinationPolicy`] permits.
//!
//! Errors carry two texts: a fixed phrase for the tenant-readable status (`connection refused`,
//! `HTTP 503`, ...), and the detail (the response body's first bytes, the address, the library's
//! message) for the operator's log only, since a tenant must not read what internal services
//! answer the operator.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::Channel;

use super::policy::{DestinationPolicy, NotPermitted, literal_ip};
use crate::otlp::SpanShape;

/// Which OTLP transport an exporter speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

/// An exporter's settings, resolved (headers from Secrets included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExporterSpec {
    pub name: String,
    pub protocol: Protocol,
    /// gRPC: `scheme://host:port`; HTTP: the full URL to POST to.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub ca_pem: Option<Vec<u8>>,
    pub insecure: bool,
    pub gzip: bool,
    pub timeout: Duration,
    /// How the session's spans are shaped on the way out.
    pub shape: SpanShape,
    /// Also send the events as OTLP log records (gRPC LogsService, or HTTP `/v1/logs` beside
    /// `/v1/traces`).
    pub logs: bool,
}

impl ExporterSpec {
    /// The HTTP URL logs go to: `/v1/logs` in place of the traces URL's `/v1/traces`.
    pub fn logs_url(&self) -> String {
        match self.url.strip_suffix("/v1/traces") {
            Some(base) => format!("{base}/v1/logs"),
            None => format!("{}/v1/logs", self.url.trim_end_matches('/')),
        }
    }
}

/// One OTLP request: spans or log records.
pub(super) enum Request {
    Traces(ExportTraceServiceRequest),
    Logs(ExportLogsServiceRequest),
}

/// What a tenant may read of a refused destination (status, `last_error`).
pub const NOT_PERMITTED: &str = "destination not permitted";

/// A failed send. `Display` is the fixed phrase status shows; [`TransportError::detail`] is for
/// the operator's log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The exporter's own settings (a CA bundle, a header from the spec): the tenant's input.
    #[error("exporter configuration: {0}")]
    Config(String),
    /// Worth trying again (unavailable, throttled, timed out), after `retry_after` if the server
    /// said so.
    #[error("{message}")]
    Retryable {
        message: String,
        detail: String,
        retry_after: Option<Duration>,
    },
    /// Trying again would fail the same way (bad request, unauthorised).
    #[error("{message}")]
    Permanent { message: String, detail: String },
    /// The destination policy refused the address: never retried, the answer would not change
    /// within a batch's retry budget.
    #[error("destination not permitted")]
    NotPermitted { detail: String },
}

impl TransportError {
    /// Everything known about the failure, for the operator's log.
    pub fn detail(&self) -> &str {
        match self {
            TransportError::Config(detail)
            | TransportError::Retryable { detail, .. }
            | TransportError::Permanent { detail, .. }
            | TransportError::NotPermitted { detail } => detail,
        }
    }

    pub fn is_not_permitted(&self) -> bool {
        matches!(self, TransportError::NotPermitted { .. })
    }
}

/// A name the system resolver could not resolve (kept apart so status can say so).
#[derive(Debug, thiserror::Error)]
#[error("resolving {host}: {source}")]
struct ResolveFailed {
    host: String,
    source: std::io::Error,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Connecting<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

/// Resolves like the system resolver, then refuses the name if any of its addresses is not
/// permitted: checking after resolution is what stops a name that points (or is re-pointed, DNS
/// rebinding) at a denied address. All or nothing, so a name mixing permitted and denied
/// addresses is refused rather than half-used.
#[derive(Clone, Debug)]
struct PolicyResolver {
    policy: Arc<DestinationPolicy>,
}

impl tower::Service<Name> for PolicyResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = Connecting<Self::Response>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            // A name denied as such is refused before any DNS query is made for it.
            policy.precheck(&host)?;
            // Port 0: the connector puts the URL's port in.
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|source| ResolveFailed {
                    host: host.clone(),
                    source,
                })?
                .collect();
            for addr in &addrs {
                policy.check(&host, addr.ip())?;
            }
            Ok(addrs.into_iter())
        })
    }
}

/// The TCP connector with the policy applied to IP literals too: the HTTP connector connects to
/// those without asking the resolver.
#[derive(Clone, Debug)]
pub(super) struct PolicyConnector {
    http: HttpConnector<PolicyResolver>,
    policy: Arc<DestinationPolicy>,
}

impl tower::Service<http::Uri> for PolicyConnector {
    type Response = TokioIo<tokio::net::TcpStream>;
    type Error = BoxError;
    type Future = Connecting<Self::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        if let Some(host) = uri.host()
            && let Some(ip) = literal_ip(host)
            && let Err(refused) = self.policy.check(host, ip)
        {
            return Box::pin(std::future::ready(Err(refused.into())));
        }
        let connecting = self.http.call(uri);
        Box::pin(async move { connecting.await.map_err(Into::into) })
    }
}

type Connector = hyper_rustls::HttpsConnector<PolicyConnector>;

pub(super) enum Transport {
    Grpc {
        traces: TraceServiceClient<Channel>,
        logs: LogsServiceClient<Channel>,
        metadata: MetadataMap,
        timeout: Duration,
    },
    Http {
        client: HttpClient<Connector, Full<Bytes>>,
        spec: ExporterSpec,
    },
}

fn connector(
    spec: &ExporterSpec,
    policy: &Arc<DestinationPolicy>,
) -> Result<Connector, TransportError> {
    let tls = super::tls::client_config(spec.ca_pem.as_deref(), spec.insecure)
        .map_err(|e| TransportError::Config(e.to_string()))?;
    let mut http = HttpConnector::new_with_resolver(PolicyResolver {
        policy: policy.clone(),
    });
    http.enforce_http(false);
    http.set_connect_timeout(Some(spec.timeout));
    let tcp = PolicyConnector {
        http,
        policy: policy.clone(),
    };
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(tcp))
}

impl Transport {
    /// Builds the client; nothing connects until the first send, and every connection goes
    /// through `policy`.
    pub fn new(
        spec: &ExporterSpec,
        policy: &Arc<DestinationPolicy>,
    ) -> Result<Transport, TransportError> {
        let connector = connector(spec, policy)?;
        match spec.protocol {
            Protocol::Grpc => {
                let endpoint = Channel::from_shared(spec.url.clone())
                    .map_err(|e| TransportError::Config(format!("endpoint {}: {e}", spec.url)))?
                    .timeout(spec.timeout)
                    .connect_timeout(spec.timeout);
                let channel = endpoint.connect_with_connector_lazy(connector);
                let mut traces = TraceServiceClient::new(channel.clone());
                let mut logs = LogsServiceClient::new(channel);
                if spec.gzip {
                    traces = traces
                        .send_compressed(CompressionEncoding::Gzip)
                        .accept_compressed(CompressionEncoding::Gzip);
                    logs = logs
                        .send_compressed(CompressionEncoding::Gzip)
                        .accept_compressed(CompressionEncoding::Gzip);
                }
                let mut metadata = MetadataMap::new();
                for (k, v) in &spec.headers {
                    let key = MetadataKey::from_bytes(k.as_bytes())
                        .map_err(|_| TransportError::Config(format!("header name {k:?}")))?;
                    let value = MetadataValue::try_from(v.as_str())
                        .map_err(|_| TransportError::Config(format!("value of header {k}")))?;
                    metadata.insert(key, value);
                }
                Ok(Transport::Grpc {
                    traces,
                    logs,
                    metadata,
                    timeout: spec.timeout,
                })
            }
            Protocol::HttpProtobuf => {
                let client = HttpClient::builder(TokioExecutor::new()).build(connector);
                Ok(Transport::Http {
                    client,
                    spec: spec.clone(),
                })
            }
        }
    }

    /// Sends one request; returns how many spans or log records the receiver rejected (OTLP
    /// partial success).
    pub async fn send(&mut self, request: Request) -> Result<u64, TransportError> {
        let rejected = match self {
            Transport::Grpc {
                traces,
                logs,
                metadata,
                timeout,
            } => match request {
                Request::Traces(request) => {
                    let mut req = tonic::Request::new(request);
                    *req.metadata_mut() = metadata.clone();
                    req.set_timeout(*timeout);
                    let response = traces.export(req).await.map_err(grpc_error)?.into_inner();
                    response.partial_success.map_or(0, |p| p.rejected_spans)
                }
                Request::Logs(request) => {
                    let mut req = tonic::Request::new(request);
                    *req.metadata_mut() = metadata.clone();
                    req.set_timeout(*timeout);
                    let response = logs.export(req).await.map_err(grpc_error)?.into_inner();
                    response
                        .partial_success
                        .map_or(0, |p| p.rejected_log_records)
                }
            },
            Transport::Http { client, spec } => match request {
                Request::Traces(request) => {
                    let response: ExportTraceServiceResponse =
                        send_http(client, spec, &spec.url, request).await?;
                    response.partial_success.map_or(0, |p| p.rejected_spans)
                }
                Request::Logs(request) => {
                    let response: ExportLogsServiceResponse =
                        send_http(client, spec, &spec.logs_url(), request).await?;
                    response
                        .partial_success
                        .map_or(0, |p| p.rejected_log_records)
                }
            },
        };
        Ok(u64::try_from(rejected).unwrap_or(0))
    }
}

/// What went wrong below HTTP and gRPC, in the fixed words status uses, found along an error's
/// source chain: a refusal by the policy, a failed name lookup, TLS, or the socket's error kind.
fn connection_failure(error: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<NotPermitted>() {
            return Some(NOT_PERMITTED);
        }
        if e.is::<ResolveFailed>() {
            return Some("name resolution failed");
        }
        if e.is::<rustls::Error>() {
            return Some("TLS handshake failed");
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return Some("connection refused"),
                std::io::ErrorKind::TimedOut => return Some("timed out"),
                std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof => return Some("connection reset"),
                _ => {}
            }
            // An io::Error's `source` skips the error it wraps, and that may be the answer:
            // tokio-rustls reports a failed handshake as io::Error(Other,
            // io::Error(InvalidData, rustls::Error)).
            if let Some(inner) = io.get_ref() {
                next = Some(inner as &(dyn std::error::Error + 'static));
                continue;
            }
        }
        next = e.source();
    }
    None
}

/// The full chain of an error, for the log.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(e) = next {
        text.push_str(": ");
        text.push_str(&e.to_string());
        next = e.source();
    }
    text
}

/// A connection-level failure: a refusal is final, the rest are worth retrying.
fn connect_error(
    error: &(dyn std::error::Error + 'static),
    fallback: &'static str,
) -> TransportError {
    let detail = chain(error);
    match connection_failure(error) {
        Some(NOT_PERMITTED) => TransportError::NotPermitted { detail },
        found => TransportError::Retryable {
            message: found.unwrap_or(fallback).into(),
            detail,
            retry_after: None,
        },
    }
}

/// `DeadlineExceeded` → `DEADLINE_EXCEEDED`, as the gRPC spec names codes.
fn grpc_code_name(code: tonic::Code) -> String {
    let mut name = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

/// The OTLP retryable codes (RESOURCE_EXHAUSTED is retried: collectors use it for throttling).
/// The status message is the receiver's (or, for a failed connection, the library's): log only.
fn grpc_error(status: tonic::Status) -> TransportError {
    use tonic::Code::*;
    let detail = format!("gRPC {:?}: {}", status.code(), chain(&status));
    if let Some(found) = connection_failure(&status) {
        return if found == NOT_PERMITTED {
            TransportError::NotPermitted { detail }
        } else {
            TransportError::Retryable {
                message: found.into(),
                detail,
                retry_after: None,
            }
        };
    }
    let message = format!("gRPC {}", grpc_code_name(status.code()));
    match status.code() {
        Cancelled | DeadlineExceeded | Aborted | OutOfRange | Unavailable | DataLoss
        | ResourceExhausted => TransportError::Retryable {
            message,
            detail,
            retry_after: None,
        },
        _ => TransportError::Permanent { message, detail },
    }
}

async fn send_http<Response: Message + Default>(
    client: &HttpClient<Connector, Full<Bytes>>,
    spec: &ExporterSpec,
    url: &str,
    request: impl Message,
) -> Result<Response, TransportError> {
    let mut body = request.encode_to_vec();
    let mut builder = hyper::Request::post(url).header("content-type", "application/x-protobuf");
    if spec.gzip {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&body)
            .and_then(|_| gz.finish())
            .map(|b| body = b)
            .map_err(|e| TransportError::Permanent {
                message: "compression failed".into(),
                detail: e.to_string(),
            })?;
        builder = builder.header("content-encoding", "gzip");
    }
    for (k, v) in &spec.headers {
        builder = builder.header(k, v);
    }
    let req = builder
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| TransportError::Config(e.to_string()))?;
    let response = tokio::time::timeout(spec.timeout, client.request(req))
        .await
        .map_err(|_| {
            retryable(
                "timed out",
                format!("no response from {url} within {:?}", spec.timeout),
            )
        })?
        .map_err(|e| connect_error(&e, "connection failed"))?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let bytes = tokio::time::timeout(spec.timeout, response.into_body().collect())
        .await
        .map_err(|_| {
            retryable(
                "timed out",
                format!("the response body from {url} timed out"),
            )
        })?
        .map_err(|e| connect_error(&e, "response failed"))?
        .to_bytes();
    if status.is_success() {
        return Response::decode(bytes).map_err(|e| TransportError::Permanent {
            message: "bad response".into(),
            detail: format!("undecodable response from {url}: {e}"),
        });
    }
    // The body may be anything the server at that address says: log it, never show it.
    let message = format!("HTTP {}", status.as_u16());
    let detail = format!(
        "HTTP {status} from {url}: {}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
    );
    if matches!(status.as_u16(), 429 | 502 | 503 | 504) {
        Err(TransportError::Retryable {
            message,
            detail,
            retry_after,
        })
    } else {
        Err(TransportError::Permanent { message, detail })
    }
}

fn retryable(message: &'static str, detail: String) -> TransportError {
    TransportError::Retryable {
        message: message.into(),
        detail,
        retry_after: None,
    }
}

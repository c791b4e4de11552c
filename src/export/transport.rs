//! Sending one OTLP `ExportTraceServiceRequest` or `ExportLogsServiceRequest`: gRPC (tonic) or
//! HTTP/protobuf (hyper), over the same rustls connector.

use std::io::Write;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("exporter configuration: {0}")]
    Config(String),
    /// Worth trying again (unavailable, throttled, timed out), after `retry_after` if the server
    /// said so.
    #[error("{message}")]
    Retryable {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Trying again would fail the same way (bad request, unauthorised).
    #[error("{0}")]
    Permanent(String),
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

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

fn connector(spec: &ExporterSpec) -> Result<Connector, TransportError> {
    let tls = super::tls::client_config(spec.ca_pem.as_deref(), spec.insecure)?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(spec.timeout));
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http))
}

impl Transport {
    /// Builds the client; nothing connects until the first send.
    pub fn new(spec: &ExporterSpec) -> Result<Transport, TransportError> {
        let connector = connector(spec)?;
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

/// The OTLP retryable codes (RESOURCE_EXHAUSTED is retried: collectors use it for throttling).
fn grpc_error(status: tonic::Status) -> TransportError {
    use tonic::Code::*;
    let message = format!("gRPC {:?}: {}", status.code(), status.message());
    match status.code() {
        Cancelled | DeadlineExceeded | Aborted | OutOfRange | Unavailable | DataLoss
        | ResourceExhausted => TransportError::Retryable {
            message,
            retry_after: None,
        },
        _ => TransportError::Permanent(message),
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
            .map_err(|e| TransportError::Permanent(e.to_string()))?;
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
        .map_err(|_| retryable(format!("no response within {:?}", spec.timeout)))?
        .map_err(|e| retryable(format!("{url}: {e}")))?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let bytes = tokio::time::timeout(spec.timeout, response.into_body().collect())
        .await
        .map_err(|_| retryable("response body timed out".into()))?
        .map_err(|e| retryable(e.to_string()))?
        .to_bytes();
    if status.is_success() {
        return Response::decode(bytes)
            .map_err(|e| TransportError::Permanent(format!("bad response: {e}")));
    }
    let message = format!(
        "HTTP {status} from {url}: {}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
    );
    if matches!(status.as_u16(), 429 | 502 | 503 | 504) {
        Err(TransportError::Retryable {
            message,
            retry_after,
        })
    } else {
        Err(TransportError::Permanent(message))
    }
}

fn retryable(message: String) -> TransportError {
    TransportError::Retryable {
        message,
        retry_after: None,
    }
}

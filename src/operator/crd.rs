//! The `TraceSession` custom resource: what to trace and where to send it.
//!
//! Everything the schema can check is checked by the API server (OpenAPI constraints and CEL
//! rules), so `kubectl apply` rejects nonsense at the door; the rest (label selector operators,
//! kinds the cluster does not serve, missing Secrets, namespaces a tenant may not read) is checked
//! by the reconciler and reported in a condition that names the field.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "eventspan.dev";
pub const FINALIZER: &str = "eventspan.dev/flush";

/// A Go-style duration: `500ms`, `5s`, `1m30s`, `2h`.
const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";
/// A DNS-1123 label: namespace names.
const NAMESPACE_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// Traces Kubernetes changes in some namespaces and exports them over OTLP.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "eventspan.dev",
    version = "v1alpha1",
    kind = "TraceSession",
    namespaced,
    shortname = "ts",
    status = "TraceSessionStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Spans","type":"integer","jsonPath":".status.spansExported"}"#,
    printcolumn = r#"{"name":"Traces","type":"integer","jsonPath":".status.traces"}"#,
    printcolumn = r#"{"name":"Last Trace","type":"string","jsonPath":".status.lastTraceId"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("self.exporters.all(e, self.exporters.exists_one(f, f.name == e.name))").message("exporter names must be unique"))]
#[serde(rename_all = "camelCase")]
pub struct TraceSessionSpec {
    /// Namespaces to watch. Default: the session's own namespace. Sessions outside the operator's
    /// admin namespaces may only name their own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(regex(pattern = NAMESPACE_PATTERN), length(max = 63)))]
    #[x_kube(validation = Rule::new("self.all(n, self.exists_one(m, m == n))").message("namespaces must not repeat"))]
    pub namespaces: Vec<String>,

    /// Which traces to keep, matched against the labels of each trace's root object (the
    /// Deployment, StatefulSet... whose change the trace describes). Default: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,

    /// The kinds that may be trace roots. Default: Deployment, StatefulSet, DaemonSet (apps) and
    /// Job, CronJob (batch). Custom kinds (an Argo Rollout, a Flux HelmRelease) work too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub root_kinds: Vec<RootKind>,

    /// Where spans go; each exporter gets every span of the session.
    #[schemars(length(min = 1, max = 8))]
    pub exporters: Vec<Exporter>,

    /// How long an event whose parent has not been seen yet is held (Go duration), for this
    /// session alone. Default and minimum: the operator's `--window` (5s unless set); at most
    /// 60s, and at most the operator's `--max-session-window`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) <= duration('60s')").message("window must be at most 60s"))]
    pub window: Option<String>,

    /// Stop tracing without deleting the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,

    /// Stop by itself this long after it started (Go duration); the phase becomes Completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub ttl: Option<String>,

    /// How many recent traces the status lists (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub max_recent_traces: Option<i32>,

    /// A link to open a trace, with `{traceId}` standing for its ID, for example
    /// `http://jaeger:16686/trace/{traceId}`; recent traces in the status then carry a URL. Only
    /// `http://` and `https://` links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new("self.contains('{traceId}')").message("traceUrlTemplate must contain {traceId}"))]
    #[x_kube(validation = Rule::new("self.matches('^https?://[^/?#\\\\s]+')").message("traceUrlTemplate must be an http:// or https:// URL with a host"))]
    pub trace_url_template: Option<String>,

    /// What a trace does with the W3C traceparent its root object carries in the annotation
    /// `eventspan.dev/traceparent` (set by the pipeline that applied the change). `Parent`
    /// (default): the trace becomes part of the pipeline's trace (its trace ID, the root span's
    /// parent the pipeline's span). `Link`: the trace keeps its own ID and its root span links to
    /// the pipeline's span. `Ignore`: the annotation is not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<TraceparentMode>,

    /// One `service.name` for every span, with the reporting component in the span attributes
    /// `k8s.event.reporting_controller` and `k8s.event.reporting_instance` (keeps the backend's
    /// service count low). Default: each reporting component is a service of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub service_name: Option<String>,

    /// `Deterministic` (default): trace IDs are a hash of the root object's uid and generation.
    /// `AwsXRay`: the first 4 bytes are the trace's start in epoch seconds, as AWS X-Ray requires;
    /// the other 12 are the deterministic ID's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id_format: Option<TraceIdFormat>,

    /// What the operator's `/metrics` tells about this session's traces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<SessionMetrics>,
}

/// `spec.metrics`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionMetrics {
    /// Label the rollout, pod and node-provisioning histograms of this session's traces with
    /// their namespace. Off by default: namespaces are the label users multiply, and with it
    /// each namespace the session traces (at most 64) is a series of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_label: Option<bool>,
}

/// `spec.traceparent`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum TraceparentMode {
    #[default]
    Parent,
    Link,
    Ignore,
}

/// `spec.traceIdFormat`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum TraceIdFormat {
    #[default]
    Deterministic,
    AwsXRay,
}

/// A kind that may be a trace root.
#[derive(
    Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
pub struct RootKind {
    /// API group; empty for the core group.
    #[serde(default)]
    #[schemars(length(max = 253))]
    pub group: String,
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[A-Z][A-Za-z0-9]*$"))]
    pub kind: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct Exporter {
    /// A name for status and metrics.
    #[schemars(length(min = 1, max = 63), regex(pattern = NAMESPACE_PATTERN))]
    pub name: String,
    pub otlp: OtlpExporter,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum Protocol {
    #[default]
    #[serde(rename = "grpc")]
    Grpc,
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Gzip,
    None,
}

/// An OTLP endpoint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct OtlpExporter {
    /// `http://` or `https://` URL: for gRPC the collector address (`http://otel-collector:4317`),
    /// for HTTP the base URL (`/v1/traces` is appended unless the path already ends with it).
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^https?://[^/?#\\\\s]+')").message("endpoint must be an http:// or https:// URL with a host"))]
    pub endpoint: String,
    /// `grpc` (default) or `http/protobuf`.
    #[serde(default)]
    pub protocol: Protocol,
    /// Extra request headers (gRPC metadata), e.g. a tenant ID.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Secrets in the session's namespace whose every key/value becomes a header (credentials).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub headers_from: Vec<HeadersFrom>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    /// `gzip` (default) or `none`.
    #[serde(default)]
    pub compression: Compression,
    /// Per-request timeout (Go duration, default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub timeout: Option<String>,
    /// Also export each span's event as an OTLP log record (`k8s.event.*` and `k8s.object.*`
    /// attributes, the span's trace and span IDs): gRPC LogsService, or for HTTP `/v1/logs`
    /// beside `/v1/traces`. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub logs: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeadersFrom {
    pub secret_ref: SecretRef,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tls {
    /// Skip certificate verification (testing only).
    #[serde(default)]
    pub insecure: bool,
    /// A PEM CA bundle in a Secret of the session's namespace, trusted besides the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    Pending,
    Active,
    Suspended,
    Completed,
    Failed,
}

/// What the operator reports about a session.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TraceSessionStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// `Ready`, `Reconciling`, `Stalled` (kstatus' conditions), `ExportersHealthy` and
    /// `WatchesHealthy`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watched_namespaces: Vec<String>,
    #[serde(default)]
    pub events_observed: i64,
    #[serde(default)]
    pub spans_exported: i64,
    #[serde(default)]
    pub spans_dropped: i64,
    #[serde(default)]
    pub export_errors: i64,
    /// Log records exported by exporters with `logs` (summed over exporters).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub logs_exported: i64,
    /// Log records dropped: full queue, retries exhausted, refused or rejected.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub logs_dropped: i64,
    #[serde(default)]
    pub traces: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_trace_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_traces: Vec<RecentTrace>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecentTrace {
    pub trace_id: String,
    pub root: RootObject,
    pub start_time: Time,
    pub span_count: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct RootObject {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub generation: i64,
}

/// The CustomResourceDefinition as YAML, as `eventspan crd` prints it and `crds/` holds it.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let mut crd = serde_json::to_value(TraceSession::crd()).expect("the CRD serialises");
    for version in crd["spec"]["versions"].as_array_mut().into_iter().flatten() {
        let properties = &mut version["schema"]["openAPIV3Schema"]["properties"];
        strip_defaults(&mut properties["spec"]);
        // A session the operator has not written a status for yet reads `observedGeneration: 0`
        // (the API server fills it in on read), which kstatus takes as a generation not yet
        // observed (InProgress): without it, a session created while the operator is down has
        // no status, and no status computes to Current.
        properties["status"]["default"] = serde_json::json!({"observedGeneration": 0});
    }
    serde_saphyr::to_string(&crd).expect("the CRD serialises")
}

/// Removes schema defaults from the spec: every one sits inside a list item (an exporter's
/// protocol, a root kind's group), and a list the API server fills in differs from the list in
/// the applied file, so `kubectl apply` of an unchanged file would report it `configured`. The
/// reconciler applies the same defaults when it reads the spec (serde), so nothing is lost.
fn strip_defaults(schema: &mut serde_json::Value) {
    match schema {
        serde_json::Value::Object(map) => {
            map.remove("default");
            map.values_mut().for_each(strip_defaults);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_defaults),
        _ => {}
    }
}

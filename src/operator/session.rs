//! A TraceSession's spec, checked and turned into what the runtime needs.
//!
//! Pure: everything here can be decided from the spec alone. Checks that need the cluster
//! (Secrets, served kinds) are the reconciler's.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::crd::{self, Compression, Protocol, SecretKeyRef, TraceSessionSpec, TraceparentMode};
use super::matcher::{LabelMatcher, Scope, default_root_kinds};
use crate::duration;
use crate::export::DestinationPolicy;
use crate::otlp::shape::{ParentTraceMode, ServiceNaming, SpanShape, TraceIdFormat};

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_RECENT_TRACES: usize = 10;

/// Why a session cannot run: the condition reason, the field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

impl Invalid {
    pub fn spec(field: impl Into<String>, message: impl Into<String>) -> Self {
        Invalid {
            reason: "InvalidSpec",
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Where an exporter sends, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub https: bool,
    /// The host as written (an IPv6 literal in brackets).
    pub host: String,
    /// `host:port` (the scheme's default port filled in).
    pub authority: String,
    /// For OTLP/HTTP: the full path to POST to (`/v1/traces` appended when missing).
    pub path: String,
}

impl Endpoint {
    pub fn url(&self) -> String {
        format!(
            "{}://{}{}",
            if self.https { "https" } else { "http" },
            self.authority,
            self.path
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExporterConfig {
    pub name: String,
    pub endpoint: Endpoint,
    pub protocol: Protocol,
    /// Headers from the spec, validated.
    pub headers: Vec<(String, String)>,
    /// Secrets whose keys and values become headers.
    pub header_secrets: Vec<String>,
    pub insecure: bool,
    pub ca_secret: Option<SecretKeyRef>,
    pub compression: Compression,
    pub timeout: Duration,
    pub logs: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    pub scope: Scope,
    pub exporters: Vec<ExporterConfig>,
    /// The session's own correlation window; the operator's (`--window`) applies when it is
    /// shorter or unset.
    pub window: Option<Duration>,
    pub suspend: bool,
    pub ttl: Option<Duration>,
    pub max_recent_traces: usize,
    pub trace_url_template: Option<String>,
    /// How the session's spans leave: trace IDs, remote parents, service name.
    pub shape: SpanShape,
    /// Whether the span histograms label this session's traces with their namespace.
    pub namespace_label: bool,
}

fn parse_duration(field: &str, value: &Option<String>) -> Result<Option<Duration>, Invalid> {
    value
        .as_deref()
        .map(|v| duration::parse(v).map_err(|e| Invalid::spec(field, e.to_string())))
        .transpose()
}

fn parse_endpoint(field: &str, raw: &str, protocol: Protocol) -> Result<Endpoint, Invalid> {
    let bad = |m: &str| Invalid::spec(field, format!("{raw:?}: {m}"));
    let uri: http::Uri = raw
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(bad("the scheme must be http or https")),
    };
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    if authority.host().is_empty() {
        return Err(bad("no host"));
    }
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let path = uri.path().trim_end_matches('/');
    let path = match protocol {
        Protocol::Grpc if !path.is_empty() => return Err(bad("a gRPC endpoint has no path")),
        Protocol::Grpc => String::new(),
        Protocol::HttpProtobuf if path.ends_with("/v1/traces") => path.to_string(),
        Protocol::HttpProtobuf => format!("{path}/v1/traces"),
    };
    Ok(Endpoint {
        https,
        host: authority.host().to_string(),
        authority: format!("{}:{port}", authority.host()),
        path,
    })
}

/// Checks a spec. `own` is the session's namespace; sessions in `admin` namespaces may trace
/// other namespaces.
pub fn validate(
    spec: &TraceSessionSpec,
    own: &str,
    admin: &BTreeSet<String>,
) -> Result<SessionConfig, Invalid> {
    let namespaces: BTreeSet<String> = if spec.namespaces.is_empty() {
        [own.to_string()].into()
    } else {
        spec.namespaces.iter().cloned().collect()
    };
    if !admin.contains(own)
        && let Some(foreign) = namespaces.iter().find(|n| *n != own)
    {
        return Err(Invalid {
            reason: "NamespaceNotPermitted",
            field: "spec.namespaces".into(),
            message: format!(
                "a session in namespace {own} may only trace {own}, not {foreign} (only sessions in the operator's admin namespaces may trace other namespaces)"
            ),
        });
    }
    let selector = match &spec.selector {
        None => LabelMatcher::default(),
        Some(s) => LabelMatcher::new(s)
            .map_err(|e| Invalid::spec(format!("spec.selector.{}", e.field), e.message))?,
    };
    let root_kinds = if spec.root_kinds.is_empty() {
        default_root_kinds()
    } else {
        spec.root_kinds
            .iter()
            .map(|k| (k.group.clone(), k.kind.clone()))
            .collect()
    };
    let mut exporters = Vec::new();
    for (i, e) in spec.exporters.iter().enumerate() {
        let field = |f: &str| format!("spec.exporters[{i}].otlp.{f}");
        let o = &e.otlp;
        let endpoint = parse_endpoint(&field("endpoint"), &o.endpoint, o.protocol)?;
        let mut headers = Vec::new();
        for (name, value) in &o.headers {
            if http::HeaderName::try_from(name.as_str()).is_err() {
                return Err(Invalid::spec(
                    field("headers"),
                    format!("{name:?} is not a valid header name"),
                ));
            }
            if http::HeaderValue::try_from(value.as_str()).is_err() {
                return Err(Invalid::spec(
                    field("headers"),
                    format!("the value of {name} is not a valid header value"),
                ));
            }
            headers.push((name.to_ascii_lowercase(), value.clone()));
        }
        let tls = o.tls.clone().unwrap_or_default();
        if !endpoint.https && tls.ca_secret_ref.is_some() {
            return Err(Invalid::spec(
                field("tls.caSecretRef"),
                "a CA is only used with an https:// endpoint",
            ));
        }
        exporters.push(ExporterConfig {
            name: e.name.clone(),
            endpoint,
            protocol: o.protocol,
            headers,
            header_secrets: o
                .headers_from
                .iter()
                .map(|h| h.secret_ref.name.clone())
                .collect(),
            insecure: tls.insecure,
            ca_secret: tls.ca_secret_ref,
            compression: o.compression,
            timeout: parse_duration(&field("timeout"), &o.timeout)?.unwrap_or(DEFAULT_TIMEOUT),
            logs: o.logs,
        });
    }
    if exporters.is_empty() {
        return Err(Invalid::spec(
            "spec.exporters",
            "at least one exporter is required",
        ));
    }
    Ok(SessionConfig {
        scope: Scope {
            namespaces,
            root_kinds,
            selector,
        },
        exporters,
        window: parse_duration("spec.window", &spec.window)?,
        suspend: spec.suspend.unwrap_or(false),
        ttl: parse_duration("spec.ttl", &spec.ttl)?,
        max_recent_traces: spec
            .max_recent_traces
            .map_or(DEFAULT_RECENT_TRACES, |n| n as usize),
        trace_url_template: spec
            .trace_url_template
            .as_deref()
            .map(|t| {
                check_trace_url_template(t)
                    .map(|()| t.to_string())
                    .map_err(|e| Invalid::spec("spec.traceUrlTemplate", e.to_string()))
            })
            .transpose()?,
        shape: shape(spec)?,
        namespace_label: spec
            .metrics
            .as_ref()
            .and_then(|m| m.namespace_label)
            .unwrap_or(false),
    })
}

/// A trace link must be an http(s) URL with `{traceId}` in it: the status shows it to whoever
/// reads the session, and a `javascript:` or `file:` link there would be a trap. The CRD's CEL
/// rules say the same; this holds where an older CRD is installed.
pub fn check_trace_url_template(template: &str) -> Result<(), BadTraceUrl> {
    if !template.contains("{traceId}") {
        return Err(BadTraceUrl::NoTraceId);
    }
    let sample = template.replace("{traceId}", "4bf92f3577b34da6a3ce929d0e0e4736");
    let uri: http::Uri = sample
        .parse()
        .map_err(|_| BadTraceUrl::NotAUrl(template.into()))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(BadTraceUrl::Scheme(template.into()));
    }
    if uri.authority().is_none_or(|a| a.host().is_empty()) {
        return Err(BadTraceUrl::NoHost(template.into()));
    }
    Ok(())
}

/// Why a `traceUrlTemplate` is refused (each but the first names the template).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadTraceUrl {
    #[error("must contain {{traceId}}")]
    NoTraceId,
    #[error("{0:?} is not a URL")]
    NotAUrl(String),
    #[error("{0:?}: the scheme must be http or https")]
    Scheme(String),
    #[error("{0:?}: no host")]
    NoHost(String),
}

/// What the operator's flags allow exporters: where they may connect, and whether headers from
/// Secrets may travel over plain http.
#[derive(Clone, Debug, Default)]
pub struct ExporterPolicy {
    pub destinations: Arc<DestinationPolicy>,
    /// `--allow-plaintext-secret-headers`.
    pub allow_plaintext_secret_headers: bool,
}

/// Checks a valid session's exporters against the operator's policy: what can be decided before
/// connecting (a literal IP, a denied name; names are checked again, with their addresses, on
/// every connect), and that Secret headers go over https.
pub fn check_exporters(config: &SessionConfig, policy: &ExporterPolicy) -> Result<(), Invalid> {
    for (i, e) in config.exporters.iter().enumerate() {
        if let Err(refused) = policy.destinations.precheck(&e.endpoint.host) {
            tracing::info!(exporter = %e.name, %refused, "exporter endpoint refused");
            return Err(Invalid {
                reason: "DestinationNotPermitted",
                field: format!("spec.exporters[{i}].otlp.endpoint"),
                message: format!(
                    "exporter {}: {} is not a permitted destination (the operator's exporter destination policy)",
                    e.name, e.endpoint.host
                ),
            });
        }
        if !e.header_secrets.is_empty()
            && !e.endpoint.https
            && !policy.allow_plaintext_secret_headers
        {
            return Err(Invalid {
                reason: "PlaintextSecretHeaders",
                field: format!("spec.exporters[{i}].otlp.headersFrom"),
                message: format!(
                    "exporter {}: headers from Secrets are only sent to an https:// endpoint (the operator's --allow-plaintext-secret-headers permits http://)",
                    e.name
                ),
            });
        }
    }
    Ok(())
}

fn shape(spec: &TraceSessionSpec) -> Result<SpanShape, Invalid> {
    let service = match spec.service_name.as_deref().map(str::trim) {
        None => ServiceNaming::PerComponent,
        Some("") => {
            return Err(Invalid::spec(
                "spec.serviceName",
                "must not be empty or blank",
            ));
        }
        Some(name) => ServiceNaming::Fixed(name.into()),
    };
    Ok(SpanShape {
        service,
        trace_ids: match spec.trace_id_format.unwrap_or_default() {
            crd::TraceIdFormat::Deterministic => TraceIdFormat::Deterministic,
            crd::TraceIdFormat::AwsXRay => TraceIdFormat::AwsXRay,
        },
        parent_trace: match spec.traceparent.unwrap_or_default() {
            TraceparentMode::Parent => ParentTraceMode::Parent,
            TraceparentMode::Link => ParentTraceMode::Link,
            TraceparentMode::Ignore => ParentTraceMode::Ignore,
        },
        // Not the session's to choose: the reconciler sets the operator's --cluster-name.
        cluster: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::crd::{Exporter, OtlpExporter, RootKind};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

    fn exporter(endpoint: &str, protocol: Protocol) -> Exporter {
        Exporter {
            name: "jaeger".into(),
            otlp: OtlpExporter {
                endpoint: endpoint.into(),
                protocol,
                headers: Default::default(),
                headers_from: vec![],
                tls: None,
                compression: Compression::Gzip,
                timeout: None,
                logs: false,
            },
        }
    }

    fn spec() -> TraceSessionSpec {
        TraceSessionSpec {
            exporters: vec![exporter("http://jaeger:4317", Protocol::Grpc)],
            ..Default::default()
        }
    }

    fn admin() -> BTreeSet<String> {
        ["eventspan-system".to_string()].into()
    }

    #[test]
    fn defaults() {
        let c = validate(&spec(), "shop", &admin()).unwrap();
        assert_eq!(c.scope.namespaces, ["shop".to_string()].into());
        assert_eq!(c.scope.root_kinds, default_root_kinds());
        assert_eq!(c.window, None);
        assert_eq!(c.max_recent_traces, 10);
        assert_eq!(c.exporters[0].endpoint.authority, "jaeger:4317");
        assert_eq!(c.exporters[0].timeout, DEFAULT_TIMEOUT);
        assert!(!c.exporters[0].logs);
        assert_eq!(c.shape, SpanShape::default());
        assert_eq!(c.shape.parent_trace, ParentTraceMode::Parent);
        assert!(!c.namespace_label, "namespaces are a label only on request");
        let asks = TraceSessionSpec {
            metrics: Some(crate::operator::crd::SessionMetrics {
                namespace_label: Some(true),
            }),
            ..spec()
        };
        assert!(validate(&asks, "shop", &admin()).unwrap().namespace_label);
    }

    #[test]
    fn the_pipelines_sample_is_a_shaped_session() {
        let ts: crate::operator::crd::TraceSession =
            serde_saphyr::from_str(include_str!("../../deploy/samples/pipelines.yaml")).unwrap();
        let c = validate(&ts.spec, "shop", &admin()).unwrap();
        assert_eq!(
            c.shape,
            SpanShape {
                service: ServiceNaming::Fixed("k8s-rollouts".into()),
                trace_ids: TraceIdFormat::AwsXRay,
                parent_trace: ParentTraceMode::Parent,
                cluster: None,
            }
        );
        assert!(c.exporters[0].logs);
        assert_eq!(
            c.exporters[0].endpoint.url(),
            "http://otel-collector.observability:4318/v1/traces"
        );
    }

    #[test]
    fn shaping_options() {
        let mut s = spec();
        s.traceparent = Some(TraceparentMode::Link);
        s.service_name = Some("k8s-rollouts".into());
        s.trace_id_format = Some(crd::TraceIdFormat::AwsXRay);
        s.exporters[0].otlp.logs = true;
        let c = validate(&s, "shop", &admin()).unwrap();
        assert_eq!(
            c.shape,
            SpanShape {
                service: ServiceNaming::Fixed("k8s-rollouts".into()),
                trace_ids: TraceIdFormat::AwsXRay,
                parent_trace: ParentTraceMode::Link,
                cluster: None,
            }
        );
        assert!(c.exporters[0].logs);
        s.service_name = Some("  ".into());
        assert_eq!(
            validate(&s, "shop", &admin()).unwrap_err().field,
            "spec.serviceName"
        );
        // As the API server hands them over.
        let parsed: TraceSessionSpec = serde_json::from_value(serde_json::json!({
            "exporters": [{"name": "x", "otlp": {"endpoint": "http://c:4317", "logs": true}}],
            "traceparent": "Ignore", "traceIdFormat": "AwsXRay", "serviceName": "svc"
        }))
        .unwrap();
        let c = validate(&parsed, "shop", &admin()).unwrap();
        assert_eq!(c.shape.parent_trace, ParentTraceMode::Ignore);
        assert_eq!(c.shape.trace_ids, TraceIdFormat::AwsXRay);
        assert!(c.exporters[0].logs);
    }

    #[test]
    fn tenants_may_not_trace_other_namespaces() {
        let s = TraceSessionSpec {
            namespaces: vec!["shop".into(), "payments".into()],
            ..spec()
        };
        let e = validate(&s, "shop", &admin()).unwrap_err();
        assert_eq!(
            (e.reason, e.field.as_str()),
            ("NamespaceNotPermitted", "spec.namespaces")
        );
        assert!(e.message.contains("not payments"), "{}", e.message);
        assert!(validate(&s, "eventspan-system", &admin()).is_ok());
        let own = TraceSessionSpec {
            namespaces: vec!["shop".into()],
            ..spec()
        };
        assert!(validate(&own, "shop", &admin()).is_ok());
    }

    #[test]
    fn endpoints_by_protocol() {
        let http = |e: &str| {
            let s = TraceSessionSpec {
                exporters: vec![exporter(e, Protocol::HttpProtobuf)],
                ..spec()
            };
            validate(&s, "shop", &admin()).map(|c| c.exporters[0].endpoint.url())
        };
        assert_eq!(
            http("http://collector:4318").unwrap(),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            http("https://otlp.example.com/otlp/v1/traces").unwrap(),
            "https://otlp.example.com:443/otlp/v1/traces"
        );
        assert_eq!(
            http("ftp://x").unwrap_err().field,
            "spec.exporters[0].otlp.endpoint"
        );
        let grpc = TraceSessionSpec {
            exporters: vec![exporter("http://c:4317/v1/traces", Protocol::Grpc)],
            ..spec()
        };
        assert!(
            validate(&grpc, "shop", &admin())
                .unwrap_err()
                .message
                .contains("no path")
        );
    }

    fn policy(allow_plaintext_secret_headers: bool) -> ExporterPolicy {
        ExporterPolicy {
            destinations: Arc::new(DestinationPolicy::new(
                vec![],
                vec!["10.9.0.0/16".parse().unwrap()],
                true,
            )),
            allow_plaintext_secret_headers,
        }
    }

    fn with_endpoints(endpoints: &[&str]) -> SessionConfig {
        let s = TraceSessionSpec {
            exporters: endpoints
                .iter()
                .enumerate()
                .map(|(i, e)| Exporter {
                    name: format!("e{i}"),
                    ..exporter(e, Protocol::HttpProtobuf)
                })
                .collect(),
            ..spec()
        };
        validate(&s, "shop", &admin()).unwrap()
    }

    #[test]
    fn literal_ips_and_denied_names_are_refused_before_connecting() {
        for endpoint in [
            "http://169.254.169.254/latest",
            "http://[fd00:ec2::254]:80",
            "http://[::ffff:169.254.169.254]",
            "http://metadata.google.internal",
            "https://10.9.3.4:4318",
        ] {
            let config = with_endpoints(&["http://collector:4318", endpoint]);
            let e = check_exporters(&config, &policy(false)).unwrap_err();
            assert_eq!(
                (e.reason, e.field.as_str()),
                ("DestinationNotPermitted", "spec.exporters[1].otlp.endpoint"),
                "{endpoint}"
            );
            assert!(e.message.starts_with("exporter e1: "), "{}", e.message);
        }
        // Names are decided on connect, with their addresses; loopback and private are fine.
        let fine = with_endpoints(&[
            "http://imds.example",
            "http://127.0.0.1:4318",
            "http://10.8.0.1:4318",
            "http://[::1]:4318",
        ]);
        assert_eq!(check_exporters(&fine, &policy(false)), Ok(()));
    }

    #[test]
    fn secret_headers_need_https_unless_the_operator_allows_http() {
        let mut s = spec();
        s.exporters[0].otlp.headers_from = vec![crate::operator::crd::HeadersFrom {
            secret_ref: crate::operator::crd::SecretRef {
                name: "otlp-auth".into(),
            },
        }];
        let plain = validate(&s, "shop", &admin()).unwrap();
        let e = check_exporters(&plain, &policy(false)).unwrap_err();
        assert_eq!(
            (e.reason, e.field.as_str()),
            (
                "PlaintextSecretHeaders",
                "spec.exporters[0].otlp.headersFrom"
            )
        );
        assert_eq!(check_exporters(&plain, &policy(true)), Ok(()));
        s.exporters[0].otlp.endpoint = "https://jaeger:4317".into();
        let tls = validate(&s, "shop", &admin()).unwrap();
        assert_eq!(check_exporters(&tls, &policy(false)), Ok(()));
        // Headers written in the spec itself are no secret: http is fine for them.
        let mut open = spec();
        open.exporters[0].otlp.headers = [("x-tenant".into(), "shop".into())].into();
        let open = validate(&open, "shop", &admin()).unwrap();
        assert_eq!(check_exporters(&open, &policy(false)), Ok(()));
    }

    #[test]
    fn trace_links_must_be_http_urls() {
        for bad in [
            "javascript:alert(1)//{traceId}",
            "ftp://jaeger/trace/{traceId}",
            "file:///etc/{traceId}",
            "//jaeger/{traceId}",
            "http:///{traceId}",
            "http://jaeger/trace",
        ] {
            let s = TraceSessionSpec {
                trace_url_template: Some(bad.into()),
                ..spec()
            };
            assert_eq!(
                validate(&s, "shop", &admin()).unwrap_err().field,
                "spec.traceUrlTemplate",
                "{bad}"
            );
        }
        let s = TraceSessionSpec {
            trace_url_template: Some("https://jaeger.example:16686/trace/{traceId}".into()),
            ..spec()
        };
        assert!(validate(&s, "shop", &admin()).is_ok());
    }

    #[test]
    fn bad_selector_names_the_field() {
        let s = TraceSessionSpec {
            selector: Some(LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "app".into(),
                    operator: "Equals".into(),
                    values: Some(vec!["web".into()]),
                }]),
                ..Default::default()
            }),
            ..spec()
        };
        let e = validate(&s, "shop", &admin()).unwrap_err();
        assert_eq!(e.field, "spec.selector.matchExpressions[0].operator");
        assert_eq!(e.reason, "InvalidSpec");
    }

    #[test]
    fn custom_root_kinds_and_durations() {
        let s = TraceSessionSpec {
            root_kinds: vec![RootKind {
                group: "argoproj.io".into(),
                kind: "Rollout".into(),
            }],
            window: Some("10s".into()),
            ttl: Some("1h".into()),
            ..spec()
        };
        let c = validate(&s, "shop", &admin()).unwrap();
        assert!(
            c.scope
                .root_kinds
                .contains(&("argoproj.io".into(), "Rollout".into()))
        );
        assert_eq!(
            (c.window, c.ttl),
            (
                Some(Duration::from_secs(10)),
                Some(Duration::from_secs(3600))
            )
        );
        let bad = TraceSessionSpec {
            window: Some("5 parsecs".into()),
            ..spec()
        };
        assert_eq!(
            validate(&bad, "shop", &admin()).unwrap_err().field,
            "spec.window"
        );
    }
}

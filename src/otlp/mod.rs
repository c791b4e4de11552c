//! Finished spans as OTLP: one `ResourceSpans` per reporting component (or a single one when a
//! session fixes the service name), and, for sessions that ask, the events as OTLP log records.
//!
//! [`export_request`] builds the protobuf message the exporters send; [`json`] writes the same
//! request as OTLP/JSON directly, several times faster than serialising the message, for replay.
//! Both apply a session's [`SpanShape`] (trace ID format, remote parent or link, service name).
//!
//! Built by hand from the opentelemetry-proto types rather than through the SDK: the SDK can no
//! longer set span IDs or end times, and carries one Resource per exporter, while a trace here
//! spans many components with IDs that must stay deterministic.

pub mod cluster_name;
pub mod json;
pub mod shape;

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};

use crate::engine::model::{AttrRef, Component, FinishedSpan};
use crate::engine::time::Timestamp;
pub use shape::SpanShape;

fn any(value: AttrRef<'_>) -> AnyValue {
    AnyValue {
        value: Some(match value {
            AttrRef::Str(s) => any_value::Value::StringValue(s.to_string()),
            AttrRef::Int(i) => any_value::Value::IntValue(i),
            AttrRef::Bool(b) => any_value::Value::BoolValue(b),
        }),
    }
}

fn kv(key: &str, value: AttrRef<'_>) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(any(value)),
        ..Default::default()
    }
}

fn resource(shape: &SpanShape, component: Option<Component<'_>>) -> Resource {
    Resource {
        attributes: shape
            .resource_attributes(component)
            .into_iter()
            .map(|(k, v)| kv(k, v))
            .collect(),
        ..Default::default()
    }
}

pub fn nanos(t: Timestamp) -> u64 {
    u64::try_from(t.unix_nanos()).unwrap_or(0)
}

pub fn span(s: &FinishedSpan, shape: &SpanShape) -> Span {
    Span {
        trace_id: shape.trace_id(s).to_bytes().to_vec(),
        span_id: s.span_id.to_bytes().to_vec(),
        parent_span_id: shape
            .parent(s)
            .map(|p| p.to_bytes().to_vec())
            .unwrap_or_default(),
        flags: shape.flags(s),
        name: s.name().into_owned(),
        kind: span::SpanKind::Internal as i32,
        start_time_unix_nano: nanos(s.start),
        end_time_unix_nano: nanos(s.end),
        attributes: shape
            .span_attributes(s)
            .into_iter()
            .map(|(k, v)| kv(k, v))
            .collect(),
        events: s
            .repeats
            .iter()
            .map(|&(time, count)| span::Event {
                time_unix_nano: nanos(time),
                name: "repeat".into(),
                attributes: vec![kv("k8s.event.count", AttrRef::Int(i64::from(count)))],
                ..Default::default()
            })
            .collect(),
        links: shape
            .link(s)
            .map(|(remote, flags)| span::Link {
                trace_id: remote.trace_id.to_bytes().to_vec(),
                span_id: remote.span_id.to_bytes().to_vec(),
                flags,
                ..Default::default()
            })
            .into_iter()
            .collect(),
        status: s.error.then(|| Status {
            message: s.message().to_string(),
            code: status::StatusCode::Error as i32,
        }),
        ..Default::default()
    }
}

/// Spans grouped by Resource (their reporting component, or all in one with a fixed service
/// name), both in a deterministic order.
pub fn by_resource<'a>(
    spans: impl IntoIterator<Item = &'a FinishedSpan>,
    shape: &SpanShape,
) -> BTreeMap<Option<Component<'a>>, Vec<&'a FinishedSpan>> {
    let mut groups: BTreeMap<Option<Component<'a>>, Vec<&FinishedSpan>> = BTreeMap::new();
    for s in spans {
        groups.entry(shape.resource_of(s)).or_default().push(s);
    }
    for spans in groups.values_mut() {
        spans.sort_by_key(|s| (s.start, s.span_id));
    }
    groups
}

/// The instrumentation scope every span is reported under.
pub const SCOPE_NAME: &str = "eventspan";
pub const SCOPE_VERSION: &str = env!("CARGO_PKG_VERSION");

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: SCOPE_NAME.into(),
        version: SCOPE_VERSION.into(),
        ..Default::default()
    }
}

/// One export request for a batch of spans: one `ResourceSpans` per Resource.
pub fn export_request<'a>(
    spans: impl IntoIterator<Item = &'a FinishedSpan>,
    shape: &SpanShape,
) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: by_resource(spans, shape)
            .into_iter()
            .map(|(component, spans)| ResourceSpans {
                resource: Some(resource(shape, component)),
                scope_spans: vec![ScopeSpans {
                    scope: Some(scope()),
                    spans: spans.into_iter().map(|s| span(s, shape)).collect(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect(),
    }
}

/// The log record of a span made from an event: the event as the OpenTelemetry Collector's k8s
/// events receiver would log it (body = message, severity from the type, `k8s.event.*` and
/// `k8s.object.*` attributes), with the span's (shaped) trace and span IDs. `None` for a
/// synthesised root, which no event describes.
pub fn log_record(s: &FinishedSpan, shape: &SpanShape, observed: Timestamp) -> Option<LogRecord> {
    let event = s.event.as_ref()?;
    let (severity, text) = if event.warning {
        (SeverityNumber::Warn, "Warning")
    } else {
        (SeverityNumber::Info, "Normal")
    };
    Some(LogRecord {
        time_unix_nano: nanos(s.start),
        observed_time_unix_nano: nanos(observed),
        severity_number: severity as i32,
        severity_text: text.into(),
        body: Some(any(AttrRef::Str(&event.message))),
        attributes: shape
            .span_attributes(s)
            .into_iter()
            .map(|(k, v)| kv(k, v))
            .collect(),
        flags: 0x01,
        trace_id: shape.trace_id(s).to_bytes().to_vec(),
        span_id: s.span_id.to_bytes().to_vec(),
        ..Default::default()
    })
}

/// One logs export request for a batch of spans: a record per span made from an event, one
/// `ResourceLogs` per Resource as for the spans. `observed` is when eventspan sends them.
pub fn logs_request<'a>(
    spans: impl IntoIterator<Item = &'a FinishedSpan>,
    shape: &SpanShape,
    observed: Timestamp,
) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: by_resource(spans.into_iter().filter(|s| s.event.is_some()), shape)
            .into_iter()
            .map(|(component, spans)| ResourceLogs {
                resource: Some(resource(shape, component)),
                scope_logs: vec![ScopeLogs {
                    scope: Some(scope()),
                    log_records: spans
                        .into_iter()
                        .filter_map(|s| log_record(s, shape, observed))
                        .collect(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect(),
    }
}

/// How many log records [`logs_request`] makes of these spans.
pub fn log_count<'a>(spans: impl IntoIterator<Item = &'a FinishedSpan>) -> usize {
    spans.into_iter().filter(|s| s.event.is_some()).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;

    #[test]
    fn events_become_log_records_with_the_spans_ids() {
        let spans = crate::replay::replay(
            include_str!("../../tests/scenarios/crashloop.jsonl"),
            Default::default(),
        )
        .spans;
        let shape = SpanShape {
            trace_ids: shape::TraceIdFormat::AwsXRay,
            ..Default::default()
        };
        let observed = Timestamp::from_unix_secs(1_800_000_000);
        let request = logs_request(&spans, &shape, observed);
        let records: Vec<&LogRecord> = request
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records)
            .collect();
        assert_eq!(records.len(), log_count(&spans));
        assert_eq!(
            records.len(),
            spans.iter().filter(|s| s.event.is_some()).count(),
            "one per span made from an event; synthesised roots have none"
        );
        assert!(spans.iter().any(|s| s.event.is_none()));
        let mut warnings = 0;
        for r in &records {
            let s = spans
                .iter()
                .find(|s| s.span_id.to_bytes()[..] == r.span_id[..])
                .expect("a record per span");
            assert_eq!(r.trace_id, shape.trace_id(s).to_bytes().to_vec());
            assert_eq!(r.time_unix_nano, nanos(s.start));
            assert_eq!(r.observed_time_unix_nano, nanos(observed));
            let ev = s.event.as_ref().unwrap();
            assert_eq!(
                r.body.as_ref().and_then(|b| b.value.clone()),
                Some(Value::StringValue(ev.message.clone()))
            );
            let (number, text) = if ev.warning {
                warnings += 1;
                (SeverityNumber::Warn, "Warning")
            } else {
                (SeverityNumber::Info, "Normal")
            };
            assert_eq!(
                (r.severity_number, r.severity_text.as_str()),
                (number as i32, text)
            );
            let attr = |k: &str| {
                r.attributes
                    .iter()
                    .find(|a| a.key == k)
                    .and_then(|a| a.value.clone())
                    .and_then(|v| v.value)
            };
            assert_eq!(
                attr("k8s.event.reason"),
                Some(Value::StringValue(ev.reason.clone()))
            );
            assert_eq!(
                attr("k8s.event.count"),
                Some(Value::IntValue(i64::from(s.count)))
            );
            assert_eq!(
                attr("k8s.object.kind"),
                Some(Value::StringValue(ev.involved.kind.clone()))
            );
        }
        assert!(warnings > 0, "the crash loop's BackOff is a warning");
    }

    #[test]
    fn spans_and_records_name_the_cluster_on_their_resources() {
        let spans = crate::replay::replay(
            include_str!("../../tests/scenarios/crashloop.jsonl"),
            Default::default(),
        )
        .spans;
        let shape = SpanShape {
            cluster: Some("prod-eu-1".parse().unwrap()),
            ..Default::default()
        };
        let named = |r: &Option<Resource>| {
            r.as_ref().is_some_and(|r| {
                r.attributes.iter().any(|a| {
                    a.key == cluster_name::K8S_CLUSTER_NAME
                        && a.value.as_ref().and_then(|v| v.value.clone())
                            == Some(Value::StringValue("prod-eu-1".into()))
                })
            })
        };
        let traces = export_request(&spans, &shape);
        let logs = logs_request(&spans, &shape, Timestamp::from_unix_secs(1_800_000_000));
        assert!(
            traces.resource_spans.len() > 1,
            "one Resource per component"
        );
        assert!(traces.resource_spans.iter().all(|r| named(&r.resource)));
        assert!(!logs.resource_logs.is_empty());
        assert!(logs.resource_logs.iter().all(|r| named(&r.resource)));
    }
}

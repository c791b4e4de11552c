//! Finished spans as OTLP: one `ResourceSpans` per reporting component.
//!
//! [`export_request`] builds the protobuf message the exporters send; [`json`] writes the same
//! request as OTLP/JSON directly, several times faster than serialising the message, for replay.
//!
//! Built by hand from the opentelemetry-proto types rather than through the SDK: the SDK can no
//! longer set span IDs or end times, and carries one Resource per exporter, while a trace here
//! spans many components with IDs that must stay deterministic.

pub mod json;

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};

use crate::engine::model::{AttrRef, Component, FinishedSpan};

/// W3C trace flags "sampled", plus "parent is known not to be remote".
pub const FLAGS_SAMPLED_LOCAL: u32 = 0x0000_0101;

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

/// The Resource attributes of a component.
pub fn resource_attributes(component: &Component) -> Vec<(&'static str, AttrRef<'_>)> {
    let mut attributes = vec![("service.name", AttrRef::Str(&component.name))];
    if &*component.instance != "unknown" && !component.instance.is_empty() {
        attributes.push(("service.instance.id", AttrRef::Str(&component.instance)));
    }
    attributes
}

fn resource(component: &Component) -> Resource {
    Resource {
        attributes: resource_attributes(component)
            .into_iter()
            .map(|(k, v)| kv(k, v))
            .collect(),
        ..Default::default()
    }
}

pub fn nanos(t: crate::engine::time::Timestamp) -> u64 {
    u64::try_from(t.unix_nanos()).unwrap_or(0)
}

pub fn span(s: &FinishedSpan) -> Span {
    Span {
        trace_id: s.trace_id.to_bytes().to_vec(),
        span_id: s.span_id.to_bytes().to_vec(),
        parent_span_id: s.parent.map(|p| p.to_bytes().to_vec()).unwrap_or_default(),
        flags: FLAGS_SAMPLED_LOCAL,
        name: s.name.to_string(),
        kind: span::SpanKind::Internal as i32,
        start_time_unix_nano: nanos(s.start),
        end_time_unix_nano: nanos(s.end),
        attributes: s
            .all_attributes()
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
        status: s.error.then(|| Status {
            message: s.message().to_string(),
            code: status::StatusCode::Error as i32,
        }),
        ..Default::default()
    }
}

/// Spans grouped by reporting component (their Resource), both in a deterministic order.
pub fn by_component<'a>(
    spans: impl IntoIterator<Item = &'a FinishedSpan>,
) -> BTreeMap<&'a Component, Vec<&'a FinishedSpan>> {
    let mut groups: BTreeMap<&Component, Vec<&FinishedSpan>> = BTreeMap::new();
    for s in spans {
        groups.entry(&s.component).or_default().push(s);
    }
    for spans in groups.values_mut() {
        spans.sort_by_key(|s| (s.start, s.span_id));
    }
    groups
}

/// The instrumentation scope every span is reported under.
pub const SCOPE_NAME: &str = "eventspan";
pub const SCOPE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// One export request for a batch of spans: one `ResourceSpans` per component.
pub fn export_request<'a>(
    spans: impl IntoIterator<Item = &'a FinishedSpan>,
) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: by_component(spans)
            .into_iter()
            .map(|(component, spans)| ResourceSpans {
                resource: Some(resource(component)),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: SCOPE_NAME.into(),
                        version: SCOPE_VERSION.into(),
                        ..Default::default()
                    }),
                    spans: spans.into_iter().map(span).collect(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect(),
    }
}

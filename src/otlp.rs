//! Finished spans as OTLP: one `ResourceSpans` per reporting component.
//!
//! Built by hand from the opentelemetry-proto types rather than through the SDK: the SDK can no
//! longer set span IDs or end times, and carries one Resource per exporter, while a trace here
//! spans many components with IDs that must stay deterministic.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};

use crate::engine::model::{AttrValue, Component, FinishedSpan};

/// W3C trace flags "sampled", plus "parent is known not to be remote".
const FLAGS_SAMPLED_LOCAL: u32 = 0x0000_0101;

fn any(value: &AttrValue) -> AnyValue {
    AnyValue {
        value: Some(match value {
            AttrValue::Str(s) => any_value::Value::StringValue(s.to_string()),
            AttrValue::Int(i) => any_value::Value::IntValue(*i),
            AttrValue::Bool(b) => any_value::Value::BoolValue(*b),
        }),
    }
}

fn kv(key: &str, value: &AttrValue) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(any(value)),
        ..Default::default()
    }
}

fn resource(component: &Component) -> Resource {
    let mut attributes = vec![kv("service.name", &AttrValue::Str(component.name.clone()))];
    if &*component.instance != "unknown" && !component.instance.is_empty() {
        attributes.push(kv(
            "service.instance.id",
            &AttrValue::Str(component.instance.clone()),
        ));
    }
    Resource {
        attributes,
        ..Default::default()
    }
}

fn nanos(t: crate::engine::time::Timestamp) -> u64 {
    u64::try_from(t.unix_nanos()).unwrap_or(0)
}

pub fn span(s: &FinishedSpan) -> Span {
    Span {
        trace_id: s.trace_id.to_bytes().to_vec(),
        span_id: s.span_id.to_bytes().to_vec(),
        parent_span_id: s.parent.map(|p| p.to_bytes().to_vec()).unwrap_or_default(),
        flags: FLAGS_SAMPLED_LOCAL,
        name: s.name.clone(),
        kind: span::SpanKind::Internal as i32,
        start_time_unix_nano: nanos(s.start),
        end_time_unix_nano: nanos(s.end),
        attributes: s.attributes.iter().map(|(k, v)| kv(k, v)).collect(),
        events: s
            .events
            .iter()
            .map(|e| span::Event {
                time_unix_nano: nanos(e.time),
                name: e.name.to_string(),
                attributes: e.attributes.iter().map(|(k, v)| kv(k, v)).collect(),
                ..Default::default()
            })
            .collect(),
        status: s.error.then(|| Status {
            message: s.message.clone(),
            code: status::StatusCode::Error as i32,
        }),
        ..Default::default()
    }
}

/// One export request for a batch of spans, grouped by component, in a deterministic order.
pub fn export_request<'a>(
    spans: impl IntoIterator<Item = &'a FinishedSpan>,
) -> ExportTraceServiceRequest {
    let mut by_component: BTreeMap<&Component, Vec<&FinishedSpan>> = BTreeMap::new();
    for s in spans {
        by_component.entry(&s.component).or_default().push(s);
    }
    ExportTraceServiceRequest {
        resource_spans: by_component
            .into_iter()
            .map(|(component, mut spans)| {
                spans.sort_by_key(|s| (s.start, s.span_id));
                ResourceSpans {
                    resource: Some(resource(component)),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "eventspan".into(),
                            version: env!("CARGO_PKG_VERSION").into(),
                            ..Default::default()
                        }),
                        spans: spans.into_iter().map(span).collect(),
                        schema_url: String::new(),
                    }],
                    schema_url: String::new(),
                }
            })
            .collect(),
    }
}

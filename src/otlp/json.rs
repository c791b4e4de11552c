//! OTLP/JSON written directly from finished spans.
//!
//! The encoding follows the OTLP/JSON rules (lowerCamelCase fields, hex trace and span IDs,
//! 64-bit integers as strings, enums as numbers, default values omitted), so the result parses
//! back to exactly the request [`super::export_request`] builds; a test checks that.

use std::fmt::Write;

use crate::engine::model::{AttrRef, Component, FinishedSpan};

use super::{SCOPE_NAME, SCOPE_VERSION, SpanShape, by_resource, nanos};

/// Appends one `ExportTraceServiceRequest` as a single line of JSON (without the newline).
pub fn write_request<'a>(
    out: &mut String,
    spans: impl IntoIterator<Item = &'a FinishedSpan>,
    shape: &SpanShape,
) {
    out.push_str(r#"{"resourceSpans":["#);
    for (i, (component, spans)) in by_resource(spans, shape).into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_resource_spans(out, shape, component, &spans);
    }
    out.push_str("]}");
}

fn write_resource_spans(
    out: &mut String,
    shape: &SpanShape,
    component: Option<Component<'_>>,
    spans: &[&FinishedSpan],
) {
    out.push_str(r#"{"resource":{"attributes":"#);
    write_attributes(out, shape.resource_attributes(component));
    out.push_str(r#"},"scopeSpans":[{"scope":{"name":"#);
    write_str(out, SCOPE_NAME);
    out.push_str(r#","version":"#);
    write_str(out, SCOPE_VERSION);
    out.push_str(r#"},"spans":["#);
    for (i, span) in spans.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_span(out, shape, span);
    }
    out.push_str("]}]}");
}

fn write_span(out: &mut String, shape: &SpanShape, s: &FinishedSpan) {
    let _ = write!(
        out,
        r#"{{"traceId":"{}","spanId":"{}""#,
        shape.trace_id(s),
        s.span_id
    );
    if let Some(parent) = shape.parent(s) {
        let _ = write!(out, r#","parentSpanId":"{parent}""#);
    }
    let _ = write!(out, r#","flags":{},"name":"#, shape.flags(s));
    write_str(out, &s.name());
    let _ = write!(
        out,
        r#","kind":1,"startTimeUnixNano":"{}","endTimeUnixNano":"{}","attributes":"#,
        nanos(s.start),
        nanos(s.end)
    );
    write_attributes(out, shape.span_attributes(s));
    if !s.repeats.is_empty() {
        out.push_str(r#","events":["#);
        for (i, (time, count)) in s.repeats.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                r#"{{"timeUnixNano":"{}","name":"repeat","attributes":[{{"key":"k8s.event.count","value":{{"intValue":"{count}"}}}}]}}"#,
                nanos(*time)
            );
        }
        out.push(']');
    }
    if let Some((remote, flags)) = shape.link(s) {
        let _ = write!(
            out,
            r#","links":[{{"traceId":"{}","spanId":"{}","flags":{flags}}}]"#,
            remote.trace_id, remote.span_id
        );
    }
    if s.error {
        out.push_str(r#","status":{"message":"#);
        write_str(out, s.message());
        out.push_str(r#","code":2}"#);
    }
    out.push('}');
}

fn write_attributes<'a>(
    out: &mut String,
    attributes: impl IntoIterator<Item = (&'a str, AttrRef<'a>)>,
) {
    out.push('[');
    for (i, (key, value)) in attributes.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(r#"{"key":"#);
        write_str(out, key);
        out.push_str(r#","value":{"#);
        match value {
            AttrRef::Str(s) => {
                out.push_str(r#""stringValue":"#);
                write_str(out, s);
            }
            AttrRef::Int(i) => {
                let _ = write!(out, r#""intValue":"{i}""#);
            }
            AttrRef::Bool(b) => {
                let _ = write!(out, r#""boolValue":{b}"#);
            }
        }
        out.push_str("}}");
    }
    out.push(']');
}

/// A JSON string literal.
fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let mut plain = 0;
    // Byte by byte: every character that needs escaping is ASCII, and an ASCII byte is never
    // part of a multi-byte character, so each escape starts and ends on a character boundary.
    for (i, &b) in s.as_bytes().iter().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..0x20 => {
                out.push_str(&s[plain..i]);
                let _ = write!(out, "\\u{:04x}", b);
                plain = i + 1;
                continue;
            }
            _ => continue,
        };
        out.push_str(&s[plain..i]);
        out.push_str(escape);
        plain = i + 1;
    }
    out.push_str(&s[plain..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

    #[test]
    fn strings_are_escaped() {
        let mut out = String::new();
        write_str(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(out, r#""a\"b\\c\nd\u0001é""#);
        assert_eq!(
            serde_json::from_str::<String>(&out).unwrap(),
            "a\"b\\c\nd\u{1}é"
        );
        // Escapes right beside multi-byte characters, and every control character.
        let tricky: String = "é\"日\\本\u{1f}ü\u{7f}\r\t"
            .chars()
            .chain((0..0x20u8).map(char::from))
            .collect();
        let mut out = String::new();
        write_str(&mut out, &tricky);
        assert_eq!(serde_json::from_str::<String>(&out).unwrap(), tricky);
    }

    /// The direct writer and the protobuf message describe the same request.
    #[test]
    fn matches_the_protobuf_request() {
        let input = include_str!("../../tests/scenarios/crashloop.jsonl");
        let spans = crate::replay::replay(input, Default::default()).spans;
        assert!(spans.iter().any(|s| s.error && !s.repeats.is_empty()));
        let mut out = String::new();
        write_request(&mut out, &spans, &SpanShape::default());
        let parsed: ExportTraceServiceRequest = serde_json::from_str(&out).unwrap();
        assert_eq!(
            parsed,
            super::super::export_request(&spans, &SpanShape::default())
        );
    }

    /// The same with every shaping option: X-Ray IDs, a remote parent or link, a fixed service.
    #[test]
    fn matches_the_protobuf_request_when_shaped() {
        use super::super::shape::{ParentTraceMode, ServiceNaming, TraceIdFormat};
        use crate::engine::model::TraceParent;
        let remote = TraceParent {
            trace_id: crate::engine::ids::TraceId(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
            span_id: crate::engine::ids::SpanId(0x00f0_67aa_0ba9_02b7),
            flags: 1,
        };
        let spans: Vec<FinishedSpan> = crate::replay::replay(
            include_str!("../../tests/scenarios/deployment-rollout.jsonl"),
            Default::default(),
        )
        .spans
        .into_iter()
        .map(|s| {
            let mut root = (*s.root).clone();
            root.traceparent = Some(remote);
            FinishedSpan {
                root: std::sync::Arc::new(root),
                ..s
            }
        })
        .collect();
        for parent_trace in [ParentTraceMode::Parent, ParentTraceMode::Link] {
            let shape = SpanShape {
                service: ServiceNaming::Fixed("rollouts".into()),
                trace_ids: TraceIdFormat::AwsXRay,
                parent_trace,
            };
            let mut out = String::new();
            write_request(&mut out, &spans, &shape);
            let parsed: ExportTraceServiceRequest = serde_json::from_str(&out).unwrap();
            assert_eq!(parsed, super::super::export_request(&spans, &shape));
            assert_eq!(parsed.resource_spans.len(), 1, "one Resource");
            let roots: Vec<_> = parsed.resource_spans[0].scope_spans[0]
                .spans
                .iter()
                .filter(|s| s.parent_span_id.is_empty() || s.flags == 0x301)
                .collect();
            assert_eq!(roots.len(), 2);
            match parent_trace {
                ParentTraceMode::Link => assert!(roots.iter().all(|r| r.links.len() == 1)),
                _ => assert!(roots.iter().all(|r| r.links.is_empty() && r.flags == 0x301)),
            }
        }
    }
}

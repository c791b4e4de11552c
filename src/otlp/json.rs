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
    out.push_str(r#"{"traceId":""#);
    push_hex(out, shape.trace_id(s).0, 32);
    out.push_str(r#"","spanId":""#);
    push_hex(out, s.span_id.0.into(), 16);
    out.push('"');
    if let Some(parent) = shape.parent(s) {
        out.push_str(r#","parentSpanId":""#);
        push_hex(out, parent.0.into(), 16);
        out.push('"');
    }
    out.push_str(r#","flags":"#);
    out.push_str(itoa::Buffer::new().format(shape.flags(s)));
    out.push_str(r#","name":"#);
    match s.name_parts() {
        (kind, Some(reason)) => {
            out.push('"');
            push_escaped(out, kind);
            out.push('.');
            push_escaped(out, reason);
            out.push('"');
        }
        (name, None) => write_str(out, name),
    }
    out.push_str(r#","kind":1,"startTimeUnixNano":""#);
    out.push_str(itoa::Buffer::new().format(nanos(s.start)));
    out.push_str(r#"","endTimeUnixNano":""#);
    out.push_str(itoa::Buffer::new().format(nanos(s.end)));
    out.push_str(r#"","attributes":"#);
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

/// Attribute keys are eventspan's own names (`k8s.pod.name`), never input: none needs escaping.
fn write_attributes<'a>(
    out: &mut String,
    attributes: impl IntoIterator<Item = (&'static str, AttrRef<'a>)>,
) {
    out.push('[');
    for (i, (key, value)) in attributes.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        debug_assert!(!needs_escape(key), "attribute key {key:?}");
        out.push_str(r#"{"key":""#);
        out.push_str(key);
        out.push_str(r#"","value":{"#);
        match value {
            AttrRef::Str(s) => {
                out.push_str(r#""stringValue":"#);
                write_str(out, s);
            }
            AttrRef::Int(i) => {
                out.push_str(r#""intValue":""#);
                out.push_str(itoa::Buffer::new().format(i));
                out.push('"');
            }
            AttrRef::Bool(b) => {
                let _ = write!(out, r#""boolValue":{b}"#);
            }
        }
        out.push_str("}}");
    }
    out.push(']');
}

/// The low `digits` hex digits of `value`, lowercase and zero-padded, as OTLP/JSON writes IDs.
/// Written by hand, as the integers are: through the formatting machinery, the IDs and times of
/// a span took as long as all of its attributes.
fn push_hex(out: &mut String, value: u128, digits: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 32];
    for (i, digit) in buf[..digits].iter_mut().enumerate() {
        *digit = HEX[(value >> (4 * (digits - 1 - i))) as usize & 0xf];
    }
    out.push_str(std::str::from_utf8(&buf[..digits]).expect("hex digits are ASCII"));
}

/// A JSON string literal.
fn write_str(out: &mut String, s: &str) {
    out.push('"');
    push_escaped(out, s);
    out.push('"');
}

/// Whether `s` holds a character JSON must escape. Every byte is looked at, with no early exit,
/// so the compiler can check many at a time: most strings hold none and are then copied whole.
fn needs_escape(s: &str) -> bool {
    s.as_bytes().iter().fold(false, |any, &b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    })
}

/// The inside of a JSON string literal.
fn push_escaped(out: &mut String, s: &str) {
    if !needs_escape(s) {
        out.push_str(s);
        return;
    }
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

    #[test]
    fn ids_are_zero_padded_lowercase_hex() {
        for value in [0, 0xab, 0x0123_4567_89ab_cdef, u64::MAX.into(), u128::MAX] {
            let (mut trace, mut span) = (String::new(), String::new());
            push_hex(&mut trace, value, 32);
            push_hex(&mut span, value & u128::from(u64::MAX), 16);
            assert_eq!(trace, format!("{value:032x}"));
            assert_eq!(span, format!("{:016x}", value as u64));
        }
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

    /// The same with every shaping option: X-Ray IDs, a remote parent or link, a fixed service,
    /// a cluster name.
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
                cluster: Some("prod-eu-1".parse().unwrap()),
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

//! The human view of traces: one indented tree per trace, for a terminal.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::engine::ids::{SpanId, TraceId};
use crate::engine::model::{AttrRef, FinishedSpan};

/// Messages longer than this are cut in the tree (the full text is in the span attributes).
const MESSAGE_WIDTH: usize = 110;

/// Groups spans by trace, traces in start order.
pub fn by_trace(spans: &[FinishedSpan]) -> Vec<(TraceId, Vec<&FinishedSpan>)> {
    let mut traces: BTreeMap<TraceId, Vec<&FinishedSpan>> = BTreeMap::new();
    for s in spans {
        traces.entry(s.trace_id).or_default().push(s);
    }
    let mut traces: Vec<_> = traces.into_iter().collect();
    for (_, spans) in &mut traces {
        spans.sort_by_key(|s| (s.start, s.span_id));
    }
    traces.sort_by_key(|(id, spans)| (spans.first().map(|s| s.start), *id));
    traces
}

pub fn render(spans: &[FinishedSpan]) -> String {
    let mut out = String::new();
    for (i, (trace_id, spans)) in by_trace(spans).into_iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        render_trace(&mut out, trace_id, &spans);
    }
    out
}

fn render_trace(out: &mut String, trace_id: TraceId, spans: &[&FinishedSpan]) {
    let ids: BTreeMap<SpanId, &FinishedSpan> = spans.iter().map(|s| (s.span_id, *s)).collect();
    let mut children: BTreeMap<Option<SpanId>, Vec<&FinishedSpan>> = BTreeMap::new();
    for s in spans {
        // A parent outside this output (exported earlier) makes its children top-level here.
        let parent = s.parent.filter(|p| ids.contains_key(p));
        children.entry(parent).or_default().push(s);
    }
    let start = spans
        .iter()
        .map(|s| s.start)
        .min()
        .expect("a trace has spans");
    let end = spans
        .iter()
        .map(|s| s.end)
        .max()
        .expect("a trace has spans");
    let root = &spans[0].root;
    let _ = writeln!(
        out,
        "trace {trace_id}  {} {}/{} generation {}  {}  {} spans over {}",
        root.kind,
        root.namespace,
        root.name,
        root.generation,
        start,
        spans.len(),
        millis(end.since(start)),
    );
    if let Some(tp) = &root.traceparent {
        let _ = writeln!(out, "  applied under traceparent {tp}");
    }
    let summary = spans
        .iter()
        .find(|s| s.parent.is_none())
        .and_then(|s| s.attribute("eventspan.change.summary"));
    if let Some(AttrRef::Str(summary)) = summary {
        let _ = writeln!(out, "  changed: {summary}");
    }
    let tops = children.get(&None).cloned().unwrap_or_default();
    for s in &tops {
        render_span(out, s, start, &children, "", None);
    }
}

fn render_span(
    out: &mut String,
    s: &FinishedSpan,
    trace_start: crate::engine::time::Timestamp,
    children: &BTreeMap<Option<SpanId>, Vec<&FinishedSpan>>,
    indent: &str,
    last: Option<bool>,
) {
    let branch = match last {
        None => "",
        Some(true) => "└─ ",
        Some(false) => "├─ ",
    };
    let mut note = String::new();
    if s.error {
        note.push_str(" ERROR");
    }
    let repeats = s.count.saturating_sub(s.first_count) + 1;
    if repeats > 1 {
        let _ = write!(note, " x{repeats}");
    }
    // How the span's object ended, when its status said so (a rollout done, a pod Ready).
    if let Some(AttrRef::Str(outcome)) = s.attribute("eventspan.outcome") {
        let _ = write!(note, " ({outcome}");
        if let Some(AttrRef::Str(reason)) = s.attribute("eventspan.outcome.reason") {
            let _ = write!(note, ": {reason}");
        }
        note.push(')');
    }
    let message: String = s.message().chars().take(MESSAGE_WIDTH).collect();
    let _ = writeln!(
        out,
        "{:>9} {:>8}  {indent}{branch}{} [{}]{note}  {}",
        format!("+{}", millis(s.start.since(trace_start))),
        millis(s.end.since(s.start)),
        s.name(),
        s.component().name,
        message.replace('\n', " "),
    );
    let kids = children.get(&Some(s.span_id)).cloned().unwrap_or_default();
    let child_indent = match last {
        None => indent.to_string(),
        Some(true) => format!("{indent}   "),
        Some(false) => format!("{indent}│  "),
    };
    // Where a created pod's time went (see engine/phases.rs), on a line of its own under it.
    if let Some(AttrRef::Str(phases)) = s.attribute("eventspan.phases") {
        let bar = if kids.is_empty() { "   " } else { "│  " };
        let _ = writeln!(out, "{:>9} {:>8}  {child_indent}{bar}⏱ {phases}", "", "");
    }
    for (i, child) in kids.iter().enumerate() {
        render_span(
            out,
            child,
            trace_start,
            children,
            &child_indent,
            Some(i + 1 == kids.len()),
        );
    }
}

fn millis(d: std::time::Duration) -> String {
    format!("{}ms", d.as_millis())
}

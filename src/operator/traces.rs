//! What a session has seen: counts and its most recent traces, for its status.

use std::collections::VecDeque;

use crate::engine::ids::TraceId;
use crate::engine::model::FinishedSpan;
use crate::engine::time::Timestamp;
use crate::otlp::SpanShape;

/// Trace IDs remembered to count distinct traces (a trace's spans arrive over time).
const SEEN_TRACES: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecentTrace {
    pub trace_id: TraceId,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub generation: i64,
    pub start: Timestamp,
    pub spans: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceLog {
    pub spans: u64,
    pub traces: u64,
    pub last_trace: Option<TraceId>,
    /// Newest first.
    pub recent: VecDeque<RecentTrace>,
    seen: VecDeque<TraceId>,
}

impl TraceLog {
    /// Counts a span under the trace ID the session exports it with.
    pub fn record(&mut self, span: &FinishedSpan, max_recent: usize, shape: &SpanShape) {
        self.spans += 1;
        let trace_id = shape.trace_id(span);
        if let Some(r) = self.recent.iter_mut().find(|r| r.trace_id == trace_id) {
            r.spans += 1;
            r.start = r.start.min(span.start);
            return;
        }
        if !self.seen.contains(&trace_id) {
            self.traces += 1;
            self.last_trace = Some(trace_id);
            if self.seen.len() == SEEN_TRACES {
                self.seen.pop_front();
            }
            self.seen.push_back(trace_id);
            let root = &span.root;
            self.recent.push_front(RecentTrace {
                trace_id,
                kind: root.kind.to_string(),
                namespace: root.namespace.to_string(),
                name: root.name.to_string(),
                uid: root.uid.to_string(),
                generation: root.generation,
                start: span.start,
                spans: 1,
            });
            self.recent.truncate(max_recent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay;

    #[test]
    fn counts_traces_once_and_keeps_the_newest() {
        let spans = replay::replay(
            include_str!("../../tests/scenarios/deployment-rollout.jsonl"),
            Default::default(),
        )
        .spans;
        let traces: std::collections::BTreeSet<_> = spans.iter().map(|s| s.trace_id).collect();
        assert_eq!(traces.len(), 2);
        let mut log = TraceLog::default();
        for s in &spans {
            log.record(s, 1, &SpanShape::default());
        }
        assert_eq!((log.spans, log.traces), (spans.len() as u64, 2));
        assert_eq!(log.recent.len(), 1, "capped at max_recent");
        let newest = &log.recent[0];
        assert_eq!(Some(newest.trace_id), log.last_trace);
        let expected = spans
            .iter()
            .filter(|s| s.trace_id == newest.trace_id)
            .count() as u64;
        assert_eq!(newest.spans, expected);
        assert_eq!(
            (newest.kind.as_str(), newest.name.as_str()),
            ("Deployment", "web")
        );
    }

    /// The status lists the IDs the backend receives: shaped as the session's exporters shape
    /// them.
    #[test]
    fn lists_the_shaped_trace_ids() {
        use crate::otlp::shape::{ParentTraceMode, TraceIdFormat};
        let spans = replay::replay(
            include_str!("../../tests/scenarios/deployment-rollout.jsonl"),
            Default::default(),
        )
        .spans;
        let xray = SpanShape {
            trace_ids: TraceIdFormat::AwsXRay,
            ..Default::default()
        };
        let mut log = TraceLog::default();
        for s in &spans {
            log.record(s, 10, &xray);
        }
        let exported: std::collections::BTreeSet<_> =
            spans.iter().map(|s| xray.trace_id(s)).collect();
        let listed: std::collections::BTreeSet<_> = log.recent.iter().map(|r| r.trace_id).collect();
        assert_eq!(listed, exported);
        assert!(spans.iter().all(|s| !listed.contains(&s.trace_id)));
        assert_eq!(log.traces, 2);

        // Both rollouts applied under one pipeline trace: one trace, as the backend sees it.
        let remote = crate::engine::model::TraceParent {
            trace_id: TraceId(0xabc),
            span_id: crate::engine::ids::SpanId(0xdef),
            flags: 1,
        };
        let mut log = TraceLog::default();
        let parent = SpanShape {
            parent_trace: ParentTraceMode::Parent,
            ..xray
        };
        for s in &spans {
            let mut root = (*s.root).clone();
            root.traceparent = Some(remote);
            let s = FinishedSpan {
                root: std::sync::Arc::new(root),
                ..s.clone()
            };
            log.record(&s, 10, &parent);
        }
        assert_eq!((log.traces, log.last_trace), (1, Some(TraceId(0xabc))));
        assert_eq!(log.recent[0].spans, spans.len() as u64);
    }
}

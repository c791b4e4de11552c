//! What a session has seen: counts and its most recent traces, for its status.

use std::collections::VecDeque;

use crate::engine::ids::TraceId;
use crate::engine::model::FinishedSpan;
use crate::engine::time::Timestamp;

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
    pub fn record(&mut self, span: &FinishedSpan, max_recent: usize) {
        self.spans += 1;
        if let Some(r) = self.recent.iter_mut().find(|r| r.trace_id == span.trace_id) {
            r.spans += 1;
            r.start = r.start.min(span.start);
            return;
        }
        if !self.seen.contains(&span.trace_id) {
            self.traces += 1;
            self.last_trace = Some(span.trace_id);
            if self.seen.len() == SEEN_TRACES {
                self.seen.pop_front();
            }
            self.seen.push_back(span.trace_id);
            let root = &span.root;
            self.recent.push_front(RecentTrace {
                trace_id: span.trace_id,
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
            log.record(s, 1);
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
}

//! A bounded queue that never blocks the producer: when full, the oldest span goes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::engine::model::FinishedSpan;

pub(super) struct SpanQueue {
    spans: Mutex<VecDeque<Arc<FinishedSpan>>>,
    capacity: usize,
    pub ready: Notify,
    pub dropped: AtomicU64,
}

impl SpanQueue {
    pub fn new(capacity: usize) -> Self {
        SpanQueue {
            spans: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            ready: Notify::new(),
            dropped: AtomicU64::new(0),
        }
    }

    pub fn push(&self, span: Arc<FinishedSpan>, batch: usize) {
        let len = {
            let mut spans = self.spans.lock().expect("queue lock");
            if spans.len() == self.capacity {
                spans.pop_front();
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            spans.push_back(span);
            spans.len()
        };
        if len >= batch {
            self.ready.notify_one();
        }
    }

    pub fn take(&self, max: usize) -> Vec<Arc<FinishedSpan>> {
        let mut spans = self.spans.lock().expect("queue lock");
        let n = spans.len().min(max);
        spans.drain(..n).collect()
    }

    pub fn len(&self) -> usize {
        self.spans.lock().expect("queue lock").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay;

    #[test]
    fn drops_oldest_when_full_and_counts() {
        let spans = replay::replay(
            include_str!("../../tests/scenarios/job.jsonl"),
            Default::default(),
        )
        .spans;
        assert!(spans.len() >= 5);
        let q = SpanQueue::new(3);
        for s in &spans[..5] {
            q.push(Arc::new(s.clone()), 100);
        }
        assert_eq!(q.len(), 3);
        assert_eq!(q.dropped.load(Ordering::Relaxed), 2);
        let taken = q.take(10);
        assert_eq!(
            taken[0].span_id, spans[2].span_id,
            "the two oldest were dropped"
        );
        assert_eq!(q.len(), 0);
    }
}

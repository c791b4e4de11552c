//! A bounded queue that never blocks the producer: when full, the oldest span goes.
//!
//! It also keeps the exporter's settle watermark (see [`Watermark`]): every span pushed gets the
//! next sequence number, and the queue knows the oldest one not yet settled (still queued, or
//! in the batch the sender took and has not finished with). Both live under one lock, so a
//! batch moving from the queue to the sender is never seen half way.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Notify;

use crate::engine::model::FinishedSpan;

pub(super) struct SpanQueue {
    inner: Mutex<Inner>,
    capacity: usize,
    pub ready: Notify,
    pub dropped: AtomicU64,
}

#[derive(Default)]
struct Inner {
    /// Queued spans with their sequence numbers, oldest first.
    spans: VecDeque<(u64, Arc<FinishedSpan>)>,
    /// The sequence number the next push gets: how many spans were ever pushed.
    next: u64,
    /// The first sequence number and the size of what the sender holds, until it settles it.
    /// Spans dropped from a full queue are newer than that batch: counting them as settled must
    /// not make the batch look settled too, hence a position and not a count.
    in_flight: Option<(u64, usize)>,
    /// Shut down: nothing will be sent any more, everything pushed counts as settled.
    closed: bool,
    /// Since when every attempt to deliver has failed (None after a success).
    failing_since: Option<Instant>,
}

impl SpanQueue {
    pub fn new(capacity: usize) -> Self {
        SpanQueue {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
            ready: Notify::new(),
            dropped: AtomicU64::new(0),
        }
    }

    pub fn push(&self, span: Arc<FinishedSpan>, batch: usize) {
        let len = {
            let mut inner = self.inner.lock().expect("queue lock");
            if inner.spans.len() == self.capacity {
                inner.spans.pop_front();
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            let seq = inner.next;
            inner.next += 1;
            inner.spans.push_back((seq, span));
            inner.spans.len()
        };
        if len >= batch {
            self.ready.notify_one();
        }
    }

    /// Takes up to `max` of the oldest spans; they stay unsettled until [`SpanQueue::settle`].
    pub fn take(&self, max: usize) -> Vec<Arc<FinishedSpan>> {
        let mut inner = self.inner.lock().expect("queue lock");
        let n = inner.spans.len().min(max);
        if let Some(&(first, _)) = inner.spans.front()
            && n > 0
        {
            // Keep an older batch's mark if the sender still holds one (while stopping).
            let held = inner.in_flight.map_or(0, |(_, held)| held);
            let first = inner.in_flight.map_or(first, |(older, _)| older);
            inner.in_flight = Some((first, held + n));
        }
        inner.spans.drain(..n).map(|(_, s)| s).collect()
    }

    /// The sender is done with what it took (delivered, or given up on for good).
    pub fn settle(&self) {
        self.inner.lock().expect("queue lock").in_flight = None;
    }

    /// Stops for good: what is still queued or in flight (a sender stopped mid-send) is
    /// returned as a count, to be counted as dropped, and from now on everything ever pushed
    /// counts as settled.
    pub fn close(&self) -> usize {
        let mut inner = self.inner.lock().expect("queue lock");
        inner.closed = true;
        let held = inner.in_flight.take().map_or(0, |(_, held)| held);
        let left = inner.spans.len();
        inner.spans.clear();
        left + held
    }

    /// An attempt to deliver failed at `at`; the first failure since the last success counts.
    pub fn failed(&self, at: Instant) {
        self.inner
            .lock()
            .expect("queue lock")
            .failing_since
            .get_or_insert(at);
    }

    /// An attempt to deliver succeeded.
    pub fn delivered(&self) {
        self.inner.lock().expect("queue lock").failing_since = None;
    }

    /// Since when every attempt to deliver has failed, unless shut down.
    pub fn failing_since(&self) -> Option<Instant> {
        let inner = self.inner.lock().expect("queue lock");
        inner.failing_since.filter(|_| !inner.closed)
    }

    pub fn len(&self) -> usize {
        self.inner.lock().expect("queue lock").spans.len()
    }

    /// How many spans were ever pushed.
    pub fn offered(&self) -> u64 {
        self.inner.lock().expect("queue lock").next
    }

    /// How many of the oldest pushed spans are settled: the sequence number of the oldest one
    /// still queued or in flight (everything before it was sent, or dropped for good).
    pub fn settled(&self) -> u64 {
        let inner = self.inner.lock().expect("queue lock");
        if inner.closed {
            return inner.next;
        }
        inner
            .in_flight
            .map(|(first, _)| first)
            .or(inner.spans.front().map(|&(seq, _)| seq))
            .unwrap_or(inner.next)
    }
}

/// One sending task's progress, for the checkpoint: a span may enter a written checkpoint only
/// once every exporter it was offered to has settled it, or a crash right after the write would
/// lose it (the successor would not emit it again). Spans settle in the order they were pushed,
/// so "the first N are settled" is one number.
#[derive(Clone)]
pub struct Watermark(pub(super) Arc<SpanQueue>);

impl Watermark {
    /// How many spans were offered so far.
    pub fn offered(&self) -> u64 {
        self.0.offered()
    }

    /// How many of the first offered spans are settled (sent, or dropped for good).
    pub fn settled(&self) -> u64 {
        self.0.settled()
    }

    /// Since when every attempt of this exporter to deliver has failed.
    pub fn failing_since(&self) -> Option<Instant> {
        self.0.failing_since()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay;

    fn spans(n: usize) -> Vec<Arc<FinishedSpan>> {
        let spans = replay::replay(
            include_str!("../../tests/scenarios/job.jsonl"),
            Default::default(),
        )
        .spans;
        assert!(spans.len() >= n);
        spans.into_iter().take(n).map(Arc::new).collect()
    }

    #[test]
    fn drops_oldest_when_full_and_counts() {
        let spans = spans(5);
        let q = SpanQueue::new(3);
        for s in &spans[..5] {
            q.push(s.clone(), 100);
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

    #[test]
    fn settles_in_order_and_only_when_the_sender_is_done() {
        let spans = spans(5);
        let q = SpanQueue::new(2);
        assert_eq!((q.offered(), q.settled()), (0, 0));
        q.push(spans[0].clone(), 100);
        q.push(spans[1].clone(), 100);
        assert_eq!((q.offered(), q.settled()), (2, 0), "queued is not settled");
        let batch = q.take(10);
        assert_eq!(batch.len(), 2);
        assert_eq!(q.settled(), 0, "taken but not sent yet");
        // The queue overflows behind the batch in flight: the dropped span is newer than the
        // batch, which must still count as unsettled.
        for s in &spans[2..5] {
            q.push(s.clone(), 100);
        }
        assert_eq!(q.dropped.load(Ordering::Relaxed), 1);
        assert_eq!((q.offered(), q.settled()), (5, 0));
        q.settle();
        assert_eq!(q.settled(), 3, "the batch and the dropped span settled");
        let next = q.take(1);
        assert_eq!(next[0].span_id, spans[3].span_id);
        assert_eq!(q.settled(), 3);
        q.settle();
        assert_eq!(q.settled(), 4);
        q.take(1);
        q.settle();
        assert_eq!(q.settled(), 5, "all of it");
    }

    #[test]
    fn closing_settles_everything() {
        let spans = spans(3);
        let q = SpanQueue::new(10);
        for s in &spans {
            q.push(s.clone(), 100);
        }
        q.take(1);
        assert_eq!(q.close(), 3, "the two queued and the one in flight");
        assert_eq!((q.offered(), q.settled(), q.len()), (3, 3, 0));
    }

    #[test]
    fn failing_counts_from_the_first_failure_until_a_delivery_or_the_close() {
        let q = SpanQueue::new(10);
        let t0 = Instant::now();
        assert_eq!(q.failing_since(), None);
        q.failed(t0);
        q.failed(t0 + std::time::Duration::from_secs(3));
        assert_eq!(q.failing_since(), Some(t0), "the first failure counts");
        q.delivered();
        assert_eq!(q.failing_since(), None);
        q.failed(t0);
        q.close();
        assert_eq!(q.failing_since(), None, "closed: nothing is held any more");
    }
}

//! Events waiting for their parent: released when the parent appears or their deadline passes.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rustc_hash::FxHashMap;

use super::model::EventRecord;
use super::objects::ObjId;
use super::rules;
use super::time::Timestamp;

/// One occurrence of an event on its way to becoming (part of) a span.
#[derive(Debug)]
pub(crate) struct Occurrence {
    pub event: Box<EventRecord>,
    pub observed: Timestamp,
    /// The repeat count the span of this occurrence starts at (its identity).
    pub first_count: u32,
    pub start: Timestamp,
    pub last: Timestamp,
    /// The start is a whole second that observation could not refine.
    pub coarse: bool,
    /// The objects it concerns, resolved when it arrived: names are reused, and a name must
    /// mean what it meant then.
    pub resolved: Option<Resolved>,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Resolved {
    pub subject: ObjId,
    /// The child a controller said it acted on, or the `related` object.
    pub about: Option<ObjId>,
    /// What the controller said it did to `about`.
    pub action: Option<rules::Action>,
}

struct Entry {
    occurrence: Occurrence,
    waiting_for: ObjId,
    /// The child this held event says its controller acted on.
    announces: Option<ObjId>,
}

#[derive(Default)]
pub(crate) struct HeldEvents {
    entries: FxHashMap<u64, Entry>,
    by_object: FxHashMap<ObjId, Vec<u64>>,
    /// Objects that a held event names as acted on: their own events must wait for it.
    announced: FxHashMap<ObjId, u32>,
    deadlines: BinaryHeap<Reverse<(Timestamp, u64)>>,
    next_seq: u64,
}

impl HeldEvents {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether a held event names `object` as the child it acted on.
    pub fn is_announced(&self, object: ObjId) -> bool {
        self.announced.contains_key(&object)
    }

    pub fn hold(
        &mut self,
        waiting_for: ObjId,
        announces: Option<ObjId>,
        occurrence: Occurrence,
        deadline: Timestamp,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(child) = announces {
            *self.announced.entry(child).or_default() += 1;
        }
        self.entries.insert(
            seq,
            Entry {
                occurrence,
                waiting_for,
                announces,
            },
        );
        self.by_object.entry(waiting_for).or_default().push(seq);
        self.deadlines.push(Reverse((deadline, seq)));
    }

    /// Everything waiting for `object`, in arrival order.
    pub fn take_for(&mut self, object: ObjId) -> Vec<Occurrence> {
        let Some(seqs) = self.by_object.remove(&object) else {
            return Vec::new();
        };
        let mut released = Vec::with_capacity(seqs.len());
        for seq in seqs {
            if let Some(entry) = self.entries.remove(&seq) {
                released.push(self.release(entry));
            }
        }
        released
    }

    /// The earliest deadline of an event still held.
    pub fn next_deadline(&mut self) -> Option<Timestamp> {
        while let Some(&Reverse((deadline, seq))) = self.deadlines.peek() {
            if self.entries.contains_key(&seq) {
                return Some(deadline);
            }
            self.deadlines.pop();
        }
        None
    }

    /// The oldest event whose deadline has passed.
    pub fn take_due(&mut self, now: Timestamp) -> Option<Occurrence> {
        while let Some(&Reverse((deadline, seq))) = self.deadlines.peek() {
            if deadline > now {
                return None;
            }
            self.deadlines.pop();
            if let Some(entry) = self.entries.remove(&seq) {
                self.forget(entry.waiting_for, seq);
                return Some(self.release(entry));
            }
        }
        None
    }

    /// Everything, in arrival order (end of stream).
    pub fn take_all(&mut self) -> Vec<Occurrence> {
        let mut all: Vec<(u64, Entry)> = self.entries.drain().collect();
        all.sort_unstable_by_key(|(seq, _)| *seq);
        self.by_object.clear();
        self.announced.clear();
        self.deadlines.clear();
        all.into_iter().map(|(_, e)| e.occurrence).collect()
    }

    fn release(&mut self, entry: Entry) -> Occurrence {
        if let Some(child) = entry.announces
            && let Some(n) = self.announced.get_mut(&child)
        {
            *n -= 1;
            if *n == 0 {
                self.announced.remove(&child);
            }
        }
        entry.occurrence
    }

    fn forget(&mut self, object: ObjId, seq: u64) {
        if let Some(seqs) = self.by_object.get_mut(&object) {
            seqs.retain(|s| *s != seq);
            if seqs.is_empty() {
                self.by_object.remove(&object);
            }
        }
    }
}

//! Events waiting for their parent: released when the parent appears or their deadline passes.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use super::ids::TraceId;
use super::model::EventRecord;
use super::objects::ObjId;
use super::rules;
use super::time::Timestamp;
use super::tracked::EventKey;

/// One occurrence of an event on its way to becoming (part of) a span.
#[derive(Debug)]
pub(crate) struct Occurrence {
    pub event: Box<EventRecord>,
    pub key: EventKey,
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
    /// The trace a predecessor process exported this occurrence's span in (see `checkpoint.rs`):
    /// it belongs to that trace's change and to no other.
    pub exported_in: Option<TraceId>,
    /// Held only to root the rollouts a GitOps controller's report caused, once their new
    /// generations are seen (see `applied.rs`): the event itself was placed already.
    pub claim_only: bool,
    /// A claim copy of it is held already: placing it again (after a hold of its own) holds
    /// no second one.
    pub claim_held: bool,
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
    /// Arrival order, which also tells a deadline of this entry from one of a slot's earlier
    /// occupant.
    seq: u64,
    /// Neighbours among the events waiting for the same object, in arrival order.
    prev: Option<u32>,
    next: Option<u32>,
}

/// The held events live in a slab, each object's in a list threaded through it: holding and
/// releasing an event, which most events go through once, allocates nothing.
#[derive(Default)]
pub(crate) struct HeldEvents {
    slots: Vec<Option<Entry>>,
    free: Vec<u32>,
    len: usize,
    /// The first and last event waiting for each object.
    by_object: FxHashMap<ObjId, (u32, u32)>,
    /// Objects that a held event names as acted on, with when those events happened: their
    /// own events from then on must wait for them.
    announced: FxHashMap<ObjId, Announcers>,
    deadlines: BinaryHeap<Reverse<(Timestamp, u64, u32)>>,
    /// Deadlines of events released before them, still in `deadlines`.
    stale: usize,
    next_seq: u64,
    bytes: usize,
}

/// The most announcement times kept per object: any more are counted, and while one is held
/// the object's events wait for it whatever their time (as they all did before the times were
/// kept). A query looks at this many at most, however many events a hostile input holds.
const ANNOUNCEMENT_TIMES: usize = 8;

/// The held events announcing one object.
#[derive(Default)]
struct Announcers {
    /// When each happened (usually one or two: inline).
    starts: SmallVec<[Timestamp; 2]>,
    /// Those past `ANNOUNCEMENT_TIMES`, whose times are not kept.
    untimed: u32,
}

fn entry_bytes(occurrence: &Occurrence) -> usize {
    std::mem::size_of::<Entry>() + occurrence.event.heap_bytes()
}

impl HeldEvents {
    pub fn len(&self) -> usize {
        self.len
    }

    /// What the held events hold: their events (struct and strings) and their entries.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether a held event that happened by `by` names `object` as the child it acted on. One
    /// that happened later cannot be the parent of an event at `by`: waiting for it would hold
    /// an older change's events through a newer change's whole rollout (a successor re-listing
    /// a finished rollout while the next one's steps of the same ReplicaSet are held).
    pub fn is_announced_by(&self, object: ObjId, by: Timestamp) -> bool {
        self.announced
            .get(&object)
            .is_some_and(|a| a.untimed > 0 || a.starts.iter().any(|&start| start <= by))
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
            let announcers = self.announced.entry(child).or_default();
            if announcers.starts.len() < ANNOUNCEMENT_TIMES {
                announcers.starts.push(occurrence.start);
            } else {
                announcers.untimed += 1;
            }
        }
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 held events")
            }
        };
        let prev = match self.by_object.get_mut(&waiting_for) {
            Some((_, tail)) => {
                let prev = std::mem::replace(tail, slot);
                self.listed(prev).next = Some(slot);
                Some(prev)
            }
            None => {
                self.by_object.insert(waiting_for, (slot, slot));
                None
            }
        };
        self.bytes += entry_bytes(&occurrence);
        self.slots[slot as usize] = Some(Entry {
            occurrence,
            waiting_for,
            announces,
            seq,
            prev,
            next: None,
        });
        self.len += 1;
        self.deadlines.push(Reverse((deadline, seq, slot)));
    }

    /// Everything waiting for `object`, in arrival order.
    pub fn take_for(&mut self, object: ObjId) -> Vec<Occurrence> {
        let Some((head, _)) = self.by_object.remove(&object) else {
            return Vec::new();
        };
        let mut released = Vec::new();
        let mut next = Some(head);
        while let Some(slot) = next {
            let entry = self.take_slot(slot);
            next = entry.next;
            released.push(self.release(entry));
        }
        self.stale += released.len();
        // Most held events are released by their parent before their deadline: dropping the
        // deadlines left behind in one sweep, once they are the majority, is cheaper than
        // popping them one by one through the heap.
        if self.stale > self.len.max(64) {
            let slots = &self.slots;
            self.deadlines
                .retain(|&Reverse((_, seq, slot))| queued(slots, seq, slot));
            self.stale = 0;
        }
        released
    }

    /// The earliest deadline of an event still held.
    pub fn next_deadline(&mut self) -> Option<Timestamp> {
        while let Some(&Reverse((deadline, seq, slot))) = self.deadlines.peek() {
            if queued(&self.slots, seq, slot) {
                return Some(deadline);
            }
            self.deadlines.pop();
            self.stale -= 1;
        }
        None
    }

    /// The oldest event whose deadline has passed.
    pub fn take_due(&mut self, now: Timestamp) -> Option<Occurrence> {
        while let Some(&Reverse((deadline, seq, slot))) = self.deadlines.peek() {
            if deadline > now {
                return None;
            }
            self.deadlines.pop();
            if queued(&self.slots, seq, slot) {
                let entry = self.take_slot(slot);
                self.unlink(&entry);
                return Some(self.release(entry));
            }
            self.stale -= 1;
        }
        None
    }

    /// Everything, in arrival order (end of stream).
    pub fn take_all(&mut self) -> Vec<Occurrence> {
        let mut all: Vec<Entry> = self.slots.drain(..).flatten().collect();
        all.sort_unstable_by_key(|e| e.seq);
        self.free.clear();
        self.len = 0;
        self.by_object.clear();
        self.announced.clear();
        self.deadlines.clear();
        self.stale = 0;
        all.into_iter().map(|e| e.occurrence).collect()
    }

    fn take_slot(&mut self, slot: u32) -> Entry {
        let entry = self.slots[slot as usize].take().expect("held");
        self.free.push(slot);
        self.len -= 1;
        self.bytes -= entry_bytes(&entry.occurrence);
        entry
    }

    fn release(&mut self, entry: Entry) -> Occurrence {
        if let Some(child) = entry.announces
            && let Some(a) = self.announced.get_mut(&child)
        {
            // Equal times are interchangeable: whichever is taken, the times left are the same.
            match a.starts.iter().position(|&s| s == entry.occurrence.start) {
                Some(i) => {
                    a.starts.swap_remove(i);
                }
                None => a.untimed = a.untimed.saturating_sub(1),
            }
            if a.starts.is_empty() && a.untimed == 0 {
                self.announced.remove(&child);
            }
        }
        entry.occurrence
    }

    /// Takes an entry out of its object's list.
    fn unlink(&mut self, entry: &Entry) {
        if let Some(prev) = entry.prev {
            self.listed(prev).next = entry.next;
        }
        if let Some(next) = entry.next {
            self.listed(next).prev = entry.prev;
        }
        let object = entry.waiting_for;
        let Some(ends) = self.by_object.get_mut(&object) else {
            return;
        };
        match (entry.prev, entry.next) {
            (None, None) => {
                self.by_object.remove(&object);
            }
            (None, Some(next)) => ends.0 = next,
            (Some(prev), None) => ends.1 = prev,
            (Some(_), Some(_)) => {}
        }
    }

    fn listed(&mut self, slot: u32) -> &mut Entry {
        self.slots[slot as usize].as_mut().expect("listed")
    }
}

/// Whether `slot` still holds the entry a deadline `(seq, slot)` was queued for.
fn queued(slots: &[Option<Entry>], seq: u64, slot: u32) -> bool {
    slots[slot as usize].as_ref().is_some_and(|e| e.seq == seq)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::{EventTime, ObjectRef};
    use crate::objects::ObjectTable;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_unix_secs(secs)
    }

    fn occurrence(uid: &str) -> Occurrence {
        let at = EventTime {
            at: t(0),
            precise: true,
        };
        let event = EventRecord {
            uid: uid.into(),
            name: uid.into(),
            namespace: "ns".into(),
            involved: ObjectRef::default(),
            related: None,
            reason: "Started".into(),
            message: String::new(),
            warning: false,
            action: String::new(),
            reporting_controller: "kubelet".into(),
            reporting_instance: String::new(),
            count: 1,
            first: at,
            last: at,
            top_level: false,
            revision: String::new(),
            truncated: false,
            derived: false,
        };
        Occurrence {
            key: EventKey::of("ns", uid),
            event: Box::new(event),
            observed: t(0),
            first_count: 1,
            start: t(0),
            last: t(0),
            coarse: false,
            resolved: None,
            exported_in: None,
            claim_only: false,
            claim_held: false,
        }
    }

    fn uids(released: Vec<Occurrence>) -> Vec<String> {
        released.into_iter().map(|o| o.event.uid).collect()
    }

    #[test]
    fn released_in_arrival_order_and_stale_deadlines_never_fire() {
        let mut objects = ObjectTable::new(Duration::from_secs(600), 100);
        let x = objects.resolve_named("Pod", "ns", "x", t(0), false, t(0));
        let y = objects.resolve_named("Pod", "ns", "y", t(0), false, t(0));
        let mut held = HeldEvents::default();
        held.hold(x, None, occurrence("a"), t(3));
        held.hold(x, Some(y), occurrence("b"), t(1));
        held.hold(x, None, occurrence("c"), t(2));
        held.hold(y, None, occurrence("d"), t(4));
        assert!(held.is_announced_by(y, t(0)));

        // The middle of x's list is due first; the rest stays listed, in arrival order.
        assert_eq!(held.next_deadline(), Some(t(1)));
        let due = held.take_due(t(1)).map(|o| o.event.uid);
        assert_eq!(due.as_deref(), Some("b"));
        assert!(!held.is_announced_by(y, t(0)), "b announced y");
        assert!(held.take_due(t(1)).is_none());
        assert_eq!(uids(held.take_for(x)), ["a", "c"]);
        assert_eq!(held.len(), 1);

        // e and f take the slots a and c left, whose deadlines (3 and 2) are still queued:
        // those must not release them.
        held.hold(x, None, occurrence("e"), t(10));
        held.hold(x, None, occurrence("f"), t(11));
        assert_eq!(held.next_deadline(), Some(t(4)));
        let due = held.take_due(t(5)).map(|o| o.event.uid);
        assert_eq!(due.as_deref(), Some("d"));
        assert!(held.take_due(t(5)).is_none());
        assert_eq!(held.next_deadline(), Some(t(10)));

        // Enough released at once that their deadlines are swept out together: the live ones
        // stay, in order.
        let z = objects.resolve_named("Pod", "ns", "z", t(0), false, t(0));
        for i in 0..100 {
            held.hold(z, None, occurrence(&format!("z{i}")), t(5 + i));
        }
        assert_eq!(held.take_for(z).len(), 100);
        assert_eq!(held.next_deadline(), Some(t(10)));
        assert!(held.take_due(t(9)).is_none());
        let due = held.take_due(t(10)).map(|o| o.event.uid);
        assert_eq!(due.as_deref(), Some("e"));
        assert_eq!(uids(held.take_all()), ["f"]);
        assert_eq!((held.len(), held.next_deadline()), (0, None));
    }

    #[test]
    fn an_announcement_counts_only_for_events_it_may_have_caused() {
        let mut objects = ObjectTable::new(Duration::from_secs(600), 100);
        let rs = objects.resolve_named("ReplicaSet", "ns", "rs", t(0), false, t(0));
        let pod = objects.resolve_named("Pod", "ns", "pod", t(0), false, t(0));
        let later = |uid: &str, at: i64| Occurrence {
            start: t(at),
            ..occurrence(uid)
        };
        let mut held = HeldEvents::default();
        held.hold(rs, Some(pod), later("scale-up", 1), t(10));
        held.hold(rs, Some(pod), later("scale-down", 30), t(40));
        assert!(held.is_announced_by(pod, t(1)));

        // Once the early announcement is placed, an event of second 2 has nothing to wait for;
        // one of second 30 still waits for the later one.
        assert_eq!(
            held.take_due(t(10)).map(|o| o.event.uid).as_deref(),
            Some("scale-up")
        );
        assert!(!held.is_announced_by(pod, t(2)));
        assert!(held.is_announced_by(pod, t(30)));
        assert_eq!(uids(held.take_for(rs)), ["scale-down"]);
        assert!(!held.is_announced_by(pod, t(30)));

        // Past the times kept, a held announcement holds every event of the object (a query
        // looks at a bounded number of times); all released, none does.
        for i in 0..=ANNOUNCEMENT_TIMES as i64 {
            held.hold(rs, Some(pod), later(&format!("late{i}"), 100 + i), t(200));
        }
        assert!(held.is_announced_by(pod, t(0)), "one untimed is held");
        assert_eq!(held.take_for(rs).len(), ANNOUNCEMENT_TIMES + 1);
        assert!(!held.is_announced_by(pod, t(1000)));
    }
}

//! Spans and traces still open: their end, or their children, may still change.

use std::time::Duration;

use rustc_hash::FxHashMap;

use super::chunked::ChunkedVec;
use super::handles::{ObjId, SpanSlot};
use super::ids::{SpanId, TraceId};
use super::model::{EventRecord, Outcome};
use super::time::Timestamp;

/// What a span was made from.
#[derive(Debug)]
pub(crate) enum Source {
    /// The root of a trace, synthesised from the root object's newest spec change.
    SyntheticRoot,
    /// An event: an ordinary span, or the root of its trace when it was marked top-level.
    Event {
        event: Box<EventRecord>,
        /// The event's type, read while the event is fresh in memory: emitting the span then
        /// does not touch the event (by then long out of cache).
        warning: bool,
    },
}

impl Source {
    pub fn event(event: Box<EventRecord>) -> Source {
        Source::Event {
            warning: event.warning,
            event,
        }
    }
}

/// The fields the emission check reads of every open span come first, right after the slot's ID
/// (see [`OpenSpans`]), so a visit touches the slot's first two cache lines (a repeating event's
/// span also its third, for the repeat interval): the check visits a trace's open spans about
/// once a second.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct OpenSpan {
    /// When this span or anything below it last changed.
    pub touched: Timestamp,
    /// Set when the next event on the same object starts.
    pub end: Option<Timestamp>,
    /// When the object's status said it was done (or failed): the span's end.
    pub state_end: Option<Timestamp>,
    pub open_children: u32,
    pub first_count: u32,
    pub count: u32,
    /// Distance from the top of the open part of the tree: children are emitted before parents.
    pub depth: u8,
    /// The object reports its progress and is not done yet: the span waits for it.
    pub awaiting: bool,
    /// The object whose progress ends this span (a rollout's root object, a created pod), until
    /// its status has been read.
    pub waits_for: Option<ObjId>,
    /// The gap between the last two repetitions: how long to wait for the next one.
    pub repeat_interval: Duration,
    pub trace: TraceId,
    pub parent: Option<SpanSlot>,
    pub source: Source,
    /// The involved object (the root object, for a root span).
    pub subject: ObjId,
    /// The child a controller said it acted on, or the event's `related` object.
    pub about: Option<ObjId>,
    pub start: Timestamp,
    /// The latest occurrence of a repeated event.
    pub last: Timestamp,
    /// The latest end among emitted children.
    pub children_end: Timestamp,
    /// The earliest start among children (roots only: a root starts no later than its children).
    pub children_start: Option<Timestamp>,
    /// Times and counts of repetitions, capped.
    pub repeats: Vec<(Timestamp, u32)>,
    pub outcome: Option<Box<Outcome>>,
}

impl OpenSpan {
    pub fn is_root(&self) -> bool {
        self.parent.is_none()
    }

    /// When this span may be emitted, provided its children have been.
    pub fn ready_at(
        &self,
        window: Duration,
        horizon: Duration,
        max_repeat_hold: Duration,
        max_state_wait: Duration,
    ) -> Timestamp {
        if self.awaiting {
            return self.touched.saturating_add(max_state_wait);
        }
        if self.end.is_some() || self.state_end.is_some() {
            return self.touched.saturating_add(window);
        }
        let wait = if self.count > self.first_count {
            // Back-offs double: three intervals cover the next repetition.
            (self.repeat_interval * 3).clamp(horizon, max_repeat_hold.max(horizon))
        } else {
            horizon
        };
        self.touched.saturating_add(wait)
    }

    /// The end to export: the latest of its own end, its last repetition and its children.
    pub fn final_end(&self) -> Timestamp {
        if let Some(done) = self.state_end {
            return done.max(self.children_end).max(self.start);
        }
        self.end
            .unwrap_or(self.last)
            .max(self.last)
            .max(self.children_end)
            .max(self.start)
    }
}

/// One change of a top-level object.
#[derive(Debug)]
pub(crate) struct TraceState {
    pub root_object: ObjId,
    /// The root object's namespace, kept here: the trace stays in its tenant's namespace even if
    /// the object's entry is evicted at the cap before the trace is emitted.
    pub namespace: std::sync::Arc<str>,
    pub generation: i64,
    /// The root's start once it has been emitted: later children must not start before it.
    pub emitted_root_start: Option<Timestamp>,
    /// Open spans of this trace, in creation order.
    pub pending: Vec<SpanSlot>,
    /// The deadline queued for this trace, if any.
    pub scheduled: Option<Timestamp>,
    pub last_activity: Timestamp,
    /// The key this trace is found by in the engine's root index.
    pub key: RootKey,
    /// When the engine first saw the root's status say the rollout is over: what still waits
    /// for a pod's status is released a window later.
    pub rollout_over_seen: Option<Timestamp>,
}

/// How a trace is found from its root object: a spec generation, or, for objects whose
/// generations are unknown (seen only through events), the current burst of activity; for a
/// GitOps object, the Git revision it reconciled at a generation (see `revisions.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum RootChange {
    Generation(i64),
    Activity,
    Revision { generation: i64, revision: u64 },
}

pub(crate) type RootKey = (ObjId, RootChange);

/// The open spans, by ID. They live in a slab indexed by a small map: an open span is a few
/// hundred bytes, and moving it on every insert and rehash of a hash table, into cold memory
/// scattered over the whole table, cost more than the rest of placing an event. Freed slots are
/// reused first, so the memory in use stays warm. The emission check and the walk up to the root
/// reach spans by [`SpanSlot`], without the index.
#[derive(Default)]
pub(crate) struct OpenSpans {
    index: FxHashMap<SpanId, u32>,
    slots: ChunkedVec<Slot>,
    free: Vec<u32>,
    bytes: usize,
}

/// Aligned to a cache line, so that the ID and the fields after it sit in the same two lines.
#[repr(C, align(64))]
struct Slot {
    id: SpanId,
    span: Option<OpenSpan>,
    /// What the span holds in all, as counted when it came in (in the slot's padding).
    bytes: u32,
}

/// The heap and slot bytes an open span holds: what the open-span byte cap counts. The event is
/// the bulk (its strings are bounded by `limits`, which `eventspan::wire` applies); a root
/// synthesised from a spec change holds none, and an event made a root later is counted then
/// ([`OpenSpans::grew`]).
pub(crate) fn span_bytes(span: &OpenSpan) -> usize {
    let event = match &span.source {
        Source::Event { event, .. } => event.heap_bytes(),
        Source::SyntheticRoot => 0,
    };
    std::mem::size_of::<Slot>() + event + span.repeats.capacity() * 16
}

impl OpenSpans {
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// What the open spans hold, by [`span_bytes`].
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// An open span now holds `more` bytes than when it came in (a root took an event).
    pub fn grew(&mut self, at: SpanSlot, more: usize) {
        if let Some(slot) = self.slot_of(at) {
            let more = u32::try_from(more).unwrap_or(u32::MAX);
            self.slots[slot].bytes = self.slots[slot].bytes.saturating_add(more);
            self.bytes += more as usize;
        }
    }

    pub fn contains_key(&self, id: &SpanId) -> bool {
        self.index.contains_key(id)
    }

    /// The slot of an open span, if it is open.
    pub fn find(&self, id: SpanId) -> Option<SpanSlot> {
        let slot = *self.index.get(&id)?;
        Some(SpanSlot { id, slot })
    }

    /// `id` with its slot when it is open: later lookups of the handle skip the index.
    pub fn hinted(&self, id: SpanId) -> SpanSlot {
        self.find(id).unwrap_or(SpanSlot::of(id))
    }

    fn slot_of(&self, at: SpanSlot) -> Option<usize> {
        match self.slots.get(at.slot as usize) {
            Some(s) if s.id == at.id && s.span.is_some() => Some(at.slot as usize),
            _ => self.index.get(&at.id).map(|&slot| slot as usize),
        }
    }

    pub fn get(&self, id: &SpanId) -> Option<&OpenSpan> {
        self.get_at(SpanSlot::of(*id))
    }

    pub fn get_mut(&mut self, id: &SpanId) -> Option<&mut OpenSpan> {
        self.get_at_mut(SpanSlot::of(*id))
    }

    pub fn get_at(&self, at: SpanSlot) -> Option<&OpenSpan> {
        // `slot_of` and then indexing would look the slot up twice on a hit, the common case.
        match self.slots.get(at.slot as usize) {
            Some(Slot {
                id,
                span: Some(span),
                ..
            }) if *id == at.id => Some(span),
            _ => self.slots[*self.index.get(&at.id)? as usize].span.as_ref(),
        }
    }

    pub fn get_at_mut(&mut self, at: SpanSlot) -> Option<&mut OpenSpan> {
        let slot = self.slot_of(at)?;
        self.slots[slot].span.as_mut()
    }

    /// Adds a span; an open span with the same ID is replaced.
    #[inline]
    pub fn insert(&mut self, id: SpanId, span: OpenSpan) -> SpanSlot {
        let next = self.slots.len();
        let slot = *self
            .index
            .entry(id)
            .or_insert_with(|| match self.free.pop() {
                Some(slot) => slot,
                None => u32::try_from(next).expect("fewer than 2^32 open spans"),
            });
        if slot as usize == self.slots.len() {
            self.slots.push(Slot {
                id,
                span: None,
                bytes: 0,
            });
        }
        let bytes = u32::try_from(span_bytes(&span)).unwrap_or(u32::MAX);
        // Written straight into its slot: the span is not moved again.
        let entry = &mut self.slots[slot as usize];
        if entry.span.is_some() {
            self.bytes -= entry.bytes as usize;
        }
        entry.id = id;
        entry.span = Some(span);
        entry.bytes = bytes;
        self.bytes += bytes as usize;
        SpanSlot { id, slot }
    }

    pub fn remove_at(&mut self, at: SpanSlot) -> Option<OpenSpan> {
        let slot = self.slot_of(at)?;
        self.index.remove(&at.id);
        self.free.push(slot as u32);
        self.bytes -= self.slots[slot].bytes as usize;
        self.slots[slot].span.take()
    }
}

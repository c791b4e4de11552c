//! References from an object to spans about it, kept after the spans are exported.

use crate::handles::{ObjId, SpanSlot};
use crate::ids::{SpanId, TraceId};
use crate::time::Timestamp;

/// A reference to a span kept in an index, valid after the span itself has been exported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SpanRef {
    /// The span's [`SpanSlot`], its two parts kept apart so that the slot fills what would be
    /// padding after the ID: 64 bytes a reference instead of 80, and an object keeps up to nine
    /// (see [`SpanRef::span`]).
    span_id: SpanId,
    slot: u32,
    pub trace: TraceId,
    pub start: Timestamp,
    /// When its event happened, before a parent that started later moved `start`: what a later
    /// event compares with to ask "had the controller acted on this object by then?".
    pub happened: Timestamp,
    /// When the reference was made, for expiry.
    pub at: Timestamp,
    /// The object the span is about (the child a "Deleted pod: X" names), kept past the span's
    /// export: which child an owner's span concerns must not be forgotten when the span is sent
    /// (an old pod's `Killing` would then take a sibling's exported deletion for its parent).
    pub about: Option<ObjId>,
}

const _: () = assert!(std::mem::size_of::<SpanRef>() == 64);

impl SpanRef {
    pub fn new(
        span: SpanSlot,
        trace: TraceId,
        start: Timestamp,
        happened: Timestamp,
        at: Timestamp,
        about: Option<ObjId>,
    ) -> Self {
        SpanRef {
            span_id: span.id,
            slot: span.slot,
            trace,
            start,
            happened,
            at,
            about,
        }
    }

    pub fn span(&self) -> SpanSlot {
        SpanSlot {
            id: self.span_id,
            slot: self.slot,
        }
    }

    pub fn span_id(&self) -> SpanId {
        self.span_id
    }

    pub fn set_span(&mut self, span: SpanSlot) {
        (self.span_id, self.slot) = (span.id, span.slot);
    }
}

/// A few recent spans of one kind for one object, ordered by start time: arrival order must not
/// decide which span is "the next one" or "the newest". The vector grows one reference at a
/// time: most objects keep one or two, and the tombstones of deleted pods are most of the table.
#[derive(Debug, Default)]
pub(crate) struct RecentSpans(Vec<SpanRef>);

impl RecentSpans {
    const CAP: usize = 4;

    pub fn insert(&mut self, r: SpanRef) {
        let mut pos = self
            .0
            .partition_point(|x| (x.start, x.span_id) <= (r.start, r.span_id));
        // When full, the oldest goes before the insert: the vector never grows past its cap.
        if self.0.len() == Self::CAP {
            if pos == 0 {
                return;
            }
            self.0.remove(0);
            pos -= 1;
        } else {
            self.0.reserve_exact(1);
        }
        self.0.insert(pos, r);
    }

    /// The span in `slot` turned out to be about `about` (a placeholder named by a controller's
    /// message was the object seen later).
    pub fn set_about(&mut self, slot: SpanSlot, about: ObjId) {
        for r in self.0.iter_mut().filter(|r| r.span_id == slot.id) {
            r.about = Some(about);
        }
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &SpanRef> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

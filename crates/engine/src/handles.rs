//! The handles by which the rest of the engine names an object of the object table and an
//! open span of the span slab: leaves, so that the tables and the indexes pointing into each
//! other's entries need not import each other.

use super::ids::SpanId;

/// A slot of the object table and the generation of that slot: an id kept after its object was
/// removed names no other object that takes the slot later.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ObjId {
    pub(super) idx: u32,
    pub(super) generation: u32,
}

impl ObjId {
    /// The table slot: distinct among the objects known at one time.
    pub fn index(self) -> usize {
        self.idx as usize
    }
}

/// A span's ID with the slot of the open spans (`spans::OpenSpans`) it was stored in: looking it
/// up skips the hash index while the slot still holds it, and falls back to the index when it
/// does not (the span was emitted, or the slot was never known).
#[derive(Clone, Copy, Debug)]
pub(crate) struct SpanSlot {
    pub id: SpanId,
    pub(super) slot: u32,
}

/// The same span whatever slot it was last seen in: the slot is only a hint.
impl PartialEq for SpanSlot {
    fn eq(&self, other: &SpanSlot) -> bool {
        self.id == other.id
    }
}

impl Eq for SpanSlot {}

impl SpanSlot {
    /// A span whose slot is not known: found through the index.
    pub fn of(id: SpanId) -> SpanSlot {
        SpanSlot { id, slot: u32::MAX }
    }
}

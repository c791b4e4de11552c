//! The handle by which the rest of the engine names an object of the table.

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

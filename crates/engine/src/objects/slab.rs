//! The generational slab the object table keeps its entries in: a removed entry's slot is
//! reused, and an [`ObjId`] kept from before names nothing rather than the slot's new occupant.

use crate::chunked::ChunkedVec;
use crate::handles::ObjId;

/// A slot and the generation of its occupant: bumped on removal, so old ids stop matching.
pub(super) struct Slot<T> {
    generation: u32,
    entry: Option<T>,
}

pub(super) struct Slab<T> {
    slots: ChunkedVec<Slot<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: ChunkedVec::default(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn get(&self, id: ObjId) -> Option<&T> {
        let slot = self.slots.get(id.idx as usize)?;
        (slot.generation == id.generation).then_some(slot.entry.as_ref()?)
    }

    pub(super) fn get_mut(&mut self, id: ObjId) -> Option<&mut T> {
        let slot = self.slots.get_mut(id.idx as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.entry.as_mut()
    }

    /// Puts an entry in a free slot, or a new one.
    pub(super) fn insert(&mut self, entry: T) -> ObjId {
        let id = match self.free.pop() {
            Some(idx) => {
                let slot = &mut self.slots[idx as usize];
                slot.entry = Some(entry);
                ObjId {
                    idx,
                    generation: slot.generation,
                }
            }
            None => {
                let idx = self.slots.push(Slot {
                    generation: 0,
                    entry: Some(entry),
                });
                let idx = u32::try_from(idx).expect("object table below 2^32 entries");
                ObjId { idx, generation: 0 }
            }
        };
        self.len += 1;
        id
    }

    /// Takes the entry out, if the id still names it; its slot is free for the next insert.
    pub(super) fn remove(&mut self, id: ObjId) -> Option<T> {
        let slot = self.slots.get_mut(id.idx as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        let entry = slot.entry.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.idx);
        self.len -= 1;
        Some(entry)
    }

    /// Every entry, in slot order.
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (ObjId, &mut T)> {
        self.slots.iter_mut().enumerate().filter_map(|(idx, slot)| {
            let id = ObjId {
                idx: idx as u32,
                generation: slot.generation,
            };
            Some((id, slot.entry.as_mut()?))
        })
    }
}

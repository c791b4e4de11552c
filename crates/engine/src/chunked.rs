//! A growable array that never moves what it holds.
//!
//! The engine's big tables (objects, open spans) are slabs of a few hundred bytes per entry. As
//! one `Vec` each, growing them copied the whole table, into fresh memory, every time it doubled,
//! and left up to half of it unused. Here storage comes in fixed chunks: growing allocates one more
//! chunk and copies nothing, and at most one chunk is spare.

use std::ops::{Index, IndexMut};

/// Entries per chunk: a few hundred KiB for the engine's entries.
const CHUNK: usize = 1024;

pub(crate) struct ChunkedVec<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for ChunkedVec<T> {
    fn default() -> Self {
        ChunkedVec {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> ChunkedVec<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Appends an entry and returns its index.
    pub fn push(&mut self, value: T) -> usize {
        if self.len.is_multiple_of(CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        self.chunks
            .last_mut()
            .expect("a chunk with room")
            .push(value);
        self.len += 1;
        self.len - 1
    }

    pub fn get(&self, index: usize) -> Option<&T> {
        self.chunks.get(index / CHUNK)?.get(index % CHUNK)
    }

    pub fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        self.chunks.get_mut(index / CHUNK)?.get_mut(index % CHUNK)
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.chunks.iter_mut().flatten()
    }
}

impl<T> Index<usize> for ChunkedVec<T> {
    type Output = T;

    fn index(&self, index: usize) -> &T {
        &self.chunks[index / CHUNK][index % CHUNK]
    }
}

impl<T> IndexMut<usize> for ChunkedVec<T> {
    fn index_mut(&mut self, index: usize) -> &mut T {
        &mut self.chunks[index / CHUNK][index % CHUNK]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_keep_their_index_and_address_across_chunks() {
        let mut v = ChunkedVec::default();
        for i in 0..CHUNK + 10 {
            assert_eq!(v.push(i * 2), i);
        }
        let first: *const usize = &v[0];
        for i in 0..CHUNK * 2 {
            v.push(i);
        }
        assert!(std::ptr::eq(first, &v[0]), "growing moved an entry");
        assert_eq!(v.len(), CHUNK * 3 + 10);
        assert_eq!(v[CHUNK + 5], (CHUNK + 5) * 2);
        assert_eq!(v.get(CHUNK * 3 + 10), None);
        v[7] = 1;
        assert_eq!(v.get_mut(7).copied(), Some(1));
        assert_eq!(v.iter_mut().count(), v.len());
    }
}

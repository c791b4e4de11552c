//! String interning for the few distinct kinds, namespaces and component names the object table
//! holds many times over.

use std::sync::Arc;

use rustc_hash::FxHashSet;

/// String interning for the few distinct kinds, namespaces and component names. Input decides
/// what is interned (any event may name a new kind), so the set is bounded: when full, strings
/// no entry uses any more are forgotten, and if all are in use a string is shared no longer but
/// still works (an Arc of its own).
#[derive(Default)]
pub(crate) struct Interner {
    set: FxHashSet<Arc<str>>,
}

impl Interner {
    /// Far above the distinct kinds, namespaces, managers and node names of a real cluster.
    pub const CAP: usize = 16_384;

    pub fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(found) = self.set.get(s) {
            return found.clone();
        }
        let arc: Arc<str> = Arc::from(s);
        if self.set.len() >= Self::CAP {
            // Only the set holds these: nothing refers to them.
            self.set.retain(|a| Arc::strong_count(a) > 1);
        }
        // Keep room: a sweep that freed little is not repeated on every new string.
        if self.set.len() < Self::CAP * 3 / 4 {
            self.set.insert(arc.clone());
        }
        arc
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.set.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interner_forgets_what_nothing_uses_and_stays_bounded() {
        let mut strings = Interner::default();
        let kept = strings.intern("Deployment");
        for i in 0..3 * Interner::CAP {
            let _ = strings.intern(&format!("Kind{i}"));
        }
        assert!(strings.len() <= Interner::CAP, "{}", strings.len());
        assert!(
            Arc::ptr_eq(&kept, &strings.intern("Deployment")),
            "in use: still shared"
        );
        // All in use: new strings still come back right, unshared.
        let held: Vec<Arc<str>> = (0..Interner::CAP)
            .map(|i| strings.intern(&format!("Held{i}")))
            .collect();
        assert!(strings.len() <= Interner::CAP);
        assert_eq!(&*strings.intern("Fresh"), "Fresh");
        drop(held);
    }
}

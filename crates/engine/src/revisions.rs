//! Which Git revision a GitOps object's reconciliation was of: the change key of Flux's own kinds.
//!
//! A new commit does not change a Kustomization's or GitRepository's `metadata.generation`, so
//! "one trace per spec generation" would fold every revision they reconcile into one trace. Their
//! controllers annotate each event with the revision it reconciled
//! (`kustomize.toolkit.fluxcd.io/revision: main@sha1:...`, see `vcs.rs`), and that is the key
//! used here: a root whose events carry a revision gets one trace per (generation, revision).
//! The objects' `status.lastAppliedRevision` would say the same, but custom kinds are watched
//! through their metadata only, which has no status; the events are what every source has.
//!
//! An event without the annotation belongs to the revision current at its time: the newest one
//! first seen by then.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;
use xxhash_rust::xxh3::xxh3_64;

use super::objects::ObjId;
use super::time::Timestamp;

/// Revisions remembered per root, to attribute late events by time (as for generations).
const HISTORY: usize = 4;
/// Roots whose revisions are remembered; the oldest is forgotten first. GitOps objects are few
/// (one per source and per applied directory), so this bounds hostile input, not real use.
const MAX_ROOTS: usize = 4096;

/// A revision as the key stores it.
pub(crate) fn revision_key(revision: &str) -> u64 {
    xxh3_64(revision.as_bytes())
}

#[derive(Default)]
pub(crate) struct RevisionLog {
    /// Per root: (first seen, revision key), oldest first.
    by_root: FxHashMap<ObjId, Vec<(Timestamp, u64)>>,
    /// Roots in the order they were first noted: the eviction order.
    order: VecDeque<ObjId>,
}

impl RevisionLog {
    /// An event on `root` reconciled `revision` at `at`.
    pub fn note(&mut self, root: ObjId, revision: &str, at: Timestamp) {
        let key = revision_key(revision);
        let seen = match self.by_root.get_mut(&root) {
            Some(seen) => seen,
            None => {
                if self.order.len() >= MAX_ROOTS
                    && let Some(oldest) = self.order.pop_front()
                {
                    self.by_root.remove(&oldest);
                }
                self.order.push_back(root);
                self.by_root.entry(root).or_default()
            }
        };
        if let Some(i) = seen.iter().position(|(_, k)| *k == key) {
            if seen[i].0 <= at {
                return;
            }
            seen.remove(i);
        }
        let i = seen.partition_point(|(t, _)| *t <= at);
        seen.insert(i, (at, key));
        if seen.len() > HISTORY {
            seen.remove(0);
        }
    }

    /// The revision of `root` current at `at`: the newest first seen by then, else the oldest
    /// known (an event older than every revision seen belongs to the first).
    pub fn at(&self, root: ObjId, at: Timestamp) -> Option<u64> {
        let seen = self.by_root.get(&root)?;
        seen.iter()
            .rev()
            .find(|(t, _)| *t <= at)
            .or(seen.first())
            .map(|(_, k)| *k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_unix_secs(1_800_000_000 + s)
    }

    #[test]
    fn an_event_belongs_to_the_revision_current_at_its_time() {
        let mut log = RevisionLog::default();
        let root = ObjId::default();
        assert_eq!(log.at(root, t(0)), None);
        log.note(root, "main@sha1:a", t(10));
        log.note(root, "main@sha1:b", t(20));
        // Seen again later, or earlier: its first sighting counts.
        log.note(root, "main@sha1:a", t(15));
        log.note(root, "main@sha1:b", t(18));
        let (a, b) = (revision_key("main@sha1:a"), revision_key("main@sha1:b"));
        assert_eq!(log.at(root, t(5)), Some(a));
        assert_eq!(log.at(root, t(17)), Some(a));
        assert_eq!(log.at(root, t(18)), Some(b));
        assert_eq!(log.at(root, t(99)), Some(b));
    }

    #[test]
    fn history_is_bounded() {
        let mut log = RevisionLog::default();
        let root = ObjId::default();
        for i in 0..100 {
            log.note(root, &format!("main@sha1:{i}"), t(i));
        }
        assert_eq!(log.by_root[&root].len(), HISTORY);
        assert_eq!(log.at(root, t(0)), Some(revision_key("main@sha1:96")));
    }
}

//! Owner chains: whose child an object is, by its ownerReferences, a controller's message or,
//! failing both, its name; and where a chain ends, at the top of a trace or at a run boundary.

use super::entry::{ObjEntry, OwnerLink};
use super::index::Index;
use super::slab::Slab;
use crate::handles::ObjId;
use crate::naming::owner_candidates;

/// Owner chains deeper than this are treated as cycles.
const MAX_OWNER_DEPTH: usize = 16;
/// (kind, owner kind): each such object is one run of its owner and the root of a trace of its
/// own, so a CronJob firing every minute makes a trace per Job instead of one endless trace.
const RUN_BOUNDARIES: &[(&str, &str)] = &[("Job", "CronJob")];

/// An owner chain, nearest first, without a heap allocation: it is walked for every event.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct OwnerChain {
    ids: [ObjId; MAX_OWNER_DEPTH],
    len: usize,
}

impl std::ops::Deref for OwnerChain {
    type Target = [ObjId];

    fn deref(&self) -> &[ObjId] {
        &self.ids[..self.len]
    }
}

/// The entries seen as an ownership graph. Walking it writes: a stale owner id is refreshed, a
/// guessed owner is remembered.
pub(super) struct Owners<'a> {
    entries: &'a mut Slab<ObjEntry>,
    index: &'a Index,
}

impl<'a> Owners<'a> {
    pub(super) fn new(entries: &'a mut Slab<ObjEntry>, index: &'a Index) -> Self {
        Owners { entries, index }
    }

    /// Learns "parent acted on child" from a controller message, unless the child's real
    /// ownerReferences are known.
    pub(super) fn infer(&mut self, child: ObjId, parent: ObjId) {
        if child == parent {
            return;
        }
        if let Some(e) = self.entries.get_mut(child)
            && e.owner.is_none()
        {
            e.inferred_owner = Some(parent);
            e.owner_guessed = false;
        }
    }

    /// The controlling owner, re-resolved by uid if the cached id went stale.
    pub(super) fn owner_of(&mut self, id: ObjId) -> Option<ObjId> {
        let entry = self.entries.get(id)?;
        if let Some(link) = &entry.owner {
            if self.entries.get(link.id).is_some() {
                return Some(link.id);
            }
            let uid = link.uid.clone();
            let namespace = entry.namespace.clone();
            let fresh = self.index.find_uid(self.entries, &namespace, &uid)?;
            if let Some(OwnerLink { id: cached, .. }) =
                self.entries.get_mut(id).and_then(|e| e.owner.as_mut())
            {
                *cached = fresh;
            }
            return Some(fresh);
        }
        if let Some(inferred) = entry
            .inferred_owner
            .filter(|o| self.entries.get(*o).is_some())
        {
            return Some(inferred);
        }
        // An object seen through a watch without owners has none; one known only from events
        // may have had one that nothing named: its name may tell.
        if entry.live || entry.deleted {
            return None;
        }
        let guess = self.owner_by_name(id)?;
        let entry = self.entries.get_mut(id)?;
        entry.inferred_owner = Some(guess);
        entry.owner_guessed = true;
        Some(guess)
    }

    /// The owner the object's name points to by Kubernetes' naming conventions, if the table
    /// knows an object of that kind and name.
    fn owner_by_name(&self, id: ObjId) -> Option<ObjId> {
        let e = self.entries.get(id)?;
        owner_candidates(&e.kind, &e.name)
            .find_map(|(kind, name)| self.index.find_name(self.entries, kind, &e.namespace, name))
            .filter(|owner| *owner != id)
    }

    /// The owners of an object, nearest first (the object itself excluded), up to a run
    /// boundary if `stop_at_runs`.
    pub(super) fn chain(&mut self, id: ObjId, stop_at_runs: bool) -> OwnerChain {
        let mut chain = OwnerChain::default();
        let mut current = id;
        while chain.len < MAX_OWNER_DEPTH {
            if stop_at_runs && self.is_run(current) {
                break;
            }
            match self.owner_of(current) {
                Some(owner) if owner != id && !chain.contains(&owner) => {
                    chain.ids[chain.len] = owner;
                    chain.len += 1;
                    current = owner;
                }
                _ => break,
            }
        }
        chain
    }

    /// Whether the object is one run of its owner (a Job of a CronJob): a trace root.
    pub(super) fn is_run(&mut self, id: ObjId) -> bool {
        let Some(entry) = self.entries.get(id) else {
            return false;
        };
        if !RUN_BOUNDARIES.iter().any(|(kind, _)| **kind == *entry.kind) {
            return false;
        }
        let kind = entry.kind.clone();
        let Some(owner) = self.owner_of(id) else {
            return false;
        };
        let owner_kind = &self.entries.get(owner).expect("resolved").kind;
        RUN_BOUNDARIES
            .iter()
            .any(|(k, o)| **k == *kind && **o == **owner_kind)
    }

    /// The top of the trace chain: the object whose change a trace describes.
    pub(super) fn top(&mut self, id: ObjId) -> ObjId {
        let mut current = id;
        for _ in 0..MAX_OWNER_DEPTH {
            if self.is_run(current) {
                break;
            }
            match self.owner_of(current) {
                Some(owner) if owner != id && owner != current => current = owner,
                _ => break,
            }
        }
        current
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::ObjectTable;
    use super::super::tests::meta;
    use crate::model::ObjectRef;
    use crate::time::Timestamp;

    #[test]
    fn an_owner_is_guessed_from_the_name_only_when_nothing_better_is_known() {
        let mut t = ObjectTable::new(Duration::from_secs(60), 100);
        let now = Timestamp::from_unix_secs(10);
        let rs = t.upsert(&meta("rs1", "ReplicaSet", "web-5d4f8c7b9", None), now, now);
        let pod_ref = |name: &str, uid: &str| ObjectRef {
            kind: "Pod".into(),
            api_version: "v1".into(),
            namespace: "ns".into(),
            name: name.into(),
            uid: uid.into(),
            field_path: String::new(),
        };
        // Known only from an event: the name points to the ReplicaSet.
        let pod = t.resolve_ref(&pod_ref("web-5d4f8c7b9-x2x7k", "p1"), now);
        assert_eq!(t.owner_of(pod), Some(rs));
        assert!(t.get(pod).unwrap().owner_guessed);
        // A controller's message is better evidence than a name.
        let other = t.upsert(&meta("rs2", "ReplicaSet", "other", None), now, now);
        t.infer_owner(pod, other);
        assert_eq!(t.owner_of(pod), Some(other));
        assert!(!t.get(pod).unwrap().owner_guessed);
        // Seen through a watch without owners: it has none, whatever its name.
        let bare = t.upsert(&meta("p2", "Pod", "web-5d4f8c7b9-q8mzd", None), now, now);
        assert_eq!(t.owner_of(bare), None);
        // No object of the name's owner is known: no guess.
        let orphan = t.resolve_ref(&pod_ref("gone-5d4f8c7b9-abcde", "p3"), now);
        assert_eq!(t.owner_of(orphan), None);
    }

    #[test]
    fn jobs_of_cronjobs_are_trace_roots() {
        let mut t = ObjectTable::new(Duration::from_secs(60), 100);
        let now = Timestamp::from_unix_secs(0);
        let pod = t.upsert(
            &meta("p1", "Pod", "r-1-x", Some(("j1", "Job", "r-1"))),
            now,
            now,
        );
        let job = t.upsert(
            &meta("j1", "Job", "r-1", Some(("c1", "CronJob", "r"))),
            now,
            now,
        );
        let cron = t.lookup_uid("ns", "c1").unwrap();
        assert_eq!(t.owner_chain(pod), vec![job, cron]);
        assert_eq!(*t.trace_chain(pod), [job]);
        assert_eq!(t.top(pod), job);
        assert_eq!(t.top(job), job);
    }

    #[test]
    fn owner_cycles_terminate() {
        let mut t = ObjectTable::new(Duration::from_secs(60), 100);
        let now = Timestamp::from_unix_secs(0);
        let a = t.upsert(&meta("a", "X", "a", Some(("b", "X", "b"))), now, now);
        t.upsert(&meta("b", "X", "b", Some(("a", "X", "a"))), now, now);
        assert_eq!(t.owner_chain(a).len(), 1);
    }
}

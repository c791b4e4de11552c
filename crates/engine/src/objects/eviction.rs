//! Which entries go, and when: those not seen live expire a TTL after they were last touched;
//! at the table's cap, the oldest expiry candidate goes first, then the object live longest ago,
//! never one the input being handled has named.

use std::collections::VecDeque;
use std::time::Duration;

use super::entry::ObjEntry;
use super::slab::Slab;
use crate::handles::ObjId;
use crate::time::Timestamp;

/// The most entries one eviction looks at: eviction is O(1) per insert, whatever the table holds.
const EVICTION_LOOKS: usize = 16;
/// How far the object cap can be passed: the objects one input names (its subject, its owner, a
/// child or related object) are never evicted while it is handled.
pub const CAP_SLACK: usize = 4;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Queue {
    Expiry,
    Live,
}

pub(super) struct Eviction {
    /// Candidates for expiry, oldest first: (earliest expiry, id).
    expiry: VecDeque<(Timestamp, ObjId)>,
    /// Live objects in the order they became live: eviction's last resort at the cap.
    live_order: VecDeque<(Timestamp, ObjId)>,
    /// The objects the input being handled has named: never evicted while it is handled.
    working: Vec<ObjId>,
    ttl: Duration,
}

impl Eviction {
    pub(super) fn new(ttl: Duration) -> Self {
        Eviction {
            expiry: VecDeque::new(),
            live_order: VecDeque::new(),
            working: Vec::new(),
            ttl,
        }
    }

    /// The entry is not (or no longer) live: it expires a TTL after `now` unless touched since.
    pub(super) fn may_expire(&mut self, id: ObjId, now: Timestamp) {
        self.expiry.push_back((now.saturating_add(self.ttl), id));
    }

    /// The entry was seen through a watch: it never expires, and is evicted at the cap only after
    /// the objects that became live before it.
    pub(super) fn became_live(&mut self, id: ObjId, now: Timestamp, entries: &Slab<ObjEntry>) {
        self.live_order.push_back((now, id));
        // Objects deleted or released leave entries behind: compacted, amortised O(1).
        if self.live_order.len() > 2 * entries.len() + 64 {
            self.live_order
                .retain(|&(_, id)| entries.get(id).is_some_and(|e| e.live));
        }
    }

    /// A new input is being handled: what the previous one named may be evicted again.
    pub(super) fn begin_input(&mut self) {
        self.working.clear();
    }

    /// The input being handled names this entry: it is spared until the next input.
    pub(super) fn working_on(&mut self, id: ObjId) {
        if self.working.len() < 2 * CAP_SLACK && !self.working.contains(&id) {
            self.working.push(id);
        }
    }

    /// The entry to evict when the hard cap is reached: the oldest expiry candidate (a tombstone,
    /// an object known only from events), even if its TTL has not passed; when there is none, the
    /// live object seen live longest ago (its next watch event brings it back). Objects touched
    /// by the input being handled are spared, so the cap can be passed by the few objects one
    /// input names ([`CAP_SLACK`]). Each call looks at a bounded number of entries.
    pub(super) fn victim(&mut self, entries: &Slab<ObjEntry>) -> Option<ObjId> {
        for queue in [Queue::Expiry, Queue::Live] {
            let mut spared = Vec::new();
            let mut victim = None;
            for _ in 0..EVICTION_LOOKS {
                let q = match queue {
                    Queue::Expiry => &mut self.expiry,
                    Queue::Live => &mut self.live_order,
                };
                let Some((at, id)) = q.pop_front() else { break };
                match entries.get(id) {
                    Some(e) if e.live != (queue == Queue::Live) => {}
                    Some(_) if self.working.contains(&id) => spared.push((at, id)),
                    Some(_) => {
                        victim = Some(id);
                        break;
                    }
                    None => {}
                }
            }
            let q = match queue {
                Queue::Expiry => &mut self.expiry,
                Queue::Live => &mut self.live_order,
            };
            for entry in spared.into_iter().rev() {
                q.push_front(entry);
            }
            if victim.is_some() {
                return victim;
            }
        }
        None
    }

    /// The next entry whose TTL has passed at `now` (not live, not touched for the TTL), if any.
    pub(super) fn next_expired(
        &mut self,
        entries: &Slab<ObjEntry>,
        now: Timestamp,
    ) -> Option<ObjId> {
        while let Some(&(at, id)) = self.expiry.front() {
            if at > now {
                break;
            }
            self.expiry.pop_front();
            let Some(entry) = entries.get(id) else {
                continue;
            };
            if entry.live {
                continue;
            }
            let due = entry.touched.saturating_add(self.ttl);
            if due > now {
                self.expiry.push_back((due, id));
            } else {
                return Some(id);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::ObjectTable;
    use super::super::tests::meta;
    use super::*;

    #[test]
    fn tombstones_expire_and_stale_ids_are_detected() {
        let mut t = ObjectTable::new(Duration::from_secs(60), 100);
        let id = t.upsert(
            &meta("p1", "Pod", "web-1", None),
            Timestamp::from_unix_secs(0),
            Timestamp::from_unix_secs(0),
        );
        t.delete(
            "ns",
            "p1",
            Timestamp::from_unix_secs(1),
            Timestamp::from_unix_secs(1),
        );
        t.expire(Timestamp::from_unix_secs(30));
        assert!(t.get(id).is_some(), "tombstone kept within its TTL");
        t.expire(Timestamp::from_unix_secs(62));
        assert!(t.get(id).is_none());
        let reused = t.resolve_named(
            "Pod",
            "ns",
            "other",
            Timestamp::from_unix_secs(63),
            false,
            Timestamp::from_unix_secs(63),
        );
        assert!(
            t.get(id).is_none(),
            "the old id must not name the new occupant"
        );
        assert!(t.get(reused).is_some());
    }

    #[test]
    fn cap_evicts_placeholders_not_live_objects() {
        let mut t = ObjectTable::new(Duration::from_secs(60), 2);
        let now = Timestamp::from_unix_secs(0);
        let live = t.upsert(&meta("d1", "Deployment", "web", None), now, now);
        let a = t.resolve_named("Pod", "ns", "a", now, false, now);
        // The next input: what the previous one named may go.
        t.begin_input();
        let later = Timestamp::from_unix_secs(1);
        let b = t.resolve_named("Pod", "ns", "b", later, false, later);
        assert!(t.get(live).is_some());
        assert!(t.get(a).is_none());
        assert!(t.get(b).is_some());
        assert_eq!(t.evicted, 1);
    }

    #[test]
    fn cap_holds_with_only_live_objects_and_spares_the_one_being_upserted() {
        let mut t = ObjectTable::new(Duration::from_secs(60), 2);
        let at = Timestamp::from_unix_secs;
        let first = t.upsert(&meta("d1", "Deployment", "a", None), at(0), at(0));
        t.begin_input();
        t.upsert(&meta("d2", "Deployment", "b", None), at(1), at(1));
        t.begin_input();
        // Its owner is new too: making room for the owner must not evict the pod itself.
        let pod = t.upsert(
            &meta("p1", "Pod", "a-1", Some(("rs1", "ReplicaSet", "a-x"))),
            at(2),
            at(2),
        );
        assert!(t.get(pod).is_some());
        assert!(t.get(first).is_none(), "the oldest live object went");
        assert!(t.len() <= 2 + CAP_SLACK, "{} objects", t.len());
        for i in 0..100 {
            let name = format!("p{i}");
            t.begin_input();
            t.upsert(&meta(&name, "Pod", &name, None), at(3 + i), at(3 + i));
        }
        assert!(t.len() <= 2 + CAP_SLACK, "{} objects", t.len());
        assert!(t.eviction.live_order.len() <= 2 * t.len() + 64);
    }
}

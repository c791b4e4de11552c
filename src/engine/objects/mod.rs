//! The object table: what the engine remembers about Kubernetes objects.
//!
//! Objects come from three places: watches (upserts with full metadata), events (the involved
//! object, often the first sign of it) and controller messages (a child named only by kind and
//! name). All three resolve to one entry, found by uid when known and by kind/namespace/name
//! otherwise, so an entry created from a message is completed when the object itself shows up.
//!
//! Entries that were never seen live, or were deleted, expire after a TTL; the table is a
//! generational slab so a stale [`ObjId`] is detected instead of silently naming another object.

mod entry;
mod generations;
mod id;
mod index;
mod interner;
mod owners;
mod slab;
mod span_refs;
mod state_seen;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

pub(crate) use entry::ObjEntry;
use entry::OwnerLink;
use generations::{GenerationChange, UNTIMED_CHANGE_LEAD, new_change};
pub(crate) use generations::GENERATION_HISTORY;
pub(crate) use id::ObjId;
use index::Index;
use interner::Interner;
use owners::{OwnerChain, Owners};
use slab::Slab;
pub(crate) use span_refs::SpanRef;
use state_seen::StateSeen;
use super::model::{EventRecord, ObjectMeta, ObjectRef};
use super::phases::PodTimeline;
use super::time::Timestamp;

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

/// How far a "created" child's creationTimestamp (whole seconds) may lie before the message.
const CREATION_SLACK: Duration = Duration::from_secs(2);

pub(crate) struct ObjectTable {
    entries: Slab<ObjEntry>,
    index: Index,
    /// Candidates for expiry, oldest first: (earliest expiry, id).
    expiry: VecDeque<(Timestamp, ObjId)>,
    /// Live objects in the order they became live: eviction's last resort at the cap.
    live_order: VecDeque<(Timestamp, ObjId)>,
    /// The objects the input being handled has named: never evicted while it is handled.
    working: Vec<ObjId>,
    /// What the entries hold in all, by [`ObjEntry::heap_bytes`], and its cap.
    bytes: usize,
    max_bytes: usize,
    ttl: Duration,
    max_entries: usize,
    pub strings: Interner,
    pub evicted: u64,
}

impl ObjectTable {
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        ObjectTable {
            entries: Slab::default(),
            index: Index::default(),
            expiry: VecDeque::new(),
            live_order: VecDeque::new(),
            working: Vec::new(),
            bytes: 0,
            max_bytes: usize::MAX,
            ttl,
            max_entries,
            strings: Interner::default(),
            evicted: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Caps what the entries hold in bytes too (the entry cap alone applies otherwise).
    pub fn with_byte_cap(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn over_cap(&self) -> bool {
        self.entries.len() >= self.max_entries || self.bytes >= self.max_bytes
    }

    /// Counts an entry again after it changed, and makes room if the table has grown past its
    /// byte cap (a few evictions at most: each call's work stays bounded).
    fn account(&mut self, id: ObjId) {
        let Some(entry) = self.get_mut(id) else {
            return;
        };
        let now = u32::try_from(entry.heap_bytes()).unwrap_or(u32::MAX);
        let before = std::mem::replace(&mut entry.bytes, now);
        self.bytes = self.bytes + now as usize - before as usize;
        for _ in 0..4 {
            if self.bytes <= self.max_bytes {
                break;
            }
            let len = self.entries.len();
            self.evict_one();
            if self.entries.len() == len {
                break;
            }
        }
    }

    pub fn get(&self, id: ObjId) -> Option<&ObjEntry> {
        self.entries.get(id)
    }

    pub fn get_mut(&mut self, id: ObjId) -> Option<&mut ObjEntry> {
        self.entries.get_mut(id)
    }

    fn insert(&mut self, entry: ObjEntry, now: Timestamp) -> ObjId {
        for _ in 0..4 {
            if !self.over_cap() {
                break;
            }
            let len = self.entries.len();
            self.evict_one();
            if self.entries.len() == len {
                break;
            }
        }
        let live = entry.live;
        let id = self.entries.insert(entry);
        self.working_on(id);
        self.account(id);
        if !live {
            self.expiry.push_back((now.saturating_add(self.ttl), id));
        }
        id
    }

    fn remove(&mut self, id: ObjId) {
        let Some(entry) = self.entries.remove(id) else {
            return;
        };
        self.bytes -= entry.bytes as usize;
        self.index.drop_entry(&entry, id);
    }

    /// Makes room when the hard cap is reached: the oldest expiry candidate (a tombstone, an
    /// object known only from events) goes first, even if its TTL has not passed; when there is
    /// none, the live object seen live longest ago (its next watch event brings it back). Objects
    /// touched by the input being handled are spared, so the cap can be passed by the few
    /// objects one input names ([`CAP_SLACK`]). Each call looks at a bounded number of entries.
    fn evict_one(&mut self) {
        for queue in [Queue::Expiry, Queue::Live] {
            let mut spared = Vec::new();
            let mut victim = None;
            for _ in 0..EVICTION_LOOKS {
                let q = match queue {
                    Queue::Expiry => &mut self.expiry,
                    Queue::Live => &mut self.live_order,
                };
                let Some((at, id)) = q.pop_front() else { break };
                match self.get(id) {
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
            if let Some(id) = victim {
                self.remove(id);
                self.evicted += 1;
                return;
            }
        }
    }

    /// Drops entries that are not live and were not touched for the TTL.
    pub fn expire(&mut self, now: Timestamp) {
        while let Some(&(at, id)) = self.expiry.front() {
            if at > now {
                break;
            }
            self.expiry.pop_front();
            let Some(entry) = self.get(id) else { continue };
            if entry.live {
                continue;
            }
            let due = entry.touched.saturating_add(self.ttl);
            if due > now {
                self.expiry.push_back((due, id));
            } else {
                self.remove(id);
            }
        }
    }

    fn lookup_name(&self, kind: &str, namespace: &str, name: &str) -> Option<ObjId> {
        self.index.find_name(&self.entries, kind, namespace, name)
    }

    pub fn lookup_uid(&self, namespace: &str, uid: &str) -> Option<ObjId> {
        self.index.find_uid(&self.entries, namespace, uid)
    }

    /// Finds or creates the entry for an object known by identity only.
    fn resolve(
        &mut self,
        uid: &str,
        kind: &str,
        api_version: &str,
        namespace: &str,
        name: &str,
        now: Timestamp,
    ) -> ObjId {
        if !uid.is_empty()
            && let Some(id) = self.lookup_uid(namespace, uid)
        {
            self.touch(id, now);
            return id;
        }
        if let Some(id) = self.lookup_name(kind, namespace, name) {
            let api_version = self.strings.intern(api_version);
            let entry = self.get_mut(id).expect("looked up");
            match (&entry.uid, uid.is_empty()) {
                // A name-only entry gains its uid.
                (None, false) => {
                    let uid: Arc<str> = Arc::from(uid);
                    entry.uid = Some(uid.clone());
                    entry.touched = entry.touched.max(now);
                    if entry.api_version.is_empty() {
                        entry.api_version = api_version;
                    }
                    self.index.set_uid(namespace, &uid, id);
                    self.working_on(id);
                    return id;
                }
                // Same name, another uid: the name was reused by a new object.
                (Some(existing), false) if **existing != *uid => {}
                _ => {
                    self.touch(id, now);
                    return id;
                }
            }
        }
        let id = self.insert_named(kind, namespace, name, now);
        if !uid.is_empty() {
            let uid: Arc<str> = Arc::from(uid);
            self.index.set_uid(namespace, &uid, id);
            let entry = self.get_mut(id).expect("inserted");
            entry.uid = Some(uid);
        }
        if !api_version.is_empty() {
            let api_version = self.strings.intern(api_version);
            self.get_mut(id).expect("inserted").api_version = api_version;
        }
        id
    }

    /// A new entry known by kind, namespace and name, which the name now resolves to.
    fn insert_named(&mut self, kind: &str, namespace: &str, name: &str, now: Timestamp) -> ObjId {
        let kind_interned = self.strings.intern(kind);
        let semconv = super::attributes::semconv_slot(kind);
        let api_version = self.strings.intern("");
        let namespace_interned = self.strings.intern(namespace);
        let replaced = self.lookup_name(kind, namespace, name);
        let entry = ObjEntry::named(
            kind_interned,
            semconv,
            api_version,
            namespace_interned,
            name,
            replaced,
            now,
        );
        let id = self.insert(entry, now);
        self.index.set_name(kind, namespace, name, id);
        id
    }

    /// Notes an event on a pod for the phases its creation span reports (see `phases.rs`).
    pub fn note_pod_event(&mut self, id: ObjId, event: &EventRecord, at: Timestamp) {
        if self
            .get_mut(id)
            .is_some_and(|entry| entry.note_pod_event(event, at))
        {
            self.account(id);
        }
    }

    /// A pod's timeline, once, for its creation span: later events on it are not noted.
    pub fn take_phases(&mut self, id: ObjId) -> Option<Box<PodTimeline>> {
        let phases = self.get_mut(id)?.take_phases();
        self.account(id);
        phases
    }

    /// A new input (an object, an event, a held event's placement) is being handled: what the
    /// previous one named may be evicted again.
    pub fn begin_input(&mut self) {
        self.working.clear();
    }

    fn working_on(&mut self, id: ObjId) {
        if self.working.len() < 2 * CAP_SLACK && !self.working.contains(&id) {
            self.working.push(id);
        }
    }

    fn touch(&mut self, id: ObjId, now: Timestamp) {
        self.working_on(id);
        if let Some(e) = self.get_mut(id) {
            e.touched = e.touched.max(now);
        }
    }

    pub fn resolve_ref(&mut self, r: &ObjectRef, now: Timestamp) -> ObjId {
        self.resolve(&r.uid, &r.kind, &r.api_version, &r.namespace, &r.name, now)
    }

    /// Finds or creates the entry for a child named in a controller message, as the name was
    /// meant when the message was written (`at`: the latest it can have been): a message that the
    /// child was just created never names an older object that had the same name, and any other
    /// message never names a newer one.
    pub fn resolve_named(
        &mut self,
        kind: &str,
        namespace: &str,
        name: &str,
        at: Timestamp,
        creates: bool,
        now: Timestamp,
    ) -> ObjId {
        if let Some(mut id) = self.lookup_name(kind, namespace, name) {
            let e = self.get(id).expect("looked up");
            if creates {
                let older = e
                    .created
                    .is_some_and(|c| c.saturating_add(CREATION_SLACK) < at);
                if e.deleted || older {
                    return self.insert_named(kind, namespace, name, now);
                }
            } else {
                // Walk back to the holder of the name at `at`.
                while let Some(e) = self.get(id) {
                    let appeared = e.appeared();
                    match e.replaced.filter(|p| self.get(*p).is_some()) {
                        Some(previous) if appeared > at => id = previous,
                        _ => break,
                    }
                }
                self.touch(id, now);
                return id;
            }
        }
        self.resolve("", kind, "", namespace, name, now)
    }

    /// Records an object seen through a watch. Returns its id and whether its generation moved.
    /// `observed` is when this version of the object was seen: a change without a time of its
    /// own happened shortly before that.
    pub fn upsert(&mut self, meta: &ObjectMeta, observed: Timestamp, now: Timestamp) -> ObjId {
        let untimed_change = observed.saturating_sub(UNTIMED_CHANGE_LEAD);
        let id = self.resolve(
            &meta.uid,
            &meta.kind,
            &meta.api_version,
            &meta.namespace,
            &meta.name,
            now,
        );
        // Live from here on, so that resolving its owner below can never evict it.
        let entry = self.get_mut(id).expect("resolved");
        let was_live = std::mem::replace(&mut entry.live, true);
        entry.touched = entry.touched.max(now);
        if !was_live {
            self.live_order.push_back((now, id));
            // Objects deleted or released leave entries behind: compacted, amortised O(1).
            if self.live_order.len() > 2 * self.entries.len() + 64 {
                let entries = &self.entries;
                self.live_order
                    .retain(|&(_, id)| entries.get(id).is_some_and(|e| e.live));
            }
        }
        self.take_identity(id, meta);
        let owner = meta
            .owners
            .iter()
            .find(|o| o.controller)
            .or(meta.owners.first())
            .filter(|o| !o.uid.is_empty())
            .map(|o| {
                let oid = self.resolve(
                    &o.uid,
                    &o.kind,
                    &o.api_version,
                    &meta.namespace,
                    &o.name,
                    now,
                );
                OwnerLink {
                    uid: Box::from(o.uid.as_str()),
                    id: oid,
                }
            });
        let api_version = self.strings.intern(&meta.api_version);
        let previous = self
            .get(id)
            .and_then(|e| e.root.as_ref())
            .and_then(|r| r.changes.last())
            .map(|c| (c.generation, c.time));
        let change = new_change(meta, previous, untimed_change, &mut self.strings);
        let entry = self.get_mut(id).expect("resolved");
        // Once live it is no longer an expiry candidate; its queue entries are skipped on pop.
        entry.live = true;
        entry.deleted = false;
        entry.api_version = api_version;
        entry.generation = meta.generation;
        entry.created = meta.created.or(entry.created);
        entry.touched = entry.touched.max(now);
        if owner.is_some() {
            entry.inferred_owner = None;
            entry.owner_guessed = false;
        }
        entry.owner = owner;
        if entry.owner.is_none() {
            entry
                .root
                .get_or_insert_with(Default::default)
                .observe(meta, change, untimed_change);
        } else {
            entry.root = None;
        }
        self.account(id);
        id
    }

    /// The object's own metadata decides its kind and name: an entry made from a reference (an
    /// event's involved object, an ownerReference) that named this uid with another kind or name
    /// is corrected, so a reference never defines what an object is.
    fn take_identity(&mut self, id: ObjId, meta: &ObjectMeta) {
        let Some(entry) = self.entries.get(id) else { return };
        if *entry.kind == *meta.kind && *entry.name == *meta.name {
            return;
        }
        self.index
            .drop_name(&entry.kind, &entry.namespace, &entry.name, id);
        let kind = self.strings.intern(&meta.kind);
        let entry = self.get_mut(id).expect("present");
        entry.semconv = super::attributes::semconv_slot(&kind);
        entry.kind = kind;
        entry.name = Arc::from(meta.name.as_str());
        self.index
            .set_name(&meta.kind, &meta.namespace, &meta.name, id);
    }

    /// Stops treating the objects of a namespace as live (nothing watches it any more): they
    /// expire like tombstones instead of staying forever.
    pub fn release_namespace(&mut self, namespace: &str, now: Timestamp) {
        let due = now.saturating_add(self.ttl);
        for (id, e) in self.entries.iter_mut() {
            if e.live && &*e.namespace == namespace {
                e.live = false;
                e.touched = now;
                self.expiry.push_back((due, id));
            }
        }
    }

    /// Marks a watched object deleted: it stays resolvable (a tombstone) for the TTL so late
    /// events of it and of its children still find their trace.
    /// An object was deleted (`at`: when that was observed); it stays as a tombstone.
    pub fn delete(&mut self, namespace: &str, uid: &str, at: Timestamp, now: Timestamp) {
        let Some(id) = self.lookup_uid(namespace, uid) else {
            return;
        };
        let due = now.saturating_add(self.ttl);
        let reason = self.strings.intern("Deleted");
        if let Some(e) = self.get_mut(id) {
            e.live = false;
            e.deleted = true;
            e.touched = now;
            if let Some(state) = e.state.as_mut() {
                state.note_deleted(reason, at);
            }
            self.expiry.push_back((due, id));
        }
        self.account(id);
    }

    /// Records what an object's status says; true when that changed what waiting spans can
    /// know: it newly says the object is done (or failed), or moved on to a newer generation.
    pub fn record_state(
        &mut self,
        id: ObjId,
        state: &super::model::ObjectState,
        observed: Timestamp,
    ) -> bool {
        let reason = state
            .outcome
            .as_ref()
            .map(|o| self.strings.intern(&o.reason));
        let Some(entry) = self.get_mut(id) else {
            return false;
        };
        let changed = entry
            .state
            .get_or_insert_with(|| Box::new(StateSeen::new(state.observed_generation)))
            .record(state, reason, observed);
        self.account(id);
        changed
    }

    /// Learns "parent acted on child" from a controller message, unless the child's real
    /// ownerReferences are known.
    pub fn infer_owner(&mut self, child: ObjId, parent: ObjId) {
        self.owners().infer(child, parent);
    }

    /// The controlling owner, re-resolved by uid if the cached id went stale.
    pub fn owner_of(&mut self, id: ObjId) -> Option<ObjId> {
        self.owners().owner_of(id)
    }

    /// The owners of an object, nearest first (the object itself excluded).
    #[cfg(test)]
    pub fn owner_chain(&mut self, id: ObjId) -> Vec<ObjId> {
        self.owners().chain(id, false).to_vec()
    }

    /// The owners that share the object's trace: the chain ends at a run boundary.
    pub fn trace_chain(&mut self, id: ObjId) -> OwnerChain {
        self.owners().chain(id, true)
    }

    /// Whether the object is one run of its owner (a Job of a CronJob): a trace root.
    pub fn is_run(&mut self, id: ObjId) -> bool {
        self.owners().is_run(id)
    }

    /// The top of the trace chain: the object whose change a trace describes.
    pub fn top(&mut self, id: ObjId) -> ObjId {
        self.owners().top(id)
    }

    fn owners(&mut self) -> Owners<'_> {
        Owners::new(&mut self.entries, &self.index)
    }

    /// Whether anything is known of the object's generations (it was seen through a watch).
    pub fn knows_generations(&self, id: ObjId) -> bool {
        self.get(id).is_some_and(|e| {
            e.live || e.deleted || e.root.as_ref().is_some_and(|r| !r.changes.is_empty())
        })
    }

    /// Which generation of a root object was current at `at`.
    pub fn generation_at(&self, id: ObjId, at: Timestamp) -> i64 {
        let Some(entry) = self.get(id) else { return 0 };
        entry
            .root
            .as_ref()
            .and_then(|root| root.generation_at(at))
            .unwrap_or(entry.generation)
    }

    /// A change of a root older than those it shows (from a predecessor's checkpoint): kept in
    /// generation order, within the history's length.
    pub fn add_earlier_change(
        &mut self,
        id: ObjId,
        generation: i64,
        time: Timestamp,
        estimated: bool,
    ) {
        if let Some(root) = self.get_mut(id).and_then(|e| e.root.as_mut()) {
            root.add_earlier_change(generation, time, estimated);
        }
    }

    /// The oldest change of a root this table knows.
    pub fn first_change(&self, id: ObjId) -> Option<&GenerationChange> {
        self.get(id)?.root.as_ref()?.changes.first()
    }

    pub fn change(&self, id: ObjId, generation: i64) -> Option<&GenerationChange> {
        self.get(id)?.root.as_ref()?.change(generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ids::{SpanId, TraceId};
    use crate::engine::model::OwnerRef;

    pub(super) fn meta(
        uid: &str,
        kind: &str,
        name: &str,
        owner: Option<(&str, &str, &str)>,
    ) -> ObjectMeta {
        ObjectMeta {
            uid: uid.into(),
            kind: kind.into(),
            api_version: "v1".into(),
            namespace: "ns".into(),
            name: name.into(),
            generation: 1,
            owners: owner
                .map(|(uid, kind, name)| OwnerRef {
                    kind: kind.into(),
                    api_version: "apps/v1".into(),
                    name: name.into(),
                    uid: uid.into(),
                    controller: true,
                })
                .into_iter()
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn name_only_entry_is_completed_by_its_object() {
        let mut t = ObjectTable::new(Duration::from_secs(60), 100);
        let now = Timestamp::from_unix_secs(10);
        let by_name = t.resolve_named("Pod", "ns", "web-1", now, false, now);
        let upserted = t.upsert(
            &meta("p1", "Pod", "web-1", Some(("rs1", "ReplicaSet", "web"))),
            now,
            now,
        );
        assert_eq!(by_name, upserted);
        assert_eq!(t.lookup_uid("ns", "p1"), Some(by_name));
        let rs = t.lookup_uid("ns", "rs1").expect("owner placeholder");
        assert_eq!(t.owner_chain(by_name), vec![rs]);
        assert_eq!(t.top(by_name), rs);
    }

    #[test]
    fn reused_name_gets_a_new_entry() {
        let mut t = ObjectTable::new(Duration::from_secs(60), 100);
        let now = Timestamp::from_unix_secs(10);
        let old = t.upsert(&meta("p1", "Pod", "web-1", None), now, now);
        let new = t.upsert(&meta("p2", "Pod", "web-1", None), now, now);
        assert_ne!(old, new);
        assert_eq!(t.resolve_named("Pod", "ns", "web-1", now, false, now), new);
    }

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
        assert!(t.live_order.len() <= 2 * t.len() + 64);
    }

    #[test]
    fn creation_message_skips_older_object_with_the_same_name() {
        let mut t = ObjectTable::new(Duration::from_secs(60), 100);
        let old = t.upsert(
            &meta("p1", "Pod", "db-0", None),
            Timestamp::from_unix_secs(0),
            Timestamp::from_unix_secs(0),
        );
        t.delete(
            "ns",
            "p1",
            Timestamp::from_unix_secs(5),
            Timestamp::from_unix_secs(5),
        );
        let at = Timestamp::from_unix_secs(6);
        assert_eq!(
            t.resolve_named("Pod", "ns", "db-0", at, false, at),
            old,
            "a deletion message names the old one"
        );
        let created = t.resolve_named("Pod", "ns", "db-0", at, true, at);
        assert_ne!(created, old, "a creation message names a new object");
        let later = Timestamp::from_unix_secs(20);
        assert_eq!(
            t.resolve_named("Pod", "ns", "db-0", later, false, later),
            created
        );
        assert_eq!(
            t.resolve_named(
                "Pod",
                "ns",
                "db-0",
                Timestamp::from_unix_secs(5),
                false,
                later
            ),
            old,
            "a late message about the old pod names the old pod"
        );
        assert_eq!(
            t.resolve_ref(
                &ObjectRef {
                    kind: "Pod".into(),
                    namespace: "ns".into(),
                    name: "db-0".into(),
                    uid: "p2".into(),
                    ..Default::default()
                },
                at
            ),
            created
        );
    }

}

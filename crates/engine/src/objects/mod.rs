//! The object table: what the engine remembers about Kubernetes objects.
//!
//! Objects come from three places: watches (upserts with full metadata), events (the involved
//! object, often the first sign of it) and controller messages (a child named only by kind and
//! name). All three resolve to one entry, found by uid when known and by kind/namespace/name
//! otherwise, so an entry created from a message is completed when the object itself shows up.
//!
//! Entries that were never seen live, or were deleted, expire after a TTL; the table is a
//! generational slab so a stale [`ObjId`] is detected instead of silently naming another object.
//!
//! This file is the facade: it resolves what an input names to an entry and keeps the counts.
//! What it decides with, leaves first (a file uses only those above it):
//! - `id.rs`: [`ObjId`]; `interner.rs`: shared strings; `semconv.rs`: a kind's attribute names;
//!   `span_refs.rs`: references to spans about an object.
//! - `generations.rs`: a root's spec changes; `state_seen.rs`: what its status has said.
//! - `slab.rs`: the generational slab; `entry.rs`: [`ObjEntry`], one object as kept.
//! - `index.rs`: finding an entry by uid or name; `owners.rs`: owner chains and trace tops;
//!   `eviction.rs`: which entries expire or are evicted, and when; `departed.rs`: what is kept
//!   of a trace root that went while its traces are known.

mod departed;
mod entry;
mod eviction;
mod generations;
mod index;
mod interner;
mod owners;
mod semconv;
mod slab;
mod span_refs;
mod state_seen;

use std::sync::Arc;
use std::time::Duration;

pub(crate) use super::handles::ObjId;
use super::model::{EventRecord, ObjectMeta, ObjectRef};
use super::phases::PodTimeline;
use super::time::Timestamp;
use departed::DepartedRoots;
pub(crate) use departed::RootIdentity;
pub(crate) use entry::ObjEntry;
use entry::OwnerLink;
pub use eviction::CAP_SLACK;
use eviction::Eviction;
pub(crate) use generations::GENERATION_HISTORY;
use generations::{GenerationChange, UNTIMED_CHANGE_LEAD, new_change};
use index::Index;
use interner::Interner;
use owners::{OwnerChain, Owners};
use semconv::semconv_slot;
pub(crate) use semconv::{NAMESPACE_BIT, NODE_BIT, SEMCONV};
use slab::Slab;
pub(crate) use span_refs::SpanRef;
use state_seen::StateSeen;

/// How far a "created" child's creationTimestamp (whole seconds) may lie before the message.
const CREATION_SLACK: Duration = Duration::from_secs(2);

pub(crate) struct ObjectTable {
    entries: Slab<ObjEntry>,
    index: Index,
    eviction: Eviction,
    departed: DepartedRoots,
    /// What the entries hold in all, by [`ObjEntry::heap_bytes`], and its cap.
    bytes: usize,
    max_bytes: usize,
    max_entries: usize,
    pub strings: Interner,
    pub evicted: u64,
}

impl ObjectTable {
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        ObjectTable {
            entries: Slab::default(),
            index: Index::default(),
            eviction: Eviction::new(ttl),
            departed: DepartedRoots::default(),
            bytes: 0,
            max_bytes: usize::MAX,
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

    /// What is kept of trace roots whose entries went (see `departed.rs`): at most an eighth of
    /// the byte cap, on top of [`Self::bytes`].
    pub fn departed_bytes(&self) -> usize {
        self.departed.bytes()
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
        self.eviction.working_on(id);
        self.account(id);
        if !live {
            self.eviction.may_expire(id, now);
        }
        id
    }

    fn remove(&mut self, id: ObjId) {
        let Some(entry) = self.entries.remove(id) else {
            return;
        };
        self.bytes -= entry.bytes as usize;
        self.index.drop_entry(&entry, id);
        if entry.pins > 0 {
            // Past the caps, by an eighth of them at most: counted within them, the kept roots
            // would crowd out the objects their traces are still being built from.
            let pins = entry.pins;
            let (max_len, max_bytes) = (self.max_entries / 8, self.max_bytes / 8);
            self.departed.keep(id, entry, pins, max_len, max_bytes);
        }
    }

    /// A trace rooted at the object starts (or moves to it): if the entry must go while the trace
    /// is known, its identity and spec changes are kept for it.
    pub fn pin_root(&mut self, id: ObjId) {
        match self.entries.get_mut(id) {
            Some(entry) => entry.pins = entry.pins.saturating_add(1),
            None => self.departed.pin(id),
        }
    }

    /// A trace rooted at the object is forgotten (or moves away from it).
    pub fn unpin_root(&mut self, id: ObjId) {
        match self.entries.get_mut(id) {
            Some(entry) => entry.pins = entry.pins.saturating_sub(1),
            None => self.departed.unpin(id),
        }
    }

    /// The owner an object names whose entry went while traces rooted at it are known (a deleted
    /// Deployment, evicted, above its ReplicaSet): its kept identity.
    pub fn departed_owner(&self, id: ObjId) -> Option<RootIdentity<'_>> {
        let owner = self.get(id)?.owner.as_ref()?.id;
        self.departed.identity(owner)
    }

    /// A trace root's identity, whether its entry is still here or went while the trace is known.
    pub fn root_identity(&self, id: ObjId) -> Option<RootIdentity<'_>> {
        match self.entries.get(id) {
            Some(entry) => Some(RootIdentity::of(entry)),
            None => self.departed.identity(id),
        }
    }

    /// Makes room when the hard cap is reached (see [`Eviction::victim`]).
    fn evict_one(&mut self) {
        if let Some(id) = self.eviction.victim(&self.entries) {
            self.remove(id);
            self.evicted += 1;
        }
    }

    /// Drops entries that are not live and were not touched for the TTL.
    pub fn expire(&mut self, now: Timestamp) {
        while let Some(id) = self.eviction.next_expired(&self.entries, now) {
            self.remove(id);
        }
    }

    fn lookup_name(&self, kind: &str, namespace: &str, name: &str) -> Option<ObjId> {
        self.index.find_name(&self.entries, kind, namespace, name)
    }

    /// The object of that kind and name, if it is known: a lookup that creates no entry (names
    /// in a message are not evidence that an object exists).
    pub fn find_named(&self, kind: &str, namespace: &str, name: &str) -> Option<ObjId> {
        self.lookup_name(kind, namespace, name)
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
                    self.eviction.working_on(id);
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
        let semconv = semconv_slot(kind);
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
        self.eviction.begin_input();
    }

    fn touch(&mut self, id: ObjId, now: Timestamp) {
        self.eviction.working_on(id);
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
                // A deleted entry created about then is the one the message names: under load
                // "Created pod: X" comes after X was already deleted again. Created well before
                // (or at an unknown time, and gone): the name was taken again.
                if older || (e.deleted && e.created.is_none()) {
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
            self.eviction.became_live(id, now, &self.entries);
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
        entry.deleting = meta.deleting.or(entry.deleting);
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
        let Some(entry) = self.entries.get(id) else {
            return;
        };
        if *entry.kind == *meta.kind && *entry.name == *meta.name {
            return;
        }
        self.index
            .drop_name(&entry.kind, &entry.namespace, &entry.name, id);
        let kind = self.strings.intern(&meta.kind);
        let entry = self.get_mut(id).expect("present");
        entry.semconv = semconv_slot(&kind);
        entry.kind = kind;
        entry.name = Arc::from(meta.name.as_str());
        self.index
            .set_name(&meta.kind, &meta.namespace, &meta.name, id);
    }

    /// Stops treating the objects of a namespace as live (nothing watches it any more): they
    /// expire like tombstones instead of staying forever.
    pub fn release_namespace(&mut self, namespace: &str, now: Timestamp) {
        for (id, e) in self.entries.iter_mut() {
            if e.live && &*e.namespace == namespace {
                e.live = false;
                e.touched = now;
                self.eviction.may_expire(id, now);
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
        let reason = self.strings.intern("Deleted");
        if let Some(e) = self.get_mut(id) {
            e.live = false;
            e.deleted = true;
            e.deleting = e.deleting.or(Some(at));
            e.touched = now;
            if let Some(state) = e.state.as_mut() {
                state.note_deleted(reason, at);
            }
            self.eviction.may_expire(id, now);
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

    /// A root's spec change of that generation; of a departed root too, for its traces.
    pub fn change(&self, id: ObjId, generation: i64) -> Option<&GenerationChange> {
        match self.get(id) {
            Some(entry) => entry.root.as_ref()?.change(generation),
            None => self.departed.change(id, generation),
        }
    }

    /// What an HPA scales, by kind and name in its namespace, when its spec was seen.
    pub fn scale_target(&self, id: ObjId) -> Option<(&str, &str)> {
        let target = self.get(id)?.root.as_ref()?.scale_target.as_deref()?;
        Some((&*target.0, &*target.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::OwnerRef;

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

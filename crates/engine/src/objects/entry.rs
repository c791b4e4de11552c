//! One object as the table keeps it: its identity, owners, spec changes (for a root), status,
//! the spans about it and, for a pod, its way to Ready.

use std::sync::Arc;
use std::time::Duration;

use super::generations::RootInfo;
use super::slab::Slot;
use super::span_refs::{RecentSpans, SpanRef};
use super::state_seen::StateSeen;
use crate::handles::ObjId;
use crate::model::{EventRecord, container_name};
use crate::phases::{PHASES_WITHIN, PodTimeline, is_phase_event};
use crate::rules::Action;
use crate::time::Timestamp;

/// An owner named by the object's ownerReferences: its uid, and the entry it resolved to (looked
/// up again by uid when that entry is gone).
#[derive(Debug)]
pub(super) struct OwnerLink {
    pub(super) uid: Box<str>,
    pub(super) id: ObjId,
}

#[derive(Debug)]
pub(crate) struct ObjEntry {
    pub uid: Option<Arc<str>>,
    pub kind: Arc<str>,
    /// Which semantic-convention attributes name this kind (looked up once, used per span).
    pub semconv: Option<u8>,
    pub api_version: Arc<str>,
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    pub generation: i64,
    pub(super) owner: Option<OwnerLink>,
    /// An owner learned from a controller's message ("Created pod: X") or, failing that, from
    /// the object's name, used while the object's own ownerReferences are unknown.
    pub(super) inferred_owner: Option<ObjId>,
    /// `inferred_owner` is only a guess from the name (see `naming.rs`).
    pub owner_guessed: bool,
    pub root: Option<Box<RootInfo>>,
    pub created: Option<Timestamp>,
    /// When its deletion was asked for (`deletionTimestamp`), or when it was seen deleted.
    pub deleting: Option<Timestamp>,
    pub node: Option<Arc<str>>,
    /// Seen through a watch and not deleted: such entries never expire.
    pub live: bool,
    /// Deleted: kept as a tombstone until the TTL passes.
    pub deleted: bool,
    pub touched: Timestamp,
    /// Recent spans whose involved object this is (each ends when the next one starts).
    pub spans_on: RecentSpans,
    /// The parent the previous event on this object was placed under: later events are siblings.
    pub anchor: Option<SpanRef>,
    /// Recent spans of controllers that named this object as the child they acted on.
    pub acted_on: RecentSpans,
    /// Which kinds of action ([`Action`] bits) controllers announced on it.
    pub announced: u8,
    /// Pods its owner's scale-ups told it to create that no `Created pod` has claimed yet; `None`
    /// until a scale-up says how many, and for good once one did not (see
    /// [`crate::rules::scale_up_count`]).
    pub creations_due: Option<u32>,
    /// The object that had this name before (a StatefulSet pod replaced by a new one).
    pub(super) replaced: Option<ObjId>,
    /// When the engine first heard of it.
    pub(super) first_seen: Timestamp,
    /// Its progress, for objects whose status is read (see
    /// [`crate::model::ObjectState`]).
    pub state: Option<Box<StateSeen>>,
    /// A pod's way to Ready as its events told it, until its creation span reports it.
    phases: Option<Box<PodTimeline>>,
    /// The creation span has reported the phases: later events are not noted.
    phases_reported: bool,
    /// What the entry holds, as last counted ([`ObjEntry::heap_bytes`]).
    pub(super) bytes: u32,
    /// Traces the engine knows that are rooted at it: if it must go, what they read of it is
    /// kept (see `departed.rs`). Saturating: past 65,535 traces of one root, what is kept of
    /// it may go before the last of them.
    pub(super) pins: u16,
}

impl ObjEntry {
    /// A new entry known by kind, namespace and name only (strings interned by the caller).
    pub(super) fn named(
        kind: Arc<str>,
        semconv: Option<u8>,
        api_version: Arc<str>,
        namespace: Arc<str>,
        name: &str,
        replaced: Option<ObjId>,
        now: Timestamp,
    ) -> Self {
        ObjEntry {
            uid: None,
            kind,
            semconv,
            api_version,
            namespace,
            name: Arc::from(name),
            generation: 0,
            owner: None,
            inferred_owner: None,
            owner_guessed: false,
            root: None,
            created: None,
            deleting: None,
            node: None,
            live: false,
            deleted: false,
            touched: now,
            spans_on: RecentSpans::default(),
            anchor: None,
            acted_on: RecentSpans::default(),
            announced: 0,
            creations_due: None,
            replaced,
            first_seen: now,
            state: None,
            phases: None,
            phases_reported: false,
            bytes: 0,
            pins: 0,
        }
    }

    /// The best estimate of when the object came to be: the controller's announcement of its
    /// creation, else the earlier of its first sighting and the end of its creation second.
    pub(super) fn appeared(&self) -> Timestamp {
        if self.announced & Action::Create.bit() != 0
            && let Some(first) = self.acted_on.iter().map(|r| r.start).min()
        {
            return first;
        }
        match self.created {
            Some(c) => c
                .saturating_add(Duration::from_secs(1))
                .min(self.first_seen),
            None => self.first_seen,
        }
    }

    /// The entry's own memory: its slot, index entries and the strings only it holds (kinds,
    /// namespaces and managers are interned and shared, so not counted). What the object byte cap
    /// counts; strings are bounded by `limits`, which `eventspan::wire` applies.
    pub(super) fn heap_bytes(&self) -> usize {
        // Its by_uid and by_name entries with the maps' slack, and its places in the expiry and
        // live queues: measured with the memory benchmark, so the count matches what is live.
        const INDEX: usize = 200;
        let root = self.root.as_ref().map_or(0, |r| r.heap_bytes());
        let state = self.state.as_ref().map_or(0, |st| st.heap_bytes());
        std::mem::size_of::<Slot<ObjEntry>>()
            + INDEX
            + self.name.len()
            + self.uid.as_ref().map_or(0, |u| u.len())
            + root
            + state
            + self.phases.as_ref().map_or(0, |p| p.heap_bytes())
    }

    pub fn has_owner(&self) -> bool {
        self.owner.is_some() || self.inferred_owner.is_some()
    }

    /// Notes an event on a pod for the phases its creation span reports (see `phases.rs`);
    /// false when it is none of those (or comes too late), so nothing changed.
    pub(super) fn note_pod_event(&mut self, event: &EventRecord, at: Timestamp) -> bool {
        let recent = self
            .created
            .is_none_or(|created| at.since(created) <= PHASES_WITHIN);
        if &*self.kind != "Pod" || self.phases_reported || !recent || !is_phase_event(&event.reason)
        {
            return false;
        }
        let container = container_name(&event.involved.field_path);
        self.phases
            .get_or_insert_default()
            .note(&event.reason, &event.message, container, at);
        true
    }

    /// The pod's timeline, once, for its creation span: later events on it are not noted.
    pub(super) fn take_phases(&mut self) -> Option<Box<PodTimeline>> {
        self.phases_reported = true;
        self.phases.take()
    }
}

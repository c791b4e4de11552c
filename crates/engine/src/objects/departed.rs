//! What the table keeps of a trace root it had to drop (evicted at the cap, or expired) while the
//! engine still knows traces rooted at it: the root's identity and spec changes, so those traces'
//! spans still name their root's kind, name and change. Only the traces' roots are kept
//! ([`super::ObjectTable::pin_root`]), each until its last trace is forgotten, within a budget
//! of its own (an eighth of the table's caps, on top of them): past it the oldest go, and their
//! traces' roots are named as unknown.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::entry::ObjEntry;
use super::generations::{GenerationChange, Labels, RootInfo};
use crate::handles::ObjId;

/// A trace root's identity, from its entry or from what was kept when the entry went.
pub(crate) struct RootIdentity<'a> {
    pub kind: &'a Arc<str>,
    /// Which semantic-convention attributes name its kind.
    pub semconv: Option<u8>,
    pub namespace: &'a Arc<str>,
    pub api_version: &'a Arc<str>,
    pub name: &'a Arc<str>,
    pub uid: Option<&'a Arc<str>>,
    pub labels: Option<&'a Labels>,
}

impl<'a> RootIdentity<'a> {
    pub(super) fn of(entry: &'a ObjEntry) -> Self {
        RootIdentity {
            kind: &entry.kind,
            semconv: entry.semconv,
            namespace: &entry.namespace,
            api_version: &entry.api_version,
            name: &entry.name,
            uid: entry.uid.as_ref(),
            labels: entry.root.as_ref().map(|r| &r.labels),
        }
    }
}

struct Departed {
    kind: Arc<str>,
    semconv: Option<u8>,
    namespace: Arc<str>,
    api_version: Arc<str>,
    name: Arc<str>,
    uid: Option<Arc<str>>,
    /// Its labels and spec changes only: what traces read of a root.
    root: RootInfo,
    /// Traces still rooted at it.
    pins: u16,
    bytes: usize,
}

#[derive(Default)]
pub(super) struct DepartedRoots {
    by_id: HashMap<ObjId, Departed>,
    /// Oldest first; ids already gone are skipped (and compacted away).
    order: VecDeque<ObjId>,
    bytes: usize,
}

impl DepartedRoots {
    /// What the kept roots hold.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Keeps what traces read of a removed entry rooted by `pins` traces (none: nothing kept).
    /// Then drops the oldest kept roots while there are more than `max_len` or they hold more
    /// than `max_bytes`.
    pub(super) fn keep(
        &mut self,
        id: ObjId,
        entry: ObjEntry,
        pins: u16,
        max_len: usize,
        max_bytes: usize,
    ) {
        if pins == 0 {
            return;
        }
        // A root known only from its events has no root information: its identity is kept.
        let root = entry.root.map_or_else(RootInfo::default, |root| RootInfo {
            labels: root.labels,
            changes: root.changes,
            ..RootInfo::default()
        });
        // Its map slot and order place (as the entry's index estimate), its own strings (kinds and
        // versions are interned) and its root information.
        let bytes = std::mem::size_of::<(ObjId, Departed)>()
            + 64
            + entry.name.len()
            + entry.uid.as_ref().map_or(0, |u| u.len())
            + root.heap_bytes();
        let departed = Departed {
            kind: entry.kind,
            semconv: entry.semconv,
            namespace: entry.namespace,
            api_version: entry.api_version,
            name: entry.name,
            uid: entry.uid,
            root,
            pins,
            bytes,
        };
        self.bytes += bytes;
        if let Some(old) = self.by_id.insert(id, departed) {
            self.bytes -= old.bytes;
        }
        self.order.push_back(id);
        while self.by_id.len() > max_len || self.bytes > max_bytes {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.drop_root(oldest);
        }
        if self.order.len() > 2 * self.by_id.len() + 64 {
            let by_id = &self.by_id;
            self.order.retain(|id| by_id.contains_key(id));
        }
    }

    fn drop_root(&mut self, id: ObjId) {
        if let Some(gone) = self.by_id.remove(&id) {
            self.bytes -= gone.bytes;
        }
    }

    /// A trace rooted at a kept root is forgotten: the root goes with its last trace.
    pub(super) fn unpin(&mut self, id: ObjId) {
        let Some(departed) = self.by_id.get_mut(&id) else {
            return;
        };
        departed.pins = departed.pins.saturating_sub(1);
        if departed.pins == 0 {
            self.drop_root(id);
        }
    }

    /// A trace rooted at a kept root starts, or moves to it.
    pub(super) fn pin(&mut self, id: ObjId) {
        if let Some(departed) = self.by_id.get_mut(&id) {
            departed.pins = departed.pins.saturating_add(1);
        }
    }

    pub(super) fn identity(&self, id: ObjId) -> Option<RootIdentity<'_>> {
        let d = self.by_id.get(&id)?;
        Some(RootIdentity {
            kind: &d.kind,
            semconv: d.semconv,
            namespace: &d.namespace,
            api_version: &d.api_version,
            name: &d.name,
            uid: d.uid.as_ref(),
            labels: Some(&d.root.labels),
        })
    }

    pub(super) fn change(&self, id: ObjId, generation: i64) -> Option<&GenerationChange> {
        self.by_id.get(&id)?.root.change(generation)
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::ObjectTable;
    use super::super::tests::meta;
    use crate::time::Timestamp;

    #[test]
    fn a_pinned_root_evicted_at_the_cap_keeps_its_identity_until_unpinned() {
        let at = Timestamp::from_unix_secs;
        let mut t = ObjectTable::new(Duration::from_secs(600), 16);
        let root = t.upsert(&meta("d1", "Deployment", "web", None), at(0), at(0));
        let unpinned = t.upsert(&meta("d2", "Deployment", "api", None), at(0), at(0));
        t.pin_root(root);
        t.pin_root(root);
        for i in 0..40 {
            t.begin_input();
            let name = format!("p{i}");
            t.upsert(&meta(&name, "Pod", &name, None), at(1 + i), at(1 + i));
        }
        assert!(
            t.get(root).is_none() && t.get(unpinned).is_none(),
            "evicted"
        );
        assert!(
            t.root_identity(unpinned).is_none(),
            "no trace: nothing kept"
        );
        let kept = t.root_identity(root).expect("kept for its traces");
        assert_eq!((&**kept.kind, &**kept.name), ("Deployment", "web"));
        assert_eq!(kept.uid.map(|u| &**u), Some("d1"));
        assert_eq!(t.change(root, 1).map(|c| c.generation), Some(1));
        assert!(t.departed_bytes() > 0, "counted");
        t.unpin_root(root);
        assert!(t.root_identity(root).is_some(), "one trace is still known");
        t.unpin_root(root);
        assert!(t.root_identity(root).is_none(), "gone with its last trace");
        assert_eq!((t.departed.len(), t.departed_bytes()), (0, 0));
    }

    #[test]
    fn kept_roots_stay_within_an_eighth_of_the_cap() {
        let at = Timestamp::from_unix_secs;
        let mut t = ObjectTable::new(Duration::from_secs(600), 64);
        for i in 0..500 {
            t.begin_input();
            let name = format!("d{i}");
            let id = t.upsert(&meta(&name, "Deployment", &name, None), at(i), at(i));
            t.pin_root(id);
            assert!(t.departed.len() <= 64 / 8, "{} kept", t.departed.len());
            assert!(t.len() <= 64 + super::super::CAP_SLACK);
        }
        assert_eq!(t.departed.len(), 8, "the newest evicted are kept");
        // And within an eighth of the byte cap.
        let mut t = ObjectTable::new(Duration::from_secs(600), 10_000).with_byte_cap(32 << 10);
        for i in 0..2_000 {
            t.begin_input();
            let name = format!("d{i}");
            let id = t.upsert(&meta(&name, "Deployment", &name, None), at(i), at(i));
            t.pin_root(id);
            assert!(t.departed_bytes() <= (32 << 10) / 8);
        }
        assert!(t.departed.len() > 5, "{} kept", t.departed.len());
    }
}

//! How an object is found: by (namespace, uid) when its uid is known, by (kind, namespace, name)
//! otherwise. The maps hold hashes; a hit is confirmed against the entry it points to.

use rustc_hash::FxHashMap;
use xxhash_rust::xxh3::xxh3_128;

use super::entry::ObjEntry;
use super::slab::Slab;
use crate::handles::ObjId;
use crate::ids::with_joined;

#[derive(Default)]
pub(super) struct Index {
    by_uid: FxHashMap<u128, ObjId>,
    by_name: FxHashMap<u128, ObjId>,
}

/// Objects are found by (namespace, uid), never by uid alone: a reference in one namespace that
/// carries another namespace's uid (a hostile ownerReference, an event's `related`) names an
/// entry of its own and never reaches the other namespace's object.
fn uid_key(namespace: &str, uid: &str) -> u128 {
    with_joined(&[namespace.as_bytes(), b"/", uid.as_bytes()], xxh3_128)
}

fn name_key(kind: &str, namespace: &str, name: &str) -> u128 {
    with_joined(
        &[
            kind.as_bytes(),
            b"/",
            namespace.as_bytes(),
            b"/",
            name.as_bytes(),
        ],
        xxh3_128,
    )
}

impl Index {
    pub(super) fn find_uid(
        &self,
        entries: &Slab<ObjEntry>,
        namespace: &str,
        uid: &str,
    ) -> Option<ObjId> {
        let id = *self.by_uid.get(&uid_key(namespace, uid))?;
        let e = entries.get(id)?;
        (e.uid.as_deref() == Some(uid) && &*e.namespace == namespace).then_some(id)
    }

    pub(super) fn find_name(
        &self,
        entries: &Slab<ObjEntry>,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Option<ObjId> {
        let id = *self.by_name.get(&name_key(kind, namespace, name))?;
        let e = entries.get(id)?;
        (&*e.kind == kind && &*e.namespace == namespace && &*e.name == name).then_some(id)
    }

    /// The uid now finds `id`.
    pub(super) fn set_uid(&mut self, namespace: &str, uid: &str, id: ObjId) {
        self.by_uid.insert(uid_key(namespace, uid), id);
    }

    /// The name now finds `id` (a newer object of the same name replaces the older one here).
    pub(super) fn set_name(&mut self, kind: &str, namespace: &str, name: &str, id: ObjId) {
        self.by_name.insert(name_key(kind, namespace, name), id);
    }

    /// The name finds `id` no longer (and nothing, unless another entry took it since).
    pub(super) fn drop_name(&mut self, kind: &str, namespace: &str, name: &str, id: ObjId) {
        let key = name_key(kind, namespace, name);
        if self.by_name.get(&key) == Some(&id) {
            self.by_name.remove(&key);
        }
    }

    /// The entry `id` held is gone: neither its uid nor its name finds it.
    pub(super) fn drop_entry(&mut self, entry: &ObjEntry, id: ObjId) {
        if let Some(uid) = &entry.uid {
            let key = uid_key(&entry.namespace, uid);
            if self.by_uid.get(&key) == Some(&id) {
                self.by_uid.remove(&key);
            }
        }
        self.drop_name(&entry.kind, &entry.namespace, &entry.name, id);
    }
}

//! The `k8s.*` attributes that name a span's object and its owners, and a cache of them.
//!
//! Names follow the OpenTelemetry semantic conventions for Kubernetes (which kind has which
//! names is `objects/semconv.rs`: each entry keeps its kind's row). Every span on a pod
//! carries the same dozen attributes (the pod, its ReplicaSet, its Deployment, namespace and
//! node), so they are built once per object and shared by its spans until the object or an
//! owner changes in a way that shows in them.

use std::sync::Arc;

use super::model::{Attributes, SharedAttributes};
use super::objects::{
    NAMESPACE_BIT, NODE_BIT, ObjEntry, ObjId, ObjectTable, RootIdentity, SEMCONV,
};

/// Not a kind: marks that an owner in the chain was guessed from a name.
const GUESSED_BIT: u32 = 31;
/// Owner chains are walked at most this deep for attributes.
const MAX_CHAIN: usize = 16;
/// Chains up to this long are cached (a pod's is 3: pod, ReplicaSet, Deployment).
const CACHED_CHAIN: usize = 4;
/// Cache slots, chosen by object slot. A pod's spans settle over several emission checks with
/// other rollouts' in between: on the 200-rollout benchmark (4,600 objects) 43% of lookups
/// missed with 512 slots, 14% with 4,096 (4,639 misses: about one per object). About 400 KiB,
/// whatever the cluster's size.
const CACHE_SLOTS: usize = 4096;

/// Adds `k8s.<kind>.name/uid` of an object unless a previous object of the same kind did.
/// `seen` says which kinds (and namespace, node, guess) are already named.
pub(crate) fn push_object(obj: &ObjEntry, seen: &mut u32, attrs: &mut Attributes) {
    push_named(obj.semconv, &obj.name, obj.uid.as_ref(), seen, attrs);
}

fn push_named(
    semconv: Option<u8>,
    name: &Arc<str>,
    uid: Option<&Arc<str>>,
    seen: &mut u32,
    attrs: &mut Attributes,
) {
    let Some(i) = semconv.map(usize::from) else {
        return;
    };
    if *seen & (1 << i) != 0 {
        return;
    }
    *seen |= 1 << i;
    let (_, name_key, uid_key) = SEMCONV[i];
    attrs.push((name_key, name.into()));
    if let Some(uid) = uid {
        attrs.push((uid_key, uid.into()));
    }
}

/// A trace root's attributes after its entry went (see `objects/departed.rs`): its namespace
/// and `k8s.<kind>.name/uid`. Not cached: only its trace's few late spans ask.
fn departed_root_attributes(root: &RootIdentity<'_>) -> (SharedAttributes, u32) {
    let mut attrs = Attributes::with_capacity(3);
    let mut seen = 0u32;
    if !root.namespace.is_empty() {
        seen |= 1 << NAMESPACE_BIT;
        attrs.push(("k8s.namespace.name", root.namespace.into()));
    }
    push_named(root.semconv, root.name, root.uid, &mut seen, &mut attrs);
    (attrs.into(), seen)
}

/// One object of an owner chain as its attributes see it. Kind, namespace and name never change
/// for an [`ObjId`]; its uid is learned once, its node once, and its owner may turn out to have
/// been guessed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Link {
    id: ObjId,
    /// The interned node name's address (interned strings live as long as the table), with
    /// bit 0 set once the uid is known and bit 1 when the owner is a guess: addresses of
    /// `Arc<str>` contents are 8-byte aligned.
    state: usize,
}

impl Link {
    fn of(id: ObjId, obj: &ObjEntry) -> Link {
        let node = obj
            .node
            .as_ref()
            .map_or(0, |n| Arc::as_ptr(n) as *const u8 as usize);
        Link {
            id,
            state: node | usize::from(obj.uid.is_some()) | usize::from(obj.owner_guessed) << 1,
        }
    }
}

/// An object and its owners, nearest first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Chain {
    links: [Link; MAX_CHAIN],
    len: usize,
}

impl Chain {
    fn of(objects: &mut ObjectTable, id: ObjId) -> Chain {
        let mut chain = Chain::default();
        let mut current = id;
        loop {
            // Finding the owner may guess it from the name, which shows in the link.
            let owner = objects.owner_of(current).filter(|o| *o != id);
            let Some(obj) = objects.get(current) else {
                break;
            };
            chain.links[chain.len] = Link::of(current, obj);
            chain.len += 1;
            match owner {
                Some(owner) if chain.len < MAX_CHAIN => current = owner,
                _ => break,
            }
        }
        chain
    }

    fn links(&self) -> &[Link] {
        &self.links[..self.len]
    }

    /// `k8s.<kind>.name/uid` of each object, the namespace, the node, and whether an owner was
    /// guessed; and which of those were named.
    fn attributes(&self, objects: &ObjectTable) -> (Attributes, u32) {
        let mut attrs = Attributes::with_capacity(8);
        let mut seen = 0u32;
        for obj in self.links().iter().filter_map(|l| objects.get(l.id)) {
            if seen & (1 << NAMESPACE_BIT) == 0 && !obj.namespace.is_empty() {
                seen |= 1 << NAMESPACE_BIT;
                attrs.push(("k8s.namespace.name", (&obj.namespace).into()));
            }
            push_object(obj, &mut seen, &mut attrs);
            if obj.owner_guessed && seen & (1 << GUESSED_BIT) == 0 {
                seen |= 1 << GUESSED_BIT;
                attrs.push(("eventspan.owner.guessed_from_name", true.into()));
            }
            if let Some(node) = obj.node.as_ref().filter(|_| seen & (1 << NODE_BIT) == 0) {
                seen |= 1 << NODE_BIT;
                attrs.push(("k8s.node.name", node.into()));
            }
        }
        // The chain ends below a root whose entry went while its traces are known: named from
        // what was kept of it.
        if let Some(top) = self
            .links()
            .last()
            .and_then(|l| objects.departed_owner(l.id))
        {
            push_named(top.semconv, top.name, top.uid, &mut seen, &mut attrs);
        }
        (attrs, seen)
    }
}

struct Cached {
    links: [Link; CACHED_CHAIN],
    len: usize,
    seen: u32,
    attrs: SharedAttributes,
}

impl Cached {
    /// Whether `id`'s chain is still the cached one: walked as [`Chain::of`] walks it, but only
    /// as far as the cached chain goes.
    fn matches(&self, objects: &mut ObjectTable, id: ObjId) -> bool {
        let mut current = Some(id);
        for link in &self.links[..self.len] {
            let Some(oid) = current else {
                return false;
            };
            current = objects.owner_of(oid).filter(|o| *o != id);
            match objects.get(oid) {
                Some(obj) if Link::of(oid, obj) == *link => {}
                _ => return false,
            }
        }
        current.is_none_or(|o| objects.get(o).is_none())
    }
}

/// The attributes of recently emitted objects' chains, by object slot.
pub(crate) struct AttributeCache {
    slots: Box<[Option<Cached>]>,
}

impl Default for AttributeCache {
    fn default() -> Self {
        AttributeCache {
            slots: (0..CACHE_SLOTS).map(|_| None).collect(),
        }
    }
}

impl AttributeCache {
    /// The attributes naming an object and every owner above it, and which kinds they named
    /// (so that a caller adding more objects does not repeat them).
    pub fn object_attributes(
        &mut self,
        objects: &mut ObjectTable,
        id: ObjId,
    ) -> (SharedAttributes, u32) {
        if objects.get(id).is_none()
            && let Some(root) = objects.root_identity(id)
        {
            return departed_root_attributes(&root);
        }
        let slot = &mut self.slots[id.index() % CACHE_SLOTS];
        if let Some(hit) = slot.as_ref().filter(|c| c.matches(objects, id)) {
            return (hit.attrs.clone(), hit.seen);
        }
        let chain = Chain::of(objects, id);
        let (attrs, seen) = chain.attributes(objects);
        let attrs: SharedAttributes = attrs.into();
        if chain.len <= CACHED_CHAIN {
            let mut links = [Link::default(); CACHED_CHAIN];
            links[..chain.len].copy_from_slice(chain.links());
            *slot = Some(Cached {
                links,
                len: chain.len,
                seen,
                attrs: attrs.clone(),
            });
        }
        (attrs, seen)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::{AttrRef, ObjectMeta};
    use crate::time::Timestamp;

    fn names(attrs: &SharedAttributes) -> Vec<(&'static str, String)> {
        attrs
            .iter()
            .map(|(k, v)| {
                let v = match AttrRef::from(v) {
                    AttrRef::Str(s) => s.to_string(),
                    other => format!("{other:?}"),
                };
                (*k, v)
            })
            .collect()
    }

    /// What an uncached walk gives: the cache must always agree with it.
    fn uncached(objects: &mut ObjectTable, id: ObjId) -> Vec<(&'static str, String)> {
        let (attrs, _) = Chain::of(objects, id).attributes(objects);
        names(&attrs.into())
    }

    #[test]
    fn shared_until_the_object_or_an_owner_changes() {
        let mut objects = ObjectTable::new(Duration::from_secs(600), 1000);
        let mut cache = AttributeCache::default();
        let now = Timestamp::from_unix_secs(100);
        let pod = objects.resolve_named("Pod", "ns", "web-5d4f8-x2x", now, false, now);
        let rs = objects.resolve_named("ReplicaSet", "ns", "web-5d4f8", now, false, now);

        let (first, _) = cache.object_attributes(&mut objects, pod);
        let (again, _) = cache.object_attributes(&mut objects, pod);
        assert!(
            Arc::ptr_eq(&first, &again),
            "unchanged: the same attributes"
        );

        // Each change shows at once: an owner learned from "Created pod: X", a uid from the
        // pod's watch event, a node from its Scheduled event.
        objects.infer_owner(pod, rs);
        let (owned, _) = cache.object_attributes(&mut objects, pod);
        assert_eq!(names(&owned), uncached(&mut objects, pod));
        assert!(names(&owned).contains(&("k8s.replicaset.name", "web-5d4f8".into())));

        let meta = ObjectMeta {
            uid: "pod-uid".into(),
            kind: "Pod".into(),
            api_version: "v1".into(),
            namespace: "ns".into(),
            name: "web-5d4f8-x2x".into(),
            ..Default::default()
        };
        objects.upsert(&meta, now, now);
        let (with_uid, _) = cache.object_attributes(&mut objects, pod);
        assert!(names(&with_uid).contains(&("k8s.pod.uid", "pod-uid".into())));

        let node = objects.strings.intern("node-1");
        objects.get_mut(pod).unwrap().node = Some(node);
        let (placed, seen) = cache.object_attributes(&mut objects, pod);
        assert_eq!(names(&placed), uncached(&mut objects, pod));
        assert!(names(&placed).contains(&("k8s.node.name", "node-1".into())));
        assert_ne!(seen & (1 << NODE_BIT), 0);
    }
}

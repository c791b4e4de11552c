//! The watch tasks of the watch manager: a scope's Event watch, and a kind's watch of objects.
//! Each follows the kinds what it delivers names, and says when object state may be behind.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use kube::api::{ApiResource, DynamicObject};
use kube::runtime::watcher;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::delivery::{Decoded, Delivery, WatchType};
use super::kinds::resolve_with_retry;
use super::retry::{Backoff, Policy};
use super::shared::{Shared, lock};
use super::{Next, Refusal, Scope, Watched};
use crate::engine::time::Timestamp;

/// Counts a watch's lists after its first (`watcher::Event::Init` starts each one).
struct Lists<'a> {
    relists: &'a AtomicU64,
    started: bool,
}

impl<'a> Lists<'a> {
    fn new(relists: &'a AtomicU64) -> Self {
        Lists {
            relists,
            started: false,
        }
    }

    fn started(&mut self) {
        if self.started {
            self.relists.fetch_add(1, Ordering::Relaxed);
        }
        self.started = true;
    }
}

/// Decrements a gauge when a watch task ends, however it ends.
struct Live<'a>(&'a AtomicI64);

impl<'a> Live<'a> {
    fn new(gauge: &'a AtomicI64) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Live(gauge)
    }
}

impl Drop for Live<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The age cut-off of listed events, taken anew at each (re)list. An idle namespace's watch
/// expires about every ten minutes and lists again; a cut-off taken once, when the watch started,
/// let each re-list send the same old events again (issue 12: ~4,170 spans a re-list).
#[derive(Clone, Debug)]
pub(super) struct ListCutoff {
    max_age: Option<Duration>,
    /// Listed events older than this are history; `None` before the first list starts.
    oldest: Option<Timestamp>,
}

impl ListCutoff {
    pub(super) fn new(max_age: Option<Duration>) -> Self {
        ListCutoff {
            max_age,
            oldest: None,
        }
    }

    /// A (re)list starts (`watcher::Event::Init`) at `now`.
    pub(super) fn list_started(&mut self, now: Timestamp) {
        self.oldest = self.max_age.map(|age| now.saturating_sub(age));
    }

    /// Before when an event is history: events delivered live never are (their reporters'
    /// clocks may lag); listed ones if older than the cut-off.
    pub(super) fn history_before(&self, listed: bool) -> Option<Timestamp> {
        self.oldest.filter(|_| listed)
    }
}

fn split<K>(event: watcher::Event<K>) -> Option<(WatchType, K, bool)> {
    match event {
        watcher::Event::InitApply(o) => Some((WatchType::Added, o, true)),
        watcher::Event::Apply(o) => Some((WatchType::Modified, o, false)),
        watcher::Event::Delete(o) => Some((WatchType::Deleted, o, false)),
        watcher::Event::Init | watcher::Event::InitDone => None,
    }
}

/// The namespace an object names kinds for, within the budget: its own, else the scope's (`""`
/// for cluster-scoped ones).
fn namespace_of<'a>(namespace: Option<&'a str>, scope: &'a Scope) -> &'a str {
    match (namespace, scope) {
        (Some(ns), _) if !ns.is_empty() => ns,
        (_, Scope::Namespace(ns)) => ns,
        (_, Scope::AllNamespaces) => "",
    }
}

/// The kind an event is about, and its namespace, read as the engine reads it
/// (`WireObject::into_event`): a reference without one is to the event's own namespace, unless
/// it names a cluster-scoped kind (a Node's events live in `default`; the Node does not). So
/// the operator, which covers namespaces, does not follow Nodes from their events; a recording
/// of all namespaces does.
pub(super) fn regarding(event: &Value, scope: &Scope) -> Option<(String, String, String)> {
    let regarding = event.get("regarding")?;
    let kind = regarding["kind"].as_str().filter(|k| !k.is_empty())?;
    let own = event["metadata"]["namespace"].as_str();
    let namespace = match regarding["namespace"].as_str().filter(|ns| !ns.is_empty()) {
        Some(ns) => ns,
        None if crate::wire::is_cluster_scoped(kind) => "",
        None => namespace_of(own, scope),
    };
    let api_version = regarding["apiVersion"].as_str().unwrap_or_default();
    Some((api_version.into(), kind.into(), namespace.into()))
}

pub(super) async fn watch_events<T: Send + 'static>(
    shared: Arc<Shared<T>>,
    scope: Scope,
    stop: CancellationToken,
) {
    let _live = Live::new(&shared.counts.events);
    let resource = super::resource_name(&super::events_resource());
    let what = format!("events in {scope:?}");
    let mut cutoff = ListCutoff::new(shared.max_event_age);
    let mut lists = Lists::new(&shared.counts.event_relists);
    let mut backoff = Backoff::seeded(Policy::default());
    let mut stream = Box::pin(super::events(shared.client.clone(), &scope));
    loop {
        let event = match super::next_event(&mut stream, &mut backoff, &stop, &what).await {
            Next::Event { event, recovered } => {
                if recovered {
                    tracing::info!(?scope, "event watch permitted again");
                    shared.refusals.remove(&resource, &scope);
                }
                event
            }
            // Without its events a scope traces nothing, and the refusal may be lifted (a Role
            // created after the session): unlike an object watch, this one keeps trying at the
            // longest delay, reported as refused until it is let in.
            Next::GaveUp(_) if stop.is_cancelled() => return,
            Next::GaveUp(code) => {
                tracing::warn!(
                    ?scope,
                    code,
                    "not permitted to watch events here; nothing in this namespace is traced until it is (grant get, list, watch on events.k8s.io events)"
                );
                shared.refusals.add(Refusal {
                    resource: resource.clone(),
                    scope: scope.clone(),
                    code,
                });
                continue;
            }
            Next::Stopped => return,
            // Events are news whenever they come; only object state is waited for.
            Next::Interrupted | Next::Resumed => continue,
        };
        let (watch_type, object, listed) = match event {
            watcher::Event::Init => {
                lists.started();
                cutoff.list_started(crate::clock::now());
                continue;
            }
            // A stopped watch must not mark a scope covered anew as listed.
            watcher::Event::InitDone if !stop.is_cancelled() => {
                shared.mark_listed(&scope);
                continue;
            }
            event => match split(event) {
                Some(split) => split,
                None => continue,
            },
        };
        if !deliver_event(
            &shared,
            &scope,
            watch_type,
            &object,
            cutoff.history_before(listed),
        )
        .await
        {
            return;
        }
    }
}

/// False once nothing listens.
async fn deliver_event<T: Send + 'static>(
    shared: &Arc<Shared<T>>,
    scope: &Scope,
    watch_type: WatchType,
    object: &DynamicObject,
    history_before: Option<Timestamp>,
) -> bool {
    let event = super::event_json(object);
    let names = (watch_type != WatchType::Deleted)
        .then(|| regarding(&event, scope))
        .flatten();
    let delivery = Delivery::Event {
        watch_type,
        event,
        observed: crate::clock::now(),
        history_before,
    };
    match shared.deliver(delivery).await {
        Decoded::Closed => false,
        Decoded::Skipped => true,
        Decoded::Sent => {
            if let Some((api_version, kind, namespace)) = names {
                shared.ensure_kind(&api_version, &kind, &namespace);
            }
            true
        }
    }
}

/// Resolves a kind, then watches it in `scope`, or in all namespaces once for a cluster-scoped
/// kind (Node), whichever scope asked first.
pub(super) async fn watch_kind<T: Send + 'static>(
    shared: Arc<Shared<T>>,
    scope: Scope,
    api_version: String,
    kind: String,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::seeded(Policy::default());
    let resolved =
        resolve_with_retry(&shared.resolver, &api_version, &kind, &mut backoff, &stop).await;
    let served = match resolved {
        None => return,
        Some(Ok(served)) => served,
        Some(Err(code)) => {
            shared.refusals.add(Refusal {
                resource: super::unresolved_name(&api_version, &kind),
                scope,
                code,
            });
            return;
        }
    };
    if served.namespaced {
        return watch_metadata(&shared, served.resource, true, scope, stop).await;
    }
    let key = (api_version, kind);
    if !lock(&shared.cluster_wide).insert(key.clone()) {
        return;
    }
    let root = shared.root.clone();
    watch_metadata(&shared, served.resource, false, Scope::AllNamespaces, root).await;
    lock(&shared.cluster_wide).remove(&key);
}

pub(super) async fn watch_metadata<T: Send + 'static>(
    shared: &Arc<Shared<T>>,
    resource: ApiResource,
    namespaced: bool,
    scope: Scope,
    stop: CancellationToken,
) {
    let _live = Live::new(&shared.counts.metadata);
    tracing::info!(kind = %resource.kind, ?scope, "watching objects");
    let what = format!("{} in {scope:?}", resource.kind);
    let mut lists = Lists::new(&shared.counts.metadata_relists);
    let mut backoff = Backoff::seeded(Policy::default());
    let mut stream = super::objects(shared.client.clone(), &resource, namespaced, &scope);
    let mut gap = Gap::new(&what, &scope, shared);
    loop {
        let event = match super::next_event(&mut stream, &mut backoff, &stop, &what).await {
            Next::Event { event, .. } => {
                // `Init` only says a list is about to be asked for.
                gap.delivered |= !matches!(event, watcher::Event::Init);
                event
            }
            Next::Interrupted => {
                gap.open().await;
                continue;
            }
            Next::Resumed => {
                gap.close().await;
                continue;
            }
            Next::GaveUp(_) if stop.is_cancelled() => return gap.abandon(),
            Next::GaveUp(code) => {
                // RBAC decides what the operator may follow (deploy/rbac.yaml); a refusal that
                // lasted this long is no API server starting up. Owner chains stop at this kind.
                tracing::warn!(kind = %resource.kind, ?scope, code, "not permitted to watch this kind; its objects are not followed (grant get, list, watch to trace through it)");
                shared.refusals.add(Refusal {
                    resource: super::resource_name(&resource),
                    scope,
                    code,
                });
                // Nothing more comes from it: nothing waits for it.
                gap.close().await;
                return;
            }
            Next::Stopped => return gap.abandon(),
        };
        let (watch_type, object) = match event {
            watcher::Event::Init => {
                lists.started();
                gap.listing = true;
                continue;
            }
            watcher::Event::InitDone => {
                gap.listing = false;
                gap.close().await;
                continue;
            }
            event => match split(event) {
                Some((watch_type, object, _)) => (watch_type, object),
                None => continue,
            },
        };
        if !deliver_object(shared, &resource, &scope, watch_type, &object).await {
            return;
        }
        // A resumed watch delivers what it missed first: it is whole again. A re-list is
        // whole once listed.
        if !gap.listing {
            gap.close().await;
        }
    }
}

/// False once nothing listens.
async fn deliver_object<T: Send + 'static>(
    shared: &Arc<Shared<T>>,
    resource: &ApiResource,
    scope: &Scope,
    watch_type: WatchType,
    object: &Watched,
) -> bool {
    let delivery = Delivery::Object {
        watch_type,
        object: super::slim_object(resource, object),
        observed: crate::clock::now(),
    };
    match shared.deliver(delivery).await {
        Decoded::Closed => false,
        Decoded::Skipped => true,
        Decoded::Sent => {
            if watch_type != WatchType::Deleted {
                let namespace = namespace_of(object.metadata.namespace.as_deref(), scope);
                for owner in object.metadata.owner_references.iter().flatten() {
                    shared.ensure_kind(&owner.api_version, &owner.kind, namespace);
                }
            }
            true
        }
    }
}

/// Whether one watch of objects has told the consumer it is interrupted.
struct Gap<'a, T> {
    watch: Arc<str>,
    namespace: Option<Arc<str>>,
    shared: &'a Shared<T>,
    /// Whether it ever delivered: a watch refused from its start (a kind a tenant's event
    /// names that RBAC does not grant) has no state to catch up on, and must not hold back the
    /// releases of every session while it retries.
    delivered: bool,
    open: bool,
    /// Between a (re)list's start and its end.
    listing: bool,
}

impl<'a, T: Send + 'static> Gap<'a, T> {
    fn new(what: &str, scope: &Scope, shared: &'a Shared<T>) -> Self {
        Gap {
            watch: what.into(),
            namespace: match scope {
                Scope::Namespace(ns) => Some(ns.as_str().into()),
                Scope::AllNamespaces => None,
            },
            shared,
            delivered: false,
            open: false,
            listing: false,
        }
    }

    async fn open(&mut self) {
        if self.delivered && !self.open {
            self.open = true;
            self.shared.deliver(self.message(true)).await;
        }
    }

    async fn close(&mut self) {
        if self.open {
            self.open = false;
            self.shared.deliver(self.message(false)).await;
        }
    }

    /// The watch stops: its gap closes, if the consumer still listens and has room (it may be
    /// stopping too; a gap left open only delays releases up to `max_state_wait`).
    fn abandon(self) {
        if self.open {
            self.shared.try_deliver(self.message(false));
        }
    }

    fn message(&self, interrupted: bool) -> Delivery {
        Delivery::StateGap {
            watch: self.watch.clone(),
            namespace: self.namespace.clone(),
            interrupted,
        }
    }
}

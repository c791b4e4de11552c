//! Watches shared by all sessions: one Event watch per namespace any session covers, and one
//! metadata-only watch per kind and namespace, started when an event or an owner reference first
//! names the kind. Sessions only change which namespaces are covered: the number of watches
//! never grows with the number of sessions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use kube::Client;
use kube::api::ApiResource;
use kube::runtime::watcher;
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use crate::engine::model::{EventRecord, ObjectMeta};
use crate::engine::time::Timestamp;
use crate::watch::kinds::{KindResolver, gvk};
use crate::watch::{self, Scope, Watched};
use crate::wire::WireObject;

/// The reporting controller of the events eventspan publishes itself; they never feed traces.
pub const OWN_CONTROLLER: &str = "eventspan.dev/operator";
/// (namespace, kind) pairs followed at most.
const MAX_KINDS: usize = 4096;

/// What the watches deliver to the hub.
#[derive(Debug)]
pub enum Input {
    Event(Box<EventRecord>, Timestamp),
    Upsert(Box<ObjectMeta>, Timestamp),
    Delete(String, Timestamp),
    /// A watched value that could not be decoded (counted and skipped).
    Malformed(String),
}

/// Live watch counts, for metrics.
#[derive(Default)]
pub struct WatchCounts {
    pub events: AtomicI64,
    pub metadata: AtomicI64,
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

pub struct WatchManager {
    client: Client,
    input: mpsc::Sender<Input>,
    resolver: Arc<Mutex<KindResolver>>,
    /// Covered namespaces and the watch token of each (its kinds' watches are children).
    namespaces: BTreeMap<String, CancellationToken>,
    /// (namespace, apiVersion, kind) already asked for.
    kinds: BTreeSet<(String, String, String)>,
    /// Cluster-scoped kinds being watched: one watch each, whichever namespace asked first.
    cluster_wide: Arc<Mutex<BTreeSet<(String, String)>>>,
    root: CancellationToken,
    /// Events older than this when a watch starts are history, not news: they are skipped.
    max_event_age: Duration,
    pub counts: Arc<WatchCounts>,
}

impl WatchManager {
    pub fn new(
        client: Client,
        input: mpsc::Sender<Input>,
        max_event_age: Duration,
        stop: CancellationToken,
    ) -> Self {
        WatchManager {
            resolver: Arc::new(Mutex::new(KindResolver::new(client.clone()))),
            client,
            input,
            namespaces: BTreeMap::new(),
            kinds: BTreeSet::new(),
            cluster_wide: Arc::default(),
            root: stop,
            max_event_age,
            counts: Arc::default(),
        }
    }

    pub fn namespaces(&self) -> impl Iterator<Item = &String> {
        self.namespaces.keys()
    }

    /// Starts watching namespaces newly covered, stops those no session covers any more.
    /// Returns the namespaces that were dropped.
    pub fn set_namespaces(&mut self, desired: &BTreeSet<String>) -> Vec<String> {
        let gone: Vec<String> = self
            .namespaces
            .keys()
            .filter(|n| !desired.contains(*n))
            .cloned()
            .collect();
        for ns in &gone {
            if let Some(token) = self.namespaces.remove(ns) {
                token.cancel();
            }
            self.kinds.retain(|(n, _, _)| n != ns);
            tracing::info!(namespace = %ns, "stopped watching");
        }
        for ns in desired {
            if !self.namespaces.contains_key(ns) {
                self.start_namespace(ns);
            }
        }
        gone
    }

    fn start_namespace(&mut self, ns: &str) {
        let token = self.root.child_token();
        self.namespaces.insert(ns.to_string(), token.clone());
        tracing::info!(namespace = %ns, "watching events");
        tokio::spawn(watch_events(
            self.client.clone(),
            ns.to_string(),
            self.input.clone(),
            self.max_event_age,
            self.counts.clone(),
            token,
        ));
    }

    /// Restarts a covered namespace's watches, its Event watch and those of every kind
    /// followed there, so their initial lists are delivered again: for an engine that newly
    /// covers a namespace other engines already watch. What they deliver is what a restart of
    /// the operator would (events younger than `--max-event-age`, every object); engines that
    /// had them already skip the repeats. Cluster-scoped kinds keep their one watch.
    pub fn relist_namespace(&mut self, ns: &str) {
        let Some(token) = self.namespaces.remove(ns) else {
            return;
        };
        token.cancel();
        let kinds: Vec<(String, String, String)> = self
            .kinds
            .iter()
            .filter(|(n, _, _)| n == ns)
            .cloned()
            .collect();
        self.kinds.retain(|(n, _, _)| n != ns);
        tracing::info!(namespace = %ns, kinds = kinds.len(), "listing again for a new engine");
        self.start_namespace(ns);
        for (ns, api_version, kind) in kinds {
            self.ensure_kind(&api_version, &kind, &ns);
        }
    }

    /// Makes sure objects of a kind are watched in a covered namespace (once; discovery runs in
    /// the watch task, so this never waits). A cluster-scoped kind (Node) gets one watch in all.
    pub fn ensure_kind(&mut self, api_version: &str, kind: &str, namespace: &str) {
        let Some(ns_token) = self.namespaces.get(namespace) else {
            return;
        };
        let api_version = gvk(api_version, kind).api_version();
        let key = (namespace.to_string(), api_version.clone(), kind.to_string());
        if self.kinds.contains(&key) {
            return;
        }
        // Events may name any kind, chosen by whoever creates them: the set stays bounded.
        if self.kinds.len() >= MAX_KINDS {
            tracing::warn!(%kind, %namespace, "too many kinds followed; not watching another");
            return;
        }
        self.kinds.insert(key);
        let (client, input, resolver, counts) = (
            self.client.clone(),
            self.input.clone(),
            self.resolver.clone(),
            self.counts.clone(),
        );
        let (ns_token, root, cluster_wide) = (
            ns_token.clone(),
            self.root.clone(),
            self.cluster_wide.clone(),
        );
        let (namespace, kind) = (namespace.to_string(), kind.to_string());
        tokio::spawn(async move {
            let Some(served) = resolver.lock().await.resolve(&api_version, &kind).await else {
                return;
            };
            if served.namespaced {
                let scope = Scope::Namespace(namespace);
                return watch_metadata(
                    client,
                    served.resource,
                    true,
                    scope,
                    input,
                    counts,
                    ns_token,
                )
                .await;
            }
            let key = (api_version, kind);
            if !cluster_wide.lock().await.insert(key.clone()) {
                return;
            }
            watch_metadata(
                client,
                served.resource,
                false,
                Scope::AllNamespaces,
                input,
                counts,
                root,
            )
            .await;
            cluster_wide.lock().await.remove(&key);
        });
    }
}

async fn watch_events(
    client: Client,
    namespace: String,
    input: mpsc::Sender<Input>,
    max_event_age: Duration,
    counts: Arc<WatchCounts>,
    stop: CancellationToken,
) {
    let _live = Live::new(&counts.events);
    let started = watch::now();
    let oldest = started.saturating_sub(max_event_age);
    let mut stream = Box::pin(watch::events(client, &Scope::Namespace(namespace.clone())));
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => return,
            next = stream.next() => next,
        };
        let (object, listed) = match next {
            Some(Ok(watcher::Event::InitApply(o))) => (o, true),
            Some(Ok(watcher::Event::Apply(o))) => (o, false),
            Some(Ok(_)) => continue,
            Some(Err(error)) => {
                tracing::warn!(%error, %namespace, "event watch failed; retrying");
                continue;
            }
            None => return,
        };
        let decoded = serde_json::from_value::<WireObject>(watch::event_json(&object))
            .map_err(|e| e.to_string())
            .and_then(|w| w.into_event().map_err(|e| e.to_string()));
        let message = match decoded {
            Ok(event) if event.reporting_controller == OWN_CONTROLLER => continue,
            // Listed events from before the watch started are history: replaying them after
            // every restart would export old traces again.
            Ok(event) if listed && event.last.at < oldest => continue,
            Ok(event) => Input::Event(Box::new(event), watch::now()),
            Err(reason) => Input::Malformed(format!("event in {namespace}: {reason}")),
        };
        if input.send(message).await.is_err() {
            return;
        }
    }
}

async fn watch_metadata(
    client: Client,
    resource: ApiResource,
    namespaced: bool,
    scope: Scope,
    input: mpsc::Sender<Input>,
    counts: Arc<WatchCounts>,
    stop: CancellationToken,
) {
    let _live = Live::new(&counts.metadata);
    tracing::info!(kind = %resource.kind, ?scope, "watching objects");
    let mut stream = watch::objects(client, &resource, namespaced, &scope);
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => return,
            next = stream.next() => next,
        };
        let message = match next {
            Some(Ok(watcher::Event::InitApply(o) | watcher::Event::Apply(o))) => {
                decode(&resource, &o)
            }
            Some(Ok(watcher::Event::Delete(o))) => {
                Input::Delete(o.metadata.uid.clone().unwrap_or_default(), watch::now())
            }
            Some(Ok(_)) => continue,
            Some(Err(error)) if forbidden(&error) => {
                // RBAC decides what the operator may follow (deploy/rbac.yaml); retrying a
                // refusal forever would only fill the log. Owner chains stop at this kind.
                tracing::warn!(kind = %resource.kind, ?scope, "not permitted to watch this kind; its objects are not followed (grant get, list, watch to trace through it)");
                return;
            }
            Some(Err(error)) => {
                tracing::warn!(%error, kind = %resource.kind, "metadata watch failed; retrying");
                continue;
            }
            None => return,
        };
        if input.send(message).await.is_err() {
            return;
        }
    }
}

fn forbidden(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => status.code == 403,
        watcher::Error::WatchError(status) => status.code == 403,
        _ => false,
    }
}

fn decode(resource: &ApiResource, object: &Watched) -> Input {
    let value = watch::slim_object(resource, object);
    match serde_json::from_value::<WireObject>(value)
        .map_err(|e| e.to_string())
        .and_then(|w| w.into_object_meta().map_err(|e| e.to_string()))
    {
        Ok(meta) => Input::Upsert(Box::new(meta), watch::now()),
        Err(reason) => Input::Malformed(format!("{}: {reason}", resource.kind)),
    }
}

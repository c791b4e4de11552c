//! Watches shared by all sessions: one Event watch per namespace any session covers, and one
//! metadata-only watch per kind and namespace, started when an event or an owner reference first
//! names the kind. Sessions only change which namespaces are covered: the number of watches
//! never grows with the number of sessions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use kube::Client;
use kube::api::ApiResource;
use kube::runtime::watcher;
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span};

use crate::engine::model::{EventRecord, ObjectMeta};
use crate::engine::time::Timestamp;
use crate::watch::kinds::{Budget, KindResolver, Rejected, gvk, resolve_with_retry, valid_kind};
use crate::watch::retry::{Backoff, Policy};
use crate::watch::{self, Next, Refusal, Refusals, Scope, Watched};
use crate::wire::WireObject;

/// The reporting controller of the events eventspan publishes itself; they never feed traces.
pub const OWN_CONTROLLER: &str = "eventspan.dev/operator";

/// What the watches deliver to the hub.
#[derive(Debug)]
pub enum Input {
    Event(Box<EventRecord>, Timestamp),
    Upsert(Box<ObjectMeta>, Timestamp),
    /// A watched object went away: its namespace (empty for cluster-scoped kinds) and uid.
    Delete {
        namespace: String,
        uid: String,
        at: Timestamp,
    },
    /// A watched value that could not be decoded (counted and skipped).
    Malformed(Malformed),
    /// A watch of objects (`watch` names it) of one namespace (`None`: of every namespace, or
    /// cluster-scoped) failed (`interrupted`), or delivers again after it did: in between,
    /// object state there may be behind (see `Engine::set_state_gap`). In line with the
    /// objects, so a re-list's objects come before the gap closes.
    StateGap {
        watch: Arc<str>,
        namespace: Option<Arc<str>>,
        interrupted: bool,
    },
}

/// A watched value that could not be decoded: what it was (`event in shop`, `Deployment`) and
/// why.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {error}")]
pub struct Malformed {
    pub what: String,
    pub error: DecodeError,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Wire(#[from] crate::wire::WireError),
}

/// Live watch counts, for metrics.
#[derive(Default)]
pub struct WatchCounts {
    pub events: AtomicI64,
    pub metadata: AtomicI64,
    /// Lists a running watch started again: its resourceVersion had expired (410 Gone, after an
    /// etcd compaction or an API-server restart), so it re-listed everything. Each re-list is a
    /// chance to deliver old events twice (see [`ListCutoff`]), hence worth counting.
    pub event_relists: AtomicU64,
    pub metadata_relists: AtomicU64,
}

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

/// The covered namespaces whose Event watch has listed since it started: until it has, a session
/// there is still being brought up (its status says `Reconciling`), since events before the list
/// are not seen. A re-list (an expired watch, a new engine) does not take a namespace off: its
/// sessions were tracing before and carry on.
#[derive(Default, Debug)]
pub struct Listed(std::sync::Mutex<BTreeSet<String>>);

impl Listed {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        // A panic elsewhere while holding it leaves a set still worth reading.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn insert(&self, namespace: &str) {
        self.lock().insert(namespace.to_string());
    }

    fn remove(&self, namespace: &str) {
        self.lock().remove(namespace);
    }

    pub fn contains(&self, namespace: &str) -> bool {
        self.lock().contains(namespace)
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

/// What the hub asks of the watches: which namespaces to cover and which kinds to follow in
/// them, and how the watches are doing. [`WatchManager`] is the one that watches; the hub's
/// tests pass a double.
pub trait WatchControl: Send {
    /// Starts watching namespaces newly covered, stops those no session covers any more.
    fn set_namespaces(&mut self, desired: &BTreeSet<String>);

    /// Makes sure objects of a kind are watched in a covered namespace (once); never waits.
    fn ensure_kind(&mut self, api_version: &str, kind: &str, namespace: &str);

    /// Restarts a covered namespace's watches, so that their initial lists are delivered again
    /// (for an engine that newly covers a namespace other engines already watch).
    fn relist_namespace(&mut self, namespace: &str);

    /// The covered namespaces.
    fn namespaces(&self) -> BTreeSet<String>;

    /// Whether the Event watch of a covered namespace has listed since it started.
    fn listed(&self, namespace: &str) -> bool;

    /// Watches given up because the API server kept refusing them.
    fn refused(&self) -> Vec<Refusal>;

    /// Kinds not watched, by reason (the metric label), since start.
    fn kinds_rejected(&self) -> Vec<(&'static str, u64)>;

    /// Live watch counts, for metrics.
    fn counts(&self) -> &WatchCounts;
}

pub struct WatchManager {
    client: Client,
    input: mpsc::Sender<Input>,
    resolver: Arc<Mutex<KindResolver>>,
    /// Covered namespaces and the watch token of each (its kinds' watches are children).
    namespaces: BTreeMap<String, CancellationToken>,
    /// (namespace, apiVersion, kind) already asked for.
    kinds: BTreeSet<(String, String, String)>,
    /// What `kinds` may hold, per namespace and in all: events and owner references may name
    /// any kind, chosen by whoever creates them.
    budget: Budget,
    /// (namespace, reason) already warned about: a Deployment naming 10,000 kinds warns once.
    warned: BTreeSet<(String, Rejected)>,
    /// Watches given up after persistent refusals.
    refusals: Arc<Refusals>,
    /// Namespaces whose Event watch has listed.
    listed: Arc<Listed>,
    /// Cluster-scoped kinds being watched: one watch each, whichever namespace asked first.
    cluster_wide: Arc<Mutex<BTreeSet<(String, String)>>>,
    root: CancellationToken,
    /// Events older than this at a watch's (re)list are history, not news: they are skipped.
    max_event_age: Duration,
    counts: Arc<WatchCounts>,
    /// Every watch task: they end with their tokens, and cannot outlive the manager (dropping a
    /// JoinSet aborts what it holds).
    tasks: JoinSet<()>,
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
            budget: Budget::default(),
            warned: BTreeSet::new(),
            refusals: Arc::default(),
            listed: Arc::default(),
            cluster_wide: Arc::default(),
            root: stop,
            max_event_age,
            counts: Arc::default(),
            tasks: JoinSet::new(),
        }
    }

    /// Runs a watch task, tracked; forgets those that have ended.
    fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static, span: tracing::Span) {
        while let Some(ended) = self.tasks.try_join_next() {
            if let Err(error) = ended {
                tracing::error!(%error, "a watch task failed");
            }
        }
        self.tasks.spawn(task.instrument(span));
    }

    fn start_namespace(&mut self, ns: &str) {
        let token = self.root.child_token();
        self.namespaces.insert(ns.to_string(), token.clone());
        tracing::info!(namespace = %ns, "watching events");
        let watch = watch_events(
            self.client.clone(),
            ns.to_string(),
            self.input.clone(),
            self.max_event_age,
            self.counts.clone(),
            self.refusals.clone(),
            self.listed.clone(),
            token,
        );
        self.spawn(watch, info_span!("watch_events", namespace = %ns));
    }
}

impl WatchControl for WatchManager {
    fn namespaces(&self) -> BTreeSet<String> {
        self.namespaces.keys().cloned().collect()
    }

    fn refused(&self) -> Vec<Refusal> {
        self.refusals.list()
    }

    fn listed(&self, namespace: &str) -> bool {
        self.namespaces.contains_key(namespace) && self.listed.contains(namespace)
    }

    fn kinds_rejected(&self) -> Vec<(&'static str, u64)> {
        self.budget
            .rejected()
            .map(|(r, n)| (r.reason(), n))
            .collect()
    }

    fn counts(&self) -> &WatchCounts {
        &self.counts
    }

    fn set_namespaces(&mut self, desired: &BTreeSet<String>) {
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
            self.budget.release(ns);
            self.warned.retain(|(n, _)| n != ns);
            self.refusals.forget_namespace(ns);
            self.listed.remove(ns);
            tracing::info!(namespace = %ns, "stopped watching");
        }
        for ns in desired {
            if !self.namespaces.contains_key(ns) {
                // Covered anew: listed only once this watch has (a stopped one may have said so).
                self.listed.remove(ns);
                self.start_namespace(ns);
            }
        }
    }

    /// Restarts a covered namespace's watches, its Event watch and those of every kind
    /// followed there, so their initial lists are delivered again: for an engine that newly
    /// covers a namespace other engines already watch. What they deliver is what a restart of
    /// the operator would (events younger than `--max-event-age`, every object); engines that
    /// had them already skip the repeats. Cluster-scoped kinds keep their one watch.
    fn relist_namespace(&mut self, ns: &str) {
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
    /// A kind that is malformed, or beyond the namespace's or the operator's budget, is counted
    /// and ignored.
    fn ensure_kind(&mut self, api_version: &str, kind: &str, namespace: &str) {
        let Some(ns_token) = self.namespaces.get(namespace) else {
            return;
        };
        let api_version = gvk(api_version, kind).api_version();
        // Looked up only if valid: a kind of a megabyte is not copied into a key.
        if valid_kind(&api_version, kind)
            && self
                .kinds
                .contains(&(namespace.to_string(), api_version.clone(), kind.to_string()))
        {
            return;
        }
        // Rejections are not remembered (that set would be unbounded too): a kind refused is
        // counted again each time an event or an object names it.
        if let Err(rejected) = self.budget.admit(namespace, &api_version, kind) {
            if self.warned.insert((namespace.to_string(), rejected)) {
                let kind: String = kind.chars().take(80).collect();
                tracing::warn!(%kind, %namespace, %rejected, "kind not watched; more kinds rejected here for this reason are only counted (eventspan_watch_kinds_rejected_total)");
            }
            return;
        }
        self.kinds
            .insert((namespace.to_string(), api_version.clone(), kind.to_string()));
        let (client, input, resolver, counts, refusals) = (
            self.client.clone(),
            self.input.clone(),
            self.resolver.clone(),
            self.counts.clone(),
            self.refusals.clone(),
        );
        let (ns_token, root, cluster_wide) = (
            ns_token.clone(),
            self.root.clone(),
            self.cluster_wide.clone(),
        );
        let span = info_span!("watch_objects", %namespace, %api_version, %kind);
        let (namespace, kind) = (namespace.to_string(), kind.to_string());
        let watch = async move {
            let mut backoff = Backoff::seeded(Policy::default());
            let resolved =
                resolve_with_retry(&resolver, &api_version, &kind, &mut backoff, &ns_token).await;
            let served = match resolved {
                None => return,
                Some(Ok(served)) => served,
                Some(Err(code)) => {
                    refusals.add(Refusal {
                        resource: watch::unresolved_name(&api_version, &kind),
                        scope: Scope::Namespace(namespace),
                        code,
                    });
                    return;
                }
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
                    refusals,
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
                refusals,
                root,
            )
            .await;
            cluster_wide.lock().await.remove(&key);
        };
        self.spawn(watch, span);
    }
}

/// The age cut-off of listed events, taken anew at each (re)list. An idle namespace's watch
/// expires about every ten minutes and lists again; a cut-off taken once, when the watch started,
/// let each re-list send the same old events again (issue 12: ~4,170 spans a re-list).
#[derive(Clone, Debug)]
struct ListCutoff {
    max_age: Duration,
    /// Listed events older than this are history; `None` before the first list starts.
    oldest: Option<Timestamp>,
}

impl ListCutoff {
    fn new(max_age: Duration) -> Self {
        ListCutoff {
            max_age,
            oldest: None,
        }
    }

    /// A (re)list starts (`watcher::Event::Init`) at `now`.
    fn list_started(&mut self, now: Timestamp) {
        self.oldest = Some(now.saturating_sub(self.max_age));
    }

    /// Whether an event whose latest time is `last` is news: events delivered live always are
    /// (their reporters' clocks may lag); listed ones only if younger than the cut-off.
    fn keeps(&self, listed: bool, last: Timestamp) -> bool {
        !listed || self.oldest.is_none_or(|oldest| last >= oldest)
    }
}

#[allow(clippy::too_many_arguments)]
async fn watch_events(
    client: Client,
    namespace: String,
    input: mpsc::Sender<Input>,
    max_event_age: Duration,
    counts: Arc<WatchCounts>,
    refusals: Arc<Refusals>,
    listed: Arc<Listed>,
    stop: CancellationToken,
) {
    let _live = Live::new(&counts.events);
    let resource = watch::resource_name(&watch::events_resource());
    let scope = Scope::Namespace(namespace.clone());
    let what = format!("events in {namespace}");
    let mut cutoff = ListCutoff::new(max_event_age);
    let mut lists = Lists::new(&counts.event_relists);
    let mut backoff = Backoff::seeded(Policy::default());
    let mut stream = Box::pin(watch::events(client, &scope));
    loop {
        let next = watch::next_event(&mut stream, &mut backoff, &stop, &what).await;
        let (object, listed) = match next {
            Next::Event { event, recovered } => {
                if recovered {
                    tracing::info!(%namespace, "event watch permitted again");
                    refusals.remove(&resource, &scope);
                }
                match event {
                    watcher::Event::Init => {
                        lists.started();
                        cutoff.list_started(watch::now());
                        continue;
                    }
                    watcher::Event::InitApply(o) => (o, true),
                    watcher::Event::Apply(o) => (o, false),
                    // A stopped watch must not mark a namespace covered anew as listed.
                    watcher::Event::InitDone if !stop.is_cancelled() => {
                        listed.insert(&namespace);
                        continue;
                    }
                    watcher::Event::InitDone | watcher::Event::Delete(_) => continue,
                }
            }
            // Without its events a namespace traces nothing, and the refusal may be lifted (a
            // Role created after the session): unlike an object watch, this one keeps trying at
            // the longest delay, reported as refused until it is let in.
            Next::GaveUp(_) if stop.is_cancelled() => return,
            Next::GaveUp(code) => {
                tracing::warn!(%namespace, code, "not permitted to watch events here; nothing in this namespace is traced until it is (grant get, list, watch on events.k8s.io events)");
                refusals.add(Refusal {
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
        let decoded = serde_json::from_value::<WireObject>(watch::event_json(&object))
            .map_err(DecodeError::from)
            .and_then(|w| w.into_event().map_err(DecodeError::from));
        let message = match decoded {
            Ok(event) if event.reporting_controller == OWN_CONTROLLER => continue,
            // Listed events from before this (re)list's cut-off are history: replaying them
            // after every restart or re-list would export old traces again.
            Ok(event) if !cutoff.keeps(listed, event.last.at) => continue,
            Ok(event) => Input::Event(Box::new(event), watch::now()),
            Err(error) => Input::Malformed(Malformed {
                what: format!("event in {namespace}"),
                error,
            }),
        };
        if input.send(message).await.is_err() {
            return;
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn watch_metadata(
    client: Client,
    resource: ApiResource,
    namespaced: bool,
    scope: Scope,
    input: mpsc::Sender<Input>,
    counts: Arc<WatchCounts>,
    refusals: Arc<Refusals>,
    stop: CancellationToken,
) {
    let _live = Live::new(&counts.metadata);
    tracing::info!(kind = %resource.kind, ?scope, "watching objects");
    let what = format!("{} in {scope:?}", resource.kind);
    let mut lists = Lists::new(&counts.metadata_relists);
    let mut backoff = Backoff::seeded(Policy::default());
    let mut stream = watch::objects(client, &resource, namespaced, &scope);
    let mut gap = Gap::new(&what, &scope, &input);
    loop {
        let event = match watch::next_event(&mut stream, &mut backoff, &stop, &what).await {
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
                refusals.add(Refusal {
                    resource: watch::resource_name(&resource),
                    scope,
                    code,
                });
                // Nothing more comes from it: nothing waits for it.
                gap.close().await;
                return;
            }
            Next::Stopped => return gap.abandon(),
        };
        let message = match event {
            watcher::Event::InitApply(o) | watcher::Event::Apply(o) => decode(&resource, &o),
            watcher::Event::Delete(o) => Input::Delete {
                namespace: o.metadata.namespace.clone().unwrap_or_default(),
                uid: o.metadata.uid.clone().unwrap_or_default(),
                at: watch::now(),
            },
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
        };
        if input.send(message).await.is_err() {
            return;
        }
        // A resumed watch delivers what it missed first: it is whole again. A re-list is
        // whole once listed.
        if !gap.listing {
            gap.close().await;
        }
    }
}

/// Whether one watch of objects has told the hub it is interrupted.
struct Gap<'a> {
    watch: Arc<str>,
    namespace: Option<Arc<str>>,
    input: &'a mpsc::Sender<Input>,
    /// Whether it ever delivered: a watch refused from its start (a kind a tenant's event
    /// names that RBAC does not grant) has no state to catch up on, and must not hold back the
    /// releases of every session while it retries.
    delivered: bool,
    open: bool,
    /// Between a (re)list's start and its end.
    listing: bool,
}

impl<'a> Gap<'a> {
    fn new(what: &str, scope: &Scope, input: &'a mpsc::Sender<Input>) -> Self {
        Gap {
            watch: what.into(),
            namespace: match scope {
                Scope::Namespace(ns) => Some(ns.as_str().into()),
                Scope::AllNamespaces => None,
            },
            input,
            delivered: false,
            open: false,
            listing: false,
        }
    }

    async fn open(&mut self) {
        if self.delivered && !self.open {
            self.open = true;
            self.tell(true).await;
        }
    }

    async fn close(&mut self) {
        if self.open {
            self.open = false;
            self.tell(false).await;
        }
    }

    /// The watch stops: its gap closes, if the hub still listens and has room (it may be
    /// stopping too; a gap left open only delays releases up to `max_state_wait`).
    fn abandon(self) {
        if self.open {
            let _ = self.input.try_send(self.message(false));
        }
    }

    async fn tell(&self, interrupted: bool) {
        let _ = self.input.send(self.message(interrupted)).await;
    }

    fn message(&self, interrupted: bool) -> Input {
        Input::StateGap {
            watch: self.watch.clone(),
            namespace: self.namespace.clone(),
            interrupted,
        }
    }
}

fn decode(resource: &ApiResource, object: &Watched) -> Input {
    let value = watch::slim_object(resource, object);
    match serde_json::from_value::<WireObject>(value)
        .map_err(DecodeError::from)
        .and_then(|w| w.into_object_meta().map_err(DecodeError::from))
    {
        Ok(meta) => Input::Upsert(Box::new(meta), watch::now()),
        Err(error) => Input::Malformed(Malformed {
            what: resource.kind.clone(),
            error,
        }),
    }
}

#[cfg(test)]
mod tests;

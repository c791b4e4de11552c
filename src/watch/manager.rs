//! The one watch manager, shared by `eventspan record` and the operator: one Event watch per
//! scope covered, and one watch of objects per kind and scope, started when an event's
//! `regarding` or an object's owner reference first names the kind (within [`Budget`]). What
//! the watches deliver goes out on one channel, decoded by the consumer's function in the
//! watch's own task.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kube::Client;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span};

use super::kinds::{Budget, KindResolver, Rejected, gvk, valid_kind};
use super::tasks::{self, WatchCounts};
use super::{Refusal, Refusals, Scope};
use crate::engine::time::Timestamp;

/// How a watch event changed the object it carries, as the API's watch events name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchType {
    Added,
    Modified,
    Deleted,
}

impl WatchType {
    pub fn as_str(self) -> &'static str {
        match self {
            WatchType::Added => "ADDED",
            WatchType::Modified => "MODIFIED",
            WatchType::Deleted => "DELETED",
        }
    }
}

/// What a watch delivers, before the consumer decodes it.
#[derive(Debug)]
pub enum Delivery {
    /// An Event, as `events.k8s.io/v1` JSON ([`super::event_json`]).
    Event {
        watch_type: WatchType,
        event: Value,
        observed: Timestamp,
        /// For an event delivered by a (re)list: events whose latest time is before this are
        /// history, not news (see `Settings::max_event_age`). `None`: the event is news.
        history_before: Option<Timestamp>,
    },
    /// An object of a watched kind, reduced to what eventspan keeps ([`super::slim_object`]).
    Object {
        watch_type: WatchType,
        object: Value,
        observed: Timestamp,
    },
    /// A watch of objects (`watch` names it) of one namespace (`None`: of every namespace, or
    /// cluster-scoped) failed (`interrupted`), or delivers again after it did: in between,
    /// object state there may be behind. In line with the objects, so a re-list's objects come
    /// before the gap closes.
    StateGap {
        watch: Arc<str>,
        namespace: Option<Arc<str>>,
        interrupted: bool,
    },
}

impl Delivery {
    /// The line `eventspan record` writes and `eventspan replay` reads: a watch event with the
    /// time it was observed. A state gap has none (a recording keeps what arrives).
    pub fn into_line(self) -> Option<Value> {
        let (watch_type, object, observed) = match self {
            Delivery::Event {
                watch_type,
                event,
                observed,
                ..
            } => (watch_type, event, observed),
            Delivery::Object {
                watch_type,
                object,
                observed,
            } => (watch_type, object, observed),
            Delivery::StateGap { .. } => return None,
        };
        Some(json!({"type": watch_type.as_str(), "object": object, "observedAt": observed}))
    }
}

/// Turns a delivery into what the consumer's channel carries; `None` skips it. It runs in the
/// watch's task, so decoding is spread over the watches. The kinds a skipped delivery names are
/// not followed.
pub type Decode<T> = fn(Delivery) -> Option<T>;

#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Events a watch's (re)list delivers that are older than this are marked as history
    /// ([`Delivery::Event::history_before`]); `None`: none are.
    pub max_event_age: Option<Duration>,
}

pub struct WatchManager<T: Send + 'static> {
    shared: Arc<Shared<T>>,
}

/// What the manager and its watch tasks share: the tasks follow the kinds they see themselves.
pub(super) struct Shared<T> {
    pub client: Client,
    input: mpsc::Sender<T>,
    decode: Decode<T>,
    pub resolver: tokio::sync::Mutex<KindResolver>,
    pub refusals: Refusals,
    listed: Mutex<BTreeSet<Scope>>,
    /// Cluster-scoped kinds being watched: one watch each, whichever scope asked first.
    pub cluster_wide: Mutex<BTreeSet<(String, String)>>,
    pub root: CancellationToken,
    pub max_event_age: Option<Duration>,
    pub counts: WatchCounts,
    state: Mutex<State>,
}

struct State {
    /// Covered scopes and the watch token of each (its kinds' watches are children).
    scopes: BTreeMap<Scope, CancellationToken>,
    /// (scope, apiVersion, kind) already asked for.
    kinds: BTreeSet<(Scope, String, String)>,
    /// What `kinds` may hold, per namespace and in all: events and owner references may name
    /// any kind, chosen by whoever creates them.
    budget: Budget,
    /// (namespace, reason) already warned about: a Deployment naming 10,000 kinds warns once.
    warned: BTreeSet<(String, Rejected)>,
    /// Every watch task: they end with their tokens, and cannot outlive the manager (dropping a
    /// JoinSet aborts what it holds).
    tasks: JoinSet<()>,
}

/// A poisoned lock (a panic elsewhere while holding it) leaves state still worth reading.
pub(super) fn lock<S>(m: &Mutex<S>) -> MutexGuard<'_, S> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T: Send + 'static> WatchManager<T> {
    pub fn new(
        client: Client,
        input: mpsc::Sender<T>,
        decode: Decode<T>,
        settings: Settings,
        stop: CancellationToken,
    ) -> Self {
        let shared = Shared {
            resolver: tokio::sync::Mutex::new(KindResolver::new(client.clone())),
            client,
            input,
            decode,
            refusals: Refusals::default(),
            listed: Mutex::default(),
            cluster_wide: Mutex::default(),
            // A child: dropping the manager stops its watches, not whatever else `stop` stops.
            root: stop.child_token(),
            max_event_age: settings.max_event_age,
            counts: WatchCounts::default(),
            state: Mutex::new(State {
                scopes: BTreeMap::new(),
                kinds: BTreeSet::new(),
                budget: Budget::default(),
                warned: BTreeSet::new(),
                tasks: JoinSet::new(),
            }),
        };
        WatchManager {
            shared: Arc::new(shared),
        }
    }

    /// Starts watching scopes newly covered, stops those no longer covered.
    pub fn set_scopes(&self, desired: &BTreeSet<Scope>) {
        let shared = &self.shared;
        let mut state = lock(&shared.state);
        let gone: Vec<Scope> = state
            .scopes
            .keys()
            .filter(|s| !desired.contains(*s))
            .cloned()
            .collect();
        for scope in &gone {
            if let Some(token) = state.scopes.remove(scope) {
                token.cancel();
            }
            state.kinds.retain(|(s, _, _)| s != scope);
            if let Scope::Namespace(ns) = scope {
                state.budget.release(ns);
                state.warned.retain(|(n, _)| n != ns);
                shared.refusals.forget_namespace(ns);
            }
            lock(&shared.listed).remove(scope);
            tracing::info!(?scope, "stopped watching");
        }
        for scope in desired {
            if !state.scopes.contains_key(scope) {
                // Covered anew: listed only once this watch has (a stopped one may have said so).
                lock(&shared.listed).remove(scope);
                shared.start_scope(&mut state, scope);
            }
        }
    }

    /// Restarts a covered scope's watches, its Event watch and those of every kind followed
    /// there, so their initial lists are delivered again (for an engine that newly covers a
    /// namespace other engines already watch). Cluster-scoped kinds keep their one watch.
    pub fn relist(&self, scope: &Scope) {
        let shared = &self.shared;
        let mut state = lock(&shared.state);
        let Some(token) = state.scopes.remove(scope) else {
            return;
        };
        token.cancel();
        let kinds: Vec<(Scope, String, String)> = state
            .kinds
            .iter()
            .filter(|(s, _, _)| s == scope)
            .cloned()
            .collect();
        state.kinds.retain(|(s, _, _)| s != scope);
        tracing::info!(
            ?scope,
            kinds = kinds.len(),
            "listing again for a new engine"
        );
        shared.start_scope(&mut state, scope);
        for (scope, api_version, kind) in kinds {
            shared.follow(&mut state, &scope, &api_version, &kind);
        }
    }

    /// Makes sure objects of a kind are watched in the scope covering `namespace` (once;
    /// discovery runs in the watch task, so this never waits). A cluster-scoped kind (Node)
    /// gets one watch in all. A kind that is malformed, or beyond the namespace's or the
    /// manager's budget, is counted and ignored.
    pub fn ensure_kind(&self, api_version: &str, kind: &str, namespace: &str) {
        self.shared.ensure_kind(api_version, kind, namespace);
    }

    /// Cancels every watch and waits for their tasks to end: what they had to deliver has been
    /// handed to the channel (or dropped, if nothing listens any more).
    pub async fn stop(self) {
        self.shared.root.cancel();
        let mut tasks = std::mem::take(&mut lock(&self.shared.state).tasks);
        while let Some(ended) = tasks.join_next().await {
            if let Err(error) = ended {
                tracing::error!(%error, "a watch task failed");
            }
        }
    }

    pub fn scopes(&self) -> BTreeSet<Scope> {
        lock(&self.shared.state).scopes.keys().cloned().collect()
    }

    /// Whether the Event watch of a covered scope has listed since it started.
    pub fn listed(&self, scope: &Scope) -> bool {
        lock(&self.shared.state).scopes.contains_key(scope)
            && lock(&self.shared.listed).contains(scope)
    }

    /// Watches given up because the API server kept refusing them.
    pub fn refused(&self) -> Vec<Refusal> {
        self.shared.refusals.list()
    }

    /// Kinds not followed, by reason (the metric label), since start.
    pub fn kinds_rejected(&self) -> Vec<(&'static str, u64)> {
        lock(&self.shared.state)
            .budget
            .rejected()
            .map(|(r, n)| (r.reason(), n))
            .collect()
    }

    /// The (scope, apiVersion, kind) followed.
    pub fn kinds(&self) -> BTreeSet<(Scope, String, String)> {
        lock(&self.shared.state).kinds.clone()
    }

    pub fn counts(&self) -> &WatchCounts {
        &self.shared.counts
    }
}

impl<T: Send + 'static> Drop for WatchManager<T> {
    fn drop(&mut self) {
        // The tasks hold the shared state: they end here, not when the last of them does.
        self.shared.root.cancel();
        std::mem::take(&mut lock(&self.shared.state).tasks).abort_all();
    }
}

impl<T: Send + 'static> Shared<T> {
    /// Decodes and sends a delivery.
    pub async fn deliver(&self, delivery: Delivery) -> Decoded {
        let Some(item) = (self.decode)(delivery) else {
            return Decoded::Skipped;
        };
        match self.input.send(item).await {
            Ok(()) => Decoded::Sent,
            Err(_) => Decoded::Closed,
        }
    }

    /// Sends without waiting, for a watch that stops (the consumer may be stopping too).
    pub fn try_deliver(&self, delivery: Delivery) {
        if let Some(item) = (self.decode)(delivery) {
            let _ = self.input.try_send(item);
        }
    }

    pub fn mark_listed(&self, scope: &Scope) {
        lock(&self.listed).insert(scope.clone());
    }

    pub fn ensure_kind(self: &Arc<Self>, api_version: &str, kind: &str, namespace: &str) {
        let mut state = lock(&self.state);
        let scope = Scope::Namespace(namespace.to_string());
        let scope = if state.scopes.contains_key(&scope) {
            scope
        } else if state.scopes.contains_key(&Scope::AllNamespaces) {
            Scope::AllNamespaces
        } else {
            return;
        };
        let api_version = gvk(api_version, kind).api_version();
        // Looked up only if valid: a kind of a megabyte is not copied into a key.
        if valid_kind(&api_version, kind)
            && state
                .kinds
                .contains(&(scope.clone(), api_version.clone(), kind.to_string()))
        {
            return;
        }
        // Rejections are not remembered (that set would be unbounded too): a kind refused is
        // counted again each time an event or an object names it.
        if let Err(rejected) = state.budget.admit(namespace, &api_version, kind) {
            if state.warned.insert((namespace.to_string(), rejected)) {
                let kind: String = kind.chars().take(80).collect();
                tracing::warn!(%kind, %namespace, %rejected, "kind not watched; more kinds rejected here for this reason are only counted (eventspan_watch_kinds_rejected_total)");
            }
            return;
        }
        self.follow(&mut state, &scope, &api_version, kind);
    }

    /// Starts the watch of an admitted kind in a covered scope.
    fn follow(self: &Arc<Self>, state: &mut State, scope: &Scope, api_version: &str, kind: &str) {
        let Some(token) = state.scopes.get(scope).cloned() else {
            return;
        };
        state
            .kinds
            .insert((scope.clone(), api_version.to_string(), kind.to_string()));
        let span = info_span!("watch_objects", ?scope, %api_version, %kind);
        let watch = tasks::watch_kind(
            self.clone(),
            scope.clone(),
            api_version.to_string(),
            kind.to_string(),
            token,
        );
        spawn(state, watch, span);
    }

    fn start_scope(self: &Arc<Self>, state: &mut State, scope: &Scope) {
        let token = self.root.child_token();
        state.scopes.insert(scope.clone(), token.clone());
        tracing::info!(?scope, "watching events");
        let span = info_span!("watch_events", ?scope);
        spawn(
            state,
            tasks::watch_events(self.clone(), scope.clone(), token),
            span,
        );
    }
}

/// What became of a delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Decoded {
    Sent,
    Skipped,
    Closed,
}

/// Runs a watch task, tracked; forgets those that have ended.
fn spawn(state: &mut State, task: impl Future<Output = ()> + Send + 'static, span: tracing::Span) {
    while let Some(ended) = state.tasks.try_join_next() {
        if let Err(error) = ended {
            tracing::error!(%error, "a watch task failed");
        }
    }
    state.tasks.spawn(task.instrument(span));
}

#[cfg(test)]
mod tests;

//! The one watch manager, shared by `eventspan record` and the operator: one Event watch per
//! scope covered, and one watch of objects per kind and scope, started when an event's
//! `regarding` or an object's owner reference first names the kind (within [`Budget`](super::kinds::Budget)). What
//! the watches deliver goes out on one channel, decoded by the consumer's function in the
//! watch's own task.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Client;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span};

use super::delivery::Decode;
use super::kinds::{KindResolver, gvk, valid_kind};
use super::shared::{Shared, State, WatchCounts, lock};
use super::tasks;
use super::{Refusal, Refusals, Scope};

#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Events a watch's (re)list delivers that are older than this are marked as history
    /// ([`Delivery::Event::history_before`]); `None`: none are.
    pub max_event_age: Option<Duration>,
}

pub struct WatchManager<T: Send + 'static> {
    shared: Arc<Shared<T>>,
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
            follow_kind: ensure_kind,
            refusals: Refusals::default(),
            listed: Mutex::default(),
            cluster_wide: Mutex::default(),
            // A child: dropping the manager stops its watches, not whatever else `stop` stops.
            root: stop.child_token(),
            max_event_age: settings.max_event_age,
            counts: WatchCounts::default(),
            state: Mutex::new(State::default()),
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
                start_scope(shared, &mut state, scope);
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
        start_scope(shared, &mut state, scope);
        for (scope, api_version, kind) in kinds {
            follow(shared, &mut state, &scope, &api_version, &kind);
        }
    }

    /// Makes sure objects of a kind are watched in the scope covering `namespace` (once;
    /// discovery runs in the watch task, so this never waits). A cluster-scoped kind (Node)
    /// gets one watch in all. A kind that is malformed, or beyond the namespace's or the
    /// manager's budget, is counted and ignored.
    pub fn ensure_kind(&self, api_version: &str, kind: &str, namespace: &str) {
        ensure_kind(&self.shared, api_version, kind, namespace);
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

/// [`FollowKind`] of the manager's tasks, and what [`WatchManager::ensure_kind`] does.
fn ensure_kind<T: Send + 'static>(
    shared: &Arc<Shared<T>>,
    api_version: &str,
    kind: &str,
    namespace: &str,
) {
    let mut state = lock(&shared.state);
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
    follow(shared, &mut state, &scope, &api_version, kind);
}

/// Starts the watch of an admitted kind in a covered scope.
fn follow<T: Send + 'static>(
    shared: &Arc<Shared<T>>,
    state: &mut State,
    scope: &Scope,
    api_version: &str,
    kind: &str,
) {
    let Some(token) = state.scopes.get(scope).cloned() else {
        return;
    };
    state
        .kinds
        .insert((scope.clone(), api_version.to_string(), kind.to_string()));
    let span = info_span!("watch_objects", ?scope, %api_version, %kind);
    let watch = tasks::watch_kind(
        shared.clone(),
        scope.clone(),
        api_version.to_string(),
        kind.to_string(),
        token,
    );
    spawn(state, watch, span);
}

fn start_scope<T: Send + 'static>(shared: &Arc<Shared<T>>, state: &mut State, scope: &Scope) {
    let token = shared.root.child_token();
    state.scopes.insert(scope.clone(), token.clone());
    tracing::info!(?scope, "watching events");
    let span = info_span!("watch_events", ?scope);
    spawn(
        state,
        tasks::watch_events(shared.clone(), scope.clone(), token),
        span,
    );
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

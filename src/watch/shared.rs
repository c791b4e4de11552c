//! What the watch manager and its watch tasks share. A leaf below both: the tasks follow the
//! kinds they see through [`Shared::ensure_kind`], which calls back into the manager through a
//! function it gave at construction, so the tasks never name the manager (and the manager's
//! module, which starts the tasks, is the only one that names both).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kube::Client;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::delivery::{Decode, Decoded, Delivery};
use super::kinds::{Budget, KindResolver, Rejected};
use super::{Refusals, Scope};

/// Live watch counts, for metrics.
#[derive(Default)]
pub struct WatchCounts {
    pub events: AtomicI64,
    pub metadata: AtomicI64,
    /// Lists a running watch started again: its resourceVersion had expired (410 Gone, after an
    /// etcd compaction or an API-server restart), so it re-listed everything. Each re-list is a
    /// chance to deliver old events twice (a listed event's age is checked anew at each list),
    /// hence worth counting.
    pub event_relists: AtomicU64,
    pub metadata_relists: AtomicU64,
}

/// How a kind named by a delivery is followed: `(shared, api_version, kind, namespace)`.
pub(super) type FollowKind<T> = fn(&Arc<Shared<T>>, &str, &str, &str);

/// The manager's state and the tasks' common needs: the tasks follow the kinds they see
/// themselves.
pub(super) struct Shared<T> {
    pub client: Client,
    pub input: mpsc::Sender<T>,
    pub decode: Decode<T>,
    pub follow_kind: FollowKind<T>,
    pub resolver: tokio::sync::Mutex<KindResolver>,
    pub refusals: Refusals,
    pub listed: Mutex<BTreeSet<Scope>>,
    /// Cluster-scoped kinds being watched: one watch each, whichever scope asked first.
    pub cluster_wide: Mutex<BTreeSet<(String, String)>>,
    pub root: CancellationToken,
    pub max_event_age: Option<Duration>,
    pub counts: WatchCounts,
    pub state: Mutex<State>,
}

/// Which watches run; the manager alone changes it (the tasks through [`FollowKind`]).
#[derive(Default)]
pub(super) struct State {
    /// Covered scopes and the watch token of each (its kinds' watches are children).
    pub scopes: BTreeMap<Scope, CancellationToken>,
    /// (scope, apiVersion, kind) already asked for.
    pub kinds: BTreeSet<(Scope, String, String)>,
    /// What `kinds` may hold, per namespace and in all: events and owner references may name
    /// any kind, chosen by whoever creates them.
    pub budget: Budget,
    /// (namespace, reason) already warned about: a Deployment naming 10,000 kinds warns once.
    pub warned: BTreeSet<(String, Rejected)>,
    /// Every watch task: they end with their tokens, and cannot outlive the manager (dropping a
    /// JoinSet aborts what it holds).
    pub tasks: JoinSet<()>,
}

/// A poisoned lock (a panic elsewhere while holding it) leaves state still worth reading.
pub(super) fn lock<S>(m: &Mutex<S>) -> MutexGuard<'_, S> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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

    /// Makes sure objects of a kind are watched in the scope covering `namespace` (see
    /// [`super::WatchManager::ensure_kind`]).
    pub fn ensure_kind(self: &Arc<Self>, api_version: &str, kind: &str, namespace: &str) {
        (self.follow_kind)(self, api_version, kind, namespace);
    }
}

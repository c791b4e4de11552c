//! The operator's side of the shared watches ([`crate::watch::manager`]): what they deliver to
//! the hub ([`Input`]), and what the hub asks of them ([`WatchControl`]). Sessions only change
//! which namespaces are covered: the number of watches never grows with the number of sessions.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::engine::model::{Change, Observed};
use crate::engine::time::Timestamp;
use crate::watch::{self, Delivery, Refusal, Scope, WatchCounts, WatchType};
use crate::wire::WireObject;

/// The reporting controller of the events eventspan publishes itself; they never feed traces.
pub const OWN_CONTROLLER: &str = "eventspan.dev/operator";

/// What the watches deliver to the hub.
#[derive(Debug)]
pub enum Input {
    /// An event, or an object added, changed or deleted, for [`Engine::apply`]; always with
    /// the time it was observed.
    ///
    /// [`Engine::apply`]: crate::engine::Engine::apply
    Change(Observed),
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

/// The operator's watches: the shared manager, delivering [`Input`].
pub type WatchManager = watch::WatchManager<Input>;

impl WatchControl for WatchManager {
    fn namespaces(&self) -> BTreeSet<String> {
        self.scopes()
            .into_iter()
            .filter_map(|s| match s {
                Scope::Namespace(ns) => Some(ns),
                Scope::AllNamespaces => None,
            })
            .collect()
    }

    fn refused(&self) -> Vec<Refusal> {
        watch::WatchManager::refused(self)
    }

    fn listed(&self, namespace: &str) -> bool {
        watch::WatchManager::listed(self, &Scope::Namespace(namespace.to_string()))
    }

    fn kinds_rejected(&self) -> Vec<(&'static str, u64)> {
        watch::WatchManager::kinds_rejected(self)
    }

    fn counts(&self) -> &WatchCounts {
        watch::WatchManager::counts(self)
    }

    fn set_namespaces(&mut self, desired: &BTreeSet<String>) {
        let scopes = desired.iter().cloned().map(Scope::Namespace).collect();
        self.set_scopes(&scopes);
    }

    /// What they deliver is what a restart of the operator would (events younger than
    /// `--max-event-age`, every object); engines that had them already skip the repeats.
    fn relist_namespace(&mut self, namespace: &str) {
        self.relist(&Scope::Namespace(namespace.to_string()));
    }

    fn ensure_kind(&mut self, api_version: &str, kind: &str, namespace: &str) {
        watch::WatchManager::ensure_kind(self, api_version, kind, namespace);
    }
}

/// Starts the operator's watches: listed events older than `max_event_age` are history.
pub fn watch_manager(
    client: Client,
    input: mpsc::Sender<Input>,
    max_event_age: Duration,
    stop: CancellationToken,
) -> WatchManager {
    let settings = watch::Settings {
        max_event_age: Some(max_event_age),
    };
    watch::WatchManager::new(client, input, decode, settings, stop)
}

/// What the hub gets of a delivery: events and objects decoded for the engine, its own events
/// and listed history left out, a value that cannot be decoded counted as malformed.
fn decode(delivery: Delivery) -> Option<Input> {
    match delivery {
        Delivery::Event {
            watch_type: WatchType::Deleted,
            ..
        } => None,
        Delivery::Event {
            event,
            observed,
            history_before,
            ..
        } => {
            let namespace = event["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let decoded = serde_json::from_value::<WireObject>(event)
                .map_err(DecodeError::from)
                .and_then(|w| w.into_event().map_err(DecodeError::from));
            match decoded {
                Ok(event) if event.reporting_controller == OWN_CONTROLLER => None,
                // Listed events from before this (re)list's cut-off are history: replaying them
                // after every restart or re-list would export old traces again.
                Ok(event) if history_before.is_some_and(|b| event.last.at < b) => None,
                Ok(event) => Some(observed_at(Change::Event(Box::new(event)), observed)),
                Err(error) => Some(Input::Malformed(Malformed {
                    what: format!("event in {namespace}"),
                    error,
                })),
            }
        }
        Delivery::Object {
            watch_type,
            object,
            observed,
        } => {
            let kind = object["kind"].as_str().unwrap_or_default().to_string();
            match serde_json::from_value::<WireObject>(object)
                .map_err(DecodeError::from)
                .and_then(|w| w.into_object_meta().map_err(DecodeError::from))
            {
                Ok(meta) if watch_type == WatchType::Deleted => {
                    Some(observed_at(Change::Delete(Box::new(meta)), observed))
                }
                Ok(meta) => Some(observed_at(Change::Upsert(Box::new(meta)), observed)),
                Err(error) => Some(Input::Malformed(Malformed { what: kind, error })),
            }
        }
        Delivery::StateGap {
            watch,
            namespace,
            interrupted,
        } => Some(Input::StateGap {
            watch,
            namespace,
            interrupted,
        }),
    }
}

fn observed_at(change: Change, at: Timestamp) -> Input {
    Input::Change(Observed {
        change,
        observed_at: Some(at),
    })
}

#[cfg(test)]
mod tests;

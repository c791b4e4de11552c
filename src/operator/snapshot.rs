//! What the hub publishes of its state, for the status writer and the metrics: a leaf, so they
//! read the hub's figures without depending on the hub.

use std::collections::BTreeMap;
use std::fmt;

use super::traces::TraceLog;
use crate::engine::EngineStats;
use crate::export::ExporterStats;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionKey {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct SessionSnapshot {
    pub events_observed: u64,
    pub log: TraceLog,
    pub exporters: Vec<(String, ExporterStats)>,
    /// What exporters the session no longer has (replaced by an edit, or stopped) had done, so
    /// the session's counts never go backwards.
    pub retired: ExporterStats,
    pub namespaces: Vec<String>,
    /// How the session's namespaces are watched (filled in when the hub publishes).
    pub watches: SessionWatches,
}

/// The watches of a session's namespaces, for its `Reconciling`, `Stalled` and `WatchesHealthy`
/// conditions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SessionWatches {
    /// Namespaces whose Event watch has not listed yet: the session is still being brought up.
    pub listing: Vec<String>,
    /// Watches in its namespaces given up after persistent refusals (see `watch::retry`).
    pub refused: Vec<crate::watch::Refusal>,
}

#[derive(Clone, Debug, Default)]
pub struct HubSnapshot {
    pub sessions: BTreeMap<SessionKey, SessionSnapshot>,
    pub engine: EngineStats,
    pub events_received: u64,
    pub malformed: u64,
    pub event_watches: i64,
    pub metadata_watches: i64,
    /// Lists watches started again after their resourceVersion expired, since start.
    pub event_relists: u64,
    pub metadata_relists: u64,
    pub watched_namespaces: usize,
    /// Watches given up after persistent refusals (see `watch::retry`).
    pub watches_refused: Vec<crate::watch::Refusal>,
    /// Kinds not watched, by reason label, since start.
    pub kinds_rejected: Vec<(&'static str, u64)>,
}

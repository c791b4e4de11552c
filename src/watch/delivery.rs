//! What the watches deliver, and what the consumer's decoder makes of it: the types the manager,
//! its tasks and the consumers share.

use std::sync::Arc;

use serde_json::{Value, json};

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

/// What became of a delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Decoded {
    Sent,
    Skipped,
    Closed,
}

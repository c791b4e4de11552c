//! What goes into the engine and what comes out of it.
//!
//! Inputs are already normalised: [`crate::wire`] turns both Event APIs and any object's metadata
//! into these shapes, so the engine never sees JSON.

use std::sync::Arc;

use super::ids::{SpanId, TraceId};
use super::time::Timestamp;

/// The metadata of any Kubernetes object that the engine needs, and nothing more.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObjectMeta {
    pub uid: String,
    pub kind: String,
    pub api_version: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
    /// `metadata.generation`; 0 when the kind has none.
    pub generation: i64,
    pub labels: Vec<(String, String)>,
    pub owners: Vec<OwnerRef>,
    /// The newest managedFields entry that touched `spec`.
    pub spec_change: Option<SpecChange>,
    pub created: Option<Timestamp>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnerRef {
    pub kind: String,
    pub api_version: String,
    pub name: String,
    pub uid: String,
    pub controller: bool,
}

/// Who changed an object's spec, how, and when: the synthesised root span of a trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecChange {
    pub manager: String,
    /// `Update` or `Apply`.
    pub operation: String,
    pub time: Timestamp,
}

/// The object an event is about (`involvedObject` / `regarding`) or mentions (`related`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectRef {
    pub kind: String,
    pub api_version: String,
    pub namespace: String,
    pub name: String,
    /// May be empty: some reporters leave it out.
    pub uid: String,
    pub field_path: String,
}

/// When an occurrence happened, and whether the source had better than one-second precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventTime {
    pub at: Timestamp,
    pub precise: bool,
}

/// A Kubernetes Event of either API group, normalised.
#[derive(Clone, Debug, PartialEq)]
pub struct EventRecord {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub involved: ObjectRef,
    pub related: Option<ObjectRef>,
    pub reason: String,
    /// `message` (core/v1) or `note` (events.k8s.io/v1).
    pub message: String,
    pub warning: bool,
    pub action: String,
    /// `reportingController` / `source.component`.
    pub reporting_controller: String,
    /// `reportingInstance` / `source.host`.
    pub reporting_instance: String,
    /// How many times it has happened so far (1 for a single occurrence).
    pub count: u32,
    pub first: EventTime,
    pub last: EventTime,
    /// Annotated `topLevelSpan: "true"`: the root of its object's trace.
    pub top_level: bool,
}

/// An attribute value of a finished span.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    Str(Arc<str>),
    Int(i64),
    Bool(bool),
}

impl From<&str> for AttrValue {
    fn from(s: &str) -> Self {
        AttrValue::Str(Arc::from(s))
    }
}

impl From<Arc<str>> for AttrValue {
    fn from(s: Arc<str>) -> Self {
        AttrValue::Str(s)
    }
}

impl From<&Arc<str>> for AttrValue {
    fn from(s: &Arc<str>) -> Self {
        AttrValue::Str(s.clone())
    }
}

impl From<i64> for AttrValue {
    fn from(v: i64) -> Self {
        AttrValue::Int(v)
    }
}

impl From<bool> for AttrValue {
    fn from(v: bool) -> Self {
        AttrValue::Bool(v)
    }
}

pub type Attributes = Vec<(&'static str, AttrValue)>;

/// A timestamped annotation inside a span (one per repetition of a repeated event, capped).
#[derive(Clone, Debug, PartialEq)]
pub struct SpanEvent {
    pub time: Timestamp,
    pub name: &'static str,
    pub attributes: Attributes,
}

/// The top-level object whose change a trace describes; sessions match on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceRoot {
    pub kind: Arc<str>,
    pub api_version: Arc<str>,
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    pub uid: Arc<str>,
    pub generation: i64,
    pub labels: Arc<[(Box<str>, Box<str>)]>,
}

impl TraceRoot {
    /// The API group of the root's kind (`apps`, `batch`, `""` for core).
    pub fn group(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map_or("", |(group, _)| group)
    }
}

/// The reporting component a span belongs to: its OTel Resource.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Component {
    pub name: Arc<str>,
    pub instance: Arc<str>,
}

/// A span whose end is settled, ready to export.
#[derive(Clone, Debug, PartialEq)]
pub struct FinishedSpan {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent: Option<SpanId>,
    pub name: String,
    pub component: Component,
    pub start: Timestamp,
    pub end: Timestamp,
    pub error: bool,
    /// A human summary (the event message), for the tree view and status messages.
    pub message: String,
    pub count: u32,
    pub attributes: Attributes,
    pub events: Vec<SpanEvent>,
    pub root: Arc<TraceRoot>,
}

impl FinishedSpan {
    pub fn attribute(&self, key: &str) -> Option<&AttrValue> {
        self.attributes
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }
}

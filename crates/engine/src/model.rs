//! What goes into the engine and what comes out of it.
//!
//! Inputs are already normalised: `eventspan::wire` turns both Event APIs and any object's
//! metadata into these shapes, so the engine never sees JSON.

use std::borrow::Cow;
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
    /// The managedFields entries that touched `spec`: who changed it, how, when.
    pub spec_changes: Vec<SpecChange>,
    pub created: Option<Timestamp>,
    /// `metadata.deletionTimestamp`: when the object's deletion was asked for (a pod's graceful
    /// termination begins).
    pub deleting: Option<Timestamp>,
    /// What the object's status says about its latest change, for the kinds whose progress
    /// eventspan follows; `None` when the source carried no status (a metadata-only watch, an
    /// events-only recording).
    pub state: Option<ObjectState>,
    /// A valid W3C `traceparent` from the annotation `eventspan.dev/traceparent`: the trace of
    /// the pipeline that applied this version of the object.
    pub traceparent: Option<TraceParent>,
    /// Replicas and pod template, for a change summary (kinds with a pod template whose spec is
    /// read: Deployment, StatefulSet, DaemonSet).
    pub template: Option<Box<super::change::TemplateDigest>>,
    /// What a HorizontalPodAutoscaler scales (`spec.scaleTargetRef`), in its own namespace.
    pub scale_target: Option<ScaleTarget>,
}

/// The object an HPA scales: a reference by kind and name, never across namespaces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScaleTarget {
    pub kind: String,
    pub name: String,
}

/// An object's progress, read from its status: enough to end spans when a rollout completes or
/// fails, or a pod becomes Ready, instead of at its last event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectState {
    /// The spec generation the status describes (`status.observedGeneration`; a Job's and a
    /// pod's own generation).
    pub observed_generation: i64,
    /// `None` while in progress.
    pub outcome: Option<Outcome>,
    /// When the status says the outcome came about (the condition's time, whole seconds), if
    /// it says: a status listed long after (an operator restart) is dated by it, not by when it
    /// was seen.
    pub since: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub kind: OutcomeKind,
    /// The condition reason that says so (`NewReplicaSetAvailable`, `BackoffLimitExceeded`).
    pub reason: String,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutcomeKind {
    /// Rolled out, completed, or (a pod) Ready.
    Done,
    Failed,
    /// Deleted before it was done (a pod removed before it became Ready).
    Deleted,
    /// A newer spec generation replaced this one before it was done.
    Superseded,
    /// Not done when eventspan stopped waiting: its rollout ended, or the wait ran out.
    Pending,
}

impl OutcomeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Done => "done",
            OutcomeKind::Failed => "failed",
            OutcomeKind::Deleted => "deleted",
            OutcomeKind::Superseded => "superseded",
            OutcomeKind::Pending => "pending",
        }
    }
}

/// A W3C trace context (`traceparent`, version 00): the remote span a change was made under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// The W3C trace flags (bit 0: sampled).
    pub flags: u8,
}

impl std::fmt::Display for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
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
    /// Missing on entries some subresources write (`kubectl scale` through `/scale`).
    pub time: Option<Timestamp>,
}

impl ObjectMeta {
    /// When the spec last changed, as far as the timed managedFields entries tell.
    pub fn newest_change_time(&self) -> Option<Timestamp> {
        self.spec_changes.iter().filter_map(|c| c.time).max()
    }

    /// When an upsert of this object happened if no one recorded when it was observed: its
    /// newest spec change, else its creation.
    pub fn time_hint(&self) -> Option<Timestamp> {
        self.newest_change_time().or(self.created)
    }
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
    /// Boxed: few events name a related object, and open spans and held events keep their
    /// events (an `ObjectRef` inline is 144 bytes in every one of them).
    pub related: Option<Box<ObjectRef>>,
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
    /// The Git revision a Flux controller annotated the event with
    /// (`kustomize.toolkit.fluxcd.io/revision: main@sha1:...`); empty when none. Exported as
    /// `vcs.ref.head.revision` and `vcs.ref.head.name` (see `vcs.rs`).
    pub revision: String,
    /// A string of it was cut to its byte limit on the way in (see `limits`, which
    /// `eventspan::wire` applies): exported as `eventspan.truncated`.
    pub truncated: bool,
    /// Not reported by Kubernetes: made by the engine from an object's state, for a
    /// controller's event that never came (see `place.rs`). Exported as `eventspan.derived`.
    pub derived: bool,
}

impl ObjectRef {
    fn heap_bytes(&self) -> usize {
        self.kind.len()
            + self.api_version.len()
            + self.namespace.len()
            + self.name.len()
            + self.uid.len()
            + self.field_path.len()
    }
}

impl EventRecord {
    /// What the event holds, boxed: the struct and its strings (as the byte caps count it).
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<EventRecord>()
            + self.uid.len()
            + self.name.len()
            + self.namespace.len()
            + self.involved.heap_bytes()
            + self
                .related
                .as_ref()
                .map_or(0, |r| std::mem::size_of::<ObjectRef>() + r.heap_bytes())
            + self.reason.len()
            + self.message.len()
            + self.action.len()
            + self.reporting_controller.len()
            + self.reporting_instance.len()
            + self.revision.len()
    }
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

/// Attributes shared by the spans on one object: its name, uid, namespace and node, and its
/// owners'.
pub type SharedAttributes = Arc<[(&'static str, AttrValue)]>;

/// A borrowed attribute value, for reading attributes without copying them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AttrRef<'a> {
    Str(&'a str),
    Int(i64),
    Bool(bool),
}

impl<'a> From<&'a AttrValue> for AttrRef<'a> {
    fn from(v: &'a AttrValue) -> Self {
        match v {
            AttrValue::Str(s) => AttrRef::Str(s),
            AttrValue::Int(i) => AttrRef::Int(*i),
            AttrValue::Bool(b) => AttrRef::Bool(*b),
        }
    }
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
    /// The `traceparent` the change was applied with (annotation `eventspan.dev/traceparent`),
    /// if it carried a fresh one.
    pub traceparent: Option<TraceParent>,
    /// When the change started, fixed when the change was first recorded (the same for every
    /// span of the trace, whatever order they are emitted in); `None` for traces of objects whose
    /// generations are unknown.
    pub started: Option<Timestamp>,
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Component<'a> {
    pub name: &'a str,
    pub instance: &'a str,
}

/// Stands in for a component's name or instance that its source did not give.
pub const UNKNOWN_COMPONENT: &str = "unknown";

/// What a synthesised root (a trace root no event marked) is named from: its spec change.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthesizedRoot {
    /// `<Kind>.<operation>` of the change (`Deployment.Apply`).
    pub name: Arc<str>,
    /// The field manager that made the change (`kubectl-client-side-apply`, `helm`, `flux`):
    /// the root's component.
    pub manager: Option<Arc<str>>,
    /// What a person reads about it, in place of an event's message.
    pub summary: String,
}

/// A span whose end is settled, ready to export.
///
/// The event it was made from is kept whole and its name, component and attributes are derived
/// when read, so the engine copies no strings to emit a span.
#[derive(Clone, Debug, PartialEq)]
pub struct FinishedSpan {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent: Option<SpanId>,
    pub start: Timestamp,
    pub end: Timestamp,
    pub error: bool,
    /// The event's repeat count (cumulative, as Kubernetes reports it).
    pub count: u32,
    /// The count this span's first occurrence had: `count - first_count + 1` repetitions.
    pub first_count: u32,
    /// The event the span was made from; `None` for a synthesised root.
    pub event: Option<Box<EventRecord>>,
    /// What a synthesised root is named from; `None` for a span made from an event (boxed:
    /// one span in many is a synthesised root).
    pub synthesized: Option<Box<SynthesizedRoot>>,
    /// The names and uids of the span's object and its owners, its namespace and node.
    pub object_attributes: SharedAttributes,
    /// What else the engine knows besides the event: the child acted on, root facts, outcome.
    pub attributes: Attributes,
    /// Times and counts of repetitions (capped): exported as span events.
    pub repeats: Vec<(Timestamp, u32)>,
    /// Exported before its end was known, because its session or the operator stopped.
    pub incomplete: bool,
    pub root: Arc<TraceRoot>,
}

/// `spec.containers{nginx}` → `nginx`.
pub(crate) fn container_name(field_path: &str) -> Option<&str> {
    let rest = field_path.strip_prefix("spec.")?;
    let open = rest.find('{')?;
    matches!(
        &rest[..open],
        "containers" | "initContainers" | "ephemeralContainers"
    )
    .then(|| rest[open + 1..].strip_suffix('}'))
    .flatten()
}

impl FinishedSpan {
    /// `<involved kind>.<reason>` (`Pod.Pulling`), or a synthesised root's
    /// `<Kind>.<operation>`.
    pub fn name(&self) -> Cow<'_, str> {
        match self.name_parts() {
            (kind, Some(reason)) => Cow::Owned(format!("{kind}.{reason}")),
            (name, None) => Cow::Borrowed(name),
        }
    }

    /// The name's two parts, when it has two, so a writer can write it without building it.
    pub fn name_parts(&self) -> (&str, Option<&str>) {
        match (&self.event, &self.synthesized) {
            (Some(ev), _) => (&ev.involved.kind, Some(&ev.reason)),
            (None, Some(root)) => (&root.name, None),
            (None, None) => (UNKNOWN_COMPONENT, None),
        }
    }

    /// The component that reported the event (`reportingController`, `reportingInstance`), or
    /// for a synthesised root the manager of the spec change.
    pub fn component(&self) -> Component<'_> {
        fn or_unknown(s: &str) -> &str {
            if s.is_empty() { UNKNOWN_COMPONENT } else { s }
        }
        match &self.event {
            Some(ev) => Component {
                name: or_unknown(&ev.reporting_controller),
                instance: or_unknown(&ev.reporting_instance),
            },
            None => Component {
                name: self
                    .synthesized
                    .as_ref()
                    .and_then(|r| r.manager.as_deref())
                    .map_or(UNKNOWN_COMPONENT, or_unknown),
                instance: UNKNOWN_COMPONENT,
            },
        }
    }

    /// What a person reads about this span: the event's message.
    pub fn message(&self) -> &str {
        match (&self.event, &self.synthesized) {
            (Some(event), _) => &event.message,
            (None, Some(root)) => &root.summary,
            (None, None) => "",
        }
    }

    /// Every attribute, the engine's first, then the event's (named as the OpenTelemetry
    /// Collector's k8s events receiver names them).
    pub fn all_attributes(&self) -> Vec<(&'static str, AttrRef<'_>)> {
        let mut out: Vec<(&'static str, AttrRef<'_>)> =
            Vec::with_capacity(self.object_attributes.len() + self.attributes.len() + 14);
        let engine_attributes = self.object_attributes.iter().chain(&self.attributes);
        out.extend(engine_attributes.map(|(k, v)| (*k, AttrRef::from(v))));
        if self.incomplete {
            out.push(("eventspan.incomplete", AttrRef::Bool(true)));
        }
        let Some(ev) = &self.event else { return out };
        let non_empty = |s: &str| !s.is_empty();
        out.push(("k8s.event.uid", AttrRef::Str(&ev.uid)));
        out.push(("k8s.event.name", AttrRef::Str(&ev.name)));
        out.push(("k8s.event.reason", AttrRef::Str(&ev.reason)));
        out.push(("k8s.event.message", AttrRef::Str(&ev.message)));
        out.push((
            "k8s.event.type",
            AttrRef::Str(if ev.warning { "Warning" } else { "Normal" }),
        ));
        out.push(("k8s.event.count", AttrRef::Int(i64::from(self.count))));
        if non_empty(&ev.action) {
            out.push(("k8s.event.action", AttrRef::Str(&ev.action)));
        }
        out.push(("k8s.object.kind", AttrRef::Str(&ev.involved.kind)));
        out.push(("k8s.object.name", AttrRef::Str(&ev.involved.name)));
        for (key, value) in [
            ("k8s.object.uid", &ev.involved.uid),
            ("k8s.object.api_version", &ev.involved.api_version),
            ("k8s.object.fieldpath", &ev.involved.field_path),
        ] {
            if non_empty(value) {
                out.push((key, AttrRef::Str(value)));
            }
        }
        out.extend(
            super::vcs::attributes(&ev.revision)
                .into_iter()
                .map(|(key, value)| (key, AttrRef::Str(value))),
        );
        if let Some(container) = container_name(&ev.involved.field_path) {
            out.push(("k8s.container.name", AttrRef::Str(container)));
        }
        if ev.truncated {
            out.push(("eventspan.truncated", AttrRef::Bool(true)));
        }
        if ev.derived {
            out.push(("eventspan.derived", AttrRef::Str("state")));
        }
        if self.count > self.first_count {
            out.push((
                "eventspan.repeats",
                AttrRef::Int(i64::from(self.count - self.first_count + 1)),
            ));
        }
        out
    }

    pub fn attribute(&self, key: &str) -> Option<AttrRef<'_>> {
        self.all_attributes()
            .into_iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::container_name;

    #[test]
    fn container_from_field_path() {
        assert_eq!(container_name("spec.containers{nginx}"), Some("nginx"));
        assert_eq!(container_name("spec.initContainers{init}"), Some("init"));
        assert_eq!(container_name("spec.volumes{x}"), None);
        assert_eq!(container_name(""), None);
    }
}

/// What a value in a stream asks of the engine.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    // Boxed, like events: a change is moved through channels and buffers a few times, and an
    // unboxed ObjectMeta would make every change, events included, its size.
    Upsert(Box<ObjectMeta>),
    Delete(Box<ObjectMeta>),
    Event(Box<EventRecord>),
    /// Nothing for the engine: a bookmark, or an Event being garbage-collected.
    Ignore,
}

/// One change with the time it was observed, if the source recorded it.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub change: Change,
    pub observed_at: Option<Timestamp>,
}

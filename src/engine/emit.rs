//! Turning a settled open span into a [`FinishedSpan`]: names, attributes, Resource.
//!
//! Attribute names follow the OpenTelemetry semantic conventions for Kubernetes (`k8s.*`) and the
//! names the OpenTelemetry Collector's k8s events receiver uses for events (`k8s.event.*`,
//! `k8s.object.*`), so spans join with other telemetry of the same objects.

use std::sync::Arc;

use super::ids::SpanId;
use super::model::{Attributes, Component, FinishedSpan, OutcomeKind, TraceRoot};
use super::objects::{ObjEntry, ObjId, ObjectTable};
use super::spans::{OpenSpan, Source, TraceState};

/// The semantic-convention attribute names for an object kind's name and uid.
const SEMCONV: &[(&str, &str, &str)] = &[
    ("Pod", "k8s.pod.name", "k8s.pod.uid"),
    ("ReplicaSet", "k8s.replicaset.name", "k8s.replicaset.uid"),
    ("Deployment", "k8s.deployment.name", "k8s.deployment.uid"),
    ("StatefulSet", "k8s.statefulset.name", "k8s.statefulset.uid"),
    ("DaemonSet", "k8s.daemonset.name", "k8s.daemonset.uid"),
    ("Job", "k8s.job.name", "k8s.job.uid"),
    ("CronJob", "k8s.cronjob.name", "k8s.cronjob.uid"),
    ("Node", "k8s.node.name", "k8s.node.uid"),
    (
        "ReplicationController",
        "k8s.replicationcontroller.name",
        "k8s.replicationcontroller.uid",
    ),
    ("HorizontalPodAutoscaler", "k8s.hpa.name", "k8s.hpa.uid"),
    (
        "PersistentVolumeClaim",
        "k8s.persistentvolumeclaim.name",
        "k8s.persistentvolumeclaim.uid",
    ),
    ("Namespace", "k8s.namespace.name", "k8s.namespace.uid"),
];
const NODE_BIT: u32 = 7;
const NAMESPACE_BIT: u32 = 11;
/// Not a kind: marks that an owner in the chain was guessed from a name.
const GUESSED_BIT: u32 = 31;
/// Owner chains are walked at most this deep for attributes.
const MAX_CHAIN: usize = 16;

/// The row of [`SEMCONV`] for a kind, if it has semantic-convention attributes.
pub(crate) fn semconv_slot(kind: &str) -> Option<u8> {
    SEMCONV
        .iter()
        .position(|(k, _, _)| *k == kind)
        .map(|i| i as u8)
}

/// Adds `k8s.<kind>.name/uid` of an object unless a previous object of the same kind did.
fn push_object(obj: &ObjEntry, seen: &mut u32, attrs: &mut Attributes) {
    let Some(i) = obj.semconv.map(usize::from) else {
        return;
    };
    if *seen & (1 << i) != 0 {
        return;
    }
    *seen |= 1 << i;
    let (_, name_key, uid_key) = SEMCONV[i];
    attrs.push((name_key, (&obj.name).into()));
    if let Some(uid) = &obj.uid {
        attrs.push((uid_key, uid.into()));
    }
}

/// `k8s.<kind>.name/uid` of an object and of every owner above it, its namespace and node.
/// Returns which kinds were named, so a caller adding more objects does not repeat them.
fn object_attributes(objects: &mut ObjectTable, id: ObjId, attrs: &mut Attributes) -> u32 {
    let mut seen = 0u32;
    let mut current = Some(id);
    for _ in 0..MAX_CHAIN {
        let Some(oid) = current else { break };
        let Some(obj) = objects.get(oid) else { break };
        if seen & (1 << NAMESPACE_BIT) == 0 && !obj.namespace.is_empty() {
            seen |= 1 << NAMESPACE_BIT;
            attrs.push(("k8s.namespace.name", (&obj.namespace).into()));
        }
        push_object(obj, &mut seen, attrs);
        if obj.owner_guessed && seen & (1 << GUESSED_BIT) == 0 {
            seen |= 1 << GUESSED_BIT;
            attrs.push(("eventspan.owner.guessed_from_name", true.into()));
        }
        if let Some(node) = obj.node.as_ref().filter(|_| seen & (1 << NODE_BIT) == 0) {
            seen |= 1 << NODE_BIT;
            attrs.push(("k8s.node.name", node.into()));
        }
        current = objects.owner_of(oid).filter(|o| *o != id);
    }
    seen
}

/// The Arc-shared description of a trace's root object, attached to each of its spans.
pub(crate) fn trace_root(objects: &ObjectTable, trace: &TraceState) -> Arc<TraceRoot> {
    let obj = objects.get(trace.root_object);
    let change = objects.change(trace.root_object, trace.generation);
    let empty: Arc<str> = Arc::from("");
    Arc::new(TraceRoot {
        kind: obj.map_or(empty.clone(), |o| o.kind.clone()),
        api_version: obj.map_or(empty.clone(), |o| o.api_version.clone()),
        namespace: obj.map_or(empty.clone(), |o| o.namespace.clone()),
        name: obj.map_or(empty.clone(), |o| o.name.clone()),
        uid: obj.and_then(|o| o.uid.clone()).unwrap_or(empty),
        generation: trace.generation,
        labels: obj
            .and_then(|o| o.root.as_ref())
            .map_or_else(|| Arc::from(Vec::new()), |r| r.labels.clone()),
        traceparent: change.and_then(|c| c.traceparent.as_deref().copied()),
        started: change.map(|c| c.started),
    })
}

pub(crate) struct EmitContext<'a> {
    pub objects: &'a mut ObjectTable,
    pub trace: &'a TraceState,
    pub root: &'a Arc<TraceRoot>,
    pub unknown: &'a Arc<str>,
    /// Scratch space for span names, which are interned: a few distinct kind/reason pairs.
    pub name_buf: &'a mut String,
}

fn span_name(cx: &mut EmitContext<'_>, kind: &str, what: &str) -> Arc<str> {
    cx.name_buf.clear();
    cx.name_buf.push_str(kind);
    cx.name_buf.push('.');
    cx.name_buf.push_str(what);
    cx.objects.strings.intern(cx.name_buf)
}

pub(crate) fn finish(span_id: SpanId, span: OpenSpan, mut cx: EmitContext<'_>) -> FinishedSpan {
    let end = span.final_end();
    let mut start = span.start;
    let mut attrs: Attributes = Vec::with_capacity(12);
    let (name, component, summary, error, event) = match span.source {
        Source::SyntheticRoot => {
            let change = cx
                .objects
                .change(cx.trace.root_object, cx.trace.generation)
                .cloned();
            // The change time may have been refined since the trace started (an estimate from
            // an earlier observation of the same generation).
            if let Some(t) = change.as_ref().map(|c| c.time)
                && t < start
                && start.since(t) <= super::MAX_ROOT_LEAD
            {
                start = t;
            }
            let operation = change.as_ref().and_then(|c| c.operation.clone());
            let manager = change.as_ref().and_then(|c| c.manager.clone());
            attrs.push(("eventspan.root.synthesized", true.into()));
            attrs.push(("eventspan.root.generation", cx.trace.generation.into()));
            if let Some(op) = &operation {
                attrs.push(("eventspan.root.operation", op.into()));
            }
            if let Some(m) = &manager {
                attrs.push(("eventspan.root.manager", m.into()));
            }
            object_attributes(cx.objects, span.subject, &mut attrs);
            let kind = cx.root.kind.clone();
            let name = span_name(&mut cx, &kind, operation.as_deref().unwrap_or("Change"));
            let component = Component {
                name: manager.unwrap_or_else(|| cx.unknown.clone()),
                instance: cx.unknown.clone(),
            };
            let summary = format!(
                "{} {}/{} generation {}",
                cx.root.kind, cx.root.namespace, cx.root.name, cx.trace.generation
            );
            (name, component, summary, false, None)
        }
        Source::Event(ev) => {
            if span.parent.is_none() {
                attrs.push(("eventspan.root.generation", cx.trace.generation.into()));
            }
            let mut seen = object_attributes(cx.objects, span.subject, &mut attrs);
            if let Some(obj) = span.about.and_then(|about| cx.objects.get(about)) {
                push_object(obj, &mut seen, &mut attrs);
                attrs.push(("eventspan.child.kind", (&obj.kind).into()));
                attrs.push(("eventspan.child.name", (&obj.name).into()));
            }
            let mut interned = |s: &str| {
                if s.is_empty() {
                    cx.unknown.clone()
                } else {
                    cx.objects.strings.intern(s)
                }
            };
            let component = Component {
                name: interned(&ev.reporting_controller),
                instance: interned(&ev.reporting_instance),
            };
            let name = span_name(&mut cx, &ev.involved.kind, &ev.reason);
            (name, component, String::new(), ev.warning, Some(ev))
        }
    };
    let mut error = error;
    if let Some(outcome) = &span.outcome {
        attrs.push(("eventspan.outcome", outcome.kind.as_str().into()));
        if !outcome.reason.is_empty() {
            attrs.push(("eventspan.outcome.reason", outcome.reason.as_str().into()));
        }
        if !outcome.message.is_empty() {
            attrs.push(("eventspan.outcome.message", outcome.message.as_str().into()));
        }
        error |= outcome.kind == OutcomeKind::Failed;
    } else if span.awaiting {
        // Its object had not said it was done when the span had to go.
        attrs.push(("eventspan.outcome", OutcomeKind::Pending.as_str().into()));
    }
    FinishedSpan {
        trace_id: span.trace,
        span_id,
        parent: span.parent,
        name,
        component,
        start,
        end,
        error,
        count: span.count,
        first_count: span.first_count,
        event,
        attributes: attrs,
        repeats: span.repeats,
        summary,
        incomplete: false,
        root: cx.root.clone(),
    }
}

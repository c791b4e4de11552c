//! Turning a settled open span into a [`FinishedSpan`]: names, attributes, Resource.
//!
//! Attribute names follow the OpenTelemetry semantic conventions for Kubernetes (`k8s.*`) and the
//! names the OpenTelemetry Collector's k8s events receiver uses for events (`k8s.event.*`,
//! `k8s.object.*`), so spans join with other telemetry of the same objects.

use std::sync::Arc;

use super::model::{
    AttrValue, Attributes, Component, EventRecord, FinishedSpan, SpanEvent, TraceRoot,
};
use super::objects::{ObjId, ObjectTable};
use super::spans::{OpenSpan, Source, TraceState};

/// The semantic-convention attribute names for an object kind's name and uid.
fn semconv_keys(kind: &str) -> Option<(&'static str, &'static str)> {
    Some(match kind {
        "Pod" => ("k8s.pod.name", "k8s.pod.uid"),
        "ReplicaSet" => ("k8s.replicaset.name", "k8s.replicaset.uid"),
        "Deployment" => ("k8s.deployment.name", "k8s.deployment.uid"),
        "StatefulSet" => ("k8s.statefulset.name", "k8s.statefulset.uid"),
        "DaemonSet" => ("k8s.daemonset.name", "k8s.daemonset.uid"),
        "Job" => ("k8s.job.name", "k8s.job.uid"),
        "CronJob" => ("k8s.cronjob.name", "k8s.cronjob.uid"),
        "Node" => ("k8s.node.name", "k8s.node.uid"),
        "ReplicationController" => (
            "k8s.replicationcontroller.name",
            "k8s.replicationcontroller.uid",
        ),
        "HorizontalPodAutoscaler" => ("k8s.hpa.name", "k8s.hpa.uid"),
        "PersistentVolumeClaim" => (
            "k8s.persistentvolumeclaim.name",
            "k8s.persistentvolumeclaim.uid",
        ),
        "Namespace" => ("k8s.namespace.name", "k8s.namespace.uid"),
        _ => return None,
    })
}

fn push_unique(attrs: &mut Attributes, key: &'static str, value: AttrValue) {
    if !attrs.iter().any(|(k, _)| *k == key) {
        attrs.push((key, value));
    }
}

/// `k8s.<kind>.name/uid` of an object and of every owner above it, and its namespace and node.
fn object_attributes(objects: &mut ObjectTable, id: ObjId, attrs: &mut Attributes) {
    let mut chain = vec![id];
    chain.extend(objects.owner_chain(id));
    for (i, oid) in chain.into_iter().enumerate() {
        let Some(obj) = objects.get(oid) else {
            continue;
        };
        if i == 0 && !obj.namespace.is_empty() {
            push_unique(attrs, "k8s.namespace.name", (&obj.namespace).into());
        }
        if let Some((name_key, uid_key)) = semconv_keys(&obj.kind) {
            push_unique(attrs, name_key, (&obj.name).into());
            if let Some(uid) = &obj.uid {
                push_unique(attrs, uid_key, uid.into());
            }
        }
        if let Some(node) = &obj.node {
            push_unique(attrs, "k8s.node.name", node.into());
        }
    }
}

/// `spec.containers{nginx}` → `nginx`.
fn container_name(field_path: &str) -> Option<&str> {
    let rest = field_path.strip_prefix("spec.")?;
    let open = rest.find('{')?;
    let kind = &rest[..open];
    matches!(
        kind,
        "containers" | "initContainers" | "ephemeralContainers"
    )
    .then(|| rest[open + 1..].strip_suffix('}'))
    .flatten()
}

fn event_attributes(ev: &EventRecord, count: u32, attrs: &mut Attributes) {
    attrs.push(("k8s.event.uid", ev.uid.as_str().into()));
    attrs.push(("k8s.event.name", ev.name.as_str().into()));
    attrs.push(("k8s.event.reason", ev.reason.as_str().into()));
    attrs.push(("k8s.event.message", ev.message.as_str().into()));
    attrs.push((
        "k8s.event.type",
        (if ev.warning { "Warning" } else { "Normal" }).into(),
    ));
    attrs.push(("k8s.event.count", i64::from(count).into()));
    if !ev.action.is_empty() {
        attrs.push(("k8s.event.action", ev.action.as_str().into()));
    }
    attrs.push(("k8s.object.kind", ev.involved.kind.as_str().into()));
    attrs.push(("k8s.object.name", ev.involved.name.as_str().into()));
    if !ev.involved.uid.is_empty() {
        attrs.push(("k8s.object.uid", ev.involved.uid.as_str().into()));
    }
    if !ev.involved.api_version.is_empty() {
        attrs.push((
            "k8s.object.api_version",
            ev.involved.api_version.as_str().into(),
        ));
    }
    if !ev.involved.field_path.is_empty() {
        attrs.push((
            "k8s.object.fieldpath",
            ev.involved.field_path.as_str().into(),
        ));
        if let Some(container) = container_name(&ev.involved.field_path) {
            attrs.push(("k8s.container.name", container.into()));
        }
    }
}

/// The Arc-shared description of a trace's root object, attached to each of its spans.
pub(crate) fn trace_root(objects: &ObjectTable, trace: &TraceState) -> Arc<TraceRoot> {
    let obj = objects.get(trace.root_object);
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
    })
}

pub(crate) struct EmitContext<'a> {
    pub objects: &'a mut ObjectTable,
    pub trace: &'a TraceState,
    pub root: &'a Arc<TraceRoot>,
    pub unknown: &'a Arc<str>,
}

pub(crate) fn finish(
    span_id: super::ids::SpanId,
    span: OpenSpan,
    cx: EmitContext<'_>,
) -> FinishedSpan {
    let end = span.final_end();
    let mut attrs: Attributes = Vec::with_capacity(20);
    let (name, component, message, error) = match &span.source {
        Source::SyntheticRoot => {
            let change = cx
                .objects
                .change(cx.trace.root_object, cx.trace.generation)
                .cloned();
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
            let name = format!(
                "{}.{}",
                cx.root.kind,
                operation.as_deref().unwrap_or("Change")
            );
            let component = Component {
                name: manager.unwrap_or_else(|| cx.unknown.clone()),
                instance: cx.unknown.clone(),
            };
            let message = format!(
                "{} {}/{} generation {}",
                cx.root.kind, cx.root.namespace, cx.root.name, cx.trace.generation
            );
            (name, component, message, false)
        }
        Source::Event(ev) => {
            if span.is_root() {
                attrs.push(("eventspan.root.generation", cx.trace.generation.into()));
            }
            object_attributes(cx.objects, span.subject, &mut attrs);
            if let Some(about) = span.about
                && let Some(obj) = cx.objects.get(about)
            {
                if let Some((name_key, uid_key)) = semconv_keys(&obj.kind) {
                    push_unique(&mut attrs, name_key, (&obj.name).into());
                    if let Some(uid) = &obj.uid {
                        push_unique(&mut attrs, uid_key, uid.into());
                    }
                }
                attrs.push(("eventspan.child.kind", (&obj.kind).into()));
                attrs.push(("eventspan.child.name", (&obj.name).into()));
            }
            event_attributes(ev, span.count, &mut attrs);
            if span.count > span.first_count {
                attrs.push((
                    "eventspan.repeats",
                    i64::from(span.count - span.first_count + 1).into(),
                ));
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
            let name = format!("{}.{}", ev.involved.kind, ev.reason);
            (name, component, ev.message.clone(), ev.warning)
        }
    };
    let events = span
        .repeats
        .iter()
        .map(|&(time, count)| SpanEvent {
            time,
            name: "repeat",
            attributes: vec![("k8s.event.count", i64::from(count).into())],
        })
        .collect();
    FinishedSpan {
        trace_id: span.trace,
        span_id,
        parent: span.parent,
        name,
        component,
        start: span.start,
        end,
        error,
        message,
        count: span.count,
        attributes: attrs,
        events,
        root: cx.root.clone(),
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

//! Turning a settled open span into a [`FinishedSpan`]: names, attributes, Resource.
//!
//! Attribute names follow the OpenTelemetry semantic conventions for Kubernetes (`k8s.*`, see
//! `attributes.rs`) and the names the OpenTelemetry Collector's k8s events receiver uses for
//! events (`k8s.event.*`, `k8s.object.*`), so spans join with other telemetry of the same
//! objects.

use std::sync::Arc;

use super::attributes::{AttributeCache, push_object};
use super::change::ChangeSummary;
use super::ids::SpanId;
use super::model::{
    Attributes, EventRecord, FinishedSpan, OutcomeKind, SynthesizedRoot, TraceRoot,
};
use super::objects::ObjectTable;
use super::rules;
use super::spans::{OpenSpan, Source, TraceState};
use super::time::Timestamp;
use super::tolerance::MAX_ROOT_LEAD;

/// The Arc-shared description of a trace's root object, attached to each of its spans.
pub(crate) fn trace_root(objects: &ObjectTable, trace: &TraceState) -> Arc<TraceRoot> {
    let obj = objects.root_identity(trace.root_object);
    let change = objects.change(trace.root_object, trace.generation);
    let empty = || Arc::<str>::from("");
    Arc::new(TraceRoot {
        kind: obj.as_ref().map_or_else(empty, |o| o.kind.clone()),
        api_version: obj.as_ref().map_or_else(empty, |o| o.api_version.clone()),
        namespace: trace.namespace.clone(),
        name: obj.as_ref().map_or_else(empty, |o| o.name.clone()),
        uid: obj
            .as_ref()
            .and_then(|o| o.uid.cloned())
            .unwrap_or_else(empty),
        generation: trace.generation,
        labels: obj
            .and_then(|o| o.labels)
            .map_or_else(|| Arc::from(Vec::new()), Arc::clone),
        traceparent: change.and_then(|c| c.traceparent.as_deref().copied()),
        started: change.map(|c| c.started),
    })
}

pub(crate) struct EmitContext<'a> {
    pub objects: &'a mut ObjectTable,
    pub attributes: &'a mut AttributeCache,
    pub trace: &'a TraceState,
    pub root: &'a Arc<TraceRoot>,
    /// For an event saying a nominee's capacity is up (`rules::is_provisioned`), when its
    /// parent started, if the parent nominated the span's own object (a pod's `Nominated` over
    /// its NodeClaim's `Initialized`): where that object's provisioning began.
    pub nominated_at: Option<Timestamp>,
}

/// Whether the event says its controller created the child it names ("Created pod: X").
fn creates(event: &EventRecord) -> bool {
    rules::apply(&event.involved.kind, &event.reason, &event.message)
        .is_some_and(|m| m.action == rules::Action::Create)
}

/// What a generation changed against the previous one, as a root span's attributes.
fn push_change_summary(summary: &ChangeSummary, attrs: &mut Attributes) {
    attrs.push(("eventspan.change.kind", summary.kind.as_str().into()));
    if !summary.text.is_empty() {
        attrs.push(("eventspan.change.summary", (&*summary.text).into()));
    }
    if let Some((from, to)) = summary.replicas {
        attrs.push(("eventspan.change.replicas.from", from.into()));
        attrs.push(("eventspan.change.replicas.to", to.into()));
    }
}

/// An HPA's rescale at the root of its target's trace (see `applied.rs`): which HPA, the size
/// it set and its reason, as attributes a query can select on (the span's own `k8s.hpa.name`
/// says it too, as the event's object). Only for the HPA's events: any root is named by its
/// object, but only a rescale has a size.
fn push_rescale(event: &EventRecord, attrs: &mut Attributes) {
    if event.involved.kind != "HorizontalPodAutoscaler" || event.reason != "SuccessfulRescale" {
        return;
    }
    attrs.push(("eventspan.trigger.kind", "HorizontalPodAutoscaler".into()));
    attrs.push((
        "eventspan.trigger.name",
        event.involved.name.as_str().into(),
    ));
    let rescale = rules::rescale(&event.message);
    if let Some(size) = rescale.new_size {
        attrs.push(("eventspan.hpa.new_size", size.into()));
    }
    if !rescale.reason.is_empty() {
        attrs.push(("eventspan.hpa.reason", rescale.reason.into()));
    }
}

pub(crate) fn finish(span_id: SpanId, span: OpenSpan, cx: EmitContext<'_>) -> FinishedSpan {
    let end = span.final_end();
    let mut start = span.start;
    // A child acted on and an outcome add up to 7; most spans have neither.
    let extra = if span.about.is_some() || span.outcome.is_some() || span.parent.is_none() {
        8
    } else {
        0
    };
    let mut attrs: Attributes = Vec::with_capacity(extra);
    let (object_attributes, mut seen) = cx.attributes.object_attributes(cx.objects, span.subject);
    let (synthesized, error, event) = match span.source {
        Source::SyntheticRoot => {
            let change = cx
                .objects
                .change(cx.trace.root_object, cx.trace.generation)
                .cloned();
            // The change time may have been refined since the trace started (an estimate from
            // an earlier observation of the same generation).
            if let Some(t) = change.as_ref().map(|c| c.time)
                && t < start
                && start.since(t) <= MAX_ROOT_LEAD
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
            if let Some(summary) = change.as_ref().and_then(|c| c.summary.as_deref()) {
                push_change_summary(summary, &mut attrs);
            }
            let name = format!(
                "{}.{}",
                cx.root.kind,
                operation.as_deref().unwrap_or("Change")
            );
            let summary = format!(
                "{} {}/{} generation {}",
                cx.root.kind, cx.root.namespace, cx.root.name, cx.trace.generation
            );
            let synthesized = SynthesizedRoot {
                name: name.into(),
                manager,
                summary,
            };
            (Some(Box::new(synthesized)), false, None)
        }
        Source::Event { event, warning } => {
            if span.parent.is_none() {
                attrs.push(("eventspan.root.generation", cx.trace.generation.into()));
                // An event that claimed the root (Flux's report of its apply) stands for the
                // change: what it changed is said on it as on a synthesised root.
                let change = cx.objects.change(cx.trace.root_object, cx.trace.generation);
                if let Some(summary) = change.and_then(|c| c.summary.as_deref()) {
                    push_change_summary(summary, &mut attrs);
                }
                push_rescale(&event, &mut attrs);
            }
            let mut nominates = false;
            if let Some(obj) = span.about.and_then(|about| cx.objects.get(about)) {
                push_object(obj, &mut seen, &mut attrs);
                attrs.push(("eventspan.child.kind", (&obj.kind).into()));
                attrs.push(("eventspan.child.name", (&obj.name).into()));
                nominates = rules::is_nominee(&obj.kind);
            }
            // The node an autoscaler brings up for a waiting pod: the nomination (the start of
            // the pod's wait-node phase) and the nominee's own events under it are the cluster's
            // time, whoever looks at them in a trace.
            // cluster-autoscaler's word on the pod opens the same wait as a nomination.
            let verdict = rules::capacity_verdict(&event.involved.kind, &event.reason);
            if nominates || verdict == Some(rules::CapacityVerdict::Requested) {
                attrs.push(("eventspan.phase", "wait-node".into()));
            }
            if nominates || verdict.is_some() || rules::is_nominee(&event.involved.kind) {
                attrs.push(("eventspan.phase.kind", "infra".into()));
            }
            if let Some(nominated) = cx.nominated_at {
                let ms = span.start.since(nominated).as_millis();
                attrs.push((
                    "eventspan.node.provisioning.ms",
                    i64::try_from(ms).unwrap_or(i64::MAX).into(),
                ));
            }
            // The autoscaler will add no node the pod fits: the pod's wait has no end in sight.
            let refused = verdict == Some(rules::CapacityVerdict::Refused);
            if let Some(pod) = span.about
                && creates(&event)
                && let Some(phases) = cx.objects.take_phases(pod)
            {
                let ready = span
                    .outcome
                    .as_ref()
                    .filter(|o| o.kind == OutcomeKind::Done && o.reason == "Ready")
                    .and(span.state_end);
                phases.push_attributes(span.start, ready, &mut attrs);
            }
            (None, warning || refused, Some(event))
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
        parent: span.parent.map(|p| p.id),
        start,
        end,
        error,
        count: span.count,
        first_count: span.first_count,
        event,
        synthesized,
        object_attributes,
        attributes: attrs,
        repeats: span.repeats,
        incomplete: false,
        root: cx.root.clone(),
    }
}

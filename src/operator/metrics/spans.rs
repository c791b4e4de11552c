//! Histograms of what finished spans say: how long rollouts took, how long pods took to become
//! Ready and where that time went (the phases the engine writes on a pod's creation span). Each
//! observation carries its trace ID as an OpenMetrics exemplar (`trace_id`, as Grafana reads
//! it), so a dashboard leads from a slow bucket straight to the trace.
//!
//! The engine stays pure: it only emits spans. These are read off the spans the hub hands to a
//! session (a span no session exports is in no backend, and its exemplar would lead nowhere),
//! once per engine that emitted them.
//!
//! Labels stay bounded: root kinds are the kinds the watches follow (budgeted), outcomes and
//! phases are the engine's own fixed words, provisioned kinds the engine's rule table's. The
//! trace's namespace is a label only of spans that a session asking for it
//! (`spec.metrics.namespaceLabel`) takes, so it ranges over the namespaces such sessions name
//! (at most 64 each); namespaces are the one label whose values users multiply.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::{EncodeLabel, EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::engine::ids::TraceId;
use crate::engine::model::{AttrValue, FinishedSpan, OutcomeKind};
use crate::engine::time::Timestamp;

/// Rollouts: seconds to an hour (a Deployment's default progress deadline is 10 minutes).
const ROLLOUT_BOUNDS: &[f64] = &[
    1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1800.0, 3600.0,
];

/// A pod's creation to Ready: sub-second with a cached image, minutes behind a new node.
const POD_READY_BOUNDS: &[f64] = &[
    0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// A node's provisioning: a KWOK node in seconds, a cloud instance in one to several minutes.
const PROVISIONING_BOUNDS: &[f64] = &[
    1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 900.0,
];

/// One phase: 0 for an image already present, minutes for a node to come up.
const PHASE_BOUNDS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RolloutLabels {
    /// The root object's kind.
    kind: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PodLabels {
    /// The kind of the trace's root (the workload that rolled the pod out).
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
    /// `infra` or `workload`: whose time it was.
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProvisioningLabels {
    /// The kind of the object that stood for the new capacity (a NodeClaim).
    kind: String,
}

/// The trace's namespace, for the spans a session that asked for it takes; no label otherwise
/// (a derived label set has no optional labels: `Option` encodes as an empty value).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct NamespaceLabel(Option<String>);

impl EncodeLabelSet for NamespaceLabel {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> std::fmt::Result {
        match &self.0 {
            Some(namespace) => ("namespace", namespace.as_str()).encode(encoder.encode_label()),
            None => Ok(()),
        }
    }
}

/// The exemplar: the trace as the backend stores it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TraceLabel {
    trace_id: String,
}

/// Histograms by label set `L`, each made by a constructor that knows its bounds.
type Histograms<L> = Family<
    (L, NamespaceLabel),
    HistogramWithExemplars<TraceLabel>,
    fn() -> HistogramWithExemplars<TraceLabel>,
>;

/// The span histograms; clones share them (the hub observes, `/metrics` encodes).
#[derive(Clone, Debug)]
pub struct SpanMetrics {
    rollouts: Histograms<RolloutLabels>,
    pods_ready: Histograms<PodLabels>,
    phases: Histograms<PhaseLabels>,
    provisioning: Histograms<ProvisioningLabels>,
}

impl SpanMetrics {
    pub(super) fn new() -> SpanMetrics {
        SpanMetrics {
            rollouts: Family::new_with_constructor(|| {
                HistogramWithExemplars::new(ROLLOUT_BOUNDS.iter().copied())
            }),
            pods_ready: Family::new_with_constructor(|| {
                HistogramWithExemplars::new(POD_READY_BOUNDS.iter().copied())
            }),
            phases: Family::new_with_constructor(|| {
                HistogramWithExemplars::new(PHASE_BOUNDS.iter().copied())
            }),
            provisioning: Family::new_with_constructor(|| {
                HistogramWithExemplars::new(PROVISIONING_BOUNDS.iter().copied())
            }),
        }
    }

    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "eventspan_rollout_duration_seconds",
            "Seconds from a change of a root object to its outcome (its root span), by root kind and outcome",
            self.rollouts.clone(),
        );
        registry.register(
            "eventspan_pod_ready_seconds",
            "Seconds from a pod's creation to its Ready condition (its creation span), by root kind",
            self.pods_ready.clone(),
        );
        registry.register(
            "eventspan_pod_phase_seconds",
            "Seconds of each phase of a pod's way to Ready, by phase and kind (infra or workload)",
            self.phases.clone(),
        );
        registry.register(
            "eventspan_node_provisioning_seconds",
            "Seconds from an autoscaler's nomination of new capacity for a waiting pod to that capacity being up (a NodeClaim Initialized), by the kind that stood for it",
            self.provisioning.clone(),
        );
    }

    /// A span a session exports, under `trace_id` (the ID its backend has), observed at `at`;
    /// with its trace's namespace as a label if `by_namespace`. Spans exported before their end
    /// was known (`incomplete`) measure nothing.
    pub fn finished(
        &self,
        span: &FinishedSpan,
        trace_id: TraceId,
        at: Timestamp,
        by_namespace: bool,
    ) {
        if span.incomplete {
            return;
        }
        let namespace = NamespaceLabel(by_namespace.then(|| span.root.namespace.to_string()));
        // The span's own attributes only (`FinishedSpan::attribute` gathers its objects' too).
        let value = |key: &str| {
            span.attributes
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v)
        };
        let attribute = |key: &str| match value(key) {
            Some(AttrValue::Str(s)) => Some(&**s),
            _ => None,
        };
        let exemplar = Exemplar {
            trace_id,
            at: system_time(at),
        };
        let duration = span.end.since(span.start);
        let outcome = attribute("eventspan.outcome");
        if span.parent.is_none()
            && let Some(outcome) = outcome
        {
            let labels = RolloutLabels {
                kind: span.root.kind.to_string(),
                outcome: outcome.to_string(),
            };
            exemplar.observe(
                &self.rollouts.get_or_create(&(labels, namespace.clone())),
                duration,
            );
        }
        if let Some(&AttrValue::Int(ms)) = value("eventspan.node.provisioning.ms")
            && let Some(event) = &span.event
        {
            let labels = ProvisioningLabels {
                kind: event.involved.kind.clone(),
            };
            exemplar.observe(
                &self
                    .provisioning
                    .get_or_create(&(labels, namespace.clone())),
                Duration::from_millis(u64::try_from(ms).unwrap_or(0)),
            );
        }
        if attribute("eventspan.child.kind") != Some("Pod") {
            return;
        }
        if outcome == Some(OutcomeKind::Done.as_str())
            && attribute("eventspan.outcome.reason") == Some("Ready")
        {
            let labels = PodLabels {
                kind: span.root.kind.to_string(),
            };
            exemplar.observe(
                &self.pods_ready.get_or_create(&(labels, namespace.clone())),
                duration,
            );
        }
        for (key, value) in &span.attributes {
            let Some(phase) = key
                .strip_prefix("eventspan.phase.")
                .and_then(|k| k.strip_suffix(".ms"))
            else {
                continue;
            };
            // The totals (`infra.ms`, `workload.ms`) have no kind of their own: only phases do.
            let kind = match attribute(&format!("eventspan.phase.{phase}.kind")) {
                Some("infra") => "infra",
                Some("workload") => "workload",
                _ => continue,
            };
            let &AttrValue::Int(ms) = value else {
                continue;
            };
            let labels = PhaseLabels {
                phase: phase.to_string(),
                kind,
            };
            let ms = u64::try_from(ms).unwrap_or(0);
            exemplar.observe(
                &self.phases.get_or_create(&(labels, namespace.clone())),
                Duration::from_millis(ms),
            );
        }
    }
}

/// What each observation of one span carries.
struct Exemplar {
    trace_id: TraceId,
    at: SystemTime,
}

impl Exemplar {
    fn observe(&self, histogram: &HistogramWithExemplars<TraceLabel>, d: Duration) {
        let label = TraceLabel {
            trace_id: self.trace_id.to_string(),
        };
        // Dated by the observation, so Prometheus stores each exemplar once however often it
        // scrapes it (an undated one takes each scrape's time and is stored again).
        histogram.observe(seconds(d), Some(label), Some(self.at));
    }
}

/// Nanoseconds over 1e9, rounded once: `as_secs_f64` adds the fraction to the whole seconds and
/// writes 1.39 s as 1.3900000000000001.
fn seconds(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1e9
}

fn system_time(t: Timestamp) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(u64::try_from(t.unix_nanos()).unwrap_or(0))
}

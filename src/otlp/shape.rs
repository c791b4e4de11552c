//! Per-session shaping of spans as they leave: trace IDs, the remote parent or link of a trace
//! applied with a `traceparent`, and how the reporting component (and the cluster) become the
//! OTel Resource.
//!
//! The engine is shared by all sessions and keeps its deterministic IDs; a session's options are
//! a pure function of a finished span applied where its spans leave (the status's trace IDs and
//! the exporters' requests), so what the status shows is what the backend received, and every
//! span of a trace is shaped alike whatever order it is emitted in.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::engine::ids::{SpanId, TraceId};
use crate::engine::model::{AttrRef, Component, FinishedSpan, TraceParent};
use crate::engine::time::Timestamp;
use crate::otlp::cluster_name::{ClusterName, K8S_CLUSTER_NAME};

/// OTLP span flags: W3C "sampled", plus "whether the parent is remote is known".
pub const FLAGS_SAMPLED_LOCAL: u32 = 0x0000_0101;
/// OTLP span flags of a span whose parent is remote (`SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK`).
pub const FLAGS_SAMPLED_REMOTE_PARENT: u32 = 0x0000_0301;
/// OTLP link flags of a link to a remote context: has-is-remote and is-remote, or'ed with the
/// remote context's W3C trace flags.
const LINK_REMOTE: u32 = 0x0000_0300;

/// The span attributes that carry the reporting component when the service name is fixed.
pub const REPORTING_CONTROLLER: &str = "k8s.event.reporting_controller";
pub const REPORTING_INSTANCE: &str = "k8s.event.reporting_instance";

/// What `service.name` a span's Resource gets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ServiceNaming {
    /// One Resource per reporting component: `service.name` = the component (the default).
    #[default]
    PerComponent,
    /// One Resource for all spans, `service.name` = this; the component goes into the span
    /// attributes [`REPORTING_CONTROLLER`] and [`REPORTING_INSTANCE`].
    Fixed(Arc<str>),
}

/// How trace IDs are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TraceIdFormat {
    /// The engine's hash of the root object's uid and generation.
    #[default]
    Deterministic,
    /// AWS X-Ray compatible: the first 4 bytes are the trace start in epoch seconds (big
    /// endian), the other 12 the deterministic ID's last 12 bytes.
    AwsXRay,
}

/// What a trace applied with a `traceparent` does with it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ParentTraceMode {
    /// The trace becomes part of the remote trace: every span takes the remote trace ID and the
    /// root span's parent is the remote span (flagged remote).
    #[default]
    Parent,
    /// The trace keeps its own ID; its root span links to the remote span.
    Link,
    /// The annotation is not used.
    Ignore,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpanShape {
    pub service: ServiceNaming,
    pub trace_ids: TraceIdFormat,
    pub parent_trace: ParentTraceMode,
    /// `k8s.cluster.name` on every Resource: the operator's `--cluster-name`, not a session's.
    pub cluster: Option<ClusterName>,
}

/// The X-Ray form of a trace ID: epoch seconds of `started`, then the ID's low 12 bytes.
pub fn xray_trace_id(id: TraceId, started: Timestamp) -> TraceId {
    let secs = started.unix_nanos().div_euclid(1_000_000_000);
    let secs = u32::try_from(secs.max(0)).unwrap_or(u32::MAX);
    TraceId((u128::from(secs) << 96) | (id.0 & ((1u128 << 96) - 1)))
}

fn named(s: &str) -> bool {
    !s.is_empty() && s != "unknown"
}

impl SpanShape {
    /// The remote context the span's trace was applied under, if this shape uses it.
    fn remote<'a>(&self, span: &'a FinishedSpan) -> Option<&'a TraceParent> {
        (self.parent_trace != ParentTraceMode::Ignore)
            .then_some(span.root.traceparent.as_ref())
            .flatten()
    }

    /// The trace ID the span is exported with.
    pub fn trace_id(&self, span: &FinishedSpan) -> TraceId {
        if self.parent_trace == ParentTraceMode::Parent
            && let Some(remote) = self.remote(span)
        {
            return remote.trace_id;
        }
        match self.trace_ids {
            TraceIdFormat::Deterministic => span.trace_id,
            // Spans of traces with no known start (see TraceRoot::started) fall back to their
            // own start; the operator fills the start in before spans reach a session.
            TraceIdFormat::AwsXRay => {
                xray_trace_id(span.trace_id, span.root.started.unwrap_or(span.start))
            }
        }
    }

    /// The parent span ID: the engine's, or for a root span in `Parent` mode the remote span.
    pub fn parent(&self, span: &FinishedSpan) -> Option<SpanId> {
        span.parent.or_else(|| {
            (self.parent_trace == ParentTraceMode::Parent)
                .then(|| self.remote(span).map(|r| r.span_id))
                .flatten()
        })
    }

    /// OTLP span flags: sampled, and whether the parent is remote.
    pub fn flags(&self, span: &FinishedSpan) -> u32 {
        if span.parent.is_none()
            && self.parent_trace == ParentTraceMode::Parent
            && self.remote(span).is_some()
        {
            FLAGS_SAMPLED_REMOTE_PARENT
        } else {
            FLAGS_SAMPLED_LOCAL
        }
    }

    /// In `Link` mode, the remote context a root span links to, with the link's OTLP flags.
    pub fn link(&self, span: &FinishedSpan) -> Option<(TraceParent, u32)> {
        if span.parent.is_some() || self.parent_trace != ParentTraceMode::Link {
            return None;
        }
        self.remote(span)
            .map(|r| (*r, LINK_REMOTE | u32::from(r.flags)))
    }

    /// Which Resource the span belongs to: its component, or `None` (the one fixed Resource).
    pub fn resource_of<'a>(&self, span: &'a FinishedSpan) -> Option<Component<'a>> {
        match self.service {
            ServiceNaming::PerComponent => Some(span.component()),
            ServiceNaming::Fixed(_) => None,
        }
    }

    /// The attributes of a Resource chosen by [`Self::resource_of`].
    pub fn resource_attributes<'a>(
        &'a self,
        resource: Option<Component<'a>>,
    ) -> Vec<(&'static str, AttrRef<'a>)> {
        let mut attributes = match (&self.service, resource) {
            (ServiceNaming::Fixed(name), _) => vec![("service.name", AttrRef::Str(name))],
            (ServiceNaming::PerComponent, Some(c)) => {
                let mut attributes = vec![("service.name", AttrRef::Str(c.name))];
                if named(c.instance) {
                    attributes.push(("service.instance.id", AttrRef::Str(c.instance)));
                }
                attributes
            }
            (ServiceNaming::PerComponent, None) => Vec::new(),
        };
        if let Some(cluster) = &self.cluster {
            attributes.push((K8S_CLUSTER_NAME, AttrRef::Str(cluster.as_str())));
        }
        attributes
    }

    /// Every attribute of the span as exported: the span's own, and with a fixed service name
    /// the reporting component.
    pub fn span_attributes<'a>(&self, span: &'a FinishedSpan) -> Vec<(&'static str, AttrRef<'a>)> {
        let mut attributes = span.all_attributes();
        if let ServiceNaming::Fixed(_) = self.service {
            let component = span.component();
            attributes.push((REPORTING_CONTROLLER, AttrRef::Str(component.name)));
            if named(component.instance) {
                attributes.push((REPORTING_INSTANCE, AttrRef::Str(component.instance)));
            }
        }
        attributes
    }
}

/// How many traces [`TraceStarts`] remembers.
const REMEMBERED_STARTS: usize = 4096;

/// Starts for the traces the engine knows none of (a root object whose generations are unknown:
/// its kind is not watched): the start of the first span seen of each such trace, remembered for
/// the newest [`REMEMBERED_STARTS`] of them, so that all their spans get the same X-Ray trace ID.
#[derive(Debug, Default)]
pub struct TraceStarts {
    starts: HashMap<TraceId, Timestamp>,
    order: VecDeque<TraceId>,
}

impl TraceStarts {
    /// The span, with its root's start filled in if the engine left it unknown.
    pub fn fill(&mut self, span: FinishedSpan) -> FinishedSpan {
        if span.root.started.is_some() {
            return span;
        }
        let started = match self.starts.get(&span.trace_id) {
            Some(t) => *t,
            None => {
                if self.order.len() == REMEMBERED_STARTS
                    && let Some(oldest) = self.order.pop_front()
                {
                    self.starts.remove(&oldest);
                }
                self.order.push_back(span.trace_id);
                self.starts.insert(span.trace_id, span.start);
                span.start
            }
        };
        let mut root = (*span.root).clone();
        root.started = Some(started);
        FinishedSpan {
            root: Arc::new(root),
            ..span
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model::TraceRoot;

    fn spans(input: &str) -> Vec<FinishedSpan> {
        crate::replay::replay(input, Default::default()).spans
    }

    fn rollout() -> Vec<FinishedSpan> {
        spans(include_str!(
            "../../tests/scenarios/deployment-rollout.jsonl"
        ))
    }

    fn with_root(span: &FinishedSpan, f: impl FnOnce(&mut TraceRoot)) -> FinishedSpan {
        let mut root = (*span.root).clone();
        f(&mut root);
        FinishedSpan {
            root: Arc::new(root),
            ..span.clone()
        }
    }

    fn remote() -> TraceParent {
        TraceParent {
            trace_id: TraceId(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
            span_id: SpanId(0x00f0_67aa_0ba9_02b7),
            flags: 1,
        }
    }

    #[test]
    fn the_default_shape_changes_nothing() {
        let shape = SpanShape::default();
        for s in rollout() {
            assert_eq!(shape.trace_id(&s), s.trace_id);
            assert_eq!(shape.parent(&s), s.parent);
            assert_eq!(shape.flags(&s), FLAGS_SAMPLED_LOCAL);
            assert_eq!(shape.link(&s), None);
            assert_eq!(shape.span_attributes(&s), s.all_attributes());
        }
    }

    #[test]
    fn xray_ids_start_with_the_trace_start_in_epoch_seconds() {
        let id = TraceId(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        let started = Timestamp::parse_rfc3339("2026-11-24T10:00:30.750Z").unwrap();
        let x = xray_trace_id(id, started);
        let bytes = x.to_bytes();
        assert_eq!(
            u32::from_be_bytes(bytes[..4].try_into().unwrap()),
            1_795_514_430, // date -u -d @1795514430: Tue Nov 24 10:00:30 UTC 2026
            "whole seconds, big endian"
        );
        assert_eq!(bytes[4..], id.to_bytes()[4..], "the rest as before");
        assert_eq!(x.to_string(), "6b05603e89abcdef0011223344556677");

        // Every span of a trace maps to the same ID, whatever its own start.
        let shape = SpanShape {
            trace_ids: TraceIdFormat::AwsXRay,
            ..Default::default()
        };
        let spans = rollout();
        for s in &spans {
            let started = s.root.started.expect("a generation trace has a start");
            assert_eq!(shape.trace_id(s), xray_trace_id(s.trace_id, started));
            let same_trace = spans.iter().filter(|o| o.trace_id == s.trace_id);
            assert!(
                same_trace
                    .map(|o| shape.trace_id(o))
                    .all(|t| t == shape.trace_id(s))
            );
        }
        let distinct: std::collections::BTreeSet<_> =
            spans.iter().map(|s| shape.trace_id(s)).collect();
        assert_eq!(distinct.len(), 2, "two traces stay two");
    }

    #[test]
    fn traces_without_a_known_start_take_their_first_span_s() {
        let spans = spans(include_str!("../../tests/scenarios/events-only.json"));
        assert!(spans.iter().all(|s| s.root.started.is_none()));
        let shape = SpanShape {
            trace_ids: TraceIdFormat::AwsXRay,
            ..Default::default()
        };
        let mut starts = TraceStarts::default();
        let filled: Vec<FinishedSpan> = spans.iter().cloned().map(|s| starts.fill(s)).collect();
        for (s, f) in spans.iter().zip(&filled) {
            let first = spans.iter().find(|o| o.trace_id == s.trace_id).unwrap();
            assert_eq!(f.root.started, Some(first.start));
            assert_eq!(shape.trace_id(f), xray_trace_id(s.trace_id, first.start));
        }
        // Spans that have a start keep it.
        let rollout = rollout();
        assert_eq!(starts.fill(rollout[0].clone()), rollout[0]);
    }

    #[test]
    fn parent_mode_joins_the_remote_trace() {
        let shape = SpanShape {
            trace_ids: TraceIdFormat::AwsXRay,
            ..Default::default()
        };
        let spans: Vec<FinishedSpan> = rollout()
            .iter()
            .map(|s| with_root(s, |r| r.traceparent = Some(remote())))
            .collect();
        let roots = spans.iter().filter(|s| s.parent.is_none()).count();
        assert_eq!(roots, 2);
        for s in &spans {
            assert_eq!(shape.trace_id(s), remote().trace_id, "the remote ID wins");
            assert_eq!(shape.link(s), None);
            if s.parent.is_none() {
                assert_eq!(shape.parent(s), Some(remote().span_id));
                assert_eq!(shape.flags(s), 0x301, "remote parent flagged");
            } else {
                assert_eq!(shape.parent(s), s.parent);
                assert_eq!(shape.flags(s), 0x101);
            }
        }
    }

    #[test]
    fn link_mode_keeps_the_own_id_and_links_the_root() {
        let shape = SpanShape {
            parent_trace: ParentTraceMode::Link,
            ..Default::default()
        };
        for s in rollout() {
            let s = with_root(&s, |r| r.traceparent = Some(remote()));
            assert_eq!(shape.trace_id(&s), s.trace_id);
            assert_eq!(shape.parent(&s), s.parent);
            assert_eq!(shape.flags(&s), FLAGS_SAMPLED_LOCAL);
            match s.parent {
                None => assert_eq!(shape.link(&s), Some((remote(), 0x301))),
                Some(_) => assert_eq!(shape.link(&s), None),
            }
        }
        let ignore = SpanShape {
            parent_trace: ParentTraceMode::Ignore,
            ..Default::default()
        };
        for s in rollout() {
            let s = with_root(&s, |r| r.traceparent = Some(remote()));
            assert_eq!(
                (ignore.trace_id(&s), ignore.parent(&s), ignore.link(&s)),
                (s.trace_id, s.parent, None)
            );
        }
    }

    #[test]
    fn a_fixed_service_name_is_one_resource_with_the_component_in_attributes() {
        let shape = SpanShape {
            service: ServiceNaming::Fixed("k8s-rollouts".into()),
            ..Default::default()
        };
        let spans = rollout();
        let components: std::collections::BTreeSet<_> =
            spans.iter().map(|s| s.component()).collect();
        assert!(components.len() > 3);
        assert!(spans.iter().all(|s| shape.resource_of(s).is_none()));
        assert_eq!(
            shape.resource_attributes(None),
            vec![("service.name", AttrRef::Str("k8s-rollouts"))]
        );
        let kubelet = spans
            .iter()
            .find(|s| s.component().name == "kubelet" && named(s.component().instance))
            .unwrap();
        let attributes = shape.span_attributes(kubelet);
        assert!(attributes.contains(&(REPORTING_CONTROLLER, AttrRef::Str("kubelet"))));
        assert!(attributes.contains(&(
            REPORTING_INSTANCE,
            AttrRef::Str(kubelet.component().instance)
        )));
        let per_component = SpanShape::default();
        assert_eq!(
            per_component.resource_attributes(per_component.resource_of(kubelet)),
            vec![
                ("service.name", AttrRef::Str("kubelet")),
                (
                    "service.instance.id",
                    AttrRef::Str(kubelet.component().instance)
                )
            ]
        );
        assert!(
            !per_component
                .span_attributes(kubelet)
                .iter()
                .any(|(k, _)| *k == REPORTING_CONTROLLER)
        );
    }

    #[test]
    fn the_cluster_name_is_on_every_resource() {
        let cluster: ClusterName = "prod-eu-1".parse().unwrap();
        let spans = rollout();
        for service in [
            ServiceNaming::PerComponent,
            ServiceNaming::Fixed("k8s".into()),
        ] {
            let shape = SpanShape {
                service,
                cluster: Some(cluster.clone()),
                ..Default::default()
            };
            for s in &spans {
                let attributes = shape.resource_attributes(shape.resource_of(s));
                assert_eq!(
                    attributes.last(),
                    Some(&(K8S_CLUSTER_NAME, AttrRef::Str("prod-eu-1")))
                );
                assert_eq!(attributes[0].0, "service.name", "{attributes:?}");
            }
        }
        let unnamed = SpanShape::default();
        assert!(spans.iter().all(|s| {
            !unnamed
                .resource_attributes(unnamed.resource_of(s))
                .iter()
                .any(|(k, _)| *k == K8S_CLUSTER_NAME)
        }));
    }
}

//! Kubernetes JSON (and YAML) as the engine needs it.
//!
//! One lenient serde model covers watch events (`{"type","object"}`), bare objects, Lists, and
//! both Event APIs (`core/v1` and `events.k8s.io/v1`): every field is optional, and only the few
//! the engine uses are kept. Large fields it does not need (annotations other than its own,
//! managedFields' field sets, most of spec and status) are skipped while parsing, never copied.

pub(crate) mod progress;
pub(crate) mod template;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::engine::ids::{SpanId, TraceId};
use crate::engine::model::{
    Change, EventRecord, EventTime, ObjectMeta, ObjectRef, Observed, OwnerRef, ScaleTarget,
    SpecChange, TraceParent,
};
use crate::engine::time::Timestamp;
use progress::{WireSpec, WireStatus};

pub(crate) use crate::engine::limits;

/// The annotation Flux sets on an event that starts a trace.
pub const TOP_LEVEL_ANNOTATION: &str = "topLevelSpan";

/// The annotation a pipeline sets on the object it applies: its W3C `traceparent`, so the
/// rollout's trace joins (or links to) the pipeline's trace.
pub const TRACEPARENT_ANNOTATION: &str = "eventspan.dev/traceparent";

/// The annotation KEP-5915 proposes for the same purpose; read too, and outranked by ours when
/// an object carries both (ours is the one set for eventspan on purpose).
pub const KEP_TRACEPARENT_ANNOTATION: &str = "tracing.k8s.io/traceparent";

/// `eventspan.dev/traceparent` values that were not a valid W3C traceparent (ignored).
static INVALID_TRACEPARENTS: AtomicU64 = AtomicU64::new(0);

/// How many `eventspan.dev/traceparent` annotations were ignored as invalid, process-wide (each
/// decoded version of an annotated object counts).
pub fn invalid_traceparents() -> u64 {
    INVALID_TRACEPARENTS.load(Ordering::Relaxed)
}

/// Parses a W3C `traceparent` of version 00: `00-<32 hex trace id>-<16 hex span id>-<2 hex
/// flags>`, lowercase, neither ID all zeros. Anything else is `None`.
pub fn parse_traceparent(value: &str) -> Option<TraceParent> {
    let b = value.as_bytes();
    if b.len() != 55 || !value.starts_with("00-") || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    let hex = |s: &[u8]| {
        s.iter()
            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
            .then_some(())
    };
    hex(&b[3..35])?;
    hex(&b[36..52])?;
    hex(&b[53..55])?;
    let trace_id = u128::from_str_radix(&value[3..35], 16).ok()?;
    let span_id = u64::from_str_radix(&value[36..52], 16).ok()?;
    let flags = u8::from_str_radix(&value[53..55], 16).ok()?;
    (trace_id != 0 && span_id != 0).then_some(TraceParent {
        trace_id: TraceId(trace_id),
        span_id: SpanId(span_id),
        flags,
    })
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("not a Kubernetes object: no `kind`")]
    NoKind,
    #[error("{kind} has no metadata.uid")]
    NoUid { kind: String },
    #[error("event {name} names no involved object (`involvedObject` or `regarding`)")]
    NoInvolvedObject { name: String },
    #[error("event {name} carries no timestamp")]
    NoTime { name: String },
    #[error("unknown watch event type {0:?}")]
    UnknownWatchType(String),
}

/// A value of the expected shape, or `None` for anything else (a custom resource's `status`
/// may be a string). The value is buffered to try it, so this is only for `spec` and `status`.
fn lenient<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: de::DeserializeOwned,
{
    let value = serde_json::Value::deserialize(d)?;
    Ok(T::deserialize(value).ok())
}

/// Annotations, keeping only the ones eventspan reads: others (say a 100 KiB
/// `last-applied-configuration`) are skipped unread.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KeptAnnotations {
    pub top_level_span: bool,
    /// A Flux controller's `<group>.toolkit.fluxcd.io/revision` (on its events).
    pub revision: Option<String>,
    /// A valid `eventspan.dev/traceparent` (else a valid `tracing.k8s.io/traceparent`); an
    /// invalid one is counted and ignored.
    pub traceparent: Option<TraceParent>,
}

impl<'de> Deserialize<'de> for KeptAnnotations {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct AnnotationsVisitor;
        impl<'de> Visitor<'de> for AnnotationsVisitor {
            type Value = KeptAnnotations;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of annotations")
            }
            fn visit_unit<E: de::Error>(self) -> Result<KeptAnnotations, E> {
                Ok(KeptAnnotations::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeptAnnotations, A::Error> {
                let mut kept = KeptAnnotations::default();
                let mut kep_traceparent = None;
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    if key == TOP_LEVEL_ANNOTATION {
                        let value: Cow<'de, str> = map.next_value()?;
                        kept.top_level_span = value == "true";
                    } else if crate::engine::vcs::is_revision_annotation(&key) {
                        kept.revision = Some(map.next_value::<String>()?);
                    } else if key == TRACEPARENT_ANNOTATION || key == KEP_TRACEPARENT_ANNOTATION {
                        let value: Cow<'de, str> = map.next_value()?;
                        let parsed = parse_traceparent(value.trim());
                        if parsed.is_none() {
                            INVALID_TRACEPARENTS.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(value = %value, annotation = %key, "ignored an invalid traceparent");
                        }
                        if key == TRACEPARENT_ANNOTATION {
                            kept.traceparent = parsed;
                        } else {
                            kep_traceparent = parsed;
                        }
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                kept.traceparent = kept.traceparent.or(kep_traceparent);
                Ok(kept)
            }
        }
        d.deserialize_any(AnnotationsVisitor)
    }
}

/// `managedFields[].fieldsV1`, reduced to the one fact the engine needs: did it touch `spec`?
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TouchesSpec(pub bool);

impl<'de> Deserialize<'de> for TouchesSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = TouchesSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a fieldsV1 map")
            }
            fn visit_unit<E: de::Error>(self) -> Result<TouchesSpec, E> {
                Ok(TouchesSpec(false))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TouchesSpec, A::Error> {
                let mut spec = false;
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    spec |= key == "f:spec";
                    map.next_value::<IgnoredAny>()?;
                }
                Ok(TouchesSpec(spec))
            }
        }
        d.deserialize_any(FieldsVisitor)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ManagedField {
    pub manager: String,
    pub operation: String,
    pub time: Option<Timestamp>,
    #[serde(rename = "fieldsV1")]
    pub fields_v1: TouchesSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WireOwner {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
    pub controller: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WireMeta {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub generation: Option<i64>,
    pub creation_timestamp: Option<Timestamp>,
    pub deletion_timestamp: Option<Timestamp>,
    pub labels: Option<BTreeMap<String, String>>,
    pub annotations: Option<KeptAnnotations>,
    pub owner_references: Option<Vec<WireOwner>>,
    pub managed_fields: Option<Vec<ManagedField>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WireRef {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub field_path: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WireSeries {
    pub count: Option<i64>,
    pub last_observed_time: Option<Timestamp>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct WireSource {
    pub component: String,
    pub host: String,
}

/// Any Kubernetes JSON value eventspan reads: a watch event, an object or a List.
///
/// Parts that are large and mostly absent (an Event's references and sources, an object's spec
/// and status) are boxed: a parsed value is moved several times before it becomes changes, and
/// unboxed they made every value twice the size.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WireObject {
    pub api_version: String,
    pub kind: String,
    pub metadata: WireMeta,
    /// A watch event's type (`ADDED`...), or an Event's type (`Normal`, `Warning`).
    #[serde(rename = "type")]
    pub type_: Option<String>,
    /// Set on watch events.
    pub object: Option<Box<WireObject>>,
    /// When a recorder saw this watch event (eventspan's own extension).
    pub observed_at: Option<Timestamp>,
    /// Set on Lists.
    pub items: Option<Vec<WireObject>>,
    /// The few spec and status fields that tell a rollout's progress (see [`progress`]).
    /// Other kinds' spec and status may have any shape: what does not fit is ignored.
    #[serde(deserialize_with = "lenient")]
    pub spec: Option<Box<WireSpec>>,
    #[serde(deserialize_with = "lenient")]
    pub status: Option<Box<WireStatus>>,

    // Both Event APIs.
    pub involved_object: Option<Box<WireRef>>,
    pub regarding: Option<Box<WireRef>>,
    pub related: Option<Box<WireRef>>,
    pub reason: String,
    pub message: String,
    pub note: String,
    pub action: String,
    pub count: Option<i64>,
    pub series: Option<WireSeries>,
    pub event_time: Option<Timestamp>,
    pub first_timestamp: Option<Timestamp>,
    pub last_timestamp: Option<Timestamp>,
    pub deprecated_first_timestamp: Option<Timestamp>,
    pub deprecated_last_timestamp: Option<Timestamp>,
    pub deprecated_count: Option<i64>,
    pub source: Option<Box<WireSource>>,
    pub deprecated_source: Option<Box<WireSource>>,
    pub reporting_component: String,
    pub reporting_controller: String,
    pub reporting_instance: String,
}

/// Kinds Kubernetes serves without a namespace that events are commonly about. Events of these
/// live in `default`; a reference to one must not be read as an object of the event's namespace.
const CLUSTER_SCOPED_KINDS: &[&str] = &[
    "Node",
    "Namespace",
    "PersistentVolume",
    "StorageClass",
    "CSINode",
    "VolumeAttachment",
    "CertificateSigningRequest",
    "CustomResourceDefinition",
    "APIService",
    "PriorityClass",
    "RuntimeClass",
    "IngressClass",
    "ClusterRole",
    "ClusterRoleBinding",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    // Karpenter.
    "NodeClaim",
    "NodePool",
];

pub(crate) fn is_cluster_scoped(kind: &str) -> bool {
    CLUSTER_SCOPED_KINDS.contains(&kind)
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn clamp_count(n: Option<i64>) -> Option<u32> {
    n.filter(|n| *n > 0)
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
}

impl WireObject {
    pub fn is_event(&self) -> bool {
        self.kind == "Event"
            && (self.api_version == "v1" || self.api_version.starts_with("events.k8s.io/"))
    }

    /// Flattens a stream value into the changes it carries.
    pub fn into_changes(self, out: &mut Vec<Result<Observed, WireError>>) {
        if let Some(object) = self.object {
            let observed_at = self.observed_at;
            let deleted = match self.type_.as_deref() {
                Some("ADDED" | "MODIFIED") | None => false,
                Some("DELETED") => true,
                Some("BOOKMARK") => {
                    out.push(Ok(Observed {
                        change: Change::Ignore,
                        observed_at,
                    }));
                    return;
                }
                Some(other) => {
                    return out.push(Err(WireError::UnknownWatchType(other.to_string())));
                }
            };
            out.push(object.into_change(deleted).map(|change| Observed {
                change,
                observed_at,
            }));
        } else if let Some(items) = self.items {
            for item in items {
                item.into_changes(out);
            }
        } else {
            let observed_at = self.observed_at;
            out.push(self.into_change(false).map(|change| Observed {
                change,
                observed_at,
            }));
        }
    }

    fn into_change(self, deleted: bool) -> Result<Change, WireError> {
        if self.kind.is_empty() {
            return Err(WireError::NoKind);
        }
        if self.is_event() {
            // An Event's deletion is its TTL expiring, not news about the cluster.
            return if deleted {
                Ok(Change::Ignore)
            } else {
                self.into_event().map(|e| Change::Event(Box::new(e)))
            };
        }
        let meta = Box::new(self.into_object_meta()?);
        Ok(if deleted {
            Change::Delete(meta)
        } else {
            Change::Upsert(meta)
        })
    }

    pub fn into_object_meta(self) -> Result<ObjectMeta, WireError> {
        let m = self.metadata;
        if m.uid.is_empty() {
            return Err(WireError::NoUid { kind: self.kind });
        }
        let generation = m.generation.unwrap_or(0);
        let controller_kind = m
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| o.kind.as_str());
        let state = progress::state(
            &self.kind,
            generation,
            controller_kind,
            self.spec.as_deref(),
            self.status.as_deref(),
        );
        // Only an HPA's reference counts: another kind's `scaleTargetRef` (a CRD's) means
        // whatever that kind says, not "my SuccessfulRescale events scale this".
        let scale_target = self
            .spec
            .as_deref()
            .and_then(|s| s.scale_target_ref.as_ref())
            .filter(|_| self.kind == "HorizontalPodAutoscaler")
            .filter(|t| !t.kind.is_empty() && !t.name.is_empty())
            .map(|t| ScaleTarget {
                kind: t.kind.clone(),
                name: t.name.clone(),
            });
        let spec_changes = m
            .managed_fields
            .unwrap_or_default()
            .into_iter()
            .filter(|f| f.fields_v1.0)
            .map(|f| SpecChange {
                time: f.time,
                manager: f.manager,
                operation: f.operation,
            })
            .collect();
        let mut meta = ObjectMeta {
            uid: m.uid,
            kind: self.kind,
            api_version: self.api_version,
            namespace: m.namespace,
            name: m.name,
            generation,
            labels: m.labels.unwrap_or_default().into_iter().collect(),
            owners: m
                .owner_references
                .unwrap_or_default()
                .into_iter()
                .map(|o| OwnerRef {
                    kind: o.kind,
                    api_version: o.api_version,
                    name: o.name,
                    uid: o.uid,
                    controller: o.controller.unwrap_or(false),
                })
                .collect(),
            spec_changes,
            created: m.creation_timestamp,
            deleting: m.deletion_timestamp,
            state,
            traceparent: m.annotations.and_then(|a| a.traceparent),
            template: self.spec.as_deref().and_then(|s| {
                let t = s.template.as_ref()?;
                Some(Box::new(t.digest(s.replicas)))
            }),
            scale_target,
        };
        limits::bound_meta(&mut meta);
        Ok(meta)
    }

    pub fn into_event(self) -> Result<EventRecord, WireError> {
        let m = self.metadata;
        let involved =
            self.regarding
                .or(self.involved_object)
                .ok_or_else(|| WireError::NoInvolvedObject {
                    name: m.name.clone(),
                })?;
        let precise = |t: Option<Timestamp>| t.map(|at| EventTime { at, precise: true });
        let coarse = |t: Option<Timestamp>| t.map(|at| EventTime { at, precise: false });
        let series = self.series.unwrap_or_default();
        let first = precise(self.event_time)
            .or(coarse(self.first_timestamp))
            .or(coarse(self.deprecated_first_timestamp))
            .or(coarse(self.last_timestamp))
            .or(coarse(m.creation_timestamp))
            .ok_or_else(|| WireError::NoTime {
                name: m.name.clone(),
            })?;
        let last = precise(series.last_observed_time)
            .or(coarse(self.last_timestamp))
            .or(coarse(self.deprecated_last_timestamp))
            .filter(|l| l.at >= first.at)
            .unwrap_or(first);
        let source = self
            .source
            .or(self.deprecated_source)
            .map_or_else(WireSource::default, |s| *s);
        let to_ref = |r: WireRef| ObjectRef {
            // A reference without a namespace is to the event's own namespace, unless it names
            // a cluster-scoped kind: those stay cluster-scoped, where their objects are.
            namespace: if r.namespace.is_empty() && !is_cluster_scoped(&r.kind) {
                m.namespace.clone()
            } else {
                r.namespace
            },
            kind: r.kind,
            api_version: r.api_version,
            name: r.name,
            uid: r.uid,
            field_path: r.field_path,
        };
        let involved = to_ref(*involved);
        let related = self.related.map(|r| Box::new(to_ref(*r)));
        let uid = if m.uid.is_empty() {
            format!("{}/{}", m.namespace, m.name)
        } else {
            m.uid
        };
        let annotations = m.annotations.unwrap_or_default();
        let mut event = EventRecord {
            uid,
            name: m.name,
            namespace: m.namespace,
            involved,
            related,
            reason: self.reason,
            message: non_empty(self.note).unwrap_or(self.message),
            warning: self.type_.as_deref() == Some("Warning"),
            action: self.action,
            reporting_controller: non_empty(self.reporting_controller)
                .or(non_empty(self.reporting_component))
                .unwrap_or(source.component),
            reporting_instance: non_empty(self.reporting_instance).unwrap_or(source.host),
            count: clamp_count(series.count)
                .or(clamp_count(self.count))
                .or(clamp_count(self.deprecated_count))
                .unwrap_or(1),
            first,
            last,
            top_level: annotations.top_level_span,
            revision: annotations.revision.unwrap_or_default(),
            truncated: false,
            derived: false,
        };
        event.truncated = limits::bound_event(&mut event);
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(json: &str) -> Vec<Result<Observed, WireError>> {
        let v: WireObject = serde_json::from_str(json).unwrap();
        let mut out = Vec::new();
        v.into_changes(&mut out);
        out
    }

    fn event(json: &str) -> EventRecord {
        match changes(json).remove(0).unwrap().change {
            Change::Event(e) => *e,
            other => panic!("not an event: {other:?}"),
        }
    }

    #[test]
    fn core_v1_event() {
        let e = event(
            r#"{"type":"ADDED","observedAt":"2024-05-01T12:00:03.5Z","object":{"apiVersion":"v1","kind":"Event",
            "metadata":{"name":"web.17","namespace":"shop","uid":"e1","annotations":{"topLevelSpan":"true","big":"x"}},
            "involvedObject":{"kind":"Deployment","namespace":"shop","name":"web","uid":"d1","apiVersion":"apps/v1"},
            "reason":"ScalingReplicaSet","message":"Scaled up replica set web-1 from 0 to 2","type":"Normal",
            "source":{"component":"deployment-controller"},"count":3,
            "firstTimestamp":"2024-05-01T12:00:01Z","lastTimestamp":"2024-05-01T12:00:03Z"}}"#,
        );
        assert_eq!(e.involved.name, "web");
        assert_eq!(e.reporting_controller, "deployment-controller");
        assert_eq!(e.count, 3);
        assert!(!e.first.precise);
        assert_eq!(
            e.last.at,
            Timestamp::parse_rfc3339("2024-05-01T12:00:03Z").unwrap()
        );
        assert!(e.top_level);
        assert!(!e.warning);
    }

    /// A real kustomize-controller v1.9.6 event (tests/scenarios/recorded/flux): the revision it
    /// reconciled is kept, other annotations are not.
    #[test]
    fn flux_revision_annotation_is_kept() {
        let e = event(
            r#"{"apiVersion":"v1","kind":"Event",
            "metadata":{"name":"app.18ed53e82a5da907","namespace":"rec-flux","uid":"e9","annotations":{"kustomize.toolkit.fluxcd.io/revision":"main@sha1:17dc35ed57f2d32cf93e1fbcb6baf1ab2a4f60e6","kustomize.toolkit.fluxcd.io/commit_status":"update"}},
            "involvedObject":{"kind":"Kustomization","namespace":"rec-flux","name":"app","uid":"k1","apiVersion":"kustomize.toolkit.fluxcd.io/v1"},
            "reason":"Progressing","message":"Deployment/rec-flux/web configured","type":"Normal",
            "source":{"component":"kustomize-controller"},"count":1,
            "firstTimestamp":"2026-12-02T04:01:23Z","lastTimestamp":"2026-12-02T04:01:23Z"}"#,
        );
        assert_eq!(
            e.revision,
            "main@sha1:17dc35ed57f2d32cf93e1fbcb6baf1ab2a4f60e6"
        );
        assert!(!e.top_level);
        let plain = event(
            r#"{"apiVersion":"v1","kind":"Event","metadata":{"name":"x","namespace":"n","uid":"e2"},
            "involvedObject":{"kind":"Pod","namespace":"n","name":"p"},"reason":"Pulled","message":"m",
            "firstTimestamp":"2026-12-02T04:01:23Z","lastTimestamp":"2026-12-02T04:01:23Z"}"#,
        );
        assert_eq!(plain.revision, "");
    }

    #[test]
    fn oversized_strings_are_cut_and_marked_and_labels_bounded() {
        let huge = "é".repeat(100_000);
        let e = event(&format!(
            r#"{{"apiVersion":"v1","kind":"Event","metadata":{{"name":"{huge}","namespace":"shop","uid":"e1"}},
            "involvedObject":{{"kind":"Pod","namespace":"shop","name":"p","uid":"p1"}},
            "reason":"BackOff","message":"{huge}","lastTimestamp":"2024-05-01T12:00:03Z"}}"#
        ));
        assert!(e.truncated);
        assert!(e.message.len() <= limits::MAX_MESSAGE_BYTES && e.message.starts_with('é'));
        assert!(e.name.len() <= limits::MAX_FIELD_BYTES);
        let plain = event(
            r#"{"apiVersion":"v1","kind":"Event","metadata":{"name":"e","namespace":"shop","uid":"e1"},
            "involvedObject":{"kind":"Pod","namespace":"shop","name":"p","uid":"p1"},
            "reason":"BackOff","message":"ok","lastTimestamp":"2024-05-01T12:00:03Z"}"#,
        );
        assert!(!plain.truncated);
        let labels: Vec<String> = (0..1000)
            .map(|i| format!(r#""l{i}":"v""#))
            .chain([format!(r#""long":"{}""#, "v".repeat(64))])
            .collect();
        let json = format!(
            r#"{{"apiVersion":"apps/v1","kind":"Deployment","metadata":{{"name":"web","namespace":"shop","uid":"d1","labels":{{{}}}}}}}"#,
            labels.join(",")
        );
        let meta = serde_json::from_str::<WireObject>(&json)
            .unwrap()
            .into_object_meta()
            .unwrap();
        assert_eq!(meta.labels.len(), limits::MAX_LABELS);
        assert!(meta.labels.iter().all(|(k, _)| k != "long"));
    }

    #[test]
    fn events_k8s_io_v1_event() {
        let e = event(
            r#"{"apiVersion":"events.k8s.io/v1","kind":"Event","metadata":{"name":"p.1","namespace":"shop","uid":"e2"},
            "regarding":{"kind":"Pod","name":"web-1-x","uid":"p1"},"related":{"kind":"Node","name":"n1"},
            "reason":"BackOff","note":"Back-off restarting failed container","type":"Warning",
            "eventTime":"2024-05-01T12:00:01.123456Z","series":{"count":7,"lastObservedTime":"2024-05-01T12:05:00.000001Z"},
            "reportingController":"kubelet","reportingInstance":"n1","action":"Restart"}"#,
        );
        assert_eq!(
            e.involved.namespace, "shop",
            "namespace defaults to the event's"
        );
        assert_eq!(e.related.as_ref().unwrap().name, "n1");
        assert!(e.warning && e.first.precise && e.last.precise);
        assert_eq!(e.count, 7);
        assert_eq!(e.message, "Back-off restarting failed container");
        assert_eq!(e.reporting_instance, "n1");
    }

    #[test]
    fn object_metadata_and_spec_change() {
        let out = changes(
            r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"shop","uid":"d1",
            "generation":4,"labels":{"b":"2","a":"1"},"managedFields":[
              {"manager":"kubectl-client-side-apply","operation":"Update","time":"2024-05-01T12:00:00Z","fieldsV1":{"f:spec":{"f:replicas":{}}}},
              {"manager":"kube-controller-manager","operation":"Update","time":"2024-05-01T12:09:00Z","subresource":"status","fieldsV1":{"f:status":{}}},
              {"manager":"kubectl-edit","operation":"Update","time":"2024-05-01T12:05:00Z","fieldsV1":{"f:metadata":{},"f:spec":{}}}]},
            "spec":{"replicas":3},"status":{"replicas":3}}"#,
        );
        let Ok(Observed {
            change: Change::Upsert(m),
            observed_at: None,
        }) = &out[0]
        else {
            panic!("{out:?}")
        };
        assert_eq!(m.generation, 4);
        assert_eq!(
            m.labels,
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        let managers: Vec<&str> = m.spec_changes.iter().map(|c| c.manager.as_str()).collect();
        assert_eq!(
            managers,
            ["kubectl-client-side-apply", "kubectl-edit"],
            "entries that touched spec"
        );
        assert_eq!(
            m.newest_change_time(),
            Timestamp::parse_rfc3339("2024-05-01T12:05:00Z")
        );
    }

    #[test]
    fn lists_deletes_and_bookmarks() {
        let out = changes(
            r#"{"kind":"List","apiVersion":"v1","items":[
              {"kind":"Pod","apiVersion":"v1","metadata":{"name":"a","uid":"p1"}},
              {"kind":"Pod","apiVersion":"v1","metadata":{"name":"b"}}]}"#,
        );
        assert!(matches!(
            out[0],
            Ok(Observed {
                change: Change::Upsert(_),
                ..
            })
        ));
        assert_eq!(out[1], Err(WireError::NoUid { kind: "Pod".into() }));
        let out = changes(
            r#"{"type":"DELETED","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"a","uid":"p1"}}}"#,
        );
        assert!(matches!(
            out[0],
            Ok(Observed {
                change: Change::Delete(_),
                ..
            })
        ));
        let out = changes(
            r#"{"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{}}}"#,
        );
        assert!(matches!(
            out[0],
            Ok(Observed {
                change: Change::Ignore,
                ..
            })
        ));
        let out = changes(r#"{"type":"EXPLODED","object":{"kind":"Pod"}}"#);
        assert_eq!(out[0], Err(WireError::UnknownWatchType("EXPLODED".into())));
    }

    #[test]
    fn traceparent_annotation_is_kept_when_valid() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parsed = parse_traceparent(tp).unwrap();
        assert_eq!(parsed.trace_id, TraceId(0x4bf92f3577b34da6a3ce929d0e0e4736));
        assert_eq!(parsed.span_id, SpanId(0x00f067aa0ba902b7));
        assert_eq!(parsed.flags, 1);
        assert_eq!(parsed.to_string(), tp, "round-trips");
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad:?}");
        }
        let object = |value: &str| {
            let json = format!(
                r#"{{"apiVersion":"apps/v1","kind":"Deployment","metadata":{{"name":"web","namespace":"shop","uid":"d1",
                "annotations":{{"eventspan.dev/traceparent":"{value}","other":"x"}}}}}}"#
            );
            match changes(&json).remove(0).unwrap().change {
                Change::Upsert(m) => m,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(object(tp).traceparent, Some(parsed));
        let before = invalid_traceparents();
        let m = object("00-not-a-traceparent");
        assert_eq!(m.traceparent, None, "an invalid value is ignored");
        assert_eq!(m.uid, "d1", "and the object is kept");
        assert!(invalid_traceparents() > before, "and counted");
    }

    #[test]
    fn the_keps_traceparent_annotation_is_read_and_ours_outranks_it() {
        let ours = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let keps = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let object = |annotations: &str| {
            let json = format!(
                r#"{{"apiVersion":"apps/v1","kind":"Deployment","metadata":{{"name":"web","namespace":"shop","uid":"d1",
                "annotations":{{{annotations}}}}}}}"#
            );
            match changes(&json).remove(0).unwrap().change {
                Change::Upsert(m) => m.traceparent,
                other => panic!("{other:?}"),
            }
        };
        let kep = format!(r#""tracing.k8s.io/traceparent":"{keps}""#);
        assert_eq!(object(&kep), parse_traceparent(keps));
        let both = format!(r#"{kep},"eventspan.dev/traceparent":"{ours}""#);
        assert_eq!(object(&both), parse_traceparent(ours));
        let both_reversed = format!(r#""eventspan.dev/traceparent":"{ours}",{kep}"#);
        assert_eq!(object(&both_reversed), parse_traceparent(ours));
    }

    #[test]
    fn malformed_events_are_errors() {
        let out = changes(
            r#"{"kind":"Event","apiVersion":"v1","metadata":{"name":"x","uid":"e"},"reason":"R"}"#,
        );
        assert_eq!(
            out[0],
            Err(WireError::NoInvolvedObject { name: "x".into() })
        );
        let out = changes(
            r#"{"kind":"Event","apiVersion":"v1","metadata":{"name":"x","uid":"e"},"involvedObject":{"kind":"Pod","name":"p"}}"#,
        );
        assert_eq!(out[0], Err(WireError::NoTime { name: "x".into() }));
        assert!(
            serde_json::from_str::<WireObject>(r#"{"kind":"Event","eventTime":"yesterday"}"#)
                .is_err()
        );
    }
}

//! Reading progress from an object's status, as `kubectl rollout status` does.
//!
//! Only the fields that say whether a change is rolled out, has failed, or (for a pod) is Ready
//! are read; everything else in spec and status is skipped while parsing. The rules follow
//! kubectl's rollout status viewers (staging/src/k8s.io/kubectl/pkg/polymorphichelpers/
//! rollout_status.go) and the Job and Pod condition types.

use serde::{Deserialize, Serialize};

use crate::engine::model::{ObjectState, Outcome, OutcomeKind};
use crate::engine::time::Timestamp;

/// The kinds whose progress eventspan follows: (API group, kind).
pub const TRACKED_KINDS: &[(&str, &str)] = &[
    ("apps", "Deployment"),
    ("apps", "StatefulSet"),
    ("apps", "DaemonSet"),
    ("batch", "Job"),
    ("", "Pod"),
];

/// Whether eventspan reads the status of objects of this kind.
pub fn tracks(kind: &str) -> bool {
    TRACKED_KINDS.iter().any(|(_, k)| *k == kind)
}

/// Kinds whose spec is read though their status is not: an HPA's `scaleTargetRef` names the
/// object its `SuccessfulRescale` events scaled (the message does not).
pub const SPEC_ONLY_KINDS: &[(&str, &str)] = &[("autoscaling", "HorizontalPodAutoscaler")];

/// Whether eventspan watches whole objects of this kind (spec, and status where tracked), not
/// only their metadata.
pub fn reads_spec(kind: &str) -> bool {
    tracks(kind) || SPEC_ONLY_KINDS.iter().any(|(_, k)| *k == kind)
}

#[derive(Debug, Default, Deserialize, Serialize, Clone, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct WireSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_strategy: Option<WireStrategy>,
    /// The pod template, reduced to what a change summary compares.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<super::template::WireTemplate>,
    /// An HPA's target: always in the HPA's own namespace (the reference has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale_target_ref: Option<WireScaleTarget>,
}

/// `spec.scaleTargetRef` of a HorizontalPodAutoscaler (autoscaling/v1 and v2 alike).
#[derive(Debug, Default, Deserialize, Serialize, Clone, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct WireScaleTarget {
    pub kind: String,
    pub name: String,
}

#[derive(Debug, Default, Deserialize, Serialize, Clone, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct WireStrategy {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<WireRollingUpdate>,
}

#[derive(Debug, Default, Deserialize, Serialize, Clone, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct WireRollingUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<i64>,
}

#[derive(Debug, Default, Deserialize, Serialize, Clone, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct WireStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_replicas: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_replicas: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_revision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired_number_scheduled: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_number_scheduled: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number_available: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<WireCondition>,
}

#[derive(Debug, Default, Deserialize, Serialize, Clone, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct WireCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Timestamp>,
}

impl WireCondition {
    /// When the condition last changed (a Deployment's Progressing is updated, not flipped).
    fn time(&self) -> Option<Timestamp> {
        self.last_update_time.or(self.last_transition_time)
    }
}

impl WireStatus {
    fn condition(&self, type_: &str) -> Option<&WireCondition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    fn true_condition(&self, type_: &str) -> Option<&WireCondition> {
        self.condition(type_).filter(|c| c.status == "True")
    }
}

fn outcome(kind: OutcomeKind, reason: &str, message: &str) -> Option<Outcome> {
    Some(Outcome {
        kind,
        reason: reason.to_string(),
        message: message.to_string(),
    })
}

/// The progress of an object of `kind` at `generation`, from its spec and status; `None` when
/// the kind is not followed, the status is missing, or the kind's progress cannot be told (a
/// paused Deployment, an `OnDelete` StatefulSet or DaemonSet, as kubectl says too). A pod is done
/// when Ready, unless its controller (`owner_kind`) is a Job: then when it has run to the end.
pub fn state(
    kind: &str,
    generation: i64,
    owner_kind: Option<&str>,
    spec: Option<&WireSpec>,
    status: Option<&WireStatus>,
) -> Option<ObjectState> {
    let status = status?;
    let empty = WireSpec::default();
    let spec = spec.unwrap_or(&empty);
    let observed = status.observed_generation.unwrap_or(0);
    let current = observed >= generation;
    let n = |v: Option<i64>| v.unwrap_or(0);
    let on_delete = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        == Some("OnDelete");
    // The time of the condition that gave the outcome, where one did.
    let mut since = None;
    let outcome = match kind {
        "Deployment" => {
            if spec.paused == Some(true) {
                return None;
            }
            let want = spec.replicas.unwrap_or(1);
            let progressing = status.condition("Progressing");
            since = progressing.and_then(WireCondition::time);
            if let Some(c) = progressing.filter(|c| c.reason == "ProgressDeadlineExceeded") {
                outcome(OutcomeKind::Failed, &c.reason, &c.message)
            } else if current
                && n(status.updated_replicas) >= want
                && n(status.replicas) <= n(status.updated_replicas)
                && n(status.available_replicas) >= n(status.updated_replicas)
            {
                let (reason, message) =
                    progressing.map_or(("", ""), |c| (c.reason.as_str(), c.message.as_str()));
                outcome(OutcomeKind::Done, reason, message)
            } else {
                None
            }
        }
        "StatefulSet" => {
            if on_delete {
                return None;
            }
            let want = spec.replicas.unwrap_or(1);
            let partition = spec
                .update_strategy
                .as_ref()
                .and_then(|s| s.rolling_update.as_ref())
                .and_then(|r| r.partition)
                .unwrap_or(0);
            let updated = if partition > 0 {
                n(status.updated_replicas) >= want - partition
            } else {
                status.update_revision.is_some()
                    && status.update_revision == status.current_revision
            };
            (current && n(status.ready_replicas) >= want && updated).then(|| Outcome {
                kind: OutcomeKind::Done,
                reason: "RolledOut".into(),
                message: format!(
                    "{} pods at revision {}",
                    n(status.ready_replicas),
                    status.update_revision.as_deref().unwrap_or("")
                ),
            })
        }
        "DaemonSet" => {
            if on_delete {
                return None;
            }
            let want = n(status.desired_number_scheduled);
            (current
                && n(status.updated_number_scheduled) >= want
                && n(status.number_available) >= want)
                .then(|| Outcome {
                    kind: OutcomeKind::Done,
                    reason: "RolledOut".into(),
                    message: format!("{want} pods updated and available"),
                })
        }
        "Job" => {
            // A Job has no observedGeneration: its conditions are about its only spec.
            let failed = status.true_condition("Failed");
            let complete = status.true_condition("Complete");
            return Some(ObjectState {
                observed_generation: generation,
                outcome: if let Some(c) = failed {
                    outcome(OutcomeKind::Failed, &c.reason, &c.message)
                } else if let Some(c) = complete {
                    outcome(OutcomeKind::Done, "Complete", &c.message)
                } else {
                    None
                },
                since: failed.or(complete).and_then(WireCondition::time),
            });
        }
        "Pod" => {
            let phase = status.phase.as_deref().unwrap_or("");
            let ready = status
                .true_condition("Ready")
                .filter(|_| owner_kind != Some("Job"));
            return Some(ObjectState {
                observed_generation: generation,
                since: ready
                    .filter(|_| phase != "Failed")
                    .and_then(WireCondition::time),
                outcome: if phase == "Failed" {
                    outcome(
                        OutcomeKind::Failed,
                        status.reason.as_deref().unwrap_or("Failed"),
                        status.message.as_deref().unwrap_or(""),
                    )
                } else if ready.is_some() {
                    outcome(OutcomeKind::Done, "Ready", "")
                } else if phase == "Succeeded" {
                    outcome(OutcomeKind::Done, "Succeeded", "")
                } else {
                    None
                },
            });
        }
        _ => return None,
    };
    Some(ObjectState {
        observed_generation: observed,
        outcome,
        since,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(kind: &str, generation: i64, json: &str) -> Option<ObjectState> {
        #[derive(Deserialize)]
        struct Obj {
            spec: Option<WireSpec>,
            status: Option<WireStatus>,
        }
        let o: Obj = serde_json::from_str(json).unwrap();
        state(kind, generation, None, o.spec.as_ref(), o.status.as_ref())
    }

    fn kind_of(s: Option<ObjectState>) -> Option<OutcomeKind> {
        s.and_then(|s| s.outcome).map(|o| o.kind)
    }

    #[test]
    fn deployments_as_kubectl_rollout_status_reads_them() {
        let done = r#"{"spec":{"replicas":2},"status":{"observedGeneration":3,"replicas":2,"updatedReplicas":2,"availableReplicas":2,
            "conditions":[{"type":"Progressing","status":"True","reason":"NewReplicaSetAvailable","message":"ReplicaSet \"web-1\" has successfully progressed."}]}}"#;
        let s = parse("Deployment", 3, done).unwrap();
        assert_eq!(s.observed_generation, 3);
        let o = s.outcome.unwrap();
        assert_eq!(
            (o.kind, o.reason.as_str()),
            (OutcomeKind::Done, "NewReplicaSetAvailable")
        );
        // The controller has not seen the new spec yet.
        assert_eq!(kind_of(parse("Deployment", 4, done)), None);
        let old_pods_left = r#"{"spec":{"replicas":2},"status":{"observedGeneration":3,"replicas":3,"updatedReplicas":2,"availableReplicas":2}}"#;
        assert_eq!(kind_of(parse("Deployment", 3, old_pods_left)), None);
        let unavailable = r#"{"spec":{"replicas":2},"status":{"observedGeneration":3,"replicas":2,"updatedReplicas":2,"availableReplicas":1}}"#;
        assert_eq!(kind_of(parse("Deployment", 3, unavailable)), None);
        let deadline = r#"{"spec":{"replicas":2},"status":{"observedGeneration":3,"replicas":2,"updatedReplicas":1,
            "conditions":[{"type":"Progressing","status":"False","reason":"ProgressDeadlineExceeded","message":"ReplicaSet \"web-2\" has timed out progressing."}]}}"#;
        let o = parse("Deployment", 3, deadline).unwrap().outcome.unwrap();
        assert_eq!(
            (o.kind, o.reason.as_str()),
            (OutcomeKind::Failed, "ProgressDeadlineExceeded")
        );
        assert!(o.message.contains("timed out"));
        let paused = r#"{"spec":{"paused":true},"status":{"observedGeneration":3}}"#;
        assert_eq!(parse("Deployment", 3, paused), None);
        assert_eq!(parse("Deployment", 3, r#"{"spec":{}}"#), None, "no status");
    }

    #[test]
    fn statefulsets_daemonsets_jobs_and_pods() {
        let sts = |rev: &str, ready: i64| {
            format!(
                r#"{{"spec":{{"replicas":2}},"status":{{"observedGeneration":2,"readyReplicas":{ready},"currentRevision":"{rev}","updateRevision":"db-2"}}}}"#
            )
        };
        assert_eq!(
            kind_of(parse("StatefulSet", 2, &sts("db-2", 2))),
            Some(OutcomeKind::Done)
        );
        assert_eq!(kind_of(parse("StatefulSet", 2, &sts("db-1", 2))), None);
        assert_eq!(kind_of(parse("StatefulSet", 2, &sts("db-2", 1))), None);
        let on_delete =
            r#"{"spec":{"updateStrategy":{"type":"OnDelete"}},"status":{"observedGeneration":2}}"#;
        assert_eq!(parse("StatefulSet", 2, on_delete), None);
        let ds = r#"{"status":{"observedGeneration":5,"desiredNumberScheduled":3,"updatedNumberScheduled":3,"numberAvailable":3}}"#;
        assert_eq!(kind_of(parse("DaemonSet", 5, ds)), Some(OutcomeKind::Done));
        assert_eq!(kind_of(parse("DaemonSet", 6, ds)), None);
        let failed_job = r#"{"status":{"conditions":[{"type":"FailureTarget","status":"True"},{"type":"Failed","status":"True","reason":"BackoffLimitExceeded","message":"Job has reached the specified backoff limit"}]}}"#;
        let o = parse("Job", 1, failed_job).unwrap().outcome.unwrap();
        assert_eq!(
            (o.kind, o.reason.as_str()),
            (OutcomeKind::Failed, "BackoffLimitExceeded")
        );
        let running_job = r#"{"status":{"active":1}}"#;
        assert_eq!(parse("Job", 1, running_job).unwrap().outcome, None);
        let ready_pod =
            r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}"#;
        assert_eq!(kind_of(parse("Pod", 0, ready_pod)), Some(OutcomeKind::Done));
        let pending_pod =
            r#"{"status":{"phase":"Pending","conditions":[{"type":"Ready","status":"False"}]}}"#;
        assert_eq!(parse("Pod", 0, pending_pod).unwrap().outcome, None);
        let evicted =
            r#"{"status":{"phase":"Failed","reason":"Evicted","message":"low on memory"}}"#;
        assert_eq!(kind_of(parse("Pod", 0, evicted)), Some(OutcomeKind::Failed));
        assert_eq!(parse("ConfigMap", 0, r#"{"status":{}}"#), None);
    }
}

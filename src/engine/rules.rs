//! What controllers say about the objects they act on, in one table.
//!
//! Some controllers report the child they acted on only in the message of an event on the parent
//! (`Created pod: web-7d4b9c-x2x` on a ReplicaSet). Each rule turns such a message into the child's
//! identity, so the child's own events can be parented on the span that created it. To support a
//! new controller, add a row to [`RULES`]; the messages are quoted from the Kubernetes sources.

/// What a matched message tells us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// The involved object acted on a child of this kind, named by the `{child}` placeholder.
    Child {
        kind: &'static str,
        api_version: &'static str,
    },
    /// The involved object (a Pod) was bound to the node named by `{child}`.
    Node,
}

#[derive(Debug)]
pub struct Rule {
    /// The kind of the event's involved object, or `None` for any kind.
    pub involved_kind: Option<&'static str>,
    pub reason: &'static str,
    /// Literal text with placeholders: `{child}` captures a name, `{_}` skips a word, `{*}` skips
    /// the rest.
    pub pattern: &'static str,
    pub effect: Effect,
    /// The child was created by this action: its own events can be expected to follow, so they
    /// are worth holding until this message arrives.
    pub creates: bool,
}

const POD: Effect = Effect::Child {
    kind: "Pod",
    api_version: "v1",
};
const REPLICA_SET: Effect = Effect::Child {
    kind: "ReplicaSet",
    api_version: "apps/v1",
};
const JOB: Effect = Effect::Child {
    kind: "Job",
    api_version: "batch/v1",
};
const CLAIM: Effect = Effect::Child {
    kind: "PersistentVolumeClaim",
    api_version: "v1",
};

pub const RULES: &[Rule] = &[
    // pkg/controller/deployment/sync.go (1.29+ says "from N", older releases do not).
    rule(
        Some("Deployment"),
        "ScalingReplicaSet",
        "Scaled up replica set {child} from {_} to {_}",
        REPLICA_SET,
        true,
    ),
    rule(
        Some("Deployment"),
        "ScalingReplicaSet",
        "Scaled down replica set {child} from {_} to {_}",
        REPLICA_SET,
        false,
    ),
    rule(
        Some("Deployment"),
        "ScalingReplicaSet",
        "Scaled up replica set {child} to {_}",
        REPLICA_SET,
        true,
    ),
    rule(
        Some("Deployment"),
        "ScalingReplicaSet",
        "Scaled down replica set {child} to {_}",
        REPLICA_SET,
        false,
    ),
    // pkg/controller/controller_utils.go RealPodControl: ReplicaSet, ReplicationController, Job
    // and DaemonSet controllers all create and delete pods through it.
    rule(None, "SuccessfulCreate", "Created pod: {child}", POD, true),
    rule(None, "SuccessfulDelete", "Deleted pod: {child}", POD, false),
    // pkg/controller/statefulset/stateful_pod_control.go recordPodEvent / recordClaimEvent.
    rule(
        Some("StatefulSet"),
        "SuccessfulCreate",
        "create Pod {child} in StatefulSet {_} successful",
        POD,
        true,
    ),
    rule(
        Some("StatefulSet"),
        "SuccessfulDelete",
        "delete Pod {child} in StatefulSet {_} successful",
        POD,
        false,
    ),
    rule(
        Some("StatefulSet"),
        "SuccessfulUpdate",
        "update Pod {child} in StatefulSet {_} successful",
        POD,
        false,
    ),
    rule(
        Some("StatefulSet"),
        "SuccessfulCreate",
        "create Claim {child} Pod {_} in StatefulSet {_} success",
        CLAIM,
        true,
    ),
    // pkg/controller/cronjob/cronjob_controllerv2.go.
    rule(
        Some("CronJob"),
        "SuccessfulCreate",
        "Created job {child}",
        JOB,
        true,
    ),
    rule(
        Some("CronJob"),
        "SawCompletedJob",
        "Saw completed job: {child}, condition: {*}",
        JOB,
        false,
    ),
    rule(
        Some("CronJob"),
        "SuccessfulDelete",
        "Deleted job {child}",
        JOB,
        false,
    ),
    rule(
        Some("CronJob"),
        "MissingJob",
        "Active job went missing: {child}",
        JOB,
        false,
    ),
    // pkg/scheduler/schedule_one.go.
    rule(
        Some("Pod"),
        "Scheduled",
        "Successfully assigned {_} to {child}",
        Effect::Node,
        false,
    ),
];

const fn rule(
    involved_kind: Option<&'static str>,
    reason: &'static str,
    pattern: &'static str,
    effect: Effect,
    creates: bool,
) -> Rule {
    Rule {
        involved_kind,
        reason,
        pattern,
        effect,
        creates,
    }
}

fn creation_rules_for(kind: &str) -> impl Iterator<Item = &'static Rule> + '_ {
    RULES.iter().filter(move |r| {
        r.creates && matches!(r.effect, Effect::Child { kind: k, .. } if k == kind)
    })
}

/// Whether a controller of `owner_kind` announces creating objects of `kind`.
pub fn announces(owner_kind: &str, kind: &str) -> bool {
    creation_rules_for(kind).any(|r| r.involved_kind.is_none_or(|k| k == owner_kind))
}

/// Whether some controller announces creating objects of `kind`.
pub fn announced_kind(kind: &str) -> bool {
    creation_rules_for(kind).next().is_some()
}

/// A rule that matched, with the name it captured.
#[derive(Debug, PartialEq, Eq)]
pub struct Match<'a> {
    pub effect: Effect,
    pub name: &'a str,
    pub creates: bool,
}

/// Applies the first matching rule.
pub fn apply<'a>(involved_kind: &str, reason: &str, message: &'a str) -> Option<Match<'a>> {
    RULES
        .iter()
        .filter(|r| r.reason == reason && r.involved_kind.is_none_or(|k| k == involved_kind))
        .find_map(|r| {
            capture(r.pattern, message).map(|name| Match {
                effect: r.effect,
                name,
                creates: r.creates,
            })
        })
}

/// Matches `text` against a pattern, returning what `{child}` captured.
fn capture<'a>(pattern: &str, text: &'a str) -> Option<&'a str> {
    let mut child = None;
    let mut pat = pattern;
    let mut rest = text;
    while !pat.is_empty() {
        let Some(open) = pat.find('{') else {
            return (rest == pat).then_some(child?);
        };
        let literal = &pat[..open];
        rest = rest.strip_prefix(literal)?;
        let close = open + pat[open..].find('}')?;
        let placeholder = &pat[open + 1..close];
        pat = &pat[close + 1..];
        if placeholder == "*" {
            return if pat.is_empty() { child } else { None };
        }
        // A word runs to the next literal of the pattern, or to the end.
        let next_literal = pat.split('{').next().unwrap_or("");
        let end = if next_literal.is_empty() {
            rest.len()
        } else {
            rest.find(next_literal)?
        };
        let word = &rest[..end];
        if word.is_empty() || word.contains(char::is_whitespace) {
            return None;
        }
        if placeholder == "child" {
            child = Some(word);
        }
        rest = &rest[end..];
    }
    if rest.is_empty() { child } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(kind: &str, reason: &str, message: &str) -> Option<(String, Effect)> {
        apply(kind, reason, message).map(|m| (m.name.to_string(), m.effect))
    }

    #[test]
    fn deployment_messages_old_and_new() {
        assert_eq!(
            child(
                "Deployment",
                "ScalingReplicaSet",
                "Scaled up replica set web-7d4b9c from 0 to 3"
            ),
            Some(("web-7d4b9c".into(), REPLICA_SET))
        );
        assert_eq!(
            child(
                "Deployment",
                "ScalingReplicaSet",
                "Scaled down replica set web-55f to 1"
            ),
            Some(("web-55f".into(), REPLICA_SET))
        );
    }

    #[test]
    fn pod_control_messages_for_any_owner_kind() {
        for kind in ["ReplicaSet", "Job", "DaemonSet", "ReplicationController"] {
            assert_eq!(
                child(kind, "SuccessfulCreate", "Created pod: web-1")
                    .unwrap()
                    .0,
                "web-1"
            );
            assert_eq!(
                child(kind, "SuccessfulDelete", "Deleted pod: web-1")
                    .unwrap()
                    .0,
                "web-1"
            );
        }
    }

    #[test]
    fn statefulset_cronjob_and_scheduler_messages() {
        assert_eq!(
            child(
                "StatefulSet",
                "SuccessfulCreate",
                "create Pod db-0 in StatefulSet db successful"
            )
            .unwrap()
            .0,
            "db-0"
        );
        assert_eq!(
            child(
                "StatefulSet",
                "SuccessfulCreate",
                "create Claim data-db-0 Pod db-0 in StatefulSet db success"
            ),
            Some(("data-db-0".into(), CLAIM))
        );
        assert_eq!(
            child("CronJob", "SuccessfulCreate", "Created job hello-2876")
                .unwrap()
                .0,
            "hello-2876"
        );
        assert_eq!(
            child(
                "CronJob",
                "SawCompletedJob",
                "Saw completed job: hello-2876, condition: Complete"
            )
            .unwrap()
            .0,
            "hello-2876"
        );
        assert_eq!(
            child(
                "Pod",
                "Scheduled",
                "Successfully assigned shop/web-1 to node-a"
            ),
            Some(("node-a".into(), Effect::Node))
        );
    }

    #[test]
    fn creation_announcements_come_from_the_table() {
        assert!(announces("ReplicaSet", "Pod"));
        assert!(announces("StatefulSet", "Pod"));
        assert!(announces("Deployment", "ReplicaSet"));
        assert!(announces("CronJob", "Job"));
        assert!(!announces("Deployment", "Job"));
        assert!(!announces("StatefulSet", "ReplicaSet"));
        assert!(announced_kind("Pod") && announced_kind("Job"));
        assert!(!announced_kind("Node") && !announced_kind("Deployment"));
    }

    #[test]
    fn near_misses_do_not_match() {
        assert_eq!(
            child(
                "Deployment",
                "ScalingReplicaSet",
                "Scaled up replica set  to 3"
            ),
            None
        );
        assert_eq!(
            child("ReplicaSet", "SuccessfulCreate", "Created pod: web-1 extra"),
            None
        );
        assert_eq!(
            child("ReplicaSet", "FailedCreate", "Created pod: web-1"),
            None
        );
        assert_eq!(
            child(
                "Pod",
                "SuccessfulCreate",
                "create Pod db-0 in StatefulSet db successful"
            ),
            None
        );
        assert_eq!(
            child("CronJob", "SawCompletedJob", "Saw completed job: hello"),
            None
        );
    }
}

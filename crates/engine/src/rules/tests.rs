use super::*;

#[test]
fn derived_creation_messages_read_back_as_the_creation_of_the_pod() {
    for owner in ["ReplicaSet", "StatefulSet", "Job", "DaemonSet"] {
        let message = pod_creation_message(owner, "db", "db-0").unwrap();
        let m = apply(owner, "SuccessfulCreate", &message).unwrap();
        assert_eq!((m.name, m.action), ("db-0", Create), "{owner}: {message}");
    }
    assert_eq!(pod_creation_message("Pod", "a", "b"), None);
    assert_eq!(pod_creation_message("Widget", "a", "b"), None);
    assert_eq!(
        pod_creation_message("StatefulSet", "db", "db-0").as_deref(),
        Some("create Pod db-0 in StatefulSet db successful")
    );
    let message = pod_deletion_message("ReplicaSet", "web-1", "web-1-x").unwrap();
    let m = apply("ReplicaSet", "SuccessfulDelete", &message).unwrap();
    assert_eq!((m.name, m.action), ("web-1-x", Delete), "{message}");
    assert_eq!(pod_deletion_message("Pod", "a", "b"), None);
}

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
fn karpenter_nominations_name_the_nodeclaim() {
    // Messages as Karpenter v1.15.0 writes them (NominatePodEvent), the first seen on the
    // local cluster (tests/scenarios/recorded/karpenter.jsonl).
    assert_eq!(
        child(
            "Pod",
            "Nominated",
            "Pod should schedule on: nodeclaim/spare-r67c6"
        ),
        Some(("spare-r67c6".into(), NODE_CLAIM))
    );
    assert_eq!(
        child(
            "Pod",
            "Nominated",
            "Pod should schedule on: nodeclaim/spare-r67c6, node/kwok-spare-r67c6-1"
        ),
        Some(("spare-r67c6".into(), NODE_CLAIM))
    );
    // An existing node alone: nothing is provisioned for the pod.
    assert_eq!(
        child("Pod", "Nominated", "Pod should schedule on: node/node-1"),
        None
    );
    assert!(is_nominee("NodeClaim") && !is_nominee("Node") && !is_nominee("Pod"));
    assert!(is_provisioned("NodeClaim", "Initialized"));
    assert!(!is_provisioned("NodeClaim", "Launched") && !is_provisioned("Pod", "Initialized"));
    assert_eq!(
        capacity_verdict("Pod", "TriggeredScaleUp"),
        Some(CapacityVerdict::Requested)
    );
    assert_eq!(
        capacity_verdict("Pod", "NotTriggerScaleUp"),
        Some(CapacityVerdict::Refused)
    );
    assert_eq!(capacity_verdict("Node", "TriggeredScaleUp"), None);
    assert_eq!(
        scale_up_count("Scaled up replica set web-69c6f74b8b from 2 to 4"),
        Some(2)
    );
    for uncounted in [
        "Scaled up replica set web-69c6f74b8b to 4",
        "Scaled up replica set web-69c6f74b8b",
        "Scaled up replica set web from 4 to 2",
        "Scaled up replica set web from x to 2",
        "Scaled down replica set web from 4 to 2",
    ] {
        assert_eq!(scale_up_count(uncounted), None, "{uncounted}");
    }
}

#[test]
fn creation_announcements_come_from_the_table() {
    assert!(announces("ReplicaSet", "Pod", Create));
    assert!(announces("StatefulSet", "Pod", Create));
    assert!(announces("StatefulSet", "Pod", Delete));
    assert!(announces("Deployment", "ReplicaSet", Create));
    assert!(announces("CronJob", "Job", Create));
    assert!(!announces("Deployment", "Job", Create));
    assert!(!announces("StatefulSet", "ReplicaSet", Create));
    assert!(!announces("Deployment", "ReplicaSet", Delete));
    assert!(announces("Deployment", "ReplicaSet", ScaleDown));
    assert_eq!(follows("ReplicaSet", "SuccessfulDelete"), Some(ScaleDown));
    assert!(creation_announced("Pod") && creation_announced("Job"));
    assert!(!creation_announced("Node") && !creation_announced("Deployment"));
    assert_eq!(follows("Pod", "Killing"), Some(Delete));
    assert_eq!(follows("Pod", "Started"), None);
}

#[test]
fn verbs_match_in_either_case() {
    // Kubernetes 1.37 (cases.Title) and older releases.
    for message in [
        "Create Pod db-0 in StatefulSet db successful",
        "create Pod db-0 in StatefulSet db successful",
    ] {
        assert_eq!(
            child("StatefulSet", "SuccessfulCreate", message).unwrap().0,
            "db-0"
        );
    }
    assert_eq!(
        child(
            "StatefulSet",
            "SuccessfulDelete",
            "Delete Pod db-1 in StatefulSet db successful"
        )
        .unwrap()
        .0,
        "db-1"
    );
}

#[test]
fn a_word_ends_only_where_the_next_literal_follows() {
    let scaled = |message| child("Deployment", "ScalingReplicaSet", message);
    assert_eq!(
        scaled("Scaled up replica set web-1 FROM 0 TO 3"),
        Some(("web-1".into(), REPLICA_SET))
    );
    assert_eq!(scaled("Scaled up replica set web\t1 from 0 to 3"), None);
    assert_eq!(scaled("Scaled up replica set web 1 from 0 to 3"), None);
    assert_eq!(scaled("Scaled up replica set web-1 from 0 to 3 "), None);
    // The scale-up eventspan derives reads back as one of the same child.
    let (up, down) = (
        derived_scale_up_message("web-1"),
        derived_scale_down_message("web-1"),
    );
    assert_eq!(scaled(&up), Some(("web-1".into(), REPLICA_SET)));
    assert_eq!(scaled(&down), Some(("web-1".into(), REPLICA_SET)));
    assert_eq!(
        apply("Deployment", "ScalingReplicaSet", &down).map(|m| m.action),
        Some(ScaleDown)
    );
    assert_eq!(
        child("ReplicaSet", "SuccessfulCreate", "Created pod: wéb-1")
            .unwrap()
            .0,
        "wéb-1"
    );
    assert_eq!(
        child("ReplicaSet", "SuccessfulCreate", "Created pod: wéb\u{a0}1"),
        None
    );
    assert_eq!(
        child(
            "Pod",
            "Scheduled",
            "Successfully assigned shop/wéb\u{2003}1 to n"
        ),
        None
    );
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

fn applied(message: &str) -> Vec<(String, String, String, Applied)> {
    applied_objects(message)
        .map(|o| (o.kind.into(), o.namespace.into(), o.name.into(), o.action))
        .collect()
}

fn object(kind: &str, ns: &str, name: &str, action: Applied) -> (String, String, String, Applied) {
    (kind.into(), ns.into(), name.into(), action)
}

#[test]
fn flux_change_sets_name_the_objects_applied() {
    // kustomize-controller v1.9.6, tests/scenarios/recorded/flux.
    assert_eq!(
        applied("Deployment/rec-flux/web configured"),
        vec![object("Deployment", "rec-flux", "web", Applied::Configured)]
    );
    assert_eq!(
        applied("Deployment/rec-flux/web created"),
        vec![object("Deployment", "rec-flux", "web", Applied::Created)]
    );
    // Several objects, cluster-scoped ones, unchanged ones and CRLF lines.
    assert_eq!(
        applied(
            "Namespace/shop created\nService/shop/web unchanged\r\nDeployment/shop/web configured\r\nStatefulSet/shop/db created\nDeployment/shop/old deleted"
        ),
        vec![
            object("Deployment", "shop", "web", Applied::Configured),
            object("StatefulSet", "shop", "db", Applied::Created),
        ]
    );
    assert_eq!(
        applier("Kustomization", "Progressing").map(|a| (a.manager, a.targets)),
        Some(("kustomize-controller", Targets::ChangeSet))
    );
    assert!(applier("Kustomization", "ReconciliationSucceeded").is_none());
    assert!(applier("Deployment", "Progressing").is_none());
}

#[test]
fn change_set_lines_must_be_exact() {
    for message in [
        "",
        "\n\n\r\n",
        "Health check passed in 5.21993189s",
        "Deployment/shop/web  configured",
        "Deployment/shop/web\tconfigured",
        " Deployment/shop/web configured",
        "Deployment/shop/web configured ",
        "Deployment/shop/web configured now",
        "Deployment/shop/web/extra configured",
        "Deployment//web configured",
        "Deployment/shop/ configured",
        "/shop/web configured",
        "Deploy-ment/shop/web configured",
        "Deployment/sh\u{a0}op/web configured",
        "Deployment/shop/w\u{2003}eb configured",
        "Déployment/shop/web configured",
        "Deployment/shop/web reconfigured",
        "Deployment/shop/web",
        "configured",
    ] {
        assert_eq!(applied(message), vec![], "{message:?}");
    }
    assert_eq!(
        applied("Deployment/shop/wéb CONFIGURED"),
        vec![object("Deployment", "shop", "wéb", Applied::Configured)]
    );
}

#[test]
fn huge_change_sets_are_read_in_one_pass() {
    // Thousands of lines, most of them noise: every real one is found, in order.
    let mut message = String::new();
    for i in 0..5000 {
        message.push_str(&format!("Deployment/shop/web-{i} configured\n"));
        message.push_str("ConfigMap/shop/x unchanged\r\n\n//// / / /\n");
    }
    let found = applied(&message);
    assert_eq!(found.len(), 5000);
    assert_eq!(found[4999].2, "web-4999");
    // One line of a megabyte, and a megabyte of separators.
    let long = format!("Deployment/shop/{} configured", "a".repeat(1 << 20));
    assert_eq!(applied(&long)[0].2.len(), 1 << 20);
    assert_eq!(applied(&"/".repeat(1 << 20)), vec![]);
    assert_eq!(applied(&" ".repeat(1 << 20)), vec![]);
    assert_eq!(applied(&"\n".repeat(1 << 20)), vec![]);
    let slashes = format!("Deployment/shop/web{} configured", "/".repeat(1 << 20));
    assert_eq!(applied(&slashes), vec![]);
}

#[test]
fn hpa_rescales_give_their_size_and_reason() {
    // kube-controller-manager 1.37, tests/scenarios/recorded/hpa.jsonl.
    assert_eq!(
        rescale("New size: 3; reason: Current number of replicas below Spec.MinReplicas"),
        Rescale {
            new_size: Some(3),
            reason: "Current number of replicas below Spec.MinReplicas"
        }
    );
    assert_eq!(
        rescale(
            "(combined from similar events): New size: 12; reason: cpu resource utilization (percentage of request) above target"
        ),
        Rescale {
            new_size: Some(12),
            reason: "cpu resource utilization (percentage of request) above target"
        }
    );
    assert_eq!(
        rescale("New size: 0"),
        Rescale {
            new_size: Some(0),
            reason: ""
        }
    );
    assert_eq!(
        applier("HorizontalPodAutoscaler", "SuccessfulRescale").map(|a| (a.manager, a.targets)),
        Some(("kube-controller-manager", Targets::ScaleTarget))
    );
    assert!(applier("HorizontalPodAutoscaler", "FailedRescale").is_none());
    assert!(applier("Deployment", "SuccessfulRescale").is_none());
}

#[test]
fn hostile_rescale_messages_give_no_size() {
    let none = |m: &str| rescale(m).new_size;
    for message in [
        "",
        "New size: ",
        "New size: ; reason: x",
        "New size: -3; reason: x",
        "New size: +3; reason: x",
        "New size:  3; reason: x",
        "New size: 3 ; reason: x",
        "New size: 0x10; reason: x",
        "New size: 2147483648; reason: x",
        "New size: 99999999999999999999999999; reason: x",
        "New size: ３; reason: x",
        "new size: 3; reason: x",
        "garbage",
    ] {
        assert_eq!(none(message), None, "{message:?}");
    }
    assert_eq!(none("New size: 2147483647; reason: x"), Some(2147483647));
    let huge = format!(
        "New size: {}; reason: {}",
        "9".repeat(1 << 20),
        "r".repeat(1 << 20)
    );
    assert_eq!(rescale(&huge).new_size, None);
    assert_eq!(rescale(&huge).reason.len(), 1 << 20);
}

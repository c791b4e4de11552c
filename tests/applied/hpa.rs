//! An HPA's `SuccessfulRescale` rooting the scale it caused (see the engine's `applied.rs`).
//!
//! Built on the real Deployment recording (tests/scenarios/recorded/deployment.jsonl: created
//! with 3, image changed, then scaled to 1 through `/scale`), with that last scale made the
//! HPA controller's: its managedFields entry is kube-controller-manager's, as the HPA's writes
//! through `/scale` are, and the HPA's object and event are added where the controller would
//! have written them (the rescale event is recorded right after the write it reports).

use eventspan::engine::EngineConfig;
use eventspan::engine::model::{AttrRef, FinishedSpan};
use eventspan::replay::{Replay, replay};

const RECORDING: &str = include_str!("../scenarios/recorded/deployment.jsonl");
/// The first line showing the scale's generation (3) of the Deployment.
const SCALED: &str = r#""generation":3"#;

fn hpa_object(namespace: &str, target: &str) -> String {
    let spec = if target.is_empty() {
        r#"{"minReplicas":1,"maxReplicas":1}"#.to_string()
    } else {
        format!(
            r#"{{"scaleTargetRef":{{"apiVersion":"apps/v1","kind":"Deployment","name":"{target}"}},"minReplicas":1,"maxReplicas":1}}"#
        )
    };
    format!(
        r#"{{"object":{{"apiVersion":"autoscaling/v2","kind":"HorizontalPodAutoscaler","metadata":{{"creationTimestamp":"2026-11-25T08:40:30Z","generation":1,"name":"web-hpa","namespace":"{namespace}","resourceVersion":"900","uid":"hpa-uid-1","managedFields":[{{"apiVersion":"autoscaling/v2","fieldsType":"FieldsV1","fieldsV1":{{"f:spec":{{}}}},"manager":"kubectl-create","operation":"Update","time":"2026-11-25T08:40:30Z"}}]}},"spec":{spec}}},"observedAt":"2026-11-25T08:40:30.100000Z","type":"ADDED"}}"#
    )
}

fn rescale_event(namespace: &str, message: &str) -> String {
    let note = serde_json::to_string(message).unwrap();
    format!(
        r#"{{"object":{{"apiVersion":"events.k8s.io/v1","deprecatedCount":1,"deprecatedFirstTimestamp":"2026-11-25T08:40:32Z","deprecatedLastTimestamp":"2026-11-25T08:40:32Z","deprecatedSource":{{"component":"horizontal-pod-autoscaler"}},"eventTime":null,"kind":"Event","metadata":{{"creationTimestamp":"2026-11-25T08:40:32Z","name":"web-hpa.18eb3d1200000001","namespace":"{namespace}","resourceVersion":"901","uid":"rescale-event-1"}},"note":{note},"reason":"SuccessfulRescale","regarding":{{"apiVersion":"autoscaling/v2","kind":"HorizontalPodAutoscaler","name":"web-hpa","namespace":"{namespace}","resourceVersion":"900","uid":"hpa-uid-1"}},"reportingController":"horizontal-pod-autoscaler","type":"Normal"}},"observedAt":"2026-11-25T08:40:32.590000Z","type":"ADDED"}}"#
    )
}

/// The recording with the scale made by `manager`, the HPA's object (scaling `target`, none if
/// empty) at the start and its rescale event (`message`) right after the scale is seen.
fn scenario(manager: &str, namespace: &str, target: &str, message: &str) -> String {
    let recording = RECORDING.replace(
        r#""manager":"kubectl","operation":"Update","subresource":"scale""#,
        &format!(r#""manager":"{manager}","operation":"Update","subresource":"scale""#),
    );
    // The recording predates template capture: give each version of the Deployment the pod
    // template it had (nginx:1.27, then 1.28 from generation 2), so changes have summaries.
    let mut lines: Vec<String> = recording
        .lines()
        .map(|l| {
            if !l.contains(r#""kind":"Deployment","metadata""#) {
                return l.to_string();
            }
            let image = if l.contains(r#""generation":1,"#) { "nginx:1.27" } else { "nginx:1.28" };
            l.replacen(
                r#""spec":{"replicas":"#,
                &format!(
                    r#""spec":{{"template":{{"spec":{{"containers":[{{"name":"nginx","image":"{image}"}}]}}}},"replicas":"#
                ),
                1,
            )
        })
        .collect();
    let scaled = lines
        .iter()
        .position(|l| l.contains(r#""kind":"Deployment","metadata""#) && l.contains(SCALED))
        .expect("the recording scales the Deployment");
    lines.insert(scaled + 1, rescale_event(namespace, message));
    let first_after = lines
        .iter()
        .position(|l| l.contains("08:40:30") || l.contains("08:40:31"))
        .unwrap_or(scaled);
    lines.insert(first_after, hpa_object(namespace, target));
    lines.join("\n")
}

const MIN: &str = "New size: 1; reason: Current number of replicas above Spec.MaxReplicas";

fn run(input: &str) -> Replay {
    replay(input, EngineConfig::default())
}

/// The root span of the Deployment's trace of `generation`.
fn root(spans: &[FinishedSpan], generation: i64) -> &FinishedSpan {
    spans
        .iter()
        .find(|s| {
            s.parent.is_none() && &*s.root.kind == "Deployment" && s.root.generation == generation
        })
        .unwrap_or_else(|| panic!("no Deployment trace of generation {generation}"))
}

fn str_attr<'a>(span: &'a FinishedSpan, key: &str) -> Option<&'a str> {
    match span.attribute(key) {
        Some(AttrRef::Str(s)) => Some(s),
        _ => None,
    }
}

fn int_attr(span: &FinishedSpan, key: &str) -> Option<i64> {
    match span.attribute(key) {
        Some(AttrRef::Int(n)) => Some(n),
        _ => None,
    }
}

#[test]
fn the_rescale_roots_the_scale_and_names_the_hpa() {
    let out = run(&scenario(
        "kube-controller-manager",
        "rec-deployment",
        "web",
        MIN,
    ));
    let scale = root(&out.spans, 3);
    let event = scale
        .event
        .as_ref()
        .expect("the HPA's event roots the scale");
    assert_eq!(
        (event.involved.kind.as_str(), event.reason.as_str()),
        ("HorizontalPodAutoscaler", "SuccessfulRescale")
    );
    assert_eq!(
        str_attr(scale, "eventspan.trigger.kind"),
        Some("HorizontalPodAutoscaler")
    );
    assert_eq!(str_attr(scale, "eventspan.trigger.name"), Some("web-hpa"));
    assert_eq!(str_attr(scale, "k8s.hpa.name"), Some("web-hpa"));
    assert_eq!(int_attr(scale, "eventspan.hpa.new_size"), Some(1));
    assert_eq!(
        str_attr(scale, "eventspan.hpa.reason"),
        Some("Current number of replicas above Spec.MaxReplicas")
    );
    // A scale, told apart from the template rollout before it.
    assert_eq!(str_attr(scale, "eventspan.change.kind"), Some("scale"));
    assert_eq!(int_attr(scale, "eventspan.change.replicas.to"), Some(1));
    let rollout = root(&out.spans, 2);
    assert!(rollout.event.is_none(), "the image change stays kubectl's");
    assert_eq!(str_attr(rollout, "eventspan.change.kind"), Some("template"));
    // The scale-down of the ReplicaSet is in the HPA-rooted trace.
    assert!(out.spans.iter().any(|s| {
        s.trace_id == scale.trace_id
            && s.event
                .as_ref()
                .is_some_and(|e| e.message.contains("from 3 to 1"))
    }));
    assert_eq!(out.stats.rescales_unattributed, 0);
}

#[test]
fn another_manager_size_or_namespace_is_not_the_hpa_s_doing() {
    // Scaled by kubectl while an HPA says it rescaled: the write is kubectl's.
    let out = run(&scenario("kubectl", "rec-deployment", "web", MIN));
    assert!(root(&out.spans, 3).event.is_none());
    // The HPA says it set 7 replicas: not the scale to 1.
    let out = run(&scenario(
        "kube-controller-manager",
        "rec-deployment",
        "web",
        "New size: 7; reason: cpu resource utilization (percentage of request) above target",
    ));
    assert!(root(&out.spans, 3).event.is_none());
    // An HPA of another namespace naming a Deployment of the same name: its target is in its
    // own namespace, where there is none.
    let out = run(&scenario("kube-controller-manager", "other", "web", MIN));
    assert!(root(&out.spans, 3).event.is_none());
    assert_eq!(out.stats.rescales_unattributed, 1);
    // An HPA scaling another Deployment of the namespace.
    let out = run(&scenario(
        "kube-controller-manager",
        "rec-deployment",
        "api",
        MIN,
    ));
    assert!(root(&out.spans, 3).event.is_none());
}

#[test]
fn hostile_rescales_are_attributed_without_size_or_counted() {
    // A garbage message, a size beyond int32: the HPA's rescale still, without a size.
    for message in ["garbage", "New size: 99999999999999999999; reason: x", ""] {
        let out = run(&scenario(
            "kube-controller-manager",
            "rec-deployment",
            "web",
            message,
        ));
        let scale = root(&out.spans, 3);
        assert!(scale.event.is_some(), "{message:?}");
        assert_eq!(
            int_attr(scale, "eventspan.hpa.new_size"),
            None,
            "{message:?}"
        );
        assert_eq!(str_attr(scale, "eventspan.trigger.name"), Some("web-hpa"));
    }
    // An HPA naming nothing: counted, nothing rooted, no panic.
    let out = run(&scenario(
        "kube-controller-manager",
        "rec-deployment",
        "",
        MIN,
    ));
    assert!(root(&out.spans, 3).event.is_none());
    assert_eq!(out.stats.rescales_unattributed, 1);
}

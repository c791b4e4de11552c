//! A GitOps controller's report of an apply roots the rollout it caused, and an HPA's rescale
//! the scale it caused (the engine's `applied.rs`), on real recordings replayed end to end.

#[path = "applied/hpa.rs"]
mod hpa;

use eventspan::engine::EngineConfig;
use eventspan::engine::model::FinishedSpan;
use eventspan::replay::replay;

/// The first commit of the real Flux recording (tests/scenarios/flux-apply.jsonl).
const RECORDING: &str = include_str!("scenarios/flux-apply.jsonl");

/// The root span of the Deployment's first generation.
fn deployment_root(input: &str) -> FinishedSpan {
    let spans = replay(input, EngineConfig::default()).spans;
    spans
        .into_iter()
        .find(|s| s.parent.is_none() && &*s.root.kind == "Deployment")
        .expect("a Deployment trace")
}

#[test]
fn the_report_of_the_apply_roots_the_rollout() {
    let root = deployment_root(RECORDING);
    let event = root.event.as_ref().expect("an event root");
    assert_eq!(
        (event.reason.as_str(), event.message.as_str()),
        ("Progressing", "Deployment/rec-flux/web created")
    );
    assert_eq!(
        event.revision,
        "main@sha1:0bc35622f0a4fdb59b9285f5113d738bb7a8170d"
    );
}

#[test]
fn another_manager_or_namespace_is_not_the_report_s_doing() {
    // The generation written by someone else: Flux's report is not its cause.
    let by_kubectl = RECORDING.replace(
        r#""manager":"kustomize-controller","operation":"Apply""#,
        r#""manager":"kubectl","operation":"Apply""#,
    );
    assert!(deployment_root(&by_kubectl).event.is_none());
    // The report names an object of another namespace (of the same name): not claimed.
    let elsewhere = RECORDING.replace(
        "Deployment/rec-flux/web created",
        "Deployment/other/web created",
    );
    assert!(deployment_root(&elsewhere).event.is_none());
    // A report that is not a change set line.
    let prose = RECORDING.replace(
        "Deployment/rec-flux/web created",
        "Deployment/rec-flux/web created, probably",
    );
    assert!(deployment_root(&prose).event.is_none());
}

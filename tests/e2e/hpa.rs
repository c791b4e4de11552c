//! An HPA's rescale at the root of the scale it caused, and the rollout histograms' exemplars
//! leading to the traces a session's status lists.

use std::time::Duration;

use serde_json::Value;

use crate::World;
use crate::cluster::{Cluster, eventually};
use crate::operator::{jaeger_trace, rollout, session_yaml, status};
use crate::sessions::wait_ready;

const SECONDS_60: Duration = Duration::from_secs(60);

fn hpa_yaml(ns: &str, min: u32) -> String {
    format!(
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {{name: web-hpa, namespace: {ns}}}\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}\n  minReplicas: {min}\n  maxReplicas: 6\n"
    )
}

/// The status's newest trace once it is of `generation` of the Deployment.
fn wait_generation(c: &Cluster, ns: &str, generation: i64) -> Result<Value, String> {
    eventually(SECONDS_60, || {
        let s = status(c, ns, "scales")?;
        s["recentTraces"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["root"]["kind"] == "Deployment" && t["root"]["generation"] == generation)
            .cloned()
            .ok_or(format!("no trace of generation {generation}: {s}"))
    })
}

/// The trace IDs of the exemplars of a histogram's buckets on `/metrics` (OpenMetrics:
/// `name_bucket{...} N # {trace_id="..."} value timestamp`).
pub fn exemplar_trace_ids(metrics: &str, histogram: &str) -> Vec<String> {
    let bucket = format!("{histogram}_bucket{{");
    metrics
        .lines()
        .filter(|l| l.starts_with(&bucket))
        .filter_map(|l| l.split_once("# {trace_id=\"").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_once('"').map(|(id, _)| id.to_string()))
        .collect()
}

/// A session traces a namespace where an HPA scales a Deployment twice without metrics (its
/// minReplicas above the replicas, then raised): each scale's trace is rooted at the HPA's
/// `SuccessfulRescale`, naming the HPA and the new size, in Jaeger; and the rollout and pod
/// histograms' exemplars on `/metrics` carry the trace ID the status lists for the scale.
pub fn hpa_scale_is_rooted_at_the_hpa_and_exemplars_lead_to_it(w: &World) -> Result<(), String> {
    let c = &w.cluster;
    let operator = w.operator()?;
    let ns = c.namespace("e2e-hpa")?;
    c.apply(&session_yaml(&ns, "scales", c.var("JAEGER_OTLP_GRPC"), ""))?;
    wait_ready(w, &ns, "scales")?;
    rollout(c, &ns, "web", "app: web")?;
    c.apply(&hpa_yaml(&ns, 3))?;
    let first = wait_generation(c, &ns, 2)?;
    c.kubectl(&[
        "-n",
        &ns,
        "rollout",
        "status",
        "deployment/web",
        "--timeout=60s",
    ])?;
    c.apply(&hpa_yaml(&ns, 4))?;
    let second = wait_generation(c, &ns, 3)?;
    for (trace, size) in [(&first, "3"), (&second, "4")] {
        let id = trace["traceId"].as_str().ok_or("no trace ID")?.to_string();
        let spans = eventually(SECONDS_60, || {
            let spans = jaeger_trace(c, &id)?;
            spans
                .iter()
                .any(|s| s.parent.is_none())
                .then_some(spans.clone())
                .ok_or(format!("no root in Jaeger yet for {id}"))
        })?;
        let root = spans.iter().find(|s| s.parent.is_none()).expect("found");
        let tag = |k: &str| root.tags.get(k).map(String::as_str);
        if root.operation != "HorizontalPodAutoscaler.SuccessfulRescale"
            || tag("eventspan.trigger.name") != Some("web-hpa")
            || tag("k8s.hpa.name") != Some("web-hpa")
            || tag("eventspan.hpa.new_size") != Some(size)
            || tag("eventspan.change.kind") != Some("scale")
        {
            return Err(format!("root of {id}: {} {:?}", root.operation, root.tags));
        }
    }
    // Exemplars: the scale's trace, as the status lists it, on the rollout histogram; its new
    // pod's readiness, the newest observed, on the pod histogram.
    let newest = second["traceId"].as_str().unwrap_or("").to_string();
    eventually(SECONDS_60, || {
        let metrics = operator.metrics()?;
        let rollouts = exemplar_trace_ids(&metrics, "eventspan_rollout_duration_seconds");
        let pods = exemplar_trace_ids(&metrics, "eventspan_pod_ready_seconds");
        (rollouts.contains(&newest) && pods.contains(&newest))
            .then_some(())
            .ok_or(format!(
                "{newest} not among the exemplars: rollouts {rollouts:?}, pods {pods:?}"
            ))
    })
}

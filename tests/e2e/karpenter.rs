//! The real Karpenter (its KWOK provider, tests/cluster/karpenter-ctl) brings up a node for a
//! pod that does not fit: the pod's trace holds the NodeClaim's launch and readiness under the
//! pod's `Nominated` span, as infrastructure time, for an admin session; a tenant's session of
//! the same namespace gets the pod's trace without the cluster-scoped NodeClaim's spans. The
//! node's provisioning is on `/metrics`, by namespace as the admin session asks, with the pod's
//! trace as its exemplar.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::World;
use crate::cluster::{Cluster, eventually};
use crate::hpa::exemplar_trace_ids;
use crate::operator::{OPERATOR_NS, jaeger_trace, rolled_out_within, status};
use crate::receiver::{ReceivedSpan, Receiver, receiver_session};

const NODEPOOL: &str = "e2e-spare";
const ADMIN_SESSION: &str = "karpenter-admin";
const TENANT_SESSION: &str = "pods";
const SECONDS_90: Duration = Duration::from_secs(90);

/// Karpenter's kinds, readable by the operator (RBAC for custom kinds is opt-in).
const RBAC: &str = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: eventspan-karpenter}\nrules:\n- apiGroups: [karpenter.sh]\n  resources: [nodeclaims, nodepools]\n  verbs: [get, list, watch]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: eventspan-karpenter}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: eventspan-karpenter}\nsubjects:\n- {kind: ServiceAccount, name: eventspan, namespace: eventspan-system}\n";

/// A NodePool of up to 64 CPU of KWOK nodes (the class karpenter-ctl creates).
fn nodepool() -> String {
    format!(
        "apiVersion: karpenter.sh/v1\nkind: NodePool\nmetadata: {{name: {NODEPOOL}}}\nspec:\n  limits: {{cpu: \"64\"}}\n  template:\n    spec:\n      nodeClassRef: {{group: karpenter.kwok.sh, kind: KWOKNodeClass, name: default}}\n      requirements:\n      - {{key: kubernetes.io/os, operator: In, values: [linux]}}\n      - {{key: karpenter.sh/capacity-type, operator: In, values: [on-demand]}}\n      expireAfter: Never\n  disruption: {{consolidateAfter: Never}}\n"
    )
}

/// Three pods of 20 CPU: the cluster's two 32-CPU KWOK nodes hold two, the third waits.
fn deployment(ns: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: {ns}, labels: {{app: web}}}}\nspec:\n  replicas: 3\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      containers: [{{name: app, image: nginx:1.27, resources: {{requests: {{cpu: \"20\"}}}}}}]\n"
    )
}

fn of_trace<'a>(spans: &'a [ReceivedSpan], trace: &str) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|s| s.trace_id == trace).collect()
}

pub fn pod_waiting_for_a_karpenter_node_holds_its_nodeclaim(w: &World) -> Result<(), String> {
    let c = &w.cluster;
    let operator = w.operator()?;
    let ns = c.namespace("e2e-karpenter")?;
    c.karpenter("start")?;
    let admin_rx = Receiver::start()?;
    let tenant_rx = Receiver::start()?;
    let result = (|| {
        c.apply(RBAC)?;
        c.apply(&nodepool())?;
        // The admin session also exports to Jaeger, traces `default`, where the cluster-scoped
        // NodeClaim's events are, and asks for its histograms by namespace.
        receiver_session(
            c,
            OPERATOR_NS,
            ADMIN_SESSION,
            &admin_rx,
            &format!(
                "  - name: jaeger\n    otlp: {{endpoint: \"{}\"}}\n  namespaces: [{ns}, default]\n  metrics: {{namespaceLabel: true}}\n",
                c.var("JAEGER_OTLP_GRPC")
            ),
        )?;
        receiver_session(c, &ns, TENANT_SESSION, &tenant_rx, "")?;
        c.apply(&deployment(&ns))?;
        rolled_out_within(c, &ns, "web", Duration::from_secs(120))?;
        let trace = eventually(SECONDS_90, || {
            let s = status(c, OPERATOR_NS, ADMIN_SESSION)?;
            s["recentTraces"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| t["root"]["kind"] == "Deployment" && t["root"]["namespace"] == *ns)
                .and_then(|t| t["traceId"].as_str().map(str::to_string))
                .ok_or(format!("no trace of the Deployment: {s}"))
        })?;
        check_admin(c, &admin_rx, &trace)?;
        check_tenant(&admin_rx, &tenant_rx, &trace)?;
        eventually(SECONDS_90, || {
            let metrics = operator.metrics()?;
            let exemplars = exemplar_trace_ids(&metrics, "eventspan_node_provisioning_seconds");
            let count = format!(
                "eventspan_node_provisioning_seconds_count{{kind=\"NodeClaim\",namespace=\"{ns}\"}} "
            );
            (exemplars.contains(&trace) && metrics.lines().any(|l| l.starts_with(&count)))
                .then_some(())
                .ok_or(format!(
                    "no {count:?} with exemplar {trace} (exemplars {exemplars:?})"
                ))
        })
    })();
    let cleanup = clean_up(c, &ns);
    result.and(cleanup)
}

/// The admin session's receiver: a pod nominated to a NodeClaim, the NodeClaim's launch and
/// readiness under the nomination, all infrastructure time, each span once; Jaeger the same.
fn check_admin(c: &Cluster, rx: &Receiver, trace: &str) -> Result<(), String> {
    let nominated = eventually(SECONDS_90, || {
        let spans = rx.spans();
        let spans = of_trace(&spans, trace);
        let nominated = spans
            .iter()
            .find(|s| s.name == "Pod.Nominated")
            .ok_or("no Pod.Nominated yet")?;
        let under = |name: &str| {
            spans
                .iter()
                .find(|s| s.name == name && s.parent.as_deref() == Some(&nominated.span_id))
        };
        let (launched, initialized) = (
            under("NodeClaim.Launched").ok_or("no NodeClaim.Launched under the nomination")?,
            under("NodeClaim.Initialized")
                .ok_or("no NodeClaim.Initialized under the nomination")?,
        );
        let creation = spans
            .iter()
            .find(|s| Some(&s.span_id) == nominated.parent.as_ref())
            .ok_or("the nomination's parent has not come")?;
        let wait_ms: f64 = creation
            .attr("eventspan.phase.wait-node.ms")
            .and_then(|v| v.parse().ok())
            .ok_or(format!(
                "no wait-node phase on {}: {:?}",
                creation.name, creation.attributes
            ))?;
        let infra = |s: &ReceivedSpan| s.attr("eventspan.phase.kind") == Some("infra");
        let provisioning_ms: f64 = initialized
            .attr("eventspan.node.provisioning.ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        if creation.name != "ReplicaSet.SuccessfulCreate"
            || nominated.attr("eventspan.phase") != Some("wait-node")
            || !infra(nominated)
            || !infra(launched)
            || !infra(initialized)
            || wait_ms <= 0.0
            || provisioning_ms <= 0.0
        {
            return Err(format!(
                "nomination {:?} under {} ({wait_ms} ms waiting), launch {:?}, readiness {:?}",
                nominated.attributes, creation.name, launched.attributes, initialized.attributes
            ));
        }
        let ids: Vec<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
        let unique: BTreeSet<&str> = ids.iter().copied().collect();
        if unique.len() != ids.len() {
            return Err(format!(
                "{} of {} span IDs twice",
                ids.len() - unique.len(),
                ids.len()
            ));
        }
        eprintln!(
            "  karpenter: pod waited {wait_ms} ms for a node, provisioned {provisioning_ms} ms after the nomination; {} spans in its trace",
            spans.len()
        );
        Ok(nominated.span_id.clone())
    })?;
    eventually(SECONDS_90, || {
        let spans = jaeger_trace(c, trace)?;
        spans
            .iter()
            .any(|s| s.operation == "NodeClaim.Launched" && s.parent.as_deref() == Some(&nominated))
            .then_some(())
            .ok_or(format!(
                "Jaeger: no NodeClaim.Launched under {nominated} in {trace}"
            ))
    })
}

/// The tenant's session: the same trace, the nomination included, the NodeClaim's spans not.
fn check_tenant(admin: &Receiver, tenant: &Receiver, trace: &str) -> Result<(), String> {
    eventually(SECONDS_90, || {
        let (all, got) = (admin.spans(), tenant.spans());
        let want: BTreeSet<&str> = of_trace(&all, trace)
            .into_iter()
            .filter(|s| !s.name.starts_with("NodeClaim."))
            .map(|s| s.span_id.as_str())
            .collect();
        let got_spans = of_trace(&got, trace);
        let claims = got_spans
            .iter()
            .filter(|s| s.name.starts_with("NodeClaim."))
            .count();
        let got: BTreeSet<&str> = got_spans.iter().map(|s| s.span_id.as_str()).collect();
        (claims == 0 && got == want && got_spans.iter().any(|s| s.name == "Pod.Nominated"))
            .then_some(())
            .ok_or(format!(
                "tenant: {} spans ({claims} of the NodeClaim), {} expected",
                got.len(),
                want.len()
            ))
    })
}

/// Karpenter removes its node with the NodePool (draining it first); then it stops.
fn clean_up(c: &Cluster, ns: &str) -> Result<(), String> {
    let steps: [&[&str]; 6] = [
        &[
            "-n",
            ns,
            "delete",
            "deployment",
            "web",
            "--wait=true",
            "--timeout=60s",
        ],
        &[
            "delete",
            "nodepool",
            NODEPOOL,
            "--wait=true",
            "--timeout=90s",
        ],
        &[
            "wait",
            "--for=delete",
            "nodeclaims",
            "--all",
            "--timeout=90s",
        ],
        &[
            "-n",
            OPERATOR_NS,
            "delete",
            "tracesession",
            ADMIN_SESSION,
            "--wait=false",
        ],
        &[
            "-n",
            ns,
            "delete",
            "tracesession",
            TENANT_SESSION,
            "--wait=false",
        ],
        &[
            "delete",
            "clusterrolebinding,clusterrole",
            "eventspan-karpenter",
        ],
    ];
    // `wait --for=delete --all` finds nothing once the NodeClaims are gone: not an error here.
    let mut errors: Vec<String> = steps
        .iter()
        .filter_map(|args| c.kubectl(args).err())
        .filter(|e| !e.contains("no matching resources"))
        .collect();
    if let Err(e) = c.karpenter("stop") {
        errors.push(e);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "cleaning up after Karpenter: {}",
            errors.join("; ")
        ))
    }
}

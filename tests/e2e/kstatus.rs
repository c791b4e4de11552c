//! TraceSession status as GitOps tools read it: the real kstatus library (`sigs.k8s.io/cli-utils`,
//! built by tests/cluster/build as `kstatus`) computes each session's state from the object the
//! API server serves.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::World;
use crate::cluster::{Cluster, eventually};
use crate::operator::{OPERATOR_NS, condition, free_port, rollout, session_yaml};

const SECONDS_30: Duration = Duration::from_secs(30);

/// What kstatus computes for an object given as JSON: (status, message).
fn kstatus_of(c: &Cluster, object_json: &str) -> Result<(String, String), String> {
    // Built beside kubectl (target/cluster/bin or $EVENTSPAN_CLUSTER_BIN).
    let bin = PathBuf::from(c.var("KUBECTL")).with_file_name("kstatus");
    let mut child = Command::new(&bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(object_json.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "kstatus: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    Ok((text("status"), text("message")))
}

fn get_json(c: &Cluster, ns: &str, name: &str) -> Result<String, String> {
    c.kubectl(&["-n", ns, "get", "tracesession", name, "-o", "json"])
}

/// kstatus of a session as the API server serves it now.
fn kstatus(c: &Cluster, ns: &str, name: &str) -> Result<(String, String), String> {
    kstatus_of(c, &get_json(c, ns, name)?)
}

/// Waits until kstatus computes `want` for a session; returns how long it took and the message.
fn wait_kstatus(
    c: &Cluster,
    ns: &str,
    name: &str,
    want: &str,
    timeout: Duration,
) -> Result<(Duration, String), String> {
    let started = Instant::now();
    eventually(timeout, || {
        let (got, message) = kstatus(c, ns, name)?;
        (got == want)
            .then(|| (started.elapsed(), message.clone()))
            .ok_or(format!("{ns}/{name} is {got}: {message}"))
    })
}

/// The status conditions of a session, `Type=Status/Reason` each, for messages and the log.
fn conditions(c: &Cluster, ns: &str, name: &str) -> Result<String, String> {
    let object: Value = serde_json::from_str(&get_json(c, ns, name)?).map_err(|e| e.to_string())?;
    let status = &object["status"];
    Ok([
        "Ready",
        "Reconciling",
        "Stalled",
        "ExportersHealthy",
        "WatchesHealthy",
    ]
    .iter()
    .map(|t| match condition(status, t) {
        Some((s, reason, _)) => format!("{t}={s}/{reason}"),
        None => format!("{t} missing"),
    })
    .collect::<Vec<_>>()
    .join(" "))
}

/// `kubectl wait --for=condition=Ready` with a short timeout: whether it returned ready.
fn kubectl_wait_ready(c: &Cluster, ns: &str, name: &str, timeout: &str) -> bool {
    c.kubectl(&[
        "-n",
        ns,
        "wait",
        "--for=condition=Ready",
        &format!("tracesession/{name}"),
        &format!("--timeout={timeout}"),
    ])
    .is_ok()
}

/// Issue 15 item 1: a valid session computes to Current, an edited one to InProgress until
/// observed, a refused one to Failed within seconds, one whose only exporter is down to not
/// Current; `kubectl wait` and the Ready printer column agree with kstatus each time.
pub fn sessions_compute_to_the_kstatus_they_mean(w: &World) -> Result<(), String> {
    let c = &w.cluster;
    w.operator()?;
    let ns = c.namespace("e2e-kstatus")?;
    let grpc = c.var("JAEGER_OTLP_GRPC");

    // As created, before the operator has written anything: not yet observed.
    let created = c.kubectl_with_input(
        &["create", "-f", "-", "-o", "json"],
        Some(&session_yaml(&ns, "valid", grpc, "")),
    )?;
    let (state, message) = kstatus_of(c, &created)?;
    println!("  kstatus as created: {state} ({message})");
    if state != "InProgress" {
        return Err(format!(
            "a session no one observed yet is {state}: {message}"
        ));
    }

    // Valid: Current, and kubectl wait and the Ready column say the same.
    let (took, _) = wait_kstatus(c, &ns, "valid", "Current", SECONDS_30)?;
    println!(
        "  valid: Current after {:.1}s; {}",
        took.as_secs_f64(),
        conditions(c, &ns, "valid")?
    );
    if !kubectl_wait_ready(c, &ns, "valid", "5s") {
        return Err("kstatus Current but kubectl wait Ready timed out".into());
    }
    let row = c.kubectl(&["-n", &ns, "get", "tracesession", "valid", "--no-headers"])?;
    // NAME, then READY.
    if row.split_whitespace().nth(1) != Some("True") {
        return Err(format!("Ready column of a Current session: {row}"));
    }

    // Edited: InProgress until the operator has observed the new generation, then Current.
    let patched = c.kubectl(&[
        "-n",
        &ns,
        "patch",
        "tracesession",
        "valid",
        "--type=merge",
        "-p",
        r#"{"spec":{"maxRecentTraces":5}}"#,
        "-o",
        "json",
    ])?;
    let (state, message) = kstatus_of(c, &patched)?;
    println!("  just edited: {state} ({message})");
    if state != "InProgress" || !message.contains("generation is 2") {
        return Err(format!("an edit not yet observed is {state}: {message}"));
    }
    let (took, _) = wait_kstatus(c, &ns, "valid", "Current", SECONDS_30)?;
    println!("  edited: Current again after {:.1}s", took.as_secs_f64());

    // Refused: Failed (Stalled=True) within seconds, naming reason and field; not Ready.
    let https = format!("https://{}", grpc.trim_start_matches("http://"));
    c.apply(&format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: eventspan-read-nope, namespace: {ns}}}\nrules:\n- {{apiGroups: [\"\"], resources: [secrets], resourceNames: [nope], verbs: [get]}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: eventspan-read-nope, namespace: {ns}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: eventspan-read-nope}}\nsubjects:\n- {{kind: ServiceAccount, name: eventspan, namespace: {OPERATOR_NS}}}\n"
    ))?;
    let refused = [
        (
            "foreign",
            session_yaml(&ns, "foreign", grpc, "  namespaces: [kube-system]\n"),
            "spec.namespaces",
        ),
        (
            "unknown-kind",
            session_yaml(
                &ns,
                "unknown-kind",
                grpc,
                "  rootKinds: [{group: example.com, kind: Widget}]\n",
            ),
            "spec.rootKinds[0]",
        ),
        (
            "no-secret",
            format!(
                "apiVersion: eventspan.dev/v1alpha1\nkind: TraceSession\nmetadata: {{name: no-secret, namespace: {ns}}}\nspec:\n  exporters:\n  - name: jaeger\n    otlp:\n      endpoint: \"{https}\"\n      headersFrom: [{{secretRef: {{name: nope}}}}]\n"
            ),
            "spec.exporters[0].otlp.headersFrom[0].secretRef.name",
        ),
    ];
    for (name, yaml, field) in &refused {
        c.apply(yaml)?;
        let (took, message) = wait_kstatus(c, &ns, name, "Failed", Duration::from_secs(15))?;
        println!(
            "  {name}: Failed after {:.1}s ({message}); {}",
            took.as_secs_f64(),
            conditions(c, &ns, name)?
        );
        if !message.contains(field) {
            return Err(format!("{name}: Failed, but not naming {field}: {message}"));
        }
        if kubectl_wait_ready(c, &ns, name, "1s") {
            return Err(format!(
                "{name}: kstatus Failed but kubectl wait Ready returned"
            ));
        }
    }

    // The only exporter down (nothing listens there): running, but not Current.
    let down = format!("http://127.0.0.1:{}", free_port());
    c.apply(&session_yaml(&ns, "down", &down, ""))?;
    rollout(c, &ns, "web", "app: web")?;
    // One read for both: the state kstatus computes from the very object that says it fails.
    let seen = eventually(Duration::from_secs(60), || {
        let json = get_json(c, &ns, "down")?;
        let object: Value = serde_json::from_str(&json).map_err(|e| e.to_string())?;
        match condition(&object["status"], "ExportersHealthy") {
            Some((s, _, _)) if s == "False" => kstatus_of(c, &json),
            other => Err(format!("ExportersHealthy {other:?}")),
        }
    })?;
    println!(
        "  only exporter down: {} ({}); {}",
        seen.0,
        seen.1,
        conditions(c, &ns, "down")?
    );
    if seen.0 == "Current" {
        return Err(format!(
            "a session whose only exporter fails is Current: {}",
            seen.1
        ));
    }
    if kubectl_wait_ready(c, &ns, "down", "1s") {
        return Err("only exporter down, yet kubectl wait Ready returned".into());
    }
    Ok(())
}

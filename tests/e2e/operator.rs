//! The operator on the real control plane, exporting to real Jaeger: the user stories of the
//! TraceSession resource. The operator runs as the ServiceAccount deploy/ creates (a token, not
//! the admin certificate), so the least-privilege RBAC is exercised too.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

use crate::cluster::{Cluster, eventually, wait_or_kill};

pub const OPERATOR_NS: &str = "eventspan-system";
/// The `--cluster-name` of every operator the tests run: `k8s.cluster.name` on every Resource.
pub const CLUSTER_NAME: &str = "e2e-local";
/// The identity of the shared operator's replica (leader election).
const IDENTITY: &str = "replica-a";

pub struct Operator {
    child: Mutex<Option<Child>>,
    pub metrics_port: u16,
    kubeconfig: std::path::PathBuf,
}

/// A port nothing listens on, below the ephemeral range (as tests/cluster/lib.sh picks them):
/// an ephemeral port can be taken by an outgoing connection before the operator binds it.
pub fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let base = 10_000 + (std::process::id() % 10_000) as u16;
    loop {
        let offset = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = base + offset % 12_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A plain HTTP GET on loopback (no client library needed for tests).
pub fn http_get(url: &str) -> Result<String, String> {
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs")?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut stream = TcpStream::connect(host).map_err(|e| format!("{url}: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or("no HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!("{url}: {}", head.lines().next().unwrap_or("")));
    }
    Ok(body.to_string())
}

impl Operator {
    /// Installs deploy/ (CRD, namespace, RBAC; the in-cluster Deployment is scaled to zero:
    /// its image cannot be built here) and runs `eventspan run` with the ServiceAccount's token.
    pub fn start(c: &Cluster) -> Result<Operator, String> {
        let deploy = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");
        c.kubectl(&["apply", "--server-side", "-k", deploy])?;
        c.kubectl(&[
            "-n",
            OPERATOR_NS,
            "scale",
            "deployment/eventspan",
            "--replicas=0",
        ])?;
        c.kubectl(&[
            "wait",
            "--for=condition=Established",
            "crd/tracesessions.eventspan.dev",
            "--timeout=30s",
        ])?;
        let token = c.kubectl(&[
            "-n",
            OPERATOR_NS,
            "create",
            "token",
            "eventspan",
            "--duration=2h",
        ])?;
        let pki = c.state_dir().join("pki/ca.crt");
        let kubeconfig = c.state_dir().join("operator.kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: eventspan\n  user:\n    token: {}\ncontexts:\n- name: local\n  context: {{cluster: local, user: eventspan}}\ncurrent-context: local\n",
                c.var("KUBE_APISERVER"),
                pki.display(),
                token.trim()
            ),
        )
        .map_err(|e| e.to_string())?;
        let operator = Operator {
            child: Mutex::new(None),
            metrics_port: free_port(),
            kubeconfig,
        };
        operator.respawn()?;
        operator.wait_leading(Duration::from_secs(30))?;
        Ok(operator)
    }

    /// Starts the operator process again (same identity and metrics port) after it was stopped
    /// or killed; it may have to wait for the Lease. Fault tests use it so that later cases
    /// find the shared operator as they expect.
    pub fn respawn(&self) -> Result<(), String> {
        if self.running_pid().is_ok() {
            return Err("the operator is still running".into());
        }
        self.spawn(IDENTITY, self.metrics_port)
    }

    /// Waits until this replica holds the Lease.
    pub fn wait_leading(&self, timeout: Duration) -> Result<(), String> {
        eventually(timeout, || {
            self.metric("eventspan_leader")
                .filter(|v| *v == 1.0)
                .map(|_| ())
                .ok_or("not leading".into())
        })
    }

    /// SIGKILL: no flush, no Lease release, as when a node dies or the OOM killer strikes.
    pub fn kill(&self) -> Result<(), String> {
        let Some(mut child) = self.child.lock().unwrap().take() else {
            return Err("the operator was not running".into());
        };
        child.kill().map_err(|e| e.to_string())?;
        child.wait().map(|_| ()).map_err(|e| e.to_string())
    }

    fn spawn(&self, identity: &str, port: u16) -> Result<(), String> {
        let child = spawn_operator(&self.kubeconfig, identity, port)?;
        *self.child.lock().unwrap() = Some(child);
        Ok(())
    }

    pub fn metrics(&self) -> Result<String, String> {
        http_get(&format!("http://127.0.0.1:{}/metrics", self.metrics_port))
    }

    /// The value of an unlabelled metric, or of the first sample starting with `name`.
    pub fn metric(&self, name: &str) -> Option<f64> {
        metric_of(&self.metrics().ok()?, name)
    }

    /// The pid of the operator process this harness spawned, if it is still running: a crash
    /// (a stack overflow aborts the process) makes this `Err`, and nothing here restarts it.
    pub fn running_pid(&self) -> Result<u32, String> {
        let mut child = self.child.lock().unwrap();
        let child = child.as_mut().ok_or("the operator was stopped")?;
        match child.try_wait().map_err(|e| e.to_string())? {
            None => Ok(child.id()),
            Some(status) => Err(format!("the operator process exited: {status}")),
        }
    }

    pub fn healthz(&self) -> Result<String, String> {
        http_get(&format!("http://127.0.0.1:{}/healthz", self.metrics_port))
    }

    /// Stops the operator with SIGTERM; returns whether it exited cleanly.
    pub fn terminate(&self) -> Result<(), String> {
        let Some(mut child) = self.child.lock().unwrap().take() else {
            return Ok(());
        };
        terminate(&mut child)
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.terminate();
    }
}

pub fn spawn_operator(
    kubeconfig: &std::path::Path,
    identity: &str,
    port: u16,
) -> Result<Child, String> {
    Command::new(env!("CARGO_BIN_EXE_eventspan"))
        .args(["run", "--namespace", OPERATOR_NS, "--identity", identity])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        // Shorter than the defaults, so tests see traces within seconds.
        .args([
            "--window",
            "2s",
            "--horizon",
            "4s",
            "--exporter-max-backoff",
            "2s",
        ])
        .args(["--cluster-name", CLUSTER_NAME])
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "warn,eventspan=info")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| e.to_string())
}

/// Longer than any drain the operator does on SIGTERM (exporters, last checkpoint, status).
const TERMINATE_GRACE: Duration = Duration::from_secs(60);

pub fn terminate(child: &mut Child) -> Result<(), String> {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .map_err(|e| e.to_string())?;
    // Bounded, so that an operator that hangs on SIGTERM fails the case instead of the run.
    let status = wait_or_kill(child, TERMINATE_GRACE)?.ok_or(format!(
        "operator still running {}s after SIGTERM: killed",
        TERMINATE_GRACE.as_secs()
    ))?;
    status
        .success()
        .then_some(())
        .ok_or(format!("operator exited with {status} on SIGTERM"))
}

pub fn metric_of(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

pub fn session_yaml(ns: &str, name: &str, endpoint: &str, extra: &str) -> String {
    format!(
        "apiVersion: eventspan.dev/v1alpha1\nkind: TraceSession\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  exporters:\n  - name: jaeger\n    otlp: {{endpoint: \"{endpoint}\"}}\n{extra}"
    )
}

pub fn status(c: &Cluster, ns: &str, name: &str) -> Result<Value, String> {
    let json = c.kubectl(&["-n", ns, "get", "tracesession", name, "-o", "json"])?;
    let v: Value = serde_json::from_str(&json).map_err(|e| e.to_string())?;
    Ok(v["status"].clone())
}

pub fn condition(status: &Value, type_: &str) -> Option<(String, String, String)> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (s("status"), s("reason"), s("message"))
        })
}

/// A span as Jaeger's query API returns it.
#[derive(Clone, Debug)]
pub struct JaegerSpan {
    pub id: String,
    pub operation: String,
    /// The CHILD_OF reference; none for a root.
    pub parent: Option<String>,
    pub service: String,
    /// Microseconds since the epoch.
    pub start_us: i64,
    pub duration_us: i64,
    /// Span attributes, their values as text.
    pub tags: std::collections::BTreeMap<String, String>,
}

impl JaegerSpan {
    pub fn end_us(&self) -> i64 {
        self.start_us + self.duration_us
    }
}

/// The spans of a trace in Jaeger.
pub fn jaeger_trace(c: &Cluster, trace_id: &str) -> Result<Vec<JaegerSpan>, String> {
    let body = http_get(&format!("{}/api/traces/{trace_id}", c.var("JAEGER_QUERY")))?;
    let v: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    let trace = &v["data"][0];
    trace["spans"]
        .as_array()
        .ok_or(format!("no trace {trace_id} in Jaeger"))?;
    Ok(spans_of(trace))
}

/// Every span of every trace Jaeger holds that has a span of `service` (last hour). A trace
/// holds the spans of all services with its ID, so callers filter by `JaegerSpan::service`.
pub fn jaeger_service_spans(c: &Cluster, service: &str) -> Result<Vec<JaegerSpan>, String> {
    let body = http_get(&format!(
        "{}/api/traces?service={service}&lookback=1h&limit=1000",
        c.var("JAEGER_QUERY")
    ))?;
    let v: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    let traces = v["data"].as_array().ok_or(format!("Jaeger: {body}"))?;
    Ok(traces.iter().flat_map(spans_of).collect())
}

fn spans_of(trace: &Value) -> Vec<JaegerSpan> {
    let spans = trace["spans"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    spans
        .iter()
        .map(|s| JaegerSpan {
            id: text(&s["spanID"]),
            operation: text(&s["operationName"]),
            parent: s["references"]
                .as_array()
                .and_then(|r| r.iter().find(|r| r["refType"] == "CHILD_OF"))
                .map(|r| text(&r["spanID"])),
            service: text(
                &trace["processes"][s["processID"].as_str().unwrap_or_default()]["serviceName"],
            ),
            start_us: s["startTime"].as_i64().unwrap_or_default(),
            duration_us: s["duration"].as_i64().unwrap_or_default(),
            tags: s["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    let value = match &t["value"] {
                        Value::String(v) => v.clone(),
                        other => other.to_string(),
                    };
                    (text(&t["key"]), value)
                })
                .collect(),
        })
        .collect()
}

/// Creates a Deployment of 2 and waits until it has rolled out.
pub fn rollout(c: &Cluster, ns: &str, name: &str, labels: &str) -> Result<(), String> {
    c.apply(&format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: {ns}, labels: {{{labels}}}}}\nspec:\n  replicas: 2\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec: {{containers: [{{name: app, image: nginx:1.27}}]}}\n"
    ))?;
    rolled_out(c, ns, name)
}

/// `kubectl rollout restart`, then waits until the new rollout is done.
pub fn restart(c: &Cluster, ns: &str, name: &str) -> Result<(), String> {
    let deployment = format!("deployment/{name}");
    c.kubectl(&["-n", ns, "rollout", "restart", &deployment])?;
    rolled_out(c, ns, name)
}

/// Waits until a Deployment has rolled out (`kubectl rollout status`, at most 60 s).
pub fn rolled_out(c: &Cluster, ns: &str, name: &str) -> Result<(), String> {
    rolled_out_within(c, ns, name, Duration::from_secs(60))
}

/// Waits until a Deployment has rolled out, at most `timeout`. A rollout that does not finish
/// is the cluster's doing, not the operator's, so the error says where it stood (the
/// Deployment, its ReplicaSets and pods, the namespace's latest events) and what the
/// components that drive it last logged.
pub fn rolled_out_within(
    c: &Cluster,
    ns: &str,
    name: &str,
    timeout: Duration,
) -> Result<(), String> {
    let deployment = format!("deployment/{name}");
    let timeout = format!("--timeout={}s", timeout.as_secs());
    let Err(stuck) = c.kubectl(&["-n", ns, "rollout", "status", &deployment, &timeout]) else {
        return Ok(());
    };
    let state = |args: &[&str]| c.kubectl(args).unwrap_or_else(|e| e);
    let mut explained = format!(
        "{stuck}\n--- where it stood\n{}\n{}\n--- latest events\n{}",
        state(&["-n", ns, "get", "deployment,replicaset,pod", "-o", "wide"]),
        state(&[
            "-n",
            ns,
            "get",
            &deployment,
            "-o",
            "jsonpath={range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{\"\\n\"}{end}",
        ]),
        state(&["-n", ns, "get", "events", "--sort-by=.lastTimestamp"])
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .join("\n"),
    );
    for component in ["kube-controller-manager", "kube-scheduler", "kwok"] {
        explained += &format!("\n--- {component} log\n{}", c.log_tail(component, 15));
    }
    Err(explained)
}

//! The Helm chart (deploy/chart/eventspan) with real Helm, built from `helm.sh/helm/v4` by
//! tests/cluster/build: it lints, renders what the kustomize base in deploy/ applies, passes a
//! server-side dry run, installs with `--wait` and uninstalls.
//!
//! KWOK runs the release's pods: the scheduler binds them to fake nodes and KWOK marks them
//! Ready without pulling the image or starting a container. So `helm install --wait` waits for
//! real Deployment, ReplicaSet and Pod status written by the real controllers, but the operator
//! process never runs in them: its readiness is simulated. The operator itself is tested by the
//! other cases, run from the binary with the RBAC deploy/ grants.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::World;
use crate::cluster::{Cluster, stdout_or_stderr};

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/chart/eventspan");
const KUSTOMIZE_BASE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");
const CRD: &str = "tracesessions.eventspan.dev";
/// The release, and the namespace it is installed in; no other case uses either. Its objects are
/// named `e2e-helm-eventspan…`, apart from the kustomize base's `eventspan…` the shared operator
/// uses.
const RELEASE: &str = "e2e-helm";
/// The server-side dry run's namespace: one of its own, since a namespace takes a while to go.
const DRY_RUN_NS: &str = "e2e-helm-dry-run";

/// Helm, against the test cluster, with its config, cache and data under the cluster's state
/// directory (not the user's home).
struct Helm {
    bin: PathBuf,
    kubeconfig: String,
    home: PathBuf,
}

impl Helm {
    /// The helm binary sits beside kubectl in the cluster's bin directory.
    fn new(c: &Cluster) -> Helm {
        Helm {
            bin: PathBuf::from(c.var("KUBECTL")).with_file_name("helm"),
            kubeconfig: c.kubeconfig().to_string(),
            home: c.state_dir().join("helm"),
        }
    }

    /// Runs helm; stdout, or an error carrying stderr.
    fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.bin)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HELM_CONFIG_HOME", self.home.join("config"))
            .env("HELM_CACHE_HOME", self.home.join("cache"))
            .env("HELM_DATA_HOME", self.home.join("data"))
            .output()
            .map_err(|e| format!("{}: {e}", self.bin.display()))?;
        stdout_or_stderr("helm", args, &out)
    }

    /// `helm template` of the chart as release `release` in `namespace`, CRD included.
    fn template(&self, release: &str, namespace: &str, extra: &[&str]) -> Result<String, String> {
        let mut args = vec!["template", release, CHART, "--namespace", namespace];
        args.push("--include-crds");
        args.extend_from_slice(extra);
        self.run(&args)
    }
}

/// The objects of a multi-document YAML stream by `Kind/name`.
fn objects(yaml: &str) -> Result<BTreeMap<String, Value>, String> {
    let docs: Vec<Value> = serde_saphyr::from_str_multiple(yaml).map_err(|e| e.to_string())?;
    let mut by_name = BTreeMap::new();
    for doc in docs.into_iter().filter(|d| !d.is_null()) {
        let key = format!(
            "{}/{}",
            doc["kind"].as_str().unwrap_or("?"),
            doc["metadata"]["name"].as_str().unwrap_or("?")
        );
        if by_name.insert(key.clone(), doc).is_some() {
            return Err(format!("{key} rendered twice"));
        }
    }
    Ok(by_name)
}

/// Takes `map[key]` out of a JSON object, if there.
fn take(map: &mut Value, key: &str) -> Value {
    map.as_object_mut()
        .and_then(|m| m.remove(key))
        .unwrap_or(Value::Null)
}

/// Every label of `small` is in `big` with the same value.
fn labels_within(small: &Value, big: &Value) -> bool {
    small
        .as_object()
        .is_some_and(|s| s.iter().all(|(k, v)| big.get(k) == Some(v)))
}

/// Drops what the chart adds by design, Helm's labels and a selector naming the release, after
/// checking that the chart's selectors still select what the base's do.
fn without_labels(kustomize: &mut Value, helm: &mut Value, key: &str) -> Result<(), String> {
    for object in [&mut *kustomize, &mut *helm] {
        take(&mut object["metadata"], "labels");
        if object["spec"]["template"]["metadata"].is_object() {
            take(&mut object["spec"]["template"]["metadata"], "labels");
        }
    }
    let (base, chart) = match kustomize["kind"].as_str() {
        Some("Deployment") => (
            take(&mut kustomize["spec"]["selector"], "matchLabels"),
            take(&mut helm["spec"]["selector"], "matchLabels"),
        ),
        Some("Service") => (
            take(&mut kustomize["spec"], "selector"),
            take(&mut helm["spec"], "selector"),
        ),
        _ => return Ok(()),
    };
    if !labels_within(&base, &chart) {
        return Err(format!(
            "{key}: the chart's selector {chart} does not include the base's {base}"
        ));
    }
    Ok(())
}

/// `helm lint`, the chart's defaults against `kubectl kustomize deploy/` object by object, the
/// values mapped onto `eventspan run` flags the binary accepts, and bad values refused clearly.
pub fn helm_chart_lints_and_renders_the_kustomize_base(w: &World) -> Result<(), String> {
    let c = &w.cluster;
    let helm = Helm::new(c);
    helm.run(&["lint", "--strict", CHART])?;
    helm.run(&[
        "lint",
        "--strict",
        CHART,
        "--set",
        "serviceMonitor.enabled=true",
    ])?;

    // Released as `eventspan` in `eventspan-system`, the chart names everything as the base does.
    let mut chart = objects(&helm.template("eventspan", "eventspan-system", &[])?)?;
    let mut base = objects(&c.kubectl(&["kustomize", KUSTOMIZE_BASE])?)?;
    // Helm leaves namespaces to `--create-namespace` (or the user).
    base.remove("Namespace/eventspan-system");
    // Both CRD files are the binary's to the byte (tests/crd_drift.rs); kustomize re-serialises
    // its copy (`maximum: 100.0` becomes `100`), which would differ here by number type alone.
    let crd = format!("CustomResourceDefinition/{CRD}");
    for objects in [&mut base, &mut chart] {
        objects.remove(&crd).ok_or(format!("no {crd}"))?;
    }
    let names = |m: &BTreeMap<String, Value>| m.keys().cloned().collect::<Vec<_>>();
    if names(&base) != names(&chart) {
        return Err(format!(
            "the chart renders {:?}, the base {:?}",
            names(&chart),
            names(&base)
        ));
    }
    for (key, base_object) in &mut base {
        let chart_object = chart.get_mut(key).expect("same names");
        without_labels(base_object, chart_object, key)?;
        if base_object != chart_object {
            return Err(format!(
                "{key} differs.\nkustomize base: {}\nchart: {}",
                serde_json::to_string_pretty(base_object).unwrap(),
                serde_json::to_string_pretty(chart_object).unwrap()
            ));
        }
    }

    every_value_becomes_a_flag_the_binary_accepts(&helm)?;
    bad_values_are_refused_by_name(&helm)?;
    service_monitor_scrapes_the_metrics_service(&helm)
}

fn every_value_becomes_a_flag_the_binary_accepts(helm: &Helm) -> Result<(), String> {
    let values = r#"
leaderElection: {enabled: true, leaseName: eventspan-e2e}
adminNamespaces: [platform, ops]
limits: {maxSessionWindow: 30s, maxSessionsPerNamespace: 3, maxExportersPerSession: 2}
exporterPolicy:
  allow: [10.0.0.0/8, "*.svc.cluster.local"]
  deny: [10.1.0.0/16]
  defaultDeny: false
  allowPlaintextSecretHeaders: true
exporter: {queue: 1000000, maxBackoff: 1m}
engine: {window: 2s, horizon: 20s, maxEventAge: 5m, checkpointInterval: "0"}
logFormat: text
"#;
    let file = helm.home.join("every-value.yaml");
    std::fs::create_dir_all(&helm.home).map_err(|e| e.to_string())?;
    std::fs::write(&file, values).map_err(|e| e.to_string())?;
    renders_args_the_binary_accepts(
        helm,
        &["--values", file.to_str().unwrap()],
        &[
            "run",
            "--log-format",
            "text",
            "--lease-name=eventspan-e2e",
            "--window=2s",
            "--horizon=20s",
            "--max-event-age=5m",
            "--checkpoint-interval=0",
            "--exporter-max-backoff=1m",
            "--max-session-window=30s",
            // A number from a values file is a float to Helm: printed as an integer, not 1e+06.
            "--exporter-queue=1000000",
            "--max-sessions-per-namespace=3",
            "--max-exporters-per-session=2",
            "--admin-namespace=platform",
            "--admin-namespace=ops",
            "--exporter-allow=10.0.0.0/8",
            "--exporter-allow=*.svc.cluster.local",
            "--exporter-deny=10.1.0.0/16",
            "--exporter-default-deny=false",
            "--allow-plaintext-secret-headers",
        ],
    )?;
    renders_args_the_binary_accepts(
        helm,
        &[
            "--set",
            "leaderElection.enabled=false",
            "--set",
            "replicaCount=1",
            // A number to Helm, not a string: still a duration.
            "--set",
            "engine.checkpointInterval=0",
        ],
        &[
            "run",
            "--log-format",
            "json",
            "--leader-election=false",
            "--checkpoint-interval=0",
        ],
    )
}

fn renders_args_the_binary_accepts(
    helm: &Helm,
    values: &[&str],
    expected: &[&str],
) -> Result<(), String> {
    let rendered = objects(&helm.template(RELEASE, RELEASE, values)?)?;
    let args = deployment_args(&rendered, &format!("Deployment/{RELEASE}-eventspan"))?;
    if args != expected {
        return Err(format!("{values:?}: args {args:?}, expected {expected:?}"));
    }
    binary_accepts(&args)
}

fn deployment_args(objects: &BTreeMap<String, Value>, key: &str) -> Result<Vec<String>, String> {
    let deployment = objects.get(key).ok_or(format!("no {key}"))?;
    deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .ok_or(format!("{key} has no args"))?
        .iter()
        .map(|a| a.as_str().map(String::from).ok_or(format!("arg {a}")))
        .collect()
}

/// The real binary parses the args: with no cluster credentials it gets past the command line
/// and stops at the first thing `run` does, connecting, instead of refusing a flag.
fn binary_accepts(args: &[String]) -> Result<(), String> {
    let out = Command::new(env!("CARGO_BIN_EXE_eventspan"))
        .args(args)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("RUST_LOG", "off")
        .output()
        .map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || !stderr.contains("eventspan run: no usable cluster credentials") {
        return Err(format!("eventspan {args:?}: {}: {stderr}", out.status));
    }
    Ok(())
}

/// Each bad value fails `helm template` with a message naming it, before anything is applied.
fn bad_values_are_refused_by_name(helm: &Helm) -> Result<(), String> {
    let cases: [(&[&str], &str); 5] = [
        (
            &["--set", "limits.maxExportersPerSession=9"],
            "maxExportersPerSession",
        ),
        (
            &["--set", "limits.maxSessionsPerNamespace=0"],
            "maxSessionsPerNamespace",
        ),
        (&["--set", "engine.window=5x"], "window"),
        (&["--set", "logFormat=xml"], "logFormat"),
        (
            &["--set", "leaderElection.enabled=false"],
            "replicaCount > 1 needs leaderElection.enabled",
        ),
    ];
    for (set, named) in cases {
        match helm.template(RELEASE, RELEASE, set) {
            Ok(_) => return Err(format!("{set:?} was accepted")),
            Err(e) if e.contains(named) => {}
            Err(e) => return Err(format!("{set:?} refused without naming {named}: {e}")),
        }
    }
    Ok(())
}

/// The optional ServiceMonitor selects the metrics Service and scrapes its named port (the server
/// checks its schema in the dry run).
fn service_monitor_scrapes_the_metrics_service(helm: &Helm) -> Result<(), String> {
    let rendered = objects(&helm.template(
        RELEASE,
        RELEASE,
        &[
            "--set",
            "serviceMonitor.enabled=true",
            "--set",
            "serviceMonitor.labels.release=prometheus",
        ],
    )?)?;
    let monitor = rendered
        .get(&format!("ServiceMonitor/{RELEASE}-eventspan"))
        .ok_or("no ServiceMonitor")?;
    let service = &rendered[&format!("Service/{RELEASE}-eventspan-metrics")];
    let selects = labels_within(
        &monitor["spec"]["selector"]["matchLabels"],
        &service["metadata"]["labels"],
    );
    let endpoint = &monitor["spec"]["endpoints"][0];
    if !selects
        || endpoint["port"] != service["spec"]["ports"][0]["name"]
        || endpoint["path"] != "/metrics"
        || monitor["metadata"]["labels"]["release"] != "prometheus"
        || monitor["metadata"]["namespace"] != RELEASE
    {
        return Err(format!("ServiceMonitor {monitor}\nService {service}"));
    }
    let without = objects(&helm.template(RELEASE, RELEASE, &[])?)?;
    if without.keys().any(|k| k.starts_with("ServiceMonitor/")) {
        return Err("a ServiceMonitor by default".into());
    }
    Ok(())
}

/// `helm template | kubectl apply --dry-run=server`: the API server admits every object, through
/// its schemas and admission; the ServiceMonitor through the Prometheus Operator's CRD, generated
/// from its API types by tests/cluster/build.
pub fn helm_template_passes_a_server_side_dry_run(w: &World) -> Result<(), String> {
    let c = &w.cluster;
    let helm = Helm::new(c);
    let cleanup = Release::new(c, &helm, DRY_RUN_NS)?;
    let monitors = ServiceMonitorCrd::install(c)?;
    let rendered = helm.template(
        RELEASE,
        DRY_RUN_NS,
        &[
            "--set",
            "adminNamespaces={e2e-helm,e2e-helm-tenants}",
            "--set",
            "serviceMonitor.enabled=true",
            "--set",
            "serviceMonitor.scrapeTimeout=10s",
        ],
    )?;
    let out = c.kubectl_with_input(
        &["apply", "--dry-run=server", "-n", DRY_RUN_NS, "-f", "-"],
        Some(&rendered),
    );
    drop(monitors);
    drop(cleanup);
    let out = out?;
    let admitted = out
        .lines()
        .filter(|l| l.contains("(server dry run)"))
        .count();
    let expected = objects(&rendered)?.len();
    if admitted != expected || !out.contains("servicemonitor.monitoring.coreos.com/") {
        return Err(format!(
            "{expected} objects rendered, {admitted} admitted:\n{out}"
        ));
    }
    Ok(())
}

/// The ServiceMonitor CRD, installed for one case and deleted after it.
struct ServiceMonitorCrd<'a> {
    c: &'a Cluster,
}

impl<'a> ServiceMonitorCrd<'a> {
    const NAME: &'static str = "servicemonitors.monitoring.coreos.com";

    fn install(c: &'a Cluster) -> Result<ServiceMonitorCrd<'a>, String> {
        let file = PathBuf::from(c.var("KUBECTL"))
            .with_file_name("monitoring-crds")
            .join("monitoring.coreos.com_servicemonitors.yaml");
        c.kubectl(&["apply", "--server-side", "-f", file.to_str().unwrap()])?;
        let crd = ServiceMonitorCrd { c };
        c.kubectl(&[
            "wait",
            "--for=condition=Established",
            &format!("crd/{}", Self::NAME),
        ])?;
        Ok(crd)
    }
}

impl Drop for ServiceMonitorCrd<'_> {
    fn drop(&mut self) {
        let _ = self
            .c
            .kubectl(&["delete", "crd", Self::NAME, "--timeout=60s"]);
    }
}

/// A namespace for the release, and on drop whatever an install there left: the release, the
/// namespace, and the CRD if this case brought it (Helm keeps it on uninstall).
struct Release<'a> {
    c: &'a Cluster,
    helm: &'a Helm,
    namespace: &'static str,
    crd_was_there: bool,
}

impl<'a> Release<'a> {
    fn new(c: &'a Cluster, helm: &'a Helm, namespace: &'static str) -> Result<Release<'a>, String> {
        let crd_was_there = c.kubectl(&["get", "crd", CRD]).is_ok();
        c.namespace(namespace)?;
        Ok(Release {
            c,
            helm,
            namespace,
            crd_was_there,
        })
    }
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        let ns = self.namespace;
        let _ = self.helm.run(&[
            "uninstall",
            RELEASE,
            "--namespace",
            ns,
            "--ignore-not-found",
        ]);
        let _ = self.c.kubectl(&["delete", "namespace", ns, "--wait=false"]);
        if !self.crd_was_there {
            // Waited for: a case after this one may install it again.
            let _ = self.c.kubectl(&["delete", "crd", CRD, "--timeout=60s"]);
        }
    }
}

/// `helm install --wait` brings the release up (readiness simulated by KWOK, see the top of this
/// file) with every object in place; `helm uninstall` removes them all but the CRD.
pub fn helm_install_waits_and_uninstall_removes_all_but_the_crd(w: &World) -> Result<(), String> {
    let c = &w.cluster;
    let helm = Helm::new(c);
    let release = Release::new(c, &helm, RELEASE)?;
    let name = format!("{RELEASE}-eventspan");
    helm.run(&[
        "install",
        RELEASE,
        CHART,
        "--namespace",
        RELEASE,
        "--set",
        "adminNamespaces={e2e-helm,e2e-helm-tenants}",
        "--wait=watcher",
        "--timeout",
        "3m",
    ])?;
    let owned = [
        format!("-n {RELEASE} deployment/{name}"),
        format!("-n {RELEASE} serviceaccount/{name}"),
        format!("-n {RELEASE} service/{name}-metrics"),
        format!("-n {RELEASE} role/{name}-leader-election"),
        format!("-n {RELEASE} rolebinding/{name}-leader-election"),
        format!("clusterrole/{name}"),
        format!("clusterrolebinding/{name}"),
    ];
    let get = |object: &str, output: &[&str]| {
        let args: Vec<&str> = ["get"]
            .into_iter()
            .chain(object.split(' '))
            .chain(output.iter().copied())
            .collect();
        c.kubectl(&args)
    };
    for object in &owned {
        let labels = get(object, &["-o", "jsonpath={.metadata.labels}"])?;
        if !labels.contains(r#""app.kubernetes.io/managed-by":"Helm""#) {
            return Err(format!("{object} is not Helm's: {labels}"));
        }
    }
    // Helm's own when this case runs first (alone); otherwise the harness installed it with
    // deploy/ and Helm, finding it there, left it alone.
    c.kubectl(&["wait", "--for=condition=Established", &format!("crd/{CRD}")])?;

    // --wait returned: both replicas Ready, on KWOK's fake nodes, with the values' flags.
    let deployment: Value = serde_json::from_str(&c.kubectl(&[
        "-n",
        RELEASE,
        "get",
        "deployment",
        &name,
        "-o",
        "json",
    ])?)
    .map_err(|e| e.to_string())?;
    if deployment["status"]["readyReplicas"] != 2 {
        return Err(format!("after --wait: {}", deployment["status"]));
    }
    let args = &deployment["spec"]["template"]["spec"]["containers"][0]["args"];
    for flag in [
        "--admin-namespace=e2e-helm",
        "--admin-namespace=e2e-helm-tenants",
    ] {
        if !args.as_array().is_some_and(|a| a.iter().any(|f| f == flag)) {
            return Err(format!("{flag} missing from {args}"));
        }
    }
    let nodes = c.kubectl(&[
        "-n",
        RELEASE,
        "get",
        "pods",
        "-l",
        &format!("app.kubernetes.io/instance={RELEASE}"),
        "-o",
        "jsonpath={range .items[*]}{.spec.nodeName}{\"\\n\"}{end}",
    ])?;
    for node in nodes.lines() {
        let fake = c.kubectl(&[
            "get",
            "node",
            node,
            "-o",
            "jsonpath={.metadata.annotations.kwok\\.x-k8s\\.io/node}",
        ])?;
        if fake != "fake" {
            return Err(format!("pod on node {node}, which KWOK does not run"));
        }
    }

    helm.run(&[
        "uninstall",
        RELEASE,
        "--namespace",
        RELEASE,
        "--wait=watcher",
    ])?;
    for object in &owned {
        let found = get(object, &["--ignore-not-found", "-o", "name"])?;
        if !found.trim().is_empty() {
            return Err(format!("{object} outlived helm uninstall"));
        }
    }
    // Helm never deletes a chart's CRDs: that would delete every TraceSession with them.
    c.kubectl(&["get", "crd", CRD])?;
    drop(release);
    Ok(())
}

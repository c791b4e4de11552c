//! Flux (issue 15): the real source-controller and kustomize-controller (tests/cluster/flux-ctl)
//! reconcile Git repositories served on loopback into the cluster, and eventspan is judged by
//! what they see and do.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::World;
use crate::cluster::{Cluster, eventually};
use crate::operator::{condition, rolled_out, session_yaml, status};
use crate::receiver::{ReceivedSpan, Receiver, receiver_session};

const SECONDS_90: Duration = Duration::from_secs(90);

/// Flux on the shared cluster, for one case: stopped (and its state removed) when dropped.
struct Flux<'a> {
    cluster: &'a Cluster,
    git_url: String,
    repos: PathBuf,
}

impl<'a> Flux<'a> {
    fn start(cluster: &'a Cluster) -> Result<Flux<'a>, String> {
        cluster.flux("start")?;
        let env = std::fs::read_to_string(cluster.state_dir().join("flux.env"))
            .map_err(|e| format!("flux.env: {e}"))?;
        let var = |name: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .map(str::to_string)
                .ok_or(format!("{name} missing from flux.env"))
        };
        Ok(Flux {
            cluster,
            git_url: var("FLUX_GIT_URL")?,
            repos: PathBuf::from(var("FLUX_REPOS")?),
        })
    }

    /// A new bare repository served as `{git_url}/NAME.git`, with a work tree to commit from.
    fn repository(&self, name: &str) -> Result<GitRepo, String> {
        let bare = self.repos.join(format!("{name}.git"));
        // Beside the served directory, not in it: only bare repositories are served.
        let work = self.repos.with_file_name(format!("{name}.work"));
        let bare_name = format!("{name}.git");
        git(
            &self.repos,
            &[
                "init",
                "--quiet",
                "--bare",
                "--initial-branch=main",
                &bare_name,
            ],
        )?;
        let work_path = work.to_str().ok_or("non-UTF-8 path")?;
        git(
            &self.repos,
            &["init", "--quiet", "--initial-branch=main", work_path],
        )?;
        git(
            &work,
            &[
                "remote",
                "add",
                "origin",
                bare.to_str().ok_or("non-UTF-8 path")?,
            ],
        )?;
        Ok(GitRepo {
            work,
            url: format!("{}/{name}.git", self.git_url),
        })
    }

    /// A GitRepository polling `repo` every 2 s and a Kustomization applying its root with
    /// `wait: true`, both named `name` in `ns`.
    fn sync(&self, ns: &str, name: &str, repo: &GitRepo, extra: &str) -> Result<(), String> {
        self.cluster.apply(&format!(
            "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  interval: 2s\n  url: {url}\n  ref: {{branch: main}}\n---\napiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  interval: 10m\n  retryInterval: 5s\n  timeout: 45s\n  path: ./\n  prune: true\n  wait: true\n  sourceRef: {{kind: GitRepository, name: {name}}}\n{extra}",
            url = repo.url
        ))?;
        Ok(())
    }
}

impl Drop for Flux<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.cluster.flux("stop") {
            eprintln!("flux-ctl stop: {e}");
        }
    }
}

struct GitRepo {
    work: PathBuf,
    url: String,
}

impl GitRepo {
    /// Writes the files, commits and pushes them to `main`; returns the commit's SHA-1.
    fn commit(&self, files: &[(&str, &str)], message: &str) -> Result<String, String> {
        for (path, content) in files {
            std::fs::write(self.work.join(path), content).map_err(|e| format!("{path}: {e}"))?;
        }
        git(&self.work, &["add", "--all"])?;
        git(
            &self.work,
            &[
                "-c",
                "user.name=eventspan e2e",
                "-c",
                "user.email=e2e@eventspan.invalid",
                "commit",
                "--quiet",
                "-m",
                message,
            ],
        )?;
        git(&self.work, &["push", "--quiet", "origin", "HEAD:main"])?;
        Ok(git(&self.work, &["rev-parse", "HEAD"])?.trim().to_string())
    }
}

fn git(dir: &std::path::Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("git {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn kustomization(c: &Cluster, ns: &str, name: &str) -> Result<Value, String> {
    let json = c.kubectl(&["-n", ns, "get", "kustomization", name, "-o", "json"])?;
    serde_json::from_str(&json).map_err(|e| e.to_string())
}

/// The `lastTransitionTime` of a condition, as written (RFC 3339, whole seconds).
fn transition_time(status: &Value, type_: &str) -> Option<String> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .and_then(|c| c["lastTransitionTime"].as_str())
        .map(str::to_string)
}

/// Waits until the Kustomization's `Ready` has `want` status for `revision` (its
/// `lastAttemptedRevision`) and, for a `True` one, `revision` is also its `lastAppliedRevision`;
/// returns its status. Flux's patch helper (fluxcd/pkg/runtime v0.110.3, `patch.go`) writes a
/// reconcile's conditions and the rest of its status in two requests, conditions first, so a
/// read between them sees `Ready` True before the revision it applied.
fn wait_kustomization(
    c: &Cluster,
    ns: &str,
    name: &str,
    revision: &str,
    want: &str,
) -> Result<Value, String> {
    eventually(SECONDS_90, || {
        let k = kustomization(c, ns, name)?;
        let status = &k["status"];
        let attempted = status["lastAttemptedRevision"].as_str().unwrap_or_default();
        let applied = status["lastAppliedRevision"].as_str().unwrap_or_default();
        let ready = condition(status, "Ready").unwrap_or_default();
        (attempted == revision && ready.0 == want && (want != "True" || applied == revision))
            .then(|| status.clone())
            .ok_or(format!(
                "Kustomization {ns}/{name} attempted {attempted:?}, applied {applied:?}, Ready {ready:?} (want {want} at {revision})"
            ))
    })
}

/// Scenario 1: a Kustomization with `wait: true` applies a TraceSession from Git. Flux's health
/// check is kstatus on the applied objects, so the Kustomization is Ready only once the session
/// is; a commit that breaks the session (a namespace a non-admin session may not trace) makes the
/// Kustomization fail, naming the session.
pub fn kustomization_waits_for_the_session_it_applies(w: &World) -> Result<(), String> {
    let c = &w.cluster;
    w.operator()?;
    let flux = Flux::start(c)?;
    let ns = c.namespace("e2e-flux-sessions")?;
    let result = (|| {
        let repo = flux.repository("sessions")?;
        let session = session_yaml(&ns, "from-git", c.var("JAEGER_OTLP_GRPC"), "");
        let good = repo.commit(&[("session.yaml", &session)], "a session")?;
        flux.sync(&ns, "sessions", &repo, "")?;
        let revision = format!("main@sha1:{good}");
        let ks = wait_kustomization(c, &ns, "sessions", &revision, "True")?;
        let session_status = status(c, &ns, "from-git")?;
        let session_ready = condition(&session_status, "Ready").unwrap_or_default();
        if session_ready.0 != "True" {
            return Err(format!("Kustomization Ready, session {session_ready:?}"));
        }
        // Both times are whole seconds: the Kustomization cannot have become Ready before the
        // session did.
        let (ks_at, session_at) = (
            transition_time(&ks, "Ready").ok_or("no Ready time on the Kustomization")?,
            transition_time(&session_status, "Ready").ok_or("no Ready time on the session")?,
        );
        if ks_at < session_at {
            return Err(format!(
                "Kustomization Ready at {ks_at}, before the session ({session_at})"
            ));
        }
        println!("  flux: {revision} Ready at {ks_at}, session Ready at {session_at}");

        let broken = session_yaml(
            &ns,
            "from-git",
            c.var("JAEGER_OTLP_GRPC"),
            "  namespaces: [kube-system]\n",
        );
        let bad = repo.commit(&[("session.yaml", &broken)], "trace kube-system too")?;
        let revision = format!("main@sha1:{bad}");
        let ks = wait_kustomization(c, &ns, "sessions", &revision, "False")?;
        let (_, reason, message) = condition(&ks, "Ready").unwrap_or_default();
        let names_session = message.contains(&format!("TraceSession/{ns}/from-git"));
        if reason != "HealthCheckFailed" || !names_session {
            return Err(format!(
                "broken session: Kustomization Ready=False {reason}: {message}"
            ));
        }
        println!("  flux: {revision} {reason}: {message}");
        let session_ready = condition(&status(c, &ns, "from-git")?, "Ready").unwrap_or_default();
        if session_ready.1 != "NamespaceNotPermitted" {
            return Err(format!("the broken session is {session_ready:?}"));
        }
        Ok(())
    })();
    cleanup(c, &ns);
    result
}

/// What the operator needs to watch Flux's kinds in a namespace: RBAC for custom kinds is opt-in
/// (README, Security model), so without this their watches are refused and only their events
/// are seen (the Kustomization and GitRepository objects, and so their owner chains and
/// generations, stay unknown).
fn flux_role(ns: &str) -> String {
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: eventspan-flux, namespace: {ns}}}\nrules:\n- apiGroups: [kustomize.toolkit.fluxcd.io]\n  resources: [kustomizations]\n  verbs: [get, list, watch]\n- apiGroups: [source.toolkit.fluxcd.io]\n  resources: [gitrepositories]\n  verbs: [get, list, watch]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: eventspan-flux, namespace: {ns}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: eventspan-flux}}\nsubjects:\n- {{kind: ServiceAccount, name: eventspan, namespace: eventspan-system}}\n"
    )
}

fn web_deployment(ns: &str, image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: {ns}, labels: {{app: web}}}}\nspec:\n  replicas: 2\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec: {{containers: [{{name: nginx, image: \"{image}\"}}]}}\n"
    )
}

/// The spans of each trace received so far, by trace ID.
fn traces(rx: &Receiver) -> BTreeMap<String, Vec<ReceivedSpan>> {
    let mut out: BTreeMap<String, Vec<ReceivedSpan>> = BTreeMap::new();
    for span in rx.spans() {
        out.entry(span.trace_id.clone()).or_default().push(span);
    }
    out
}

/// A received trace as the tree output draws it: offset from the root, duration, name,
/// reporting component, message.
fn render(spans: &[ReceivedSpan]) -> String {
    let Some(root) = spans.iter().find(|s| s.parent.is_none()) else {
        return "(no root)".into();
    };
    let mut out = String::new();
    let mut stack = vec![(root, 0usize)];
    while let Some((span, depth)) = stack.pop() {
        out += &format!(
            "{:>8}ms {:>7}ms  {}{} [{}]  {}\n",
            format!(
                "+{}",
                span.start_ns.saturating_sub(root.start_ns) / 1_000_000
            ),
            span.end_ns.saturating_sub(span.start_ns) / 1_000_000,
            "   ".repeat(depth),
            span.name,
            span.service,
            span.attr("k8s.event.message").unwrap_or_default()
        );
        let mut children: Vec<&ReceivedSpan> = spans
            .iter()
            .filter(|s| s.parent.as_deref() == Some(&span.span_id))
            .collect();
        children.sort_by_key(|s| std::cmp::Reverse((s.start_ns, s.span_id.clone())));
        stack.extend(children.into_iter().map(|s| (s, depth + 1)));
    }
    out
}

/// Scenario 2: a commit changing a Deployment's image is one trace, commit → rollout → pods.
/// kustomize-controller applies the commit (server-side apply, field manager
/// `kustomize-controller`) and reports it on the Kustomization (`Progressing`,
/// `Deployment/NS/web configured`, annotated with the revision); that event is the root of the
/// rollout's trace, with the commit's SHA as `vcs.ref.head.revision`, and the trace holds the
/// new pods' `Started` and ends when the rollout is done.
pub fn commit_is_traced_to_ready_pods(w: &World) -> Result<(), String> {
    let c = &w.cluster;
    w.operator()?;
    let flux = Flux::start(c)?;
    let ns = c.namespace("e2e-flux-commit")?;
    let result = (|| {
        c.apply(&flux_role(&ns))?;
        let rx = Receiver::start()?;
        receiver_session(c, &ns, "rollouts", &rx, "")?;
        let repo = flux.repository("commit")?;
        let first = repo.commit(
            &[("web.yaml", &web_deployment(&ns, "nginx:1.27"))],
            "web 1.27",
        )?;
        flux.sync(&ns, "app", &repo, "")?;
        wait_kustomization(c, &ns, "app", &format!("main@sha1:{first}"), "True")?;
        rolled_out(c, &ns, "web")?;

        let committed = Instant::now();
        let sha = repo.commit(
            &[("web.yaml", &web_deployment(&ns, "nginx:1.28"))],
            "web 1.28",
        )?;
        let revision = format!("main@sha1:{sha}");
        let ready = eventually(SECONDS_90, || {
            let image = c.kubectl(&[
                "-n",
                &ns,
                "get",
                "deployment/web",
                "-o",
                "jsonpath={.spec.template.spec.containers[0].image}",
            ])?;
            (image == "nginx:1.28")
                .then_some(())
                .ok_or(format!("image still {image}"))
        })
        .and_then(|()| rolled_out(c, &ns, "web"))
        .map(|()| committed.elapsed())?;
        wait_kustomization(c, &ns, "app", &revision, "True")?;

        // The trace rooted at Flux's event of this commit, once it holds the new pods' starts
        // and its root has come (the root goes last).
        let trace = eventually(Duration::from_secs(60), || {
            traces(&rx)
                .into_values()
                .find(|spans| {
                    spans.iter().any(|s| {
                        s.parent.is_none() && s.attr("vcs.ref.head.revision") == Some(sha.as_str())
                    })
                })
                .filter(|spans| spans.iter().filter(|s| s.name == "Pod.Started").count() >= 2)
                .ok_or_else(|| format!("no trace rooted at {revision} with two Pod.Started yet"))
        })?;
        let root = trace.iter().find(|s| s.parent.is_none()).ok_or("no root")?;
        let tree = render(&trace);
        let want = [
            (root.name.as_str(), "Kustomization.Progressing"),
            (root.service.as_str(), "kustomize-controller"),
            (
                root.attr("k8s.event.message").unwrap_or_default(),
                &*format!("Deployment/{ns}/web configured"),
            ),
            (root.attr("k8s.deployment.name").unwrap_or_default(), "web"),
            (root.attr("vcs.ref.head.name").unwrap_or_default(), "main"),
            (root.attr("eventspan.outcome").unwrap_or_default(), "done"),
        ];
        for (got, expected) in want {
            if got != expected {
                return Err(format!("root: {got:?}, want {expected:?}\n{tree}"));
            }
        }
        // What the commit changed, said on the root as on any rollout's.
        let summary = root.attr("eventspan.change.summary").unwrap_or_default();
        if !summary.contains("nginx:1.27 → nginx:1.28") {
            return Err(format!("root's change summary: {summary:?}\n{tree}"));
        }
        let roots = trace.iter().filter(|s| s.parent.is_none()).count();
        let ids: BTreeSet<&str> = trace.iter().map(|s| s.span_id.as_str()).collect();
        if roots != 1 || ids.len() != trace.len() {
            return Err(format!(
                "{roots} roots, {} spans, {} distinct\n{tree}",
                trace.len(),
                ids.len()
            ));
        }
        // Everything of the rollout is in it: the scale-ups, the new pods' creation and start.
        for name in [
            "Deployment.ScalingReplicaSet",
            "ReplicaSet.SuccessfulCreate",
            "Pod.Scheduled",
        ] {
            if !trace.iter().any(|s| s.name == name) {
                return Err(format!("no {name} in the trace\n{tree}"));
            }
        }
        // No other trace of this generation: the rollout is not also rooted elsewhere.
        let others: Vec<String> = traces(&rx)
            .into_iter()
            .filter(|(id, spans)| {
                *id != root.trace_id
                    && spans.iter().any(|s| {
                        s.parent.is_none()
                            && s.attr("eventspan.root.generation") == Some("2")
                            && s.attr("k8s.deployment.name") == Some("web")
                    })
            })
            .map(|(id, _)| id)
            .collect();
        if !others.is_empty() {
            return Err(format!("generation 2 also in traces {others:?}"));
        }
        let root_ms = root.end_ns.saturating_sub(root.start_ns) / 1_000_000;
        println!(
            "  flux: commit {sha} pushed → rolled out in {:.1}s; its trace: {} spans over {root_ms}ms\n{tree}",
            ready.as_secs_f64(),
            trace.len()
        );
        Ok(())
    })();
    cleanup(c, &ns);
    result
}

/// Scenario 3: a custom root kind found through discovery. A session whose `rootKinds` names
/// Flux's Kustomization gets one trace per reconciled revision, each rooted at the
/// Kustomization (a new commit does not change its generation: the key is the revision its
/// events are annotated with).
pub fn kustomization_root_kind_gets_a_trace_per_revision(w: &World) -> Result<(), String> {
    let c = &w.cluster;
    w.operator()?;
    let flux = Flux::start(c)?;
    let ns = c.namespace("e2e-flux-revisions")?;
    let result = (|| {
        c.apply(&flux_role(&ns))?;
        let rx = Receiver::start()?;
        receiver_session(
            c,
            &ns,
            "reconciliations",
            &rx,
            "  rootKinds: [{group: kustomize.toolkit.fluxcd.io, kind: Kustomization}]\n",
        )?;
        let repo = flux.repository("revisions")?;
        let mut shas = Vec::new();
        for (i, image) in ["nginx:1.27", "nginx:1.28"].into_iter().enumerate() {
            let sha = repo.commit(&[("web.yaml", &web_deployment(&ns, image))], image)?;
            if i == 0 {
                flux.sync(&ns, "app", &repo, "")?;
            }
            wait_kustomization(c, &ns, "app", &format!("main@sha1:{sha}"), "True")?;
            shas.push(sha);
        }
        // Each revision's trace: the Kustomization's events of that revision, its
        // ReconciliationSucceeded last.
        let by_revision = eventually(Duration::from_secs(60), || {
            let traces = traces(&rx);
            let mut found = Vec::new();
            for sha in &shas {
                let mine: Vec<(&String, &Vec<ReceivedSpan>)> = traces
                    .iter()
                    .filter(|(_, spans)| {
                        spans
                            .iter()
                            .any(|s| s.attr("vcs.ref.head.revision") == Some(sha))
                    })
                    .collect();
                let done = mine.iter().any(|(_, spans)| {
                    spans
                        .iter()
                        .any(|s| s.name == "Kustomization.ReconciliationSucceeded")
                        && spans.iter().any(|s| s.parent.is_none())
                });
                if !done {
                    return Err(format!(
                        "revision {sha}: no whole trace yet ({} traces name it)",
                        mine.len()
                    ));
                }
                found.push(
                    mine.into_iter()
                        .map(|(id, spans)| (id.clone(), spans.clone()))
                        .collect::<Vec<_>>(),
                );
            }
            Ok(found)
        })?;
        let mut ids = BTreeSet::new();
        for (sha, traces) in shas.iter().zip(&by_revision) {
            if traces.len() != 1 {
                return Err(format!("revision {sha} is in {} traces", traces.len()));
            }
            let (id, spans) = &traces[0];
            let tree = render(spans);
            let roots: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.parent.is_none()).collect();
            if roots.len() != 1 || !roots[0].name.starts_with("Kustomization.") {
                return Err(format!("revision {sha}: roots {roots:?}\n{tree}"));
            }
            if let Some(other) = spans
                .iter()
                .find(|s| s.attr("vcs.ref.head.revision").is_some_and(|r| r != sha))
            {
                return Err(format!(
                    "revision {sha}'s trace holds {}\n{tree}",
                    other.name
                ));
            }
            ids.insert(id.clone());
            println!("  flux: revision {sha}: trace {id}\n{tree}");
        }
        if ids.len() != shas.len() {
            return Err(format!("{} revisions, {} traces", shas.len(), ids.len()));
        }
        Ok(())
    })();
    cleanup(c, &ns);
    result
}

/// Deletes what a case made in its namespace while Flux still runs (the Kustomization's
/// finalizer prunes what it applied), then the namespace.
fn cleanup(c: &Cluster, ns: &str) {
    for kind in ["kustomizations", "gitrepositories"] {
        if let Err(e) = c.kubectl(&["-n", ns, "delete", kind, "--all", "--timeout=60s"]) {
            eprintln!("cleanup: {e}");
        }
    }
    if let Err(e) = c.kubectl(&["delete", "namespace", ns, "--timeout=60s"]) {
        eprintln!("cleanup: {e}");
    }
}

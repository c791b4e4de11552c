//! Flux (issue 15): the real source-controller and kustomize-controller (tests/cluster/flux-ctl)
//! reconcile Git repositories served on loopback into the cluster, and eventspan is judged by
//! what they see and do.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::World;
use crate::cluster::{Cluster, eventually};
use crate::operator::{condition, session_yaml, status};

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
/// `lastAttemptedRevision`); returns its status.
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
        let ready = condition(status, "Ready").unwrap_or_default();
        (attempted == revision && ready.0 == want)
            .then(|| status.clone())
            .ok_or(format!(
                "Kustomization {ns}/{name} attempted {attempted:?}, Ready {ready:?} (want {want} at {revision})"
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
        if ks["lastAppliedRevision"] != revision.as_str() {
            return Err(format!(
                "applied {}, want {revision}",
                ks["lastAppliedRevision"]
            ));
        }
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

//! The local cluster for end-to-end tests: built, started once per test run, stopped at the end.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Cluster {
    pub env: HashMap<String, String>,
    state_dir: PathBuf,
    repo: PathBuf,
}

fn run(cmd: &mut Command) -> Result<Output, String> {
    cmd.output().map_err(|e| format!("{cmd:?}: {e}"))
}

/// A finished command's stdout, or an error naming it with its stderr.
pub fn stdout_or_stderr(program: &str, args: &[&str], out: &Output) -> Result<String, String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Cluster {
    /// Builds the cluster binaries (fast when Go's cache is warm) and starts a cluster of its
    /// own, with Jaeger, in target/cluster/e2e.
    pub fn start() -> Result<Cluster, String> {
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let state_dir = repo.join("target/cluster/e2e");
        for script in ["build", "up"] {
            let mut cmd = Command::new(repo.join("tests/cluster").join(script));
            if script == "up" {
                cmd.args(["--nodes", "2", "--state-dir"]).arg(&state_dir);
            }
            let status = cmd
                .status()
                .map_err(|e| format!("tests/cluster/{script}: {e}"))?;
            if !status.success() {
                return Err(format!("tests/cluster/{script} failed ({status})"));
            }
        }
        let env = std::fs::read_to_string(state_dir.join("env"))
            .map_err(|e| format!("cluster env file: {e}"))?
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok(Cluster {
            env,
            state_dir,
            repo,
        })
    }

    pub fn var(&self, name: &str) -> &str {
        self.env
            .get(name)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("{name} missing from the cluster env"))
    }

    pub fn kubeconfig(&self) -> &str {
        self.var("KUBECONFIG")
    }

    /// Runs kubectl; returns stdout, or an error with stderr.
    pub fn kubectl(&self, args: &[&str]) -> Result<String, String> {
        self.kubectl_with_input(args, None)
    }

    pub fn kubectl_with_input(&self, args: &[&str], input: Option<&str>) -> Result<String, String> {
        let mut cmd = Command::new(self.var("KUBECTL"));
        cmd.args(args).env("KUBECONFIG", self.kubeconfig());
        let out = if let Some(input) = input {
            use std::io::Write;
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| e.to_string())?;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .map_err(|e| e.to_string())?;
            child.wait_with_output().map_err(|e| e.to_string())?
        } else {
            run(&mut cmd)?
        };
        stdout_or_stderr("kubectl", args, &out)
    }

    pub fn apply(&self, yaml: &str) -> Result<String, String> {
        self.kubectl_with_input(&["apply", "-f", "-"], Some(yaml))
    }

    /// A fresh namespace for one test.
    pub fn namespace(&self, name: &str) -> Result<String, String> {
        self.kubectl(&["create", "namespace", name])?;
        Ok(name.to_string())
    }

    pub fn jaeger(&self, action: &str) -> Result<(), String> {
        self.ctl("jaeger-ctl", action)
    }

    /// tests/cluster/flux-ctl: `start` (Flux's controllers and a Git server), `stop`.
    pub fn flux(&self, action: &str) -> Result<(), String> {
        self.ctl("flux-ctl", action)
    }

    /// tests/cluster/karpenter-ctl: `start` (Karpenter with its KWOK provider), `stop`.
    pub fn karpenter(&self, action: &str) -> Result<(), String> {
        self.ctl("karpenter-ctl", action)
    }

    /// tests/cluster/apiserver-ctl: `stop`, `start` (same flags and port), `compact` (etcd).
    pub fn apiserver(&self, action: &str) -> Result<(), String> {
        self.ctl("apiserver-ctl", action)
    }

    fn ctl(&self, script: &str, action: &str) -> Result<(), String> {
        let status = Command::new(self.repo.join("tests/cluster").join(script))
            .args([action, "--state-dir"])
            .arg(&self.state_dir)
            .status()
            .map_err(|e| e.to_string())?;
        status
            .success()
            .then_some(())
            .ok_or_else(|| format!("{script} {action} failed"))
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The last `lines` lines of a cluster component's log (`kwok`, `kube-controller-manager`,
    /// ...), for a failure message to show what the component was doing.
    pub fn log_tail(&self, component: &str, lines: usize) -> String {
        let path = self.state_dir.join("logs").join(format!("{component}.log"));
        match std::fs::read_to_string(&path) {
            Ok(log) => {
                let all: Vec<&str> = log.lines().collect();
                all[all.len().saturating_sub(lines)..].join("\n")
            }
            Err(e) => format!("{}: {e}", path.display()),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(self.repo.join("tests/cluster/down"))
            .arg("--state-dir")
            .arg(&self.state_dir)
            .status();
    }
}

/// Waits for `child` to exit by itself; after `limit` kills it and returns `None`.
pub fn wait_or_kill(child: &mut Child, limit: Duration) -> Result<Option<ExitStatus>, String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `check` until it returns Some, or fails after `timeout` with the last reason.
pub fn eventually<T>(
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(value) => return Ok(value),
            Err(reason) if Instant::now() >= deadline => {
                return Err(format!("not within {timeout:?}: {reason}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

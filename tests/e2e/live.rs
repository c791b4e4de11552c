//! `eventspan watch`: the live view follows a real rollout to its end, without a terminal (the
//! final tree once), in a terminal (`script` gives it one; redrawn frames) as a kubectl plugin,
//! and ends as `kubectl rollout status` does when the rollout fails or the timeout runs out.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::World;
use crate::cluster::{Cluster, wait_or_kill};
use crate::operator::rolled_out;

/// A running command whose output is collected as it comes (so a full pipe never blocks it).
struct Running {
    child: Child,
    stdout: std::thread::JoinHandle<String>,
    stderr: std::thread::JoinHandle<String>,
}

struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

fn collect(mut from: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = from.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

impl Running {
    fn spawn(cmd: &mut Command) -> Result<Running, String> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{cmd:?}: {e}"))?;
        let stdout = collect(child.stdout.take().expect("piped"));
        let stderr = collect(child.stderr.take().expect("piped"));
        // The watches need a moment to be established before the change they are to see.
        std::thread::sleep(Duration::from_secs(2));
        Ok(Running {
            child,
            stdout,
            stderr,
        })
    }

    /// Waits for the command to exit by itself; kills it after `limit`.
    fn wait(mut self, limit: Duration) -> Result<Finished, String> {
        let status = wait_or_kill(&mut self.child, limit)?;
        let stdout = self.stdout.join().unwrap_or_default();
        let stderr = self.stderr.join().unwrap_or_default();
        match status {
            Some(status) => Ok(Finished {
                status,
                stdout,
                stderr,
            }),
            None => Err(format!(
                "still running after {limit:?}; stdout:\n{stdout}\nstderr:\n{stderr}"
            )),
        }
    }
}

impl Finished {
    fn expect_exit(&self, code: i32) -> Result<(), String> {
        if self.status.code() == Some(code) {
            return Ok(());
        }
        Err(format!(
            "exit {:?}, expected {code}; stdout:\n{}\nstderr:\n{}",
            self.status.code(),
            self.stdout,
            self.stderr
        ))
    }
}

fn watch(c: &Cluster, args: &[&str]) -> Result<Running, String> {
    Running::spawn(
        Command::new(env!("CARGO_BIN_EXE_eventspan"))
            .arg("watch")
            .args(args)
            .env("KUBECONFIG", c.kubeconfig()),
    )
}

fn deployment(c: &Cluster, ns: &str, name: &str, extra_spec: &str) -> Result<(), String> {
    c.apply(&format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {ns}}}
spec:
  replicas: 2
  {extra_spec}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec: {{containers: [{{name: web, image: "nginx:1.27"}}]}}
"#
    ))?;
    rolled_out(c, ns, name)
}

/// The tree of a rollout as it ended: the rollout's root, done; the scale-up under it; and a
/// line of phases under each new pod's creation.
fn check_tree(out: &str, ns: &str, generation: i64, pods: usize) -> Result<(), String> {
    let fail = |what: &str| Err(format!("{what} in:\n{out}"));
    let header = format!("Deployment {ns}/web generation {generation}");
    if !out
        .lines()
        .any(|l| l.starts_with("trace ") && l.contains(&header))
    {
        return fail(&format!("no trace header of {header}"));
    }
    let root = out
        .lines()
        .find(|l| l.contains("+0ms") && l.contains("Deployment."));
    if !root.is_some_and(|l| l.contains("(done")) {
        return fail("no rollout root ended as done");
    }
    if !out.contains("├─ Deployment.ScalingReplicaSet [deployment-controller]") {
        return fail("no ScalingReplicaSet span under the root");
    }
    let creations = out.matches("ReplicaSet.SuccessfulCreate").count();
    let phases = out.lines().filter(|l| l.contains("⏱ schedule")).count();
    if creations < pods || phases < pods {
        return fail(&format!(
            "{creations} pod creations and {phases} phase lines, expected {pods}"
        ));
    }
    Ok(())
}

pub fn watch_shows_rollouts_live_and_exits_as_rollout_status(w: &World) -> Result<(), String> {
    follows_a_rollout_to_its_end(&w.cluster)?;
    ends_on_failure_and_timeout(&w.cluster)
}

fn follows_a_rollout_to_its_end(c: &Cluster) -> Result<(), String> {
    let ns = c.namespace("e2e-live")?;
    deployment(c, &ns, "web", "")?;
    let running = watch(c, &["deployment/web", "-n", &ns, "--timeout", "120s"])?;
    c.kubectl(&["-n", &ns, "rollout", "restart", "deployment/web"])?;
    let started = Instant::now();
    let done = running.wait(Duration::from_secs(150))?;
    done.expect_exit(0)?;
    println!(
        "  watch ended {:.1}s after the restart",
        started.elapsed().as_secs_f64()
    );
    if done.stdout.contains('\x1b') {
        return Err(format!(
            "escape sequences without a terminal:\n{}",
            done.stdout
        ));
    }
    check_tree(&done.stdout, &ns, 2, 2)?;
    let last = done.stdout.lines().last().unwrap_or_default();
    if last != "deployment \"web\" successfully rolled out" {
        return Err(format!("last line {last:?}"));
    }
    // Once: a single header, the tree printed at the end only.
    if done.stdout.matches("trace ").count() != 1 {
        return Err(format!("not one tree:\n{}", done.stdout));
    }

    // In a terminal, as a kubectl plugin: `kubectl eventspan ...` runs `kubectl-eventspan` from
    // the PATH with the arguments after `eventspan`.
    let plugins = c.state_dir().join("live-plugins");
    std::fs::create_dir_all(&plugins).map_err(|e| e.to_string())?;
    let plugin = plugins.join("kubectl-eventspan");
    let _ = std::fs::remove_file(&plugin);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_eventspan"), &plugin)
        .map_err(|e| e.to_string())?;
    let path = format!(
        "{}:{}",
        plugins.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let command = format!(
        "{} eventspan watch deployment/web -n {ns} --timeout 120s",
        c.var("KUBECTL")
    );
    let running = Running::spawn(
        Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .env("PATH", path)
            .env("KUBECONFIG", c.kubeconfig()),
    )?;
    c.kubectl(&["-n", &ns, "rollout", "restart", "deployment/web"])?;
    let done = running.wait(Duration::from_secs(150))?;
    done.expect_exit(0)?;
    let frames: Vec<&str> = done.stdout.split(eventspan::live::CLEAR).collect();
    if frames.len() < 3 {
        return Err(format!(
            "{} frames drawn, expected a redraw:\n{:?}",
            frames.len() - 1,
            done.stdout
        ));
    }
    // The terminal turns \n into \r\n.
    let last = frames.last().expect("frames").replace("\r\n", "\n");
    check_tree(&last, &ns, 3, 2)?;
    if !last.contains("deployment \"web\" successfully rolled out") {
        return Err(format!("no success line in the last frame:\n{last}"));
    }
    println!("  {} frames in the terminal", frames.len() - 1);
    Ok(())
}

fn ends_on_failure_and_timeout(c: &Cluster) -> Result<(), String> {
    let ns = c.namespace("e2e-live-fail")?;
    deployment(c, &ns, "web", "progressDeadlineSeconds: 8")?;

    // Nothing changes: the timeout runs out.
    let started = Instant::now();
    let done = watch(c, &["deployment/web", "-n", &ns, "--timeout", "3s"])?
        .wait(Duration::from_secs(30))?;
    done.expect_exit(1)?;
    if !done
        .stderr
        .contains("error: timed out waiting for the condition")
    {
        return Err(format!("timeout not reported:\n{}", done.stderr));
    }
    if started.elapsed() > Duration::from_secs(15) {
        return Err(format!("a 3s timeout took {:?}", started.elapsed()));
    }

    // New pods that never become Ready (KWOK's crash-loop behaviour): the progress deadline is
    // exceeded, the rollout's root fails, and so does the command.
    let running = watch(c, &["deployment/web", "-n", &ns, "--timeout", "120s"])?;
    c.kubectl(&[
        "-n",
        &ns,
        "patch",
        "deployment/web",
        "-p",
        r#"{"spec":{"template":{"metadata":{"labels":{"eventspan.dev/kwok-behaviour":"crashloop"}}}}}"#,
    ])?;
    let done = running.wait(Duration::from_secs(150))?;
    done.expect_exit(1)?;
    if !done
        .stderr
        .contains("error: deployment \"web\" exceeded its progress deadline")
    {
        return Err(format!("failure not reported:\n{}", done.stderr));
    }
    let root = done
        .stdout
        .lines()
        .find(|l| l.contains("+0ms") && l.contains("Deployment."));
    if !root
        .is_some_and(|l| l.contains("ERROR") && l.contains("(failed: ProgressDeadlineExceeded)"))
    {
        return Err(format!("root not failed:\n{}", done.stdout));
    }
    Ok(())
}

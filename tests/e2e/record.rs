//! The local cluster works, and `eventspan record` + `replay` turn a real rollout into a trace.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use eventspan::engine::model::FinishedSpan;
use eventspan::replay;

use crate::cluster::{Cluster, eventually};
use crate::operator::rolled_out;

pub fn cluster_answers_with_real_components(c: &Cluster) -> Result<(), String> {
    let version: serde_json::Value =
        serde_json::from_str(&c.kubectl(&["get", "--raw", "/version"])?)
            .map_err(|e| e.to_string())?;
    if version["gitVersion"] != "v1.37.2" {
        return Err(format!("apiserver reports {version}"));
    }
    let nodes = c.kubectl(&[
        "get",
        "nodes",
        "-o",
        "jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].status}",
    ])?;
    if nodes.split_whitespace().collect::<Vec<_>>() != ["True", "True"] {
        return Err(format!("nodes not Ready: {nodes}"));
    }
    // The scheduler and the controller manager are real: a pod gets bound and a ReplicaSet made.
    let ns = c.namespace("e2e-answers")?;
    c.kubectl(&[
        "-n",
        &ns,
        "create",
        "deployment",
        "probe",
        "--image=probe:1",
    ])?;
    eventually(Duration::from_secs(60), || {
        let phase = c.kubectl(&[
            "-n",
            &ns,
            "get",
            "pods",
            "-o",
            "jsonpath={.items[*].status.phase}",
        ])?;
        (phase == "Running")
            .then_some(())
            .ok_or(format!("pod phase {phase:?}"))
    })
}

struct Recorder {
    child: Child,
    path: std::path::PathBuf,
}

impl Recorder {
    fn start(c: &Cluster, ns: &str) -> Result<Recorder, String> {
        let path = c.state_dir().join(format!("{ns}.jsonl"));
        let child = Command::new(env!("CARGO_BIN_EXE_eventspan"))
            .args(["record", "-n", ns, "-o"])
            .arg(&path)
            .env("KUBECONFIG", c.kubeconfig())
            .env("RUST_LOG", "warn")
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| e.to_string())?;
        // Until the watches are established nothing is recorded; the first line is the sign.
        std::thread::sleep(Duration::from_secs(2));
        Ok(Recorder { child, path })
    }

    fn lines(&self) -> String {
        std::fs::read_to_string(&self.path).unwrap_or_default()
    }

    /// Stops the recorder as a user would (Ctrl-C) and checks it exits cleanly.
    fn stop(mut self) -> Result<String, String> {
        Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .map_err(|e| e.to_string())?;
        let status = self.child.wait().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("record exited with {status} on SIGINT"));
        }
        Ok(self.lines())
    }
}

fn reasons(recording: &str) -> Vec<String> {
    recording
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["object"]["kind"] == "Event")
        .filter_map(|v| v["object"]["reason"].as_str().map(String::from))
        .collect()
}

pub fn deployment_events_are_recorded_and_replay_into_one_trace(c: &Cluster) -> Result<(), String> {
    let ns = c.namespace("e2e-record")?;
    let recorder = Recorder::start(c, &ns)?;
    c.kubectl(&[
        "-n",
        &ns,
        "create",
        "deployment",
        "web",
        "--image=nginx:1.27",
        "--replicas=2",
    ])?;
    rolled_out(c, &ns, "web")?;
    eventually(Duration::from_secs(30), || {
        let started = reasons(&recorder.lines())
            .iter()
            .filter(|r| *r == "Started")
            .count();
        (started == 2)
            .then_some(())
            .ok_or(format!("{started} Started events recorded"))
    })?;
    let recording = recorder.stop()?;
    let seen = reasons(&recording);
    for reason in [
        "ScalingReplicaSet",
        "SuccessfulCreate",
        "Scheduled",
        "Pulling",
        "Pulled",
        "Created",
        "Started",
    ] {
        if !seen.iter().any(|r| r == reason) {
            return Err(format!("no {reason} event recorded; got {seen:?}"));
        }
    }
    let kinds: Vec<String> = recording
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["object"]["kind"].as_str().map(String::from))
        .collect();
    for kind in ["Deployment", "ReplicaSet", "Pod"] {
        if !kinds.iter().any(|k| k == kind) {
            return Err(format!("no {kind} objects recorded (owner chains)"));
        }
    }

    let result = replay::replay(&recording, Default::default());
    if !result.skipped.is_empty() {
        return Err(format!("replay skipped input: {:?}", result.skipped));
    }
    let deployment_traces: Vec<_> = replay::tree::by_trace(&result.spans)
        .into_iter()
        .filter(|(_, spans)| &*spans[0].root.kind == "Deployment" && &*spans[0].root.name == "web")
        .collect();
    let [(_, spans)] = deployment_traces.as_slice() else {
        return Err(format!(
            "{} traces for deployment web:\n{}",
            deployment_traces.len(),
            replay::tree::render(&result.spans)
        ));
    };
    check_rollout_tree(spans, 2)
        .map_err(|e| format!("{e}\n{}", replay::tree::render(&result.spans)))
}

/// Root → ScalingReplicaSet → one SuccessfulCreate per pod → that pod's Scheduled, Pulling,
/// Pulled, Created, Started.
pub fn check_rollout_tree(spans: &[&FinishedSpan], pods: usize) -> Result<(), String> {
    let by_id: HashMap<_, _> = spans.iter().map(|s| (s.span_id, *s)).collect();
    let children = |parent: &FinishedSpan| -> Vec<&FinishedSpan> {
        spans
            .iter()
            .filter(|s| s.parent == Some(parent.span_id))
            .copied()
            .collect()
    };
    let roots: Vec<_> = spans.iter().filter(|s| s.parent.is_none()).collect();
    let [root] = roots.as_slice() else {
        return Err(format!("{} roots", roots.len()));
    };
    if !root.name().starts_with("Deployment.") {
        return Err(format!("root is {}", root.name()));
    }
    let scaling: Vec<_> = children(root)
        .into_iter()
        .filter(|s| s.name() == "Deployment.ScalingReplicaSet")
        .collect();
    let [scaling] = scaling.as_slice() else {
        return Err(format!(
            "{} ScalingReplicaSet under the root",
            scaling.len()
        ));
    };
    let creates = children(scaling);
    if creates.len() != pods
        || creates
            .iter()
            .any(|s| s.name() != "ReplicaSet.SuccessfulCreate")
    {
        return Err(format!(
            "under ScalingReplicaSet: {:?}",
            creates.iter().map(|s| s.name()).collect::<Vec<_>>()
        ));
    }
    for create in creates {
        let mut pod_events: Vec<String> = children(create)
            .iter()
            .map(|s| s.name().into_owned())
            .collect();
        pod_events.sort_unstable();
        let expected = [
            "Pod.Created",
            "Pod.Pulled",
            "Pod.Pulling",
            "Pod.Scheduled",
            "Pod.Started",
        ];
        if pod_events != expected {
            return Err(format!("under {}: {pod_events:?}", create.message()));
        }
    }
    for s in spans {
        if let Some(p) = s.parent.and_then(|p| by_id.get(&p))
            && s.start < p.start
        {
            return Err(format!(
                "{} starts before its parent {}",
                s.name(),
                p.name()
            ));
        }
    }
    Ok(())
}

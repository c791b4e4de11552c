//! A synthetic, deterministic workload: Deployments created and then rolled out, with the event
//! mix a real cluster produces (controller, scheduler and kubelet events, some crash loops),
//! timing jitter and watch-delivery reordering. It feeds the benchmarks, the property and
//! scenario tests and the restart tests, which include this file as a module (`#[path]`): it is
//! test input, not part of the library a user links.
// Each target that includes it uses only part of it.
#![allow(dead_code)]

use std::time::Duration;

use serde_json::{Value, json};

use eventspan::engine::model::{Change, Observed};
use eventspan::engine::model::{
    EventRecord, EventTime, ObjectMeta, ObjectRef, ObjectState, Outcome, OutcomeKind, OwnerRef,
    SpecChange,
};
use eventspan::engine::time::Timestamp;

#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    pub deployments: usize,
    pub pods_per_deployment: usize,
    /// Deployments start this far apart.
    pub stagger: Duration,
    /// Delivery delay of each change is uniform in `0..jitter`, which reorders nearby changes.
    pub jitter: Duration,
    /// Share of pods (in percent) that crash-loop after starting.
    pub crash_percent: u32,
    pub seed: u64,
    /// Each Deployment is deleted this long after it was created, with its ReplicaSets and pods
    /// (the garbage collector's cascade): with a steady stagger the cluster then stays the same
    /// size however long the workload runs. `None`: every Deployment stays, the cluster grows.
    pub retire_after: Option<Duration>,
    /// Statuses as the controllers and kubelets write them: a pod's Ready once it started (not
    /// a crash-looping one), a Deployment's rollout done once its new pods are all Ready. Without
    /// them every object's status stays empty, so each span that ends with its object's status
    /// waits the engine's longest wait for it.
    pub statuses: bool,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            deployments: 10,
            pods_per_deployment: 3,
            stagger: Duration::from_millis(200),
            jitter: Duration::from_millis(40),
            crash_percent: 5,
            seed: 1,
            retire_after: None,
            statuses: false,
        }
    }
}

/// SplitMix64: tiny, fast, and the same on every platform (the fuzz example draws from it too).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    fn millis(&mut self, max: Duration) -> Duration {
        Duration::from_micros(self.below(max.as_micros() as u64 + 1))
    }
}

const T0: i64 = 1_795_000_000; // 2026-11-19

/// The object an event is about: kind, name, uid.
type Involved<'a> = (&'a str, &'a str, &'a str);

fn api_version(kind: &str) -> &'static str {
    match kind {
        "Deployment" | "ReplicaSet" => "apps/v1",
        _ => "v1",
    }
}

fn whole_second(at: Timestamp) -> Timestamp {
    Timestamp::from_unix_secs(at.unix_nanos().div_euclid(1_000_000_000))
}

/// An object to upsert.
#[derive(Clone, Copy)]
struct Obj<'a> {
    kind: &'a str,
    name: &'a str,
    uid: &'a str,
    generation: i64,
    owner: Option<Involved<'a>>,
    manager: Option<&'a str>,
}

/// An event to report.
struct Ev<'a> {
    involved: Involved<'a>,
    reason: &'a str,
    message: String,
    component: &'a str,
    /// events.k8s.io with a microsecond eventTime, rather than core/v1 whole seconds.
    precise: bool,
    warning: bool,
    count: u32,
    uid: Option<String>,
}

impl<'a> Ev<'a> {
    fn new(involved: Involved<'a>, reason: &'a str, message: String, component: &'a str) -> Self {
        Ev {
            involved,
            reason,
            message,
            component,
            precise: false,
            warning: false,
            count: 1,
            uid: None,
        }
    }
}

struct Gen {
    rng: Rng,
    cfg: WorkloadConfig,
    out: Vec<(Timestamp, u64, Change)>,
    seq: u64,
    events: u64,
}

impl Gen {
    fn push(&mut self, at: Timestamp, change: Change) {
        let delay = self.rng.millis(self.cfg.jitter);
        self.seq += 1;
        self.out.push((at.saturating_add(delay), self.seq, change));
    }

    fn object(&mut self, at: Timestamp, o: Obj<'_>) {
        let meta = Self::meta(at, o);
        self.push(at, Change::Upsert(Box::new(meta)));
    }

    /// The object upserted at `upserted` again, its status now saying it is done (a pod Ready,
    /// a rollout complete) at `at`.
    fn done(
        &mut self,
        at: Timestamp,
        upserted: Timestamp,
        o: Obj<'_>,
        reason: &str,
        message: String,
    ) {
        let mut meta = Self::meta(upserted, o);
        meta.state = Some(ObjectState {
            observed_generation: meta.generation,
            outcome: Some(Outcome {
                kind: OutcomeKind::Done,
                reason: reason.into(),
                message,
            }),
            since: Some(whole_second(at)),
        });
        self.push(at, Change::Upsert(Box::new(meta)));
    }

    fn meta(at: Timestamp, o: Obj<'_>) -> ObjectMeta {
        ObjectMeta {
            uid: o.uid.into(),
            kind: o.kind.into(),
            api_version: api_version(o.kind).into(),
            namespace: "bench".into(),
            name: o.name.into(),
            generation: o.generation,
            labels: vec![(
                "app".into(),
                o.name.split('-').next().unwrap_or(o.name).into(),
            )],
            owners: o
                .owner
                .map(|(kind, name, uid)| OwnerRef {
                    kind: kind.into(),
                    api_version: api_version(kind).into(),
                    name: name.into(),
                    uid: uid.into(),
                    controller: true,
                })
                .into_iter()
                .collect(),
            spec_changes: o
                .manager
                .map(|m| SpecChange {
                    manager: m.into(),
                    operation: "Update".into(),
                    time: Some(whole_second(at)),
                })
                .into_iter()
                .collect(),
            state: None,
            created: Some(whole_second(at)),
            deleting: None,
            traceparent: None,
            template: None,
            scale_target: None,
        }
    }

    fn event(&mut self, at: Timestamp, e: Ev<'_>) {
        self.events += 1;
        let uid = e
            .uid
            .unwrap_or_else(|| format!("ev-{:016x}", self.rng.next_u64()));
        let (kind, name, obj_uid) = e.involved;
        let time = EventTime {
            at: if e.precise { at } else { whole_second(at) },
            precise: e.precise,
        };
        let event = EventRecord {
            name: format!("{name}.{}", &uid[3..]),
            uid,
            namespace: "bench".into(),
            involved: ObjectRef {
                kind: kind.into(),
                api_version: api_version(kind).into(),
                namespace: "bench".into(),
                name: name.into(),
                uid: obj_uid.into(),
                field_path: if kind == "Pod" && !e.precise {
                    "spec.containers{app}".into()
                } else {
                    String::new()
                },
            },
            related: None,
            reason: e.reason.into(),
            message: e.message,
            warning: e.warning,
            action: String::new(),
            reporting_controller: e.component.into(),
            reporting_instance: if e.component == "kubelet" {
                "node-1".into()
            } else {
                String::new()
            },
            count: e.count,
            first: time,
            last: time,
            top_level: false,
            revision: String::new(),
            truncated: false,
            derived: false,
        };
        self.push(at, Change::Event(Box::new(event)));
    }

    /// A pod created at `at`: when its container started, and whether it became Ready (it does
    /// not when it crash-loops).
    fn pod(
        &mut self,
        at: Timestamp,
        rs: (&str, &str),
        pod: &str,
        image: &str,
    ) -> (Timestamp, bool) {
        let pod_uid = format!("{pod}-uid");
        let owner = ("ReplicaSet", rs.0, rs.1);
        let this = Obj {
            kind: "Pod",
            name: pod,
            uid: &pod_uid,
            generation: 0,
            owner: Some(owner),
            manager: None,
        };
        self.object(at, this);
        let created = Ev::new(
            owner,
            "SuccessfulCreate",
            format!("Created pod: {pod}"),
            "replicaset-controller",
        );
        self.event(at, created);
        let p = ("Pod", pod, pod_uid.as_str());
        let mut t = at.saturating_add(self.rng.millis(Duration::from_millis(30)));
        let message = format!("Successfully assigned bench/{pod} to node-1");
        self.event(
            t,
            Ev {
                precise: true,
                ..Ev::new(p, "Scheduled", message, "default-scheduler")
            },
        );
        for (reason, message, spread) in [
            ("Pulling", format!("Pulling image \"{image}\""), 300),
            (
                "Pulled",
                format!("Successfully pulled image \"{image}\" in 1.1s"),
                1500,
            ),
            ("Created", "Created container: app".to_string(), 80),
            ("Started", "Started container app".to_string(), 200),
        ] {
            t = t.saturating_add(self.rng.millis(Duration::from_millis(spread)));
            self.event(t, Ev::new(p, reason, message, "kubelet"));
        }
        let crashes = self.rng.below(100) < u64::from(self.cfg.crash_percent);
        if crashes {
            let uid = format!("ev-backoff-{pod}");
            let mut b = t;
            for count in 1..=6 {
                b = b.saturating_add(Duration::from_secs(10 << count.min(4)));
                let message = format!("Back-off restarting failed container app in pod {pod}");
                let backoff = Ev {
                    warning: true,
                    count,
                    uid: Some(uid.clone()),
                    ..Ev::new(p, "BackOff", message, "kubelet")
                };
                self.event(b, backoff);
            }
        } else if self.cfg.statuses {
            // The kubelet's status update after the readiness probe passed.
            let ready_at = t.saturating_add(Duration::from_millis(150));
            self.done(ready_at, at, this, "Ready", String::new());
        }
        (t, !crashes)
    }

    fn kill(&mut self, at: Timestamp, rs: (&str, &str), pod: &str) {
        let deleted = Ev::new(
            ("ReplicaSet", rs.0, rs.1),
            "SuccessfulDelete",
            format!("Deleted pod: {pod}"),
            "replicaset-controller",
        );
        self.event(at, deleted);
        let t = at.saturating_add(self.rng.millis(Duration::from_millis(20)));
        self.stop_pod(t, pod);
    }

    /// The kubelet stops a pod being deleted; its object goes 300 ms later.
    fn stop_pod(&mut self, at: Timestamp, pod: &str) {
        let pod_uid = format!("{pod}-uid");
        self.event(
            at,
            Ev::new(
                ("Pod", pod, &pod_uid),
                "Killing",
                "Stopping container app".into(),
                "kubelet",
            ),
        );
        self.gone(at.saturating_add(Duration::from_millis(300)), "", pod_uid);
    }

    /// An object deleted. `kind` is left out of a pod's (as the recordings of this workload
    /// always had it): the line then says Pod.
    fn gone(&mut self, at: Timestamp, kind: &str, uid: String) {
        let gone = ObjectMeta {
            uid,
            kind: kind.into(),
            api_version: if kind.is_empty() {
                String::new()
            } else {
                api_version(kind).into()
            },
            ..Default::default()
        };
        self.push(at, Change::Delete(Box::new(gone)));
    }

    /// The deployment controller's status once the rollout to `new_rs` is complete, when the
    /// workload writes statuses and every new pod became Ready (`all_ready`).
    fn rollout_done(
        &mut self,
        all_ready: bool,
        at: Timestamp,
        upserted: Timestamp,
        deployment: Obj<'_>,
        new_rs: &str,
    ) {
        if self.cfg.statuses && all_ready {
            let message = format!("ReplicaSet \"{new_rs}\" has successfully progressed.");
            self.done(at, upserted, deployment, "NewReplicaSetAvailable", message);
        }
    }

    /// `kubectl delete deployment`: the garbage collector deletes the ReplicaSets, then the pods.
    fn retire(&mut self, at: Timestamp, name: &str, rs: [&str; 2]) {
        let m = self.cfg.pods_per_deployment;
        self.gone(at, "Deployment", format!("{name}-uid"));
        for (i, rs_name) in rs.iter().enumerate() {
            let rs_uid = format!("{name}-rs{}-uid", i + 1);
            self.gone(
                at.saturating_add(Duration::from_millis(5)),
                "ReplicaSet",
                rs_uid,
            );
            // Only the new ReplicaSet still has pods.
            if i == 1 {
                for p in 0..m {
                    let at = at.saturating_add(Duration::from_millis(20 + p as u64));
                    self.stop_pod(at, &format!("{rs_name}-b{p}"));
                }
            }
        }
    }

    fn deployment(&mut self, index: usize, start: Timestamp) {
        let m = self.cfg.pods_per_deployment;
        let name = format!("app{index}");
        let uid = format!("{name}-uid");
        let d = ("Deployment", name.as_str(), uid.as_str());
        let deployment = |generation, manager| Obj {
            kind: "Deployment",
            name: &name,
            uid: &uid,
            generation,
            owner: None,
            manager: Some(manager),
        };
        self.object(start, deployment(1, "kubectl-client-side-apply"));
        let rs1 = (format!("{name}-5d4f8"), format!("{name}-rs1-uid"));
        let mut t = start.saturating_add(Duration::from_millis(10));
        let scaled = |rs: &str, direction: &str, from: usize, to: usize| {
            Ev::new(
                d,
                "ScalingReplicaSet",
                format!("Scaled {direction} replica set {rs} from {from} to {to}"),
                "deployment-controller",
            )
        };
        self.event(t, scaled(&rs1.0, "up", 0, m));
        self.object(
            t,
            Obj {
                kind: "ReplicaSet",
                name: &rs1.0,
                uid: &rs1.1,
                generation: 1,
                owner: Some(d),
                manager: None,
            },
        );
        let mut ready = t;
        let mut all_ready = true;
        for i in 0..m {
            let at = t.saturating_add(Duration::from_millis(2 * i as u64 + 1));
            let (started, ready_pod) =
                self.pod(at, (&rs1.0, &rs1.1), &format!("{}-a{i}", rs1.0), "app:1");
            ready = ready.max(started);
            all_ready &= ready_pod;
        }
        let done_at = ready.saturating_add(Duration::from_millis(300));
        let first = deployment(1, "kubectl-client-side-apply");
        self.rollout_done(all_ready, done_at, start, first, &rs1.0);
        // The rolling update to a new image: one pod at a time.
        t = ready.saturating_add(Duration::from_secs(20));
        self.object(t, deployment(2, "kubectl-set"));
        let second_at = t;
        all_ready = true;
        let rs2 = (format!("{name}-7c9bd"), format!("{name}-rs2-uid"));
        for i in 0..m {
            t = t.saturating_add(Duration::from_millis(15));
            self.event(t, scaled(&rs2.0, "up", i, i + 1));
            if i == 0 {
                self.object(
                    t,
                    Obj {
                        kind: "ReplicaSet",
                        name: &rs2.0,
                        uid: &rs2.1,
                        generation: 1,
                        owner: Some(d),
                        manager: None,
                    },
                );
            }
            let (started, ready_pod) = self.pod(
                t.saturating_add(Duration::from_millis(3)),
                (&rs2.0, &rs2.1),
                &format!("{}-b{i}", rs2.0),
                "app:2",
            );
            all_ready &= ready_pod;
            t = started.saturating_add(Duration::from_millis(100));
            self.event(t, scaled(&rs1.0, "down", m - i, m - i - 1));
            self.kill(
                t.saturating_add(Duration::from_millis(5)),
                (&rs1.0, &rs1.1),
                &format!("{}-a{i}", rs1.0),
            );
        }
        let done_at = t.saturating_add(Duration::from_millis(400));
        let second = deployment(2, "kubectl-set");
        self.rollout_done(all_ready, done_at, second_at, second, &rs2.0);
        if let Some(after) = self.cfg.retire_after {
            let at = start
                .saturating_add(after)
                .max(t.saturating_add(Duration::from_secs(1)));
            self.retire(at, &name, [&rs1.0, &rs2.0]);
        }
    }
}

/// A workload: changes in delivery order, each with the time it was observed.
pub struct Workload {
    pub changes: Vec<Observed>,
    pub events: u64,
    /// Each Deployment's replicas (its spec and status say so when the workload has statuses).
    pub replicas: usize,
}

pub fn generate(cfg: &WorkloadConfig) -> Workload {
    let mut g = Gen {
        rng: Rng(cfg.seed),
        cfg: cfg.clone(),
        out: Vec::new(),
        seq: 0,
        events: 0,
    };
    for i in 0..cfg.deployments {
        let start = Timestamp::from_unix_secs(T0).saturating_add(cfg.stagger * i as u32);
        g.deployment(i, start);
    }
    let mut out = g.out;
    out.sort_by_key(|(at, seq, _)| (*at, *seq));
    Workload {
        changes: out
            .into_iter()
            .map(|(at, _, change)| Observed {
                change,
                observed_at: Some(at),
            })
            .collect(),
        events: g.events,
        replicas: cfg.pods_per_deployment,
    }
}

/// The workload as `eventspan replay` reads it: JSON watch events, one per line.
pub fn to_json_lines(workload: &Workload) -> String {
    let mut out = Vec::new();
    write_json_lines(workload, &mut out).expect("writing to memory");
    String::from_utf8(out).expect("JSON is UTF-8")
}

/// Writes [`to_json_lines`] a line at a time (a long recording to a file).
pub fn write_json_lines(workload: &Workload, mut out: impl std::io::Write) -> std::io::Result<()> {
    for observed in &workload.changes {
        let (kind, object) = match &observed.change {
            Change::Upsert(m) => ("ADDED", object_json(m, workload.replicas)),
            Change::Delete(m) if m.kind.is_empty() => (
                "DELETED",
                json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"uid": m.uid}}),
            ),
            Change::Delete(m) => (
                "DELETED",
                json!({"kind": m.kind, "apiVersion": m.api_version, "metadata": {"uid": m.uid, "namespace": "bench"}}),
            ),
            Change::Event(e) => ("ADDED", event_json(e)),
            Change::Ignore => continue,
        };
        let line = json!({"type": kind, "object": object, "observedAt": observed.observed_at});
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

fn object_json(m: &ObjectMeta, replicas: usize) -> Value {
    let mut meta = json!({
        "name": m.name, "namespace": m.namespace, "uid": m.uid, "generation": m.generation,
        "creationTimestamp": m.created, "labels": m.labels.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect::<serde_json::Map<String, Value>>(),
        "ownerReferences": m.owners.iter().map(|o| json!({"apiVersion": o.api_version, "kind": o.kind, "name": o.name, "uid": o.uid, "controller": o.controller})).collect::<Vec<_>>(),
    });
    if let Some(c) = m.spec_changes.last() {
        meta["managedFields"] = json!([{"manager": c.manager, "operation": c.operation, "apiVersion": m.api_version,
            "time": c.time, "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:template": {}}}}]);
    }
    let (spec, status) = match (&m.state, m.kind.as_str()) {
        (None, _) => (json!({}), json!({})),
        (Some(state), "Deployment") => {
            let outcome = state
                .outcome
                .as_ref()
                .expect("only done statuses are written");
            let progressing = json!({"type": "Progressing", "status": "True", "reason": outcome.reason,
                "message": outcome.message, "lastUpdateTime": state.since, "lastTransitionTime": state.since});
            (
                json!({"replicas": replicas}),
                json!({"observedGeneration": state.observed_generation,
                "replicas": replicas, "updatedReplicas": replicas, "readyReplicas": replicas,
                "availableReplicas": replicas, "conditions": [progressing]}),
            )
        }
        (Some(state), _) => (
            json!({}),
            json!({"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": state.since}]}),
        ),
    };
    json!({"apiVersion": m.api_version, "kind": m.kind, "metadata": meta, "spec": spec, "status": status})
}

fn event_json(e: &EventRecord) -> Value {
    let involved = json!({"kind": e.involved.kind, "apiVersion": e.involved.api_version, "namespace": e.involved.namespace,
        "name": e.involved.name, "uid": e.involved.uid, "fieldPath": e.involved.field_path});
    let meta = json!({"name": e.name, "namespace": e.namespace, "uid": e.uid});
    let kind = if e.warning { "Warning" } else { "Normal" };
    if e.first.precise {
        json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": meta, "regarding": involved, "reason": e.reason,
            "note": e.message, "type": kind, "eventTime": e.first.at, "reportingController": e.reporting_controller,
            "reportingInstance": e.reporting_instance, "action": "Binding"})
    } else {
        json!({"apiVersion": "v1", "kind": "Event", "metadata": meta, "involvedObject": involved, "reason": e.reason,
            "message": e.message, "type": kind, "count": e.count, "firstTimestamp": e.first.at, "lastTimestamp": e.last.at,
            "source": {"component": e.reporting_controller, "host": e.reporting_instance}})
    }
}

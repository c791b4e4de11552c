//! Issue 12: faults in the middle of a rollout (the operator killed or stopped, a leader
//! handover, an API-server outage, watches that expire) must give exactly the spans of an
//! undisturbed run of the same rollout: the same names and parents, each span ID once, one root.
//!
//! Spans are counted at a receiver of the test's own (receiver.rs): Jaeger merges spans that
//! arrive twice. Each case, in its own namespace, first rolls out an identical Deployment
//! undisturbed; both rollouts are compared by shape (span IDs differ: they derive from the
//! events' uids) with the whole rollout's ([`whole_rollout`]), since an undisturbed rollout is
//! itself not always whole. Every case prints its figures (`FIGURES` lines), pass or fail.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::World;
use crate::cluster::{Cluster, eventually};
use crate::operator::{
    free_port, http_get, metric_of, restart, rolled_out, rolled_out_within, spawn_operator,
    terminate,
};
use crate::receiver::{ReceivedSpan, Receiver};

const SESSION: &str = "faults";
/// The undisturbed rollout, and the one the fault hits.
const BASELINE: &str = "calm";
const DISTURBED: &str = "web";
/// The rollout under test is the Deployment's second generation (`rollout restart`).
const GENERATION: &str = "2";
/// No new span for this long (the operator's --window 2s plus --horizon 4s) and a root seen:
/// the trace is taken as delivered. Duplicates a successor sends come within it.
const QUIET: Duration = Duration::from_secs(6);
/// Without a fault nothing comes late but the exporter's next flush (every second).
const QUIET_UNDISTURBED: Duration = Duration::from_secs(3);

/// Four replicas replaced all at once (maxSurge 0, maxUnavailable 100%): the deployment
/// controller then scales the old ReplicaSet to 0 and the new one to 4 in exactly two steps
/// whatever the timing, so two undisturbed rollouts have the same shape. (With the default
/// 25% steps, how many scalings a rollout takes depends on when pods become ready.)
fn deployment(ns: &str, name: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: {ns}, labels: {{app: {name}}}}}\nspec:\n  replicas: 4\n  strategy: {{type: RollingUpdate, rollingUpdate: {{maxSurge: 0, maxUnavailable: \"100%\"}}}}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec: {{containers: [{{name: app, image: nginx:1.27}}]}}\n"
    )
}

fn session(ns: &str, endpoint: &str) -> String {
    format!(
        "apiVersion: eventspan.dev/v1alpha1\nkind: TraceSession\nmetadata: {{name: {SESSION}, namespace: {ns}}}\nspec:\n  exporters:\n  - name: receiver\n    otlp: {{endpoint: \"{endpoint}\", protocol: http/protobuf}}\n"
    )
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
}

fn is_root_of_generation(s: &ReceivedSpan, deployment: &str, generation: &str) -> bool {
    s.parent.is_none()
        && s.attr("k8s.deployment.name") == Some(deployment)
        && s.attr("eventspan.root.generation") == Some(generation)
}

/// The spans of the traces whose root is the rollout of `deployment` (normally one trace; a
/// second root, in the same or another trace, is a fault's doing and counted).
fn rollout_spans<'a>(
    spans: &'a [ReceivedSpan],
    deployment: &str,
    generation: &str,
) -> Vec<&'a ReceivedSpan> {
    let traces: BTreeSet<&str> = spans
        .iter()
        .filter(|s| is_root_of_generation(s, deployment, generation))
        .map(|s| s.trace_id.as_str())
        .collect();
    spans
        .iter()
        .filter(|s| traces.contains(s.trace_id.as_str()))
        .collect()
}

fn traces_of<'a>(spans: &[&'a ReceivedSpan]) -> BTreeSet<&'a str> {
    spans.iter().map(|s| s.trace_id.as_str()).collect()
}

/// One line per trace received: its root (Deployment, generation, name) and its span count.
fn summary(spans: &[ReceivedSpan]) -> Vec<String> {
    let mut traces: BTreeMap<&str, (usize, Vec<String>)> = BTreeMap::new();
    for s in spans {
        let entry = traces.entry(&s.trace_id).or_default();
        entry.0 += 1;
        if s.parent.is_none() {
            entry.1.push(format!(
                "{} {} generation {}",
                s.name,
                s.attr("k8s.deployment.name").unwrap_or("?"),
                s.attr("eventspan.root.generation").unwrap_or("?")
            ));
        }
    }
    traces
        .into_iter()
        .map(|(id, (n, roots))| format!("{id}: {n} spans, roots {roots:?}"))
        .collect()
}

/// Waits until the rollout's root has arrived and nothing more came for [`QUIET`] (counted from
/// `since` at the earliest: a successor may take a while to lead and send again).
fn settle(
    rx: &Receiver,
    roots: &[(&str, &str)],
    since: Instant,
    quiet: Duration,
    timeout: Duration,
) -> Vec<ReceivedSpan> {
    let started = Instant::now();
    loop {
        let spans = rx.spans();
        let rooted = roots.iter().all(|(deployment, generation)| {
            spans
                .iter()
                .any(|s| is_root_of_generation(s, deployment, generation))
        });
        let last = spans
            .iter()
            .map(|s| s.received)
            .max()
            .map_or(since, |l| l.max(since));
        if (rooted && last.elapsed() >= quiet) || started.elapsed() >= timeout {
            return spans;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// What a trace is made of, span IDs aside: (span name, parent's span name) with multiplicity,
/// and how many pods each ReplicaSet's spans name.
#[derive(Debug, PartialEq, Eq)]
struct Shape {
    edges: BTreeMap<(String, String), usize>,
    pods_per_replicaset: Vec<usize>,
}

/// The shape of a whole `rollout restart` of [`deployment`]: the root, the two scalings, four
/// pods deleted and four created, each with its pod's events. It is what the undisturbed rollouts
/// give when nothing goes astray (35 spans), and the reference for the disturbed one: an
/// undisturbed rollout is not always whole (see [`Setup::new`]), so it cannot be the reference.
fn whole_rollout() -> Shape {
    let mut edges = BTreeMap::new();
    let mut edge = |name: &str, parent: &str, n: usize| {
        edges.insert((name.to_string(), parent.to_string()), n);
    };
    edge("Deployment.Update", "(root)", 1);
    edge("Deployment.ScalingReplicaSet", "Deployment.Update", 2);
    edge(
        "ReplicaSet.SuccessfulDelete",
        "Deployment.ScalingReplicaSet",
        4,
    );
    edge("Pod.Killing", "ReplicaSet.SuccessfulDelete", 4);
    edge(
        "ReplicaSet.SuccessfulCreate",
        "Deployment.ScalingReplicaSet",
        4,
    );
    for pod in ["Scheduled", "Pulling", "Pulled", "Created", "Started"] {
        edge(&format!("Pod.{pod}"), "ReplicaSet.SuccessfulCreate", 4);
    }
    Shape {
        edges,
        pods_per_replicaset: vec![4, 4],
    }
}

fn shape(spans: &[&ReceivedSpan]) -> Shape {
    let by_id: BTreeMap<&str, &ReceivedSpan> =
        spans.iter().map(|s| (s.span_id.as_str(), *s)).collect();
    let mut edges = BTreeMap::new();
    let mut pods: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for s in by_id.values() {
        let parent = match &s.parent {
            None => "(root)".to_string(),
            Some(p) => by_id
                .get(p.as_str())
                .map_or("(missing)".to_string(), |p| p.name.clone()),
        };
        *edges.entry((s.name.clone(), parent)).or_insert(0) += 1;
        if let (Some(rs), Some(pod)) = (s.attr("k8s.replicaset.name"), s.attr("k8s.pod.name")) {
            pods.entry(rs).or_default().insert(pod);
        }
    }
    let mut pods_per_replicaset: Vec<usize> = pods.values().map(BTreeSet::len).collect();
    pods_per_replicaset.sort_unstable();
    Shape {
        edges,
        pods_per_replicaset,
    }
}

/// How a rollout's trace compares with the undisturbed one's.
#[derive(Debug, Default)]
pub struct Figures {
    /// Spans of a whole rollout ([`whole_rollout`]).
    pub expected: usize,
    /// Spans received in the rollout's trace(s), duplicates included.
    pub received: usize,
    /// Received more than once (the same span ID again).
    pub duplicated: usize,
    /// Entries of the whole shape missing here.
    pub lost: usize,
    /// Entries here beyond the whole shape.
    pub extra: usize,
    pub traces: usize,
    pub roots: usize,
    /// Spans whose parent is not in the trace.
    pub orphans: usize,
    /// Spans marked `eventspan.incomplete`, with outcome `pending`, or ending before they start.
    pub unfinished: usize,
    /// Spans of an earlier change: started before the rollout or of another generation.
    pub earlier: usize,
    /// Spans of events since the rollout started that went to another trace than the
    /// rollout's (a trace without a root, or an earlier change's trace already sent).
    pub stray: usize,
    /// Spans of other traces (the other Deployment's, the creations') received again since the
    /// rollout started: a span ID once means once at the receiver, not only in this trace.
    pub resent: usize,
    /// What differs, for the failure message.
    pub differences: Vec<String>,
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "expected {} spans, received {}, duplicated {}, lost {}, extra {} \
             ({} traces, {} roots, {} orphans, {} unfinished, {} of an earlier change, {} stray, \
             {} of other traces sent again)",
            self.expected,
            self.received,
            self.duplicated,
            self.lost,
            self.extra,
            self.traces,
            self.roots,
            self.orphans,
            self.unfinished,
            self.earlier,
            self.stray,
            self.resent
        )
    }
}

impl Figures {
    fn exact(&self) -> bool {
        self.differences.is_empty()
    }
}

/// Compares the rollout of `deployment` in `spans` with the undisturbed rollout `expected`.
/// `started_ns` is when the rollout was started (`kubectl rollout restart`).
fn compare(
    want: &Shape,
    spans: &[ReceivedSpan],
    (deployment, generation): (&str, &str),
    started_ns: u64,
    prior: usize,
) -> Figures {
    let got = rollout_spans(spans, deployment, generation);
    let ids: BTreeSet<&str> = got.iter().map(|s| s.span_id.as_str()).collect();
    let have = shape(&got);
    let mut lost = 0;
    let mut extra = 0;
    let mut differences = Vec::new();
    let keys: BTreeSet<&(String, String)> = want.edges.keys().chain(have.edges.keys()).collect();
    for key in keys {
        let (w, h) = (
            want.edges.get(key).copied().unwrap_or(0),
            have.edges.get(key).copied().unwrap_or(0),
        );
        if w != h {
            differences.push(format!("{} under {}: {h} (whole {w})", key.0, key.1));
        }
        lost += w.saturating_sub(h);
        extra += h.saturating_sub(w);
    }
    if want.pods_per_replicaset != have.pods_per_replicaset {
        differences.push(format!(
            "pods per ReplicaSet {:?} (whole {:?})",
            have.pods_per_replicaset, want.pods_per_replicaset
        ));
    }
    // Event times are whole seconds at worst, and a root may start at the change's time.
    let slack = 2_000_000_000;
    let earlier: Vec<&&ReceivedSpan> = got
        .iter()
        .filter(|s| {
            s.start_ns + slack < started_ns
                || s.attr("eventspan.root.generation")
                    .is_some_and(|g| g != generation)
        })
        .collect();
    if !earlier.is_empty() {
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &earlier {
            *names.entry(&s.name).or_insert(0) += 1;
        }
        let oldest = earlier
            .iter()
            .map(|s| s.start_ns)
            .min()
            .unwrap_or(started_ns);
        differences.push(format!(
            "of an earlier change (started up to {:.1}s before the rollout): {names:?}",
            started_ns.saturating_sub(oldest) as f64 / 1e9
        ));
    }
    let stray: Vec<&ReceivedSpan> = {
        let seen: BTreeSet<&str> = spans[..prior].iter().map(|s| s.span_id.as_str()).collect();
        let rollout = traces_of(&got);
        spans[prior..]
            .iter()
            .filter(|s| {
                s.start_ns + slack >= started_ns
                    && !rollout.contains(s.trace_id.as_str())
                    && !seen.contains(s.span_id.as_str())
            })
            .collect()
    };
    if !stray.is_empty() {
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        for s in &stray {
            *names
                .entry(format!("{} in {}", s.name, s.trace_id))
                .or_insert(0) += 1;
        }
        differences.push(format!("sent to another trace: {names:?}"));
    }
    let figures = Figures {
        expected: want.edges.values().sum(),
        received: got.len(),
        duplicated: got.len() - ids.len(),
        lost,
        extra,
        traces: traces_of(&got).len(),
        roots: got.iter().filter(|s| s.parent.is_none()).count(),
        orphans: got
            .iter()
            .filter(|s| s.parent.as_deref().is_some_and(|p| !ids.contains(p)))
            .count(),
        unfinished: got
            .iter()
            .filter(|s| {
                s.attr("eventspan.incomplete") == Some("true")
                    || s.attr("eventspan.outcome") == Some("pending")
                    || s.end_ns < s.start_ns
            })
            .count(),
        earlier: earlier.len(),
        resent: {
            let seen: BTreeSet<&str> = spans[..prior].iter().map(|s| s.span_id.as_str()).collect();
            let rollout: BTreeSet<&str> = traces_of(&got);
            spans[prior..]
                .iter()
                .filter(|s| {
                    !rollout.contains(s.trace_id.as_str()) && seen.contains(s.span_id.as_str())
                })
                .count()
        },
        stray: stray.len(),
        differences: Vec::new(),
    };
    for (what, n) in [
        ("duplicated spans", figures.duplicated),
        ("orphans", figures.orphans),
        ("unfinished spans", figures.unfinished),
        ("spans of an earlier change", figures.earlier),
        ("stray spans", figures.stray),
        ("spans of other traces sent again", figures.resent),
    ] {
        if n > 0 {
            differences.push(format!("{n} {what}"));
        }
    }
    for s in got.iter().filter(|s| {
        s.attr("eventspan.incomplete") == Some("true")
            || s.attr("eventspan.outcome") == Some("pending")
            || s.end_ns < s.start_ns
    }) {
        differences.push(format!(
            "unfinished: {} ({}), incomplete {:?}, outcome {:?}, {} ns long",
            s.name,
            s.attr("k8s.object.name")
                .or(s.attr("eventspan.child.name"))
                .unwrap_or_default(),
            s.attr("eventspan.incomplete"),
            s.attr("eventspan.outcome"),
            s.end_ns as i128 - s.start_ns as i128
        ));
    }
    // The Resource names the reporting controller (Jaeger's service); a span without it was
    // built from a record that lost its event.
    let nameless = got.iter().filter(|s| s.service.is_empty()).count();
    if nameless > 0 {
        differences.push(format!("{nameless} spans without a Resource service.name"));
    }
    if figures.roots != 1 || figures.traces != 1 {
        differences.push(format!(
            "{} roots in {} traces",
            figures.roots, figures.traces
        ));
    }
    Figures {
        differences,
        ..figures
    }
}

/// A case's namespace, its session exporting to a receiver of its own, two identical
/// Deployments rolled out, and the undisturbed rollout of the first one recorded.
struct Setup {
    ns: String,
    rx: Receiver,
    /// Undisturbed rollouts that were not whole (each a failure of the case).
    undisturbed: Vec<String>,
}

impl Setup {
    fn new(w: &World, case: &str, ns: &str) -> Result<Setup, String> {
        let c = &w.cluster;
        let t = Instant::now();
        w.operator()?;
        let ns = c.namespace(ns)?;
        let rx = Receiver::start()?;
        c.apply(&session(&ns, &rx.endpoint()))?;
        c.kubectl(&[
            "-n",
            &ns,
            "wait",
            "--for=condition=Ready",
            &format!("tracesession/{SESSION}"),
            "--timeout=30s",
        ])?;
        for name in [BASELINE, DISTURBED] {
            c.apply(&deployment(&ns, name))?;
        }
        for name in [BASELINE, DISTURBED] {
            rolled_out(c, &ns, name)?;
        }
        // The creations' traces delivered first, so that what comes next is the rollout's.
        settle(
            &rx,
            &[(BASELINE, "1"), (DISTURBED, "1")],
            Instant::now(),
            QUIET_UNDISTURBED,
            Duration::from_secs(60),
        );
        // The undisturbed rollout must be whole too: when it is not (its old ReplicaSet's
        // deletions or pods' Killing go to the previous trace, already sent), that defect is
        // reported and fails the case, but the fault is still measured.
        let prior = rx.spans().len();
        let started_ns = now_ns();
        restart(c, &ns, BASELINE)?;
        let spans = settle(
            &rx,
            &[(BASELINE, GENERATION)],
            Instant::now(),
            QUIET_UNDISTURBED,
            Duration::from_secs(60),
        );
        let check = compare(
            &whole_rollout(),
            &spans,
            (BASELINE, GENERATION),
            started_ns,
            prior,
        );
        eprintln!(
            "FIGURES {case} (undisturbed rollout, {:.1}s into the case): {check}",
            t.elapsed().as_secs_f64()
        );
        let mut undisturbed = Vec::new();
        if !check.exact() {
            for d in &check.differences {
                eprintln!("  {case} (undisturbed): {d}");
            }
            for t in summary(&spans[prior..]) {
                eprintln!("  {case}: received since the undisturbed restart: {t}");
            }
            undisturbed.push(format!(
                "the undisturbed rollout is not whole either: {check}: {}",
                check.differences.join("; ")
            ));
        }
        Ok(Setup {
            ns,
            rx,
            undisturbed,
        })
    }

    /// Deletes the case's session (without waiting for its flush), so that the cases after
    /// this one do not share the operator with sessions exporting to receivers long gone.
    fn finish(&self, c: &Cluster) {
        if let Err(e) = c.kubectl(&[
            "-n",
            &self.ns,
            "delete",
            "tracesession",
            SESSION,
            "--wait=false",
        ]) {
            eprintln!("  {}: {e}", self.ns);
        }
    }

    /// Restarts the second Deployment, hits it with `fault` while its pods are being replaced
    /// (`fault` returns once the operator is back, with a note for the figures), and compares
    /// what arrives with the undisturbed rollout.
    fn disturb(
        &self,
        w: &World,
        case: &str,
        fault: impl FnOnce() -> Result<String, String>,
    ) -> Result<Figures, String> {
        let c = &w.cluster;
        let before = self.rx.spans().len();
        let started_ns = now_ns();
        c.kubectl(&[
            "-n",
            &self.ns,
            "rollout",
            "restart",
            &format!("deployment/{DISTURBED}"),
        ])?;
        std::thread::sleep(Duration::from_millis(500));
        let progress = rollout_progress(c, &self.ns)?;
        let hit = Instant::now();
        let note = fault()?;
        let recovered = Instant::now();
        // The fault hit the controllers too (an API-server restart breaks every client's watch,
        // and the first seconds after it answer 403): they resume within their own backoff,
        // so the rollout gets more than the usual minute to finish.
        rolled_out_within(c, &self.ns, DISTURBED, ROLLOUT_AFTER_FAULT)?;
        let done = recovered.elapsed();
        let spans = settle(
            &self.rx,
            &[(DISTURBED, GENERATION)],
            recovered,
            QUIET,
            Duration::from_secs(90),
        );
        let mut figures = compare(
            &whole_rollout(),
            &spans,
            (DISTURBED, GENERATION),
            started_ns,
            before,
        );
        eprintln!(
            "FIGURES {case}: {figures}; fault hit at rollout progress {progress}, back after {:.1}s; {note}; \
             rolled out {:.1}s and settled {:.1}s after that; {} spans received in the case since the restart",
            recovered.duration_since(hit).as_secs_f64(),
            done.as_secs_f64(),
            recovered.elapsed().as_secs_f64(),
            spans.len() - before
        );
        for d in &figures.differences {
            eprintln!("  {case}: {d}");
        }
        for t in summary(&spans[before..]) {
            eprintln!("  {case}: received since the restart: {t}");
        }
        figures.differences.extend(self.undisturbed.iter().cloned());
        Ok(figures)
    }
}

/// How long a rollout the fault interrupted may take to finish once the fault is over.
const ROLLOUT_AFTER_FAULT: Duration = Duration::from_secs(180);

/// `updated/ready of 4` as the Deployment's status says, to show the fault hit mid-rollout.
fn rollout_progress(c: &Cluster, ns: &str) -> Result<String, String> {
    let out = c.kubectl(&[
        "-n",
        ns,
        "get",
        &format!("deployment/{DISTURBED}"),
        "-o",
        "jsonpath={.status.updatedReplicas}/{.status.readyReplicas}",
    ])?;
    let (updated, ready) = out.split_once('/').unwrap_or((&out, ""));
    let n = |v: &str| v.parse::<u32>().unwrap_or(0);
    if n(updated) == 4 && n(ready) == 4 {
        return Err(format!("the rollout was over before the fault ({out})"));
    }
    Ok(format!("updated {} ready {} of 4", n(updated), n(ready)))
}

fn verdict(figures: Figures) -> Result<(), String> {
    if figures.exact() {
        Ok(())
    } else {
        Err(format!(
            "not the undisturbed rollout's spans: {figures}: {}",
            figures.differences.join("; ")
        ))
    }
}

/// Re-lists of the shared operator's watches so far (eventspan_watch_relists_total).
fn relists(w: &World) -> Result<f64, String> {
    let text = w.operator()?.metrics()?;
    Ok(["events", "metadata"]
        .iter()
        .filter_map(|r| {
            metric_of(
                &text,
                &format!("eventspan_watch_relists_total{{resource=\"{r}\"}}"),
            )
        })
        .sum())
}

/// The operator's default `--checkpoint-interval`.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);

pub fn sigkill_mid_rollout_loses_and_repeats_nothing(w: &World) -> Result<(), String> {
    let setup = Setup::new(w, "sigkill", "e2e-sigkill")?;
    let operator = w.operator()?;
    // The guarantee (README, "Delivery guarantee"): after a crash only spans emitted after what
    // the last written checkpoint covers are sent again. So wait until the written checkpoints
    // cover every span emitted so far (the undisturbed rollout's included), then demand that
    // nothing of other traces comes again. Sessions of earlier cases whose receivers are gone
    // (kstatus' "down") must not hold that back for longer than the operator's 30 s grace for a
    // failing exporter.
    let emitted = operator
        .metric("eventspan_engine_spans_emitted_total")
        .ok_or("no eventspan_engine_spans_emitted_total")?;
    let covered = || operator.metric("eventspan_checkpoint_covered_spans");
    let waited = Instant::now();
    let deadline = waited + Duration::from_secs(30) + CHECKPOINT_INTERVAL * 6;
    while covered().unwrap_or(0.0) < emitted && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    if covered().unwrap_or(0.0) < emitted {
        setup.finish(&w.cluster);
        return Err(format!(
            "the checkpoints did not cover the {emitted} spans emitted before the kill within {:.0}s (covered {:?})",
            waited.elapsed().as_secs_f64(),
            covered()
        ));
    }
    eprintln!(
        "  sigkill: the checkpoints covered the {emitted} spans emitted so far {:.1}s after the rollout",
        waited.elapsed().as_secs_f64()
    );
    let figures = setup.disturb(w, "sigkill", || {
        operator.kill()?;
        operator.respawn()?;
        let t = Instant::now();
        operator.wait_leading(Duration::from_secs(60))?;
        Ok(format!(
            "SIGKILL, leading again {:.1}s after the respawn",
            t.elapsed().as_secs_f64()
        ))
    });
    setup.finish(&w.cluster);
    verdict(figures?)
}

pub fn sigterm_mid_rollout_hands_over(w: &World) -> Result<(), String> {
    let setup = Setup::new(w, "sigterm", "e2e-sigterm")?;
    let operator = w.operator()?;
    let figures = setup.disturb(w, "sigterm", || {
        let exit = operator.terminate();
        operator.respawn()?;
        let t = Instant::now();
        operator.wait_leading(Duration::from_secs(60))?;
        Ok(format!(
            "SIGTERM ({}), leading again {:.1}s after the respawn",
            exit.err().unwrap_or_else(|| "clean exit".into()),
            t.elapsed().as_secs_f64()
        ))
    });
    setup.finish(&w.cluster);
    verdict(figures?)
}

/// Two replicas; the leader is stopped mid-rollout and the standby takes over. The shared
/// replica is then started again as the standby and the other stopped, so it leads again for
/// the cases after this one.
pub fn leader_handover_mid_rollout(w: &World) -> Result<(), String> {
    let c = &w.cluster;
    let setup = Setup::new(w, "handover", "e2e-handover")?;
    let operator = w.operator()?;
    let port = free_port();
    let mut standby = spawn_operator(
        &c.state_dir().join("operator.kubeconfig"),
        "replica-b",
        port,
    )?;
    let standby_leads = || -> Result<f64, String> {
        metric_of(
            &http_get(&format!("http://127.0.0.1:{port}/metrics"))?,
            "eventspan_leader",
        )
        .ok_or("no eventspan_leader metric".into())
    };
    let result = (|| {
        if eventually(Duration::from_secs(30), standby_leads)? != 0.0 {
            return Err("the standby leads beside the shared replica".into());
        }
        setup.disturb(w, "handover", || {
            let exit = operator.terminate();
            let t = Instant::now();
            eventually(Duration::from_secs(60), || {
                (standby_leads()? == 1.0)
                    .then_some(())
                    .ok_or("replica-b did not take over".into())
            })?;
            Ok(format!(
                "leader SIGTERM ({}), replica-b leading {:.1}s later",
                exit.err().unwrap_or_else(|| "clean exit".into()),
                t.elapsed().as_secs_f64()
            ))
        })
    })();
    setup.finish(c);
    // Whatever happened: the shared replica back as the leader, the standby gone.
    let t = Instant::now();
    let restored = (|| {
        if operator.running_pid().is_err() {
            operator.respawn()?;
        }
        terminate(&mut standby)?;
        operator.wait_leading(Duration::from_secs(60))
    })();
    eprintln!(
        "  handover: the shared replica leads again {:.1}s after replica-b was stopped",
        t.elapsed().as_secs_f64()
    );
    let figures = result?;
    restored.map_err(|e| format!("restoring the shared operator: {e}"))?;
    verdict(figures)
}

/// The API server's health, restored if a fault case left it stopped: later cases need it.
fn ensure_apiserver(c: &Cluster) -> Result<(), String> {
    if c.kubectl(&["get", "--raw", "/readyz"]).is_err() {
        c.apiserver("start")?;
    }
    Ok(())
}

/// kube-apiserver stopped for about 10 s mid-rollout, then started with the same flags.
pub fn apiserver_outage_mid_rollout(w: &World) -> Result<(), String> {
    let c = &w.cluster;
    let setup = Setup::new(w, "apiserver", "e2e-apiserver")?;
    let relists_before = relists(w)?;
    let figures = setup.disturb(w, "apiserver", || {
        let t = Instant::now();
        c.apiserver("stop")?;
        // Stopping takes ~1 s and starting ~6 s (until /readyz): about 10 s without it.
        std::thread::sleep(Duration::from_secs(3));
        let started = c.apiserver("start");
        let down = t.elapsed();
        started?;
        Ok(format!("API server unavailable {:.1}s", down.as_secs_f64()))
    });
    ensure_apiserver(c)?;
    setup.finish(c);
    eprintln!(
        "  apiserver: {} watch re-lists (410 Gone) across the restart",
        relists(w)? - relists_before
    );
    verdict(figures?)
}

/// Every watch of the operator expires mid-rollout: the API server is restarted with etcd
/// compacted to its latest revision in between, so each watch resumes from a resourceVersion
/// that is gone, gets 410 Gone and lists again. The re-lists are counted by the operator
/// (eventspan_watch_relists_total), which proves the 410s happened.
pub fn expired_watch_relists_without_duplicates(w: &World) -> Result<(), String> {
    let c = &w.cluster;
    let setup = Setup::new(w, "expired", "e2e-expired")?;
    let relists_before = relists(w)?;
    let figures = setup.disturb(w, "expired", || {
        let t = Instant::now();
        c.apiserver("stop")?;
        let compacted = c.apiserver("compact");
        let started = c.apiserver("start");
        compacted?;
        started?;
        // The watches re-list as they find the API server back, within their backoff.
        eventually(Duration::from_secs(60), || {
            let n = relists(w)? - relists_before;
            (n > 0.0).then_some(n).ok_or("no watch re-listed".into())
        })?;
        Ok(format!(
            "API server restarted over compacted etcd, first re-list {:.1}s after the stop",
            t.elapsed().as_secs_f64()
        ))
    });
    ensure_apiserver(c)?;
    setup.finish(c);
    let n = relists(w)? - relists_before;
    eprintln!("  expired: {n} watch re-lists (410 Gone) after the compaction");
    let figures = figures?;
    if n == 0.0 {
        return Err("no watch expired: the case tested nothing".into());
    }
    verdict(figures)
}

//! What the received spans say about the operator: completeness against the rollouts the churn
//! made, the structure of each rollout's trace, misparented spans, duplicates and latency.
//!
//! Everything is computed from the spans as received (every receipt is recorded, duplicates too),
//! so a span the operator sent twice counts once in the trees and once in `duplicates`.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

/// One span as the sink received it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct SpanRecord {
    pub trace: String,
    pub span: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub parent: String,
    pub name: String,
    pub start_ns: u64,
    pub end_ns: u64,
    /// The sink's wall clock when the request carrying the span arrived.
    pub received_ns: u64,
    /// The span's attributes, values as text (uids left out: nothing here reads them).
    #[serde(default)]
    pub attrs: BTreeMap<String, String>,
}

impl SpanRecord {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.get(key).map(String::as_str)
    }

    /// The pod this span's event is about, if it is about a pod.
    fn pod(&self) -> Option<&str> {
        (self.attr("k8s.object.kind") == Some("Pod"))
            .then(|| self.attr("k8s.object.name"))
            .flatten()
    }

    /// The pod a controller's event says it acted on (`Created pod: X`, `Deleted pod: X`).
    fn acted_on_pod(&self) -> Option<&str> {
        (self.attr("eventspan.child.kind") == Some("Pod"))
            .then(|| self.attr("eventspan.child.name"))
            .flatten()
    }

    fn reason(&self) -> Option<&str> {
        self.attr("k8s.event.reason")
    }
}

/// A rollout the churn made: the trace eventspan should export for it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Expected {
    pub kind: String,
    pub name: String,
    pub generation: i64,
    /// Pods the rollout creates.
    pub pods: usize,
}

impl Expected {
    /// Parses `KIND NAME GENERATION PODS` lines (blank lines and `#` comments skipped).
    pub fn parse_all(text: &str) -> Result<Vec<Expected>, String> {
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let f: Vec<&str> = line.split_whitespace().collect();
            let bad = || {
                format!(
                    "expectations line {}: want KIND NAME GENERATION PODS: {line}",
                    i + 1
                )
            };
            let [kind, name, generation, pods] = f[..] else {
                return Err(bad());
            };
            out.push(Expected {
                kind: kind.into(),
                name: name.into(),
                generation: generation.parse().map_err(|_| bad())?,
                pods: pods.parse().map_err(|_| bad())?,
            });
        }
        Ok(out)
    }
}

/// The pod events kwok and the scheduler report for every pod that starts: a rollout has the
/// full structure only if each pod it created has all of them under its creation span.
pub const POD_REASONS: [&str; 5] = ["Scheduled", "Pulling", "Pulled", "Created", "Started"];

#[derive(Debug, Default, PartialEq)]
pub struct Analysis {
    pub receipts: usize,
    pub unique_spans: usize,
    /// Receipts of a (trace, span) already received.
    pub duplicates: usize,
    pub traces: usize,
    pub expected: usize,
    /// Expected rollouts with a trace.
    pub traced: usize,
    /// Of those, traces with the full structure.
    pub full_structure: usize,
    /// Expected rollouts without a trace, and traced ones without the full structure, with why
    /// (the first few, for the report).
    pub missing: Vec<String>,
    pub not_full: Vec<String>,
    /// What the rollouts without the full structure lack, tallied over all of them: each pod
    /// event missing under its creation span is told by where it went instead (see
    /// [`Whereabouts`]), so a report says whether Kubernetes never published it or eventspan
    /// placed it elsewhere.
    pub shortfalls: BTreeMap<String, usize>,
    /// Traces whose root matches no expected rollout.
    pub other_traces: usize,
    /// Pod event spans whose nearest pod-naming ancestor names another pod.
    pub misparented: usize,
    pub misparented_examples: Vec<String>,
    /// Pod event spans with no pod-naming ancestor at all (their creator's span is missing).
    pub unanchored_pod_spans: usize,
    /// Spans whose parent was never received.
    pub orphans: usize,
    /// Unique spans per traced rollout.
    pub spans_per_rollout: Vec<usize>,
    /// Receive time minus span end, first receipts, in milliseconds, sorted.
    pub latency_end_ms: Vec<f64>,
    /// Receive time minus span start (the event's time; a repeated event's first), likewise.
    pub latency_start_ms: Vec<f64>,
}

/// How many examples of each kind of fault the report lists.
const EXAMPLES: usize = 5;

/// The root's rollout: (kind, name, generation), from the root span's name (`Deployment.Update`,
/// `Job.SuccessfulCreate`...) and its `k8s.<kind>.name` and `eventspan.root.generation`.
fn rollout_of(root: &SpanRecord) -> Option<(String, String, i64)> {
    let kind = root
        .attr("k8s.object.kind")
        .or_else(|| root.name.split('.').next())?;
    let name = root.attr(&format!("k8s.{}.name", kind.to_ascii_lowercase()))?;
    let generation = root.attr("eventspan.root.generation")?.parse().ok()?;
    Some((kind.to_string(), name.to_string(), generation))
}

struct Trace<'a> {
    spans: HashMap<&'a str, &'a SpanRecord>,
    children: HashMap<&'a str, Vec<&'a SpanRecord>>,
    roots: Vec<&'a SpanRecord>,
}

impl<'a> Trace<'a> {
    fn new(spans: HashMap<&'a str, &'a SpanRecord>) -> Trace<'a> {
        let mut children: HashMap<&str, Vec<&SpanRecord>> = HashMap::new();
        let mut roots = Vec::new();
        for s in spans.values() {
            if s.parent.is_empty() {
                roots.push(*s);
            } else {
                children.entry(s.parent.as_str()).or_default().push(s);
            }
        }
        // In time order, so the faults the report lists first are the same on every run.
        for list in children.values_mut().chain([&mut roots]) {
            list.sort_by(|a, b| (a.start_ns, &a.span).cmp(&(b.start_ns, &b.span)));
        }
        Trace {
            spans,
            children,
            roots,
        }
    }

    fn children_of(&self, span: &SpanRecord) -> &[&'a SpanRecord] {
        self.children
            .get(span.span.as_str())
            .map_or(&[], Vec::as_slice)
    }

    /// Why this trace lacks the full structure for `expected`, or `None` if it has it: one root;
    /// under it (for a Deployment, under a `ScalingReplicaSet` under it) at least `pods`
    /// creation spans of distinct pods, each with that pod's own `POD_REASONS` as children.
    /// What it lacks goes into `shortfalls`, each missing pod event told by `whereabouts`.
    fn structure_fault(
        &self,
        expected: &Expected,
        whereabouts: &Whereabouts,
        shortfalls: &mut Vec<String>,
    ) -> Option<String> {
        let [root] = self.roots[..] else {
            shortfalls.push("more than one root".into());
            return Some(format!("{} roots", self.roots.len()));
        };
        let layers: Vec<&SpanRecord> = if expected.kind == "Deployment" {
            self.children_of(root)
                .iter()
                .filter(|s| s.reason() == Some("ScalingReplicaSet"))
                .copied()
                .collect()
        } else {
            vec![root]
        };
        let mut complete_pods = std::collections::BTreeSet::new();
        let mut created_pods = std::collections::BTreeSet::new();
        let mut first_fault = None;
        let mut lacking = Vec::new();
        for creation in layers
            .iter()
            .flat_map(|l| self.children_of(l))
            .filter(|s| s.reason() != Some("SuccessfulDelete"))
        {
            let Some(pod) = creation.acted_on_pod() else {
                continue;
            };
            created_pods.insert(pod);
            let missing: Vec<&str> = POD_REASONS
                .iter()
                .filter(|r| {
                    !self
                        .children_of(creation)
                        .iter()
                        .any(|c| c.pod() == Some(pod) && c.reason() == Some(**r))
                })
                .copied()
                .collect();
            if missing.is_empty() {
                complete_pods.insert(pod);
            } else {
                if first_fault.is_none() {
                    first_fault = Some(format!("pod {pod} lacks {}", missing.join(",")));
                }
                for reason in missing {
                    lacking.push(format!(
                        "{reason}: {}",
                        whereabouts.of(pod, reason, &creation.trace)
                    ));
                }
            }
        }
        if complete_pods.len() >= expected.pods {
            return None;
        }
        if layers.is_empty() {
            shortfalls.push("no ScalingReplicaSet under the root".into());
        }
        for _ in created_pods.len()..expected.pods {
            shortfalls.push("a pod without a creation span under the root's layer".into());
        }
        shortfalls.extend(lacking);
        Some(first_fault.unwrap_or_else(|| {
            format!(
                "{} of {} pods have a creation span{}",
                complete_pods.len(),
                expected.pods,
                if layers.is_empty() {
                    " (no ScalingReplicaSet under the root)"
                } else {
                    ""
                }
            )
        }))
    }

    /// The pod named by the nearest ancestor of `span` that names one: a creation span names the
    /// pod it created, a pod's event span its pod.
    fn anchor_pod(&self, span: &SpanRecord) -> Option<&'a str> {
        let mut current = self.spans.get(span.parent.as_str()).copied();
        // A bound on the walk: a cycle in received parent links must not hang the report.
        for _ in 0..self.spans.len() {
            let s = current?;
            if let Some(pod) = s.acted_on_pod().or_else(|| s.pod()) {
                return Some(pod);
            }
            current = self.spans.get(s.parent.as_str()).copied();
        }
        None
    }
}

/// Where each pod's events went: the traces holding a span of (pod, reason), and whether the
/// API server published such an Event at all (when the run's Event list is given).
pub struct Whereabouts<'a> {
    traces: HashMap<(&'a str, &'a str), HashSet<&'a str>>,
    published: Option<&'a HashSet<(String, String)>>,
}

impl<'a> Whereabouts<'a> {
    fn new(records: &'a [SpanRecord], published: Option<&'a HashSet<(String, String)>>) -> Self {
        let mut traces: HashMap<(&str, &str), HashSet<&str>> = HashMap::new();
        for r in records {
            if let (Some(pod), Some(reason)) = (r.pod(), r.reason()) {
                traces
                    .entry((pod, reason))
                    .or_default()
                    .insert(r.trace.as_str());
            }
        }
        Whereabouts { traces, published }
    }

    /// Where `pod`'s `reason` event went, missing under its creation span in `trace`.
    fn of(&self, pod: &str, reason: &str, trace: &str) -> &'static str {
        match self.traces.get(&(pod, reason)) {
            Some(t) if t.contains(trace) => "under another span of the trace",
            Some(_) => "in another trace",
            None => match self.published {
                None => "not received",
                Some(p) if p.contains(&(pod.to_string(), reason.to_string())) => {
                    "published, not received"
                }
                Some(_) => "never published by the cluster",
            },
        }
    }
}

/// `published`: the (pod, reason) pairs of the run's Events, when known.
pub fn analyse(
    records: &[SpanRecord],
    expected: &[Expected],
    published: Option<&HashSet<(String, String)>>,
) -> Analysis {
    let whereabouts = Whereabouts::new(records, published);
    let mut a = Analysis {
        receipts: records.len(),
        expected: expected.len(),
        ..Analysis::default()
    };
    // First receipt of each span, by trace.
    let mut traces: BTreeMap<&str, HashMap<&str, &SpanRecord>> = BTreeMap::new();
    for r in records {
        let spans = traces.entry(r.trace.as_str()).or_default();
        match spans.get(r.span.as_str()) {
            Some(first) if first.received_ns <= r.received_ns => a.duplicates += 1,
            Some(_) => {
                a.duplicates += 1;
                spans.insert(r.span.as_str(), r);
            }
            None => {
                spans.insert(r.span.as_str(), r);
            }
        }
    }
    a.traces = traces.len();
    let wanted: HashMap<(String, String, i64), &Expected> = expected
        .iter()
        .map(|e| ((e.kind.clone(), e.name.clone(), e.generation), e))
        .collect();
    let mut found: HashMap<(String, String, i64), bool> = HashMap::new();
    for spans in traces.into_values() {
        a.unique_spans += spans.len();
        let trace = Trace::new(spans);
        for s in trace.spans.values() {
            a.latency_end_ms
                .push((s.received_ns as f64 - s.end_ns as f64) / 1e6);
            a.latency_start_ms
                .push((s.received_ns as f64 - s.start_ns as f64) / 1e6);
            if !s.parent.is_empty() && !trace.spans.contains_key(s.parent.as_str()) {
                a.orphans += 1;
            }
            let Some(pod) = s.pod() else { continue };
            match trace.anchor_pod(s) {
                None => a.unanchored_pod_spans += 1,
                Some(anchor) if anchor != pod => {
                    a.misparented += 1;
                    if a.misparented_examples.len() < EXAMPLES {
                        a.misparented_examples.push(format!(
                            "{} of {pod} under a span naming {anchor} (trace {})",
                            s.name, s.trace
                        ));
                    }
                }
                Some(_) => {}
            }
        }
        let rollout = trace.roots.iter().find_map(|r| rollout_of(r));
        let Some(e) = rollout.as_ref().and_then(|k| wanted.get(k)) else {
            a.other_traces += 1;
            continue;
        };
        let key = rollout.clone().expect("matched");
        if found.contains_key(&key) {
            // Two traces for one rollout: the second is not the expected one.
            a.other_traces += 1;
            continue;
        }
        a.spans_per_rollout.push(trace.spans.len());
        let mut shortfalls = Vec::new();
        let fault = trace.structure_fault(e, &whereabouts, &mut shortfalls);
        for what in shortfalls {
            *a.shortfalls.entry(what).or_insert(0) += 1;
        }
        if let Some(why) = &fault
            && a.not_full.len() < EXAMPLES
        {
            a.not_full
                .push(format!("{} {} gen {}: {why}", e.kind, e.name, e.generation));
        }
        found.insert(key, fault.is_none());
    }
    a.traced = found.len();
    a.full_structure = found.values().filter(|full| **full).count();
    let mut missing: Vec<&Expected> = expected
        .iter()
        .filter(|e| !found.contains_key(&(e.kind.clone(), e.name.clone(), e.generation)))
        .collect();
    missing.sort();
    a.missing = missing
        .iter()
        .take(EXAMPLES)
        .map(|e| format!("{} {} gen {}", e.kind, e.name, e.generation))
        .collect();
    a.latency_end_ms.sort_by(f64::total_cmp);
    a.latency_start_ms.sort_by(f64::total_cmp);
    a
}

/// The `q` quantile (0..=1) of sorted values, nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

#[cfg(test)]
pub mod tests {
    use super::*;

    pub struct Builder {
        pub spans: Vec<SpanRecord>,
        next: u64,
    }

    impl Builder {
        pub fn new() -> Builder {
            Builder {
                spans: Vec::new(),
                next: 0,
            }
        }

        /// Adds a span to trace `trace` under `parent` ("" for a root); returns its id.
        pub fn span(
            &mut self,
            trace: &str,
            parent: &str,
            name: &str,
            attrs: &[(&str, &str)],
        ) -> String {
            self.next += 1;
            let id = format!("{:016x}", self.next);
            self.spans.push(SpanRecord {
                trace: trace.into(),
                span: id.clone(),
                parent: parent.into(),
                name: name.into(),
                start_ns: self.next * 1_000_000_000,
                end_ns: self.next * 1_000_000_000 + 500_000_000,
                received_ns: self.next * 1_000_000_000 + 6_000_000_000,
                attrs: attrs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            });
            id
        }

        /// A Deployment rollout with the full structure: root → ScalingReplicaSet → a creation
        /// span per pod → the pod's five events.
        pub fn rollout(&mut self, trace: &str, deployment: &str, generation: i64, pods: &[&str]) {
            let gen_text = generation.to_string();
            let root = self.span(
                trace,
                "",
                "Deployment.Update",
                &[
                    ("k8s.deployment.name", deployment),
                    ("eventspan.root.generation", &gen_text),
                ],
            );
            let scaling = self.span(
                trace,
                &root,
                "Deployment.ScalingReplicaSet",
                &[
                    ("k8s.object.kind", "Deployment"),
                    ("k8s.event.reason", "ScalingReplicaSet"),
                ],
            );
            for pod in pods {
                let creation = self.span(
                    trace,
                    &scaling,
                    "ReplicaSet.SuccessfulCreate",
                    &[
                        ("k8s.object.kind", "ReplicaSet"),
                        ("k8s.event.reason", "SuccessfulCreate"),
                        ("eventspan.child.kind", "Pod"),
                        ("eventspan.child.name", pod),
                    ],
                );
                for reason in POD_REASONS {
                    self.pod_event(trace, &creation, pod, reason);
                }
            }
        }

        pub fn pod_event(&mut self, trace: &str, parent: &str, pod: &str, reason: &str) -> String {
            self.span(
                trace,
                parent,
                &format!("Pod.{reason}"),
                &[
                    ("k8s.object.kind", "Pod"),
                    ("k8s.object.name", pod),
                    ("k8s.event.reason", reason),
                ],
            )
        }
    }

    fn expect(name: &str, generation: i64, pods: usize) -> Expected {
        Expected {
            kind: "Deployment".into(),
            name: name.into(),
            generation,
            pods,
        }
    }

    #[test]
    fn full_rollouts_count_as_full_and_nothing_is_misparented() {
        let mut b = Builder::new();
        b.rollout("t1", "web", 1, &["web-a", "web-b"]);
        b.rollout("t2", "web", 2, &["web-c", "web-d"]);
        let a = analyse(&b.spans, &[expect("web", 1, 2), expect("web", 2, 2)], None);
        assert_eq!((a.traced, a.full_structure, a.misparented), (2, 2, 0));
        assert_eq!((a.traces, a.other_traces, a.orphans), (2, 0, 0));
        assert_eq!(a.spans_per_rollout, vec![14, 14]);
        assert!(a.missing.is_empty() && a.not_full.is_empty(), "{a:?}");
    }

    #[test]
    fn a_pod_event_under_another_pods_creation_is_misparented_and_breaks_the_structure() {
        let mut b = Builder::new();
        b.rollout("t1", "web", 1, &["web-a"]);
        // web-b's creation span, with web-b's Started hanging under web-a's creation instead.
        let creation_a = b.spans[2].span.clone();
        let scaling = b.spans[1].span.clone();
        let creation_b = b.span(
            "t1",
            &scaling,
            "ReplicaSet.SuccessfulCreate",
            &[
                ("k8s.event.reason", "SuccessfulCreate"),
                ("eventspan.child.kind", "Pod"),
                ("eventspan.child.name", "web-b"),
            ],
        );
        for reason in &POD_REASONS[..4] {
            b.pod_event("t1", &creation_b, "web-b", reason);
        }
        b.pod_event("t1", &creation_a, "web-b", "Started");
        // And a span of web-a under web-b's event span: misparented by the pod it hangs under.
        let b_event = b.spans.last().unwrap().span.clone();
        b.pod_event("t1", &b_event, "web-a", "Killing");
        let a = analyse(&b.spans, &[expect("web", 1, 2)], None);
        assert_eq!(a.misparented, 2, "{:?}", a.misparented_examples);
        assert_eq!((a.traced, a.full_structure), (1, 0));
        assert!(
            a.not_full[0].contains("web-b lacks Started"),
            "{:?}",
            a.not_full
        );
    }

    #[test]
    fn shortfalls_tell_where_each_missing_pod_event_went() {
        let mut b = Builder::new();
        b.rollout("t1", "web", 1, &["web-a"]);
        // web-b: created, its Scheduled under the root of this trace, its Pulling in another
        // trace, its Pulled published but never received, and its Created and Started never
        // published at all.
        let root = b.spans[0].span.clone();
        let scaling = b.spans[1].span.clone();
        b.span(
            "t1",
            &scaling,
            "ReplicaSet.SuccessfulCreate",
            &[
                ("k8s.event.reason", "SuccessfulCreate"),
                ("eventspan.child.kind", "Pod"),
                ("eventspan.child.name", "web-b"),
            ],
        );
        b.pod_event("t1", &root, "web-b", "Scheduled");
        b.pod_event("t9", "", "web-b", "Pulling");
        let published: HashSet<(String, String)> = [("web-b".to_string(), "Pulled".to_string())]
            .into_iter()
            .collect();
        // A third pod the rollout made has no creation span at all.
        let a = analyse(&b.spans, &[expect("web", 1, 3)], Some(&published));
        assert_eq!((a.traced, a.full_structure), (1, 0));
        let want: BTreeMap<String, usize> = [
            ("Scheduled: under another span of the trace", 1),
            ("Pulling: in another trace", 1),
            ("Pulled: published, not received", 1),
            ("Created: never published by the cluster", 1),
            ("Started: never published by the cluster", 1),
            ("a pod without a creation span under the root's layer", 1),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(a.shortfalls, want);
        // A full rollout has no shortfalls.
        let mut full = Builder::new();
        full.rollout("t1", "web", 1, &["web-a"]);
        assert!(
            analyse(&full.spans, &[expect("web", 1, 1)], None)
                .shortfalls
                .is_empty()
        );
    }

    #[test]
    fn missing_rollouts_duplicates_orphans_and_unanchored_spans_are_counted() {
        let mut b = Builder::new();
        b.rollout("t1", "web", 1, &["web-a"]);
        let again = b.spans[3].clone();
        b.spans.push(SpanRecord {
            received_ns: again.received_ns + 1,
            ..again
        });
        // A pod span whose parent never arrived, and one directly under the root.
        b.pod_event("t1", "ffffffffffffffff", "web-z", "Pulled");
        let root = b.spans[0].span.clone();
        b.pod_event("t1", &root, "web-y", "Pulled");
        let a = analyse(&b.spans, &[expect("web", 1, 1), expect("web", 2, 1)], None);
        assert_eq!(a.duplicates, 1);
        assert_eq!(a.receipts, a.unique_spans + 1);
        assert_eq!((a.orphans, a.unanchored_pod_spans), (1, 2));
        assert_eq!((a.traced, a.full_structure), (1, 1));
        assert_eq!(a.missing, vec!["Deployment web gen 2".to_string()]);
    }

    #[test]
    fn too_few_pods_or_no_scaling_layer_is_not_full() {
        let mut b = Builder::new();
        b.rollout("t1", "web", 1, &["web-a"]);
        let root = b.span(
            "t2",
            "",
            "Deployment.Update",
            &[
                ("k8s.deployment.name", "api"),
                ("eventspan.root.generation", "1"),
            ],
        );
        let creation = b.span(
            "t2",
            &root,
            "ReplicaSet.SuccessfulCreate",
            &[
                ("k8s.event.reason", "SuccessfulCreate"),
                ("eventspan.child.kind", "Pod"),
                ("eventspan.child.name", "api-a"),
            ],
        );
        for reason in POD_REASONS {
            b.pod_event("t2", &creation, "api-a", reason);
        }
        let a = analyse(&b.spans, &[expect("web", 1, 2), expect("api", 1, 1)], None);
        assert_eq!((a.traced, a.full_structure), (2, 0), "{:?}", a.not_full);
        let mut why = a.not_full.clone();
        why.sort();
        assert_eq!(
            why,
            vec![
                "Deployment api gen 1: 0 of 1 pods have a creation span (no ScalingReplicaSet under the root)",
                "Deployment web gen 1: 1 of 2 pods have a creation span",
            ]
        );
    }

    #[test]
    fn latency_is_receive_minus_end_and_quantiles_use_nearest_rank() {
        let mut b = Builder::new();
        b.rollout("t1", "web", 1, &["web-a"]);
        let a = analyse(&b.spans, &[], None);
        assert_eq!(a.latency_end_ms.first(), Some(&5500.0));
        assert_eq!(a.latency_start_ms.first(), Some(&6000.0));
        assert_eq!(a.other_traces, 1);
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.5), Some(2.0));
        assert_eq!(quantile(&v, 0.99), Some(4.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn expectations_parse_and_bad_lines_name_themselves() {
        let e = Expected::parse_all("# kind name gen pods\nDeployment web 2 4\n\n").unwrap();
        assert_eq!(e, vec![expect("web", 2, 4)]);
        let err = Expected::parse_all("Deployment web two 4").unwrap_err();
        assert!(err.contains("line 1"), "{err}");
    }
}

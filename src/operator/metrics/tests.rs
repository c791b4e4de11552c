//! The exposition: the series served before the client crate, their labels, histograms.

use std::collections::{BTreeMap, BTreeSet};

use super::super::snapshot::{SessionKey, SessionSnapshot};
use super::*;

/// The exposition of `metrics` over a hub that published `snapshot`.
fn scrape(snapshot: HubSnapshot, prepare: impl FnOnce(&Metrics)) -> String {
    let (_publish, snapshots) = watch::channel(Arc::new(snapshot));
    let metrics = Metrics::new(snapshots);
    prepare(&metrics);
    metrics.encode()
}

/// Sample names, each with the label-name lists its samples carry.
type Samples = BTreeMap<String, BTreeSet<Vec<String>>>;

/// The samples, and each family's type.
fn parse(text: &str) -> (Samples, BTreeMap<String, String>) {
    let (mut samples, mut types) = (BTreeMap::<_, BTreeSet<_>>::new(), BTreeMap::new());
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("# TYPE ") {
            let (name, kind) = t.split_once(' ').expect("TYPE name kind");
            types.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let end = line.find([' ', '{']).expect("a value");
        let mut labels = Vec::new();
        if line[end..].starts_with('{') {
            let close = line.find('}').expect("closed labels");
            for pair in line[end + 1..close].split("\",") {
                labels.push(pair.split_once('=').expect("name=value").0.to_string());
            }
        }
        samples
            .entry(line[..end].to_string())
            .or_default()
            .insert(labels);
    }
    (samples, types)
}

fn session(exporter: &str, stats: crate::export::ExporterStats) -> (SessionKey, SessionSnapshot) {
    (
        SessionKey {
            namespace: "shop".into(),
            name: "rollouts".into(),
        },
        SessionSnapshot {
            exporters: vec![(exporter.into(), stats)],
            ..Default::default()
        },
    )
}

fn refusal(resource: &str, ns: &str) -> crate::watch::Refusal {
    crate::watch::Refusal {
        resource: resource.into(),
        scope: crate::watch::Scope::Namespace(ns.into()),
        code: 403,
    }
}

/// Every series the hand-written exposition served (before the client crate), by sample
/// name, family type and label names: dashboards and alerts written against it keep working.
const SERVED: &[(&str, &str, &[&str])] = &[
    ("eventspan_leader", "gauge", &[]),
    ("eventspan_reconcile_total", "counter", &["result"]),
    ("eventspan_checkpoint_loads_total", "counter", &["result"]),
    ("eventspan_checkpoint_writes_total", "counter", &["result"]),
    ("eventspan_checkpoint_bytes", "gauge", &[]),
    ("eventspan_checkpoint_spans", "gauge", &[]),
    ("eventspan_checkpoint_covered_spans", "gauge", &[]),
    ("eventspan_events_received_total", "counter", &[]),
    ("eventspan_events_malformed_total", "counter", &[]),
    ("eventspan_traceparent_invalid_total", "counter", &[]),
    ("eventspan_watches", "gauge", &["resource"]),
    ("eventspan_watch_relists_total", "counter", &["resource"]),
    ("eventspan_watches_refused", "gauge", &["resource", "code"]),
    (
        "eventspan_watch_kinds_rejected_total",
        "counter",
        &["reason"],
    ),
    ("eventspan_watched_namespaces", "gauge", &[]),
    ("eventspan_sessions", "gauge", &[]),
    ("eventspan_engine_bytes", "gauge", &["table"]),
    ("eventspan_input_rejected_total", "counter", &["reason"]),
    ("eventspan_engine_spans_emitted_total", "counter", &[]),
    ("eventspan_engine_duplicates_total", "counter", &[]),
    ("eventspan_engine_held_total", "counter", &[]),
    ("eventspan_engine_held_expired_total", "counter", &[]),
    ("eventspan_engine_dropped_total", "counter", &[]),
    ("eventspan_engine_duplicate_spans_total", "counter", &[]),
    ("eventspan_checkpoint_resumed_spans_total", "counter", &[]),
    ("eventspan_engine_earlier_change_total", "counter", &[]),
    ("eventspan_engine_derived_creations_total", "counter", &[]),
    ("eventspan_engine_derived_scale_ups_total", "counter", &[]),
    ("eventspan_engine_derived_scale_downs_total", "counter", &[]),
    ("eventspan_engine_derived_deletions_total", "counter", &[]),
    ("eventspan_engine_late_creations_total", "counter", &[]),
    (
        "eventspan_engine_rescales_unattributed_total",
        "counter",
        &[],
    ),
    ("eventspan_engine_spans_forced_total", "counter", &[]),
    ("eventspan_engine_objects", "gauge", &[]),
    ("eventspan_engine_open_spans", "gauge", &[]),
    ("eventspan_engine_open_traces", "gauge", &[]),
    ("eventspan_engine_held_events", "gauge", &[]),
    ("eventspan_engine_tracked_events", "gauge", &[]),
    (
        "eventspan_spans_exported_total",
        "counter",
        &["session", "exporter"],
    ),
    (
        "eventspan_spans_dropped_total",
        "counter",
        &["session", "exporter"],
    ),
    (
        "eventspan_spans_rejected_total",
        "counter",
        &["session", "exporter"],
    ),
    (
        "eventspan_export_errors_total",
        "counter",
        &["session", "exporter"],
    ),
    (
        "eventspan_export_refused_total",
        "counter",
        &["session", "exporter"],
    ),
    ("eventspan_export_queue", "gauge", &["session", "exporter"]),
    (
        "eventspan_logs_exported_total",
        "counter",
        &["session", "exporter"],
    ),
    (
        "eventspan_logs_dropped_total",
        "counter",
        &["session", "exporter"],
    ),
    ("eventspan_logs_queue", "gauge", &["session", "exporter"]),
    (
        "eventspan_export_latency_seconds_bucket",
        "histogram",
        &["le", "session", "exporter"],
    ),
    (
        "eventspan_export_latency_seconds_sum",
        "histogram",
        &["session", "exporter"],
    ),
    (
        "eventspan_export_latency_seconds_count",
        "histogram",
        &["session", "exporter"],
    ),
    ("eventspan_session_traces_total", "counter", &["session"]),
];

/// The family a sample belongs to, as OpenMetrics names it in `# TYPE`.
fn family_of(sample: &str, kind: &str) -> String {
    let suffixes: &[&str] = match kind {
        "counter" => &["_total"],
        "histogram" => &["_bucket", "_sum", "_count"],
        _ => &[],
    };
    suffixes
        .iter()
        .find_map(|s| sample.strip_suffix(s))
        .unwrap_or(sample)
        .to_string()
}

#[test]
fn every_series_served_before_is_served_with_its_names_and_labels() {
    let snapshot = HubSnapshot {
        sessions: [session("jaeger", Default::default())].into(),
        watches_refused: vec![refusal("services", "shop")],
        kinds_rejected: vec![("invalid_name", 3)],
        ..Default::default()
    };
    let text = scrape(snapshot, |_| {});
    let (samples, types) = parse(&text);
    for (name, kind, labels) in SERVED {
        let labels: Vec<String> = labels.iter().map(ToString::to_string).collect();
        assert!(
            samples.get(*name).is_some_and(|l| l.contains(&labels)),
            "{name}{labels:?} missing from:\n{text}"
        );
        let family = family_of(name, kind);
        assert_eq!(
            types.get(&family).map(String::as_str),
            Some(*kind),
            "{family}"
        );
    }
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[test]
fn renders_families_and_escapes_labels() {
    let snapshot = HubSnapshot {
        sessions: [session("a\"b\\c", Default::default())].into(),
        event_watches: 2,
        event_relists: 3,
        watches_refused: vec![
            refusal("services", "shop"),
            refusal("services", "payments"),
            refusal("horizontalpodautoscalers.autoscaling", "shop"),
        ],
        kinds_rejected: vec![("invalid_name", 3), ("namespace_budget", 9936)],
        engine: crate::engine::EngineStats {
            rejected: [1, 0, 7, 0, 0, 0],
            ..Default::default()
        },
        ..Default::default()
    };
    let text = scrape(snapshot, |m| {
        m.set_leader(true);
        m.reconciled(None);
        m.reconciled(Some(ErrorKind::Api));
    });
    for line in [
        "# TYPE eventspan_watch_relists counter\n",
        "eventspan_watch_relists_total{resource=\"events\"} 3\n",
        "eventspan_watch_relists_total{resource=\"metadata\"} 0\n",
        "# TYPE eventspan_watches_refused gauge\n",
        "eventspan_watches_refused{resource=\"services\",code=\"403\"} 2\n",
        "eventspan_watches_refused{resource=\"horizontalpodautoscalers.autoscaling\",code=\"403\"} 1\n",
        "# TYPE eventspan_watch_kinds_rejected counter\n",
        "eventspan_watch_kinds_rejected_total{reason=\"invalid_name\"} 3\n",
        "eventspan_watch_kinds_rejected_total{reason=\"namespace_budget\"} 9936\n",
        "# TYPE eventspan_input_rejected counter\n",
        "eventspan_input_rejected_total{reason=\"cross_namespace_event\"} 1\n",
        "eventspan_input_rejected_total{reason=\"self_reference\"} 7\n",
        "eventspan_input_rejected_total{reason=\"uid_collision\"} 0\n",
        "# TYPE eventspan_watches gauge\n",
        "eventspan_watches{resource=\"events\"} 2\n",
        "eventspan_reconcile_total{result=\"ok\"} 1\n",
        "eventspan_reconcile_total{result=\"kube_error\"} 1\n",
        "eventspan_reconcile_total{result=\"finalizer_error\"} 0\n",
        "eventspan_reconcile_total{result=\"conflict\"} 0\n",
        "eventspan_reconcile_total{result=\"hub_stopped\"} 0\n",
        "eventspan_leader 1\n",
        "eventspan_spans_exported_total{session=\"shop/rollouts\",exporter=\"a\\\"b\\\\c\"} 0\n",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
}

#[test]
fn export_latency_is_a_histogram() {
    let mut latency = crate::export::Histogram::default();
    for ms in [100, 100, 1050] {
        latency.observe(Duration::from_millis(ms));
    }
    let stats = crate::export::ExporterStats {
        latency,
        logs_exported: 41,
        logs_dropped: 2,
        logs_queued: 5,
        refused: 3,
        ..Default::default()
    };
    let snapshot = HubSnapshot {
        sessions: [session("jaeger", stats)].into(),
        ..Default::default()
    };
    let text = scrape(snapshot, |_| {});
    let labels = "session=\"shop/rollouts\",exporter=\"jaeger\"";
    assert!(text.contains("# TYPE eventspan_export_latency_seconds histogram\n"));
    for line in [
        format!("eventspan_export_latency_seconds_bucket{{le=\"0.05\",{labels}}} 0\n"),
        format!("eventspan_export_latency_seconds_bucket{{le=\"0.1\",{labels}}} 2\n"),
        format!("eventspan_export_latency_seconds_bucket{{le=\"1.0\",{labels}}} 2\n"),
        format!("eventspan_export_latency_seconds_bucket{{le=\"2.5\",{labels}}} 3\n"),
        format!("eventspan_export_latency_seconds_bucket{{le=\"+Inf\",{labels}}} 3\n"),
        format!("eventspan_export_latency_seconds_sum{{{labels}}} 1.25\n"),
        format!("eventspan_export_latency_seconds_count{{{labels}}} 3\n"),
        format!("eventspan_logs_exported_total{{{labels}}} 41\n"),
        format!("eventspan_logs_dropped_total{{{labels}}} 2\n"),
        format!("eventspan_logs_queue{{{labels}}} 5\n"),
        format!("eventspan_export_refused_total{{{labels}}} 3\n"),
        "# TYPE eventspan_traceparent_invalid counter\n".to_string(),
    ] {
        assert!(text.contains(&line), "{line} missing from:\n{text}");
    }
}

#[test]
fn checkpoint_sizes_sum_the_windows_last_written() {
    let checkpoint = crate::engine::Checkpoint::default();
    let text = scrape(HubSnapshot::default(), |m| {
        let five = Duration::from_secs(5);
        m.checkpoint_written(CheckpointWrite::Ok, five, &[0; 10], &checkpoint);
        m.checkpoint_written(CheckpointWrite::Ok, five, &[0; 7], &checkpoint);
        m.checkpoint_written(
            CheckpointWrite::Ok,
            Duration::from_secs(10),
            &[0; 4],
            &checkpoint,
        );
        m.checkpoint_written(CheckpointWrite::Error, five, &[], &checkpoint);
    });
    for line in [
        "eventspan_checkpoint_bytes 11\n",
        "eventspan_checkpoint_writes_total{result=\"ok\"} 3\n",
        "eventspan_checkpoint_writes_total{result=\"error\"} 1\n",
        "eventspan_checkpoint_writes_total{result=\"conflict\"} 0\n",
        "eventspan_leader 0\n",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
}

#[test]
fn event_to_export_is_a_histogram_per_exporter() {
    let mut event_to_export = crate::export::Histogram::default();
    for ms in [800, 6_000, 6_500, 45_000] {
        event_to_export.observe(Duration::from_millis(ms));
    }
    let stats = crate::export::ExporterStats {
        event_to_export,
        ..Default::default()
    };
    let snapshot = HubSnapshot {
        sessions: [session("jaeger", stats)].into(),
        ..Default::default()
    };
    let text = scrape(snapshot, |_| {});
    let labels = "session=\"shop/rollouts\",exporter=\"jaeger\"";
    assert!(text.contains("# TYPE eventspan_event_to_export_seconds histogram\n"));
    for line in [
        format!("eventspan_event_to_export_seconds_bucket{{le=\"0.5\",{labels}}} 0\n"),
        format!("eventspan_event_to_export_seconds_bucket{{le=\"1.0\",{labels}}} 1\n"),
        format!("eventspan_event_to_export_seconds_bucket{{le=\"5.0\",{labels}}} 1\n"),
        format!("eventspan_event_to_export_seconds_bucket{{le=\"7.5\",{labels}}} 3\n"),
        format!("eventspan_event_to_export_seconds_bucket{{le=\"30.0\",{labels}}} 3\n"),
        format!("eventspan_event_to_export_seconds_bucket{{le=\"60.0\",{labels}}} 4\n"),
        format!("eventspan_event_to_export_seconds_bucket{{le=\"+Inf\",{labels}}} 4\n"),
        format!("eventspan_event_to_export_seconds_sum{{{labels}}} 58.3\n"),
        format!("eventspan_event_to_export_seconds_count{{{labels}}} 4\n"),
    ] {
        assert!(text.contains(&line), "{line} missing from:\n{text}");
    }
}

/// A rollout of two pods, each Ready after its image pull (`rollout-durations.tree`): the root
/// took 3.25 s, the pods 2.61 s and 3.009 s.
fn rollout_spans() -> Vec<crate::engine::model::FinishedSpan> {
    crate::replay::replay(
        include_str!("../../../tests/scenarios/rollout-durations.jsonl"),
        Default::default(),
    )
    .spans
}

/// When the hub observed the spans: an exemplar is dated by it.
const OBSERVED_AT: i64 = 1_795_000_000;

/// The exposition after `spans` were routed to a session exporting them under their own IDs.
fn scrape_spans(spans: &[crate::engine::model::FinishedSpan]) -> String {
    scrape_spans_by_namespace(spans, false)
}

/// As [`scrape_spans`], for a session that asks (`by_namespace`) for the namespace label or not.
fn scrape_spans_by_namespace(
    spans: &[crate::engine::model::FinishedSpan],
    by_namespace: bool,
) -> String {
    scrape(HubSnapshot::default(), |m| {
        let histograms = m.spans();
        for span in spans {
            histograms.finished(
                span,
                span.trace_id,
                crate::engine::time::Timestamp::from_unix_secs(OBSERVED_AT),
                by_namespace,
            );
        }
    })
}

/// The line of `sample` whose labels start with `labels`, without its value.
fn sample_line<'t>(text: &'t str, sample: &str, labels: &str) -> &'t str {
    let prefix = format!("{sample}{{{labels}");
    text.lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in:\n{text}"))
}

#[test]
fn a_finished_rollout_is_observed_with_its_trace_id_as_exemplar() {
    let text = scrape_spans(&rollout_spans());
    let trace = "d2fab1818b621ee1d21102d20b6ac4ec";
    let at = format!("{OBSERVED_AT}.0");
    assert!(text.contains("# TYPE eventspan_rollout_duration_seconds histogram\n"));
    assert!(text.contains(
        "# HELP eventspan_rollout_duration_seconds Seconds from a change of a root object to its outcome (its root span), by root kind and outcome.\n"
    ));
    assert!(
        !text.contains("..\n"),
        "a HELP ends in two periods:\n{text}"
    );
    let rollout = "eventspan_rollout_duration_seconds_bucket";
    let labels = "kind=\"Deployment\",outcome=\"done\"}";
    assert_eq!(
        sample_line(&text, rollout, "le=\"2.5\","),
        format!("{rollout}{{le=\"2.5\",{labels} 0")
    );
    assert_eq!(
        sample_line(&text, rollout, "le=\"5.0\","),
        format!("{rollout}{{le=\"5.0\",{labels} 1 # {{trace_id=\"{trace}\"}} 3.25 {at}")
    );
    assert!(text.contains(&format!(
        "eventspan_rollout_duration_seconds_count{{{labels} 1\n"
    )));
    assert!(text.contains(&format!(
        "eventspan_rollout_duration_seconds_sum{{{labels} 3.25\n"
    )));

    let ready = "eventspan_pod_ready_seconds_bucket";
    assert_eq!(
        sample_line(&text, ready, "le=\"2.5\","),
        format!("{ready}{{le=\"2.5\",kind=\"Deployment\"}} 0")
    );
    // Both pods in one bucket: its exemplar is the one observed last.
    assert_eq!(
        sample_line(&text, ready, "le=\"5.0\","),
        format!(
            "{ready}{{le=\"5.0\",kind=\"Deployment\"}} 2 # {{trace_id=\"{trace}\"}} 3.009 {at}"
        )
    );
    assert!(text.contains("eventspan_pod_ready_seconds_sum{kind=\"Deployment\"} 5.619\n"));
}

#[test]
fn each_pod_phase_is_observed_by_phase_and_whose_time_it_was() {
    let text = scrape_spans(&rollout_spans());
    let trace = "d2fab1818b621ee1d21102d20b6ac4ec";
    let phase = "eventspan_pod_phase_seconds_bucket";
    for (phase_labels, le, count, exemplar) in [
        ("phase=\"schedule\",kind=\"infra\"", "0.1", 2, Some("0.0")),
        ("phase=\"pull\",kind=\"infra\"", "1.0", 0, None),
        ("phase=\"pull\",kind=\"infra\"", "2.5", 2, Some("1.219")),
        ("phase=\"start\",kind=\"infra\"", "0.25", 2, Some("0.191")),
        ("phase=\"ready\",kind=\"workload\"", "1.0", 1, Some("0.997")),
        ("phase=\"ready\",kind=\"workload\"", "2.5", 2, Some("1.39")),
    ] {
        let line = sample_line(&text, phase, &format!("le=\"{le}\",{phase_labels}}}"));
        let expected = format!("{phase}{{le=\"{le}\",{phase_labels}}} {count}");
        match exemplar {
            None => assert_eq!(line, expected),
            Some(value) => assert_eq!(
                line,
                format!("{expected} # {{trace_id=\"{trace}\"}} {value} {OBSERVED_AT}.0")
            ),
        }
    }
    // The totals are attributes too, but no phases.
    assert!(!text.contains("phase=\"infra\""), "{text}");
    assert!(!text.contains("phase=\"workload\""), "{text}");
}

#[test]
fn a_session_that_asks_for_it_gets_the_namespace_label_and_only_it() {
    let spans = rollout_spans();
    let namespace = spans[0].root.namespace.to_string();
    assert!(!namespace.is_empty());
    let labeled = scrape_spans_by_namespace(&spans, true);
    for sample in [
        "eventspan_rollout_duration_seconds_count{kind=\"Deployment\",outcome=\"done\",",
        "eventspan_pod_ready_seconds_count{kind=\"Deployment\",",
        "eventspan_pod_phase_seconds_count{phase=\"pull\",kind=\"infra\",",
    ] {
        let line = format!("{sample}namespace=\"{namespace}\"}}");
        assert!(labeled.contains(&line), "{line} missing from:\n{labeled}");
    }
    let unlabeled = scrape_spans_by_namespace(&spans, false);
    assert!(!unlabeled.contains("namespace="), "{unlabeled}");
    assert!(unlabeled.contains("eventspan_pod_ready_seconds_count{kind=\"Deployment\"} 2\n"));
}

/// The Karpenter recording: its NodeClaim came up 1.288 s after the pod's nomination.
#[test]
fn a_nodeclaim_coming_up_is_observed_as_node_provisioning_with_the_pods_trace() {
    let spans = crate::replay::replay(
        include_str!("../../../tests/scenarios/recorded/karpenter.jsonl"),
        Default::default(),
    )
    .spans;
    let initialized = spans
        .iter()
        .find(|s| s.attribute("eventspan.node.provisioning.ms").is_some())
        .expect("the recording's NodeClaim came up");
    let trace = initialized.trace_id.to_string();
    let text = scrape_spans(&spans);
    assert!(text.contains("# TYPE eventspan_node_provisioning_seconds histogram\n"));
    let bucket = "eventspan_node_provisioning_seconds_bucket";
    assert_eq!(
        sample_line(&text, bucket, "le=\"1.0\","),
        format!("{bucket}{{le=\"1.0\",kind=\"NodeClaim\"}} 0")
    );
    assert_eq!(
        sample_line(&text, bucket, "le=\"2.5\","),
        format!(
            "{bucket}{{le=\"2.5\",kind=\"NodeClaim\"}} 1 # {{trace_id=\"{trace}\"}} 1.288 {OBSERVED_AT}.0"
        )
    );
    assert!(text.contains("eventspan_node_provisioning_seconds_count{kind=\"NodeClaim\"} 1\n"));
}

#[test]
fn spans_sent_before_their_end_was_known_measure_nothing() {
    let spans: Vec<_> = rollout_spans()
        .into_iter()
        .map(|mut s| {
            s.incomplete = true;
            s
        })
        .collect();
    let text = scrape_spans(&spans);
    for sample in [
        "eventspan_rollout_duration_seconds_count",
        "eventspan_pod_ready_seconds_count",
        "eventspan_pod_phase_seconds_count",
    ] {
        assert!(!text.contains(sample), "{sample} in:\n{text}");
    }
}

/// Every PromQL query of a Grafana dashboard: panel targets' `expr`, template variables'
/// `query` (a string, or an object with one); a data source variable's `query` is a plugin
/// type, not PromQL.
fn dashboard_queries(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(fields) if fields.get("type") == Some(&"datasource".into()) => {}
        serde_json::Value::Object(fields) => {
            for (key, v) in fields {
                match (key.as_str(), v) {
                    ("expr" | "query", serde_json::Value::String(q)) => out.push(q.clone()),
                    _ => dashboard_queries(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| dashboard_queries(v, out)),
        _ => {}
    }
}

/// The metric names a query uses: every identifier starting `eventspan_` (label values are
/// quoted, and no label of ours starts so).
fn metric_names(query: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = query;
    while let Some(at) = rest.find("eventspan_") {
        let before = rest[..at].chars().next_back();
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            names.push(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}

#[test]
fn every_metric_the_dashboard_queries_is_one_metrics_serves() {
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../../deploy/grafana/eventspan.json"))
            .expect("the dashboard is JSON");
    let mut queries = Vec::new();
    dashboard_queries(&dashboard, &mut queries);
    assert!(queries.len() >= 8, "{queries:?}");
    // A scrape with a session, an exporter and a finished rollout: every family has samples.
    let snapshot = HubSnapshot {
        sessions: [session("jaeger", Default::default())].into(),
        ..Default::default()
    };
    // The Karpenter recording's NodeClaim fills the node-provisioning family.
    let karpenter = crate::replay::replay(
        include_str!("../../../tests/scenarios/recorded/karpenter.jsonl"),
        Default::default(),
    )
    .spans;
    let text = scrape(snapshot, |m| {
        for span in rollout_spans().iter().chain(&karpenter) {
            m.spans().finished(
                span,
                span.trace_id,
                crate::engine::time::Timestamp::MIN,
                true,
            );
        }
    });
    let (served, _) = parse(&text);
    let mut used = BTreeSet::new();
    for query in &queries {
        let names = metric_names(query);
        assert!(!names.is_empty(), "no eventspan metric in {query}");
        used.extend(names);
    }
    for name in &used {
        assert!(
            served.contains_key(name),
            "the dashboard queries {name}, which /metrics does not serve:\n{text}"
        );
    }
    for family in [
        "eventspan_rollout_duration_seconds_bucket",
        "eventspan_pod_ready_seconds_bucket",
        "eventspan_pod_phase_seconds_bucket",
        "eventspan_node_provisioning_seconds_bucket",
        "eventspan_event_to_export_seconds_bucket",
    ] {
        assert!(
            used.contains(family),
            "the dashboard does not chart {family}"
        );
    }
}

#[test]
fn metric_names_are_read_from_promql() {
    assert_eq!(
        metric_names(
            "sum by (le) (rate(eventspan_a_bucket{kind=~\"$kind\"}[5m])) / scalar(eventspan_b:c) + not_eventspan_x"
        ),
        ["eventspan_a_bucket", "eventspan_b:c"]
    );
}

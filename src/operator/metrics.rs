//! `/metrics` in the Prometheus text format, rendered from the hub's snapshot at scrape time, and
//! the reconciler's own counters.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::hub::HubSnapshot;
use crate::export::LATENCY_BUCKETS;

/// Reads one figure from an exporter's stats.
type ExporterValue = fn(&crate::export::ExporterStats) -> u64;

#[derive(Default)]
pub struct Metrics {
    reconcile_ok: AtomicU64,
    reconcile_kube_error: AtomicU64,
    reconcile_finalizer_error: AtomicU64,
    checkpoint_loads: [AtomicU64; CheckpointLoad::ALL.len()],
    checkpoint_writes: [AtomicU64; CheckpointWrite::ALL.len()],
    /// Bytes and spans of the checkpoint last written, per engine window.
    checkpoint_sizes: Mutex<BTreeMap<Duration, (u64, u64)>>,
}

/// What loading one checkpoint ConfigMap came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointLoad {
    Resumed,
    Missing,
    Corrupt,
    Foreign,
    Error,
}

impl CheckpointLoad {
    pub const ALL: [CheckpointLoad; 5] = [
        CheckpointLoad::Resumed,
        CheckpointLoad::Missing,
        CheckpointLoad::Corrupt,
        CheckpointLoad::Foreign,
        CheckpointLoad::Error,
    ];

    fn as_str(self) -> &'static str {
        match self {
            CheckpointLoad::Resumed => "resumed",
            CheckpointLoad::Missing => "missing",
            CheckpointLoad::Corrupt => "corrupt",
            CheckpointLoad::Foreign => "foreign",
            CheckpointLoad::Error => "error",
        }
    }
}

/// What one checkpoint write came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointWrite {
    Ok,
    Conflict,
    Error,
}

impl CheckpointWrite {
    pub const ALL: [CheckpointWrite; 3] = [
        CheckpointWrite::Ok,
        CheckpointWrite::Conflict,
        CheckpointWrite::Error,
    ];

    fn as_str(self) -> &'static str {
        match self {
            CheckpointWrite::Ok => "ok",
            CheckpointWrite::Conflict => "conflict",
            CheckpointWrite::Error => "error",
        }
    }
}

impl Metrics {
    pub fn reconciled(&self, error: Option<&str>) {
        let counter = match error {
            None => &self.reconcile_ok,
            Some("kube") => &self.reconcile_kube_error,
            Some(_) => &self.reconcile_finalizer_error,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn checkpoint_loaded(&self, result: CheckpointLoad) {
        let i = CheckpointLoad::ALL.iter().position(|r| *r == result);
        self.checkpoint_loads[i.expect("listed")].fetch_add(1, Ordering::Relaxed);
    }

    /// A write of the checkpoint of `window`; on success, `bytes` and `checkpoint` are what
    /// the ConfigMap now holds.
    pub fn checkpoint_written(
        &self,
        result: CheckpointWrite,
        window: Duration,
        bytes: &[u8],
        checkpoint: &crate::engine::Checkpoint,
    ) {
        let i = CheckpointWrite::ALL.iter().position(|r| *r == result);
        self.checkpoint_writes[i.expect("listed")].fetch_add(1, Ordering::Relaxed);
        if result == CheckpointWrite::Ok {
            self.checkpoint_sizes
                .lock()
                .expect("metrics lock")
                .insert(window, (bytes.len() as u64, checkpoint.len() as u64));
        }
    }

    pub fn render(&self, hub: &HubSnapshot, leader: bool) -> String {
        let mut out = Exposition::default();
        out.family(
            "eventspan_leader",
            "gauge",
            "1 while this replica holds the lease and runs the sessions",
        );
        out.sample("eventspan_leader", &[], u64::from(leader));
        out.family(
            "eventspan_reconcile_total",
            "counter",
            "TraceSession reconciles by result",
        );
        for (result, counter) in [
            ("ok", &self.reconcile_ok),
            ("kube_error", &self.reconcile_kube_error),
            ("finalizer_error", &self.reconcile_finalizer_error),
        ] {
            out.sample(
                "eventspan_reconcile_total",
                &[("result", result)],
                counter.load(Ordering::Relaxed),
            );
        }
        out.family(
            "eventspan_checkpoint_loads_total",
            "counter",
            "Checkpoint ConfigMaps read on taking the lead, by result (all but resumed start fresh)",
        );
        for (result, counter) in CheckpointLoad::ALL.iter().zip(&self.checkpoint_loads) {
            out.sample(
                "eventspan_checkpoint_loads_total",
                &[("result", result.as_str())],
                counter.load(Ordering::Relaxed),
            );
        }
        out.family(
            "eventspan_checkpoint_writes_total",
            "counter",
            "Checkpoint ConfigMap writes, by result (a conflict stops writes for the term)",
        );
        for (result, counter) in CheckpointWrite::ALL.iter().zip(&self.checkpoint_writes) {
            out.sample(
                "eventspan_checkpoint_writes_total",
                &[("result", result.as_str())],
                counter.load(Ordering::Relaxed),
            );
        }
        let (bytes, spans) = self
            .checkpoint_sizes
            .lock()
            .expect("metrics lock")
            .values()
            .fold((0, 0), |(b, s), (nb, ns)| (b + nb, s + ns));
        out.family(
            "eventspan_checkpoint_bytes",
            "gauge",
            "Bytes of the checkpoints last written, all engines",
        );
        out.sample("eventspan_checkpoint_bytes", &[], bytes);
        out.family(
            "eventspan_checkpoint_spans",
            "gauge",
            "Spans named by the checkpoints last written, all engines",
        );
        out.sample("eventspan_checkpoint_spans", &[], spans);
        out.family(
            "eventspan_events_received_total",
            "counter",
            "Events delivered by the watches",
        );
        out.sample("eventspan_events_received_total", &[], hub.events_received);
        out.family(
            "eventspan_events_malformed_total",
            "counter",
            "Watched values that could not be decoded",
        );
        out.sample("eventspan_events_malformed_total", &[], hub.malformed);
        out.family(
            "eventspan_traceparent_invalid_total",
            "counter",
            "eventspan.dev/traceparent annotations ignored as invalid",
        );
        out.sample(
            "eventspan_traceparent_invalid_total",
            &[],
            crate::wire::invalid_traceparents(),
        );
        out.family(
            "eventspan_watches",
            "gauge",
            "Running watches, shared by all sessions",
        );
        out.sample(
            "eventspan_watches",
            &[("resource", "events")],
            hub.event_watches,
        );
        out.sample(
            "eventspan_watches",
            &[("resource", "metadata")],
            hub.metadata_watches,
        );
        out.family(
            "eventspan_watch_relists_total",
            "counter",
            "Lists running watches started again because their resourceVersion expired (410 Gone)",
        );
        out.sample(
            "eventspan_watch_relists_total",
            &[("resource", "events")],
            hub.event_relists,
        );
        out.sample(
            "eventspan_watch_relists_total",
            &[("resource", "metadata")],
            hub.metadata_relists,
        );
        out.family(
            "eventspan_watches_refused",
            "gauge",
            "Watches given up after the API server refused them for 5 minutes",
        );
        let mut refused: std::collections::BTreeMap<(&str, String), u64> = Default::default();
        for r in &hub.watches_refused {
            *refused
                .entry((r.resource.as_str(), r.code.to_string()))
                .or_default() += 1;
        }
        for ((resource, code), n) in &refused {
            out.sample(
                "eventspan_watches_refused",
                &[("resource", resource), ("code", code)],
                n,
            );
        }
        out.family(
            "eventspan_watch_kinds_rejected_total",
            "counter",
            "Kinds named by events or owner references but not watched, by reason",
        );
        for (reason, n) in &hub.kinds_rejected {
            out.sample(
                "eventspan_watch_kinds_rejected_total",
                &[("reason", reason)],
                n,
            );
        }
        out.family(
            "eventspan_watched_namespaces",
            "gauge",
            "Namespaces some session covers",
        );
        out.sample("eventspan_watched_namespaces", &[], hub.watched_namespaces);
        out.family("eventspan_sessions", "gauge", "Running sessions");
        out.sample("eventspan_sessions", &[], hub.sessions.len());

        let e = &hub.engine;
        out.family(
            "eventspan_engine_bytes",
            "gauge",
            "Bytes the engine's capped tables hold, as their byte caps count them",
        );
        for (table, n) in [
            ("objects", e.object_bytes),
            ("open_spans", e.open_span_bytes),
            ("held_events", e.held_bytes),
        ] {
            out.sample("eventspan_engine_bytes", &[("table", table)], n);
        }
        out.family(
            "eventspan_input_rejected_total",
            "counter",
            "Events, or parts of them, the engine refused as breaking an invariant, by reason",
        );
        for reason in crate::engine::Rejection::ALL {
            out.sample(
                "eventspan_input_rejected_total",
                &[("reason", reason.as_str())],
                e.rejected(reason),
            );
        }
        for (name, help, value) in [
            (
                "eventspan_engine_spans_emitted_total",
                "Spans the engine finished",
                e.spans_emitted,
            ),
            (
                "eventspan_engine_duplicates_total",
                "Re-delivered events ignored",
                e.duplicates,
            ),
            (
                "eventspan_engine_held_total",
                "Events held for a parent",
                e.held,
            ),
            (
                "eventspan_engine_held_expired_total",
                "Held events placed by the owner chain after the window",
                e.held_expired,
            ),
            (
                "eventspan_engine_dropped_total",
                "Objects and tracked events evicted by the caps, and held events placed early",
                e.objects_evicted + e.tracked_events_evicted + e.held_overflow,
            ),
            (
                "eventspan_engine_duplicate_spans_total",
                "Spans not exported because the same span was exported recently",
                e.duplicate_spans,
            ),
            (
                "eventspan_checkpoint_resumed_spans_total",
                "Spans a predecessor exported, placed again from its checkpoint and not exported",
                e.resumed_spans,
            ),
            (
                "eventspan_engine_earlier_change_total",
                "Events from before their root's first change the engine knows, in no trace",
                e.earlier_change,
            ),
            (
                "eventspan_engine_derived_creations_total",
                "Pod creation spans derived from the pod because its controller's event had not come",
                e.derived_creations,
            ),
            (
                "eventspan_engine_late_creations_total",
                "Controllers' pod creation events that came after a creation span was derived for the pod (no second span)",
                e.late_creations,
            ),
            (
                "eventspan_engine_spans_forced_total",
                "Spans emitted early because the open-span table was full",
                e.spans_forced,
            ),
        ] {
            out.family(name, "counter", help);
            out.sample(name, &[], value);
        }
        for (name, help, value) in [
            (
                "eventspan_engine_objects",
                "Objects in the engine's table",
                e.objects,
            ),
            (
                "eventspan_engine_open_spans",
                "Spans not emitted yet",
                e.open_spans,
            ),
            (
                "eventspan_engine_open_traces",
                "Traces the engine holds",
                e.open_traces,
            ),
            (
                "eventspan_engine_held_events",
                "Events waiting for their parent",
                e.held_now,
            ),
            (
                "eventspan_engine_tracked_events",
                "Recent event uids remembered",
                e.tracked_events,
            ),
        ] {
            out.family(name, "gauge", help);
            out.sample(name, &[], value);
        }

        let per_exporter: [(&str, &str, &str, ExporterValue); 9] = [
            (
                "eventspan_spans_exported_total",
                "counter",
                "Spans delivered",
                |s| s.exported,
            ),
            (
                "eventspan_spans_dropped_total",
                "counter",
                "Spans dropped: full queue, retries exhausted, refused",
                |s| s.dropped,
            ),
            (
                "eventspan_spans_rejected_total",
                "counter",
                "Spans the receiver rejected (partial success)",
                |s| s.rejected,
            ),
            (
                "eventspan_export_errors_total",
                "counter",
                "Failed export attempts",
                |s| s.errors,
            ),
            (
                "eventspan_export_refused_total",
                "counter",
                "Export attempts refused by the destination policy (--exporter-allow, --exporter-deny)",
                |s| s.refused,
            ),
            (
                "eventspan_export_queue",
                "gauge",
                "Spans waiting to be sent",
                |s| s.queued,
            ),
            (
                "eventspan_logs_exported_total",
                "counter",
                "Log records delivered (exporters with logs)",
                |s| s.logs_exported,
            ),
            (
                "eventspan_logs_dropped_total",
                "counter",
                "Log records dropped: full queue, retries exhausted, refused, rejected",
                |s| s.logs_dropped,
            ),
            (
                "eventspan_logs_queue",
                "gauge",
                "Log records waiting to be sent",
                |s| s.logs_queued,
            ),
        ];
        for (name, kind, help, value) in per_exporter {
            out.family(name, kind, help);
            for (key, session) in &hub.sessions {
                let session_name = key.to_string();
                for (exporter, stats) in &session.exporters {
                    out.sample(
                        name,
                        &[("session", &session_name), ("exporter", exporter)],
                        value(stats),
                    );
                }
            }
        }
        out.family(
            "eventspan_export_latency_seconds",
            "histogram",
            "Duration of successful exports",
        );
        for (key, session) in &hub.sessions {
            let session_name = key.to_string();
            for (exporter, stats) in &session.exporters {
                let labels = [("session", session_name.as_str()), ("exporter", exporter)];
                let h = &stats.latency;
                for (bound, n) in LATENCY_BUCKETS.iter().zip(h.cumulative) {
                    let le = bound.to_string();
                    out.sample(
                        "eventspan_export_latency_seconds_bucket",
                        &[labels[0], labels[1], ("le", &le)],
                        n,
                    );
                }
                out.sample(
                    "eventspan_export_latency_seconds_bucket",
                    &[labels[0], labels[1], ("le", "+Inf")],
                    h.count,
                );
                out.sample(
                    "eventspan_export_latency_seconds_sum",
                    &labels,
                    h.sum_micros as f64 / 1e6,
                );
                out.sample("eventspan_export_latency_seconds_count", &labels, h.count);
            }
        }
        out.family(
            "eventspan_session_traces_total",
            "counter",
            "Traces a session has seen",
        );
        for (key, session) in &hub.sessions {
            out.sample(
                "eventspan_session_traces_total",
                &[("session", &key.to_string())],
                session.log.traces,
            );
        }
        out.0
    }
}

#[derive(Default)]
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let escaped = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.0, "{k}=\"{escaped}\"");
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_families_and_escapes_labels() {
        let metrics = Metrics::default();
        metrics.reconciled(None);
        metrics.reconciled(Some("kube"));
        let refusal = |resource: &str, ns: &str| crate::watch::Refusal {
            resource: resource.into(),
            scope: crate::watch::Scope::Namespace(ns.into()),
            code: 403,
        };
        let text = metrics.render(
            &HubSnapshot {
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
            },
            true,
        );
        for line in [
            "# TYPE eventspan_watch_relists_total counter\n",
            "eventspan_watch_relists_total{resource=\"events\"} 3\n",
            "eventspan_watch_relists_total{resource=\"metadata\"} 0\n",
            "# TYPE eventspan_watches_refused gauge\n",
            "eventspan_watches_refused{resource=\"services\",code=\"403\"} 2\n",
            "eventspan_watches_refused{resource=\"horizontalpodautoscalers.autoscaling\",code=\"403\"} 1\n",
            "# TYPE eventspan_watch_kinds_rejected_total counter\n",
            "eventspan_watch_kinds_rejected_total{reason=\"invalid_name\"} 3\n",
            "eventspan_watch_kinds_rejected_total{reason=\"namespace_budget\"} 9936\n",
            "# TYPE eventspan_input_rejected_total counter\n",
            "eventspan_input_rejected_total{reason=\"cross_namespace_event\"} 1\n",
            "eventspan_input_rejected_total{reason=\"self_reference\"} 7\n",
            "eventspan_input_rejected_total{reason=\"uid_collision\"} 0\n",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert!(text.contains("# TYPE eventspan_watches gauge\n"));
        assert!(text.contains("eventspan_watches{resource=\"events\"} 2\n"));
        assert!(text.contains("eventspan_reconcile_total{result=\"ok\"} 1\n"));
        assert!(text.contains("eventspan_reconcile_total{result=\"kube_error\"} 1\n"));
        assert!(text.contains("eventspan_leader 1\n"));
        let mut e = Exposition::default();
        e.sample("m", &[("l", "a\"b\\c")], 1);
        assert_eq!(e.0, "m{l=\"a\\\"b\\\\c\"} 1\n");
    }

    #[test]
    fn export_latency_is_a_histogram() {
        let mut latency = crate::export::LatencyHistogram {
            count: 3,
            sum_micros: 1_250_000,
            ..Default::default()
        };
        // Two exports of 0.1 s and one of 1.05 s.
        for (bound, n) in LATENCY_BUCKETS.iter().zip(latency.cumulative.iter_mut()) {
            *n = if *bound >= 2.5 {
                3
            } else if *bound >= 0.1 {
                2
            } else {
                0
            };
        }
        let mut snapshot = HubSnapshot::default();
        snapshot.sessions.insert(
            super::super::hub::SessionKey {
                namespace: "shop".into(),
                name: "rollouts".into(),
            },
            super::super::hub::SessionSnapshot {
                exporters: vec![(
                    "jaeger".into(),
                    crate::export::ExporterStats {
                        latency,
                        logs_exported: 41,
                        logs_dropped: 2,
                        logs_queued: 5,
                        refused: 3,
                        ..Default::default()
                    },
                )],
                ..Default::default()
            },
        );
        let text = Metrics::default().render(&snapshot, true);
        let labels = "session=\"shop/rollouts\",exporter=\"jaeger\"";
        assert!(text.contains("# TYPE eventspan_export_latency_seconds histogram\n"));
        for line in [
            format!("eventspan_export_latency_seconds_bucket{{{labels},le=\"0.05\"}} 0\n"),
            format!("eventspan_export_latency_seconds_bucket{{{labels},le=\"0.1\"}} 2\n"),
            format!("eventspan_export_latency_seconds_bucket{{{labels},le=\"2.5\"}} 3\n"),
            format!("eventspan_export_latency_seconds_bucket{{{labels},le=\"+Inf\"}} 3\n"),
            format!("eventspan_export_latency_seconds_sum{{{labels}}} 1.25\n"),
            format!("eventspan_export_latency_seconds_count{{{labels}}} 3\n"),
            format!("eventspan_logs_exported_total{{{labels}}} 41\n"),
            format!("eventspan_logs_dropped_total{{{labels}}} 2\n"),
            format!("eventspan_logs_queue{{{labels}}} 5\n"),
            format!("eventspan_export_refused_total{{{labels}}} 3\n"),
            "# TYPE eventspan_traceparent_invalid_total counter\n".to_string(),
        ] {
            assert!(text.contains(&line), "{line} missing from:\n{text}");
        }
    }
}

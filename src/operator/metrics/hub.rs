//! The families read from the hub's snapshot at scrape time: watches, engine, sessions and their
//! exporters. The hub owns these counts; this only encodes the snapshot it last published.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use tokio::sync::watch;

use super::super::snapshot::HubSnapshot;
use super::families::{Families, Labels};
use crate::export::ExporterStats;

/// Reads one figure from an exporter's stats.
type ExporterValue = fn(&ExporterStats) -> u64;

#[derive(Debug)]
pub(super) struct HubCollector {
    pub snapshots: watch::Receiver<Arc<HubSnapshot>>,
}

impl Collector for HubCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        // A clone of the Arc: the hub is not kept from publishing while this encodes.
        let hub = self.snapshots.borrow().clone();
        encode(&hub, &mut Families(encoder))
    }
}

fn one<V>(value: V) -> [(Labels<'static>, V); 1] {
    [(Vec::new(), value)]
}

fn encode(hub: &HubSnapshot, out: &mut Families) -> fmt::Result {
    out.counter(
        "eventspan_events_received",
        "Events delivered by the watches.",
        one(hub.events_received),
    )?;
    out.counter(
        "eventspan_events_malformed",
        "Watched values that could not be decoded.",
        one(hub.malformed),
    )?;
    out.counter(
        "eventspan_traceparent_invalid",
        "eventspan.dev/traceparent annotations ignored as invalid.",
        one(crate::wire::invalid_traceparents()),
    )?;
    out.gauge(
        "eventspan_watches",
        "Running watches, shared by all sessions.",
        [
            (vec![("resource", "events")], hub.event_watches),
            (vec![("resource", "metadata")], hub.metadata_watches),
        ],
    )?;
    out.counter(
        "eventspan_watch_relists",
        "Lists running watches started again because their resourceVersion expired (410 Gone).",
        [
            (vec![("resource", "events")], hub.event_relists),
            (vec![("resource", "metadata")], hub.metadata_relists),
        ],
    )?;
    let mut refused: BTreeMap<(&str, String), u64> = BTreeMap::new();
    for r in &hub.watches_refused {
        *refused
            .entry((r.resource.as_str(), r.code.to_string()))
            .or_default() += 1;
    }
    out.gauge(
        "eventspan_watches_refused",
        "Watches given up after the API server refused them for 5 minutes.",
        refused
            .iter()
            .map(|((resource, code), n)| (vec![("resource", *resource), ("code", code)], *n)),
    )?;
    out.counter(
        "eventspan_watch_kinds_rejected",
        "Kinds named by events or owner references but not watched, by reason.",
        hub.kinds_rejected
            .iter()
            .map(|(reason, n)| (vec![("reason", *reason)], *n)),
    )?;
    out.gauge(
        "eventspan_watched_namespaces",
        "Namespaces some session covers.",
        one(hub.watched_namespaces),
    )?;
    out.gauge(
        "eventspan_sessions",
        "Running sessions.",
        one(hub.sessions.len()),
    )?;
    engine(&hub.engine, out)?;
    sessions(hub, out)
}

fn engine(e: &crate::engine::EngineStats, out: &mut Families) -> fmt::Result {
    out.gauge(
        "eventspan_engine_bytes",
        "Bytes the engine's capped tables hold, as their byte caps count them.",
        [
            ("objects", e.object_bytes),
            ("departed_roots", e.departed_root_bytes),
            ("open_spans", e.open_span_bytes),
            ("held_events", e.held_bytes),
        ]
        .map(|(table, n)| (vec![("table", table)], n)),
    )?;
    out.counter(
        "eventspan_input_rejected",
        "Events, or parts of them, the engine refused as breaking an invariant, by reason.",
        crate::engine::Rejection::ALL.map(|r| (vec![("reason", r.as_str())], e.rejected(r))),
    )?;
    for (name, help, value) in [
        (
            "eventspan_engine_spans_emitted",
            "Spans the engine finished.",
            e.spans_emitted,
        ),
        (
            "eventspan_engine_duplicates",
            "Re-delivered events ignored.",
            e.duplicates,
        ),
        ("eventspan_engine_held", "Events held for a parent.", e.held),
        (
            "eventspan_engine_held_expired",
            "Held events placed by the owner chain after the window.",
            e.held_expired,
        ),
        (
            "eventspan_engine_dropped",
            "Objects and tracked events evicted by the caps, and held events placed early.",
            e.objects_evicted + e.tracked_events_evicted + e.held_overflow,
        ),
        (
            "eventspan_engine_duplicate_spans",
            "Spans not exported because the same span was exported recently.",
            e.duplicate_spans,
        ),
        (
            "eventspan_checkpoint_resumed_spans",
            "Spans a predecessor exported, placed again from its checkpoint and not exported.",
            e.resumed_spans,
        ),
        (
            "eventspan_engine_earlier_change",
            "Events from before their root's first change the engine knows, in no trace.",
            e.earlier_change,
        ),
        (
            "eventspan_engine_derived_creations",
            "Pod creation spans derived from the pod because its controller's event had not come.",
            e.derived_creations,
        ),
        (
            "eventspan_engine_derived_scale_ups",
            "ReplicaSet scale-up spans derived from the pods they created because the deployment controller's event had not come.",
            e.derived_scale_ups,
        ),
        (
            "eventspan_engine_derived_scale_downs",
            "ReplicaSet scale-down spans derived from the pods they deleted because the deployment controller's event had not come.",
            e.derived_scale_downs,
        ),
        (
            "eventspan_engine_derived_deletions",
            "Pod deletion spans derived from the pod's deletionTimestamp because its controller's event had not come.",
            e.derived_deletions,
        ),
        (
            "eventspan_engine_late_creations",
            "Controllers' pod creation events that came after a creation span was derived for the pod (no second span).",
            e.late_creations,
        ),
        (
            "eventspan_engine_rescales_unattributed",
            "HPA rescale events that rooted no trace: the HPA's target was not known.",
            e.rescales_unattributed,
        ),
        (
            "eventspan_engine_spans_forced",
            "Spans emitted early because the open-span table was full.",
            e.spans_forced,
        ),
    ] {
        out.counter(name, help, one(value))?;
    }
    for (name, help, value) in [
        (
            "eventspan_engine_objects",
            "Objects in the engine's table.",
            e.objects,
        ),
        (
            "eventspan_engine_open_spans",
            "Spans not emitted yet.",
            e.open_spans,
        ),
        (
            "eventspan_engine_open_traces",
            "Traces the engine holds.",
            e.open_traces,
        ),
        (
            "eventspan_engine_held_events",
            "Events waiting for their parent.",
            e.held_now,
        ),
        (
            "eventspan_engine_tracked_events",
            "Recent event uids remembered.",
            e.tracked_events,
        ),
    ] {
        out.gauge(name, help, one(value))?;
    }
    Ok(())
}

/// Per session, and per exporter of each.
fn sessions(hub: &HubSnapshot, out: &mut Families) -> fmt::Result {
    let names: Vec<String> = hub.sessions.keys().map(ToString::to_string).collect();
    let exporters = || {
        names
            .iter()
            .zip(hub.sessions.values())
            .flat_map(|(session, s)| {
                s.exporters.iter().map(move |(exporter, stats)| {
                    (
                        vec![("session", session.as_str()), ("exporter", exporter)],
                        stats,
                    )
                })
            })
    };
    let per_exporter: [(&str, MetricType, &str, ExporterValue); 9] = [
        (
            "eventspan_spans_exported",
            MetricType::Counter,
            "Spans delivered.",
            |s| s.exported,
        ),
        (
            "eventspan_spans_dropped",
            MetricType::Counter,
            "Spans dropped: full queue, retries exhausted, refused.",
            |s| s.dropped,
        ),
        (
            "eventspan_spans_rejected",
            MetricType::Counter,
            "Spans the receiver rejected (partial success).",
            |s| s.rejected,
        ),
        (
            "eventspan_export_errors",
            MetricType::Counter,
            "Failed export attempts.",
            |s| s.errors,
        ),
        (
            "eventspan_export_refused",
            MetricType::Counter,
            "Export attempts refused by the destination policy (--exporter-allow, --exporter-deny).",
            |s| s.refused,
        ),
        (
            "eventspan_export_queue",
            MetricType::Gauge,
            "Spans waiting to be sent.",
            |s| s.queued,
        ),
        (
            "eventspan_logs_exported",
            MetricType::Counter,
            "Log records delivered (exporters with logs).",
            |s| s.logs_exported,
        ),
        (
            "eventspan_logs_dropped",
            MetricType::Counter,
            "Log records dropped: full queue, retries exhausted, refused, rejected.",
            |s| s.logs_dropped,
        ),
        (
            "eventspan_logs_queue",
            MetricType::Gauge,
            "Log records waiting to be sent.",
            |s| s.logs_queued,
        ),
    ];
    for (name, kind, help, value) in per_exporter {
        let samples = exporters().map(|(labels, stats)| (labels, value(stats)));
        if kind == MetricType::Counter {
            out.counter(name, help, samples)?;
        } else {
            out.gauge(name, help, samples)?;
        }
    }
    out.histogram(
        "eventspan_export_latency_seconds",
        "Duration of successful exports.",
        exporters().map(|(labels, stats)| (labels, &stats.latency)),
    )?;
    out.histogram(
        "eventspan_event_to_export_seconds",
        "Seconds from a span's end (its newest event, or its object's state) to the receiver acknowledging it.",
        exporters().map(|(labels, stats)| (labels, &stats.event_to_export)),
    )?;
    out.counter(
        "eventspan_session_traces",
        "Traces a session has seen.",
        names
            .iter()
            .zip(hub.sessions.values())
            .map(|(session, s)| (vec![("session", session.as_str())], s.log.traces)),
    )
}

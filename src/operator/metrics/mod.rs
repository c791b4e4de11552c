//! `/metrics`, in the OpenMetrics text format (Prometheus scrapes it as it scrapes its own
//! clients), encoded by the Prometheus project's client crate: what the reconciler and the
//! checkpoint code count themselves is registered here; the histograms of finished spans, with
//! their trace IDs as exemplars, are observed by the hub as it routes spans (`spans.rs`); what
//! the hub counts is read from its last snapshot at scrape time (`hub.rs`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use super::snapshot::HubSnapshot;

mod families;
mod hub;
mod spans;

pub use spans::SpanMetrics;

/// What `/metrics` answers with.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

pub struct Metrics {
    registry: Registry,
    leader: Gauge,
    reconciles: Family<ResultLabel, Counter>,
    checkpoint_loads: Family<ResultLabel, Counter>,
    checkpoint_writes: Family<ResultLabel, Counter>,
    checkpoint_bytes: Gauge,
    checkpoint_spans: Gauge,
    checkpoint_covered: Gauge,
    /// Bytes and spans of the checkpoint last written, per engine window: the gauges sum them.
    checkpoint_sizes: Mutex<BTreeMap<Duration, (u64, u64)>>,
    spans: SpanMetrics,
}

/// A family whose every label value is listed up front, so each series is there (at zero)
/// before its first increment.
fn results(values: impl IntoIterator<Item = &'static str>) -> Family<ResultLabel, Counter> {
    let family = Family::default();
    for result in values {
        // The guard only creates the series; it is let go at once.
        drop(family.get_or_create(&ResultLabel { result }));
    }
    family
}

/// What kind of failure a reconcile ended in: the `result` label of
/// `eventspan_reconcile_total`, one value per kind so the series stay few.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The API server failed a request (discovery, a Secret, a finalizer patch).
    Api,
    /// The API server refused a write because the object changed meanwhile (409): the next
    /// reconcile sees the new version.
    Conflict,
    /// The hub is not running: the operator is stopping.
    HubStopped,
    /// The object cannot carry a finalizer (no name, or an invalid finalizer name).
    Finalizer,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 4] = [
        ErrorKind::Api,
        ErrorKind::Conflict,
        ErrorKind::HubStopped,
        ErrorKind::Finalizer,
    ];

    /// The label value. `kube_error` and `finalizer_error` keep the names dashboards already
    /// match on.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Api => "kube_error",
            ErrorKind::Conflict => "conflict",
            ErrorKind::HubStopped => "hub_stopped",
            ErrorKind::Finalizer => "finalizer_error",
        }
    }
}

/// The values of `eventspan_reconcile_total`'s `result` label: `ok`, then one per error kind.
fn reconcile_results() -> impl Iterator<Item = &'static str> {
    std::iter::once("ok").chain(ErrorKind::ALL.into_iter().map(ErrorKind::as_str))
}

impl Default for Metrics {
    /// Metrics of a hub that never publishes (tests of the reconciler and checkpoint code).
    fn default() -> Self {
        Metrics::new(watch::channel(Arc::default()).1)
    }
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
    /// `snapshots`: the hub's, as the metrics endpoint should show them (none while not leading).
    pub fn new(snapshots: watch::Receiver<Arc<HubSnapshot>>) -> Metrics {
        let metrics = Metrics {
            registry: Registry::default(),
            leader: Gauge::default(),
            reconciles: results(reconcile_results()),
            checkpoint_loads: results(CheckpointLoad::ALL.map(CheckpointLoad::as_str)),
            checkpoint_writes: results(CheckpointWrite::ALL.map(CheckpointWrite::as_str)),
            checkpoint_bytes: Gauge::default(),
            checkpoint_spans: Gauge::default(),
            checkpoint_covered: Gauge::default(),
            checkpoint_sizes: Mutex::default(),
            spans: SpanMetrics::new(),
        };
        let mut registry = Registry::default();
        registry.register(
            "eventspan_leader",
            "1 while this replica holds the lease and runs the sessions",
            metrics.leader.clone(),
        );
        registry.register(
            "eventspan_reconcile",
            "TraceSession reconciles by result",
            metrics.reconciles.clone(),
        );
        registry.register(
            "eventspan_checkpoint_loads",
            "Checkpoint ConfigMaps read on taking the lead, by result (all but resumed start fresh)",
            metrics.checkpoint_loads.clone(),
        );
        registry.register(
            "eventspan_checkpoint_writes",
            "Checkpoint ConfigMap writes, by result (a conflict stops writes for the term)",
            metrics.checkpoint_writes.clone(),
        );
        registry.register(
            "eventspan_checkpoint_bytes",
            "Bytes of the checkpoints last written, all engines",
            metrics.checkpoint_bytes.clone(),
        );
        registry.register(
            "eventspan_checkpoint_spans",
            "Spans named by the checkpoints last written, all engines",
            metrics.checkpoint_spans.clone(),
        );
        registry.register(
            "eventspan_checkpoint_covered_spans",
            "The eventspan_engine_spans_emitted_total the written checkpoints cover: after a crash only spans emitted past it come again",
            metrics.checkpoint_covered.clone(),
        );
        metrics.spans.register(&mut registry);
        registry.register_collector(Box::new(hub::HubCollector { snapshots }));
        Metrics {
            registry,
            ..metrics
        }
    }

    /// The span histograms, for the hub to observe the spans it routes.
    pub fn spans(&self) -> SpanMetrics {
        self.spans.clone()
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// A reconcile's end: the kind of its error, if it failed.
    pub fn reconciled(&self, error: Option<ErrorKind>) {
        let result = error.map_or("ok", ErrorKind::as_str);
        self.reconciles.get_or_create(&ResultLabel { result }).inc();
    }

    pub fn checkpoint_loaded(&self, result: CheckpointLoad) {
        let result = result.as_str();
        self.checkpoint_loads
            .get_or_create(&ResultLabel { result })
            .inc();
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
        self.checkpoint_writes
            .get_or_create(&ResultLabel {
                result: result.as_str(),
            })
            .inc();
        if result == CheckpointWrite::Ok {
            let mut sizes = self.checkpoint_sizes.lock().expect("metrics lock");
            sizes.insert(window, (bytes.len() as u64, checkpoint.len() as u64));
            let (bytes, spans) = sizes
                .values()
                .fold((0, 0), |(b, s), (nb, ns)| (b + nb, s + ns));
            self.checkpoint_bytes.set(gauge(bytes));
            self.checkpoint_spans.set(gauge(spans));
        }
    }

    /// Every engine's checkpoint as written now covers the first `emitted` spans emitted.
    pub fn checkpoint_covers(&self, emitted: u64) {
        self.checkpoint_covered.set(gauge(emitted));
    }

    /// The exposition, ending with `# EOF`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String does not fail");
        out
    }
}

fn gauge(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;

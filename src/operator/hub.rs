//! The hub: the one task that owns the engines and the running sessions.
//!
//! Watches feed it through a bounded channel; it ticks the engines (one per distinct session
//! window, see `engines.rs`), and sends each finished span to every session of the engine that
//! finished it whose scope matches the span's trace root and the namespace of its event
//! (`Scope::admits`; trace IDs are deterministic, so all sessions see the same IDs whichever
//! engine serves them). Sessions are added, changed and removed by commands from the
//! reconciler. Everything it knows is published as a snapshot for the status writer and the
//! metrics.

mod exporters;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span};

use super::checkpoint::{Schedule, Snapshot};
use super::engines::{self, Engines};
use super::matcher::Scope;
use super::metrics::SpanMetrics;
use super::snapshot::{HubSnapshot, SessionKey, SessionSnapshot, SessionWatches};
use super::traces::TraceLog;
use super::watches::{Input, WatchControl, watch_manager};
use crate::clock::now as wall_clock;
use crate::engine::Checkpoint;
use crate::engine::EngineConfig;
use crate::engine::model::{Change, FinishedSpan};
use crate::engine::time::Timestamp;
use crate::export::{ExporterSettings, ExporterSpec, ExporterStats, TransportError, Watermark};
use crate::otlp::SpanShape;
use crate::otlp::shape::TraceStarts;
pub(super) use exporters::{ExporterFactory, OtlpExporters, SessionExporter};

/// How long departing exporters get to send what they hold.
const EXPORTER_GRACE: Duration = Duration::from_secs(5);
const TICK: Duration = Duration::from_millis(250);

/// What a session needs at run time, resolved by the reconciler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionSetup {
    pub scope: Scope,
    pub exporters: Vec<ExporterSpec>,
    /// A longer correlation window than the operator's, if the session asks for one.
    pub window: Option<Duration>,
    pub max_recent_traces: usize,
    /// Root kinds to watch up front (apiVersion, kind): custom kinds no event may name yet.
    pub root_kinds: Vec<(String, String)>,
    /// How the session's spans leave (its exporters carry the same in their specs): the status
    /// lists the trace IDs the backend receives.
    pub shape: SpanShape,
    /// Whether the span histograms label the session's traces with their namespace.
    pub namespace_label: bool,
}

/// The hub is no longer running (the operator is stopping, or the hub's task ended): a command
/// sent to it was not carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the hub stopped")]
pub struct HubStopped;

/// Why the hub did not start or change a session.
#[derive(Debug, thiserror::Error)]
pub enum UpsertError {
    /// One of the session's exporters could not start (its own settings: a CA bundle, a
    /// header); the session carries on as it was.
    #[error("exporter {name}: {error}")]
    Exporter { name: String, error: TransportError },
    #[error(transparent)]
    Stopped(#[from] HubStopped),
}

pub enum Command {
    Upsert {
        key: SessionKey,
        setup: SessionSetup,
        reply: oneshot::Sender<Result<(), UpsertError>>,
    },
    /// Flushes the session's open traces to it, stops its exporters (after they send what they
    /// hold) and forgets it; answers with what it had done, if it was running.
    Remove {
        key: SessionKey,
        reply: oneshot::Sender<Option<SessionSnapshot>>,
    },
}

struct Session {
    setup: SessionSetup,
    exporters: Vec<Box<dyn SessionExporter>>,
    retired: ExporterStats,
    events_observed: u64,
    log: TraceLog,
}

impl Session {
    /// The window of the engine that serves the session.
    fn window(&self, base: Duration) -> Duration {
        engines::effective_window(base, self.setup.window)
    }

    fn snapshot(&self) -> SessionSnapshot {
        SessionSnapshot {
            events_observed: self.events_observed,
            log: self.log.clone(),
            exporters: self
                .exporters
                .iter()
                .map(|e| (e.name().to_string(), e.stats()))
                .collect(),
            retired: self.retired.clone(),
            namespaces: self.setup.scope.namespaces.iter().cloned().collect(),
            watches: SessionWatches::default(),
        }
    }

    fn watermarks(&self) -> impl Iterator<Item = Watermark> + '_ {
        self.exporters.iter().flat_map(|e| e.watermarks())
    }

    /// Stops the session's exporters (each sends what it holds, within the grace period) and
    /// adds what they did to the retired counts.
    async fn retire_exporters(&mut self) {
        let stopping = std::mem::take(&mut self.exporters)
            .into_iter()
            .map(|e| e.shutdown(EXPORTER_GRACE));
        for stats in futures::future::join_all(stopping).await {
            self.retired.absorb(&stats);
        }
    }
}

/// A handle to send commands to the hub.
#[derive(Clone)]
pub struct HubHandle {
    commands: mpsc::Sender<Command>,
    pub snapshots: watch::Receiver<Arc<HubSnapshot>>,
}

impl HubHandle {
    pub async fn upsert(&self, key: SessionKey, setup: SessionSetup) -> Result<(), UpsertError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Upsert { key, setup, reply })
            .await
            .map_err(|_| HubStopped)?;
        answer.await.map_err(|_| HubStopped)?
    }

    /// Stops a session; returns what it had done, if it was running.
    pub async fn remove(&self, key: SessionKey) -> Result<Option<SessionSnapshot>, HubStopped> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Remove { key, reply })
            .await
            .map_err(|_| HubStopped)?;
        answer.await.map_err(|_| HubStopped)
    }
}

pub struct Hub {
    engines: Engines,
    sessions: BTreeMap<SessionKey, Session>,
    watches: Box<dyn WatchControl>,
    inputs: mpsc::Receiver<Input>,
    commands: mpsc::Receiver<Command>,
    snapshots: watch::Sender<Arc<HubSnapshot>>,
    exporters: Box<dyn ExporterFactory>,
    events_received: u64,
    malformed: u64,
    /// The watches of objects that are interrupted, and the namespace each watches (`None`:
    /// all, or cluster-scoped; see [`Input::StateGap`]).
    state_gaps: BTreeMap<Arc<str>, Option<Arc<str>>>,
    starts: TraceStarts,
    checkpoints: Option<Checkpoints>,
    /// Exporters stopping after a swap or a session's removal: until they settle what they
    /// hold, a checkpoint must wait for them too.
    retiring: Vec<Watermark>,
    /// The tasks stopping them: the hub waits for them before it ends.
    stopping: JoinSet<()>,
    span_metrics: SpanMetrics,
}

/// The hub's side of checkpointing: when to snapshot, and where settled snapshots go (the
/// writer task, see `checkpoint.rs`).
struct Checkpoints {
    schedule: Schedule<Watermark>,
    out: watch::Sender<Option<Arc<Snapshot>>>,
}

/// Checkpointing, for a hub that leads with it on.
pub struct HubCheckpoints {
    /// At most this often (and only when something was emitted since).
    pub interval: Duration,
    /// A predecessor's checkpoints, by engine window, loaded before the hub takes any input.
    pub resume: BTreeMap<Duration, Checkpoint>,
    /// Settled snapshots, for the writer task.
    pub out: watch::Sender<Option<Arc<Snapshot>>>,
}

pub struct HubSettings {
    pub engine: EngineConfig,
    pub exporters: ExporterSettings,
    /// Bound of the channel from the watches: a burst beyond it makes watches wait, not grow.
    pub input_capacity: usize,
    pub max_event_age: Duration,
    /// None: no checkpoints (a successor re-sends what was exported within max_event_age).
    pub checkpoints: Option<HubCheckpoints>,
    /// The histograms of the spans routed to sessions (`/metrics`).
    pub span_metrics: SpanMetrics,
}

/// What the hub steers and where its inputs and exporters come from: [`Hub::new`] connects it
/// to the cluster and to OTLP, tests to doubles.
pub(super) struct Connections {
    pub watches: Box<dyn WatchControl>,
    /// What the watches deliver.
    pub inputs: mpsc::Receiver<Input>,
    pub exporters: Box<dyn ExporterFactory>,
    /// Where the spans routed to sessions are observed (`/metrics`).
    pub span_metrics: SpanMetrics,
}

impl Hub {
    pub fn new(
        client: kube::Client,
        settings: HubSettings,
        stop: CancellationToken,
    ) -> (Hub, HubHandle) {
        let (input_tx, inputs) = mpsc::channel(settings.input_capacity);
        let watches = watch_manager(client, input_tx, settings.max_event_age, stop);
        let connections = Connections {
            watches: Box::new(watches),
            inputs,
            exporters: Box::new(OtlpExporters(settings.exporters)),
            span_metrics: settings.span_metrics,
        };
        Hub::connected(settings.engine, settings.checkpoints, connections)
    }

    /// A hub of `engine`'s settings (resuming from `checkpoints`, if any) over `connections`.
    pub(super) fn connected(
        engine: EngineConfig,
        checkpoints: Option<HubCheckpoints>,
        connections: Connections,
    ) -> (Hub, HubHandle) {
        let (command_tx, commands) = mpsc::channel(64);
        let (snapshots, snapshot_rx) = watch::channel(Arc::new(HubSnapshot::default()));
        let (resume, checkpoints) = match checkpoints {
            Some(c) => (
                c.resume,
                Some(Checkpoints {
                    schedule: Schedule::new(c.interval),
                    out: c.out,
                }),
            ),
            None => (BTreeMap::new(), None),
        };
        let hub = Hub {
            engines: Engines::resuming(engine, resume),
            sessions: BTreeMap::new(),
            watches: connections.watches,
            inputs: connections.inputs,
            commands,
            snapshots,
            exporters: connections.exporters,
            events_received: 0,
            malformed: 0,
            state_gaps: BTreeMap::new(),
            starts: TraceStarts::default(),
            checkpoints,
            retiring: Vec::new(),
            stopping: JoinSet::new(),
            span_metrics: connections.span_metrics,
        };
        (
            hub,
            HubHandle {
                commands: command_tx,
                snapshots: snapshot_rx,
            },
        )
    }

    /// Runs until `stop`; then hands over: it takes no more input, routes what has finished,
    /// lets every exporter send what it holds, and hands a last checkpoint to the writer. Open
    /// traces are not flushed: a successor re-lists their objects and events, rebuilds them
    /// with the same IDs and finishes them (flushing them here marked incomplete, with a pending
    /// root, made the successor export the same spans a second time).
    pub async fn run(mut self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks = 0u64;
        loop {
            // Biased, with the tick before the inputs: a steady stream of events must not
            // starve the clock (windows expiring, spans emitted, status published).
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                _ = tick.tick() => {
                    self.advance(wall_clock());
                    self.checkpoint(Instant::now());
                    self.reap();
                    ticks += 1;
                    if ticks.is_multiple_of(4) {
                        self.publish();
                    }
                }
                Some(command) = self.commands.recv() => self.command(command),
                Some(input) = self.inputs.recv() => {
                    self.input(input);
                    // Take what is already queued without yielding, up to a batch.
                    for _ in 0..1024 {
                        match self.inputs.try_recv() {
                            Ok(input) => self.input(input),
                            Err(_) => break,
                        }
                    }
                    self.route();
                }
            }
        }
        self.route();
        let emitted = self.engines.stats().spans_emitted;
        let last = match &mut self.checkpoints {
            Some(c) => {
                let (engines, sessions, retiring) = (&self.engines, &self.sessions, &self.retiring);
                c.schedule
                    .last(emitted, || snapshot(engines, sessions, retiring))
            }
            None => None,
        };
        // The sessions' exporters and those already stopping (a removed session's, a replaced
        // one) flush side by side, each within its grace period.
        let stopping = &mut self.stopping;
        tokio::join!(
            futures::future::join_all(self.sessions.values_mut().map(Session::retire_exporters)),
            async { while stopping.join_next().await.is_some() {} },
        );
        if let (Some(c), Some(last)) = (&self.checkpoints, last) {
            // Stopped exporters have settled everything (sent, or counted dropped); one of a
            // removed session, or replaced by an edit, may still be within its grace period.
            let deadline = Instant::now() + EXPORTER_GRACE;
            while !last.settled(Instant::now()) && Instant::now() < deadline {
                tokio::time::sleep(TICK).await;
            }
            if last.settled(Instant::now()) {
                c.out.send_replace(Some(last.snapshot()));
            } else {
                tracing::warn!(
                    "an exporter still holds spans: no final checkpoint (the successor may send them again)"
                );
            }
        }
        // After the flush, so the last status counts what the flush delivered.
        self.publish();
    }

    /// Forgets the stopping tasks that have ended.
    fn reap(&mut self) {
        while let Some(ended) = self.stopping.try_join_next() {
            if let Err(error) = ended {
                tracing::error!(%error, "an exporter's stopping task failed");
            }
        }
    }

    /// Moves the engines' clock to `now` and routes what that finished.
    fn advance(&mut self, now: Timestamp) {
        self.engines.advance(now);
        self.route();
    }

    /// Takes a checkpoint snapshot when one is due, and hands a settled one to the writer.
    fn checkpoint(&mut self, now: Instant) {
        let Some(c) = &mut self.checkpoints else {
            return;
        };
        self.retiring.retain(|m| m.settled() < m.offered());
        let emitted = self.engines.stats().spans_emitted;
        let (engines, sessions, retiring) = (&self.engines, &self.sessions, &self.retiring);
        if let Some(ready) = c
            .schedule
            .tick(now, emitted, || snapshot(engines, sessions, retiring))
        {
            c.out.send_replace(Some(ready));
        }
    }

    fn input(&mut self, input: Input) {
        match input {
            Input::Change(observed) => {
                if let Change::Event(event) = &observed.change {
                    self.events_received += 1;
                    for s in self.sessions.values_mut() {
                        if s.setup.scope.namespaces.contains(&event.namespace) {
                            s.events_observed += 1;
                        }
                    }
                }
                self.engines.apply(observed);
            }
            Input::Malformed(reason) => {
                self.malformed += 1;
                tracing::warn!(%reason, "skipped a value a watch delivered");
            }
            Input::StateGap {
                watch,
                namespace,
                interrupted,
            } => {
                let behind = |gaps: &BTreeMap<Arc<str>, Option<Arc<str>>>| {
                    gaps.values().any(|ns| *ns == namespace)
                };
                let was = behind(&self.state_gaps);
                if interrupted {
                    self.state_gaps.insert(watch, namespace.clone());
                } else {
                    self.state_gaps.remove(&watch);
                }
                let is = behind(&self.state_gaps);
                if was != is {
                    tracing::info!(
                        interrupted = is,
                        namespace = namespace.as_deref().unwrap_or("(all)"),
                        "object state is {}",
                        if is {
                            "behind: a watch is interrupted"
                        } else {
                            "whole again"
                        }
                    );
                    self.engines.set_state_gap(namespace.as_deref(), is);
                }
            }
        }
    }

    /// Hands finished spans to every session of the engine that finished them whose scope
    /// matches their trace; the span histograms observe each span a session took, under the
    /// trace ID the first of them exports it with, by namespace if any of them asks for that.
    fn route(&mut self) {
        let base = self.engines.base_window();
        let (sessions, starts, metrics) =
            (&mut self.sessions, &mut self.starts, &self.span_metrics);
        let now = wall_clock();
        self.engines.drain_finished(|window, span| {
            let span: Arc<FinishedSpan> = Arc::new(starts.fill(span));
            let mut exported_as = None;
            let mut namespace_label = false;
            for s in sessions.values_mut() {
                if s.window(base) == window && s.setup.scope.admits(&span) {
                    exported_as.get_or_insert_with(|| s.setup.shape.trace_id(&span));
                    namespace_label |= s.setup.namespace_label;
                    s.log
                        .record(&span, s.setup.max_recent_traces, &s.setup.shape);
                    for e in &s.exporters {
                        e.offer(span.clone());
                    }
                }
            }
            if let Some(trace_id) = exported_as {
                metrics.finished(&span, trace_id, now, namespace_label);
            }
        });
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Upsert { key, setup, reply } => {
                let _ = reply.send(self.upsert(key, setup));
            }
            Command::Remove { key, reply } => {
                if !self.sessions.contains_key(&key) {
                    let _ = reply.send(None);
                    return;
                }
                self.detach(&key);
                let mut session = self.sessions.remove(&key).expect("present");
                self.retiring.extend(session.watermarks());
                self.reconfigure();
                let span = info_span!("remove_session", session = %key);
                self.stopping.spawn(
                    async move {
                        session.retire_exporters().await;
                        let _ = reply.send(Some(session.snapshot()));
                    }
                    .instrument(span),
                );
                tracing::info!(session = %key, "session removed");
            }
        }
        self.publish();
    }

    /// Flushes a session's open traces to it before it leaves its engine (removed, or moved to
    /// another window): they go out now, marked incomplete, unless another session of the same
    /// engine follows them too (cutting that session's traces short would lose more than it
    /// saves).
    fn detach(&mut self, key: &SessionKey) {
        let base = self.engines.base_window();
        let Some(session) = self.sessions.get(key) else {
            return;
        };
        let window = session.window(base);
        let scope = session.setup.scope.clone();
        let others: Vec<Scope> = self
            .sessions
            .iter()
            .filter(|(k, s)| *k != key && s.window(base) == window)
            .map(|(_, s)| s.setup.scope.clone())
            .collect();
        self.engines.abandon_where(window, |root| {
            scope.matches(root) && !others.iter().any(|o| o.matches(root))
        });
        self.route();
    }

    /// Starts or changes a session. Exporters restart only when their specs changed; if new
    /// ones cannot start, the session carries on as it was and the error is returned.
    fn upsert(&mut self, key: SessionKey, setup: SessionSetup) -> Result<(), UpsertError> {
        let unchanged = self
            .sessions
            .get(&key)
            .is_some_and(|old| old.setup.exporters == setup.exporters);
        let fresh = if unchanged {
            None
        } else {
            Some(self.start_exporters(&key, &setup)?)
        };
        let base = self.engines.base_window();
        if self
            .sessions
            .get(&key)
            .is_some_and(|old| old.window(base) != engines::effective_window(base, setup.window))
        {
            // Another engine serves it from now on: what the old one holds for it goes out now.
            self.detach(&key);
        }
        let mut session = self.sessions.remove(&key).unwrap_or_else(|| Session {
            setup: setup.clone(),
            exporters: Vec::new(),
            retired: ExporterStats::default(),
            events_observed: 0,
            log: TraceLog::default(),
        });
        if let Some(fresh) = fresh {
            for old in std::mem::replace(&mut session.exporters, fresh) {
                // Counted now; what the old exporter still delivers in its grace period is not.
                session.retired.absorb(&old.stats());
                self.retiring.extend(old.watermarks());
                let span = info_span!("retire_exporter", session = %key, exporter = old.name());
                self.stopping
                    .spawn(discard(old.shutdown(EXPORTER_GRACE)).instrument(span));
            }
        }
        session.setup = setup;
        tracing::info!(session = %key, namespaces = ?session.setup.scope.namespaces, "session active");
        self.sessions.insert(key, session);
        self.reconfigure();
        Ok(())
    }

    /// Starts all of a session's exporters, or none: if one cannot start, those already started
    /// are stopped (an exporter's task runs until it is shut down).
    fn start_exporters(
        &mut self,
        key: &SessionKey,
        setup: &SessionSetup,
    ) -> Result<Vec<Box<dyn SessionExporter>>, UpsertError> {
        let mut started = Vec::with_capacity(setup.exporters.len());
        for spec in &setup.exporters {
            match self.exporters.start(spec) {
                Ok(exporter) => started.push(exporter),
                Err(e) => {
                    for exporter in started {
                        let span = info_span!("retire_exporter", session = %key, exporter = exporter.name());
                        self.stopping
                            .spawn(discard(exporter.shutdown(Duration::ZERO)).instrument(span));
                    }
                    return Err(UpsertError::Exporter {
                        name: spec.name.clone(),
                        error: e,
                    });
                }
            }
        }
        Ok(started)
    }

    /// Watches follow the union of the sessions' namespaces; each engine covers the namespaces
    /// of the sessions it serves.
    fn reconfigure(&mut self) {
        let namespaces: BTreeSet<String> = self
            .sessions
            .values()
            .flat_map(|s| s.setup.scope.namespaces.iter().cloned())
            .collect();
        // Engines release what they no longer cover themselves (configure), whether or not
        // another engine still watches the namespace.
        let watched = self.watches.namespaces();
        self.watches.set_namespaces(&namespaces);
        let kinds: BTreeSet<(String, String, String)> = self
            .sessions
            .values()
            .flat_map(|s| {
                s.setup.root_kinds.iter().flat_map(move |(a, k)| {
                    s.setup
                        .scope
                        .namespaces
                        .iter()
                        .map(move |ns| (a.clone(), k.clone(), ns.clone()))
                })
            })
            .collect();
        for (api_version, kind, ns) in kinds {
            self.watches.ensure_kind(&api_version, &kind, &ns);
        }
        let plan = engines::plan(
            self.engines.base_window(),
            self.sessions
                .values()
                .map(|s| (s.setup.window, &s.setup.scope.namespaces)),
        );
        // An engine that joins a namespace already watched for another engine missed its
        // watches' initial lists: they list it again (the engines that have it skip what they
        // already know).
        for ns in self.engines.configure(&plan).intersection(&watched) {
            self.watches.relist_namespace(ns);
        }
    }

    fn publish(&self) {
        let counts = self.watches.counts();
        let refused = self.watches.refused();
        let snapshot = HubSnapshot {
            sessions: self
                .sessions
                .iter()
                .map(|(k, s)| {
                    let mut snapshot = s.snapshot();
                    snapshot.watches = session_watches(
                        &snapshot.namespaces,
                        |ns| self.watches.listed(ns),
                        &refused,
                    );
                    (k.clone(), snapshot)
                })
                .collect(),
            engine: self.engines.stats(),
            events_received: self.events_received,
            malformed: self.malformed,
            event_watches: counts.events.load(std::sync::atomic::Ordering::Relaxed),
            metadata_watches: counts.metadata.load(std::sync::atomic::Ordering::Relaxed),
            event_relists: counts
                .event_relists
                .load(std::sync::atomic::Ordering::Relaxed),
            metadata_relists: counts
                .metadata_relists
                .load(std::sync::atomic::Ordering::Relaxed),
            watched_namespaces: self.watches.namespaces().len(),
            watches_refused: refused,
            kinds_rejected: self.watches.kinds_rejected(),
        };
        self.snapshots.send_replace(Arc::new(snapshot));
    }
}

/// A stopping exporter's task: what it did is already counted (or no longer wanted).
async fn discard(stopping: impl Future<Output = ExporterStats>) {
    stopping.await;
}

/// What a checkpoint needs: every engine's checkpoint, and every exporter that may still hold
/// one of their spans (each reads its offered count as the snapshot is taken).
fn snapshot(
    engines: &Engines,
    sessions: &BTreeMap<SessionKey, Session>,
    retiring: &[Watermark],
) -> (Snapshot, Vec<Watermark>) {
    let marks = sessions
        .values()
        .flat_map(Session::watermarks)
        .chain(retiring.iter().cloned())
        .collect();
    (
        Snapshot {
            engines: engines.checkpoints(),
            emitted: engines.stats().spans_emitted,
        },
        marks,
    )
}

/// How a session's namespaces are watched: those whose Event watch has not listed, and the
/// watches refused for good in them.
fn session_watches(
    namespaces: &[String],
    listed: impl Fn(&str) -> bool,
    refused: &[crate::watch::Refusal],
) -> SessionWatches {
    SessionWatches {
        listing: namespaces
            .iter()
            .filter(|ns| !listed(ns))
            .cloned()
            .collect(),
        // Cluster-wide watches (a cluster-scoped kind) are not any one session's: they are in
        // the metric only.
        refused: refused
            .iter()
            .filter(|r| {
                matches!(&r.scope, crate::watch::Scope::Namespace(ns) if namespaces.contains(ns))
            })
            .cloned()
            .collect(),
    }
}

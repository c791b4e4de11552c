//! The hub: the one task that owns the engine and the running sessions.
//!
//! Watches feed it through a bounded channel; it ticks the engine, and sends each finished span
//! to every session whose scope matches the span's trace root (so all sessions see the same trace
//! IDs). Sessions are added, changed and removed by commands from the reconciler. Everything it
//! knows is published as a snapshot for the status writer and the metrics.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::matcher::Scope;
use super::traces::TraceLog;
use super::watches::{Input, WatchCounts, WatchManager};
use crate::engine::model::FinishedSpan;
use crate::engine::{Engine, EngineConfig, EngineStats};
use crate::export::{Exporter, ExporterSettings, ExporterSpec, ExporterStats};
use crate::watch::now as wall_clock;

/// How long departing exporters get to send what they hold.
const EXPORTER_GRACE: Duration = Duration::from_secs(5);
const TICK: Duration = Duration::from_millis(250);

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionKey {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What a session needs at run time, resolved by the reconciler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionSetup {
    pub scope: Scope,
    pub exporters: Vec<ExporterSpec>,
    pub window: Duration,
    pub max_recent_traces: usize,
    /// Root kinds to watch up front (apiVersion, kind): custom kinds no event may name yet.
    pub root_kinds: Vec<(String, String)>,
}

pub enum Command {
    Upsert {
        key: SessionKey,
        setup: SessionSetup,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Flushes the session's open traces to it, stops its exporters (after they send what they
    /// hold) and forgets it.
    Remove {
        key: SessionKey,
        reply: oneshot::Sender<()>,
    },
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct SessionSnapshot {
    pub events_observed: u64,
    pub log: TraceLog,
    pub exporters: Vec<(String, ExporterStats)>,
    pub namespaces: Vec<String>,
}

#[derive(Clone, Debug, Default)]
pub struct HubSnapshot {
    pub sessions: BTreeMap<SessionKey, SessionSnapshot>,
    pub engine: EngineStats,
    pub events_received: u64,
    pub malformed: u64,
    pub event_watches: i64,
    pub metadata_watches: i64,
    pub watched_namespaces: usize,
}

struct Session {
    setup: SessionSetup,
    exporters: Vec<Exporter>,
    events_observed: u64,
    log: TraceLog,
}

impl Session {
    fn snapshot(&self) -> SessionSnapshot {
        SessionSnapshot {
            events_observed: self.events_observed,
            log: self.log.clone(),
            exporters: self
                .exporters
                .iter()
                .map(|e| (e.spec.name.clone(), e.stats()))
                .collect(),
            namespaces: self.setup.scope.namespaces.iter().cloned().collect(),
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
    pub async fn upsert(&self, key: SessionKey, setup: SessionSetup) -> Result<(), String> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Upsert { key, setup, reply })
            .await
            .map_err(|_| "the hub stopped".to_string())?;
        answer.await.map_err(|_| "the hub stopped".to_string())?
    }

    pub async fn remove(&self, key: SessionKey) {
        let (reply, answer) = oneshot::channel();
        if self
            .commands
            .send(Command::Remove { key, reply })
            .await
            .is_ok()
        {
            let _ = answer.await;
        }
    }
}

pub struct Hub {
    engine: Engine,
    sessions: BTreeMap<SessionKey, Session>,
    watches: WatchManager,
    inputs: mpsc::Receiver<Input>,
    commands: mpsc::Receiver<Command>,
    snapshots: watch::Sender<Arc<HubSnapshot>>,
    exporter_settings: ExporterSettings,
    watch_counts: Arc<WatchCounts>,
    events_received: u64,
    malformed: u64,
    base_window: Duration,
}

pub struct HubSettings {
    pub engine: EngineConfig,
    pub exporters: ExporterSettings,
    /// Bound of the channel from the watches: a burst beyond it makes watches wait, not grow.
    pub input_capacity: usize,
    pub max_event_age: Duration,
}

impl Hub {
    pub fn new(
        client: kube::Client,
        settings: HubSettings,
        stop: CancellationToken,
    ) -> (Hub, HubHandle) {
        let (input_tx, inputs) = mpsc::channel(settings.input_capacity);
        let (command_tx, commands) = mpsc::channel(64);
        let (snapshots, snapshot_rx) = watch::channel(Arc::new(HubSnapshot::default()));
        let watches = WatchManager::new(client, input_tx, settings.max_event_age, stop);
        let hub = Hub {
            base_window: settings.engine.window,
            engine: Engine::new(settings.engine),
            sessions: BTreeMap::new(),
            watch_counts: watches.counts.clone(),
            watches,
            inputs,
            commands,
            snapshots,
            exporter_settings: settings.exporters,
            events_received: 0,
            malformed: 0,
        };
        (
            hub,
            HubHandle {
                commands: command_tx,
                snapshots: snapshot_rx,
            },
        )
    }

    /// Runs until `stop`; then every open trace is flushed (marked incomplete where unsettled)
    /// and every exporter sends what it holds.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks = 0u64;
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
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
                _ = tick.tick() => {
                    self.engine.advance(wall_clock());
                    self.route();
                    ticks += 1;
                    if ticks.is_multiple_of(4) {
                        self.publish();
                    }
                }
            }
        }
        self.engine.abandon_where(|_| true);
        self.route();
        self.publish();
        let exporters: Vec<Exporter> = std::mem::take(&mut self.sessions)
            .into_values()
            .flat_map(|s| s.exporters)
            .collect();
        futures::future::join_all(exporters.into_iter().map(|e| e.shutdown(EXPORTER_GRACE))).await;
    }

    fn input(&mut self, input: Input) {
        match input {
            Input::Event(event, observed) => {
                self.events_received += 1;
                for s in self.sessions.values_mut() {
                    if s.setup.scope.namespaces.contains(&event.namespace) {
                        s.events_observed += 1;
                    }
                }
                let (api_version, kind, ns) = (
                    event.involved.api_version.clone(),
                    event.involved.kind.clone(),
                    event.involved.namespace.clone(),
                );
                self.watches.ensure_kind(&api_version, &kind, &ns);
                self.engine.observe_event(event, Some(observed));
            }
            Input::Upsert(meta, observed) => {
                for owner in &meta.owners {
                    self.watches
                        .ensure_kind(&owner.api_version, &owner.kind, &meta.namespace);
                }
                self.engine.upsert_object(&meta, observed);
            }
            Input::Delete(uid, observed) => self.engine.delete_object(&uid, observed),
            Input::Malformed(reason) => {
                self.malformed += 1;
                tracing::warn!(%reason, "skipped a value a watch delivered");
            }
        }
    }

    /// Hands finished spans to every session whose scope matches their trace.
    fn route(&mut self) {
        for span in self.engine.drain_finished() {
            let span: Arc<FinishedSpan> = Arc::new(span);
            for s in self.sessions.values_mut() {
                if s.setup.scope.matches(&span.root) {
                    s.log.record(&span, s.setup.max_recent_traces);
                    for e in &s.exporters {
                        e.offer(span.clone());
                    }
                }
            }
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Upsert { key, setup, reply } => {
                let _ = reply.send(self.upsert(key, setup));
            }
            Command::Remove { key, reply } => {
                let Some(session) = self.sessions.get(&key) else {
                    let _ = reply.send(());
                    return;
                };
                // Its open traces go out now, to it and to any other session they match.
                let scope = session.setup.scope.clone();
                self.engine.abandon_where(|root| scope.matches(root));
                self.route();
                let session = self.sessions.remove(&key).expect("present");
                self.reconfigure();
                tokio::spawn(async move {
                    futures::future::join_all(
                        session
                            .exporters
                            .into_iter()
                            .map(|e| e.shutdown(EXPORTER_GRACE)),
                    )
                    .await;
                    let _ = reply.send(());
                });
                tracing::info!(session = %key, "session removed");
            }
        }
        self.publish();
    }

    fn upsert(&mut self, key: SessionKey, setup: SessionSetup) -> Result<(), String> {
        let previous = self.sessions.remove(&key);
        let (exporters, old_exporters, log, events_observed) = match previous {
            Some(old) if old.setup.exporters == setup.exporters => {
                (old.exporters, Vec::new(), old.log, old.events_observed)
            }
            Some(old) => (
                self.start_exporters(&setup)?,
                old.exporters,
                old.log,
                old.events_observed,
            ),
            None => (
                self.start_exporters(&setup)?,
                Vec::new(),
                TraceLog::default(),
                0,
            ),
        };
        if !old_exporters.is_empty() {
            tokio::spawn(futures::future::join_all(
                old_exporters
                    .into_iter()
                    .map(|e| e.shutdown(EXPORTER_GRACE)),
            ));
        }
        tracing::info!(session = %key, namespaces = ?setup.scope.namespaces, "session active");
        self.sessions.insert(
            key,
            Session {
                setup,
                exporters,
                events_observed,
                log,
            },
        );
        self.reconfigure();
        Ok(())
    }

    fn start_exporters(&self, setup: &SessionSetup) -> Result<Vec<Exporter>, String> {
        setup
            .exporters
            .iter()
            .map(|spec| {
                Exporter::start(spec.clone(), self.exporter_settings.clone())
                    .map_err(|e| format!("exporter {}: {e}", spec.name))
            })
            .collect()
    }

    /// Watches follow the union of the sessions' namespaces; the window is the longest asked for.
    fn reconfigure(&mut self) {
        let namespaces: BTreeSet<String> = self
            .sessions
            .values()
            .flat_map(|s| s.setup.scope.namespaces.iter().cloned())
            .collect();
        for gone in self.watches.set_namespaces(&namespaces) {
            self.engine.release_namespace(&gone);
        }
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
        let window = self
            .sessions
            .values()
            .map(|s| s.setup.window)
            .max()
            .unwrap_or(self.base_window);
        self.engine.set_window(window);
    }

    fn publish(&self) {
        let counts = &self.watch_counts;
        let snapshot = HubSnapshot {
            sessions: self
                .sessions
                .iter()
                .map(|(k, s)| (k.clone(), s.snapshot()))
                .collect(),
            engine: self.engine.stats(),
            events_received: self.events_received,
            malformed: self.malformed,
            event_watches: counts.events.load(std::sync::atomic::Ordering::Relaxed),
            metadata_watches: counts.metadata.load(std::sync::atomic::Ordering::Relaxed),
            watched_namespaces: self.watches.namespaces().count(),
        };
        self.snapshots.send_replace(Arc::new(snapshot));
    }
}

//! Persists and loads the engines' checkpoints (see `engine/checkpoint.rs`), so that a successor
//! process (after a restart, a crash or a leader handover) neither exports a span twice nor
//! loses the spans of a change that was interrupted.
//!
//! One ConfigMap per engine window in the operator's own namespace (beside its Lease), named by
//! [`configmap_name`], holds the encoded checkpoint in `binaryData`, with the writer's identity
//! and the write time as annotations. The leader loads them when it starts leading, before the
//! hub takes any input, and writes them at most every `--checkpoint-interval`.
//!
//! What may enter a written checkpoint: a span only once every exporter it was offered to has
//! settled it (delivered, or given up on for good), or a crash right after the write would lose
//! it: the successor does not emit a span its checkpoint names. The hub therefore takes a
//! [`Snapshot`] together with each exporter's offered count, and hands it to the writer only once
//! every exporter's settle watermark has reached that count ([`Schedule`]). The writer is its own
//! task: an API server call never holds up the hub.
//!
//! One exporter is excused: one whose every attempt has failed for [`FAILING_EXPORTER_GRACE`].
//! Otherwise one tenant's dead receiver would hold back every session's checkpoints (a batch is
//! retried for up to `max_retry`), and a crash would send every other session's spans again.
//! What such an exporter still holds is lost if the process dies before it delivers it; its
//! bounded queue drops spans while the receiver is down anyway.
//!
//! Writes carry the resourceVersion last read or written, so a deposed leader's late write fails
//! with a conflict. On a conflict the writer asks the Lease who leads: a writer that no longer
//! holds it stops writing for the rest of its term; the leader (whose write conflicted with a
//! deposed leader's late one) reads the ConfigMap's new version and replaces it with its own
//! checkpoint at the next snapshot, so its term is not left without checkpoints.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use thiserror::Error;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::metrics::{CheckpointLoad, CheckpointWrite, Metrics};
use crate::engine::{Checkpoint, CheckpointError};
use crate::export::Watermark;

/// An exporter failing for this long no longer holds checkpoints back (see the module docs).
pub const FAILING_EXPORTER_GRACE: Duration = Duration::from_secs(30);

/// The `binaryData` key holding the encoded checkpoint.
pub const DATA_KEY: &str = "checkpoint";
/// Who wrote the checkpoint (the operator's `--identity`).
pub const WRITER_ANNOTATION: &str = "eventspan.dev/checkpoint-writer";
/// When it was written (RFC 3339).
pub const WRITTEN_AT_ANNOTATION: &str = "eventspan.dev/checkpoint-written-at";
/// A ConfigMap without this label set to `eventspan` is not ours: never read, never overwritten.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "eventspan");
const WINDOW_LABEL: &str = "eventspan.dev/checkpoint-window";

/// The ConfigMap of the engine of `window`: `eventspan-checkpoint-5s` (milliseconds when the
/// window is not whole seconds).
pub fn configmap_name(window: Duration) -> String {
    format!("eventspan-checkpoint-{}", window_label(window))
}

fn window_label(window: Duration) -> String {
    if window.subsec_millis() == 0 {
        format!("{}s", window.as_secs())
    } else {
        format!("{}ms", window.as_millis())
    }
}

/// What the hub hands the writer: each engine's checkpoint, by window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub engines: Vec<(Duration, Checkpoint)>,
    /// The engines' emitted-span count when it was taken: once written, a crash sends again
    /// only spans emitted after this (shown as `eventspan_checkpoint_covered_spans`).
    pub emitted: u64,
}

/// An exporter's progress as the schedule reads it (a trait so the schedule is testable alone).
pub trait Mark {
    fn offered(&self) -> u64;
    fn settled(&self) -> u64;
    /// Since when every attempt of the exporter to deliver has failed.
    fn failing_since(&self) -> Option<Instant>;
}

impl Mark for Watermark {
    fn offered(&self) -> u64 {
        Watermark::offered(self)
    }
    fn settled(&self) -> u64 {
        Watermark::settled(self)
    }
    fn failing_since(&self) -> Option<Instant> {
        Watermark::failing_since(self)
    }
}

/// A snapshot and, per exporter, how many spans had been offered to it when it was taken.
pub struct Pending<M> {
    snapshot: Arc<Snapshot>,
    marks: Vec<(M, u64)>,
}

impl<M: Mark> Pending<M> {
    /// Every span the snapshot names has been settled by every exporter it went to, or that
    /// exporter has been failing for [`FAILING_EXPORTER_GRACE`] at `now`.
    pub fn settled(&self, now: Instant) -> bool {
        self.marks.iter().all(|(m, at)| {
            m.settled() >= *at
                || m.failing_since()
                    .is_some_and(|t| now.saturating_duration_since(t) >= FAILING_EXPORTER_GRACE)
        })
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.clone()
    }
}

/// When the hub takes a snapshot and when it hands it over. Pure: the hub calls it on its tick.
///
/// At most one snapshot is pending: a newer one is taken only once the pending one was handed
/// over, so a slow exporter delays checkpoints but never starves them (replacing the pending one
/// on every interval would, while delivery takes longer than the interval). When the pending one
/// settles with more emitted since it was taken and every exporter idle, a fresh snapshot (as
/// safe: nothing it names is unsettled) goes instead: otherwise a checkpoint written after a
/// burst was delivered would still lack the burst, and a crash then would send it again.
pub struct Schedule<M> {
    interval: Duration,
    last_taken: Option<Instant>,
    /// The engines' emitted-span count when the last snapshot was taken: an idle operator writes
    /// nothing.
    emitted_at_last: u64,
    pending: Option<Pending<M>>,
}

impl<M: Mark> Schedule<M> {
    pub fn new(interval: Duration) -> Self {
        Schedule {
            interval,
            last_taken: None,
            emitted_at_last: 0,
            pending: None,
        }
    }

    /// On each tick: takes a snapshot when one is due (an interval since the last, something
    /// emitted since, none pending), and returns the pending one once it is settled.
    /// `take` gives the engines' checkpoints and every exporter that may still hold their spans.
    pub fn tick(
        &mut self,
        now: Instant,
        emitted: u64,
        take: impl FnOnce() -> (Snapshot, Vec<M>),
    ) -> Option<Arc<Snapshot>> {
        let due = self
            .last_taken
            .is_none_or(|t| now.duration_since(t) >= self.interval);
        let mut take = Some(take);
        if self.pending.is_none()
            && due
            && emitted != self.emitted_at_last
            && let Some(take) = take.take()
        {
            self.pending = Some(Self::pending(take));
            self.last_taken = Some(now);
            self.emitted_at_last = emitted;
        }
        if !self.pending.as_ref().is_some_and(|p| p.settled(now)) {
            return None;
        }
        let settled = self.pending.take()?;
        if emitted != self.emitted_at_last
            && let Some(take) = take
        {
            let fresh = Self::pending(take);
            if fresh.settled(now) {
                self.last_taken = Some(now);
                self.emitted_at_last = emitted;
                return Some(fresh.snapshot);
            }
        }
        Some(settled.snapshot)
    }

    /// Stopping: a last snapshot of everything emitted so far, whatever the interval, if
    /// anything is unwritten. The caller checks it is settled once the exporters have stopped.
    pub fn last(
        &mut self,
        emitted: u64,
        take: impl FnOnce() -> (Snapshot, Vec<M>),
    ) -> Option<Pending<M>> {
        if self.pending.is_none() && emitted == self.emitted_at_last {
            return None;
        }
        self.pending = None;
        self.emitted_at_last = emitted;
        Some(Self::pending(take))
    }

    fn pending(take: impl FnOnce() -> (Snapshot, Vec<M>)) -> Pending<M> {
        let (snapshot, marks) = take();
        Pending {
            snapshot: Arc::new(snapshot),
            marks: marks
                .into_iter()
                .map(|m| {
                    let at = m.offered();
                    (m, at)
                })
                .collect(),
        }
    }
}

#[derive(Debug, Error)]
pub enum LoadError {
    #[error("cannot read ConfigMap {name}: {source}")]
    Api {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "ConfigMap {name} is not an eventspan checkpoint (no label {}={}); it is left alone and this window is not checkpointed",
        MANAGED_BY.0,
        MANAGED_BY.1
    )]
    Foreign { name: String },
    #[error("ConfigMap {name} has no binaryData.{DATA_KEY}")]
    NoData { name: String },
    #[error("ConfigMap {name} holds no usable checkpoint: {source}")]
    Corrupt {
        name: String,
        #[source]
        source: CheckpointError,
    },
}

impl LoadError {
    fn metric(&self) -> CheckpointLoad {
        match self {
            LoadError::Api { .. } => CheckpointLoad::Error,
            LoadError::Foreign { .. } => CheckpointLoad::Foreign,
            LoadError::NoData { .. } | LoadError::Corrupt { .. } => CheckpointLoad::Corrupt,
        }
    }
}

#[derive(Debug, Error)]
pub enum WriteError {
    #[error(
        "ConfigMap {name} changed since this process last read or wrote it (another leader wrote it?)"
    )]
    Conflict { name: String },
    #[error("cannot write ConfigMap {name}: {source}")]
    Api {
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// What this process knows of one checkpoint ConfigMap.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Slot {
    /// Not found, or not read (an error): the first write creates it (a conflict if it exists).
    Absent,
    /// Ours, at this resourceVersion: the next write replaces exactly that version.
    Ours(String),
    /// Someone else's: never overwritten.
    Foreign,
}

/// Reads and writes the checkpoint ConfigMaps of one leadership term.
pub struct Store {
    api: Api<ConfigMap>,
    leases: Api<Lease>,
    /// The Lease that says who leads, when there is leader election.
    lease: Option<String>,
    identity: String,
    slots: BTreeMap<String, Slot>,
    /// What was written last per window: an engine with nothing new is not written again.
    written: BTreeMap<Duration, Vec<u8>>,
    /// A conflict: another process writes these now.
    stopped: bool,
}

impl Store {
    pub fn new(client: Client, namespace: &str, identity: &str) -> Store {
        Store {
            api: Api::namespaced(client.clone(), namespace),
            leases: Api::namespaced(client, namespace),
            lease: None,
            identity: identity.to_string(),
            slots: BTreeMap::new(),
            written: BTreeMap::new(),
            stopped: false,
        }
    }

    /// The Lease (in the same namespace) that says who leads: a conflicting write is only the
    /// end of this store's writes when another process holds it.
    pub fn with_lease(mut self, lease: &str) -> Store {
        self.lease = Some(lease.to_string());
        self
    }

    /// Whether the Lease names this process as its holder; `false` without a Lease or when it
    /// cannot be read (stopping is the safe side).
    async fn still_leads(&self) -> bool {
        let Some(name) = &self.lease else {
            return false;
        };
        match self.leases.get_opt(name).await {
            Ok(Some(lease)) => {
                lease.spec.and_then(|s| s.holder_identity).as_deref() == Some(&*self.identity)
            }
            Ok(None) => false,
            Err(error) => {
                tracing::warn!(%error, lease = %name, "cannot read the Lease after a checkpoint conflict");
                false
            }
        }
    }

    /// Loads the checkpoint of every window an engine may have. A missing, corrupt or foreign
    /// ConfigMap, or one that cannot be read, is logged and counted, and that engine starts
    /// fresh (at least once: what its predecessor exported within `--max-event-age` may go out
    /// again).
    pub async fn load(
        &mut self,
        windows: impl IntoIterator<Item = Duration>,
        metrics: &Metrics,
    ) -> BTreeMap<Duration, Checkpoint> {
        let mut loaded = BTreeMap::new();
        for window in windows {
            let name = configmap_name(window);
            match self.load_one(&name).await {
                Ok(Some(checkpoint)) => {
                    tracing::info!(configmap = %name, spans = checkpoint.len(), "resuming from a checkpoint");
                    metrics.checkpoint_loaded(CheckpointLoad::Resumed);
                    loaded.insert(window, checkpoint);
                }
                Ok(None) => {
                    tracing::info!(configmap = %name, "no checkpoint: this window starts fresh");
                    metrics.checkpoint_loaded(CheckpointLoad::Missing);
                }
                Err(error) => {
                    tracing::warn!(%error, "ignoring a checkpoint: this window starts fresh");
                    metrics.checkpoint_loaded(error.metric());
                }
            }
        }
        loaded
    }

    async fn load_one(&mut self, name: &str) -> Result<Option<Checkpoint>, LoadError> {
        self.slots.insert(name.to_string(), Slot::Absent);
        let found = self
            .api
            .get_opt(name)
            .await
            .map_err(|source| LoadError::Api {
                name: name.to_string(),
                source,
            })?;
        let Some(cm) = found else {
            return Ok(None);
        };
        let ours = cm
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(MANAGED_BY.0))
            .is_some_and(|v| v == MANAGED_BY.1);
        if !ours {
            self.slots.insert(name.to_string(), Slot::Foreign);
            return Err(LoadError::Foreign {
                name: name.to_string(),
            });
        }
        // Ours even if unreadable: the next write replaces it with a good one.
        let version = cm.metadata.resource_version.clone().unwrap_or_default();
        self.slots.insert(name.to_string(), Slot::Ours(version));
        let bytes = cm
            .binary_data
            .as_ref()
            .and_then(|d| d.get(DATA_KEY))
            .ok_or_else(|| LoadError::NoData {
                name: name.to_string(),
            })?;
        Checkpoint::decode(&bytes.0)
            .map(Some)
            .map_err(|source| LoadError::Corrupt {
                name: name.to_string(),
                source,
            })
    }

    /// Whether a conflict stopped this store's writes.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Writes every engine's checkpoint that changed since its last write.
    pub async fn write_all(&mut self, snapshot: &Snapshot, metrics: &Metrics) {
        // Whether every engine's checkpoint is now as the snapshot has it.
        let mut covered = true;
        for (window, checkpoint) in &snapshot.engines {
            if self.stopped {
                return;
            }
            let bytes = checkpoint.encode();
            if self.written.get(window) == Some(&bytes) {
                continue;
            }
            match self.write(*window, &bytes).await {
                Ok(true) => {
                    metrics.checkpoint_written(CheckpointWrite::Ok, *window, &bytes, checkpoint);
                    self.written.insert(*window, bytes);
                }
                Ok(false) => covered = false,
                Err(error @ WriteError::Conflict { .. }) => {
                    covered = false;
                    metrics.checkpoint_written(CheckpointWrite::Conflict, *window, &[], checkpoint);
                    if self.still_leads().await {
                        // A deposed leader's late write: this process leads, and its checkpoint
                        // replaces that one at the next snapshot.
                        tracing::warn!(%error, "another process wrote a checkpoint while this one leads: taking it back");
                        let name = configmap_name(*window);
                        if let Err(error) = self.load_one(&name).await {
                            tracing::warn!(%error, "cannot read the checkpoint back");
                        }
                        self.written.remove(window);
                    } else {
                        tracing::warn!(%error, "checkpoint writes stop: another process leads");
                        self.stopped = true;
                    }
                }
                Err(error) => {
                    // Tried again with the next snapshot.
                    covered = false;
                    tracing::warn!(%error, "checkpoint write failed");
                    metrics.checkpoint_written(CheckpointWrite::Error, *window, &[], checkpoint);
                }
            }
        }
        if covered {
            metrics.checkpoint_covers(snapshot.emitted);
        }
    }

    /// Writes one checkpoint; `Ok(false)` when the ConfigMap is someone else's.
    async fn write(&mut self, window: Duration, bytes: &[u8]) -> Result<bool, WriteError> {
        let name = configmap_name(window);
        let slot = self.slots.get(&name).cloned().unwrap_or(Slot::Absent);
        let version = match slot {
            Slot::Foreign => return Ok(false),
            Slot::Absent => None,
            Slot::Ours(v) => Some(v),
        };
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                resource_version: version.clone(),
                labels: Some(
                    [
                        (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
                        (WINDOW_LABEL.to_string(), window_label(window)),
                    ]
                    .into(),
                ),
                annotations: Some(
                    [
                        (WRITER_ANNOTATION.to_string(), self.identity.clone()),
                        (
                            WRITTEN_AT_ANNOTATION.to_string(),
                            k8s_openapi::jiff::Timestamp::now().to_string(),
                        ),
                    ]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            binary_data: Some([(DATA_KEY.to_string(), ByteString(bytes.to_vec()))].into()),
            ..ConfigMap::default()
        };
        let params = PostParams {
            field_manager: Some(MANAGED_BY.1.to_string()),
            ..PostParams::default()
        };
        let result = match &version {
            // A create of a name that exists is a conflict too: someone wrote it since we looked.
            None => self.api.create(&params, &cm).await,
            Some(_) => self.api.replace(&name, &params, &cm).await,
        };
        match result {
            Ok(written) => {
                let version = written.metadata.resource_version.unwrap_or_default();
                self.slots.insert(name, Slot::Ours(version));
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                Err(WriteError::Conflict { name })
            }
            Err(source) => Err(WriteError::Api { name, source }),
        }
    }
}

/// The writer task of one leadership term: writes each settled snapshot the hub hands over
/// (only the newest, if several arrive while a write is under way: it names everything the older
/// ones did). Ends when the hub drops its sender (after its last snapshot), on a conflict, or at
/// once when leadership is lost: a deposed leader writes nothing more.
pub async fn write_loop(
    mut store: Store,
    mut snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    deposed: CancellationToken,
    metrics: Arc<Metrics>,
) {
    loop {
        tokio::select! {
            biased;
            _ = deposed.cancelled() => return,
            changed = snapshots.changed() => if changed.is_err() { return },
        }
        let Some(snapshot) = snapshots.borrow_and_update().clone() else {
            continue;
        };
        tokio::select! {
            biased;
            _ = deposed.cancelled() => return,
            _ = store.write_all(&snapshot, &metrics) => {}
        }
        if store.stopped() {
            return;
        }
    }
}

#[cfg(test)]
mod tests;

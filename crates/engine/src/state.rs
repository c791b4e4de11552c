//! The engine's state: what the [`Engine`] facade (`mod.rs`) and the modules that implement its
//! steps (placement, emission, progress) share. It imports only the engine's lower modules, so
//! those steps depend on it rather than on the facade, and the engine's modules form a DAG.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::attributes::AttributeCache;
use super::checkpoint::{ExportedSpan, MAX_CHECKPOINT_SPANS, OpenChange};
use super::config::{EngineConfig, EngineStats};
use super::handles::SpanSlot;
use super::held::HeldEvents;
use super::ids::{SpanId, TraceId};
use super::model::FinishedSpan;
use super::objects::ObjectTable;
use super::revisions::RevisionLog;
use super::spans::{OpenSpans, RootKey, TraceState};
use super::time::Timestamp;
use super::tracked::TrackedEvents;

/// The correlation engine (see the [module docs](super)): its methods are the facade in
/// `mod.rs` and the steps in `place.rs`, `emission.rs`, `progress.rs` and `applied.rs`.
pub struct Engine {
    pub(super) cfg: EngineConfig,
    pub(super) now: Timestamp,
    pub(super) objects: ObjectTable,
    pub(super) traces: FxHashMap<TraceId, TraceState>,
    /// The current trace of each root object's change: trace IDs are fixed when a trace starts,
    /// even if the root's uid only becomes known later.
    pub(super) roots: FxHashMap<RootKey, TraceId>,
    pub(super) spans: OpenSpans,
    pub(super) deadlines: BinaryHeap<Reverse<(Timestamp, TraceId)>>,
    pub(super) idle_traces: VecDeque<(Timestamp, TraceId)>,
    /// Traces forgotten after their root span was exported: a late event of the same change
    /// joins the exported root instead of exporting it again.
    pub(super) exported_roots: Recent<TraceId>,
    /// The spans exported last (trace, span): one whose event's record was evicted or expired and
    /// that comes again (a re-list, a reused uid) is not exported twice.
    pub(super) exported_spans: Recent<(TraceId, SpanId)>,
    /// The spans exported last, oldest first, with the occurrences each covered: the checkpoint
    /// a successor resumes from.
    pub(super) exported_log: VecDeque<ExportedSpan>,
    /// From a predecessor's checkpoint: which occurrences of an Event its span covered, until the
    /// Event is seen again.
    pub(super) resumed_events: FxHashMap<u128, (TraceId, u32, u32)>,
    /// From a predecessor's checkpoint: spans it exported that have not come round again yet.
    pub(super) resumed_spans: rustc_hash::FxHashSet<(TraceId, SpanId)>,
    /// From a predecessor's checkpoint: the changes of its open traces, by root, until the root
    /// is seen (which shows only its newest generation).
    pub(super) resumed_changes: FxHashMap<u128, Vec<OpenChange>>,
    pub(super) held: HeldEvents,
    /// The Git revisions GitOps roots reconciled: their change key (see `revisions.rs`).
    pub(super) revisions: RevisionLog,
    pub(super) tracked: TrackedEvents,
    pub(super) finished: Vec<FinishedSpan>,
    pub(super) stats: EngineStats,
    pub(super) attributes: AttributeCache,
    /// Scratch space of the emission check, kept to save an allocation per check.
    /// Per depth, the open spans of a trace in creation order: slot, when it may go, and
    /// whether it had no open children.
    pub(super) emission_order: Vec<Vec<(SpanSlot, Timestamp, bool)>>,
    /// Whether the stream of object state is complete, as far as the shell knows, for
    /// cluster-scoped watches (`None`) and per namespace (see [`Engine::set_state_gap`]): a
    /// namespace's interrupted watch holds back only its own traces' releases. Bounded by the
    /// namespaces the shell watches.
    pub(super) cluster_state: StateStream,
    pub(super) namespace_state: BTreeMap<Arc<str>, StateStream>,
    /// Derived scaling steps a controller's own step has taken over: each stands for one.
    pub(super) claimed_scale_ups: Recent<SpanId>,
}

/// Whether a watch of object state is interrupted (cluster-scoped, or one namespace's). While one
/// is, the status of an object it watches may be behind by any amount, so a rollout's end does not release the spans still waiting for their
/// objects: the status they wait for may be what the interrupted watch has yet to deliver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum StateStream {
    #[default]
    Whole,
    Interrupted,
    /// Whole again since this time: releases wait a window after it.
    CaughtUp(Timestamp),
}

/// The newest `cap` distinct values inserted, oldest forgotten first: a bounded memory of what
/// was already exported.
pub(super) struct Recent<T> {
    set: rustc_hash::FxHashSet<T>,
    order: VecDeque<T>,
    cap: usize,
}

impl<T: Copy + Eq + std::hash::Hash> Recent<T> {
    pub(super) fn new(cap: usize) -> Self {
        Recent {
            set: Default::default(),
            order: VecDeque::new(),
            cap,
        }
    }

    /// False when the value was already there.
    pub(super) fn insert(&mut self, value: T) -> bool {
        if !self.set.insert(value) {
            return false;
        }
        crate::queue::reserve_one(&mut self.order, self.cap + 1);
        self.order.push_back(value);
        if self.order.len() > self.cap
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }

    pub(super) fn contains(&self, value: &T) -> bool {
        self.set.contains(value)
    }
}

impl Engine {
    /// Keeps an exported span for the checkpoint, forgetting the oldest past its cap.
    pub(super) fn log_exported(&mut self, exported: ExportedSpan) {
        if self.exported_log.len() >= MAX_CHECKPOINT_SPANS {
            self.exported_log.pop_front();
        }
        self.exported_log.push_back(exported);
    }

    /// When spans waiting for status in a trace of `namespace` whose rollout was over at
    /// `over_seen` stop waiting: a window after it, or after the namespace's and the
    /// cluster-scoped state streams caught up; never while either is interrupted.
    pub(super) fn release_after(&self, over_seen: Timestamp, namespace: &str) -> Option<Timestamp> {
        let mut since = over_seen;
        let own = self.namespace_state.get(namespace).copied();
        for stream in [Some(self.cluster_state), own].into_iter().flatten() {
            match stream {
                StateStream::Whole => {}
                StateStream::Interrupted => return None,
                StateStream::CaughtUp(at) => since = since.max(at),
            }
        }
        Some(since.saturating_add(self.cfg.window))
    }
}

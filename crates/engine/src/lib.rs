//! The correlation engine: Kubernetes objects and events in, finished spans out.
//!
//! Pure and synchronous: no I/O, no clock. Every input carries the time it was observed, and the
//! engine's notion of "now" only moves forward with those times (or [`Engine::advance`]), so the
//! same inputs always give the same spans. The operator and `eventspan replay` drive it alike.
//!
//! How an event finds its place (see `place.rs`):
//! 1. under the span of the controller that said it acted on this very object ("Created pod: X");
//! 2. else beside the previous event on the same object (siblings under the same parent);
//! 3. else, if the object's creator normally announces it and has not yet, the event is held for
//!    the correlation window;
//! 4. else under the most recent span of the nearest owner in the same trace;
//! 5. else under the root of its trace: one trace per spec generation of the top-level object,
//!    its root synthesised from the object's newest spec change unless a top-level event is the
//!    root.
//!
//! Spans are emitted (see `emission.rs`) children first, once their end is known and their
//! subtree has been quiet for the window, or after the flush horizon.

mod applied;
mod attributes;
pub mod change;
mod checkpoint;
mod chunked;
mod config;
mod derive;
mod emission;
mod emit;
mod handles;
mod held;
pub mod ids;
pub mod limits;
pub mod model;
mod naming;
mod objects;
mod phases;
mod place;
mod progress;
mod queue;
mod revisions;
pub mod rules;
mod spans;
mod state;
pub mod time;
mod tolerance;
mod tracked;
pub mod vcs;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap;

pub use checkpoint::{
    Checkpoint, CheckpointError, ExportedOccurrences, ExportedSpan, MAX_CHECKPOINT_CHANGES,
    MAX_CHECKPOINT_SPANS, OpenChange,
};
pub use config::{EngineConfig, EngineStats, MAX_SPAN_DEPTH, Rejection};
use emission::Flush;
use held::{HeldEvents, Occurrence};
use ids::TraceId;
use model::{Change, EventRecord, EventTime, FinishedSpan, ObjectMeta, Observed};
pub use objects::CAP_SLACK as OBJECT_CAP_SLACK;
use objects::ObjectTable;
use spans::{OpenSpans, RootChange};
pub use state::Engine;
use state::{Recent, StateStream};
use time::Timestamp;
use tolerance::COARSE;
use tracked::TrackedEvents;

/// The best time for an occurrence, and whether it is only a whole second: precise times as
/// they are; a second-granularity time is replaced by the observation time when that is within
/// the same second (kubernetes#81026), and by the second's last millisecond when it was seen
/// just after the second ended ([`JUST_AFTER`]): it happened late in its second, and dated at
/// the second's start it would go before what happened earlier in that second, or after it,
/// as the order of arrival happens to say. Within that millisecond it keeps the order in which
/// such events were seen (the delay past the second, scaled down to under a millisecond).
fn resolve_time(t: EventTime, observed: Timestamp) -> (Timestamp, bool) {
    let after = observed.since(t.at);
    if t.precise {
        (t.at, false)
    } else if observed >= t.at && after < COARSE {
        (observed, false)
    } else if observed >= t.at && after < COARSE + JUST_AFTER {
        let last_millisecond = COARSE - Duration::from_millis(1);
        let order = (after - COARSE) / JUST_AFTER_PER_MILLISECOND;
        (t.at.saturating_add(last_millisecond + order), true)
    } else {
        (t.at, true)
    }
}

/// How long after its second ended an event seen is still taken as from the second's end: the
/// delivery delay of a watch on a quiet API server (13 ms measured in the `image` recording).
const JUST_AFTER: Duration = Duration::from_millis(250);
/// [`JUST_AFTER`] in milliseconds: dividing a delay below it by this gives under a millisecond.
const JUST_AFTER_PER_MILLISECOND: u32 = 250;

/// Whether an Event is about an object of its own namespace: the tenant boundary. Kubernetes
/// records the events of cluster-scoped objects (Nodes) in `default`.
fn in_own_namespace(event: &EventRecord) -> bool {
    let involved = &event.involved.namespace;
    if involved.is_empty() {
        event.namespace.is_empty() || event.namespace == "default"
    } else {
        *involved == event.namespace
    }
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Self {
        let remembered = cfg.max_remembered_spans;
        Engine {
            objects: ObjectTable::new(cfg.object_ttl, cfg.max_objects)
                .with_byte_cap(cfg.max_object_bytes),
            tracked: TrackedEvents::new(cfg.recent_ttl, cfg.max_tracked_events),
            cfg,
            now: Timestamp::MIN,
            traces: FxHashMap::default(),
            roots: FxHashMap::default(),
            spans: OpenSpans::default(),
            deadlines: BinaryHeap::new(),
            idle_traces: VecDeque::new(),
            exported_roots: Recent::new(remembered / 2),
            exported_spans: Recent::new(remembered),
            exported_log: VecDeque::new(),
            resumed_events: FxHashMap::default(),
            resumed_spans: Default::default(),
            resumed_changes: FxHashMap::default(),
            held: HeldEvents::default(),
            revisions: Default::default(),
            finished: Vec::new(),
            stats: EngineStats::default(),
            attributes: Default::default(),
            emission_order: Vec::new(),
            cluster_state: StateStream::Whole,
            namespace_state: BTreeMap::new(),
            claimed_scale_ups: Recent::new(remembered),
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn now(&self) -> Timestamp {
        self.now
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            objects: self.objects.len(),
            open_spans: self.spans.len(),
            open_traces: self.traces.len(),
            held_now: self.held.len(),
            object_bytes: self.objects.bytes(),
            departed_root_bytes: self.objects.departed_bytes(),
            open_span_bytes: self.spans.bytes(),
            held_bytes: self.held.bytes(),
            tracked_events: self.tracked.len(),
            objects_evicted: self.objects.evicted,
            tracked_events_evicted: self.tracked.evicted,
            ..self.stats.clone()
        }
    }

    /// Whether a trace has spans not emitted yet: a trace without any may still get more (an
    /// event that comes late joins its exported root), but none of those it had are still open.
    pub fn has_open_spans(&self, trace: TraceId) -> bool {
        self.traces
            .get(&trace)
            .is_some_and(|t| !t.pending.is_empty())
    }

    /// Spans finished since the last call, in the order they settled.
    pub fn drain_finished(&mut self) -> std::vec::Drain<'_, FinishedSpan> {
        self.finished.drain(..)
    }

    /// One change, from a recording or a watch, at the time it was observed or, failing that,
    /// the best time it carries: the one way replay and the operator feed an engine.
    pub fn apply(
        &mut self,
        Observed {
            change,
            observed_at,
        }: Observed,
    ) {
        let now = self.now;
        match change {
            Change::Event(event) => self.observe_event(event, observed_at),
            Change::Upsert(meta) => {
                let at = observed_at.or_else(|| meta.time_hint()).unwrap_or(now);
                self.upsert_object(&meta, at);
            }
            Change::Delete(meta) => {
                self.delete_object(&meta.namespace, &meta.uid, observed_at.unwrap_or(now))
            }
            Change::Ignore => {
                if let Some(at) = observed_at {
                    self.advance(at);
                }
            }
        }
    }

    /// An object was added or changed (from a watch, a re-list or a recording).
    pub fn upsert_object(&mut self, meta: &ObjectMeta, observed: Timestamp) {
        let bounded = limits::bounded_meta(meta);
        let meta = bounded.as_ref().unwrap_or(meta);
        self.advance(observed);
        self.objects.begin_input();
        let knew_generations = self
            .objects
            .lookup_uid(&meta.namespace, &meta.uid)
            .is_some_and(|id| self.objects.knows_generations(id));
        let id = self.objects.upsert(meta, observed, self.now);
        if !self.resumed_changes.is_empty()
            && let Some(changes) = self
                .resumed_changes
                .remove(&tracked::EventKey::of(&meta.namespace, &meta.uid).raw())
        {
            for c in changes.iter().filter(|c| c.generation < meta.generation) {
                self.objects
                    .add_earlier_change(id, c.generation, c.time, c.estimated);
            }
        }
        if !knew_generations {
            self.adopt_activity_trace(id);
        }
        if let Some(state) = &meta.state {
            self.observe_state(id, state, observed);
        }
        for occurrence in self.held.take_for(id) {
            self.place(occurrence, false);
        }
    }

    /// An object was deleted: it stays known for a while so late events still find their trace.
    pub fn delete_object(&mut self, namespace: &str, uid: &str, observed: Timestamp) {
        self.advance(observed);
        self.objects.delete(namespace, uid, observed, self.now);
        if let Some(id) = self.objects.lookup_uid(namespace, uid) {
            self.wake_on_delete(id);
        }
    }

    /// An event was added or updated (a repetition bumps its count). `observed` is when the
    /// watch delivered it; `None` when the source did not record that (a plain `kubectl get
    /// events` capture), and then the event's own time stands in for it.
    pub fn observe_event(
        &mut self,
        event: impl Into<Box<EventRecord>>,
        observed: Option<Timestamp>,
    ) {
        let mut event: Box<EventRecord> = event.into();
        let seen = observed.unwrap_or(event.last.at);
        self.advance(seen);
        self.stats.events += 1;
        if limits::bound_event(&mut event) {
            event.truncated = true;
        }
        if !in_own_namespace(&event) {
            self.stats.reject(Rejection::CrossNamespaceEvent);
            return;
        }
        if event
            .related
            .as_ref()
            .is_some_and(|r| r.namespace != event.involved.namespace)
        {
            self.stats.reject(Rejection::CrossNamespaceRelated);
            event.related = None;
        }
        let refine = |t: EventTime| match observed {
            Some(observed) => resolve_time(t, observed),
            None => (t.at, !t.precise),
        };
        let (last, last_coarse) = refine(event.last);
        let (first, first_coarse) = if event.first == event.last {
            (last, last_coarse)
        } else {
            refine(event.first)
        };
        let from_first = (first.min(last), first_coarse);
        let (mut start, mut coarse) = from_first;
        let mut first_count = 1;
        let mut exported_in = None;
        if event.count > 1 {
            // First seen with a count above one: the occurrences before it were not seen (they
            // happened before the watch, or their record expired). This is one occurrence, at
            // its last time; its span is its own (the count is in its ID), never a copy of one
            // an earlier sighting may have exported.
            first_count = event.count;
            (start, coarse) = (last, last_coarse);
        }
        // Deadlines count from when the engine saw it, which is never before "now".
        let observed = seen.max(self.now);
        let key = tracked::EventKey::of(&event.namespace, &event.uid);
        if let Some(track) = self.tracked.get(key) {
            if event.count <= track.count && last <= track.last {
                self.stats.duplicates += 1;
                return;
            }
            // A controller saying again that it acted on a child (the recorder folds a second
            // "Create Pod db-0" into the first event's count) reports a new action.
            if self.spans.contains_key(&track.span) && !rules::names_child(&event) {
                let occurrence = Occurrence {
                    event,
                    key,
                    observed,
                    first_count: 0,
                    start,
                    last,
                    coarse,
                    resolved: None,
                    exported_in: None,
                    claim_only: false,
                    claim_held: false,
                };
                return self.repeat(track.span, occurrence);
            }
            // A new episode of the same event: its span was exported, or this is a new action.
            first_count = track.count.saturating_add(1).min(event.count.max(1));
            (start, coarse) = (last, last_coarse);
        } else if let Some((trace, exported_first, exported_count)) =
            self.resumed_events.remove(&key.raw())
        {
            // A predecessor exported this Event's span: the same occurrences make the same span
            // again (placed for its children and its root, not emitted), and later ones continue
            // from the next count, as they would have in one uninterrupted process.
            if event.count <= exported_count {
                exported_in = Some(trace);
                first_count = exported_first;
                if exported_first == 1 {
                    (start, coarse) = from_first;
                }
            } else {
                first_count = exported_count.saturating_add(1);
                (start, coarse) = (last, last_coarse);
            }
        }
        let occurrence = Occurrence {
            event,
            key,
            observed,
            first_count,
            start,
            last,
            coarse,
            resolved: None,
            exported_in,
            claim_only: false,
            claim_held: false,
        };
        self.place(occurrence, false);
    }

    /// What a successor needs to resume without exporting a span twice: the newest
    /// [`MAX_CHECKPOINT_SPANS`] spans exported, oldest first.
    pub fn checkpoint(&self) -> Checkpoint {
        let mut changes: Vec<OpenChange> = self
            .traces
            .values()
            .filter(|t| !t.pending.is_empty())
            .filter_map(|t| {
                let RootChange::Generation(generation) = t.key.1 else {
                    return None;
                };
                let uid = self.objects.root_identity(t.root_object)?.uid?.clone();
                let change = self.objects.change(t.root_object, generation)?;
                Some(OpenChange {
                    root: tracked::EventKey::of(&t.namespace, &uid).raw(),
                    generation,
                    time: change.time,
                    estimated: change.estimated,
                })
            })
            .collect();
        // The oldest changes first: they are the ones a successor cannot learn from the objects.
        changes.sort_unstable_by_key(|c| (c.time, c.root, c.generation));
        changes.truncate(MAX_CHECKPOINT_CHANGES);
        Checkpoint {
            spans: self.exported_log.iter().copied().collect(),
            changes,
        }
    }

    /// Takes over from a predecessor's checkpoint, before any input: the spans it exported are
    /// not exported again when the same objects and events come round (a re-list), and an
    /// Event whose count grew continues from its next occurrence. Carried into this engine's own
    /// checkpoints, so a second restart still knows them.
    pub fn resume(&mut self, checkpoint: &Checkpoint) {
        for &exported in &checkpoint.spans {
            let pair = (exported.trace, exported.span);
            self.exported_spans.insert(pair);
            self.resumed_spans.insert(pair);
            if exported.span == ids::SpanId::for_root(exported.trace) {
                self.exported_roots.insert(exported.trace);
            }
            if let Some(e) = exported.event {
                let covered = (exported.trace, e.first_count, e.count);
                self.resumed_events.insert(e.key, covered);
            }
            self.log_exported(exported);
        }
        for change in &checkpoint.changes {
            self.resumed_changes
                .entry(change.root)
                .or_default()
                .push(*change);
        }
    }

    /// Moves time forward: releases held events and emits spans whose time has come. Time moves
    /// from deadline to deadline, as it does live, so a long jump (the end of a recording) treats
    /// each held event as it would have been treated at its own deadline.
    pub fn advance(&mut self, now: Timestamp) {
        if now <= self.now {
            return;
        }
        while let Some(step) = self.next_deadline().filter(|d| *d <= now) {
            self.now = self.now.max(step);
            while let Some(occurrence) = self.held.take_due(step) {
                self.stats.held_expired += 1;
                self.place(occurrence, false);
            }
            while let Some(&Reverse((at, trace))) = self.deadlines.peek() {
                if at > step {
                    break;
                }
                self.deadlines.pop();
                if self
                    .traces
                    .get(&trace)
                    .is_some_and(|t| t.scheduled == Some(at))
                {
                    self.evaluate(trace, Flush::Settled);
                }
            }
        }
        self.now = now;
        self.objects.expire(now);
        self.tracked.expire(now);
        self.expire_traces();
    }

    /// The earliest pending deadline: a held event's or a trace's emission check.
    fn next_deadline(&mut self) -> Option<Timestamp> {
        let trace = self.deadlines.peek().map(|Reverse((at, _))| *at);
        match (self.held.next_deadline(), trace) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The shell says whether a watch of object state in `namespace` (`None`: a cluster-scoped
    /// one) is interrupted (`true` from its first failure until it delivers again). Spans of
    /// that namespace's traces (every trace's, for a cluster-scoped watch) that wait for their
    /// objects' status are not released by their rollout's end while it is, and only a window
    /// after it catches up: after an API-server restart, the Deployment's watch can be back
    /// seconds before the Pods'. Other namespaces' traces go on: one tenant's revoked or failing
    /// watch holds back no one else's. Each span still stops waiting after `max_state_wait`, so
    /// a gap that never closes delays a trace by that much at most.
    pub fn set_state_gap(&mut self, namespace: Option<&str>, interrupted: bool) {
        let now = self.now;
        let stream = match namespace {
            None => &mut self.cluster_state,
            Some(ns) => self
                .namespace_state
                .entry(Arc::from(ns))
                .or_insert(StateStream::Whole),
        };
        match (*stream, interrupted) {
            (StateStream::Interrupted, false) => {
                *stream = StateStream::CaughtUp(now);
                let at = now.saturating_add(self.cfg.window);
                let waiting: Vec<TraceId> = self
                    .traces
                    .iter()
                    .filter(|(_, t)| t.rollout_over_seen.is_some() && !t.pending.is_empty())
                    .filter(|(_, t)| namespace.is_none_or(|ns| &*t.namespace == ns))
                    .map(|(id, _)| *id)
                    .collect();
                for trace in waiting {
                    self.schedule(trace, at);
                }
            }
            (_, true) => *stream = StateStream::Interrupted,
            (_, false) => {}
        }
    }

    /// Nothing watches a namespace any more: its objects are forgotten after the object TTL.
    pub fn release_namespace(&mut self, namespace: &str) {
        self.objects.release_namespace(namespace, self.now);
    }

    /// Sets the correlation window (the operator uses the longest its sessions ask for).
    pub fn set_window(&mut self, window: std::time::Duration) {
        self.cfg.window = window;
    }

    /// Emits every open span of the traces whose root matches, now, marking the spans whose end
    /// was not known yet as incomplete: their session (or the operator) is going away.
    pub fn abandon_where(&mut self, matches: impl Fn(&model::TraceRoot) -> bool) {
        let mut doomed: Vec<TraceId> = self
            .traces
            .iter()
            .filter(|(_, t)| !t.pending.is_empty() && matches(&emit::trace_root(&self.objects, t)))
            .map(|(id, _)| *id)
            .collect();
        doomed.sort_unstable();
        for trace in doomed {
            self.evaluate(trace, Flush::Abandon);
        }
    }

    /// End of input: lets every hold run out, as it would live, then emits every open span.
    pub fn finish(&mut self) {
        let longest_hold = self.cfg.window.max(self.cfg.root_settle);
        if self.now > Timestamp::MIN {
            self.advance(self.now.saturating_add(longest_hold).saturating_add(COARSE));
        }
        for occurrence in self.held.take_all() {
            self.place(occurrence, true);
        }
        let mut open: Vec<TraceId> = self
            .traces
            .iter()
            .filter(|(_, t)| !t.pending.is_empty())
            .map(|(id, _)| *id)
            .collect();
        open.sort_unstable();
        for trace in open {
            self.evaluate(trace, Flush::All);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The engine's purity is what its crate may link: a dependency added to its manifest has
    /// to be one that does no I/O, reads no clock and spawns nothing, and this list says which
    /// were judged so (tests may use anything).
    #[test]
    fn depends_only_on_crates_that_do_no_io() {
        const PURE: &[&str] = &[
            "rustc-hash",
            "smallvec",
            "thiserror",
            "xxhash-rust",
            "serde",
        ];
        let manifest = include_str!("../Cargo.toml");
        let mut section = "";
        let mut seen = Vec::new();
        for line in manifest.lines().map(str::trim) {
            if line.starts_with('[') {
                section = line;
            } else if section.ends_with("dependencies]")
                && !section.contains("dev-dependencies")
                && let Some((name, _)) = line.split_once('=')
                && !line.starts_with('#')
            {
                seen.push(name.trim().to_string());
            }
        }
        assert!(
            seen.iter().any(|d| d == "rustc-hash"),
            "read the manifest: {seen:?}"
        );
        for dep in &seen {
            assert!(
                PURE.contains(&dep.as_str()),
                "{dep} is not a dependency judged pure"
            );
        }
    }

    /// Whole-second event times: seen within their second, dated by the sighting; seen just
    /// after it, in its last millisecond, in the order seen; seen later, the second itself.
    #[test]
    fn a_whole_second_is_refined_by_when_it_was_seen() {
        let second = Timestamp::from_unix_secs(1_800_000_000);
        let coarse = EventTime {
            at: second,
            precise: false,
        };
        let seen = |ms: u64| second.saturating_add(Duration::from_millis(ms));
        assert_eq!(resolve_time(coarse, seen(400)), (seen(400), false));
        let (a, a_coarse) = resolve_time(coarse, seen(1_009));
        let (b, _) = resolve_time(coarse, seen(1_012));
        assert!(a_coarse);
        assert!(seen(999) <= a && a < b && b < seen(1_000), "{a:?} {b:?}");
        assert_eq!(resolve_time(coarse, seen(1_300)), (second, true));
        assert_eq!(resolve_time(coarse, seen(3_600_000)), (second, true));
        let precise = EventTime {
            at: seen(5),
            precise: true,
        };
        assert_eq!(resolve_time(precise, seen(1_100)), (seen(5), false));
    }
}

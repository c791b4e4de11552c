//! Which trace an event's span goes to: a root object's change (its generation, or a revision
//! a controller applied), found or started, with its root span.

use std::sync::Arc;
use std::time::Duration;

use crate::handles::SpanSlot;
use crate::held::Occurrence;
use crate::ids::{SpanId, TraceId};
use crate::objects::{ObjId, SpanRef};
use crate::spans::{OpenSpan, RootChange, RootKey, Source, TraceState};
use crate::state::Engine;
use crate::time::Timestamp;
use crate::tolerance::MAX_ROOT_LEAD;

impl Engine {
    /// Which change of `root` an event at `at` belongs to.
    pub(crate) fn root_key(&mut self, root: ObjId, at: Timestamp) -> RootKey {
        let known = self.objects.knows_generations(root);
        let generation = if known {
            self.objects.generation_at(root, at)
        } else {
            0
        };
        match self.revisions.at(root, at) {
            Some(revision) => (
                root,
                RootChange::Revision {
                    generation,
                    revision,
                },
            ),
            None if known => (root, RootChange::Generation(generation)),
            None => (root, RootChange::Activity),
        }
    }

    /// The trace of a change, if it has one. A burst of activity ends when its root is emitted.
    pub(crate) fn find_trace(&self, key: RootKey) -> Option<TraceId> {
        let id = *self.roots.get(&key)?;
        let trace = self.traces.get(&id)?;
        match key.1 {
            RootChange::Generation(_) | RootChange::Revision { .. } => Some(id),
            RootChange::Activity => trace.emitted_root_start.is_none().then_some(id),
        }
    }

    /// An object known only from events has just been seen through a watch: the trace of its
    /// current burst of activity becomes the trace of its current generation.
    pub(crate) fn adopt_activity_trace(&mut self, root: ObjId) {
        let activity = (root, RootChange::Activity);
        let Some(trace_id) = self.find_trace(activity) else {
            return;
        };
        let generation = self.objects.get(root).map_or(0, |o| o.generation);
        let key = (root, RootChange::Generation(generation));
        if self.roots.contains_key(&key) {
            return;
        }
        self.roots.remove(&activity);
        self.roots.insert(key, trace_id);
        if let Some(trace) = self.traces.get_mut(&trace_id) {
            trace.key = key;
            trace.generation = generation;
        }
    }

    /// The root span of the trace `subject` belongs to at `at`, starting the trace if needed.
    pub(super) fn root_of(&mut self, subject: ObjId, at: Timestamp) -> SpanRef {
        let root = self.objects.top(subject);
        let key = self.root_key(root, at);
        let trace = match self.find_trace(key) {
            Some(trace) => trace,
            None => {
                let change_time = match key.1 {
                    RootChange::Generation(g) => self.objects.change(root, g).map(|c| c.time),
                    // A revision's trace starts with its first event.
                    RootChange::Activity | RootChange::Revision { .. } => None,
                };
                let start = match change_time {
                    Some(t) if t <= at && at.since(t) <= MAX_ROOT_LEAD => t,
                    _ => at,
                };
                self.start_trace(key, Source::SyntheticRoot, root, None, start, 1)
            }
        };
        let span = self.spans.hinted(SpanId::for_root(trace));
        let start = self.spans.get_at(span).map_or(at, |s| s.start);
        SpanRef::new(span, trace, start, start, self.now, None)
    }

    fn start_trace(
        &mut self,
        key: RootKey,
        source: Source,
        subject: ObjId,
        about: Option<ObjId>,
        start: Timestamp,
        count: u32,
    ) -> TraceId {
        let now = self.now;
        let (root, change) = key;
        let name = match self.objects.get(root) {
            Some(obj) => match &obj.uid {
                Some(uid) => uid.to_string(),
                // Known by name only: the name stands in for the uid.
                None => format!("{}/{}/{}", obj.kind, obj.namespace, obj.name),
            },
            None => String::new(),
        };
        let (id, generation) = match change {
            RootChange::Generation(g) => (TraceId::for_change(&name, g), g),
            RootChange::Revision {
                generation,
                revision,
            } => (
                TraceId::for_revision(&name, generation, revision),
                generation,
            ),
            RootChange::Activity => {
                // A burst ends when its root is exported; a late event from the same instant
                // starts the next one, which must not take the exported trace's ID (its root
                // span would be exported twice). The next free nanosecond keeps it
                // deterministic.
                let mut seed = start;
                let mut id = TraceId::for_activity(&name, seed);
                while self.traces.contains_key(&id) {
                    seed = seed.saturating_add(Duration::from_nanos(1));
                    id = TraceId::for_activity(&name, seed);
                }
                (id, 0)
            }
        };
        let root_span = SpanId::for_root(id);
        self.roots.insert(key, id);
        let namespace = self
            .objects
            .get(root)
            .map_or_else(|| Arc::from(""), |o| o.namespace.clone());
        if let Some(open) = self.traces.get_mut(&id) {
            // The same change under a new entry: its root object was evicted at the cap and has
            // come back. The open trace goes on; starting it again would orphan its spans.
            self.roots.remove(&open.key);
            self.roots.insert(key, id);
            let departed = std::mem::replace(&mut open.root_object, root);
            open.key = key;
            self.objects.unpin_root(departed);
            self.objects.pin_root(root);
            return id;
        }
        self.stats.traces_started += 1;
        // Until the trace is forgotten, its spans are named after its root, if the root's entry
        // goes too.
        self.objects.pin_root(root);
        // This change's trace was exported and then forgotten: late spans join its exported
        // root, which is not exported again.
        let exported = self.exported_roots.contains(&id);
        let state = |pending, emitted_root_start| TraceState {
            root_object: root,
            namespace,
            generation,
            emitted_root_start,
            pending,
            scheduled: None,
            last_activity: now,
            key,
            rollout_over_seen: None,
        };
        if exported {
            self.traces.insert(id, state(Vec::new(), Some(start)));
            let forget_at = now.saturating_add(self.cfg.recent_ttl);
            self.idle_traces.push_back((forget_at, id));
            return id;
        }
        let root_slot = self.spans.insert(
            root_span,
            OpenSpan {
                trace: id,
                parent: None,
                depth: 0,
                source,
                subject,
                about,
                start,
                last: start,
                end: None,
                children_end: start,
                children_start: None,
                touched: now,
                open_children: 0,
                first_count: 1,
                count,
                repeat_interval: Duration::ZERO,
                repeats: Vec::new(),
                // A spec generation's rollout ends when the root object's status says so.
                waits_for: matches!(change, RootChange::Generation(_)).then_some(root),
                awaiting: false,
                state_end: None,
                outcome: None,
            },
        );
        self.traces.insert(id, state(vec![root_slot], None));
        self.schedule(id, now.saturating_add(self.cfg.horizon));
        if self.spans.len() > self.cfg.max_open_spans
            || self.spans.bytes() > self.cfg.max_open_span_bytes
        {
            self.force_oldest_traces();
        }
        id
    }

    /// Makes an event the root of `root`'s current trace, unless that trace's root is already an
    /// event or already exported.
    pub(crate) fn place_as_root(
        &mut self,
        occurrence: Occurrence,
        root: ObjId,
        subject: ObjId,
        about: Option<ObjId>,
    ) -> Result<(), Occurrence> {
        let key = self.root_key(root, occurrence.start);
        let action = occurrence.resolved.and_then(|r| r.action);
        let (event_key, count, last, start) = (
            occurrence.key,
            occurrence.event.count,
            occurrence.last,
            occurrence.start,
        );
        let trace = match self.find_trace(key) {
            None => self.start_trace(
                key,
                Source::event(occurrence.event),
                subject,
                about,
                start,
                count,
            ),
            Some(trace) => {
                let root_span = SpanId::for_root(trace);
                let Some(span) = self.spans.get_mut(&root_span) else {
                    return Err(occurrence);
                };
                if !matches!(span.source, Source::SyntheticRoot) {
                    return Err(occurrence);
                }
                span.start = span.children_start.map_or(start, |c| c.min(start));
                span.last = span.last.max(span.start);
                span.count = count;
                let bytes = occurrence.event.heap_bytes();
                span.source = Source::event(occurrence.event);
                span.subject = subject;
                span.about = about;
                self.spans.grew(SpanSlot::of(root_span), bytes);
                self.touch(root_span);
                trace
            }
        };
        let root_span = SpanId::for_root(trace);
        self.tracked
            .record(event_key, root_span, count, last, self.now);
        if let Some(child) = about {
            let root_span = self.spans.hinted(root_span);
            let start = self.spans.get_at(root_span).map_or(start, |s| s.start);
            let span = SpanRef::new(root_span, trace, start, start, self.now, Some(child));
            self.acted_on(child, span, action);
        }
        Ok(())
    }
}

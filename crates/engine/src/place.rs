//! Where an event's span goes: which trace, under which parent. This file decides the parent
//! (a controller's announcement, the owner chain, holding an event until its parent comes) and
//! opens the span; `traces.rs` finds or starts the trace of a root object's change, `adopt.rs`
//! moves spans under an announcement that came after them.

use std::time::Duration;

use super::config::{MAX_SPAN_DEPTH, Rejection};
use super::derive::Step;
use super::emission;
use super::handles::SpanSlot;
use super::held::{Occurrence, Resolved};
use super::ids::SpanId;
use super::objects::{ObjId, SpanRef};
use super::rules::{self, Action};
use super::spans::{OpenSpan, RootChange, Source};
use super::state::Engine;
use super::time::Timestamp;
use super::tolerance::COARSE;

mod adopt;
mod traces;

/// Same-second events without better times keep their arrival order this far apart.
const ORDER_NUDGE: Duration = Duration::from_micros(1);

/// The latest an occurrence can have happened: a bare whole second means up to a second later.
fn latest_time(occurrence: &Occurrence) -> Timestamp {
    if occurrence.coarse {
        occurrence.start.saturating_add(COARSE)
    } else {
        occurrence.start
    }
}

/// How much earlier than the controller's event about an action a precise event that follows
/// the action may be stamped (measured: a kubelet's `Killing` 0.4 ms before `Deleted pod: X`).
const REPORTED_BEFORE_ACTION: Duration = Duration::from_millis(100);

impl Engine {
    pub(super) fn place(&mut self, mut occurrence: Occurrence, force: bool) {
        let now = self.now;
        self.objects.begin_input();
        let resolved = match occurrence.resolved {
            Some(r) if self.objects.get(r.subject).is_some() => r,
            _ => self.resolve(&occurrence),
        };
        occurrence.resolved = Some(resolved);
        let Resolved {
            subject,
            about,
            action,
        } = resolved;
        if self.before_known_changes(subject, &occurrence) {
            self.stats.earlier_change += 1;
            return;
        }
        if action == Some(Action::Create)
            && !occurrence.event.derived
            && let Some(derived) = about.and_then(|child| self.derived_creation_of(child))
        {
            return self.supersede_derived(derived, occurrence);
        }
        if action == Some(Action::Delete)
            && !occurrence.event.derived
            && let Some(derived) = about.and_then(|child| self.derived_deletion_of(child))
        {
            return self.supersede_derived(derived, occurrence);
        }
        if let Some(step) = action.and_then(Step::of)
            && !occurrence.event.derived
            && let Some(derived) =
                about.and_then(|rs| self.unclaimed_scale(rs, occurrence.start, step))
        {
            self.claimed_scale_ups.insert(derived.span_id());
            return self.supersede_derived(derived, occurrence);
        }
        if !occurrence.claim_held
            && let Some((waiting_for, deadline)) = self.claim_applied(&occurrence, subject, force)
        {
            // The report waits for the generations it may have caused; its own span does not.
            let copy = occurrence.claim_copy();
            self.hold(waiting_for, None, copy, deadline);
            occurrence.claim_held = true;
        }
        if occurrence.claim_only {
            return;
        }
        if occurrence.event.top_level || self.note_revision(subject, &occurrence) {
            let root = self.objects.top(subject);
            if let Some(deadline) = self.unsettled_root(root, &occurrence, force) {
                return self.hold(root, about, occurrence, deadline);
            }
            occurrence = match self.place_as_root(occurrence, root, subject, about) {
                Ok(()) => return,
                Err(occurrence) => occurrence,
            };
        }
        // A controller starting or tending one run of itself (a CronJob's Job): the run has a
        // trace of its own, rooted at the event that created it.
        if let Some(run) =
            about.filter(|&c| self.objects.owner_of(c) == Some(subject) && self.objects.is_run(c))
        {
            if let Some(deadline) = self.unsettled_root(run, &occurrence, force) {
                return self.hold(run, about, occurrence, deadline);
            }
            if action == Some(Action::Create) {
                occurrence = match self.place_as_root(occurrence, run, subject, about) {
                    Ok(()) => return,
                    Err(occurrence) => occurrence,
                };
            }
            let at = occurrence.start;
            let parent = match self.creator_span(run, at, None) {
                Some(parent) => parent,
                None => self.root_of(run, at),
            };
            return self.open_span(occurrence, subject, about, parent);
        }
        let at = occurrence.start;
        let window_end = occurrence.observed.saturating_add(self.cfg.window);
        // A held event says a controller acted on this object: wait for it to be placed, as it
        // may be this event's parent (if it happened by the latest a parent may have, see
        // `creator_span`). It releases us when it is placed.
        if !force
            && self
                .held
                .is_announced_by(subject, at.saturating_add(COARSE))
            && window_end > now
        {
            return self.hold(subject, about, occurrence, window_end);
        }
        let (kind, reason) = (&occurrence.event.involved.kind, &occurrence.event.reason);
        if !force && window_end > now && self.awaits_announcement(subject, kind, reason) {
            return self.hold(subject, about, occurrence, window_end);
        }
        let follows_action = rules::follows(kind, reason);
        let follows = follows_action.map(|_| {
            if occurrence.coarse {
                COARSE
            } else {
                REPORTED_BEFORE_ACTION
            }
        });
        let mut creator = self.creator_span(subject, at, follows);
        if let Some(older) = creator
            && self.is_of_older_change(&older, at)
        {
            // Its controller may be about to announce acting on it for the current change.
            let deadline = occurrence.observed.saturating_add(self.cfg.root_settle);
            if !force && deadline > now {
                return self.hold(subject, about, occurrence, deadline);
            }
            // It happened during a newer change: it belongs to that change's trace, never under
            // the older change's span (a late "Deleted pod: X", or the `Killing` after it, would
            // otherwise land in the previous rollout's trace, sent long ago). When the action's
            // announcement comes, it adopts the event (see `adopt_later_events`).
            creator = None;
        }
        // An anchor that happened after this event (a later step of a rollout, which the
        // object's later events were placed under) cannot have caused it.
        let sibling = self
            .sibling_anchor(subject)
            .filter(|r| r.happened <= at.saturating_add(COARSE))
            .filter(|r| !self.is_of_older_change(r, at));
        let parent = match creator.or(sibling) {
            Some(parent) => parent,
            None => {
                if !force && self.awaits_creator(subject, at) && window_end > now {
                    return self.hold(subject, about, occurrence, window_end);
                }
                let follows_deletion = follows_action == Some(Action::Delete);
                let derived = self
                    .derive_creation(subject, at)
                    .or_else(|| {
                        follows_deletion
                            .then(|| self.derive_deletion(subject, at))
                            .flatten()
                    })
                    .or_else(|| {
                        let step = action.and_then(Step::before)?;
                        self.derive_scale(subject, at, step)
                    })
                    .and_then(|()| self.creator_span(subject, at, follows));
                match derived.or_else(|| self.owner_span(subject, at)) {
                    Some(parent) => parent,
                    None => {
                        let deadline = occurrence.observed.saturating_add(self.cfg.root_settle);
                        if !force && deadline > now {
                            return self.hold(subject, about, occurrence, deadline);
                        }
                        self.root_of(subject, at)
                    }
                }
            }
        };
        self.open_span(occurrence, subject, about, parent);
    }

    /// Whether an event happened before the first change of its root this engine knows of,
    /// when that change's time is a recorded one (managedFields), not an estimate: it belongs to
    /// an earlier change, whose trace this engine never saw (a restart, or a re-list long after
    /// it). A change's trace holds only what happened from the change on.
    fn before_known_changes(&mut self, subject: ObjId, occurrence: &Occurrence) -> bool {
        let root = self.objects.top(subject);
        self.objects.first_change(root).is_some_and(|c| {
            !c.estimated && latest_time(occurrence).saturating_add(COARSE) < c.time
        })
    }

    /// Notes the Git revision an event on a root says it reconciled: such an event roots the
    /// trace of its revision if it is the first of it (see `revisions.rs`).
    fn note_revision(&mut self, subject: ObjId, occurrence: &Occurrence) -> bool {
        let revision = &occurrence.event.revision;
        if revision.is_empty() || self.objects.top(subject) != subject {
            return false;
        }
        self.revisions.note(subject, revision, occurrence.start);
        true
    }

    /// When a trace for `root` would start now but the root has not been seen through a watch,
    /// the deadline until which to wait for it: its uid and generation decide the trace ID, and
    /// its watch event may be just behind this one. Nothing to wait for if its trace exists.
    fn unsettled_root(
        &mut self,
        root: ObjId,
        occurrence: &Occurrence,
        force: bool,
    ) -> Option<Timestamp> {
        if force || self.objects.knows_generations(root) {
            return None;
        }
        let key = self.root_key(root, occurrence.start);
        if self.find_trace(key).is_some() {
            return None;
        }
        let deadline = occurrence.observed.saturating_add(self.cfg.root_settle);
        (deadline > self.now).then_some(deadline)
    }

    /// Finds the objects an event concerns and learns what its message says about them.
    fn resolve(&mut self, occurrence: &Occurrence) -> Resolved {
        let now = self.now;
        let event = &occurrence.event;
        let subject = self.objects.resolve_ref(&event.involved, now);
        let mut about = None;
        let mut action = None;
        if let Some(m) = rules::apply(&event.involved.kind, &event.reason, &event.message) {
            match m.effect {
                rules::Effect::Child(kind) => {
                    let creates = m.action == Action::Create;
                    let child = self.objects.resolve_named(
                        kind,
                        &event.involved.namespace,
                        super::limits::field(m.name),
                        latest_time(occurrence),
                        creates,
                        now,
                    );
                    if child == subject {
                        // "Created pod: X" on pod X: a span of X about X would become its own
                        // parent's parent. No controller says that; the message is ignored.
                        self.stats.reject(Rejection::SelfReference);
                    } else {
                        self.objects.infer_owner(child, subject);
                        about = Some(child);
                        action = Some(m.action);
                    }
                }
                rules::Effect::Nominee(kind) => {
                    // Cluster-scoped: namespace "". Not the pod's child: no owner is inferred.
                    let nominee = self.objects.resolve_named(
                        kind,
                        "",
                        super::limits::field(m.name),
                        latest_time(occurrence),
                        false,
                        now,
                    );
                    about = Some(nominee).filter(|&n| n != subject);
                    action = Some(m.action);
                }
                rules::Effect::Node => {
                    let node = self.objects.strings.intern(super::limits::field(m.name));
                    if let Some(obj) = self.objects.get_mut(subject) {
                        obj.node = Some(node);
                    }
                }
            }
        }
        if about.is_none()
            && let Some(related) = &event.related
        {
            about = Some(self.objects.resolve_ref(related, now)).filter(|&r| r != subject);
        }
        Resolved {
            subject,
            about,
            action,
        }
    }

    pub(super) fn hold(
        &mut self,
        subject: ObjId,
        about: Option<ObjId>,
        occurrence: Occurrence,
        deadline: Timestamp,
    ) {
        if self.held.len() >= self.cfg.max_held_events
            || self.held.bytes() >= self.cfg.max_held_bytes
        {
            self.stats.held_overflow += 1;
            return self.place(occurrence, true);
        }
        self.stats.held += 1;
        self.held.hold(subject, about, occurrence, deadline);
    }

    pub(super) fn fresh(&self, r: &SpanRef) -> bool {
        r.at.saturating_add(self.cfg.recent_ttl) > self.now && self.traces.contains_key(&r.trace)
    }

    /// The span of the controller that named `subject` as the child it acted on: the newest that
    /// started by `at`, or, allowing for second-granularity times, just after it. An event that
    /// follows a controller's action (`Killing` after `Deleted pod: X`) takes the newest that
    /// started by `at` plus `follows`: the kubelet may report before the controller's event
    /// about the same action is stamped.
    fn creator_span(
        &mut self,
        subject: ObjId,
        at: Timestamp,
        follows: Option<Duration>,
    ) -> Option<SpanRef> {
        let obj = self.objects.get(subject)?;
        let fresh = || obj.acted_on.iter().filter(|r| self.fresh(r));
        let newest_by = |limit: Timestamp| fresh().rev().find(|r| r.start <= limit);
        let happened_by = |limit: Timestamp| fresh().rev().find(|r| r.happened <= limit);
        let r = match follows {
            Some(slack) => happened_by(at.saturating_add(slack)),
            None => {
                newest_by(at).or_else(|| fresh().find(|r| r.start <= at.saturating_add(COARSE)))
            }
        }
        .copied()?;
        // A span naming this object from another object's trace (an event's `related` object,
        // say) must not pull it out of its own trace. A nominee (a NodeClaim) is the exception:
        // what it is for is the pod it was nominated to, so the nomination is its parent.
        if obj.has_owner()
            && !rules::is_nominee(&obj.kind)
            && self.traces.get(&r.trace).map(|t| t.root_object) != Some(self.objects.top(subject))
        {
            return None;
        }
        Some(r)
    }

    /// Whether a span belongs to a generation of its root older than the one current at `at`.
    fn is_of_older_change(&mut self, r: &SpanRef, at: Timestamp) -> bool {
        let Some(trace) = self.traces.get(&r.trace) else {
            return false;
        };
        let (root, RootChange::Generation(generation)) = trace.key else {
            return false;
        };
        self.objects.knows_generations(root) && self.objects.generation_at(root, at) > generation
    }

    /// The parent of the previous event on the same object, unless that was a trace root: which
    /// trace a root-level event belongs to depends on the generation, decided afresh each time.
    /// (The caller also leaves out an anchor of an older change: an old pod crash-looping through
    /// a rollout reports into the rollout's trace, as a successor process would place it.)
    fn sibling_anchor(&self, subject: ObjId) -> Option<SpanRef> {
        let r = self.objects.get(subject)?.anchor?;
        (self.fresh(&r) && r.span_id() != SpanId::for_root(r.trace)).then_some(r)
    }

    /// Whether a controller normally announces creating this object and has not done so yet.
    fn awaits_creator(&mut self, subject: ObjId, at: Timestamp) -> bool {
        let owner_kind = self
            .objects
            .owner_of(subject)
            .and_then(|o| self.objects.get(o))
            .map(|o| o.kind.clone());
        let Some(obj) = self.objects.get(subject) else {
            return false;
        };
        if !obj.acted_on.is_empty() || obj.anchor.is_some() {
            return false;
        }
        match owner_kind {
            Some(owner) => {
                rules::announces(&owner, &obj.kind, Action::Create)
                    && obj
                        .created
                        .is_none_or(|c| at.since(c) < self.cfg.window + COARSE)
            }
            // Not seen live yet: maybe its creator's message or its own watch event is on the way.
            None => !obj.live && rules::creation_announced(&obj.kind),
        }
    }

    /// Whether this event follows an action that the object's owner announces (a pod's
    /// `Killing` follows its controller's `Deleted pod: X`) and the announcement has not come.
    fn awaits_announcement(&mut self, subject: ObjId, kind: &str, reason: &str) -> bool {
        let Some(action) = rules::follows(kind, reason) else {
            return false;
        };
        let owner_kind = self
            .objects
            .owner_of(subject)
            .and_then(|o| self.objects.get(o))
            .map(|o| o.kind.clone());
        let Some(obj) = self.objects.get(subject) else {
            return false;
        };
        // A ReplicaSet whose owner's scale-ups are used up by the pods it created for them
        // creates the next pod for a scale-up still on its way (an HPA's second scale of the
        // same ReplicaSet): placed now, it would hang under the previous scale, in the
        // previous change's trace, from which no later adoption can move it.
        let used_up = action == Action::ScaleUp && obj.creations_due == Some(0);
        owner_kind.is_some_and(|owner| rules::announces(&owner, &obj.kind, action))
            && (obj.announced & action.bit() == 0 || used_up)
    }

    /// The most recent span on or about the nearest owner, in the trace this event belongs to,
    /// leaving out the owner's spans about another of its children ("Created pod: <sibling>").
    fn owner_span(&mut self, subject: ObjId, at: Timestamp) -> Option<SpanRef> {
        let chain = self.objects.trace_chain(subject);
        let key = self.root_key(*chain.last()?, at);
        let trace = self.find_trace(key)?;
        let limit = at.saturating_add(COARSE);
        // By name: a replaced pod (a StatefulSet's db-0) may have an entry per incarnation.
        let named = |id: ObjId| {
            self.objects
                .get(id)
                .map(|o| (o.kind.clone(), o.name.clone()))
        };
        let subject_name = named(subject);
        let about_other = |r: &SpanRef, owner: ObjId| {
            r.about
                .is_some_and(|about| about != owner && named(about) != subject_name)
        };
        chain.iter().find_map(|&owner| {
            let obj = self.objects.get(owner)?;
            obj.spans_on
                .iter()
                .filter(|r| !about_other(r, owner))
                .chain(obj.acted_on.iter())
                .filter(|r| r.trace == trace && r.start <= limit && self.fresh(r))
                .max_by_key(|r| (r.start, r.span_id()))
                .copied()
        })
    }

    // ---- traces ------------------------------------------------------------------------------

    fn open_span(
        &mut self,
        occurrence: Occurrence,
        subject: ObjId,
        about: Option<ObjId>,
        mut parent: SpanRef,
    ) {
        let now = self.now;
        let action = occurrence.resolved.and_then(|r| r.action);
        let span_id = SpanId::for_event(&occurrence.event.uid, occurrence.first_count);
        if occurrence.exported_in.is_some_and(|t| t != parent.trace) {
            // A predecessor exported it in the trace of an earlier change.
            self.stats.earlier_change += 1;
            return;
        }
        if let Some(open) = self.spans.get(&span_id) {
            if open.trace != parent.trace || open.subject != subject {
                // Another event with the same uid: only a crafted recording has one.
                self.stats.reject(Rejection::UidCollision);
                return;
            }
            // The same occurrence held twice (a repetition arrived while the first was held).
            return self.repeat(span_id, occurrence);
        }
        if self
            .spans
            .get_at(parent.span())
            .is_some_and(|p| p.depth >= MAX_SPAN_DEPTH)
        {
            self.stats.reject(Rejection::TooDeep);
            let root = self.spans.hinted(SpanId::for_root(parent.trace));
            parent.set_span(root);
            parent.start = self.spans.get_at(root).map_or(parent.start, |s| s.start);
        }
        let mut start = occurrence.start;
        let recent = || {
            self.objects
                .get(subject)
                .into_iter()
                .flat_map(|o| o.spans_on.iter())
                .filter(|r| r.trace == parent.trace)
        };
        if occurrence.coarse {
            // All we know is the second: keep the order in which the events were reported.
            if let Some(latest) = recent().map(|r| r.start).max()
                && latest >= start
                && latest < start.saturating_add(COARSE)
            {
                start = latest.saturating_add(ORDER_NUDGE);
            }
        }
        let happened = start;
        self.objects
            .note_pod_event(subject, &occurrence.event, happened);
        let parent_slot = parent.span();
        let depth = match self.spans.get_at_mut(parent_slot) {
            Some(p) if p.is_root() => {
                // A synthesised root's time is coarse: the root moves, not the child.
                p.start = p.start.min(start);
                p.children_start = Some(p.children_start.map_or(start, |c| c.min(start)));
                p.open_children += 1;
                1
            }
            Some(p) => {
                start = start.max(p.start);
                p.open_children += 1;
                p.depth.saturating_add(1)
            }
            None => {
                start = start.max(parent.start);
                1
            }
        };
        if let Some(root_start) = self
            .traces
            .get(&parent.trace)
            .and_then(|t| t.emitted_root_start)
        {
            start = start.max(root_start);
        }
        // A span on an object lasts until the next event on that object, by time.
        let mut end = None;
        if let Some(obj) = self.objects.get(subject) {
            for r in obj.spans_on.iter().filter(|r| r.trace == parent.trace) {
                if r.start > start {
                    end = Some(end.map_or(r.start, |e: Timestamp| e.min(r.start)));
                } else if let Some(earlier) = self.spans.get_at_mut(r.span()) {
                    earlier.end = Some(earlier.end.map_or(start, |e| e.min(start)));
                }
            }
        }
        let (count, last) = (occurrence.event.count.max(1), occurrence.last.max(start));
        self.count_creations(&occurrence, subject, about, action);
        self.tracked
            .record(occurrence.key, span_id, count, last, now);
        let slot = self.spans.insert(
            span_id,
            OpenSpan {
                trace: parent.trace,
                parent: Some(parent_slot),
                depth,
                source: Source::event(occurrence.event),
                subject,
                about,
                start,
                last,
                end,
                children_end: start,
                children_start: None,
                touched: now,
                open_children: 0,
                first_count: occurrence.first_count,
                count,
                repeat_interval: Duration::ZERO,
                repeats: Vec::new(),
                // A creation's span lasts until what it created is ready.
                waits_for: about.filter(|_| action == Some(Action::Create)),
                awaiting: false,
                state_end: None,
                outcome: None,
            },
        );
        let here = SpanRef::new(slot, parent.trace, start, happened, now, about);
        if let Some(obj) = self.objects.get_mut(subject) {
            obj.spans_on.insert(here);
            obj.anchor = Some(parent);
        }
        self.touch_at(slot);
        if let Some(trace) = self.traces.get_mut(&parent.trace) {
            trace.pending.push(slot);
            trace.last_activity = now;
            let check = now.saturating_add(self.cfg.window);
            emission::queue_check(&mut self.deadlines, parent.trace, trace, check);
        }
        if self.spans.len() > self.cfg.max_open_spans
            || self.spans.bytes() > self.cfg.max_open_span_bytes
        {
            self.force_oldest_traces();
        }
        if let Some(child) = about {
            self.acted_on(child, here, action);
        }
    }

    /// Keeps [`ObjEntry::creations_due`](crate::objects::ObjEntry) of a ReplicaSet: its
    /// owner's scale-up adds the pods it asks for (or makes the count unknown for good, if it
    /// does not say), each `Created pod` on it claims one.
    fn count_creations(
        &mut self,
        occurrence: &Occurrence,
        subject: ObjId,
        about: Option<ObjId>,
        action: Option<Action>,
    ) {
        let event = &occurrence.event;
        if action == Some(Action::ScaleUp)
            && let Some(obj) = about.and_then(|child| self.objects.get_mut(child))
        {
            let first = obj.announced & Action::ScaleUp.bit() == 0;
            obj.creations_due = match (rules::scale_up_count(&event.message), obj.creations_due) {
                (Some(n), Some(due)) => Some(due.saturating_add(n)),
                (Some(n), None) if first => Some(n),
                _ => None,
            };
        } else if rules::follows(&event.involved.kind, &event.reason) == Some(Action::ScaleUp)
            && let Some(obj) = self.objects.get_mut(subject)
        {
            obj.creations_due = obj.creations_due.map(|due| due.saturating_sub(1));
        }
    }

    /// Folds a repetition of an event into its open span.
    pub(super) fn repeat(&mut self, span_id: SpanId, occurrence: Occurrence) {
        let max_events = self.cfg.max_span_events;
        let Some(span) = self.spans.get_mut(&span_id) else {
            return;
        };
        let count = occurrence.event.count;
        if count <= span.count {
            self.stats.duplicates += 1;
            return;
        }
        self.stats.repeats += 1;
        let subject = span.subject;
        span.repeat_interval = occurrence.last.since(span.last);
        span.last = span.last.max(occurrence.last);
        span.count = count;
        if span.repeats.len() < max_events {
            span.repeats.push((occurrence.last, count));
        }
        let (last, trace) = (span.last, span.trace);
        self.objects
            .note_pod_event(subject, &occurrence.event, occurrence.last);
        self.tracked
            .record(occurrence.key, span_id, count, last, self.now);
        if let Some(t) = self.traces.get_mut(&trace) {
            t.last_activity = self.now;
        }
        self.touch(span_id);
    }

    /// Marks a span and its open ancestors as changed now.
    pub(super) fn touch(&mut self, id: SpanId) {
        self.touch_at(SpanSlot::of(id));
    }

    fn touch_at(&mut self, mut at: SpanSlot) {
        // Bounded like every walk up: open spans form a tree, and a tree is no deeper than this.
        for _ in 0..=usize::from(u8::MAX) {
            let Some(span) = self.spans.get_at_mut(at) else {
                break;
            };
            span.touched = self.now;
            match span.parent {
                Some(parent) => at = parent,
                None => break,
            }
        }
    }
}

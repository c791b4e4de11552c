//! Spans eventspan derives from state when a controller's event is late, dropped or merged
//! away (Kubernetes drops and delays events under load, and its recorder merges similar ones): a
//! pod's creation, a ReplicaSet's scaling step. Each is placed as the controller's event would
//! have been, marked `eventspan.derived`, with an ID a successor derives too; the controller's
//! event, should it come while the derived span stands for it, takes its place.

use super::held::Occurrence;
use super::ids::SpanId;
use super::model::{EventRecord, EventTime, ObjectRef};
use super::objects::{ObjId, SpanRef};
use super::rules::{self, Action};
use super::spans::{OpenSpan, RootChange, Source};
use super::state::Engine;
use super::time::Timestamp;
use super::tolerance::{COARSE, MAX_ROOT_LEAD};
use super::tracked::EventKey;

/// The uid of the event a creation span derived for a pod is made from: its span ID depends on
/// the pod alone.
fn derived_creation_uid(pod_uid: &str) -> String {
    format!("eventspan-derived-creation/{pod_uid}")
}

/// The uid of the event a deletion span derived for a pod is made from.
fn derived_deletion_uid(pod_uid: &str) -> String {
    format!("eventspan-derived-deletion/{pod_uid}")
}

/// Which way a ReplicaSet's derived scaling step goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    Up,
    Down,
}

impl Step {
    /// The step a ReplicaSet's action on a pod follows: a creation follows a scale-up, a
    /// deletion a scale-down.
    pub(super) fn before(action: Action) -> Option<Step> {
        match action {
            Action::Create => Some(Step::Up),
            Action::Delete => Some(Step::Down),
            _ => None,
        }
    }

    /// The step a Deployment's action on a ReplicaSet is.
    pub(super) fn of(action: Action) -> Option<Step> {
        match action {
            Action::ScaleUp => Some(Step::Up),
            Action::ScaleDown => Some(Step::Down),
            _ => None,
        }
    }
}

/// The uid of the event a scaling step derived for a ReplicaSet in one change of its root (the
/// root's generation) is made from: a successor derives the same span. (A scale-up's keeps the
/// form it had before scale-downs were derived, so checkpoints written then still match.)
fn derived_scale_uid(replica_set_uid: &str, generation: i64, step: Step) -> String {
    match step {
        Step::Up => format!("eventspan-derived-scale/{replica_set_uid}/{generation}"),
        Step::Down => format!("eventspan-derived-scale-down/{replica_set_uid}/{generation}"),
    }
}

impl Engine {
    /// A pod whose controller's "Created pod: X" never came (Kubernetes drops and delays events
    /// under load) still gets its creation span, from the pod itself: its owner and
    /// `creationTimestamp`, placed as the controller's event would have been and marked
    /// `eventspan.derived`. Only for a pod seen through its watch and created during the change
    /// its event belongs to. Its ID depends on the pod's uid alone, so a successor derives the
    /// same span. The controller's event, should it come after all, is a span of its own.
    pub(super) fn derive_creation(&mut self, subject: ObjId, at: Timestamp) -> Option<()> {
        let owner = self.objects.owner_of(subject).filter(|&o| o != subject)?;
        let root = self.objects.top(subject);
        let change_start = match self.root_key(root, at).1 {
            RootChange::Generation(g) => self.objects.change(root, g).map(|c| c.time),
            RootChange::Activity | RootChange::Revision { .. } => None,
        };
        let pod = self.objects.get(subject)?;
        let created = pod.created?;
        let fresh = pod.live && pod.acted_on.is_empty() && &*pod.kind == "Pod";
        let during_change = change_start.is_some_and(|c| created.saturating_add(COARSE) >= c);
        if !fresh || !during_change || created > at || at.since(created) > MAX_ROOT_LEAD {
            return None;
        }
        let (pod_name, pod_uid) = (pod.name.to_string(), pod.uid.as_deref()?.to_string());
        let kind = pod.kind.clone();
        // The controller's event may have come before the pod's watch event, and then named a
        // placeholder for the pod: it is the creation, not a reason to derive one.
        let earliest = created.saturating_sub(COARSE);
        let o = self.objects.get(owner)?;
        let creates_this_name = |span: &OpenSpan| {
            let Source::Event { event, .. } = &span.source else {
                return false;
            };
            rules::apply(&event.involved.kind, &event.reason, &event.message)
                .is_some_and(|m| m.action == Action::Create && m.name == pod_name)
        };
        let named = o.spans_on.iter().copied().find(|r| {
            r.start >= earliest
                && self.fresh(r)
                && self.spans.get_at(r.span()).is_some_and(|s| {
                    creates_this_name(s)
                        && s.about
                            .and_then(|about| self.objects.get(about))
                            .is_some_and(|a| a.kind == kind)
                })
        });
        if let Some(creation) = named {
            // The placeholder was this pod: the span is about the pod itself from now on (its
            // uid in the attributes, its phases from its events).
            if let Some(span) = self.spans.get_at_mut(creation.span()) {
                span.about = Some(subject);
            }
            if let Some(o) = self.objects.get_mut(owner) {
                o.spans_on.set_about(creation.span(), subject);
            }
            self.acted_on(subject, creation, Some(Action::Create));
            return Some(());
        }
        let o = self.objects.get(owner)?;
        let message = rules::pod_creation_message(&o.kind, &o.name, &pod_name)?;
        self.stats.derived_creations += 1;
        let uid = derived_creation_uid(&pod_uid);
        self.place_derived(owner, (uid, "SuccessfulCreate", "Create", message), created);
        Some(())
    }

    /// A pod of an older ReplicaSet of a Deployment whose deletion was asked for during the
    /// Deployment's current change, and whose last events (`Killing`) came while the replicaset
    /// controller's "Deleted pod: X" did not (under load it comes tens of seconds late, or is
    /// dropped), gets its deletion derived: dated by its `deletionTimestamp`, placed as the
    /// controller's event would have been (under the ReplicaSet's scale-down), marked
    /// `eventspan.derived`. The ReplicaSet is older than the change, so it is being scaled down
    /// and its controller deletes the pods (a pod a user deletes then is taken for one of them).
    pub(super) fn derive_deletion(&mut self, subject: ObjId, at: Timestamp) -> Option<()> {
        let owner = self.objects.owner_of(subject).filter(|&o| o != subject)?;
        let root = self.objects.top(subject);
        let RootChange::Generation(generation) = self.root_key(root, at).1 else {
            return None;
        };
        let change_start = self.objects.change(root, generation)?.time;
        let pod = self.objects.get(subject)?;
        let deleting = pod.deleting?;
        let during_change = deleting.saturating_add(COARSE) >= change_start;
        if &*pod.kind != "Pod" || !during_change || deleting > at.saturating_add(COARSE) {
            return None;
        }
        let (pod_name, pod_uid) = (pod.name.to_string(), pod.uid.as_deref()?.to_string());
        if self.derived_deletion_of(subject).is_some() {
            return None;
        }
        let rs = self.objects.get(owner)?;
        let older = rs
            .created
            .is_some_and(|c| c.saturating_add(COARSE) < change_start);
        if &*rs.kind != "ReplicaSet" || !older {
            return None;
        }
        let message = rules::pod_deletion_message(&rs.kind, &rs.name, &pod_name)?;
        self.stats.derived_deletions += 1;
        let uid = derived_deletion_uid(&pod_uid);
        self.place_derived(
            owner,
            (uid, "SuccessfulDelete", "Delete", message),
            deleting,
        );
        Some(())
    }

    /// The deletion span derived for a pod (see [`Self::derive_deletion`]), open or exported.
    pub(super) fn derived_deletion_of(&self, pod: ObjId) -> Option<SpanRef> {
        let obj = self.objects.get(pod)?;
        let id = SpanId::for_event(&derived_deletion_uid(obj.uid.as_deref()?), 1);
        obj.acted_on.iter().copied().find(|r| r.span_id() == id)
    }

    /// A ReplicaSet creating (deleting) pods in a change that has no scale-up (scale-down) of it
    /// by then (the deployment controller's "Scaled up replica set" is late or was dropped:
    /// under load its events come minutes late, or never; or its recorder merged them and the
    /// count jumped) gets that step derived, from the event or pod being placed, marked
    /// `eventspan.derived`: its pods' creations (deletions) hang under a step of their own
    /// ReplicaSet, as they would under the controller's, and not under the root. The counts are
    /// not known, so the message has none. The controller's first step, should it come after
    /// all, stands for it (see [`Self::unclaimed_scale`]).
    pub(super) fn derive_scale(
        &mut self,
        replica_set: ObjId,
        at: Timestamp,
        step: Step,
    ) -> Option<()> {
        let obj = self.objects.get(replica_set)?;
        if &*obj.kind != "ReplicaSet" {
            return None;
        }
        let (name, uid) = (obj.name.to_string(), obj.uid.as_deref()?.to_string());
        let owner = self
            .objects
            .owner_of(replica_set)
            .filter(|&o| o != replica_set)?;
        let root = self.objects.top(replica_set);
        let key = self.root_key(root, at);
        let RootChange::Generation(generation) = key.1 else {
            return None;
        };
        // A controller's span on it in this trace, or from this change's time on (placed in
        // another trace while the change was not seen yet), that started by this event is
        // there: nothing is missing. One that started later is a later step of the rollout
        // (the recorder merges similar events, and a count that jumps hides the first one).
        let trace = self.find_trace(key);
        let change_start = self.objects.change(root, generation).map(|c| c.time);
        let obj = self.objects.get(replica_set)?;
        let acted_on_here = obj.acted_on.iter().any(|r| {
            self.fresh(r)
                && r.start <= at.saturating_add(COARSE)
                && (Some(r.trace) == trace
                    || change_start.is_some_and(|c| r.start.saturating_add(COARSE) >= c))
        });
        if acted_on_here
            || self
                .derived_scale_of(replica_set, generation, step)
                .is_some()
        {
            return None;
        }
        let o = self.objects.get(owner)?;
        if &*o.kind != "Deployment" {
            return None;
        }
        let message = match step {
            Step::Up => {
                self.stats.derived_scale_ups += 1;
                rules::derived_scale_up_message(&name)
            }
            Step::Down => {
                self.stats.derived_scale_downs += 1;
                rules::derived_scale_down_message(&name)
            }
        };
        let uid = derived_scale_uid(&uid, generation, step);
        self.place_derived(owner, (uid, "ScalingReplicaSet", "Scale", message), at);
        Some(())
    }

    /// Places an event eventspan derives on `owner`'s behalf (its uid, reason, action and
    /// message), at `at`: reported by `eventspan`, marked `eventspan.derived`, placed at once.
    fn place_derived(
        &mut self,
        owner: ObjId,
        (uid, reason, action, message): (String, &str, &str, String),
        at: Timestamp,
    ) {
        let Some(o) = self.objects.get(owner) else {
            return;
        };
        let involved = ObjectRef {
            kind: o.kind.to_string(),
            api_version: o.api_version.to_string(),
            namespace: o.namespace.to_string(),
            name: o.name.to_string(),
            uid: o.uid.as_deref().unwrap_or_default().to_string(),
            field_path: String::new(),
        };
        let time = EventTime { at, precise: false };
        let event = EventRecord {
            uid,
            name: String::new(),
            namespace: involved.namespace.clone(),
            related: None,
            reason: reason.into(),
            message,
            warning: false,
            action: action.into(),
            reporting_controller: "eventspan".into(),
            reporting_instance: String::new(),
            count: 1,
            first: time,
            last: time,
            top_level: false,
            revision: String::new(),
            truncated: false,
            derived: true,
            involved,
        };
        let occurrence = Occurrence {
            key: EventKey::of(&event.namespace, &event.uid),
            event: Box::new(event),
            observed: self.now,
            first_count: 1,
            start: at,
            last: at,
            coarse: true,
            resolved: None,
            exported_in: None,
            claim_only: false,
            claim_held: false,
        };
        self.place(occurrence, true);
    }

    /// The step derived for a ReplicaSet in one change of its root, open or exported.
    fn derived_scale_of(&self, replica_set: ObjId, generation: i64, step: Step) -> Option<SpanRef> {
        let obj = self.objects.get(replica_set)?;
        let uid = derived_scale_uid(obj.uid.as_deref()?, generation, step);
        let id = SpanId::for_event(&uid, 1);
        obj.acted_on.iter().copied().find(|r| r.span_id() == id)
    }

    /// The derived step a controller's step of `replica_set` the same way, starting at `at`,
    /// stands for: the first of that change (later steps of a rolling update are spans of
    /// their own), at about the time of the derived one, which starts at the first creation
    /// (deletion) it parented.
    pub(super) fn unclaimed_scale(
        &mut self,
        replica_set: ObjId,
        at: Timestamp,
        step: Step,
    ) -> Option<SpanRef> {
        let root = self.objects.top(replica_set);
        let RootChange::Generation(generation) = self.root_key(root, at).1 else {
            return None;
        };
        self.derived_scale_of(replica_set, generation, step)
            .filter(|d| !self.claimed_scale_ups.contains(&d.span_id()))
            .filter(|d| at <= d.start.saturating_add(COARSE))
    }

    /// The creation span derived for a pod (see [`Self::derive_creation`]), open or exported.
    pub(super) fn derived_creation_of(&self, pod: ObjId) -> Option<SpanRef> {
        let obj = self.objects.get(pod)?;
        let id = SpanId::for_event(&derived_creation_uid(obj.uid.as_deref()?), 1);
        obj.acted_on.iter().copied().find(|r| r.span_id() == id)
    }

    /// The controller's own "Created pod: X" (or "Deleted pod: X", "Scaled up/down replica set X") came after a span
    /// was derived for it. The derived span stands for that very occurrence, so there is no
    /// second span: an open one
    /// takes the event over (its reporter, message and time, no `eventspan.derived`); an
    /// exported one is left as it was. Later sightings of the event fold into it.
    pub(super) fn supersede_derived(&mut self, derived: SpanRef, occurrence: Occurrence) {
        self.stats.late_creations += 1;
        let (count, last) = (occurrence.event.count.max(1), occurrence.last);
        self.tracked
            .record(occurrence.key, derived.span_id(), count, last, self.now);
        let Some(span) = self.spans.get_at_mut(derived.span()) else {
            return;
        };
        // Its start stays: the pod's creationTimestamp, which its children were placed against.
        span.source = Source::event(occurrence.event);
        self.touch(derived.span_id());
    }
}

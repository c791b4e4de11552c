//! A GitOps controller's report of an apply as the cause of the rollouts it started.
//!
//! Flux's kustomize-controller applies a commit with server-side apply (field manager
//! `kustomize-controller`) and reports what changed in one event on its Kustomization:
//! `Progressing`, `Deployment/shop/web configured` (a line per object, see
//! [`rules::applied_objects`]), annotated with the Git revision. That event is the
//! controller's own account of the very write that made the Deployment's new generation, the
//! change a synthesised `Deployment.Apply [kustomize-controller]` root stands for. So the event
//! claims the root of that generation's trace, as a `topLevelSpan` event does: the trace then
//! starts at Flux's reconciliation of the commit (its span carries `vcs.ref.head.revision`) and
//! holds the rollout down to the pods. One write, one span: a synthesised root under the event
//! would say the same thing twice, and a link would leave the commit outside the trace.
//!
//! The event is the cause of a generation only when they agree: the generation's change was made
//! by the applier's field manager, within the correlation window of the event. Only objects in
//! the event's own namespace are claimed (the tenant boundary: a Kustomization in `flux-system`
//! applying into `shop` does not put its event into `shop`'s traces). The event is also placed as
//! usual, in the Kustomization's own trace.
//!
//! An HPA is the same kind of applier for its `scaleTargetRef`: it writes the target's `/scale`
//! and reports it as `SuccessfulRescale` (`New size: N; reason: R`). Its event claims the root of
//! the scale's generation rather than starting a trace of root kind HorizontalPodAutoscaler: the
//! trace stays the Deployment's, so rollout histograms, session status and queries by Deployment
//! find a scale as they find any rollout, while the root span names the HPA, the size and the
//! reason (`emit.rs`). The message names no object, so the target is the HPA's own reference, in
//! the HPA's namespace; the generation must be a scale (never a template change) to that size.

use super::change::{ChangeKind, ChangeSummary};
use super::held::Occurrence;
use super::ids::SpanId;
use super::objects::ObjId;
use super::rules::{self, Targets};
use super::state::Engine;
use super::time::Timestamp;
use super::tolerance::COARSE;

/// At most this many objects of one report are looked at: a message is at most 4 KiB anyway
/// (`limits.rs`), this bounds the work whatever the limit.
const MAX_APPLIED_OBJECTS: usize = 256;

/// What a report says of the change it caused, beyond its manager and time.
#[derive(Clone, Copy, Debug, Default)]
struct Expect {
    /// Only a scale: an HPA never changes a template, so a rollout of one is someone else's.
    scale: bool,
    /// The replicas the change set, when the report gives them.
    replicas: Option<i64>,
}

impl Expect {
    /// Whether a change with this summary can be the reported one. A change without a summary
    /// (the previous template unseen) is judged by manager and time alone.
    fn admits(self, summary: Option<&ChangeSummary>) -> bool {
        let Some(summary) = summary else {
            return true;
        };
        if self.scale && summary.kind != ChangeKind::Scale {
            return false;
        }
        match (self.replicas, summary.replicas) {
            (Some(want), Some((_, to))) => want == to,
            _ => true,
        }
    }
}

/// What an applied object's known changes say about one report.
enum Cause {
    /// This generation's change is the one the report is about.
    Of(i64),
    /// No known change matches yet, but the new generation may still be on its way.
    NotYet,
    /// Not the cause of anything (not a root, an unrelated manager, unchanged generation).
    Nothing,
}

impl Occurrence {
    /// A copy held to claim roots later (the original goes on to be placed).
    pub(super) fn claim_copy(&self) -> Occurrence {
        Occurrence {
            event: self.event.clone(),
            claim_only: true,
            claim_held: false,
            ..*self
        }
    }
}

impl Engine {
    /// Makes an applier's report the root of each generation it caused. Returns the object to
    /// wait for, and until when, while a named object's new generation has not been seen yet:
    /// the caller holds a [`Occurrence::claim_copy`] of the report for it.
    pub(super) fn claim_applied(
        &mut self,
        occurrence: &Occurrence,
        subject: ObjId,
        force: bool,
    ) -> Option<(ObjId, Timestamp)> {
        let event = &occurrence.event;
        let applier = rules::applier(&event.involved.kind, &event.reason)?;
        let deadline = occurrence.observed.saturating_add(self.cfg.window);
        let may_wait = !force && deadline > self.now;
        let mut wait = None;
        let (named, expect) = match applier.targets {
            Targets::ChangeSet => (self.changed_set(occurrence, subject), Expect::default()),
            Targets::ScaleTarget => self.scale_target(occurrence, subject),
        };
        for (target, known) in named {
            let cause = if known {
                self.cause_of(target, applier.manager, occurrence, expect)
            } else {
                Cause::NotYet
            };
            match cause {
                Cause::Of(generation) => self.claim_root(occurrence, subject, target, generation),
                Cause::NotYet if may_wait => {
                    wait.get_or_insert((target, deadline));
                }
                // The HPA's spec, its target or the target's new generation never came in
                // time. Counted on the last try only: the held copy's, or the report's own when
                // it came too late to hold one (a forced original had its copy held before).
                Cause::NotYet
                    if applier.targets == Targets::ScaleTarget
                        && (occurrence.claim_only || !force) =>
                {
                    self.stats.rescales_unattributed += 1;
                }
                Cause::NotYet | Cause::Nothing => {}
            }
        }
        wait
    }

    /// The objects a change set names in the report's own namespace, each with whether it is
    /// known (else the report waits on its reporter, `subject`).
    fn changed_set(&mut self, occurrence: &Occurrence, subject: ObjId) -> Vec<(ObjId, bool)> {
        let event = &occurrence.event;
        rules::applied_objects(&event.message)
            .take(MAX_APPLIED_OBJECTS)
            .filter(|o| o.namespace == event.involved.namespace)
            .map(
                |o| match self.objects.find_named(o.kind, o.namespace, o.name) {
                    Some(id) => (id, true),
                    None => (subject, false),
                },
            )
            .collect()
    }

    /// The object an HPA (`subject`) scales, in the HPA's namespace: its `scaleTargetRef` has
    /// no namespace of its own, so an HPA never claims another tenant's object. While the HPA's
    /// spec or target is unseen the report waits on the HPA itself. The change must be a scale
    /// to the size the message gives.
    fn scale_target(
        &mut self,
        occurrence: &Occurrence,
        subject: ObjId,
    ) -> (Vec<(ObjId, bool)>, Expect) {
        let expect = Expect {
            scale: true,
            replicas: rules::rescale(&occurrence.event.message).new_size,
        };
        let namespace = &occurrence.event.involved.namespace;
        // Unknown (no spec seen, no target named, no such object yet): the report waits on the
        // HPA, whose next version may name it, and is counted if it never does.
        let target = self
            .objects
            .scale_target(subject)
            .and_then(|(kind, name)| self.objects.find_named(kind, namespace, name));
        let named = match target {
            Some(id) => (id, true),
            None => (subject, false),
        };
        (vec![named], expect)
    }

    /// Which generation of `target` the report in `occurrence` caused, if any.
    fn cause_of(
        &mut self,
        target: ObjId,
        manager: &str,
        occurrence: &Occurrence,
        expect: Expect,
    ) -> Cause {
        if self.objects.top(target) != target {
            return Cause::Nothing;
        }
        if !self.objects.knows_generations(target) {
            return Cause::NotYet;
        }
        let window = self.cfg.window.saturating_add(COARSE);
        let at = occurrence.start;
        let Some(root) = self.objects.get(target).and_then(|o| o.root.as_ref()) else {
            return Cause::Nothing;
        };
        let near = |t: Timestamp| {
            let gap = if t > at { t.since(at) } else { at.since(t) };
            gap <= window
        };
        let matched = root
            .changes
            .iter()
            .filter(|c| c.manager.as_deref() == Some(manager) && near(c.time))
            .filter(|c| expect.admits(c.summary.as_deref()))
            .min_by_key(|c| {
                if c.time > at {
                    c.time.since(at)
                } else {
                    at.since(c.time)
                }
            });
        if let Some(change) = matched {
            return Cause::Of(change.generation);
        }
        let newest = root.changes.last().map(|c| c.time);
        if newest.is_none_or(|t| t.saturating_add(COARSE) < at) {
            Cause::NotYet
        } else {
            Cause::Nothing
        }
    }

    /// Puts a copy of the report at the root of `target`'s trace of `generation`: it starts the
    /// trace, or takes over its synthesised root. A root that is already an event (this report,
    /// placed before it was held again) or already exported is left alone.
    fn claim_root(
        &mut self,
        occurrence: &Occurrence,
        subject: ObjId,
        target: ObjId,
        generation: i64,
    ) {
        let Some(change) = self.objects.change(target, generation) else {
            return;
        };
        // Dated at the write it reports, as the synthesised root was: the trace it roots is
        // that generation's, and it lasts from the apply to the end of the rollout.
        let start = change.time;
        let copy = Occurrence {
            event: occurrence.event.clone(),
            key: occurrence.key,
            observed: occurrence.observed,
            first_count: occurrence.first_count,
            start,
            last: start,
            coarse: occurrence.coarse,
            resolved: None,
            exported_in: None,
            claim_only: false,
            claim_held: false,
        };
        // Not `about` the Deployment in the sense of acting on it: its own events (a scale-up)
        // would then take this span of one generation for the parent of the next one's.
        if self.place_as_root(copy, target, subject, None).is_err() {
            return;
        }
        let key = self.root_key(target, start);
        if let Some(trace) = self.find_trace(key)
            && let Some(root) = self.spans.get_mut(&SpanId::for_root(trace))
        {
            // For its attributes: the root names the object whose rollout it is.
            root.about = Some(target);
        }
    }
}

//! Durations from object state: a rollout's root span ends when the root object's status says
//! the rollout is done (or failed), and a pod's creation span when the pod is Ready (or failed,
//! or was deleted), rather than at their last event.
//!
//! Spans name the object they wait for (`OpenSpan::waits_for`). When they are next checked for
//! emission, the object's last reported state decides: an object whose status is not read
//! (metadata-only sources, events-only recordings) leaves the span as it was; one still in
//! progress holds the span for up to `max_state_wait`; one that is done gives the span its end and
//! outcome. A status that newly says "done" wakes the spans waiting for it.

use super::ids::SpanId;
use super::model::{ObjectState, Outcome, OutcomeKind};
use super::objects::{ObjId, ObjectTable};
use super::spans::{OpenSpan, RootChange};
use super::state::Engine;
use super::time::Timestamp;

/// What a waiting span can know about its object now.
enum Progress {
    /// The object's status is not read: nothing to wait for.
    Untracked,
    Pending,
    Finished(Outcome, Timestamp),
}

fn progress_of(objects: &ObjectTable, object: ObjId, generation: Option<i64>) -> Progress {
    let Some(state) = objects.get(object).and_then(|o| o.state.as_deref()) else {
        return Progress::Untracked;
    };
    // A root waits for its trace's generation; a created object (a pod) for its first outcome.
    let seen = match generation {
        Some(g) => state.outcome_of(g),
        None => state.first_outcome(),
    };
    if let Some((outcome, at)) = seen {
        return Progress::Finished(outcome, at);
    }
    let generation = generation.unwrap_or(state.observed_generation);
    if state.observed_generation > generation {
        // The controller moved on to a newer spec: this one's rollout ended when that came.
        let newer = objects.change(object, generation + 1).map(|c| c.time);
        let superseded = Outcome {
            kind: OutcomeKind::Superseded,
            reason: "NewerGeneration".into(),
            message: format!("generation {} replaced it", state.observed_generation),
        };
        return match newer {
            Some(at) => Progress::Finished(superseded, at),
            None => Progress::Pending,
        };
    }
    Progress::Pending
}

impl Engine {
    /// Applies what a span's object has reported, if the span waits for one.
    pub(super) fn resolve_progress(&mut self, span_id: SpanId) {
        let Some(span) = self.spans.get(&span_id) else {
            return;
        };
        let Some(object) = span.waits_for else {
            return;
        };
        let trace = self.traces.get(&span.trace);
        // A root waits for its trace's generation; a created object for any outcome.
        let generation = match (span.is_root(), trace.map(|t| t.key.1)) {
            (true, Some(RootChange::Generation(g))) => Some(g),
            (true, _) => return self.stop_waiting(span_id),
            (false, _) => None,
        };
        let progress = progress_of(&self.objects, object, generation);
        let span: &mut OpenSpan = self.spans.get_mut(&span_id).expect("present");
        match progress {
            Progress::Untracked => {
                span.waits_for = None;
                span.awaiting = false;
            }
            Progress::Pending => span.awaiting = true,
            Progress::Finished(outcome, at) => {
                span.waits_for = None;
                span.awaiting = false;
                span.state_end = Some(at.max(span.start));
                span.outcome = Some(Box::new(outcome));
            }
        }
    }

    /// A span still waiting for its object when its rollout is over (the root object's status
    /// said done or failed) stops waiting: the rollout's trace does not wait for a pod that the
    /// rollout gave up on.
    pub(super) fn release_after_rollout(&mut self, span_id: SpanId) {
        let Some(span) = self.spans.get_mut(&span_id).filter(|s| s.awaiting) else {
            return;
        };
        span.waits_for = None;
        span.awaiting = false;
        span.outcome = Some(Box::new(Outcome {
            kind: OutcomeKind::Pending,
            reason: String::new(),
            message: "not done when its rollout ended".into(),
        }));
    }

    fn stop_waiting(&mut self, span_id: SpanId) {
        if let Some(span) = self.spans.get_mut(&span_id) {
            span.waits_for = None;
            span.awaiting = false;
        }
    }

    /// An object's status was read: records it, and if it newly says the object is done (or has
    /// moved on to a newer generation), wakes the spans waiting for it.
    pub(super) fn observe_state(&mut self, object: ObjId, state: &ObjectState, at: Timestamp) {
        if self.objects.record_state(object, state, at) {
            self.wake(object);
        }
    }

    /// An object was deleted: what waited for it to be done waits no more.
    pub(super) fn wake_on_delete(&mut self, object: ObjId) {
        if self.objects.get(object).is_some_and(|o| o.state.is_some()) {
            self.wake(object);
        }
    }

    /// Touches the spans waiting for `object` (the spans that created it, the roots of its
    /// recent generations' traces), so that they are checked after the window.
    fn wake(&mut self, object: ObjId) {
        let Some(entry) = self.objects.get(object) else {
            return;
        };
        let mut waiting: Vec<SpanId> = entry.acted_on.iter().map(|r| r.span_id()).collect();
        let newest = entry
            .state
            .as_ref()
            .map_or(entry.generation, |s| s.observed_generation)
            .max(entry.generation);
        let oldest = newest.saturating_sub(super::objects::GENERATION_HISTORY as i64);
        waiting.extend((oldest..=newest).filter_map(|g| {
            let trace = self.roots.get(&(object, RootChange::Generation(g)))?;
            Some(SpanId::for_root(*trace))
        }));
        for id in waiting {
            let Some(span) = self.spans.get(&id) else {
                continue;
            };
            if span.waits_for != Some(object) {
                continue;
            }
            let trace = span.trace;
            self.touch(id);
            self.schedule(trace, self.now.saturating_add(self.cfg.window));
        }
    }
}

//! When open spans are emitted: children first, once settled, so parents cover their children.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::checkpoint::{ExportedOccurrences, ExportedSpan};
use super::emit;
use super::ids::{SpanId, TraceId};
use super::rules;
use super::spans::{OpenSpan, Source, TraceState};
use super::state::Engine;
use super::time::Timestamp;
use super::tracked::EventKey;

/// How much of a trace to emit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Flush {
    /// What has settled.
    Settled,
    /// Everything: the input has ended.
    All,
    /// Everything, marking what had not settled as incomplete: its session or the operator ends.
    Abandon,
}

/// Emission checks run on this tick (deadlines round up to it), so a busy trace is scanned about
/// once a second rather than once per span that settles.
const CHECK_TICK: i64 = 1_000_000_000;

/// Queues an emission check of a trace at `at` (rounded up to the tick), unless one is queued
/// for earlier.
pub(super) fn queue_check(
    deadlines: &mut BinaryHeap<Reverse<(Timestamp, TraceId)>>,
    id: TraceId,
    trace: &mut TraceState,
    at: Timestamp,
) {
    let at = Timestamp::from_unix_nanos(
        at.unix_nanos()
            .div_euclid(CHECK_TICK)
            .saturating_add(1)
            .saturating_mul(CHECK_TICK),
    );
    if trace.scheduled.is_none_or(|s| at < s) {
        trace.scheduled = Some(at);
        deadlines.push(Reverse((at, id)));
    }
}

impl Engine {
    /// When the nomination of this span's object began: its parent's start, if the parent is
    /// the span that nominated it (see [`emit::EmitContext::nominated_at`]). Looked up only for
    /// the events that say a nominee is provisioned.
    fn nominated_at(&self, span: &OpenSpan) -> Option<Timestamp> {
        let Source::Event { event, .. } = &span.source else {
            return None;
        };
        if !rules::is_provisioned(&event.involved.kind, &event.reason) {
            return None;
        }
        let parent = self.spans.get_at(span.parent?)?;
        (parent.about == Some(span.subject)).then_some(parent.start)
    }

    pub(super) fn schedule(&mut self, trace: TraceId, at: Timestamp) {
        if let Some(state) = self.traces.get_mut(&trace) {
            queue_check(&mut self.deadlines, trace, state, at);
        }
    }

    /// Emits the spans of a trace that are settled (or all of them, see [`Flush`]), deepest first
    /// so that each parent's end covers its children.
    pub(super) fn evaluate(&mut self, trace_id: TraceId, flush: Flush) {
        let force = flush != Flush::Settled;
        let (window, horizon, max_hold, max_wait) = (
            self.cfg.window,
            self.cfg.horizon,
            self.cfg.max_repeat_hold,
            self.cfg.max_state_wait,
        );
        let Some(trace) = self.traces.get_mut(&trace_id) else {
            return;
        };
        trace.scheduled = None;
        let mut pending = std::mem::take(&mut trace.pending);
        // One lookup per pending span: its depth for the order, when it may go, and whether
        // anything is due. Usually nothing is (spans were touched since this check was
        // scheduled).
        let mut by_depth = std::mem::take(&mut self.emission_order);
        by_depth.iter_mut().for_each(Vec::clear);
        let mut next: Option<Timestamp> = None;
        let mut any_ready = force;
        // The root first: once its rollout is over, nothing else waits for status.
        let root = SpanId::for_root(trace_id);
        if self.spans.get(&root).is_some_and(|s| s.waits_for.is_some()) {
            self.resolve_progress(root);
        }
        // Once its rollout is over, what still waits for its object's status stops waiting; but
        // not at once: the status of a pod the rollout counted as ready may be just behind the
        // root's (after a re-list, the Deployment's status can come before its pods'), and
        // while a watch of state is interrupted it may be behind by any amount.
        let now = self.now;
        let over = self.spans.get(&root).is_some_and(|s| s.state_end.is_some());
        let trace = self.traces.get_mut(&trace_id).expect("present");
        if over && trace.rollout_over_seen.is_none() {
            trace.rollout_over_seen = Some(now);
        }
        let (over_seen, namespace) = (trace.rollout_over_seen, trace.namespace.clone());
        let release_at = over_seen.and_then(|seen| self.release_after(seen, &namespace));
        let rollout_over = release_at.is_some_and(|at| at <= now);
        for &at in &pending {
            let Some(mut span) = self.spans.get_at(at) else {
                continue;
            };
            // Only a span still waiting for status can learn something (or stop waiting).
            if at.id != root && span.waits_for.is_some() {
                self.resolve_progress(at.id);
                if rollout_over {
                    self.release_after_rollout(at.id);
                }
                span = self.spans.get_at(at).expect("present");
            }
            // Emitting other spans does not change when this one may go.
            let ready_at = span.ready_at(window, horizon, max_hold, max_wait);
            let depth = usize::from(span.depth);
            if by_depth.len() <= depth {
                by_depth.resize_with(depth + 1, Vec::new);
            }
            by_depth[depth].push((at, ready_at, span.open_children == 0));
            if span.open_children == 0 && !any_ready {
                any_ready = ready_at <= self.now;
                next = Some(next.map_or(ready_at, |n| n.min(ready_at)));
            }
        }
        if let Some(at) = release_at.filter(|&at| at > self.now) {
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        if !any_ready {
            self.emission_order = by_depth;
            self.traces.get_mut(&trace_id).expect("present").pending = pending;
            if let Some(at) = next {
                self.schedule(trace_id, at);
            }
            return;
        }
        // Deepest first, and in creation order among equals.
        // What stays open goes back into the same vector, in the new order.
        pending.clear();
        let mut keep = pending;
        let mut next: Option<Timestamp> = None;
        let mut root_info = None;
        for &(at, ready_at, childless) in by_depth.iter().rev().flatten() {
            let due = ready_at <= self.now;
            // Only a span that had children when it was looked at above can have changed since:
            // its children may have been emitted just now. The others are not read again.
            if !force
                && (!due
                    || !childless && self.spans.get_at(at).is_some_and(|s| s.open_children > 0))
            {
                // A parent waiting only for its children is re-checked when they are emitted.
                if !due {
                    next = Some(next.map_or(ready_at, |n| n.min(ready_at)));
                }
                keep.push(at);
                continue;
            }
            let Some(span) = self.spans.remove_at(at) else {
                continue;
            };
            let settled = span.open_children == 0 && due;
            let parent = span.parent;
            let nominated_at = self.nominated_at(&span);
            let trace = self.traces.get(&trace_id).expect("present");
            let root = root_info.get_or_insert_with(|| emit::trace_root(&self.objects, trace));
            let mut finished = emit::finish(
                at.id,
                span,
                emit::EmitContext {
                    objects: &mut self.objects,
                    attributes: &mut self.attributes,
                    trace,
                    root,
                    nominated_at,
                },
            );
            finished.incomplete = flush == Flush::Abandon && !settled;
            if let Some(parent) = parent.and_then(|p| self.spans.get_at_mut(p)) {
                parent.open_children = parent.open_children.saturating_sub(1);
                parent.children_end = parent.children_end.max(finished.end);
            }
            if finished.parent.is_none()
                && let Some(t) = self.traces.get_mut(&trace_id)
            {
                t.emitted_root_start = Some(finished.start);
            }
            let pair = (finished.trace_id, finished.span_id);
            if !self.exported_spans.insert(pair) {
                if self.resumed_spans.remove(&pair) {
                    self.stats.resumed_spans += 1;
                } else {
                    self.stats.duplicate_spans += 1;
                }
                continue;
            }
            self.log_exported(ExportedSpan {
                trace: finished.trace_id,
                span: finished.span_id,
                event: finished.event.as_ref().map(|e| ExportedOccurrences {
                    key: EventKey::of(&e.namespace, &e.uid).raw(),
                    first_count: finished.first_count,
                    count: finished.count,
                }),
            });
            self.stats.spans_emitted += 1;
            self.finished.push(finished);
        }
        self.emission_order = by_depth;
        let now = self.now;
        let Some(trace) = self.traces.get_mut(&trace_id) else {
            return;
        };
        trace.pending = keep;
        if trace.pending.is_empty() {
            self.idle_traces
                .push_back((now.saturating_add(self.cfg.recent_ttl), trace_id));
        } else if let Some(at) = next {
            self.schedule(trace_id, at.max(now));
        }
    }

    /// The open-span table is full: settle the trace due soonest, ready or not.
    /// Repeated until the table is within its cap again.
    pub(super) fn force_oldest_traces(&mut self) {
        while self.spans.len() > self.cfg.max_open_spans
            || self.spans.bytes() > self.cfg.max_open_span_bytes
        {
            let scheduled = std::iter::from_fn(|| self.deadlines.pop())
                .find(|Reverse((at, trace))| {
                    self.traces
                        .get(trace)
                        .is_some_and(|t| t.scheduled == Some(*at))
                })
                .map(|Reverse((_, trace))| trace);
            // Every trace with open spans has a check queued; should one not, any open trace
            // goes, so the cap holds whatever the queue says.
            let Some(trace) = scheduled.or_else(|| {
                let open = self.traces.iter().filter(|(_, t)| !t.pending.is_empty());
                open.map(|(id, _)| *id).min()
            }) else {
                return;
            };
            let before = self.stats.spans_emitted;
            self.evaluate(trace, Flush::All);
            self.stats.spans_forced += self.stats.spans_emitted - before;
        }
    }

    /// Forgets traces that have been idle, with nothing open, for the recent-span TTL.
    pub(super) fn expire_traces(&mut self) {
        while let Some(&(at, id)) = self.idle_traces.front() {
            let over_cap = self.traces.len() > self.cfg.max_traces;
            if at > self.now && !over_cap {
                break;
            }
            self.idle_traces.pop_front();
            let Some(trace) = self.traces.get(&id) else {
                continue;
            };
            if !trace.pending.is_empty() {
                continue;
            }
            let due = trace.last_activity.saturating_add(self.cfg.recent_ttl);
            if due > self.now && !over_cap {
                self.idle_traces.push_back((due, id));
            } else {
                let (key, root) = (trace.key, trace.root_object);
                if trace.emitted_root_start.is_some() {
                    self.exported_roots.insert(id);
                }
                self.traces.remove(&id);
                self.objects.unpin_root(root);
                if self.roots.get(&key) == Some(&id) {
                    self.roots.remove(&key);
                }
            }
        }
    }
}

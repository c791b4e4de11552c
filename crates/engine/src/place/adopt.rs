//! Moving spans under a controller's announcement that came after them: when "Created pod: X"
//! or "Scaled up" arrives late, it takes over the spans about its child placed meanwhile.

use crate::config::Rejection;
use crate::handles::SpanSlot;
use crate::ids::{SpanId, TraceId};
use crate::objects::{ObjId, SpanRef};
use crate::rules::Action;
use crate::state::Engine;

impl Engine {
    /// Records that `span` acted on `child`, and places the child's events that waited for it.
    pub(crate) fn acted_on(&mut self, child: ObjId, span: SpanRef, action: Option<Action>) {
        self.adopt_later_events(child, span);
        if let Some(obj) = self.objects.get_mut(child) {
            obj.acted_on.insert(span);
            obj.announced |= action.map_or(0, Action::bit);
        }
        for waiting in self.held.take_for(child) {
            self.place(waiting, false);
        }
    }

    /// Controllers publish events asynchronously, so "Created pod: X" on a ReplicaSet can arrive
    /// just before the "Scaled up replica set" that caused it, and be placed under an older
    /// scale-up; or arrive long after the events that follow it ("Deleted pod: X" after X's
    /// `Killing`, under load), which were then placed by their owner chain. When `actor` arrives,
    /// it takes over the open spans on `child` that started after it but hang under an older
    /// actor span about `child`, or under a span neither on nor about `child`.
    fn adopt_later_events(&mut self, child: ObjId, actor: SpanRef) {
        let Some(actor_depth) = self.spans.get_at(actor.span()).map(|s| s.depth) else {
            return;
        };
        let Some(obj) = self.objects.get(child) else {
            return;
        };
        let older_actors: Vec<SpanSlot> = obj
            .acted_on
            .iter()
            .filter(|r| r.trace == actor.trace && r.start < actor.start)
            .map(|r| r.span())
            .collect();
        // Or, when no actor about `child` was in this trace, under its owner's span or the root
        // (the owner-chain fallback): a parent neither on nor about `child`. Only for an owned
        // object: a top-level one's own events belong under the root.
        let owned = obj.has_owner();
        let placed_by_owner = |parent: SpanSlot| {
            owned
                && parent != actor.span()
                && self
                    .spans
                    .get_at(parent)
                    .is_some_and(|p| p.subject != child && p.about != Some(child))
        };
        let moves: Vec<(SpanSlot, SpanSlot)> = obj
            .spans_on
            .iter()
            .filter(|r| r.trace == actor.trace && r.start >= actor.start)
            .filter_map(|r| Some((r.span(), self.spans.get_at(r.span())?.parent?)))
            .filter(|&(_, old)| older_actors.contains(&old) || placed_by_owner(old))
            .collect();
        let anchor = obj.anchor;
        for (span, old) in moves {
            if self.is_ancestor_or_self(span, actor.span()) {
                // The actor hangs below the span it would adopt: a loop, never a tree.
                self.stats.reject(Rejection::Cycle);
                continue;
            }
            if let Some(p) = self.spans.get_at_mut(old) {
                p.open_children = p.open_children.saturating_sub(1);
            }
            if let Some(p) = self.spans.get_at_mut(actor.span()) {
                p.open_children += 1;
            }
            if let Some(s) = self.spans.get_at_mut(span) {
                s.parent = Some(actor.span());
            }
            self.set_depth(actor.trace, span.id, actor_depth.saturating_add(1));
            if anchor.is_some_and(|a| a.span() == old)
                && let Some(obj) = self.objects.get_mut(child)
            {
                obj.anchor = Some(actor);
            }
        }
        self.touch_at(actor.span());
    }

    /// Whether `candidate` is `span` or one of its open ancestors. The walk up is bounded: open
    /// spans form a tree no deeper than [`MAX_SPAN_DEPTH`] (plus adoption's moves).
    fn is_ancestor_or_self(&self, candidate: SpanSlot, mut span: SpanSlot) -> bool {
        for _ in 0..=usize::from(u8::MAX) {
            if span == candidate {
                return true;
            }
            match self.spans.get_at(span).and_then(|s| s.parent) {
                Some(parent) => span = parent,
                None => return false,
            }
        }
        // A chain longer than any depth: treat it as a loop, and refuse.
        true
    }

    /// Gives a span and its open descendants depths below a new parent: children are emitted
    /// before their parents by depth. One pass over the trace's open spans per level, levels
    /// bounded by the depth limit, each span set once (a loop, were there one, would end).
    fn set_depth(&mut self, trace: TraceId, span: SpanId, depth: u8) {
        let has_children = match self.spans.get_mut(&span) {
            Some(s) => {
                s.depth = depth;
                s.open_children > 0
            }
            None => return,
        };
        if !has_children {
            return;
        }
        let Some(pending) = self.traces.get(&trace).map(|t| t.pending.clone()) else {
            return;
        };
        let mut done: rustc_hash::FxHashSet<SpanId> = std::iter::once(span).collect();
        let mut level: rustc_hash::FxHashSet<SpanId> = std::iter::once(span).collect();
        let mut depth = depth;
        while !level.is_empty() && depth < u8::MAX {
            depth += 1;
            let mut next = rustc_hash::FxHashSet::default();
            for &at in &pending {
                let Some(s) = self.spans.get_at_mut(at) else {
                    continue;
                };
                if s.parent.is_some_and(|p| level.contains(&p.id)) && done.insert(at.id) {
                    s.depth = depth;
                    if s.open_children > 0 {
                        next.insert(at.id);
                    }
                }
            }
            level = next;
        }
    }
}

//! The spec changes of a root object: which managedFields entry made each generation, when,
//! under which `traceparent`, and what it changed. Each change starts a trace.

use std::sync::Arc;
use std::time::Duration;

use super::interner::Interner;
use crate::change::{ChangeSummary, TemplateDigest, summarize};
use crate::model::{ObjectMeta, SpecChange, TraceParent};
use crate::time::Timestamp;

/// How many spec changes of a root object are remembered to attribute late events by time.
pub(crate) const GENERATION_HISTORY: usize = 4;
/// How long after a change a `traceparent` annotated separately (not in the same write) still
/// belongs to it.
const LATE_TRACEPARENT: Duration = Duration::from_secs(30);
/// A spec change with no time of its own is taken to be this much older than the observation
/// of its object: the same uncertainty as the whole-second times managedFields entries carry.
pub(super) const UNTIMED_CHANGE_LEAD: Duration = Duration::from_secs(1);

/// One spec change of a root object: the trace it starts.
#[derive(Clone, Debug)]
pub(crate) struct GenerationChange {
    pub generation: i64,
    /// When the change happened: managedFields time, or estimated from when the new generation
    /// was first seen.
    pub time: Timestamp,
    /// `time` is an estimate: the earliest observation of the generation refines it.
    pub estimated: bool,
    pub manager: Option<Arc<str>>,
    pub operation: Option<Arc<str>>,
    /// `time` as first recorded, never refined: the trace's fixed start (X-Ray trace IDs).
    pub started: Timestamp,
    /// The `traceparent` the change was applied with, when the object carried a fresh one
    /// (boxed: most changes have none).
    pub traceparent: Option<Box<TraceParent>>,
    /// What it changed against the previous generation, when that one's template was seen.
    pub summary: Option<Box<ChangeSummary>>,
}

/// A root's labels, shared with the traces that carry them.
pub(crate) type Labels = Arc<[(Box<str>, Box<str>)]>;

/// What only a possible trace root needs: kept off pods and other owned objects.
#[derive(Debug, Default)]
pub(crate) struct RootInfo {
    pub labels: Labels,
    /// Newest last.
    pub changes: Vec<GenerationChange>,
    /// The `traceparent` annotation as last seen. The annotation stays on the object after the
    /// pipeline that set it is done, so only a value that differs from it belongs to a change.
    pub seen_traceparent: Option<Box<TraceParent>>,
    /// The newest generation's replicas and template, to summarise the next change against.
    pub template: Option<(i64, Box<TemplateDigest>)>,
    /// An HPA's `scaleTargetRef` (kind, name) as last seen: what its rescales scaled.
    pub scale_target: Option<Box<(Box<str>, Box<str>)>>,
}

impl RootInfo {
    /// Takes in a root object's metadata as a watch delivered it: its labels, its `traceparent`
    /// annotation, the change that made its generation (`change`, from [`new_change`]) and its
    /// template. `untimed` is when a change without a time of its own is taken to have happened.
    pub(super) fn observe(
        &mut self,
        meta: &ObjectMeta,
        change: Option<GenerationChange>,
        untimed: Timestamp,
    ) {
        if self.labels.len() != meta.labels.len()
            || self
                .labels
                .iter()
                .zip(&meta.labels)
                .any(|((k, v), (k2, v2))| **k != *k2 || **v != *v2)
        {
            self.labels = meta
                .labels
                .iter()
                .map(|(k, v)| (Box::from(k.as_str()), Box::from(v.as_str())))
                .collect();
        }
        // A traceparent is news only when it differs from the one last seen: one left on the
        // object by an earlier pipeline run must not claim a later change (an HPA's scale).
        let fresh = meta
            .traceparent
            .filter(|tp| self.seen_traceparent.as_deref() != Some(tp));
        if self.seen_traceparent.as_deref() != meta.traceparent.as_ref() {
            self.seen_traceparent = meta.traceparent.map(Box::new);
        }
        record_change(self, meta.generation, change, untimed, fresh);
        self.scale_target = meta
            .scale_target
            .as_ref()
            .map(|t| Box::new((Box::from(t.kind.as_str()), Box::from(t.name.as_str()))));
        if let Some(digest) = &meta.template {
            summarize_change(self, meta.generation, digest);
        }
    }

    /// Which generation was current at `at`, when any change is known.
    pub(super) fn generation_at(&self, at: Timestamp) -> Option<i64> {
        if self.changes.is_empty() {
            return None;
        }
        self.changes
            .iter()
            .rev()
            .find(|c| c.time <= at)
            .or(self.changes.first())
            .map(|c| c.generation)
    }

    /// A change older than those known (from a predecessor's checkpoint): kept in generation
    /// order, within the history's length.
    pub(super) fn add_earlier_change(&mut self, generation: i64, time: Timestamp, estimated: bool) {
        if self.changes.iter().any(|c| c.generation == generation)
            || self.changes.len() >= GENERATION_HISTORY
        {
            return;
        }
        let at = self.changes.partition_point(|c| c.generation < generation);
        self.changes.insert(
            at,
            GenerationChange {
                generation,
                time,
                estimated,
                manager: None,
                operation: None,
                started: time,
                traceparent: None,
                summary: None,
            },
        );
    }

    pub(super) fn change(&self, generation: i64) -> Option<&GenerationChange> {
        self.changes.iter().find(|c| c.generation == generation)
    }

    /// What the root information holds on the heap, for the object byte cap.
    pub(super) fn heap_bytes(&self) -> usize {
        std::mem::size_of::<RootInfo>()
            + self
                .labels
                .iter()
                .map(|(k, v)| k.len() + v.len() + 32)
                .sum::<usize>()
            + self.changes.capacity() * std::mem::size_of::<GenerationChange>()
            + self
                .changes
                .iter()
                .filter_map(|c| c.summary.as_ref())
                .map(|s| std::mem::size_of::<ChangeSummary>() + s.text.len())
                .sum::<usize>()
            + self.template.as_ref().map_or(0, |(_, t)| t.heap_bytes())
            + self
                .scale_target
                .as_ref()
                .map_or(0, |t| 48 + t.0.len() + t.1.len())
    }
}

/// The change that made the generation `meta` shows, among its entries that touched spec; none
/// when `previous` (the newest known change: generation, time) is of that generation already.
/// `untimed` stands in for the time of an entry without one.
pub(super) fn new_change(
    meta: &ObjectMeta,
    previous: Option<(i64, Timestamp)>,
    untimed: Timestamp,
    strings: &mut Interner,
) -> Option<GenerationChange> {
    if previous.is_some_and(|(generation, _)| generation == meta.generation) {
        return None;
    }
    pick_change(&meta.spec_changes, previous.map(|(_, time)| time)).map(|(c, time)| {
        GenerationChange {
            generation: meta.generation,
            time: time.unwrap_or(untimed),
            estimated: time.is_none(),
            manager: Some(strings.intern(&c.manager)),
            operation: Some(strings.intern(&c.operation)),
            started: time.unwrap_or(untimed),
            traceparent: None,
            summary: None,
        }
    })
}

/// Which managedFields entry made a new generation, and its time if it has one: the newest
/// timed entry, if newer than the previous generation's change; otherwise an entry without a
/// time (the scale subresource writes those); otherwise the newest timed one.
fn pick_change(
    changes: &[SpecChange],
    previous: Option<Timestamp>,
) -> Option<(&SpecChange, Option<Timestamp>)> {
    let newest = changes
        .iter()
        .filter_map(|c| Some((c, c.time?)))
        .max_by_key(|(_, t)| *t);
    match newest {
        Some((c, t)) if previous.is_none_or(|p| t > p) => Some((c, Some(t))),
        _ => changes
            .iter()
            .find(|c| c.time.is_none())
            .map(|c| (c, None))
            .or(newest.map(|(c, t)| (c, Some(t)))),
    }
}

/// Summarises the change that made `generation` against the previous generation's template,
/// once, and keeps the newest template for the next.
fn summarize_change(root: &mut RootInfo, generation: i64, digest: &TemplateDigest) {
    let summary = match &root.template {
        Some((seen, before)) if *seen < generation => Some(summarize(before, digest)),
        _ => None,
    };
    if let Some(summary) = summary
        && let Some(change) = root
            .changes
            .last_mut()
            .filter(|c| c.generation == generation && c.summary.is_none())
    {
        change.summary = Some(Box::new(summary));
    }
    let newer = root.template.as_ref().is_none_or(|(seen, kept)| {
        *seen < generation || (*seen == generation && **kept != *digest)
    });
    if newer {
        root.template = Some((generation, Box::new(digest.clone())));
    }
}

/// Records the change that made `generation`, or refines the estimated time of a generation
/// seen again (the earliest observation is the best bound, whatever order updates arrive in).
///
/// A fresh `traceparent` goes with the change of the generation it arrived with; one that arrives
/// after its generation (`kubectl annotate` right after `kubectl apply`) is taken by that
/// generation's change if it has none yet and is at most [`LATE_TRACEPARENT`] old.
fn record_change(
    root: &mut RootInfo,
    generation: i64,
    change: Option<GenerationChange>,
    untimed: Timestamp,
    traceparent: Option<TraceParent>,
) {
    match root.changes.last_mut() {
        Some(last) if last.generation == generation => {
            if last.estimated {
                last.time = last.time.min(untimed);
            }
            if last.traceparent.is_none() && untimed.since(last.started) <= LATE_TRACEPARENT {
                last.traceparent = traceparent.map(Box::new);
            }
        }
        Some(last) if last.generation > generation => {}
        _ => {
            if root.changes.len() == GENERATION_HISTORY {
                root.changes.remove(0);
            }
            let mut change = change.unwrap_or(GenerationChange {
                generation,
                time: untimed,
                estimated: true,
                manager: None,
                operation: None,
                started: untimed,
                traceparent: None,
                summary: None,
            });
            change.traceparent = traceparent.map(Box::new);
            root.changes.push(change);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::ObjectTable;
    use super::super::tests::meta;
    use super::*;
    use crate::ids::{SpanId, TraceId};

    #[test]
    fn a_scale_without_a_time_is_the_change_of_the_new_generation() {
        let mut t = ObjectTable::new(Duration::from_secs(60), 100);
        let change = |manager: &str, time: Option<i64>| SpecChange {
            manager: manager.into(),
            operation: "Update".into(),
            time: time.map(Timestamp::from_unix_secs),
        };
        let mut m = meta("d1", "Deployment", "web", None);
        m.spec_changes = vec![change("kubectl-set", Some(100))];
        let id = t.upsert(
            &m,
            Timestamp::from_unix_secs(100),
            Timestamp::from_unix_secs(100),
        );
        m.generation = 2;
        m.spec_changes = vec![change("kubectl", None), change("kubectl-set", Some(100))];
        t.upsert(
            &m,
            Timestamp::from_unix_secs(150),
            Timestamp::from_unix_secs(150),
        );
        let c = t.change(id, 2).unwrap();
        assert_eq!(
            (c.manager.as_deref(), c.time),
            (Some("kubectl"), Timestamp::from_unix_secs(149)),
            "untimed: a second before it was observed"
        );
        // A timed change newer than the previous generation's wins over an old timeless entry.
        m.generation = 3;
        m.spec_changes = vec![change("kubectl", None), change("helm", Some(200))];
        t.upsert(
            &m,
            Timestamp::from_unix_secs(201),
            Timestamp::from_unix_secs(201),
        );
        assert_eq!(t.change(id, 3).unwrap().manager.as_deref(), Some("helm"));
    }

    #[test]
    fn a_traceparent_belongs_to_the_change_it_came_with() {
        let mut t = ObjectTable::new(Duration::from_secs(600), 100);
        let tp = |n: u128| TraceParent {
            trace_id: TraceId(n),
            span_id: SpanId(n as u64),
            flags: 1,
        };
        let at = Timestamp::from_unix_secs;
        let mut m = meta("d1", "Deployment", "web", None);
        m.spec_changes = vec![SpecChange {
            manager: "kubectl".into(),
            operation: "Update".into(),
            time: Some(at(100)),
        }];
        m.traceparent = Some(tp(1));
        let id = t.upsert(&m, at(100), at(100));
        let tp_of = |t: &ObjectTable, generation| {
            t.change(id, generation)
                .unwrap()
                .traceparent
                .as_deref()
                .copied()
        };
        assert_eq!(tp_of(&t, 1), Some(tp(1)));
        // A status update of the same generation changes nothing.
        t.upsert(&m, at(110), at(110));
        assert_eq!(tp_of(&t, 1), Some(tp(1)));
        // A new apply: new generation, new traceparent.
        m.generation = 2;
        m.spec_changes[0].time = Some(at(200));
        m.traceparent = Some(tp(2));
        t.upsert(&m, at(200), at(200));
        assert_eq!(
            (tp_of(&t, 2), t.change(id, 2).unwrap().started),
            (Some(tp(2)), at(200))
        );
        assert_eq!(tp_of(&t, 1), Some(tp(1)));
        // An HPA's scale: the annotation left from the last apply is stale.
        m.generation = 3;
        m.spec_changes[0].time = Some(at(300));
        t.upsert(&m, at(300), at(300));
        assert_eq!(tp_of(&t, 3), None);
        // Much later, a new value without a new generation claims no finished change.
        m.traceparent = Some(tp(3));
        t.upsert(&m, at(600), at(600));
        assert_eq!(tp_of(&t, 3), None);
        // `kubectl apply` then `kubectl annotate`: the new value arrives a moment after the
        // generation, and is that generation's.
        m.generation = 4;
        m.spec_changes[0].time = Some(at(700));
        t.upsert(&m, at(700), at(700));
        assert_eq!(tp_of(&t, 4), None);
        m.traceparent = Some(tp(4));
        t.upsert(&m, at(702), at(702));
        assert_eq!(tp_of(&t, 4), Some(tp(4)));
        // A later value does not replace it.
        m.traceparent = Some(tp(5));
        t.upsert(&m, at(703), at(703));
        assert_eq!(tp_of(&t, 4), Some(tp(4)));
        assert_eq!(t.change(id, 4).unwrap().started, at(700));
    }

    #[test]
    fn generation_is_chosen_by_time() {
        let mut t = ObjectTable::new(Duration::from_secs(60), 100);
        let mut m = meta("d1", "Deployment", "web", None);
        m.spec_changes = vec![SpecChange {
            manager: "kubectl".into(),
            operation: "Update".into(),
            time: Some(Timestamp::from_unix_secs(100)),
        }];
        let id = t.upsert(
            &m,
            Timestamp::from_unix_secs(100),
            Timestamp::from_unix_secs(100),
        );
        m.generation = 2;
        m.spec_changes[0].time = Some(Timestamp::from_unix_secs(200));
        t.upsert(
            &m,
            Timestamp::from_unix_secs(200),
            Timestamp::from_unix_secs(200),
        );
        assert_eq!(t.generation_at(id, Timestamp::from_unix_secs(150)), 1);
        assert_eq!(t.generation_at(id, Timestamp::from_unix_secs(250)), 2);
        assert_eq!(t.generation_at(id, Timestamp::from_unix_secs(50)), 1);
    }
}

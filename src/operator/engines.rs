//! One correlation engine per distinct session window.
//!
//! A session's window decides how long its engine holds events whose parent has not been seen,
//! and so how late its spans leave. With one shared engine the longest window any session asked
//! for would delay every session's spans; instead the base engine (the operator's `--window`)
//! serves every session that asks for no longer window, and each longer window gets an engine
//! of its own, fed only the inputs of the namespaces its sessions cover (plus cluster-scoped
//! objects, which any trace may name). A long window then costs memory only for its own
//! namespaces. Trace and span IDs are hashes of the objects, so every engine gives the same
//! change the same IDs.
//!
//! Pure and synchronous like the engine: the hub owns an [`Engines`] and routes what it emits.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::engine::Checkpoint;
use crate::engine::model::{Change, FinishedSpan, Observed, TraceRoot};
use crate::engine::time::Timestamp;
use crate::engine::{Engine, EngineConfig, EngineStats};

/// The windows a longer-window engine may have: a session's longer window is rounded up to one
/// of them, so at most this many extra engines run, whatever windows tenants write (each waits
/// at most twice what it asked).
pub const WINDOW_STEPS: [Duration; 4] = [
    Duration::from_secs(10),
    Duration::from_secs(20),
    Duration::from_secs(30),
    Duration::from_secs(60),
];
// `Engines::apply` keeps a bit per engine in a u32.
const _: () = assert!(WINDOW_STEPS.len() < 32);

/// An extra engine's share of the base engine's caps (entries and bytes): with at most
/// [`WINDOW_STEPS`] extra engines, all of them together hold at most half the base's worst case.
pub const EXTRA_ENGINE_SHARE: usize = 8;

/// The window a session gets: the operator's, unless it asks for longer; then the first of
/// [`WINDOW_STEPS`] that covers it (past the last, what it asked: the limits refuse that).
pub fn effective_window(base: Duration, asked: Option<Duration>) -> Duration {
    match asked {
        Some(w) if w > base => WINDOW_STEPS
            .into_iter()
            .find(|step| *step >= w)
            .unwrap_or(w)
            .max(base),
        _ => base,
    }
}

/// An extra engine's settings: the base's, its window, and [`EXTRA_ENGINE_SHARE`] of its caps.
fn extra_config(base: &EngineConfig, window: Duration) -> EngineConfig {
    let share = |n: usize| (n / EXTRA_ENGINE_SHARE).max(1);
    EngineConfig {
        window,
        max_objects: share(base.max_objects),
        max_object_bytes: share(base.max_object_bytes),
        max_open_spans: share(base.max_open_spans),
        max_open_span_bytes: share(base.max_open_span_bytes),
        max_held_events: share(base.max_held_events),
        max_held_bytes: share(base.max_held_bytes),
        max_tracked_events: share(base.max_tracked_events),
        max_remembered_spans: share(base.max_remembered_spans),
        max_traces: share(base.max_traces),
        ..base.clone()
    }
}

/// The namespaces each engine covers, by window: the union of its sessions' namespaces. The
/// base window is always present (possibly covering nothing), so there is always an engine.
pub fn plan<'a>(
    base: Duration,
    sessions: impl IntoIterator<Item = (Option<Duration>, &'a BTreeSet<String>)>,
) -> BTreeMap<Duration, BTreeSet<String>> {
    let mut plan: BTreeMap<Duration, BTreeSet<String>> = [(base, BTreeSet::new())].into();
    for (asked, namespaces) in sessions {
        plan.entry(effective_window(base, asked))
            .or_default()
            .extend(namespaces.iter().cloned());
    }
    plan
}

/// Whether an engine covering `namespaces` needs an input of `namespace`. The empty namespace
/// is a cluster-scoped object (a Node): any trace may name one, so every engine gets them.
pub fn wants(namespaces: &BTreeSet<String>, namespace: &str) -> bool {
    namespace.is_empty() || namespaces.contains(namespace)
}

struct Covered {
    engine: Engine,
    namespaces: BTreeSet<String>,
}

/// The engines, keyed by window.
pub struct Engines {
    base: EngineConfig,
    engines: BTreeMap<Duration, Covered>,
    /// The counters of dropped engines: the summed counters never go backwards.
    retired: EngineStats,
    /// A predecessor's checkpoints whose window has no engine yet: the engine resumes from it
    /// when a session first asks for that window (before it is fed anything).
    unused: BTreeMap<Duration, Checkpoint>,
    /// The scopes (a namespace; `None`: cluster-scoped) where a watch of object state is
    /// interrupted (see [`Engine::set_state_gap`]): told to every engine, and to each new one
    /// as it starts.
    state_gaps: BTreeSet<Option<Arc<str>>>,
}

impl Engines {
    /// Starts with the base engine, covering nothing yet.
    #[cfg(test)] // Only tests start without checkpoints or look inside.
    pub fn new(base: EngineConfig) -> Self {
        Engines::resuming(base, BTreeMap::new())
    }

    /// Starts with the base engine, covering nothing yet; each engine created for a window of
    /// `checkpoints` resumes from it.
    pub fn resuming(base: EngineConfig, checkpoints: BTreeMap<Duration, Checkpoint>) -> Self {
        let mut engines = Engines {
            base,
            engines: BTreeMap::new(),
            retired: EngineStats::default(),
            unused: checkpoints,
            state_gaps: BTreeSet::new(),
        };
        engines.configure(&plan(engines.base.window, []));
        engines
    }

    pub fn base_window(&self) -> Duration {
        self.base.window
    }

    /// The windows that have an engine, shortest first.
    #[cfg(test)] // Only tests start without checkpoints or look inside.
    pub fn windows(&self) -> impl Iterator<Item = Duration> + '_ {
        self.engines.keys().copied()
    }

    /// The namespaces the engine of `window` covers, if there is one.
    #[cfg(test)] // Only tests start without checkpoints or look inside.
    pub fn namespaces(&self, window: Duration) -> Option<&BTreeSet<String>> {
        self.engines.get(&window).map(|c| &c.namespaces)
    }

    /// Makes the engines match a [`plan`]: engines for new windows start empty, engines no
    /// session uses any more are dropped (the hub abandons their sessions' traces first, as on
    /// removal), and an engine that stops covering a namespace forgets its objects after the
    /// object TTL. The base engine always stays. Returns the namespaces some engine newly covers:
    /// it has seen none of their objects yet.
    pub fn configure(&mut self, plan: &BTreeMap<Duration, BTreeSet<String>>) -> BTreeSet<String> {
        let mut joined = BTreeSet::new();
        let base = self.base.window;
        let retired = &mut self.retired;
        self.engines.retain(|window, c| {
            let keep = *window == base || plan.contains_key(window);
            if !keep {
                *retired = add(retired, &counters(&c.engine.stats()));
            }
            keep
        });
        for (window, namespaces) in plan {
            let covered = self.engines.entry(*window).or_insert_with(|| {
                tracing::info!(window = ?window, "starting an engine for a session window");
                let mut engine = Engine::new(if *window == base {
                    self.base.clone()
                } else {
                    extra_config(&self.base, *window)
                });
                // Once only: an engine of this window started later again starts fresh (its
                // predecessor here is this process's own dropped engine, whose spans went out).
                if let Some(checkpoint) = self.unused.remove(window) {
                    engine.resume(&checkpoint);
                }
                for scope in &self.state_gaps {
                    engine.set_state_gap(scope.as_deref(), true);
                }
                Covered {
                    engine,
                    namespaces: BTreeSet::new(),
                }
            });
            for gone in covered.namespaces.difference(namespaces) {
                covered.engine.release_namespace(gone);
            }
            joined.extend(namespaces.difference(&covered.namespaces).cloned());
            covered.namespaces = namespaces.clone();
        }
        joined
    }

    /// A change, to the engines it concerns through [`Engine::apply`], as replay feeds its
    /// one: an event or an object to the engines covering its namespace, a deletion to every
    /// engine (one that never knew the object ignores it), a tick to all. Cloned only for the
    /// second engine and later.
    pub fn apply(&mut self, observed: Observed) {
        // A bit per engine (at most 1 + WINDOW_STEPS of them), so that the last taker gets the
        // change itself without the namespace being copied out of it first.
        let namespace = match &observed.change {
            Change::Event(event) => Some(event.namespace.as_str()),
            Change::Upsert(meta) => Some(meta.namespace.as_str()),
            Change::Delete(_) | Change::Ignore => None,
        };
        let takers = self
            .engines
            .values()
            .enumerate()
            .filter(|(_, c)| namespace.is_none_or(|ns| wants(&c.namespaces, ns)))
            .fold(0u32, |takers, (i, _)| takers | 1 << i);
        let Some(last) = (takers != 0).then(|| 31 - takers.leading_zeros() as usize) else {
            return;
        };
        let mut observed = Some(observed);
        for (i, c) in self.engines.values_mut().enumerate() {
            if takers & 1 << i == 0 {
                continue;
            }
            let change = if i == last {
                observed.take()
            } else {
                observed.clone()
            };
            c.engine.apply(change.expect("taken only by the last"));
        }
    }

    /// Whether some watch of object state in `namespace` (`None`: cluster-scoped) is
    /// interrupted.
    pub fn set_state_gap(&mut self, namespace: Option<&str>, interrupted: bool) {
        let scope = namespace.map(Arc::from);
        if interrupted {
            self.state_gaps.insert(scope);
        } else {
            self.state_gaps.remove(&scope);
        }
        for c in self.engines.values_mut() {
            c.engine.set_state_gap(namespace, interrupted);
        }
    }

    pub fn advance(&mut self, now: Timestamp) {
        for c in self.engines.values_mut() {
            c.engine.advance(now);
        }
    }

    /// Hands every finished span to `each`, with the window of the engine that finished it.
    pub fn drain_finished(&mut self, mut each: impl FnMut(Duration, FinishedSpan)) {
        for (window, c) in &mut self.engines {
            for span in c.engine.drain_finished() {
                each(*window, span);
            }
        }
    }

    /// Emits now, marked incomplete where unsettled, the open traces of one engine whose root
    /// matches.
    pub fn abandon_where(&mut self, window: Duration, matches: impl Fn(&TraceRoot) -> bool) {
        if let Some(c) = self.engines.get_mut(&window) {
            c.engine.abandon_where(matches);
        }
    }

    /// Every engine's checkpoint: the spans it emitted last (or resumed), by window.
    pub fn checkpoints(&self) -> Vec<(Duration, Checkpoint)> {
        self.engines
            .iter()
            .map(|(w, c)| (*w, c.engine.checkpoint()))
            .collect()
    }

    /// The engines' stats summed, with the counters of dropped engines: the metrics keep one
    /// set of names whatever the engine count. An input fed to two engines counts twice.
    pub fn stats(&self) -> EngineStats {
        self.engines
            .values()
            .map(|c| c.engine.stats())
            .fold(self.retired.clone(), |sum, s| add(&sum, &s))
    }
}

/// A dropped engine's stats as they stay in the sum: its counters, no gauges.
fn counters(s: &EngineStats) -> EngineStats {
    EngineStats {
        objects: 0,
        open_spans: 0,
        open_traces: 0,
        held_now: 0,
        tracked_events: 0,
        object_bytes: 0,
        departed_root_bytes: 0,
        open_span_bytes: 0,
        held_bytes: 0,
        ..s.clone()
    }
}

fn add(a: &EngineStats, b: &EngineStats) -> EngineStats {
    EngineStats {
        events: a.events + b.events,
        duplicates: a.duplicates + b.duplicates,
        duplicate_spans: a.duplicate_spans + b.duplicate_spans,
        resumed_spans: a.resumed_spans + b.resumed_spans,
        earlier_change: a.earlier_change + b.earlier_change,
        derived_creations: a.derived_creations + b.derived_creations,
        derived_scale_ups: a.derived_scale_ups + b.derived_scale_ups,
        derived_scale_downs: a.derived_scale_downs + b.derived_scale_downs,
        derived_deletions: a.derived_deletions + b.derived_deletions,
        late_creations: a.late_creations + b.late_creations,
        rescales_unattributed: a.rescales_unattributed + b.rescales_unattributed,
        rejected: std::array::from_fn(|i| a.rejected[i] + b.rejected[i]),
        repeats: a.repeats + b.repeats,
        held: a.held + b.held,
        held_expired: a.held_expired + b.held_expired,
        held_overflow: a.held_overflow + b.held_overflow,
        spans_emitted: a.spans_emitted + b.spans_emitted,
        spans_forced: a.spans_forced + b.spans_forced,
        traces_started: a.traces_started + b.traces_started,
        objects_evicted: a.objects_evicted + b.objects_evicted,
        tracked_events_evicted: a.tracked_events_evicted + b.tracked_events_evicted,
        objects: a.objects + b.objects,
        open_spans: a.open_spans + b.open_spans,
        open_traces: a.open_traces + b.open_traces,
        held_now: a.held_now + b.held_now,
        tracked_events: a.tracked_events + b.tracked_events,
        object_bytes: a.object_bytes + b.object_bytes,
        departed_root_bytes: a.departed_root_bytes + b.departed_root_bytes,
        open_span_bytes: a.open_span_bytes + b.open_span_bytes,
        held_bytes: a.held_bytes + b.held_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::input::documents;

    const BASE: Duration = Duration::from_secs(5);
    const HUGE: Duration = Duration::from_secs(2_562_047 * 3600);

    fn ns(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn engines(plan: &BTreeMap<Duration, BTreeSet<String>>) -> Engines {
        let mut e = Engines::new(EngineConfig {
            window: BASE,
            ..EngineConfig::default()
        });
        e.configure(plan);
        e
    }

    /// Feeds a recording as the watches would (every line carries its observation time), and
    /// returns the last time fed.
    fn feed(engines: &mut Engines, recording: &str) -> Timestamp {
        let mut changes = Vec::new();
        let mut now = Timestamp::MIN;
        for doc in documents(recording) {
            (*doc.unwrap().value).into_changes(&mut changes);
        }
        for observed in changes {
            let observed = observed.unwrap();
            let at = observed
                .observed_at
                .expect("the scenario records observedAt");
            now = now.max(at);
            engines.apply(observed);
        }
        now
    }

    fn spans_by_window(engines: &mut Engines) -> BTreeMap<Duration, Vec<FinishedSpan>> {
        let mut out: BTreeMap<Duration, Vec<FinishedSpan>> = BTreeMap::new();
        engines.drain_finished(|w, s| out.entry(w).or_default().push(s));
        out
    }

    #[test]
    fn sessions_group_by_effective_window() {
        assert_eq!(
            effective_window(BASE, Some(Duration::from_secs(7))),
            WINDOW_STEPS[0]
        );
        assert_eq!(
            effective_window(BASE, Some(Duration::from_secs(21))),
            WINDOW_STEPS[2]
        );
        let extra = extra_config(&EngineConfig::default(), WINDOW_STEPS[3]);
        assert_eq!(
            extra.max_object_bytes * EXTRA_ENGINE_SHARE,
            EngineConfig::default().max_object_bytes
        );
        assert_eq!(effective_window(BASE, None), BASE);
        assert_eq!(effective_window(BASE, Some(Duration::from_secs(1))), BASE);
        assert_eq!(
            effective_window(BASE, Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
        let (shop, a, b, c) = (ns(&["shop"]), ns(&["a"]), ns(&["b"]), ns(&["c", "shop"]));
        let thirty = Some(Duration::from_secs(30));
        let p = plan(
            BASE,
            [
                (None, &shop),
                (Some(Duration::from_secs(1)), &a),
                (thirty, &b),
                (thirty, &c),
            ],
        );
        assert_eq!(
            p,
            [
                (BASE, ns(&["a", "shop"])),
                (Duration::from_secs(30), ns(&["b", "c", "shop"]))
            ]
            .into()
        );
        // No session at all: the base engine still exists, covering nothing.
        assert_eq!(plan(BASE, []), [(BASE, BTreeSet::new())].into());
        assert_eq!(
            plan(BASE, [(thirty, &b)]),
            [(BASE, ns(&[])), (Duration::from_secs(30), ns(&["b"]))].into()
        );
    }

    #[test]
    fn cluster_scoped_objects_go_to_every_engine() {
        assert!(wants(&ns(&["shop"]), "shop"));
        assert!(!wants(&ns(&["shop"]), "other"));
        assert!(wants(&ns(&["shop"]), ""));
        assert!(wants(&ns(&[]), ""));
    }

    #[test]
    fn engines_start_and_stop_with_their_windows() {
        let thirty = Duration::from_secs(30);
        let mut e = engines(&plan(BASE, []));
        assert_eq!(e.windows().collect::<Vec<_>>(), [BASE]);
        let (shop, both) = (ns(&["shop"]), ns(&["shop", "other"]));
        let joined = e.configure(&plan(BASE, [(Some(thirty), &shop)]));
        assert_eq!(joined, shop);
        assert_eq!(e.windows().collect::<Vec<_>>(), [BASE, thirty]);
        assert_eq!(e.namespaces(thirty), Some(&shop));
        assert_eq!(e.namespaces(BASE), Some(&ns(&[])));
        // The same namespaces again: nothing new for any engine.
        let joined = e.configure(&plan(BASE, [(Some(thirty), &shop)]));
        assert_eq!(joined, ns(&[]));
        // A default session beside it: the base engine joins shop, already watched for the 30s
        // one (the hub has the watches list it again).
        let joined = e.configure(&plan(BASE, [(Some(thirty), &shop), (None, &both)]));
        assert_eq!(joined, both);
        let joined = e.configure(&plan(BASE, [(None, &shop)]));
        assert_eq!(joined, ns(&[]));
        assert_eq!(
            e.windows().collect::<Vec<_>>(),
            [BASE],
            "the 30s engine went"
        );
        assert_eq!(e.namespaces(BASE), Some(&shop));
    }

    /// A long-window session in another namespace costs nothing for this one's inputs.
    #[test]
    fn an_engine_is_fed_only_its_namespaces() {
        let (shop, other) = (ns(&["shop"]), ns(&["other"]));
        let mut e = engines(&plan(BASE, [(None, &shop), (Some(HUGE), &other)]));
        feed(
            &mut e,
            include_str!("../../tests/scenarios/deployment-rollout.jsonl"),
        );
        let base = e.engines[&BASE].engine.stats();
        let huge = e.engines[&HUGE].engine.stats();
        assert!(base.events > 0 && base.objects > 0, "{base:?}");
        assert_eq!((huge.events, huge.objects), (0, 0), "{huge:?}");
        assert_eq!(e.stats().events, base.events, "stats sum over engines");

        // A default session beside the long one: both engines count their own inputs, and
        // what the long one counted stays when it goes; its gauges do not.
        let mut e = engines(&plan(BASE, [(None, &shop), (Some(HUGE), &shop)]));
        feed(
            &mut e,
            include_str!("../../tests/scenarios/deployment-rollout.jsonl"),
        );
        let (base, huge) = (
            e.engines[&BASE].engine.stats(),
            e.engines[&HUGE].engine.stats(),
        );
        assert!(huge.open_spans > 0, "{huge:?}");
        assert_eq!(e.stats().events, base.events + huge.events);
        e.configure(&plan(BASE, [(None, &shop)]));
        let after = e.stats();
        assert_eq!(
            after.events,
            base.events + huge.events,
            "counters never go back"
        );
        assert_eq!(
            after.open_spans, base.open_spans,
            "the gone engine's gauges went"
        );
    }

    /// A successor resumes the engine of the checkpoint's window, once, when it is created: the
    /// re-list then exports nothing the predecessor exported.
    #[test]
    fn an_engine_resumes_the_checkpoint_of_its_window() {
        let recording = include_str!("../../tests/scenarios/deployment-rollout.jsonl");
        let shop = ns(&["shop"]);
        let run = |e: &mut Engines| {
            let last = feed(e, recording);
            let cfg = EngineConfig::default();
            e.advance(last.saturating_add(BASE + cfg.horizon + Duration::from_secs(1)));
            spans_by_window(e).remove(&BASE).unwrap_or_default().len()
        };
        let mut first = engines(&plan(BASE, [(None, &shop)]));
        let exported = run(&mut first);
        assert!(exported > 0);
        let checkpoints: BTreeMap<_, _> = first.checkpoints().into_iter().collect();
        assert_eq!(checkpoints[&BASE].len(), exported);

        let mut successor = Engines::resuming(
            EngineConfig {
                window: BASE,
                ..EngineConfig::default()
            },
            checkpoints.clone(),
        );
        successor.configure(&plan(BASE, [(None, &shop)]));
        assert_eq!(run(&mut successor), 0, "nothing exported twice");
        // Placed again as their events came round (not necessarily every one: a span the
        // predecessor emitted early may have no event of its own to come round with).
        let resumed = successor.stats().resumed_spans as usize;
        assert!(
            resumed > 0 && resumed <= exported,
            "{resumed} of {exported}"
        );

        // A checkpoint of another window resumes nothing here: every span goes out.
        let thirty = Duration::from_secs(30);
        let mut other = Engines::resuming(
            EngineConfig {
                window: BASE,
                ..EngineConfig::default()
            },
            [(thirty, checkpoints[&BASE].clone())].into(),
        );
        other.configure(&plan(BASE, [(None, &shop)]));
        assert_eq!(run(&mut other), exported);
    }

    /// The issue: one session's huge window must not hold back another's spans.
    #[test]
    fn a_huge_window_does_not_delay_a_default_session() {
        let recording = include_str!("../../tests/scenarios/deployment-rollout.jsonl");
        let expected = crate::replay::replay(
            recording,
            EngineConfig {
                window: BASE,
                ..EngineConfig::default()
            },
        )
        .spans;
        let shop = ns(&["shop"]);
        let mut e = engines(&plan(BASE, [(None, &shop), (Some(HUGE), &shop)]));
        let last = feed(&mut e, recording);
        // Window and horizon after the last input, and a second of slack.
        let cfg = EngineConfig::default();
        e.advance(last.saturating_add(BASE + cfg.horizon + Duration::from_secs(1)));
        let by_window = spans_by_window(&mut e);
        let base: BTreeSet<_> = by_window[&BASE].iter().map(|s| s.span_id).collect();
        let all: BTreeSet<_> = expected.iter().map(|s| s.span_id).collect();
        assert_eq!(base, all, "the default session got every span, on time");
        let huge = by_window.get(&HUGE).map_or(0, Vec::len);
        assert!(
            huge < all.len(),
            "the huge window still holds some ({huge} of {})",
            all.len()
        );
        // Both engines give a change the same IDs: the huge one's spans are a subset.
        e.abandon_where(HUGE, |_| true);
        let late: BTreeSet<_> = spans_by_window(&mut e)
            .remove(&HUGE)
            .unwrap_or_default()
            .iter()
            .map(|s| s.span_id)
            .collect();
        assert!(!late.is_empty() && late.is_subset(&all), "{late:?}");
    }
}

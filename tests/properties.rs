//! Properties of the engine on random workloads: random sizes, timing jitter (which reorders
//! deliveries), crash loops, dropped objects and events, and engine settings.

#[path = "workload/gen.rs"]
mod workload;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use eventspan::engine::model::FinishedSpan;
use eventspan::engine::model::{Change, Observed};
use eventspan::engine::{Engine, EngineConfig};
use proptest::prelude::*;
use workload::WorkloadConfig;

fn run(changes: &[Observed], cfg: &EngineConfig) -> Vec<FinishedSpan> {
    let mut engine = Engine::new(cfg.clone());
    let mut spans = Vec::new();
    for change in changes {
        engine.apply(change.clone());
        spans.extend(engine.drain_finished());
    }
    engine.finish();
    spans.extend(engine.drain_finished());
    spans
}

fn check_invariants(spans: &[FinishedSpan]) -> Result<(), TestCaseError> {
    let mut by_id: HashMap<_, &FinishedSpan> = HashMap::new();
    for s in spans {
        prop_assert!(
            by_id.insert(s.span_id, s).is_none(),
            "span {} emitted twice",
            s.span_id
        );
        prop_assert!(s.end >= s.start, "span {} ends before it starts", s.span_id);
    }
    let emitted_at: HashMap<_, usize> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id, i))
        .collect();
    let mut roots: HashMap<_, usize> = HashMap::new();
    for s in spans {
        // README: a parent's end covers the children known when it was emitted; only a child
        // that arrived after its parent went out (a late event) may end after it.
        if let Some(parent) = s.parent.and_then(|p| by_id.get(&p))
            && emitted_at[&s.span_id] < emitted_at[&parent.span_id]
        {
            prop_assert!(
                s.end <= parent.end,
                "{} ({}) ends after its parent {} ({}), emitted after it",
                s.span_id,
                s.name(),
                parent.span_id,
                parent.name()
            );
        }
        match s.parent {
            None => *roots.entry(s.trace_id).or_default() += 1,
            Some(p) => {
                let parent = by_id.get(&p);
                prop_assert!(
                    parent.is_some(),
                    "parent {p} of {} ({}) missing",
                    s.span_id,
                    s.name()
                );
                let parent = parent.unwrap();
                prop_assert_eq!(
                    parent.trace_id,
                    s.trace_id,
                    "parent of {} in another trace",
                    s.span_id
                );
                prop_assert!(
                    s.start >= parent.start,
                    "{} ({}) starts before its parent {} ({})",
                    s.span_id,
                    s.name(),
                    parent.span_id,
                    parent.name()
                );
            }
        }
    }
    let traces: HashSet<_> = spans.iter().map(|s| s.trace_id).collect();
    for t in traces {
        prop_assert_eq!(
            roots.get(&t).copied(),
            Some(1),
            "trace {} has no single root",
            t
        );
    }
    Ok(())
}

fn workload_config() -> impl Strategy<Value = WorkloadConfig> {
    (1usize..5, 1usize..5, 0u64..3000, 0u32..60, any::<u64>()).prop_map(
        |(deployments, pods_per_deployment, jitter_ms, crash_percent, seed)| WorkloadConfig {
            deployments,
            pods_per_deployment,
            stagger: Duration::from_millis(700),
            jitter: Duration::from_millis(jitter_ms),
            crash_percent,
            seed,
            ..Default::default()
        },
    )
}

fn engine_config() -> impl Strategy<Value = EngineConfig> {
    (1u64..10, 100u64..2000, 2u64..40).prop_map(|(window, settle_ms, horizon)| EngineConfig {
        window: Duration::from_secs(window),
        root_settle: Duration::from_millis(settle_ms),
        horizon: Duration::from_secs(horizon),
        ..EngineConfig::default()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn spans_form_well_rooted_trees(w in workload_config(), cfg in engine_config()) {
        let changes = workload::generate(&w).changes;
        let spans = run(&changes, &cfg);
        prop_assert!(!spans.is_empty());
        check_invariants(&spans)?;
    }

    #[test]
    fn lost_objects_and_events_still_give_well_rooted_trees(
        w in workload_config(),
        cfg in engine_config(),
        lose in proptest::collection::vec(any::<bool>(), 1..64),
        drop_all_objects in any::<bool>(),
    ) {
        let changes: Vec<Observed> = workload::generate(&w)
            .changes
            .into_iter()
            .enumerate()
            .filter(|(i, c)| {
                let object = !matches!(c.change, Change::Event(_));
                let lost = lose[i % lose.len()] && i % 4 == 0;
                !(lost || drop_all_objects && object)
            })
            .map(|(_, c)| c)
            .collect();
        let spans = run(&changes, &cfg);
        check_invariants(&spans)?;
    }

    /// Issue 12: under load the controllers' events arrive late or never. Dropping any subset
    /// of them, and delaying others by up to a minute, never hangs a pod's event under a span
    /// about another pod (the nearest ancestor about a pod is about its own).
    #[test]
    fn dropped_or_late_controller_events_never_misparent_a_pods_event(
        w in workload_config(),
        fate in proptest::collection::vec(0u8..4, 1..64),
        delay_s in 5u64..60,
    ) {
        let changes = disturb_controllers(workload::generate(&w).changes, &fate, delay_s);
        let spans = run(&changes, &EngineConfig::default());
        check_invariants(&spans)?;
        check_own_pod_above(&spans)?;
    }

    #[test]
    fn output_is_deterministic(w in workload_config(), cfg in engine_config()) {
        let changes = workload::generate(&w).changes;
        prop_assert_eq!(run(&changes, &cfg), run(&changes, &cfg));
    }

    #[test]
    fn every_event_lands_in_exactly_one_span(w in workload_config()) {
        let generated = workload::generate(&w);
        let spans = run(&generated.changes, &EngineConfig::default());
        let mut event_uids: HashSet<String> = HashSet::new();
        for c in &generated.changes {
            if let Change::Event(e) = &c.change {
                event_uids.insert(e.uid.clone());
            }
        }
        let mut seen: HashSet<String> = HashSet::new();
        // A span derived from state (a controller's event that did not come in time, or was
        // jittered past its window) stands for no input event: not counted.
        for e in spans.iter().filter_map(|s| s.event.as_ref()).filter(|e| !e.derived) {
            // A repeated event may span several episodes; each episode is a span.
            seen.insert(e.uid.clone());
        }
        prop_assert_eq!(seen, event_uids);
    }
}

/// Each controller event (ReplicaSet and Deployment controllers) by its fate, cycling: 0 kept,
/// 1 dropped, 2 and 3 delivered `delay_s` later (with the time it was observed moved on, as a
/// rate-limited client delivers it), after what was observed by then.
fn disturb_controllers(changes: Vec<Observed>, fate: &[u8], delay_s: u64) -> Vec<Observed> {
    let delay = Duration::from_secs(delay_s);
    let mut out: Vec<Observed> = Vec::with_capacity(changes.len());
    let mut late: Vec<Observed> = Vec::new();
    let mut n = 0;
    for c in changes {
        let now = c.observed_at;
        // Deliver the late ones whose time has come, before this change.
        if let Some(now) = now {
            let (due, wait): (Vec<_>, Vec<_>) = late
                .into_iter()
                .partition(|l| l.observed_at.is_some_and(|t| t <= now));
            out.extend(due);
            late = wait;
        }
        let controller = matches!(&c.change, Change::Event(e)
            if e.reporting_controller == "replicaset-controller"
                || e.reporting_controller == "deployment-controller");
        if !controller {
            out.push(c);
            continue;
        }
        n += 1;
        match fate[n % fate.len()] {
            0 => out.push(c),
            1 => {}
            _ => late.push(Observed {
                observed_at: c.observed_at.map(|t| t.saturating_add(delay)),
                change: c.change,
            }),
        }
    }
    out.extend(late);
    out
}

/// For every span of a pod's event, the nearest ancestor about a pod (a controller's "Created
/// pod: X", "Deleted pod: X", derived or not) is about the same pod.
fn check_own_pod_above(spans: &[FinishedSpan]) -> Result<(), TestCaseError> {
    use eventspan::engine::model::AttrRef;
    let text = |s: &FinishedSpan, key: &str| match s.attribute(key) {
        Some(AttrRef::Str(v)) => Some(v.to_string()),
        _ => None,
    };
    let by_id: HashMap<_, &FinishedSpan> = spans.iter().map(|s| (s.span_id, s)).collect();
    for s in spans {
        let Some(e) = s.event.as_ref().filter(|e| e.involved.kind == "Pod") else {
            continue;
        };
        let mut up = s.parent.and_then(|p| by_id.get(&p));
        while let Some(a) = up {
            if text(a, "eventspan.child.kind").as_deref() == Some("Pod") {
                let about = text(a, "eventspan.child.name");
                prop_assert_eq!(
                    about.as_deref(),
                    Some(e.involved.name.as_str()),
                    "{} of pod {} hangs under {} about another pod",
                    e.reason,
                    e.involved.name,
                    a.name()
                );
                break;
            }
            up = a.parent.and_then(|p| by_id.get(&p));
        }
    }
    Ok(())
}

/// The synthetic workload the properties run on is the same on every run, and as large as asked.
#[test]
fn the_workload_is_deterministic_and_sized() {
    let cfg = WorkloadConfig {
        deployments: 3,
        pods_per_deployment: 2,
        ..Default::default()
    };
    let a = workload::generate(&cfg);
    let b = workload::generate(&cfg);
    assert_eq!(a.changes, b.changes);
    // Per deployment: 1 + m·6 (first rollout) + m·(1 + 6 + 1 + 2) (update), before crash loops.
    assert!(a.events >= 3 * (1 + 2 * 6 + 2 * 10));
    let lines = workload::to_json_lines(&a);
    assert_eq!(lines.lines().count(), a.changes.len());
}

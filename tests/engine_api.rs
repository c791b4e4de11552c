//! The engine's public surface on a recorded rollout decoded by `wire`: abandoning a trace,
//! and which traces still have open spans. (The engine crate has no decoder of its own, so
//! these live beside the recordings.)

use std::time::Duration;

use eventspan::engine::ids::TraceId;
use eventspan::engine::model::{AttrRef, FinishedSpan};
use eventspan::engine::{Engine, EngineConfig};
use eventspan::wire::WireObject;

/// Feeds the first `lines` lines of a scenario.
fn engine_after(lines: usize) -> Engine {
    let input = include_str!("scenarios/deployment-rollout.jsonl");
    let mut engine = Engine::new(EngineConfig::default());
    let mut changes = Vec::new();
    for line in input.lines().take(lines) {
        serde_json::from_str::<WireObject>(line)
            .unwrap()
            .into_changes(&mut changes);
    }
    for change in changes {
        engine.apply(change.unwrap());
    }
    engine
}

#[test]
fn abandoning_a_trace_emits_its_open_spans_marked_incomplete() {
    let mut engine = engine_after(12);
    engine.advance(engine.now().saturating_add(Duration::from_secs(2)));
    let before: Vec<FinishedSpan> = engine.drain_finished().collect();
    assert!(before.is_empty(), "nothing settled yet: {before:?}");
    engine.abandon_where(|root| &*root.name == "other");
    assert_eq!(
        engine.drain_finished().count(),
        0,
        "another root's traces are left alone"
    );
    engine.abandon_where(|root| &*root.name == "web");
    let spans: Vec<FinishedSpan> = engine.drain_finished().collect();
    assert!(spans.len() >= 4, "{spans:?}");
    assert!(spans.iter().any(|s| s.parent.is_none()), "the root too");
    assert!(spans.iter().all(|s| s.incomplete), "none had settled");
    let root = spans.iter().find(|s| s.parent.is_none()).unwrap();
    assert_eq!(
        root.attribute("eventspan.incomplete"),
        Some(AttrRef::Bool(true))
    );
    assert_eq!(engine.stats().open_spans, 0);
}
#[test]
fn a_trace_has_no_open_spans_once_its_root_is_emitted() {
    let input = include_str!("scenarios/deployment-rollout.jsonl");
    let mut engine = Engine::new(EngineConfig::default());
    let mut changes = Vec::new();
    let web = "d0000000-0000-4000-8000-00000000web1";
    let traces = [TraceId::for_change(web, 1), TraceId::for_change(web, 2)];
    let (mut open_seen, mut roots) = (false, 0);
    for line in input.lines() {
        serde_json::from_str::<WireObject>(line)
            .unwrap()
            .into_changes(&mut changes);
        for change in changes.drain(..) {
            engine.apply(change.unwrap());
        }
        open_seen |= traces.iter().any(|t| engine.has_open_spans(*t));
        let spans: Vec<FinishedSpan> = engine.drain_finished().collect();
        for s in spans.iter().filter(|s| s.parent.is_none()) {
            roots += 1;
            assert!(!engine.has_open_spans(s.trace_id), "root emitted last");
        }
    }
    assert!(open_seen, "a trace with open spans");
    engine.finish();
    let last: Vec<FinishedSpan> = engine.drain_finished().collect();
    for s in &last {
        roots += usize::from(s.parent.is_none());
        assert!(!engine.has_open_spans(s.trace_id));
    }
    assert_eq!(roots, 2, "two generations");
    assert!(!engine.has_open_spans(TraceId(1)), "an unknown trace");
}

//! Scenario tests: recorded streams replayed into trees checked against golden files, and the
//! same streams with their changes reordered (as separate watches deliver them) giving the same
//! tree.
//!
//! `EVENTSPAN_BLESS=1 cargo test --test scenarios` rewrites the golden files; review the diff.

#[path = "workload/gen.rs"]
mod workload;

use std::path::{Path, PathBuf};

use eventspan::engine::EngineConfig;
use eventspan::replay::{self, tree};

/// Hand-written scenarios in tests/scenarios, recordings of the local cluster in
/// tests/scenarios/recorded (see record-all there).
fn scenario_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut files: Vec<PathBuf> = [root.clone(), root.join("recorded")]
        .iter()
        .flat_map(|dir| std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("jsonl" | "json" | "yaml")
            )
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 14,
        "scenarios missing from {}",
        root.display()
    );
    files
}

fn render(input: &str) -> String {
    let result = replay::replay(input, EngineConfig::default());
    assert!(
        result.skipped.is_empty(),
        "skipped input: {:?}",
        result.skipped
    );
    tree::render(&result.spans)
}

#[test]
fn scenarios_match_their_golden_trees() {
    let bless = std::env::var_os("EVENTSPAN_BLESS").is_some();
    let mut failures = Vec::new();
    for file in scenario_files() {
        let input = std::fs::read_to_string(&file).unwrap();
        let actual = render(&input);
        let golden = file.with_extension("tree");
        if bless {
            std::fs::write(&golden, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_else(|_| {
            panic!(
                "no golden file {}; run with EVENTSPAN_BLESS=1",
                golden.display()
            )
        });
        if actual != expected {
            failures.push(format!(
                "{}:\n--- expected\n{expected}\n--- actual\n{actual}",
                file.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A Deployment applied by a pipeline that annotated it with its traceparent, then rolled out by
/// a second run with a new one: each trace's root carries the traceparent of its own change, and
/// a session in `Parent` mode exports each trace as part of its pipeline's trace.
#[test]
fn a_traceparent_annotated_deployment_carries_each_changes_traceparent() {
    use eventspan::otlp::SpanShape;
    use eventspan::wire::parse_traceparent;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let input = std::fs::read_to_string(dir.join("traceparent.jsonl")).unwrap();
    let spans = replay::replay(&input, EngineConfig::default()).spans;
    let first = parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    let second = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    let traces = tree::by_trace(&spans);
    assert_eq!(traces.len(), 2);
    for (_, spans) in &traces {
        let expected = match spans[0].root.generation {
            1 => first,
            2 => second,
            g => panic!("generation {g}"),
        };
        assert!(expected.is_some());
        for s in spans {
            assert_eq!(
                s.root.traceparent,
                expected,
                "{} of generation {}",
                s.name(),
                s.root.generation
            );
        }
    }

    // The engine's trees and IDs are those of the same stream without the annotation.
    let plain = std::fs::read_to_string(dir.join("deployment-rollout.jsonl")).unwrap();
    let without = tree::render(&replay::replay(&plain, EngineConfig::default()).spans);
    let annotated: String = tree::render(&spans)
        .lines()
        .filter(|l| !l.starts_with("  applied under traceparent"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(annotated, without);

    // Exported (the default session shape, Parent): the remote trace IDs, and each root span a
    // child of its pipeline's span, flagged remote.
    let shape = SpanShape::default();
    for (_, spans) in &traces {
        let remote = spans[0].root.traceparent.unwrap();
        let mut line = String::new();
        eventspan::otlp::json::write_request(&mut line, spans.iter().copied(), &shape);
        let request: serde_json::Value = serde_json::from_str(&line).unwrap();
        let exported: Vec<&serde_json::Value> = request["resourceSpans"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["scopeSpans"][0]["spans"].as_array().unwrap())
            .collect();
        assert_eq!(exported.len(), spans.len());
        assert!(
            exported
                .iter()
                .all(|s| s["traceId"] == remote.trace_id.to_string())
        );
        let roots: Vec<_> = exported
            .iter()
            .filter(|s| s["parentSpanId"] == remote.span_id.to_string())
            .collect();
        assert_eq!(roots.len(), 1, "one root, parented on the pipeline's span");
        assert_eq!(roots[0]["flags"], 0x301);
    }
}

/// The whole Flux recording (tests/scenarios/recorded/flux: two commits) gives its tree: each
/// rollout rooted at kustomize-controller's report of the apply that caused it, and one trace per
/// reconciled revision of the Kustomization and the GitRepository. Not in the reordering check
/// (see the README there: the second rollout's whole-second kwok events reorder across a second
/// boundary); its first commit is, as `flux-apply.jsonl`.
#[test]
fn the_flux_recording_roots_each_rollout_at_its_commit() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/recorded/flux");
    let input = std::fs::read_to_string(dir.join("flux.jsonl")).unwrap();
    let expected = std::fs::read_to_string(dir.join("flux.tree")).unwrap();
    assert_eq!(render(&input), expected);
}

/// The HPA recording (tests/scenarios/recorded/hpa: an HPA scaling a Deployment 1 → 2 on
/// creation, then 2 → 4 when its minReplicas is raised, without metrics) gives its tree: each
/// scale's trace rooted at the HPA's `SuccessfulRescale`, told apart as a scale (`changed:
/// replicas 1 → 2`). It is in the reordering check too: there, a second scale's `Created pod`
/// delivered before its `Scaled up` waits for it, as the first scale's pods are all claimed.
#[test]
fn the_hpa_recording_roots_each_scale_at_the_hpa() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/recorded/hpa");
    let input = std::fs::read_to_string(dir.join("hpa.jsonl")).unwrap();
    let expected = std::fs::read_to_string(dir.join("hpa.tree")).unwrap();
    assert_eq!(render(&input), expected);
}

/// A tiny deterministic generator, so a failing permutation can be reproduced.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// Shuffles lines whose `observedAt` lie within `spread` of each other: the reordering that
/// separate watches (events, pods, ReplicaSets) and the apiserver's batching produce. One
/// object's own changes keep their order, as a watch delivers them (by resourceVersion).
fn permute(lines: &[&str], spread_ms: i64, rng: &mut Lcg) -> Vec<String> {
    let parsed: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let observed: Vec<i64> = parsed
        .iter()
        .map(|v| {
            let at = v["observedAt"]
                .as_str()
                .expect("recordings carry observedAt");
            eventspan::engine::time::Timestamp::parse_rfc3339(at)
                .unwrap()
                .unix_nanos()
                / 1_000_000
        })
        .collect();
    let object = |i: usize| {
        let uid = &parsed[i]["object"]["metadata"]["uid"];
        uid.as_str().map_or(format!("line {i}"), str::to_string)
    };
    let mut out = Vec::with_capacity(lines.len());
    let mut start = 0;
    while start < lines.len() {
        let mut end = start + 1;
        while end < lines.len() && observed[end] - observed[start] < spread_ms {
            end += 1;
        }
        let mut chunk: Vec<usize> = (start..end).collect();
        for i in (1..chunk.len()).rev() {
            chunk.swap(i, rng.below(i + 1));
        }
        // Each object's lines go back into the slots it got, in their original order.
        let mut by_object: std::collections::HashMap<String, Vec<usize>> = Default::default();
        for &i in &chunk {
            by_object.entry(object(i)).or_default().push(i);
        }
        for mine in by_object.values_mut() {
            mine.sort_unstable();
            mine.reverse();
        }
        for slot in chunk.iter_mut() {
            *slot = by_object.get_mut(&object(*slot)).unwrap().pop().unwrap();
        }
        out.extend(chunk.into_iter().map(|i| lines[i].to_string()));
        start = end;
    }
    out
}

/// One line of a recording, short: when it was observed, what it is.
fn summary(line: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    let o = &v["object"];
    let text = o["message"].as_str().or(o["note"].as_str()).unwrap_or("");
    format!(
        "{} {} {} {} {} {}",
        v["observedAt"].as_str().unwrap_or(""),
        v["type"].as_str().unwrap_or(""),
        o["kind"].as_str().unwrap_or(""),
        o["metadata"]["name"].as_str().unwrap_or(""),
        o["reason"].as_str().unwrap_or(""),
        text
    )
}

#[test]
fn reordering_within_the_settle_time_gives_the_same_tree() {
    // Objects and events of one change arrive within well under a second of each other; the
    // engine waits `root_settle` (1 s) and the correlation window (5 s) for late arrivals.
    let spread_ms = 900;
    let recorded = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/recorded");
    for file in scenario_files()
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "jsonl"))
        .chain([recorded.join("hpa/hpa.jsonl")])
    {
        let input = std::fs::read_to_string(&file).unwrap();
        let expected = render(&input);
        let lines: Vec<&str> = input.lines().filter(|l| !l.trim().is_empty()).collect();
        let mut rng = Lcg(0x5eed);
        let mut changed = 0;
        for round in 0..40 {
            let permuted = permute(&lines, spread_ms, &mut rng);
            if permuted
                .iter()
                .map(String::as_str)
                .ne(lines.iter().copied())
            {
                changed += 1;
            }
            let actual = render(&permuted.join("\n"));
            if actual != expected {
                let saved =
                    Path::new(env!("CARGO_TARGET_TMPDIR")).join("permutation-failure.jsonl");
                std::fs::write(&saved, permuted.join("\n")).unwrap();
                eprintln!("the failing input is in {}", saved.display());
                let order: Vec<String> = permuted.iter().map(|l| summary(l)).collect();
                panic!(
                    "{} permutation {round} gave another tree\n--- expected\n{expected}\n--- actual\n{actual}\n--- order\n{}",
                    file.display(),
                    order.join("\n")
                );
            }
        }
        assert!(
            changed > 0,
            "{}: no permutation changed the order",
            file.display()
        );
    }
}

#[test]
fn replay_is_byte_for_byte_deterministic() {
    for file in scenario_files() {
        let input = std::fs::read_to_string(&file).unwrap();
        let a = replay::replay(&input, EngineConfig::default());
        let b = replay::replay(&input, EngineConfig::default());
        assert_eq!(
            replay::otlp_json_lines(&a.spans),
            replay::otlp_json_lines(&b.spans)
        );
        assert_eq!(tree::render(&a.spans), tree::render(&b.spans));
    }
}

/// A Deployment deleted mid-rollout: events of its pods that arrive after the Deployment,
/// its ReplicaSet and a pod are gone still land in its trace (tombstones), and a pod known only
/// from its events, whose creation message was missed, joins through its name, marked as a guess.
#[test]
fn deleted_and_unannounced_objects_keep_their_trace() {
    use eventspan::engine::model::AttrRef;
    let input = include_str!("scenarios/deleted-mid-rollout.jsonl");
    let spans = replay::replay(input, EngineConfig::default()).spans;
    let traces: std::collections::BTreeSet<_> = spans.iter().map(|s| s.trace_id).collect();
    assert_eq!(traces.len(), 1, "one trace: {}", tree::render(&spans));
    let pod_spans = |pod: &str| -> Vec<_> {
        spans
            .iter()
            .filter(|s| s.name().starts_with("Pod."))
            .filter(|s| s.attribute("k8s.pod.name") == Some(AttrRef::Str(pod)))
            .collect()
    };
    let seen = pod_spans("api-6b7c9d8f5-k2v9x");
    let unannounced = pod_spans("api-6b7c9d8f5-m4n7q");
    assert_eq!((seen.len(), unannounced.len()), (3, 3));
    for s in &unannounced {
        assert_eq!(
            s.attribute("eventspan.owner.guessed_from_name"),
            Some(AttrRef::Bool(true))
        );
        assert_eq!(
            s.attribute("k8s.deployment.name"),
            Some(AttrRef::Str("api"))
        );
    }
    // The Killing after its pod's deletion is parented like the pod's other events.
    let killing = seen.iter().find(|s| s.name() == "Pod.Killing").unwrap();
    assert_eq!(killing.parent, seen[0].parent);
    assert!(
        seen.iter()
            .all(|s| s.attribute("eventspan.owner.guessed_from_name").is_none())
    );
}

/// A status seen long after it changed (listed when the operator restarts) dates the outcome by
/// its condition's time, not by when it was seen.
#[test]
fn a_late_status_is_dated_by_its_condition() {
    let input = include_str!("scenarios/rollout-durations.jsonl");
    let mut lines: Vec<serde_json::Value> = input
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let done = lines
        .iter_mut()
        .rfind(|l| l["object"]["kind"] == "Deployment")
        .unwrap();
    done["observedAt"] = "2026-11-24T10:02:00Z".into();
    done["object"]["status"]["conditions"][1]["lastUpdateTime"] = "2026-11-24T10:00:03Z".into();
    let late: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let spans = replay::replay(&late, EngineConfig::default()).spans;
    let root = spans.iter().find(|s| s.parent.is_none()).unwrap();
    assert_eq!(
        root.end,
        eventspan::engine::time::Timestamp::parse_rfc3339("2026-11-24T10:00:04Z").unwrap(),
        "the condition's second, plus the second it may lag: {}",
        tree::render(&spans)
    );
}

/// A failed rollout does not wait for its pod that never became Ready: its trace goes out a
/// window after the failure, not `max_state_wait` after the pod's last event.
#[test]
fn a_failed_rollout_does_not_wait_for_its_stuck_pod() {
    use eventspan::engine::Engine;
    use eventspan::engine::model::AttrRef;
    use eventspan::engine::time::Timestamp;
    use eventspan::wire::WireObject;
    let input = include_str!("scenarios/rollout-deadline-exceeded.jsonl");
    let mut changes = Vec::new();
    for line in input.lines() {
        serde_json::from_str::<WireObject>(line)
            .unwrap()
            .into_changes(&mut changes);
    }
    let mut engine = Engine::new(EngineConfig::default());
    let mut spans = Vec::new();
    for change in changes {
        engine.apply(change.unwrap());
        spans.extend(engine.drain_finished());
    }
    let failed = Timestamp::parse_rfc3339("2026-11-24T10:00:10.1Z").unwrap();
    engine.advance(failed.saturating_add(std::time::Duration::from_secs(30)));
    spans.extend(engine.drain_finished());
    let root = spans
        .iter()
        .find(|s| s.parent.is_none())
        .expect("the root is out 30 s after the failure");
    assert_eq!(
        root.attribute("eventspan.outcome"),
        Some(AttrRef::Str("failed"))
    );
    let stuck = spans
        .iter()
        .find(|s| s.attribute("eventspan.outcome") == Some(AttrRef::Str("pending")))
        .expect("the stuck pod's creation, marked pending");
    assert!(
        !stuck.incomplete,
        "released by the rollout's end, not cut off"
    );
}

/// Issue 16: the rollout's root says what the change changed (names and images, never values),
/// and each pod's creation span where the pod's time went, phase by phase.
#[test]
fn a_rollout_says_what_changed_and_where_each_pods_time_went() {
    use eventspan::engine::model::AttrRef;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let input = std::fs::read_to_string(dir.join("deployment-rollout.jsonl")).unwrap();
    let spans = replay::replay(&input, EngineConfig::default()).spans;
    let roots: Vec<_> = spans.iter().filter(|s| s.parent.is_none()).collect();
    let root_of = |generation| {
        roots
            .iter()
            .find(|s| s.root.generation == generation)
            .expect("a root per generation")
    };
    // The first generation this process saw has nothing to compare with.
    assert_eq!(root_of(1).attribute("eventspan.change.summary"), None);
    let second = root_of(2);
    assert_eq!(
        second.attribute("eventspan.change.summary"),
        Some(AttrRef::Str("image web: nginx:1.27 → nginx:1.28"))
    );
    assert_eq!(
        second.attribute("eventspan.change.kind"),
        Some(AttrRef::Str("template"))
    );
    assert!(
        !format!("{second:?}").contains("\"live\""),
        "an env value never reaches a span"
    );
    let creations: Vec<_> = spans
        .iter()
        .filter(|s| {
            s.event
                .as_ref()
                .is_some_and(|e| e.reason == "SuccessfulCreate")
        })
        .collect();
    assert_eq!(creations.len(), 4);
    for c in creations {
        // Pulling at +293 ms, Pulled at +1512 ms (and likewise for each pod): 1,219 ms.
        assert_eq!(
            c.attribute("eventspan.phase.pull.ms"),
            Some(AttrRef::Int(1219)),
            "{}",
            c.message()
        );
        assert_eq!(
            c.attribute("eventspan.phase.pull.kind"),
            Some(AttrRef::Str("infra"))
        );
        // Pulled → Created → Started: 41 + 150 ms.
        assert_eq!(
            c.attribute("eventspan.phase.start.ms"),
            Some(AttrRef::Int(191))
        );
        // No pod status in this recording: readiness is not made up.
        assert_eq!(c.attribute("eventspan.phase.ready.ms"), None);
    }
}

/// The OTLP/JSON lines of a replay written as traces settle (as the CLI writes them).
fn streamed_lines(input: &str, max_kept: usize) -> String {
    let writer = replay::StreamedOtlpJson::new(Vec::new()).with_max_kept(max_kept);
    let skipped = |bad| panic!("skipped {bad:?}");
    let (_, out) =
        replay::stream_otlp_json(input.as_bytes(), EngineConfig::default(), writer, skipped)
            .unwrap();
    String::from_utf8(out).unwrap()
}

/// Each span of OTLP/JSON lines with its resource, sorted: what a receiver ends up with.
fn spans_received(lines: &str) -> Vec<(String, String)> {
    let mut spans = Vec::new();
    for line in lines.lines() {
        let request: serde_json::Value = serde_json::from_str(line).unwrap();
        for rs in request["resourceSpans"].as_array().unwrap() {
            for span in rs["scopeSpans"][0]["spans"].as_array().unwrap() {
                spans.push((rs["resource"].to_string(), span.to_string()));
            }
        }
    }
    spans.sort();
    spans
}

/// The CLI writes a trace when it has no open span left, not at the end: a receiver gets the
/// same spans with the same resources. Only a span that joins a trace already written (an
/// event that came late) is sent in a request of its own, as a live session sends it.
#[test]
fn streamed_otlp_json_delivers_the_spans_of_the_whole_replay() {
    let workload = workload::generate(&workload::WorkloadConfig {
        deployments: 40,
        pods_per_deployment: 4,
        ..Default::default()
    });
    let inputs = scenario_files()
        .into_iter()
        .map(|f| {
            (
                f.display().to_string(),
                std::fs::read_to_string(&f).unwrap(),
            )
        })
        .chain([("workload".to_string(), workload::to_json_lines(&workload))]);
    let mut split = Vec::new();
    for (name, input) in inputs {
        let whole = replay::otlp_json_lines(&replay::replay(&input, EngineConfig::default()).spans);
        let streamed = streamed_lines(&input, replay::MAX_KEPT_SPANS);
        assert!(!whole.is_empty(), "{name}: no traces");
        assert_eq!(spans_received(&streamed), spans_received(&whole), "{name}");
        if streamed.lines().count() != whole.lines().count() {
            split.push(name.rsplit('/').next().unwrap().to_string());
        }
    }
    // The one scenario with an event a minute after its trace settled.
    assert_eq!(split, ["unschedulable.jsonl"]);
}

/// Past its bound on kept spans, the writer sends the traces kept longest as far as they are:
/// more requests, the same spans.
#[test]
fn streamed_otlp_json_past_its_bound_sends_partial_traces_and_loses_nothing() {
    let workload = workload::generate(&workload::WorkloadConfig {
        deployments: 40,
        pods_per_deployment: 4,
        ..Default::default()
    });
    let input = workload::to_json_lines(&workload);
    let whole = replay::otlp_json_lines(&replay::replay(&input, EngineConfig::default()).spans);
    let bounded = streamed_lines(&input, 50);
    assert_eq!(spans_received(&bounded), spans_received(&whole));
    assert!(
        bounded.lines().count() > whole.lines().count(),
        "{} requests",
        bounded.lines().count()
    );
}

/// Issue 12 (the API-server restart mid-rollout): the watches come back one by one, and the
/// Deployment's can be back seconds before the Pods'. While a watch of state is interrupted, a
/// rollout's end does not release the pods still waiting for Ready: they are waited for until
/// the watch is whole again (and a window more), and end Ready, not `pending`. Only a watch of
/// their namespace (or a cluster-wide one) holds them: another tenant's interrupted watch does
/// not.
#[test]
fn pods_behind_an_interrupted_watch_are_waited_for_past_the_rollouts_end() {
    use eventspan::engine::Engine;
    use eventspan::engine::model::{AttrRef, FinishedSpan};
    use eventspan::engine::time::Timestamp;
    use eventspan::wire::WireObject;
    let at = |t: &str| Timestamp::parse_rfc3339(&format!("2026-11-24T10:{t}Z")).unwrap();
    let input = include_str!("scenarios/rollout-durations.jsonl");
    let (mut on_time, mut ready_pods) = (Vec::new(), Vec::new());
    for line in input.lines() {
        let mut value: serde_json::Value = serde_json::from_str(line).unwrap();
        let ready =
            value["object"]["kind"] == "Pod" && value["object"]["status"]["phase"] == "Running";
        if ready {
            // Delivered 17 s after the Deployment said it was done.
            value["observedAt"] = "2026-11-24T10:00:20Z".into();
            ready_pods.push(value);
        } else {
            on_time.push(value);
        }
    }
    assert_eq!(ready_pods.len(), 2, "the scenario's two pods become Ready");
    let feed = |engine: &mut Engine, lines: &[serde_json::Value], spans: &mut Vec<FinishedSpan>| {
        for line in lines {
            let mut changes = Vec::new();
            serde_json::from_value::<WireObject>(line.clone())
                .unwrap()
                .into_changes(&mut changes);
            for change in changes {
                engine.apply(change.unwrap());
                spans.extend(engine.drain_finished());
            }
        }
    };
    // `gap`: the scope of the interrupted watch (`Some(None)`: cluster-wide), if any.
    let run = |gap: Option<Option<&str>>| {
        let mut engine = Engine::new(EngineConfig::default());
        let mut spans = Vec::new();
        let (before, done) = on_time.split_at(on_time.len() - 1);
        feed(&mut engine, before, &mut spans);
        if let Some(scope) = gap {
            engine.set_state_gap(scope, true);
        }
        feed(&mut engine, done, &mut spans);
        engine.advance(at("00:19.9"));
        spans.extend(engine.drain_finished());
        if let Some(scope) = gap {
            engine.set_state_gap(scope, false);
        }
        feed(&mut engine, &ready_pods, &mut spans);
        engine.advance(at("01:00"));
        spans.extend(engine.drain_finished());
        spans
    };
    let creations = |spans: &[FinishedSpan]| -> Vec<String> {
        spans
            .iter()
            .filter(|s| s.name().ends_with("SuccessfulCreate"))
            .map(|s| match s.attribute("eventspan.outcome") {
                Some(AttrRef::Str(outcome)) => outcome.to_string(),
                other => format!("{other:?}"),
            })
            .collect()
    };
    // A watch that was never interrupted: the rollout's end releases them a window later.
    assert_eq!(creations(&run(None)), ["pending", "pending"]);
    // Another namespace's watch was: it does not hold this rollout's pods.
    assert_eq!(creations(&run(Some(Some("other")))), ["pending", "pending"]);
    for scope in [Some("shop"), None] {
        let spans = run(Some(scope));
        assert_eq!(
            creations(&spans),
            ["done", "done"],
            "{scope:?}: {}",
            tree::render(&spans)
        );
        assert_eq!(spans.len(), 14, "{}", tree::render(&spans));
    }
}

/// A recorded scenario's lines, each edited by `edit` (which may drop it by returning `None`).
fn edited_recording(
    name: &str,
    edit: impl Fn(serde_json::Value) -> Option<serde_json::Value>,
) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenarios/recorded")
        .join(name);
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|line| edit(serde_json::from_str(line).unwrap()))
        .map(|v| v.to_string() + "\n")
        .collect()
}

/// Issue 16: a NodeClaim's `Initialized` (under the nomination of the pod that waits for it)
/// says how long the node took to come up from the nomination: in the Karpenter recording both
/// events carry whole seconds and are dated by when they were seen, the nomination at
/// 20:26:28.9168 and `Initialized` at 20:26:30.2056 (1,288.8 ms, whole milliseconds kept).
#[test]
fn a_nodeclaims_initialized_span_says_how_long_its_node_took_from_the_nomination() {
    use eventspan::engine::model::AttrRef;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/recorded");
    let input = std::fs::read_to_string(dir.join("karpenter.jsonl")).unwrap();
    let spans = replay::replay(&input, EngineConfig::default()).spans;
    let reason = |s: &eventspan::engine::model::FinishedSpan| {
        s.event
            .as_ref()
            .map(|e| (e.involved.kind.clone(), e.reason.clone()))
    };
    let provisioned: Vec<_> = spans
        .iter()
        .filter(|s| s.attribute("eventspan.node.provisioning.ms").is_some())
        .collect();
    assert_eq!(provisioned.len(), 1, "one NodeClaim came up");
    let initialized = provisioned[0];
    assert_eq!(
        reason(initialized),
        Some(("NodeClaim".into(), "Initialized".into()))
    );
    assert_eq!(
        initialized.attribute("eventspan.node.provisioning.ms"),
        Some(AttrRef::Int(1288))
    );
    let nomination = spans
        .iter()
        .find(|s| Some(s.span_id) == initialized.parent)
        .expect("its parent was exported");
    assert_eq!(reason(nomination), Some(("Pod".into(), "Nominated".into())));
}

/// The Karpenter recording with cluster-autoscaler's words instead of Karpenter's: the
/// nomination becomes the `TriggeredScaleUp` cluster-autoscaler records on the pod (its message
/// as in core/scaleup/orchestrator), the NodeClaim's and NodePool's events are gone (a
/// cluster-autoscaler node group has no object of its own). No cluster-autoscaler runs here:
/// it has no provider for this machine's fake nodes, and its module is not served.
fn as_cluster_autoscaler(mut line: serde_json::Value) -> Option<serde_json::Value> {
    let event = line.get_mut("object")?;
    let regarding = event["regarding"]["kind"].as_str().unwrap_or_default();
    if matches!(regarding, "NodeClaim" | "NodePool") {
        return None;
    }
    if event["reason"] == "Nominated" {
        event["reason"] = "TriggeredScaleUp".into();
        event["note"] = "pod triggered scale-up: [{kwok-pool 2->3 (max: 4)}]".into();
        event["reportingController"] = "cluster-autoscaler".into();
        event["deprecatedSource"]["component"] = "cluster-autoscaler".into();
    }
    Some(line)
}

/// Issue 16, cluster-autoscaler: its `TriggeredScaleUp` opens the pod's wait-node phase as
/// Karpenter's nomination does, and is infrastructure time.
#[test]
fn a_cluster_autoscaler_scale_up_is_the_pods_wait_for_a_node() {
    use eventspan::engine::model::AttrRef;
    let input = edited_recording("karpenter.jsonl", as_cluster_autoscaler);
    let result = replay::replay(&input, EngineConfig::default());
    assert!(result.skipped.is_empty(), "{:?}", result.skipped);
    let spans = result.spans;
    let scale_up = spans
        .iter()
        .find(|s| {
            s.event
                .as_ref()
                .is_some_and(|e| e.reason == "TriggeredScaleUp")
        })
        .expect("the scale-up is a span");
    assert_eq!(
        scale_up.attribute("eventspan.phase"),
        Some(AttrRef::Str("wait-node"))
    );
    assert_eq!(
        scale_up.attribute("eventspan.phase.kind"),
        Some(AttrRef::Str("infra"))
    );
    assert!(!scale_up.error);
    let creation = spans
        .iter()
        .find(|s| Some(s.span_id) == scale_up.parent)
        .expect("under the pod's creation");
    assert_eq!(
        creation.attribute("eventspan.phase.wait-node.trigger"),
        Some(AttrRef::Str("TriggeredScaleUp"))
    );
    // Created at +787 ms, scheduled onto the new node at +3,063 ms.
    assert_eq!(
        creation.attribute("eventspan.phase.wait-node.ms"),
        Some(AttrRef::Int(2276))
    );
}

/// Issue 16, cluster-autoscaler: a `NotTriggerScaleUp` (a Normal event) says no node it could
/// add fits the pod, so the pod's trace ends with it as an error, as Karpenter's refusal does.
#[test]
fn a_cluster_autoscaler_refusal_is_an_error_on_the_waiting_pod() {
    use eventspan::engine::model::AttrRef;
    let input = edited_recording("karpenter-limit.jsonl", |mut line| {
        let event = &mut line["object"];
        if event["reportingController"] == "karpenter" && event["reason"] == "FailedScheduling" {
            event["reason"] = "NotTriggerScaleUp".into();
            event["type"] = "Normal".into();
            event["note"] = "pod didn't trigger scale-up (it wouldn't fit if a new node is added): 1 Insufficient cpu".into();
            event["reportingController"] = "cluster-autoscaler".into();
            event["deprecatedSource"]["component"] = "cluster-autoscaler".into();
        }
        Some(line)
    });
    let spans = replay::replay(&input, EngineConfig::default()).spans;
    let refusal = spans
        .iter()
        .find(|s| {
            s.event
                .as_ref()
                .is_some_and(|e| e.reason == "NotTriggerScaleUp")
        })
        .expect("the refusal is a span");
    assert!(refusal.error, "a refusal is an error though a Normal event");
    assert_eq!(
        refusal.attribute("eventspan.phase.kind"),
        Some(AttrRef::Str("infra"))
    );
    assert_eq!(refusal.attribute("eventspan.phase"), None);
    let root = spans.iter().find(|s| s.parent.is_none()).expect("a root");
    assert_eq!(
        root.attribute("eventspan.outcome"),
        Some(AttrRef::Str("pending"))
    );
}

/// Issue 16, on a real recording (`recorded/image.jsonl`): a template patched in one go (image,
/// an env var's value, a CPU request, a template annotation) says what changed on the rollout's
/// root, by name, never by value.
#[test]
fn a_recorded_template_change_says_what_it_changed_and_no_value() {
    use eventspan::engine::model::AttrRef;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/recorded");
    let input = std::fs::read_to_string(dir.join("image.jsonl")).unwrap();
    assert!(
        !input.contains("green-secret"),
        "the recorder keeps no env value"
    );
    let spans = replay::replay(&input, EngineConfig::default()).spans;
    let root = spans
        .iter()
        .find(|s| s.parent.is_none() && s.root.generation == 2)
        .expect("the patch's rollout");
    assert_eq!(
        root.attribute("eventspan.change.summary"),
        Some(AttrRef::Str(
            "image web: nginx:1.27 → nginx:1.28; env web: MODE; resources web; template annotations: release"
        ))
    );
    assert_eq!(
        root.attribute("eventspan.change.kind"),
        Some(AttrRef::Str("template"))
    );
}

/// The long-replay benchmark's steady cluster: Deployments deleted after their rollout. Every
/// deletion line is used, the rollouts' traces are those of the workload that keeps its
/// Deployments, and the kubelet's stops of the deleted pods join the traces.
#[test]
fn a_workload_whose_deployments_are_deleted_keeps_its_traces() {
    use std::collections::BTreeSet;
    use std::time::Duration;
    let cfg = workload::WorkloadConfig {
        deployments: 20,
        pods_per_deployment: 3,
        crash_percent: 0,
        ..Default::default()
    };
    let kept = workload::to_json_lines(&workload::generate(&cfg));
    let retired = workload::to_json_lines(&workload::generate(&workload::WorkloadConfig {
        retire_after: Some(Duration::from_secs(60)),
        ..cfg.clone()
    }));
    assert!(retired.contains(r#""kind":"Deployment","metadata":{"namespace":"bench""#));
    let kept = replay::replay(&kept, EngineConfig::default());
    let retired = replay::replay(&retired, EngineConfig::default());
    assert!(retired.skipped.is_empty(), "{:?}", retired.skipped);
    let traces = |r: &replay::Replay| r.spans.iter().map(|s| s.trace_id).collect::<BTreeSet<_>>();
    assert_eq!(traces(&retired), traces(&kept));
    let killings =
        |r: &replay::Replay| r.spans.iter().filter(|s| s.name() == "Pod.Killing").count();
    // Three old pods per rollout stop in both; the three new ones only when deleted.
    assert_eq!((killings(&kept), killings(&retired)), (60, 120));
}

/// The long-replay benchmark's statuses: each pod's Ready and each rollout's completion are read
/// from them, so no span waits for a status; without them such spans end pending.
#[test]
fn a_workload_with_statuses_ends_its_spans_on_them() {
    use eventspan::engine::model::AttrRef;
    let cfg = workload::WorkloadConfig {
        deployments: 20,
        pods_per_deployment: 3,
        crash_percent: 0,
        ..Default::default()
    };
    let outcomes = |cfg: &workload::WorkloadConfig| {
        let input = workload::to_json_lines(&workload::generate(cfg));
        let r = replay::replay(&input, EngineConfig::default());
        assert!(r.skipped.is_empty(), "{:?}", r.skipped);
        let mut counts = std::collections::BTreeMap::new();
        for s in &r.spans {
            if let Some(AttrRef::Str(o)) = s.attribute("eventspan.outcome") {
                *counts.entry(o.to_string()).or_insert(0) += 1;
            }
        }
        counts
    };
    let without = outcomes(&cfg);
    let with = outcomes(&workload::WorkloadConfig {
        statuses: true,
        ..cfg.clone()
    });
    assert!(without.get("pending") > Some(&0), "{without:?}");
    assert_eq!(with.get("pending"), None, "{with:?}");
    // 2 rollouts and 6 Ready pods per Deployment (old pods deleted after Ready are done too).
    assert_eq!(with.get("done"), Some(&(20 * (2 + 6))), "{with:?}");
}

/// A cap small enough to evict the deleted Deployments while their traces are known: the roots of
/// those traces are still named after their Deployment and its change (without what the table
/// keeps of them, 151 of the 400 roots were `.Change`, of no kind).
#[test]
fn roots_evicted_at_the_object_cap_still_name_their_traces() {
    use std::time::Duration;
    let input = workload::to_json_lines(&workload::generate(&workload::WorkloadConfig {
        deployments: 200,
        pods_per_deployment: 3,
        crash_percent: 0,
        retire_after: Some(Duration::from_secs(20)),
        statuses: true,
        ..Default::default()
    }));
    let cfg = EngineConfig {
        max_object_bytes: 1 << 20,
        ..EngineConfig::default()
    };
    let r = replay::replay(&input, cfg);
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);
    assert!(r.stats.objects_evicted > 0, "the cap must evict");
    let mut roots = std::collections::BTreeMap::new();
    for s in r.spans.iter().filter(|s| s.parent.is_none()) {
        *roots.entry(s.name().to_string()).or_insert(0) += 1;
    }
    // Two rollouts per Deployment.
    assert_eq!(
        roots,
        [("Deployment.Update".to_string(), 400)].into(),
        "{roots:?}"
    );
    // The Deployment's own spans, and its ReplicaSets' while they are known (the owner chain
    // ends at the Deployment). An evicted ReplicaSet's spans name nothing: no trace pins it.
    let unnamed = r
        .spans
        .iter()
        .filter(|s| match s.name().split('.').next() {
            Some("Deployment") => true,
            Some("ReplicaSet") => !s.object_attributes.is_empty(),
            _ => false,
        })
        .filter(|s| s.attribute("k8s.deployment.name").is_none())
        .count();
    assert_eq!(unnamed, 0, "spans without k8s.deployment.name");
}

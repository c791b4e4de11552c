//! Occurrences, not objects: each new count of an Event is placed at its own time in the trace
//! of the change it belongs to, through the ways Kubernetes reuses and merges Event objects.
//! Each case is a small recording written here, replayed, and checked span by span.

use eventspan::engine::EngineConfig;
use eventspan::engine::model::{AttrRef, FinishedSpan};
use eventspan::engine::time::Timestamp;
use eventspan::replay;
use serde_json::{Value, json};

const T0: i64 = 1_795_000_000;

fn at(secs: f64) -> String {
    let nanos = T0 * 1_000_000_000 + (secs * 1e9).round() as i64;
    Timestamp::from_unix_nanos(nanos).to_rfc3339_micros()
}

fn whole(secs: f64) -> String {
    at(secs.floor()).replace(".000000Z", "Z")
}

struct Recording(Vec<String>);

impl Recording {
    fn line(&mut self, object: Value, observed: f64) {
        let doc = json!({"type": "ADDED", "object": object, "observedAt": at(observed)});
        self.0.push(doc.to_string());
    }

    fn root(&mut self, kind: &str, name: &str, generation: i64, changed: f64) {
        let api = "apps/v1";
        self.line(
            json!({"apiVersion": api, "kind": kind, "metadata": {
                "name": name, "namespace": "shop", "uid": format!("uid-{name}"),
                "generation": generation, "creationTimestamp": whole(0.0),
                "managedFields": [{"manager": "kubectl", "operation": "Update",
                    "time": whole(changed), "fieldsV1": {"f:spec": {"f:template": {}}}}]}}),
            changed + 0.01,
        );
    }

    fn owned(&mut self, kind: &str, name: &str, uid: &str, owner: (&str, &str), created: f64) {
        let api = if kind == "Pod" { "v1" } else { "apps/v1" };
        self.line(
            json!({"apiVersion": api, "kind": kind, "metadata": {
                "name": name, "namespace": "shop", "uid": uid,
                "creationTimestamp": whole(created),
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner.0, "name": owner.1,
                    "uid": format!("uid-{}", owner.1), "controller": true}]}}),
            created + 0.005,
        );
    }

    fn replica_set(&mut self, name: &str, created: f64) {
        self.owned(
            "ReplicaSet",
            name,
            &format!("uid-{name}"),
            ("Deployment", "web"),
            created,
        );
    }

    /// An event seen once (count 1) at `t`.
    fn once(&mut self, uid: &str, involved: (&str, &str, &str), what: (&str, &str), t: f64) {
        self.event(uid, involved, what.0, what.1, 1, t, t);
    }

    /// The deployment controller's event about a step of the Deployment `web`.
    fn scale(&mut self, uid: &str, message: &str, t: f64) {
        let web = ("Deployment", "web", "uid-web");
        self.once(uid, web, ("ScalingReplicaSet", message), t);
    }

    /// A pod of the ReplicaSet `rs`, created at `created`.
    fn pod(&mut self, name: &str, rs: &str, created: f64) {
        self.owned(
            "Pod",
            name,
            &format!("uid-{name}"),
            ("ReplicaSet", rs),
            created,
        );
    }

    /// Makes the last line a `kind` (`MODIFIED`, `DELETED`) watch event seen at `observed`, its
    /// object changed by `edit`.
    fn as_seen(&mut self, kind: &str, observed: f64, edit: impl FnOnce(&mut Value)) {
        let line = self.0.pop().expect("a line");
        let mut doc: Value = serde_json::from_str(&line).expect("own JSON");
        doc["type"] = json!(kind);
        doc["observedAt"] = json!(at(observed));
        edit(&mut doc["object"]);
        self.0.push(doc.to_string());
    }

    #[allow(clippy::too_many_arguments)]
    fn event(
        &mut self,
        uid: &str,
        involved: (&str, &str, &str),
        reason: &str,
        message: &str,
        count: u32,
        first: f64,
        last: f64,
    ) {
        let api = match involved.0 {
            "Pod" => "v1",
            _ => "apps/v1",
        };
        self.line(
            json!({"apiVersion": "v1", "kind": "Event",
                "metadata": {"name": format!("{}.{uid}", involved.1), "namespace": "shop", "uid": uid},
                "involvedObject": {"kind": involved.0, "namespace": "shop", "name": involved.1,
                    "uid": involved.2, "apiVersion": api},
                "reason": reason, "message": message, "type": "Normal", "count": count,
                "source": {"component": "test-controller"},
                "firstTimestamp": whole(first), "lastTimestamp": whole(last)}),
            last + 0.02,
        );
    }

    /// An Event stamped at `time` that the watch delivered at `observed`.
    fn late_event(
        uid: &str,
        involved: (&str, &str, &str),
        (reason, message): (&str, &str),
        time: f64,
        observed: f64,
    ) -> String {
        let mut r = Recording(Vec::new());
        r.event(uid, involved, reason, message, 1, time, time);
        let mut doc: Value = serde_json::from_str(&r.0[0]).expect("own JSON");
        doc["observedAt"] = json!(at(observed));
        doc.to_string()
    }

    fn replay(&self) -> Vec<FinishedSpan> {
        let run = replay::replay(&self.0.join("\n"), EngineConfig::default());
        assert!(run.skipped.is_empty(), "{:?}", run.skipped);
        run.spans
    }
}

fn str_attr(s: &FinishedSpan, key: &str) -> Option<String> {
    match s.attribute(key) {
        Some(AttrRef::Str(v)) => Some(v.to_string()),
        _ => None,
    }
}

fn generation_of(s: &FinishedSpan) -> i64 {
    s.root.generation
}

fn of_event<'a>(spans: &'a [FinishedSpan], uid: &str) -> Vec<&'a FinishedSpan> {
    spans
        .iter()
        .filter(|s| s.event.as_ref().is_some_and(|e| e.uid == uid))
        .collect()
}

fn parent<'a>(spans: &'a [FinishedSpan], s: &FinishedSpan) -> Option<&'a FinishedSpan> {
    let p = s.parent?;
    spans
        .iter()
        .find(|o| o.span_id == p && o.trace_id == s.trace_id)
}

/// The uid of the event whose span is `s`'s parent.
fn parent_event<'a>(spans: &'a [FinishedSpan], s: &FinishedSpan) -> Option<&'a str> {
    parent(spans, s)
        .and_then(|p| p.event.as_ref())
        .map(|e| e.uid.as_str())
}

/// Who reported each span `keep` keeps, and how it was derived (`eventspan.derived`), if it was.
fn reporters(
    spans: &[FinishedSpan],
    keep: impl Fn(&FinishedSpan) -> bool,
) -> Vec<(String, Option<String>)> {
    spans
        .iter()
        .filter(|s| keep(s))
        .map(|s| {
            (
                s.component().name.to_string(),
                str_attr(s, "eventspan.derived"),
            )
        })
        .collect()
}

/// After ten similar events the recorder publishes one "(combined from similar events): ..."
/// Event whose count grows with each further one, its message the newest: each count is another
/// action, on another child, in the trace of its own change.
#[test]
fn combined_from_similar_events_are_actions_of_their_own_change() {
    let mut r = Recording(Vec::new());
    let rollout = |r: &mut Recording, generation: i64, t: f64, rs: &str, count: u32| {
        r.root("Deployment", "web", generation, t);
        r.owned(
            "ReplicaSet",
            rs,
            &format!("uid-{rs}"),
            ("Deployment", "web"),
            t + 0.05,
        );
        let message =
            format!("(combined from similar events): Scaled up replica set {rs} from 0 to 2");
        r.event(
            "ev-combined",
            ("Deployment", "web", "uid-web"),
            "ScalingReplicaSet",
            &message,
            count,
            60.0,
            t + 0.1,
        );
    };
    rollout(&mut r, 2, 60.0, "web-b", 1);
    rollout(&mut r, 3, 120.0, "web-c", 2);
    let spans = r.replay();
    let combined = of_event(&spans, "ev-combined");
    assert_eq!(combined.len(), 2, "one span per occurrence: {combined:?}");
    for (s, (generation, rs)) in combined.iter().zip([(2, "web-b"), (3, "web-c")]) {
        assert_eq!(generation_of(s), generation, "{}", s.name());
        assert_eq!(str_attr(s, "eventspan.child.name").as_deref(), Some(rs));
    }
}

/// A StatefulSet's controller says "create Pod db-0 in StatefulSet db successful" again at the
/// second rollout: the same Event object, count 1 → 2, and a new pod under the same name. The
/// second occurrence is its own span, in the second rollout's trace, parent of the new pod's
/// events; the old pod's events stay with the first.
#[test]
fn a_repeated_legacy_event_is_one_span_per_rollout() {
    let mut r = Recording(Vec::new());
    let create = "create Pod db-0 in StatefulSet db successful";
    r.root("StatefulSet", "db", 1, 0.0);
    r.owned("Pod", "db-0", "uid-db-0-a", ("StatefulSet", "db"), 1.0);
    r.once(
        "ev-create",
        ("StatefulSet", "db", "uid-db"),
        ("SuccessfulCreate", create),
        1.0,
    );
    let scheduled = "Successfully assigned shop/db-0 to node-1";
    r.once(
        "ev-sched-a",
        ("Pod", "db-0", "uid-db-0-a"),
        ("Scheduled", scheduled),
        1.2,
    );
    r.root("StatefulSet", "db", 2, 60.0);
    r.once(
        "ev-delete",
        ("StatefulSet", "db", "uid-db"),
        (
            "SuccessfulDelete",
            "delete Pod db-0 in StatefulSet db successful",
        ),
        60.1,
    );
    r.owned("Pod", "db-0", "uid-db-0-b", ("StatefulSet", "db"), 62.0);
    r.event(
        "ev-create",
        ("StatefulSet", "db", "uid-db"),
        "SuccessfulCreate",
        create,
        2,
        1.0,
        62.0,
    );
    r.once(
        "ev-sched-b",
        ("Pod", "db-0", "uid-db-0-b"),
        ("Scheduled", scheduled),
        62.3,
    );
    let spans = r.replay();
    let creates = of_event(&spans, "ev-create");
    assert_eq!(creates.len(), 2, "{creates:?}");
    let (first, second) = (creates[0], creates[1]);
    assert_eq!((first.first_count, second.first_count), (1, 2));
    assert_eq!(generation_of(first), 1);
    assert_eq!(generation_of(second), 2);
    assert!(
        second.start >= Timestamp::from_unix_secs(T0 + 62),
        "at its own time"
    );
    let sched_a = of_event(&spans, "ev-sched-a")[0];
    let sched_b = of_event(&spans, "ev-sched-b")[0];
    assert_eq!(
        parent(&spans, sched_a).map(|p| p.span_id),
        Some(first.span_id)
    );
    assert_eq!(
        parent(&spans, sched_b).map(|p| p.span_id),
        Some(second.span_id)
    );
}

/// First seen with count 50 and a firstTimestamp an hour old (the watch started late): one
/// occurrence, at its last time, not a span reaching back an hour.
#[test]
fn an_event_first_seen_with_a_high_count_is_one_occurrence_at_its_last_time() {
    let mut r = Recording(Vec::new());
    r.root("Deployment", "web", 1, 0.0);
    r.replica_set("web-a", 0.1);
    r.owned("Pod", "web-a-1", "uid-pod", ("ReplicaSet", "web-a"), 0.2);
    r.event(
        "ev-backoff",
        ("Pod", "web-a-1", "uid-pod"),
        "BackOff",
        "Back-off restarting failed container",
        50,
        -3600.0,
        30.0,
    );
    let spans = r.replay();
    let backoff = of_event(&spans, "ev-backoff");
    assert_eq!(backoff.len(), 1);
    assert_eq!(backoff[0].first_count, 50);
    assert!(backoff[0].start >= Timestamp::from_unix_secs(T0 + 30));
}

/// An events.k8s.io Event with a series: its occurrences after the first are at
/// `series.lastObservedTime`, never at `eventTime`.
#[test]
fn a_series_continues_at_its_last_observed_time() {
    let mut r = Recording(Vec::new());
    r.root("Deployment", "web", 1, 0.0);
    r.replica_set("web-a", 0.1);
    r.owned("Pod", "web-a-1", "uid-pod", ("ReplicaSet", "web-a"), 0.2);
    let series = |r: &mut Recording, count: u32, last: f64| {
        let mut event = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "web-a-1.s", "namespace": "shop", "uid": "ev-series"},
            "regarding": {"kind": "Pod", "name": "web-a-1", "uid": "uid-pod", "apiVersion": "v1",
                "namespace": "shop"},
            "reason": "BackOff", "note": "Back-off restarting failed container",
            "type": "Warning", "eventTime": at(1.0),
            "reportingController": "kubelet", "reportingInstance": "node-1", "action": "Restart"});
        if count > 1 {
            event["series"] = json!({"count": count, "lastObservedTime": at(last)});
        }
        r.line(event, last + 0.01);
    };
    series(&mut r, 1, 1.0);
    series(&mut r, 2, 20.0);
    series(&mut r, 3, 300.0);
    let spans = r.replay();
    let occurrences = of_event(&spans, "ev-series");
    assert!(!occurrences.is_empty());
    let last = occurrences.iter().map(|s| s.end).max().unwrap();
    let first = occurrences.iter().map(|s| s.start).min().unwrap();
    assert_eq!(first, Timestamp::from_unix_nanos((T0 + 1) * 1_000_000_000));
    assert!(
        last >= Timestamp::from_unix_secs(T0 + 300),
        "{occurrences:?}"
    );
    let counted: u32 = occurrences
        .iter()
        .map(|s| s.count - s.first_count + 1)
        .sum();
    assert_eq!(counted, 3, "every occurrence counted once");
}

/// Under load the controller-manager's events arrive late or never (its client is rate
/// limited): the pods' own events must still hang under spans about their own pod, never under
/// a sibling's "Created pod".
#[test]
fn late_or_missing_creation_events_never_misparent_a_pod() {
    let mut r = Recording(Vec::new());
    r.root("Deployment", "web", 2, 0.0);
    r.replica_set("web-b", 0.05);
    r.scale("ev-scale", "Scaled up replica set web-b from 0 to 3", 0.1);
    for (i, pod) in ["web-b-1", "web-b-2", "web-b-3"].iter().enumerate() {
        let t = 0.2 + i as f64 * 0.1;
        r.owned(
            "Pod",
            pod,
            &format!("uid-{pod}"),
            ("ReplicaSet", "web-b"),
            t,
        );
    }
    r.once(
        "ev-create-3",
        ("ReplicaSet", "web-b", "uid-web-b"),
        ("SuccessfulCreate", "Created pod: web-b-3"),
        0.4,
    );
    for (i, pod) in ["web-b-1", "web-b-2", "web-b-3"].iter().enumerate() {
        for (j, reason) in ["Scheduled", "Pulling", "Pulled", "Started"]
            .iter()
            .enumerate()
        {
            let t = 1.0 + i as f64 * 0.1 + j as f64;
            let uid = format!("ev-{pod}-{reason}");
            r.once(
                &uid,
                ("Pod", pod, &format!("uid-{pod}")),
                (reason, reason),
                t,
            );
        }
    }
    // "Created pod: web-b-2" is 7 s late, while the creation derived for web-b-2 is still open;
    // "Created pod: web-b-1" is 30 s late, long after the one derived for it was exported.
    for (uid, pod, time, observed) in [
        ("ev-create-2", "web-b-2", 0.3, 7.0),
        ("ev-create-1", "web-b-1", 0.2, 30.0),
    ] {
        r.0.push(Recording::late_event(
            uid,
            ("ReplicaSet", "web-b", "uid-web-b"),
            ("SuccessfulCreate", &format!("Created pod: {pod}")),
            time,
            observed,
        ));
    }
    let spans = r.replay();
    for s in &spans {
        let Some(e) = &s.event else { continue };
        if e.involved.kind != "Pod" {
            continue;
        }
        let mut up = parent(&spans, s);
        while let Some(p) = up {
            if let Some(child) = str_attr(p, "eventspan.child.name")
                && p.event
                    .as_ref()
                    .is_some_and(|pe| pe.reason == "SuccessfulCreate")
            {
                assert_eq!(
                    child,
                    e.involved.name,
                    "{} of {} under {}",
                    e.reason,
                    e.involved.name,
                    p.name()
                );
            }
            up = parent(&spans, p);
        }
    }
    // Each pod's own events hang under a creation span about that pod: the controller's, or,
    // when it did not come in time, one derived from the pod and marked so.
    for pod in ["web-b-1", "web-b-2", "web-b-3"] {
        let scheduled = of_event(&spans, &format!("ev-{pod}-Scheduled"))[0];
        let creation = parent(&spans, scheduled).expect("a parent");
        assert_eq!(
            str_attr(creation, "eventspan.child.name").as_deref(),
            Some(pod),
            "{pod} under {}",
            creation.name()
        );
        let derived = str_attr(creation, "eventspan.derived");
        assert_eq!(derived.is_some(), pod == "web-b-1", "{pod}: {derived:?}");
        let scale = parent(&spans, creation).expect("under the scale-up");
        assert_eq!(scale.name(), "Deployment.ScalingReplicaSet", "{pod}");
        let second = Timestamp::from_unix_secs(T0)..Timestamp::from_unix_secs(T0 + 1);
        assert!(
            second.contains(&creation.start),
            "{pod}: in its creationTimestamp's second"
        );
    }
    // One creation span per pod, whenever the controller's event came.
    for pod in ["web-b-1", "web-b-2", "web-b-3"] {
        let creations: Vec<_> = spans
            .iter()
            .filter(|s| {
                s.event
                    .as_ref()
                    .is_some_and(|e| e.reason == "SuccessfulCreate")
                    && str_attr(s, "eventspan.child.name").as_deref() == Some(pod)
            })
            .collect();
        assert_eq!(
            creations.len(),
            1,
            "{pod}: {} creation spans",
            creations.len()
        );
        assert_eq!(
            generation_of(creations[0]),
            2,
            "{pod}: in its change's trace"
        );
    }
    // The open derived span took the late event over; the exported one stands for it.
    let adopted = of_event(&spans, "ev-create-2");
    assert_eq!(
        adopted.len(),
        1,
        "the event that came while its stand-in was open"
    );
    assert_eq!(adopted[0].component().name, "test-controller");
    assert!(of_event(&spans, "ev-create-1").is_empty());
}

/// A rollout's second change deletes the first change's pod, and the controllers' events about
/// it ("Scaled down replica set", "Deleted pod: X") come half a minute late, after the kubelet's
/// `Killing`: everything about the deletion happened during the second change and belongs to
/// its trace, never to the first change's trace (sent long before).
#[test]
fn late_deletion_events_stay_in_the_change_they_happened_in() {
    let mut r = Recording(Vec::new());
    let rs = |r: &mut Recording, name: &str, at: f64| {
        r.owned(
            "ReplicaSet",
            name,
            &format!("uid-{name}"),
            ("Deployment", "web"),
            at,
        )
    };
    let pod_events = |r: &mut Recording, pod: &str, from: f64| {
        for (j, reason) in ["Scheduled", "Pulling", "Pulled", "Started"]
            .iter()
            .enumerate()
        {
            let t = from + j as f64;
            let uid = format!("ev-{pod}-{reason}");
            r.once(
                &uid,
                ("Pod", pod, &format!("uid-{pod}")),
                (reason, reason),
                t,
            );
        }
    };
    r.root("Deployment", "web", 1, 0.0);
    rs(&mut r, "web-a", 0.05);
    r.scale("ev-up-a", "Scaled up replica set web-a from 0 to 1", 0.1);
    r.pod("web-a-1", "web-a", 0.2);
    r.once(
        "ev-create-a-1",
        ("ReplicaSet", "web-a", "uid-web-a"),
        ("SuccessfulCreate", "Created pod: web-a-1"),
        0.2,
    );
    pod_events(&mut r, "web-a-1", 1.0);
    // The second change, a minute later.
    r.root("Deployment", "web", 2, 60.0);
    rs(&mut r, "web-b", 60.05);
    r.scale("ev-up-b", "Scaled up replica set web-b from 0 to 1", 60.1);
    r.pod("web-b-1", "web-b", 60.2);
    r.once(
        "ev-create-b-1",
        ("ReplicaSet", "web-b", "uid-web-b"),
        ("SuccessfulCreate", "Created pod: web-b-1"),
        60.2,
    );
    pod_events(&mut r, "web-b-1", 61.0);
    r.once(
        "ev-kill-a-1",
        ("Pod", "web-a-1", "uid-web-a-1"),
        ("Killing", "Stopping container app"),
        65.0,
    );
    r.0.push(Recording::late_event(
        "ev-down-a",
        ("Deployment", "web", "uid-web"),
        (
            "ScalingReplicaSet",
            "Scaled down replica set web-a from 1 to 0",
        ),
        65.0,
        90.0,
    ));
    r.0.push(Recording::late_event(
        "ev-delete-a-1",
        ("ReplicaSet", "web-a", "uid-web-a"),
        ("SuccessfulDelete", "Deleted pod: web-a-1"),
        65.0,
        95.0,
    ));
    let spans = r.replay();
    for uid in ["ev-kill-a-1", "ev-down-a", "ev-delete-a-1"] {
        let found = of_event(&spans, uid);
        assert_eq!(found.len(), 1, "{uid}: one span");
        assert_eq!(
            generation_of(found[0]),
            2,
            "{uid} in the trace of the change it happened in"
        );
    }
    let first = of_event(&spans, "ev-up-a")[0].trace_id;
    let second = of_event(&spans, "ev-up-b")[0].trace_id;
    assert_ne!(first, second);
    for s in spans.iter().filter(|s| s.trace_id == first) {
        assert!(
            s.start < Timestamp::from_unix_secs(T0 + 60),
            "{} (at {:?}) in the first change's trace",
            s.name(),
            s.start
        );
    }
    // The late deletion still hangs under the late scale-down that caused it.
    let delete = of_event(&spans, "ev-delete-a-1")[0];
    assert_eq!(parent_event(&spans, delete), Some("ev-down-a"));
}

/// Issue 12 (under load the deployment controller's events come minutes late, or never): a
/// rollout whose "Scaled up replica set" did not come gets that scale-up derived from its
/// pods, marked so, and its pods' creations hang under it, not under the root. When the
/// controller's event comes after all, there is still one scale-up: an open derived span takes
/// it over, an exported one stands for it.
#[test]
fn a_missing_or_late_scale_up_is_derived_and_never_doubled() {
    // `late`: when the controller's scale-up is delivered (None: never).
    let rollout = |late: Option<f64>| {
        let mut r = Recording(Vec::new());
        r.root("Deployment", "web", 2, 0.0);
        r.replica_set("web-b", 0.05);
        for (i, pod) in ["web-b-1", "web-b-2"].iter().enumerate() {
            let t = 0.2 + i as f64 * 0.1;
            r.owned(
                "Pod",
                pod,
                &format!("uid-{pod}"),
                ("ReplicaSet", "web-b"),
                t,
            );
            r.once(
                &format!("ev-create-{pod}"),
                ("ReplicaSet", "web-b", "uid-web-b"),
                ("SuccessfulCreate", &format!("Created pod: {pod}")),
                t,
            );
            r.once(
                &format!("ev-{pod}-Scheduled"),
                ("Pod", pod, &format!("uid-{pod}")),
                ("Scheduled", "Scheduled"),
                t + 0.5,
            );
        }
        if let Some(observed) = late {
            r.0.push(Recording::late_event(
                "ev-scale",
                ("Deployment", "web", "uid-web"),
                (
                    "ScalingReplicaSet",
                    "Scaled up replica set web-b from 0 to 2",
                ),
                0.1,
                observed,
            ));
        }
        r.replay()
    };
    let scale_ups =
        |spans: &[FinishedSpan]| reporters(spans, |s| s.name() == "Deployment.ScalingReplicaSet");
    // Never came (dropped), or came 60 s late, after everything was exported: derived.
    for late in [None, Some(60.0)] {
        let spans = rollout(late);
        assert_eq!(
            scale_ups(&spans),
            [("eventspan".to_string(), Some("state".to_string()))],
            "late {late:?}: one scale-up, derived"
        );
        let scale = spans
            .iter()
            .find(|s| s.name() == "Deployment.ScalingReplicaSet")
            .unwrap();
        assert_eq!(
            str_attr(scale, "eventspan.child.name").as_deref(),
            Some("web-b")
        );
        assert_eq!(generation_of(scale), 2);
        for pod in ["web-b-1", "web-b-2"] {
            let creation = of_event(&spans, &format!("ev-create-{pod}"))[0];
            let parent = parent(&spans, creation).expect("a parent");
            assert_eq!(parent.span_id, scale.span_id, "{pod} under the scale-up");
        }
        assert!(
            of_event(&spans, "ev-scale").is_empty(),
            "no second scale-up"
        );
    }
    // Came 6 s late, while its stand-in was open (the pods are not Ready: no status here, so
    // their spans wait the horizon): the controller's event takes the derived span over.
    let spans = rollout(Some(6.0));
    assert_eq!(
        scale_ups(&spans),
        [("test-controller".to_string(), None)],
        "one scale-up, the controller's"
    );
    let scale = of_event(&spans, "ev-scale")[0];
    for pod in ["web-b-1", "web-b-2"] {
        let creation = of_event(&spans, &format!("ev-create-{pod}"))[0];
        assert_eq!(creation.parent, Some(scale.span_id), "{pod} under it");
    }
}

/// Issue 12 (measured under load: an old pod's `Killing` under a sibling's "Deleted pod"): a
/// rollout's second scale-down deletes two more old pods, their kubelet's `Killing` comes
/// before the controller's late "Deleted pod: X" (and the late scale-down above it). Each
/// `Killing` hangs under its own pod's deletion once that comes, never under the deletion of
/// the sibling the first scale-down removed.
#[test]
fn a_kill_before_its_late_deletion_never_hangs_under_a_siblings_deletion() {
    let mut r = Recording(Vec::new());
    let pods = ["web-a-1", "web-a-2", "web-a-3"];
    r.root("Deployment", "web", 1, 0.0);
    r.replica_set("web-a", 0.05);
    r.scale("ev-up-a", "Scaled up replica set web-a from 0 to 3", 0.1);
    for pod in pods {
        r.owned(
            "Pod",
            pod,
            &format!("uid-{pod}"),
            ("ReplicaSet", "web-a"),
            0.2,
        );
        r.once(
            &format!("ev-create-{pod}"),
            ("ReplicaSet", "web-a", "uid-web-a"),
            ("SuccessfulCreate", &format!("Created pod: {pod}")),
            0.2,
        );
        r.once(
            &format!("ev-{pod}-Started"),
            ("Pod", pod, &format!("uid-{pod}")),
            ("Started", "Started"),
            1.0,
        );
    }
    r.root("Deployment", "web", 2, 60.0);
    r.scale(
        "ev-down-1",
        "Scaled down replica set web-a from 3 to 2",
        61.0,
    );
    r.once(
        "ev-delete-web-a-1",
        ("ReplicaSet", "web-a", "uid-web-a"),
        ("SuccessfulDelete", "Deleted pod: web-a-1"),
        62.0,
    );
    r.once(
        "ev-kill-web-a-1",
        ("Pod", "web-a-1", "uid-web-a-1"),
        ("Killing", "Stopping container app"),
        62.0,
    );
    // The second scale-down: the kubelet's reports come first, the controller's 20 s late.
    for pod in &pods[1..] {
        r.0.push(Recording::late_event(
            &format!("ev-kill-{pod}"),
            ("Pod", pod, &format!("uid-{pod}")),
            ("Killing", "Stopping container app"),
            74.0,
            84.0,
        ));
    }
    r.0.push(Recording::late_event(
        "ev-down-2",
        ("Deployment", "web", "uid-web"),
        (
            "ScalingReplicaSet",
            "Scaled down replica set web-a from 2 to 0",
        ),
        68.0,
        95.0,
    ));
    for pod in &pods[1..] {
        r.0.push(Recording::late_event(
            &format!("ev-delete-{pod}"),
            ("ReplicaSet", "web-a", "uid-web-a"),
            ("SuccessfulDelete", &format!("Deleted pod: {pod}")),
            74.0,
            96.0,
        ));
    }
    let spans = r.replay();
    for pod in pods {
        let kill = of_event(&spans, &format!("ev-kill-{pod}"));
        assert_eq!(kill.len(), 1, "{pod}: one Killing");
        assert_eq!(generation_of(kill[0]), 2, "{pod}: in the rollout's trace");
        let parent = parent(&spans, kill[0]).expect("a parent");
        let names = str_attr(parent, "eventspan.child.name");
        if pod == "web-a-1" {
            assert_eq!(
                names.as_deref(),
                Some(pod),
                "on time: under its own deletion"
            );
        }
        // Exported before its deletion came, the others hang under the scale-down of their
        // ReplicaSet: a parent that is true, if less precise; never a sibling's deletion.
        assert!(
            names.as_deref().is_some_and(|n| n == pod || n == "web-a"),
            "{pod}'s Killing under {} naming {names:?}",
            parent.name()
        );
    }
}

/// Issue 12 (measured under load): the recorder merged the deployment controller's scale-ups
/// into one "(combined from similar events)" Event whose count jumped, so the rollout's first
/// scale-up was never seen, only a later one. The pods the first one created still hang under
/// a derived scale-up of their ReplicaSet, not under the root, and the later step stays a span
/// of its own.
#[test]
fn a_hidden_first_scale_up_is_derived_beside_a_later_one() {
    let mut r = Recording(Vec::new());
    r.root("Deployment", "web", 2, 0.0);
    r.replica_set("web-b", 0.05);
    let create = |r: &mut Recording, pod: &str, t: f64| {
        r.owned(
            "Pod",
            pod,
            &format!("uid-{pod}"),
            ("ReplicaSet", "web-b"),
            t,
        );
        r.once(
            &format!("ev-create-{pod}"),
            ("ReplicaSet", "web-b", "uid-web-b"),
            ("SuccessfulCreate", &format!("Created pod: {pod}")),
            t,
        );
    };
    // The first pod's "Created pod" was dropped; its own first event comes late.
    r.pod("web-b-1", "web-b", 0.2);
    r.event(
        "ev-scale",
        ("Deployment", "web", "uid-web"),
        "ScalingReplicaSet",
        "(combined from similar events): Scaled up replica set web-b from 1 to 2",
        12,
        0.0,
        5.0,
    );
    create(&mut r, "web-b-2", 6.0);
    r.0.push(Recording::late_event(
        "ev-web-b-1-Scheduled",
        ("Pod", "web-b-1", "uid-web-b-1"),
        ("Scheduled", "Scheduled"),
        0.5,
        8.0,
    ));
    let spans = r.replay();
    let scale_ups: Vec<&FinishedSpan> = spans
        .iter()
        .filter(|s| s.name() == "Deployment.ScalingReplicaSet")
        .collect();
    assert_eq!(
        scale_ups.len(),
        2,
        "the derived first step and the later one"
    );
    let derived = scale_ups
        .iter()
        .find(|s| str_attr(s, "eventspan.derived").is_some())
        .expect("a derived scale-up");
    let first = spans
        .iter()
        .find(|s| {
            s.name() == "ReplicaSet.SuccessfulCreate"
                && str_attr(s, "eventspan.child.name").as_deref() == Some("web-b-1")
        })
        .expect("the first pod's derived creation");
    assert_eq!(
        first.parent,
        Some(derived.span_id),
        "first pod under the derived step"
    );
    let later = of_event(&spans, "ev-scale")[0];
    let second = of_event(&spans, "ev-create-web-b-2")[0];
    assert_eq!(
        second.parent,
        Some(later.span_id),
        "second pod under the later step"
    );
}

/// Issue 12 (measured under load): the replicaset controller's "Created pod: X" came 33 s
/// late, after X had been deleted again by the next rollout. It names that deleted pod, whose
/// creation was derived from state meanwhile: there is still one creation span for X.
#[test]
fn a_creation_announced_after_the_pod_is_gone_is_not_a_second_creation() {
    let mut r = Recording(Vec::new());
    r.root("Deployment", "web", 2, 0.0);
    r.replica_set("web-b", 0.05);
    r.scale("ev-scale", "Scaled up replica set web-b from 0 to 1", 0.1);
    r.pod("web-b-1", "web-b", 0.2);
    r.once(
        "ev-web-b-1-Scheduled",
        ("Pod", "web-b-1", "uid-web-b-1"),
        ("Scheduled", "Scheduled"),
        0.5,
    );
    r.pod("web-b-1", "web-b", 0.2);
    r.as_seen("DELETED", 20.0, |_| {});
    r.0.push(Recording::late_event(
        "ev-create-web-b-1",
        ("ReplicaSet", "web-b", "uid-web-b"),
        ("SuccessfulCreate", "Created pod: web-b-1"),
        0.2,
        40.0,
    ));
    let spans = r.replay();
    let creations: Vec<_> = spans
        .iter()
        .filter(|s| s.name() == "ReplicaSet.SuccessfulCreate")
        .map(|s| str_attr(s, "eventspan.child.name"))
        .collect();
    assert_eq!(
        creations,
        [Some("web-b-1".to_string())],
        "one creation span"
    );
}

/// Issue 12 (measured under load): a rollout's scale-down of the old ReplicaSet was dropped or
/// merged away. Its pod deletions hang under a derived scale-down of that ReplicaSet, in the
/// rollout's trace, not under the root; a late controller event takes an open one over.
#[test]
fn a_missing_scale_down_is_derived_for_the_deletions_it_caused() {
    let rollout = |late: Option<f64>| {
        let mut r = Recording(Vec::new());
        r.root("Deployment", "web", 1, 0.0);
        r.replica_set("web-a", 0.05);
        r.scale("ev-up-a", "Scaled up replica set web-a from 0 to 1", 0.1);
        r.pod("web-a-1", "web-a", 0.2);
        r.once(
            "ev-create-web-a-1",
            ("ReplicaSet", "web-a", "uid-web-a"),
            ("SuccessfulCreate", "Created pod: web-a-1"),
            0.2,
        );
        r.root("Deployment", "web", 2, 60.0);
        r.once(
            "ev-delete-web-a-1",
            ("ReplicaSet", "web-a", "uid-web-a"),
            ("SuccessfulDelete", "Deleted pod: web-a-1"),
            62.0,
        );
        r.once(
            "ev-kill-web-a-1",
            ("Pod", "web-a-1", "uid-web-a-1"),
            ("Killing", "Stopping container app"),
            62.0,
        );
        if let Some(observed) = late {
            r.0.push(Recording::late_event(
                "ev-down-a",
                ("Deployment", "web", "uid-web"),
                (
                    "ScalingReplicaSet",
                    "Scaled down replica set web-a from 1 to 0",
                ),
                61.0,
                observed,
            ));
        }
        r.replay()
    };
    let scale_downs = |spans: &[FinishedSpan]| {
        reporters(spans, |s| {
            s.name() == "Deployment.ScalingReplicaSet"
                && str_attr(s, "k8s.event.message").is_some_and(|m| m.contains("down"))
        })
    };
    let spans = rollout(None);
    assert_eq!(
        scale_downs(&spans),
        [("eventspan".to_string(), Some("state".to_string()))],
        "one scale-down, derived"
    );
    let delete = of_event(&spans, "ev-delete-web-a-1")[0];
    assert_eq!(generation_of(delete), 2);
    let step = parent(&spans, delete).expect("a parent");
    assert_eq!(step.name(), "Deployment.ScalingReplicaSet");
    assert_eq!(
        str_attr(step, "eventspan.child.name").as_deref(),
        Some("web-a")
    );
    let kill = of_event(&spans, "ev-kill-web-a-1")[0];
    assert_eq!(
        kill.parent,
        Some(delete.span_id),
        "Killing under its deletion"
    );
    // Came 6 s late, while the derived one was open: the controller's event stands.
    let spans = rollout(Some(68.0));
    assert_eq!(
        scale_downs(&spans),
        [("test-controller".to_string(), None)],
        "one scale-down, the controller's"
    );
    let delete = of_event(&spans, "ev-delete-web-a-1")[0];
    assert_eq!(parent_event(&spans, delete), Some("ev-down-a"));
}

/// Issue 12 (measured under load: an old pod's `Killing` under the root): the replicaset
/// controller's "Deleted pod: X" did not come in time, or never. The pod's deletion, from its
/// `deletionTimestamp`, is derived under the old ReplicaSet's scale-down, and the `Killing`
/// hangs under it; a late controller event takes an open derived deletion over.
#[test]
fn a_kill_without_its_deletion_hangs_under_a_deletion_derived_from_the_pod() {
    let rollout = |late: Option<f64>| {
        let mut r = Recording(Vec::new());
        r.root("Deployment", "web", 1, 0.0);
        r.replica_set("web-a", 0.05);
        r.pod("web-a-1", "web-a", 0.2);
        r.root("Deployment", "web", 2, 60.0);
        // The pod's deletion asked for at 62: its watch says so at once.
        r.pod("web-a-1", "web-a", 0.2);
        r.as_seen("MODIFIED", 62.1, |pod| {
            pod["metadata"]["deletionTimestamp"] = json!(whole(62.0));
        });
        r.once(
            "ev-kill-web-a-1",
            ("Pod", "web-a-1", "uid-web-a-1"),
            ("Killing", "Stopping container app"),
            62.3,
        );
        if let Some(observed) = late {
            r.0.push(Recording::late_event(
                "ev-delete-web-a-1",
                ("ReplicaSet", "web-a", "uid-web-a"),
                ("SuccessfulDelete", "Deleted pod: web-a-1"),
                62.0,
                observed,
            ));
        }
        r.replay()
    };
    let deletions =
        |spans: &[FinishedSpan]| reporters(spans, |s| s.name() == "ReplicaSet.SuccessfulDelete");
    let spans = rollout(None);
    assert_eq!(
        deletions(&spans),
        [("eventspan".to_string(), Some("state".to_string()))],
        "one deletion, derived"
    );
    let kill = of_event(&spans, "ev-kill-web-a-1")[0];
    assert_eq!(generation_of(kill), 2);
    let deletion = parent(&spans, kill).expect("a parent");
    assert_eq!(deletion.name(), "ReplicaSet.SuccessfulDelete");
    assert_eq!(
        str_attr(deletion, "eventspan.child.name").as_deref(),
        Some("web-a-1")
    );
    let step = parent(&spans, deletion).expect("a parent");
    assert_eq!(
        str_attr(step, "k8s.event.message").as_deref(),
        Some("Scaled down replica set web-a"),
        "under a derived scale-down"
    );
    // The controller's event came 6 s late, while the derived deletion was open: one deletion,
    // the controller's.
    let spans = rollout(Some(68.0));
    assert_eq!(
        deletions(&spans),
        [("test-controller".to_string(), None)],
        "one deletion, the controller's"
    );
}

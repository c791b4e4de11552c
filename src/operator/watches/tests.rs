use super::*;
use serde_json::{Value, json};

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_unix_nanos(1_800_000_000_000_000_000 + seconds * 1_000_000_000)
}

/// An Event whose time is `seconds` after [`at`]'s origin, reported by `controller`.
fn event(controller: &str, seconds: i64, history_before: Option<Timestamp>) -> Delivery {
    let time = at(seconds).to_rfc3339_micros();
    Delivery::Event {
        watch_type: WatchType::Added,
        event: json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e1", "namespace": "shop", "uid": "u-e1"},
            "eventTime": time, "reason": "SuccessfulCreate", "action": "Create",
            "reportingController": controller,
            "regarding": {"apiVersion": "apps/v1", "kind": "ReplicaSet", "namespace": "shop",
                "name": "web-1", "uid": "u-rs"}}),
        observed: at(seconds),
        history_before,
    }
}

fn object(watch_type: WatchType, metadata: Value) -> Delivery {
    Delivery::Object {
        watch_type,
        object: json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": metadata}),
        observed: at(0),
    }
}

#[test]
fn events_reach_the_hub_unless_they_are_its_own_or_listed_history() {
    let kept = decode(event("replicaset-controller", 0, None));
    assert!(
        matches!(kept, Some(Input::Change(Observed { change: Change::Event(e), observed_at: Some(_) })) if e.reason == "SuccessfulCreate")
    );
    assert!(decode(event(OWN_CONTROLLER, 0, None)).is_none(), "its own");
    assert!(
        decode(event("replicaset-controller", 0, Some(at(1)))).is_none(),
        "listed, older than the cut-off"
    );
    assert!(decode(event("replicaset-controller", 1, Some(at(1)))).is_some());
    let Delivery::Event { event: e, .. } = event("replicaset-controller", 0, None) else {
        unreachable!()
    };
    let deleted = Delivery::Event {
        watch_type: WatchType::Deleted,
        event: e,
        observed: at(0),
        history_before: None,
    };
    assert!(decode(deleted).is_none(), "an Event's deletion is no news");
}

#[test]
fn objects_are_upserted_deleted_or_counted_as_malformed() {
    let meta = json!({"name": "web-1", "namespace": "shop", "uid": "u-rs"});
    assert!(
        matches!(decode(object(WatchType::Modified, meta.clone())), Some(Input::Change(Observed { change: Change::Upsert(m), .. })) if m.uid == "u-rs")
    );
    match decode(object(WatchType::Deleted, meta)) {
        Some(Input::Change(Observed {
            change: Change::Delete(m),
            observed_at,
        })) => {
            assert_eq!((m.namespace.as_str(), m.uid.as_str()), ("shop", "u-rs"));
            assert_eq!(observed_at, Some(at(0)));
        }
        other => panic!("{other:?}"),
    }
    // Deletions are decoded as replay decodes them: one without a uid is malformed too.
    let no_uid = json!({"name": "web-1", "namespace": "shop"});
    assert!(matches!(
        decode(object(WatchType::Deleted, no_uid)),
        Some(Input::Malformed(_))
    ));
    match decode(object(WatchType::Added, json!({"name": 7}))) {
        Some(Input::Malformed(m)) => assert_eq!(m.what, "ReplicaSet"),
        other => panic!("{other:?}"),
    }
}

//! The status writer: how decisions become verdicts, and when a status is written (at most once
//! per session every [`WRITE_INTERVAL`], only when something a user reads changed, and a change
//! of counts or traces alone at most every [`PROGRESS_INTERVAL`]).

use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::operator::conditions::Reason;
use crate::operator::testing::{self, Request};

fn key(name: &str) -> SessionKey {
    SessionKey {
        namespace: "shop".into(),
        name: name.into(),
    }
}

fn decision(name: &str, phase: Phase, ready: Readiness) -> Box<Decision> {
    Box::new(Decision {
        key: key(name),
        generation: 3,
        phase,
        ready,
        started_at: None,
        trace_url_template: None,
        max_recent_traces: 10,
        found: TraceSessionStatus::default(),
        stopped_run: None,
    })
}

fn active(name: &str) -> Update {
    Update::Decided(decision(
        name,
        Phase::Active,
        Readiness::ready(Reason::Active, "tracing 1 namespace(s) to 1 exporter(s)"),
    ))
}

fn waiting(name: &str) -> Update {
    Update::Waiting(decision(
        name,
        Phase::Pending,
        Readiness::not_ready(Reason::Pending, "waiting for the API server: timed out"),
    ))
}

fn at(second: i64) -> Time {
    Time(Jiff::from_second(second).expect("a time"))
}

fn with_events(name: &str, events_observed: u64) -> HubSnapshot {
    let mut snapshot = HubSnapshot::default();
    snapshot.sessions.insert(
        key(name),
        SessionSnapshot {
            events_observed,
            ..Default::default()
        },
    );
    snapshot
}

/// Writes what is due, as if every write reached the API server; returns the sessions written.
fn write_due(writer: &mut Writer, snapshot: &HubSnapshot, now: &Time) -> Vec<String> {
    let due = writer.due(snapshot, now, Cadence::Throttled);
    let names = due.iter().map(|w| w.key.name.clone()).collect();
    due.into_iter().for_each(|w| writer.written(w));
    names
}

#[test]
fn a_status_is_written_again_only_when_something_a_user_reads_changed() {
    let mut writer = Writer::default();
    writer.apply(active("web"));
    let snapshot = with_events("web", 1);
    assert_eq!(write_due(&mut writer, &snapshot, &at(1)), ["web"]);
    // The same decision again, later: the conditions' times alone would differ, so no write.
    writer.apply(active("web"));
    assert!(write_due(&mut writer, &snapshot, &at(5)).is_empty());
    // The hub counted an event: written once the last write is PROGRESS_INTERVAL old.
    assert!(write_due(&mut writer, &with_events("web", 2), &at(7)).is_empty());
    assert_eq!(
        write_due(&mut writer, &with_events("web", 2), &at(11)),
        ["web"]
    );
    // A new decision changes the phase: written at once, with the counts as they are, and the
    // condition that changed gets a new transition time while the one that did not keeps its own.
    writer.apply(Update::Decided(decision(
        "web",
        Phase::Suspended,
        Readiness::ready(Reason::Suspended, "tracing is suspended (spec.suspend)"),
    )));
    let due = writer.due(&with_events("web", 3), &at(12), Cadence::Throttled);
    let [write] = &due[..] else {
        panic!("one write: {due:?}")
    };
    assert_eq!(write.status.phase, Some(Phase::Suspended));
    let time_of = |type_: &str| {
        let c = write.status.conditions.iter().find(|c| c.type_ == type_);
        c.expect("a condition").last_transition_time.clone()
    };
    assert_eq!(time_of("Stalled"), at(1), "still not stalled");
    assert_eq!(time_of("WatchesHealthy"), at(12), "no longer watching");
    assert_eq!(write.status.events_observed, 3);
}

#[test]
fn progress_alone_is_written_every_progress_interval_and_on_the_last_write() {
    let mut writer = Writer::default();
    writer.apply(active("web"));
    assert_eq!(
        write_due(&mut writer, &with_events("web", 0), &at(0)),
        ["web"]
    );
    // An event counted every second (WRITE_INTERVAL's ticks see a change each time): one write
    // per PROGRESS_INTERVAL.
    let interval = PROGRESS_INTERVAL.as_secs() as i64;
    let writes: Vec<i64> = (1..=3 * interval)
        .filter(|&s| !write_due(&mut writer, &with_events("web", s as u64), &at(s)).is_empty())
        .collect();
    assert_eq!(writes, [interval, 2 * interval, 3 * interval]);
    // Stopping a second after a write: the last write takes what changed since.
    let last = 3 * interval + 1;
    let snapshot = with_events("web", last as u64 + 1);
    assert!(
        writer
            .due(&snapshot, &at(last), Cadence::Throttled)
            .is_empty()
    );
    let due = writer.due(&snapshot, &at(last), Cadence::Last);
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].status.events_observed, last + 1);
    // Nothing changed: the last write writes nothing either.
    due.into_iter().for_each(|w| writer.written(w));
    assert!(writer.due(&snapshot, &at(last), Cadence::Last).is_empty());
}

#[test]
fn decisions_between_writes_coalesce_into_one_write_per_session() {
    let mut writer = Writer::default();
    writer.apply(waiting("web"));
    writer.apply(active("web"));
    writer.apply(active("api"));
    writer.apply(active("web"));
    let due = writer.due(&HubSnapshot::default(), &at(1), Cadence::Throttled);
    let sessions: Vec<_> = due.iter().map(|w| w.key.name.as_str()).collect();
    assert_eq!(sessions, ["api", "web"]);
    assert!(
        due.iter().all(|w| w.status.phase == Some(Phase::Active)),
        "the last decision wins: {due:?}"
    );
}

#[test]
fn a_write_that_did_not_reach_the_api_server_is_tried_again() {
    let mut writer = Writer::default();
    writer.apply(active("web"));
    let first = writer.due(&HubSnapshot::default(), &at(1), Cadence::Throttled);
    assert_eq!(first.len(), 1);
    // Not marked written (the patch failed): due again.
    assert_eq!(
        write_due(&mut writer, &HubSnapshot::default(), &at(3)),
        ["web"]
    );
    // Its object is gone: its verdict is dropped and nothing more is written.
    writer.gone(&key("web"));
    assert!(
        writer
            .due(&HubSnapshot::default(), &at(5), Cadence::Throttled)
            .is_empty()
    );
}

#[test]
fn waiting_is_said_only_of_a_session_nothing_was_decided_about() {
    let mut writer = Writer::default();
    writer.apply(waiting("web"));
    assert_eq!(writer.verdict(&key("web")).unwrap().phase, Phase::Pending);
    writer.apply(active("web"));
    // The API server fails again: the session carries on as it was.
    writer.apply(waiting("web"));
    assert_eq!(writer.verdict(&key("web")).unwrap().phase, Phase::Active);
    writer.apply(Update::Forget(key("web")));
    assert_eq!(writer.sessions().count(), 0);
}

#[test]
fn counts_start_from_the_found_status_and_stopped_runs_add_to_them() {
    let mut writer = Writer::default();
    let mut first = decision(
        "web",
        Phase::Active,
        Readiness::ready(Reason::Active, "tracing"),
    );
    first.found.spans_exported = 40;
    writer.apply(Update::Decided(first));
    let mut stop = decision(
        "web",
        Phase::Suspended,
        Readiness::ready(Reason::Suspended, "suspended"),
    );
    // Only the first decision's found status counts (later ones see what the writer wrote).
    stop.found.spans_exported = 1_000;
    stop.stopped_run = Some(SessionSnapshot {
        events_observed: 5,
        ..Default::default()
    });
    writer.apply(Update::Decided(stop));
    let baseline = writer.verdict(&key("web")).unwrap().baseline;
    assert_eq!((baseline.spans_exported, baseline.events_observed), (40, 5));
}

const STATUS: &str = "/apis/eventspan.dev/v1alpha1/namespaces/shop/tracesessions/web/status";

fn patches(requests: &[Request]) -> Vec<&Value> {
    let patches = requests.iter().filter(|r| r.method == "PATCH");
    patches
        .inspect(|r| assert_eq!(r.path, STATUS))
        .map(|r| &r.body["status"])
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_task_writes_each_session_at_most_once_per_interval() {
    // The API server answers a status patch with the whole object, as it does.
    let object = json!({"apiVersion": "eventspan.dev/v1alpha1", "kind": "TraceSession",
        "metadata": {"name": "web", "namespace": "shop"}, "spec": {"exporters": []}});
    let (client, requests) = testing::api_server(move |_| (200, object.clone()));
    let (updates, received) = channel();
    let (hub, snapshots) = watch::channel(Arc::new(HubSnapshot::default()));
    let stop = CancellationToken::new();
    let task = tokio::spawn(run(client, received, snapshots, stop.clone()));
    // A decision every 100 ms for 5 s, alternating between two that read differently.
    for i in 0..50 {
        let update = if i % 2 == 0 {
            active("web")
        } else {
            Update::Decided(decision(
                "web",
                Phase::Failed,
                Readiness::not_ready(Reason::InvalidExporter, "spec.exporters: bad"),
            ))
        };
        updates.send(update).await.expect("the writer runs");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let written = patches(&requests.all()).len();
    // Ticks at 0 s, 2 s and 4 s.
    assert!((1..=3).contains(&written), "{written} writes in 5 s");
    // Nothing more changes: no more writes, however long it runs.
    tokio::time::sleep(WRITE_INTERVAL).await;
    let settled = patches(&requests.all()).len();
    tokio::time::sleep(WRITE_INTERVAL * 10).await;
    let all = requests.all();
    let last = patches(&all);
    assert_eq!(last.len(), settled);
    assert_eq!(last.last().map(|s| &s["phase"]), Some(&json!("Failed")));
    // The reconciler's end of the channel closing does not end the writer; its stop does.
    drop(updates);
    tokio::time::sleep(WRITE_INTERVAL).await;
    assert!(!task.is_finished());
    // The hub's last snapshot, just before the stop: the last write carries it.
    hub.send_replace(Arc::new(with_events("web", 7)));
    stop.cancel();
    task.await.expect("the writer ends");
    let all = requests.all();
    let last = patches(&all).pop().expect("a last write");
    assert_eq!(last["eventsObserved"], json!(7));
}

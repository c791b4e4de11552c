use super::*;
use crate::engine::ids::SpanId;
use crate::watch::{Refusal, Scope as WatchScope};
use std::time::Duration;

#[test]
fn a_session_gets_the_refusals_and_listings_of_its_own_namespaces() {
    let refusal = |resource: &str, scope: WatchScope| Refusal {
        resource: resource.into(),
        scope,
        code: 403,
    };
    let refused = [
        refusal("pods", WatchScope::Namespace("shop".into())),
        refusal("pods", WatchScope::Namespace("payments".into())),
        refusal("nodes", WatchScope::AllNamespaces),
    ];
    let namespaces = ["shop".to_string(), "web".to_string()];
    let w = session_watches(&namespaces, |ns| ns == "shop", &refused);
    assert_eq!(w.listing, ["web"]);
    assert_eq!(w.refused, [refused[0].clone()]);
}

mod doubles {
    //! The hub over test doubles: its watches record what they are asked, its exporters keep
    //! what they are offered, and time moves only when a test says.

    use std::collections::BTreeSet;
    use std::time::Duration;

    use tokio::sync::{mpsc, oneshot};

    use super::super::{Command, Connections, Hub, HubHandle, SessionKey, SessionSetup};
    use super::super::{SessionSnapshot, UpsertError};
    use crate::engine::EngineConfig;
    use crate::engine::ids::SpanId;
    use crate::engine::time::Timestamp;
    use crate::export::{ExporterSpec, Protocol};
    use crate::operator::matcher::{LabelMatcher, Scope, default_root_kinds};
    use crate::operator::testing::{self, FakeExporters, FakeWatches};

    pub const ROLLOUT: &str = include_str!("../../../tests/scenarios/deployment-rollout.jsonl");

    pub struct Harness {
        pub hub: Hub,
        pub handle: HubHandle,
        pub watches: FakeWatches,
        pub exporters: FakeExporters,
        /// What `/metrics` would serve of the spans the hub routed.
        pub metrics: crate::operator::metrics::Metrics,
    }

    impl Harness {
        pub fn new() -> Self {
            let watches = FakeWatches::default();
            let exporters = FakeExporters::default();
            let metrics = crate::operator::metrics::Metrics::default();
            // The tests hand inputs to the hub themselves.
            let (_, inputs) = mpsc::channel(1);
            let connections = Connections {
                watches: Box::new(watches.clone()),
                inputs,
                exporters: Box::new(exporters.clone()),
                span_metrics: metrics.spans(),
            };
            let (hub, handle) = Hub::connected(EngineConfig::default(), None, connections);
            Harness {
                hub,
                handle,
                watches,
                exporters,
                metrics,
            }
        }

        /// Starts or changes a session, as the reconciler's command does.
        pub fn upsert(&mut self, name: &str, setup: SessionSetup) -> Result<(), UpsertError> {
            let (reply, mut answer) = oneshot::channel();
            let key = key(name);
            self.hub.command(Command::Upsert { key, setup, reply });
            answer.try_recv().expect("the hub answers at once")
        }

        /// Stops a session, as the reconciler's command does.
        pub async fn remove(&mut self, name: &str) -> Option<SessionSnapshot> {
            let (reply, answer) = oneshot::channel();
            self.hub.command(Command::Remove {
                key: key(name),
                reply,
            });
            answer.await.expect("the hub answers")
        }

        /// Feeds a recording as the watches deliver it, the clock following it (as the hub's
        /// ticks would); `each` runs after every input.
        pub fn feed_with(&mut self, recording: &str, mut each: impl FnMut(&mut Self)) {
            for input in testing::inputs(recording) {
                let at = testing::last_time(std::slice::from_ref(&input));
                self.hub.input(input);
                self.hub.route();
                self.hub.advance(at);
                each(self);
            }
        }

        /// Feeds a recording, then lets an hour pass: every trace of it has finished.
        pub fn feed_all(&mut self, recording: &str) {
            self.feed_with(recording, |_| {});
            self.hub.advance(after(recording));
        }

        pub fn snapshot(&self) -> SessionSnapshots {
            self.hub.publish();
            SessionSnapshots(self.handle.snapshots.borrow().sessions.clone())
        }
    }

    /// The sessions of a published hub snapshot.
    pub struct SessionSnapshots(pub std::collections::BTreeMap<SessionKey, SessionSnapshot>);

    impl SessionSnapshots {
        pub fn get(&self, name: &str) -> Option<&SessionSnapshot> {
            self.0.get(&key(name))
        }
    }

    /// An hour after a recording's last change.
    pub fn after(recording: &str) -> Timestamp {
        testing::last_time(&testing::inputs(recording)).saturating_add(Duration::from_secs(3600))
    }

    pub fn key(name: &str) -> SessionKey {
        SessionKey {
            namespace: "shop".into(),
            name: name.into(),
        }
    }

    pub fn exporter(url: &str) -> ExporterSpec {
        ExporterSpec {
            name: url.trim_start_matches("http://").into(),
            protocol: Protocol::Grpc,
            url: url.into(),
            headers: Vec::new(),
            ca_pem: None,
            insecure: false,
            gzip: false,
            timeout: Duration::from_secs(10),
            shape: Default::default(),
            logs: false,
        }
    }

    pub fn setup(namespaces: &[&str], urls: &[&str]) -> SessionSetup {
        SessionSetup {
            scope: Scope {
                namespaces: namespaces.iter().map(|ns| ns.to_string()).collect(),
                root_kinds: default_root_kinds(),
                selector: LabelMatcher::default(),
            },
            exporters: urls.iter().map(|u| exporter(u)).collect(),
            window: None,
            max_recent_traces: 10,
            root_kinds: Vec::new(),
            shape: Default::default(),
            namespace_label: false,
        }
    }

    /// The span IDs replay makes of a recording, sorted: what a session tracing all of it gets.
    pub fn replayed(recording: &str) -> Vec<SpanId> {
        let replay = crate::replay::replay(recording, EngineConfig::default());
        sorted(replay.spans.iter().map(|s| s.span_id).collect())
    }

    pub fn sorted(mut ids: Vec<SpanId>) -> Vec<SpanId> {
        ids.sort();
        ids
    }

    pub fn set<'a>(names: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
        names.into_iter().map(String::from).collect()
    }
}

use doubles::*;

#[tokio::test]
async fn a_new_session_is_watched_and_gets_every_span_of_its_traces_once() {
    let mut h = Harness::new();
    let mut with_kind = setup(&["shop"], &["http://jaeger"]);
    with_kind.root_kinds = vec![("argoproj.io/v1alpha1".into(), "Rollout".into())];
    h.upsert("web", with_kind).expect("started");
    assert_eq!(h.watches.log().namespaces, set(["shop"]));
    let rollout = (
        "shop".to_string(),
        "argoproj.io/v1alpha1".to_string(),
        "Rollout".to_string(),
    );
    assert!(h.watches.log().kinds.contains(&rollout), "its root kind");

    h.feed_all(ROLLOUT);
    let [jaeger] = &h.exporters.to("http://jaeger")[..] else {
        panic!("one exporter started");
    };
    assert_eq!(sorted(jaeger.span_ids()), replayed(ROLLOUT));
    // The kinds the events and objects name are the watches' to follow
    // (`watch::manager`'s `kinds_named_by_events_and_owner_references_are_followed`): the hub
    // asks only for the sessions' root kinds.
    assert_eq!(h.watches.log().kinds, [rollout].into());
    let snapshots = h.snapshot();
    let web = snapshots.get("web").expect("published");
    assert_eq!(web.namespaces, ["shop"]);
    assert_eq!(web.exporters[0].1.exported, replayed(ROLLOUT).len() as u64);
    assert!(web.events_observed > 0);
    let traces: BTreeSet<_> = crate::replay::replay(ROLLOUT, EngineConfig::default())
        .spans
        .iter()
        .map(|s| s.trace_id)
        .collect();
    assert_eq!(web.log.traces, traces.len() as u64);
}

/// Issue 16: the span histograms carry the trace's namespace when a session that takes the span
/// asks for it (`spec.metrics.namespaceLabel`), whichever session of the engine takes it first.
#[tokio::test]
async fn spans_are_measured_by_namespace_when_a_session_taking_them_asks_for_it() {
    for asks in [false, true] {
        let mut h = Harness::new();
        h.upsert("plain", setup(&["shop"], &["http://a"]))
            .expect("started");
        let mut by_namespace = setup(&["shop"], &["http://b"]);
        by_namespace.namespace_label = asks;
        h.upsert("by-namespace", by_namespace).expect("started");
        h.feed_all(ROLLOUT);
        let text = h.metrics.encode();
        // The recording has no status, so no outcome: its pods' phases are measured.
        assert!(
            text.contains("eventspan_pod_phase_seconds_count{"),
            "{text}"
        );
        assert_eq!(text.contains("namespace=\"shop\""), asks, "{text}");
    }
}

#[tokio::test]
async fn an_edit_that_keeps_the_exporters_keeps_them_running() {
    let mut h = Harness::new();
    h.upsert("web", setup(&["shop"], &["http://jaeger"]))
        .expect("started");
    h.upsert("web", setup(&["shop", "payments"], &["http://jaeger"]))
        .expect("changed");
    let started = h.exporters.to("http://jaeger");
    assert_eq!(started.len(), 1, "not restarted");
    assert!(!started[0].stopped());
    assert_eq!(h.watches.log().namespaces, set(["payments", "shop"]));
    assert_eq!(
        h.snapshot().get("web").expect("running").namespaces,
        ["payments", "shop"]
    );

    h.upsert("web", setup(&["payments"], &["http://jaeger"]))
        .expect("changed");
    assert_eq!(h.watches.log().namespaces, set(["payments"]));
    assert_eq!(h.exporters.to("http://jaeger").len(), 1);
}

#[tokio::test]
async fn a_removed_session_gets_its_open_traces_and_releases_its_namespaces() {
    let mut h = Harness::new();
    h.upsert("web", setup(&["shop"], &["http://jaeger"]))
        .expect("started");
    // Just after the rollout's last change: its trace is still open.
    h.feed_with(ROLLOUT, |_| {});
    let jaeger = h.exporters.to("http://jaeger").remove(0);
    let before = jaeger.span_ids().len();

    let run = h.remove("web").await.expect("it was running");
    let flushed = jaeger.span_ids().len();
    assert!(
        flushed > before,
        "the open trace went out when it stopped ({before} then {flushed})"
    );
    assert!(jaeger.stopped());
    assert!(run.exporters.is_empty(), "all retired");
    assert_eq!(run.retired.exported, flushed as u64);
    assert!(h.watches.log().namespaces.is_empty());
    assert!(h.snapshot().get("web").is_none());
    assert!(h.remove("web").await.is_none(), "no longer running");

    // What comes later reaches no one.
    h.hub.advance(after(ROLLOUT));
    assert_eq!(jaeger.span_ids().len(), flushed);
}

#[tokio::test]
async fn an_exporter_swap_retires_the_old_one_and_sends_nothing_twice() {
    let mut h = Harness::new();
    h.upsert("web", setup(&["shop"], &["http://jaeger"]))
        .expect("started");
    let mut swapped = false;
    h.feed_with(ROLLOUT, |h| {
        let jaeger = &h.exporters.to("http://jaeger")[0];
        if !swapped && !jaeger.span_ids().is_empty() {
            h.upsert("web", setup(&["shop"], &["http://tempo"]))
                .expect("swapped");
            swapped = true;
        }
    });
    h.hub.advance(after(ROLLOUT));
    assert!(swapped, "some spans went out before the rollout ended");

    let jaeger = h.exporters.to("http://jaeger").remove(0);
    let [tempo] = &h.exporters.to("http://tempo")[..] else {
        panic!("one new exporter");
    };
    assert!(jaeger.stopped(), "the old exporter was shut down");
    assert!(!tempo.stopped());
    let (old, new) = (jaeger.span_ids(), tempo.span_ids());
    assert!(!new.is_empty(), "the new exporter gets the later spans");
    let both: Vec<SpanId> = old.iter().chain(&new).copied().collect();
    assert_eq!(sorted(both), replayed(ROLLOUT), "each span once, none lost");

    let snapshots = h.snapshot();
    let web = snapshots.get("web").expect("running");
    assert_eq!(web.retired.exported, old.len() as u64, "counted as retired");
    assert_eq!(web.exporters.len(), 1);
    assert_eq!(web.exporters[0].0, "tempo");
}

#[tokio::test]
async fn each_session_gets_its_spans_from_the_engine_of_its_window_only() {
    let mut h = Harness::new();
    h.upsert("fast", setup(&["shop"], &["http://fast"]))
        .expect("started");
    let mut slow = setup(&["shop"], &["http://slow"]);
    slow.window = Some(Duration::from_secs(25));
    h.upsert("slow", slow).expect("started");
    // Rounded up to a step; the base engine stays for the other session.
    let windows: Vec<Duration> = h.hub.engines.windows().collect();
    assert_eq!(windows, [Duration::from_secs(5), Duration::from_secs(30)]);
    // The new engine missed the namespace's initial lists: they are delivered again.
    assert_eq!(h.watches.log().relisted, ["shop"]);

    h.feed_all(ROLLOUT);
    // Two engines emit the same spans (IDs are deterministic): each session gets them once.
    for url in ["http://fast", "http://slow"] {
        let ids = h.exporters.to(url)[0].span_ids();
        assert_eq!(sorted(ids), replayed(ROLLOUT), "{url}");
    }

    // Back to the operator's window: the longer engine goes.
    h.upsert("slow", setup(&["shop"], &["http://slow"]))
        .expect("changed");
    let windows: Vec<Duration> = h.hub.engines.windows().collect();
    assert_eq!(windows, [Duration::from_secs(5)]);
}

#[tokio::test]
async fn a_session_moved_to_another_window_gets_its_open_traces_at_once() {
    let mut h = Harness::new();
    h.upsert("web", setup(&["shop"], &["http://jaeger"]))
        .expect("started");
    h.feed_with(ROLLOUT, |_| {});
    let jaeger = h.exporters.to("http://jaeger").remove(0);
    let before = jaeger.span_ids().len();
    let mut longer = setup(&["shop"], &["http://jaeger"]);
    longer.window = Some(Duration::from_secs(60));
    h.upsert("web", longer).expect("changed");
    assert!(
        jaeger.span_ids().len() > before,
        "flushed by the old engine ({before} before)"
    );
    assert!(!jaeger.stopped(), "the same exporter carries on");
}

#[tokio::test]
async fn a_session_sees_the_refusals_and_listings_of_its_namespaces_only() {
    let mut h = Harness::new();
    h.upsert("admin", setup(&["shop", "payments"], &["http://jaeger"]))
        .expect("started");
    h.upsert("web", setup(&["web"], &["http://jaeger"]))
        .expect("started");
    let refusal = crate::watch::Refusal {
        resource: crate::watch::resource_name(&crate::watch::events_resource()),
        scope: WatchScope::Namespace("shop".into()),
        code: 403,
    };
    {
        let mut log = h.watches.log();
        log.refused = vec![refusal.clone()];
        log.listed = set(["payments", "web"]);
    }
    let snapshots = h.snapshot();
    let admin = &snapshots.get("admin").expect("running").watches;
    assert_eq!(admin.refused, [refusal]);
    assert_eq!(admin.listing, ["shop"]);
    let web = &snapshots.get("web").expect("running").watches;
    assert!(web.refused.is_empty());
    assert!(web.listing.is_empty());
}

#[tokio::test]
async fn a_session_whose_exporter_cannot_start_carries_on_as_it_was() {
    let mut h = Harness::new();
    h.exporters.refuse("http://broken");
    h.upsert("web", setup(&["shop"], &["http://jaeger"]))
        .expect("started");
    let refused = h.upsert(
        "web",
        setup(&["payments"], &["http://tempo", "http://broken"]),
    );
    match refused {
        Err(UpsertError::Exporter { name, error }) => {
            assert_eq!(name, "broken");
            assert!(matches!(error, TransportError::Config(_)), "{error:?}");
        }
        other => panic!("expected the exporter's error, got {other:?}"),
    }
    // The one that did start is stopped; the session keeps its exporter and namespaces.
    assert!(h.exporters.to("http://tempo")[0].stopped());
    assert!(!h.exporters.to("http://jaeger")[0].stopped());
    assert_eq!(h.watches.log().namespaces, set(["shop"]));

    // A new session that cannot start does not run at all.
    let new = h.upsert("other", setup(&["web"], &["http://broken"]));
    assert!(matches!(new, Err(UpsertError::Exporter { .. })));
    assert!(h.snapshot().get("other").is_none());
    assert_eq!(h.watches.log().namespaces, set(["shop"]));
}

#[tokio::test]
async fn a_stopped_hub_says_so() {
    let Harness { hub, handle, .. } = Harness::new();
    drop(hub);
    let upsert = handle.upsert(key("web"), setup(&["shop"], &[])).await;
    assert!(matches!(upsert, Err(UpsertError::Stopped(HubStopped))));
    assert_eq!(handle.remove(key("web")).await, Err(HubStopped));
}

//! The reconciler against a fake API server (`tower_test`) and a hub over test doubles: what it
//! asks the API server, what it starts in the hub, and the status the status writer then writes.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp as Jiff;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{Context, ErrorKind, reconcile};
use crate::engine::EngineConfig;
use crate::operator::crd::{FINALIZER, RootKind, TraceSession, TraceSessionSpec};
use crate::operator::hub::{Connections, Hub, HubHandle};
use crate::operator::status::{StatusSender, Update, Writer};
use crate::operator::testing::{self, FakeExporters, FakeWatches, Request, Requests};
use crate::operator::watches::OWN_CONTROLLER;

const SESSIONS: &str = "/apis/eventspan.dev/v1alpha1/namespaces/shop/tracesessions/web";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/shop/events";

/// A session `shop/web` of generation 3 exporting to one collector, with the operator's
/// finalizer in place (a new session gets it first, see below).
fn session(spec: TraceSessionSpec) -> TraceSession {
    let mut ts = TraceSession::new("web", spec);
    ts.metadata.namespace = Some("shop".into());
    ts.metadata.uid = Some("u-web".into());
    ts.metadata.generation = Some(3);
    ts.metadata.finalizers = Some(vec![FINALIZER.into()]);
    ts
}

fn spec() -> TraceSessionSpec {
    // As the API server hands it over: defaults filled in by serde.
    serde_json::from_value(json!({
        "exporters": [{"name": "jaeger", "otlp": {"endpoint": "http://jaeger:4317"}}]
    }))
    .expect("a spec")
}

/// What the fake API server serves: the groups of the default root kinds, the session itself
/// (for patches), and events it takes.
fn answer(ts: &TraceSession) -> impl Fn(&Request) -> (u16, Value) + Send + 'static {
    let object = serde_json::to_value(ts).expect("a session");
    move |r: &Request| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/apis") => (200, groups()),
        ("GET", "/apis/apps/v1") => (
            200,
            resources("apps/v1", &["Deployment", "StatefulSet", "DaemonSet"]),
        ),
        ("GET", "/apis/batch/v1") => (200, resources("batch/v1", &["Job", "CronJob"])),
        ("POST", EVENTS) => (201, r.body.clone()),
        ("PATCH", path) if path.starts_with(SESSIONS) => (200, object.clone()),
        _ => (
            404,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": "NotFound", "code": 404, "message": "not found"}),
        ),
    }
}

fn groups() -> Value {
    let group = |name: &str| {
        let version = json!({"groupVersion": format!("{name}/v1"), "version": "v1"});
        json!({"name": name, "versions": [version], "preferredVersion": version})
    };
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [group("apps"), group("batch")]})
}

fn resources(group_version: &str, kinds: &[&str]) -> Value {
    let resources: Vec<Value> = kinds
        .iter()
        .map(|kind| {
            json!({"name": format!("{}s", kind.to_lowercase()), "singularName": kind.to_lowercase(),
                "namespaced": true, "kind": kind, "verbs": ["get", "list", "watch"]})
        })
        .collect();
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
        "resources": resources})
}

/// The reconciler's world: the fake API server, a running hub over doubles whose watches say
/// every namespace has listed.
struct World {
    ctx: Arc<Context>,
    /// The other end of the reconciler's channel to the status writer, until a writer takes it.
    updates: std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<Update>>>,
    requests: Requests,
    watches: FakeWatches,
    exporters: FakeExporters,
    stop: CancellationToken,
}

impl World {
    fn new(ts: &TraceSession) -> Self {
        World::serving(answer(ts))
    }

    fn serving(answer: impl Fn(&Request) -> (u16, Value) + Send + 'static) -> Self {
        let (client, requests) = testing::api_server(answer);
        let watches = FakeWatches::default();
        watches.log().listed = ["shop".to_string()].into();
        let exporters = FakeExporters::default();
        let (_, inputs) = tokio::sync::mpsc::channel(1);
        let connections = Connections {
            watches: Box::new(watches.clone()),
            inputs,
            exporters: Box::new(exporters.clone()),
            span_metrics: crate::operator::metrics::Metrics::default().spans(),
        };
        let (hub, handle) = Hub::connected(EngineConfig::default(), None, connections);
        let stop = CancellationToken::new();
        tokio::spawn(hub.run(stop.clone()));
        let (status, updates) = crate::operator::status::channel();
        World {
            ctx: context(client, handle, status, reflector::store().0),
            updates: std::sync::Mutex::new(Some(updates)),
            requests,
            watches,
            exporters,
            stop,
        }
    }

    /// Runs the status writer until it has written `web`'s status once; returns that status.
    async fn status(&self) -> Value {
        let updates = self.updates.lock().expect("updates").take();
        let writer = tokio::spawn(crate::operator::status::run(
            self.ctx.client.clone(),
            updates.expect("one status writer per world"),
            self.ctx.hub.snapshots.clone(),
            self.stop.child_token(),
        ));
        let status = format!("{SESSIONS}/status");
        let patch = self
            .requests
            .wait_for(|r| r.method == "PATCH" && r.path == status)
            .await;
        writer.abort();
        assert!(
            patch.query.contains("fieldManager=eventspan") && patch.query.contains("force=true"),
            "server-side apply: {}",
            patch.query
        );
        patch.body["status"].clone()
    }

    /// The sessions the status writer would have a verdict for, from what was sent to it.
    fn verdicts(&self) -> Vec<String> {
        let mut updates = self.updates.lock().expect("updates");
        let updates = updates.as_mut().expect("no status writer took the updates");
        let mut writer = Writer::default();
        while let Ok(update) = updates.try_recv() {
            writer.apply(update);
        }
        writer.sessions().map(ToString::to_string).collect()
    }

    /// The requests other than discovery, as (method, path).
    fn writes(&self) -> Vec<(String, String)> {
        self.requests
            .all()
            .into_iter()
            .filter(|r| r.method != "GET")
            .map(|r| (r.method.to_string(), r.path))
            .collect()
    }

    fn events(&self) -> Vec<Value> {
        let events = self.requests.all().into_iter();
        events
            .filter(|r| r.method == "POST" && r.path == EVENTS)
            .map(|r| r.body)
            .collect()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// With `sessions` fed by no reflector (its writer dropped), sessions are not ranked against
/// each other (`--max-sessions-per-namespace` has tests of its own).
fn context(
    client: kube::Client,
    hub: HubHandle,
    status: StatusSender,
    sessions: reflector::Store<TraceSession>,
) -> Arc<Context> {
    let reporter = Reporter {
        controller: OWN_CONTROLLER.into(),
        instance: None,
    };
    Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        hub,
        status,
        admin_namespaces: BTreeSet::new(),
        exporter_policy: Default::default(),
        limits: Default::default(),
        cluster_name: None,
        sessions,
        metrics: Default::default(),
    })
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    let conditions = status["conditions"].as_array().expect("conditions");
    conditions
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status:#}"))
}

#[tokio::test]
async fn a_valid_session_starts_and_its_status_says_ready_for_its_generation() {
    let ts = session(spec());
    let world = World::new(&ts);
    reconcile(Arc::new(ts), world.ctx.clone())
        .await
        .expect("reconciled");

    assert_eq!(world.watches.log().namespaces, ["shop".to_string()].into());
    let [jaeger] = &world.exporters.to("http://jaeger:4317")[..] else {
        panic!("one exporter started");
    };
    assert!(!jaeger.stopped());
    let events = world.events();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(
        (&events[0]["reason"], &events[0]["note"], &events[0]["type"]),
        (&json!("Started"), &json!("tracing shop"), &json!("Normal"))
    );

    let status = world.status().await;
    assert_eq!(status["observedGeneration"], 3);
    assert_eq!(status["phase"], "Active");
    let ready = condition(&status, "Ready");
    assert_eq!(
        (
            &ready["status"],
            &ready["reason"],
            &ready["observedGeneration"]
        ),
        (&json!("True"), &json!("Active"), &json!(3))
    );
    assert_eq!(condition(&status, "Stalled")["status"], "False");
    assert_eq!(status["watchedNamespaces"], json!(["shop"]));
    assert_eq!(
        world.writes(),
        [
            ("POST".to_string(), EVENTS.to_string()),
            ("PATCH".to_string(), format!("{SESSIONS}/status")),
        ]
    );
}

/// Stalled, naming the field, with a Warning event saying why; nothing is watched.
async fn assert_refused(ts: TraceSession, reason: &str, field: &str) {
    let world = World::new(&ts);
    reconcile(Arc::new(ts), world.ctx.clone())
        .await
        .expect("a refused spec is no failed reconcile");
    assert!(
        world.watches.log().namespaces.is_empty(),
        "no watch started"
    );
    assert!(world.exporters.to("http://jaeger:4317").is_empty());
    let events = world.events();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(
        (&events[0]["type"], &events[0]["reason"]),
        (&json!("Warning"), &json!(reason))
    );

    let status = world.status().await;
    assert_eq!(status["phase"], "Failed");
    assert_eq!(status["observedGeneration"], 3);
    let stalled = condition(&status, "Stalled");
    assert_eq!(
        (&stalled["status"], &stalled["reason"]),
        (&json!("True"), &json!(reason))
    );
    let message = stalled["message"].as_str().expect("a message");
    assert!(message.starts_with(&format!("{field}: ")), "{message}");
    assert_eq!(condition(&status, "Ready")["status"], "False");
    assert_eq!(
        condition(&status, "WatchesHealthy")["reason"],
        "NotWatching"
    );
}

#[tokio::test]
async fn a_session_tracing_a_foreign_namespace_is_stalled_and_watches_nothing() {
    let ts = session(TraceSessionSpec {
        namespaces: vec!["shop".into(), "payments".into()],
        ..spec()
    });
    assert_refused(ts, "NamespaceNotPermitted", "spec.namespaces").await;
}

#[tokio::test]
async fn a_session_naming_a_kind_the_cluster_does_not_serve_is_stalled() {
    let ts = session(TraceSessionSpec {
        root_kinds: vec![RootKind {
            group: "argoproj.io".into(),
            kind: "Rollout".into(),
        }],
        ..spec()
    });
    assert_refused(ts, "UnknownRootKind", "spec.rootKinds[0]").await;
}

#[tokio::test]
async fn a_new_session_gets_the_finalizer_before_anything_starts() {
    let mut ts = session(spec());
    ts.metadata.finalizers = None;
    let world = World::new(&ts);
    reconcile(Arc::new(ts), world.ctx.clone())
        .await
        .expect("reconciled");
    assert_eq!(
        world.writes(),
        [("PATCH".to_string(), SESSIONS.to_string())]
    );
    let patch = &world.requests.all()[0].body;
    assert_eq!(
        patch,
        &json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ])
    );
    assert!(world.watches.log().namespaces.is_empty());
    assert!(world.verdicts().is_empty());
}

#[tokio::test]
async fn a_deleted_session_is_stopped_then_its_finalizer_removed() {
    let ts = session(spec());
    let world = World::new(&ts);
    reconcile(Arc::new(ts.clone()), world.ctx.clone())
        .await
        .expect("started");
    assert_eq!(world.watches.log().namespaces.len(), 1);

    let mut deleted = ts;
    deleted.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Jiff::now()),
    );
    reconcile(Arc::new(deleted), world.ctx.clone())
        .await
        .expect("cleaned up");
    assert!(
        world.watches.log().namespaces.is_empty(),
        "watches released"
    );
    assert!(world.exporters.to("http://jaeger:4317")[0].stopped());
    assert!(world.verdicts().is_empty());
    let events = world.events();
    assert_eq!(events[1]["reason"], "Stopped");
    let writes = world.writes();
    assert_eq!(
        writes.last(),
        Some(&("PATCH".to_string(), SESSIONS.to_string())),
        "{writes:#?}"
    );
    let requests = world.requests.all();
    let patch = &requests.last().expect("a request").body;
    assert_eq!(
        patch,
        &json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ])
    );
}

#[tokio::test]
async fn an_exporter_that_cannot_start_fails_the_session_naming_the_exporters() {
    let ts = session(spec());
    let world = World::new(&ts);
    world.exporters.refuse("http://jaeger:4317");
    reconcile(Arc::new(ts), world.ctx.clone())
        .await
        .expect("reconciled");
    let status = world.status().await;
    let stalled = condition(&status, "Stalled");
    assert_eq!(
        (&stalled["status"], &stalled["reason"], &stalled["message"]),
        (
            &json!("True"),
            &json!("InvalidExporter"),
            &json!(
                "spec.exporters: exporter jaeger: exporter configuration: CA bundle: no certificate"
            )
        )
    );
    assert!(world.watches.log().namespaces.is_empty());
}

#[tokio::test]
async fn a_stopped_hub_leaves_the_session_as_it_was_and_the_reconcile_is_retried() {
    let ts = session(spec());
    let world = World::new(&ts);
    world.stop.cancel();
    // The hub's task ends on its stop; its handle's commands go nowhere.
    let mut snapshots = world.ctx.hub.snapshots.clone();
    while snapshots.changed().await.is_ok() {}
    let result = reconcile(Arc::new(ts), world.ctx.clone()).await;
    let error = result.expect_err("retried");
    assert!(
        matches!(
            &error,
            super::Error::Finalizer(e)
                if matches!(**e, kube::runtime::finalizer::Error::ApplyFailed(super::Error::HubStopped(_)))
        ),
        "{error:?}"
    );
    assert!(
        world.verdicts().is_empty(),
        "no verdict: the status stays as it was"
    );
    assert_eq!(error.kind(), ErrorKind::HubStopped);
    let metrics = world.ctx.metrics.encode();
    assert!(
        metrics.contains("eventspan_reconcile_total{result=\"hub_stopped\"} 1\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_conflicting_finalizer_patch_is_counted_as_a_conflict_and_retried() {
    let mut ts = session(spec());
    ts.metadata.finalizers = None;
    let served = answer(&ts);
    // Someone else changed the session between the read and the patch.
    let world = World::serving(move |r| match (r.method.as_str(), r.path.as_str()) {
        ("PATCH", SESSIONS) => (
            409,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": "Conflict", "code": 409, "message": "the object has been modified"}),
        ),
        _ => served(r),
    });
    let error = reconcile(Arc::new(ts), world.ctx.clone())
        .await
        .expect_err("retried");
    assert_eq!(error.kind(), ErrorKind::Conflict, "{error:?}");
    let metrics = world.ctx.metrics.encode();
    for line in [
        "eventspan_reconcile_total{result=\"conflict\"} 1\n",
        "eventspan_reconcile_total{result=\"finalizer_error\"} 0\n",
        "eventspan_reconcile_total{result=\"ok\"} 0\n",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    assert!(world.watches.log().namespaces.is_empty(), "nothing started");
}

/// SIGTERM right after the lease was won: the controller is stopped before its first list of
/// sessions is in (here the API server refuses every list). kube-runtime's graceful shutdown
/// alone would wait for that list forever.
#[tokio::test]
async fn a_controller_stopped_before_its_first_list_returns() {
    let w = World::new(&session(spec()));
    let (sessions, writer) = reflector::store();
    let (status, _updates) = crate::operator::status::channel();
    let ctx = context(w.ctx.client.clone(), w.ctx.hub.clone(), status, sessions);
    let api = kube::Api::<TraceSession>::all(w.ctx.client.clone());
    let stop = CancellationToken::new();
    let controller = tokio::spawn(super::run_controller(api, writer, ctx, stop.clone()));
    w.requests
        .wait_for(|r| r.method == "GET" && r.path.ends_with("/tracesessions"))
        .await;
    stop.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(5), controller)
        .await
        .expect("the controller stops within 5 s")
        .expect("the controller task");
}

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

use kube::api::ApiResource;

use crate::engine::time::Timestamp;
use crate::watch::delivery::{Delivery, WatchType};
use crate::watch::tasks::{ListCutoff, regarding, watch_metadata};

type Reply = http::Response<http_body_util::Full<hyper::body::Bytes>>;

/// A client whose API server is `answer`: given the request number and the request, a reply,
/// or `None` to leave it pending (a watch that waits for changes).
fn fake_client(
    answer: impl Fn(usize, &http::Request<kube::client::Body>) -> Option<Reply> + Send + Sync + 'static,
) -> Client {
    let answer = Arc::new(answer);
    let count = Arc::new(AtomicUsize::new(0));
    let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
        let n = count.fetch_add(1, Ordering::SeqCst);
        let reply = answer(n, &request);
        async move {
            match reply {
                Some(reply) => Ok::<_, std::convert::Infallible>(reply),
                None => futures::future::pending().await,
            }
        }
    });
    Client::new(service, "default")
}

/// The next `n` deliveries a watch sent, in short: `upsert UID`, `interrupted`, `whole again`.
async fn told(inputs: &mut mpsc::Receiver<Delivery>, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < n {
        let next = tokio::time::timeout(Duration::from_secs(10), inputs.recv()).await;
        got.push(match next {
            Ok(Some(Delivery::Object {
                watch_type: WatchType::Added | WatchType::Modified,
                object,
                ..
            })) => format!(
                "upsert {}",
                object["metadata"]["uid"].as_str().unwrap_or("?")
            ),
            Ok(Some(Delivery::StateGap { interrupted, .. })) => (if interrupted {
                "interrupted"
            } else {
                "whole again"
            })
            .into(),
            other => panic!("after {got:?}: {other:?}"),
        });
    }
    got
}

/// A manager that delivers everything as it comes, covering nothing yet.
fn manager(
    client: Client,
    stop: &CancellationToken,
) -> (WatchManager<Delivery>, mpsc::Receiver<Delivery>) {
    let (input, inputs) = mpsc::channel(16);
    let settings = Settings {
        max_event_age: Some(Duration::from_secs(120)),
    };
    (
        WatchManager::new(client, input, Some, settings, stop.clone()),
        inputs,
    )
}

/// Runs one watch of Deployments in `shop`, as the manager's kind watches do.
fn watch_deployments(m: &WatchManager<Delivery>, stop: &CancellationToken) {
    let resource = ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
        "apps",
        "v1",
        "Deployment",
    ));
    let (shared, stop) = (m.shared.clone(), stop.clone());
    tokio::spawn(async move {
        watch_metadata(
            &shared,
            resource,
            true,
            Scope::Namespace("shop".into()),
            stop,
        )
        .await
    });
}

fn shop() -> Scope {
    Scope::Namespace("shop".into())
}

fn reply(code: u16, body: serde_json::Value) -> Option<Reply> {
    let mut reply = http::Response::new(http_body_util::Full::from(body.to_string()));
    *reply.status_mut() = http::StatusCode::from_u16(code).expect("a status code");
    Some(reply)
}

fn status(code: u16) -> Option<Reply> {
    reply(
        code,
        serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": "refused", "reason": "Forbidden", "code": code}),
    )
}

/// An API server that refuses the first two requests (as one that has just started does), then
/// answers every list with `list` and leaves watches waiting for changes.
fn refused_twice_then(list: serde_json::Value) -> Client {
    fake_client(move |n, request| {
        let query = request.uri().query().unwrap_or_default();
        if n < 2 {
            status(403)
        } else if query.contains("watch=true") {
            None
        } else {
            reply(200, list.clone())
        }
    })
}

/// Issue 12: an API server that has just restarted refuses the list twice; the watch waits
/// and lists again, and its object arrives, where it used to be dropped for good.
#[tokio::test]
async fn a_watch_refused_while_the_api_server_starts_delivers_once_let_in() {
    let client = refused_twice_then(serde_json::json!({"apiVersion": "apps/v1",
        "kind": "DeploymentList", "metadata": {"resourceVersion": "7"},
        "items": [{"metadata": {"name": "web", "namespace": "shop",
            "uid": "u-web", "generation": 3, "resourceVersion": "7"}}]}));
    let stop = CancellationToken::new();
    let (m, mut inputs) = manager(client, &stop);
    watch_deployments(&m, &stop);
    // Two retries: at most 1 s and 2 s. Refused from its start, it had no state to fall
    // behind on: no gap is marked (one that had delivered is, see the expired watch below).
    assert_eq!(told(&mut inputs, 1).await, ["upsert u-web"]);
    assert!(
        m.refused().is_empty(),
        "a watch that recovers counts nothing"
    );
    assert_eq!(m.counts().metadata.load(Ordering::Relaxed), 1);
    stop.cancel();
}

/// A namespace counts as listed once its Event watch has listed, not when it is asked for:
/// until then its sessions are still being brought up (refused twice first, as an API server
/// that has just started does), and no longer once it is not covered.
#[tokio::test]
async fn a_namespace_is_listed_once_its_event_watch_has_listed() {
    let client = refused_twice_then(serde_json::json!({"apiVersion": "events.k8s.io/v1",
        "kind": "EventList", "metadata": {"resourceVersion": "7"}, "items": []}));
    let stop = CancellationToken::new();
    let (m, _inputs) = manager(client, &stop);
    m.set_scopes(&[shop()].into());
    assert!(!m.listed(&shop()), "asked for, not listed yet");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !m.listed(&shop()) {
        assert!(tokio::time::Instant::now() < deadline, "never listed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !m.listed(&Scope::Namespace("other".into())),
        "never covered"
    );
    m.set_scopes(&BTreeSet::new());
    assert!(!m.listed(&shop()), "no longer covered");
    stop.cancel();
}

/// Issue 12: a watch resumed from a compacted resourceVersion gets 410 Gone, lists again and
/// delivers the object again; the re-list is counted (eventspan_watch_relists_total).
#[tokio::test]
async fn an_expired_watch_lists_again_and_is_counted() {
    let client = fake_client(|n, request| {
        let query = request.uri().query().unwrap_or_default();
        let watching = query.contains("watch=true");
        match (n, watching) {
            (1, true) => {
                let gone = serde_json::json!({"type": "ERROR", "object": {"kind": "Status",
                    "apiVersion": "v1", "status": "Failure", "reason": "Expired",
                    "message": "too old resource version: 7 (9)", "code": 410}});
                let mut reply =
                    http::Response::new(http_body_util::Full::from(format!("{gone}\n")));
                *reply.status_mut() = http::StatusCode::OK;
                Some(reply)
            }
            (_, true) => None,
            (_, false) => reply(
                200,
                serde_json::json!({"apiVersion": "apps/v1", "kind": "DeploymentList",
                    "metadata": {"resourceVersion": "9"},
                    "items": [{"metadata": {"name": "web", "namespace": "shop",
                        "uid": "u-web", "generation": 3, "resourceVersion": "7"}}]}),
            ),
        }
    });
    let stop = CancellationToken::new();
    let (m, mut inputs) = manager(client, &stop);
    watch_deployments(&m, &stop);
    assert_eq!(
        told(&mut inputs, 4).await,
        ["upsert u-web", "interrupted", "upsert u-web", "whole again"],
        "the first list, then the second bracketed as a gap"
    );
    assert_eq!(m.counts().metadata_relists.load(Ordering::Relaxed), 1);
    assert_eq!(m.counts().event_relists.load(Ordering::Relaxed), 0);
    stop.cancel();
}

/// Issue 11: one namespace naming 10,000 bogus kinds leaves the others theirs.
#[tokio::test]
async fn a_namespace_naming_thousands_of_kinds_does_not_starve_the_others() {
    // Discovery and lists are all refused: only the admission is under test.
    let client = fake_client(|_, _| status(404));
    let stop = CancellationToken::new();
    let (m, _inputs) = manager(client, &stop);
    let covered: BTreeSet<Scope> = ["hostile", "shop"]
        .map(|n| Scope::Namespace(n.into()))
        .into();
    m.set_scopes(&covered);
    for i in 0..10_000 {
        m.ensure_kind("example.com/v1", &format!("Bogus{i}"), "hostile");
    }
    m.ensure_kind("apps/v1", &"K".repeat(1 << 20), "shop");
    m.ensure_kind("apps/v1", "Deploy/ment", "shop");
    for (api_version, kind) in [
        ("apps/v1", "Deployment"),
        ("apps/v1", "ReplicaSet"),
        ("v1", "Pod"),
        ("batch/v1", "Job"),
    ] {
        m.ensure_kind(api_version, kind, "shop");
        let key = (shop(), api_version.to_string(), kind.to_string());
        assert!(m.kinds().contains(&key), "{kind} not followed in shop");
    }
    assert_eq!(
        m.kinds_rejected(),
        [
            ("invalid_name", 2),
            ("namespace_budget", 10_000 - 64),
            ("global_budget", 0)
        ]
    );
    // A namespace given up returns its budget.
    m.set_scopes(&[shop()].into());
    m.set_scopes(&covered);
    m.ensure_kind("example.com/v1", "Bogus1", "hostile");
    assert!(m.kinds().contains(&(
        Scope::Namespace("hostile".into()),
        "example.com/v1".to_string(),
        "Bogus1".to_string()
    )));
    stop.cancel();
}

/// Whether a cut-off keeps an event whose latest time is `last`, as the operator decides.
fn keeps(cutoff: &ListCutoff, listed: bool, last: Timestamp) -> bool {
    cutoff
        .history_before(listed)
        .is_none_or(|before| last >= before)
}

fn at(minutes: i64) -> Timestamp {
    Timestamp::from_unix_nanos(1_800_000_000_000_000_000 + minutes * 60_000_000_000)
}

/// An idle namespace's watch: listed at minute 0, a live event at 5, the watch expires and
/// lists again at minute 10 (the same events, and one new since), and again at 20.
#[test]
fn each_relist_takes_its_own_cutoff() {
    let mut cutoff = ListCutoff::new(Some(Duration::from_secs(120)));
    cutoff.list_started(at(0));
    let old = at(-30);
    let recent = at(-1);
    assert!(
        !keeps(&cutoff, true, old),
        "older than the first list's cut-off"
    );
    assert!(keeps(&cutoff, true, recent));
    let live = at(5);
    assert!(keeps(&cutoff, false, live), "delivered live");

    cutoff.list_started(at(10));
    // The first list kept `recent` and the watch delivered `live`: both are history now.
    for (name, time) in [("old", old), ("recent", recent), ("live", live)] {
        assert!(!keeps(&cutoff, true, time), "{name} re-sent by the re-list");
    }
    assert!(
        keeps(&cutoff, true, at(9)),
        "younger than max age at the re-list"
    );

    cutoff.list_started(at(20));
    assert!(!keeps(&cutoff, true, at(9)));
    assert!(keeps(&cutoff, true, at(19)));
    // Live events are news whatever their time.
    assert!(keeps(&cutoff, false, old));
}

#[test]
fn nothing_is_cut_before_a_list_starts() {
    let cutoff = ListCutoff::new(Some(Duration::from_secs(120)));
    assert!(keeps(&cutoff, true, at(-1000)));
}

#[test]
fn without_a_max_age_no_listed_event_is_history() {
    let mut cutoff = ListCutoff::new(None);
    cutoff.list_started(at(0));
    assert_eq!(
        cutoff.history_before(true),
        None,
        "a recording keeps them all"
    );
}

/// A cluster of one namespace: an Event about ReplicaSet `web-1`, which a Deployment owns.
/// Discovery serves both kinds; watches wait for changes.
fn cluster_with_a_rollout() -> Client {
    fake_client(|_, request| {
        let (path, query) = (request.uri().path(), request.uri().query().unwrap_or(""));
        if query.contains("watch=true") {
            return None;
        }
        match path {
            "/apis/apps/v1" => reply(
                200,
                serde_json::json!({"kind": "APIResourceList", "apiVersion": "v1",
                    "groupVersion": "apps/v1", "resources": [
                    {"name": "deployments", "singularName": "deployment", "namespaced": true,
                     "kind": "Deployment", "verbs": ["get", "list", "watch"]},
                    {"name": "replicasets", "singularName": "replicaset", "namespaced": true,
                     "kind": "ReplicaSet", "verbs": ["get", "list", "watch"]}]}),
            ),
            "/apis/events.k8s.io/v1/namespaces/shop/events" => reply(
                200,
                serde_json::json!({"apiVersion": "events.k8s.io/v1", "kind": "EventList",
                    "metadata": {"resourceVersion": "7"}, "items": [{
                    "metadata": {"name": "e1", "namespace": "shop", "uid": "u-e1",
                        "resourceVersion": "7"},
                    "eventTime": "2026-12-07T10:00:00.000000Z", "reason": "SuccessfulCreate",
                    "reportingController": "replicaset-controller", "action": "Create",
                    "regarding": {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                        "namespace": "shop", "name": "web-1", "uid": "u-rs"}}]}),
            ),
            "/apis/apps/v1/namespaces/shop/replicasets" => reply(
                200,
                serde_json::json!({"apiVersion": "apps/v1", "kind": "ReplicaSetList",
                    "metadata": {"resourceVersion": "7"}, "items": [{
                    "metadata": {"name": "web-1", "namespace": "shop", "uid": "u-rs",
                        "resourceVersion": "7", "ownerReferences": [{"apiVersion": "apps/v1",
                        "kind": "Deployment", "name": "web", "uid": "u-web",
                        "controller": true}]}}]}),
            ),
            _ => reply(
                200,
                serde_json::json!({"apiVersion": "v1", "kind": "List",
                    "metadata": {"resourceVersion": "7"}, "items": []}),
            ),
        }
    })
}

fn followed(m: &WatchManager<Delivery>) -> Vec<String> {
    m.kinds().into_iter().map(|(_, _, kind)| kind).collect()
}

/// The manager finds kinds itself (the hub used to ask for them): the event's `regarding`
/// names ReplicaSet, the ReplicaSet's owner reference names Deployment.
#[tokio::test]
async fn kinds_named_by_events_and_owner_references_are_followed() {
    let stop = CancellationToken::new();
    let (m, mut inputs) = manager(cluster_with_a_rollout(), &stop);
    m.set_scopes(&[shop()].into());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while followed(&m) != ["Deployment", "ReplicaSet"] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "followed {:?}",
            followed(&m)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut events = 0;
    while let Ok(delivery) = inputs.try_recv() {
        if let Delivery::Event {
            event,
            history_before,
            ..
        } = delivery
        {
            assert_eq!(event["regarding"]["name"], "web-1");
            assert!(
                history_before.is_some(),
                "listed: its age is for the consumer to judge"
            );
            events += 1;
        }
    }
    assert_eq!(events, 1);
    stop.cancel();
}

/// What the consumer skips (the operator's own events, history) names no kind to follow.
#[tokio::test]
async fn kinds_named_only_by_skipped_deliveries_are_not_followed() {
    fn objects_only(delivery: Delivery) -> Option<Delivery> {
        (!matches!(delivery, Delivery::Event { .. })).then_some(delivery)
    }
    let stop = CancellationToken::new();
    let (input, _inputs) = mpsc::channel(16);
    let m = WatchManager::new(
        cluster_with_a_rollout(),
        input,
        objects_only,
        Settings::default(),
        stop.clone(),
    );
    m.set_scopes(&[shop()].into());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !m.listed(&shop()) {
        assert!(tokio::time::Instant::now() < deadline, "never listed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(followed(&m).is_empty(), "followed {:?}", followed(&m));
    stop.cancel();
}

/// `record` needs its watches ended before it can finish the file: `stop` ends them, and with
/// them the last sender.
#[tokio::test]
async fn stopped_watches_close_the_channel() {
    let stop = CancellationToken::new();
    let (m, mut inputs) = manager(cluster_with_a_rollout(), &stop);
    m.set_scopes(&[shop()].into());
    tokio::time::sleep(Duration::from_millis(100)).await;
    tokio::time::timeout(Duration::from_secs(5), m.stop())
        .await
        .expect("stopped");
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        while inputs.recv().await.is_some() {}
    });
    drained.await.expect("the channel closes");
    assert!(!stop.is_cancelled(), "the caller's token is its own");
}

/// Kinds are charged to the namespace the engine reads an event's reference in: a Node's
/// events live in `default`, the Node in no namespace (so the operator never follows Nodes from
/// events, as before the manager was shared).
#[test]
fn an_events_kind_is_named_in_the_namespace_its_object_is_in() {
    let event = |kind: &str, namespace: Option<&str>| {
        let mut regarding = serde_json::json!({"apiVersion": "v1", "kind": kind, "name": "x"});
        if let Some(ns) = namespace {
            regarding["namespace"] = ns.into();
        }
        serde_json::json!({"metadata": {"namespace": "default"}, "regarding": regarding})
    };
    let all = Scope::AllNamespaces;
    let named = |e: serde_json::Value| regarding(&e, &all).map(|(_, k, ns)| (k, ns));
    assert_eq!(named(event("Node", None)), Some(("Node".into(), "".into())));
    assert_eq!(
        named(event("Pod", None)),
        Some(("Pod".into(), "default".into()))
    );
    assert_eq!(
        named(event("Pod", Some("shop"))),
        Some(("Pod".into(), "shop".into()))
    );
    assert_eq!(named(serde_json::json!({"metadata": {}})), None);
}

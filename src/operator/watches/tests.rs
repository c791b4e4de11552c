use super::*;
use std::sync::atomic::AtomicUsize;

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

/// The next `n` inputs a watch sent, in short: `upsert UID`, `interrupted`, `whole again`.
async fn told(inputs: &mut mpsc::Receiver<Input>, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < n {
        let next = tokio::time::timeout(Duration::from_secs(10), inputs.recv()).await;
        got.push(match next {
            Ok(Some(Input::Upsert(meta, _))) => format!("upsert {}", meta.uid),
            Ok(Some(Input::StateGap { interrupted, .. })) => (if interrupted {
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

/// Issue 12: an API server that has just restarted refuses the list twice; the watch waits
/// and lists again, and its object arrives, where it used to be dropped for good.
#[tokio::test]
async fn a_watch_refused_while_the_api_server_starts_delivers_once_let_in() {
    let client = fake_client(|n, request| {
        let query = request.uri().query().unwrap_or_default();
        if n < 2 {
            status(403)
        } else if query.contains("watch=true") {
            None
        } else {
            reply(
                200,
                serde_json::json!({"apiVersion": "apps/v1", "kind": "DeploymentList",
                    "metadata": {"resourceVersion": "7"},
                    "items": [{"metadata": {"name": "web", "namespace": "shop",
                        "uid": "u-web", "generation": 3, "resourceVersion": "7"}}]}),
            )
        }
    });
    let (input, mut inputs) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let resource = ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
        "apps",
        "v1",
        "Deployment",
    ));
    let refusals = Arc::new(Refusals::default());
    let counts = Arc::new(WatchCounts::default());
    tokio::spawn(watch_metadata(
        client,
        resource,
        true,
        Scope::Namespace("shop".into()),
        input,
        counts.clone(),
        refusals.clone(),
        stop.clone(),
    ));
    // Two retries: at most 1 s and 2 s. Refused from its start, it had no state to fall
    // behind on: no gap is marked (one that had delivered is, see the expired watch below).
    assert_eq!(told(&mut inputs, 1).await, ["upsert u-web"]);
    assert!(
        refusals.list().is_empty(),
        "a watch that recovers counts nothing"
    );
    assert_eq!(counts.metadata.load(Ordering::Relaxed), 1);
    stop.cancel();
}

/// A namespace counts as listed once its Event watch has listed, not when it is asked for:
/// until then its sessions are still being brought up (refused twice first, as an API server
/// that has just started does), and no longer once it is not covered.
#[tokio::test]
async fn a_namespace_is_listed_once_its_event_watch_has_listed() {
    let client = fake_client(|n, request| {
        let query = request.uri().query().unwrap_or_default();
        if n < 2 {
            status(403)
        } else if query.contains("watch=true") {
            None
        } else {
            reply(
                200,
                serde_json::json!({"apiVersion": "events.k8s.io/v1", "kind": "EventList",
                    "metadata": {"resourceVersion": "7"}, "items": []}),
            )
        }
    });
    let (input, _inputs) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let mut m = WatchManager::new(client, input, Duration::from_secs(120), stop.clone());
    let shop: BTreeSet<String> = ["shop".to_string()].into();
    m.set_namespaces(&shop);
    assert!(!m.listed("shop"), "asked for, not listed yet");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !m.listed("shop") {
        assert!(tokio::time::Instant::now() < deadline, "never listed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!m.listed("other"), "never covered");
    m.set_namespaces(&BTreeSet::new());
    assert!(!m.listed("shop"), "no longer covered");
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
    let (input, mut inputs) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let resource = ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
        "apps",
        "v1",
        "Deployment",
    ));
    let counts = Arc::new(WatchCounts::default());
    tokio::spawn(watch_metadata(
        client,
        resource,
        true,
        Scope::Namespace("shop".into()),
        input,
        counts.clone(),
        Arc::default(),
        stop.clone(),
    ));
    assert_eq!(
        told(&mut inputs, 4).await,
        ["upsert u-web", "interrupted", "upsert u-web", "whole again"],
        "the first list, then the second bracketed as a gap"
    );
    assert_eq!(counts.metadata_relists.load(Ordering::Relaxed), 1);
    assert_eq!(counts.event_relists.load(Ordering::Relaxed), 0);
    stop.cancel();
}

/// Issue 11: one namespace naming 10,000 bogus kinds leaves the others theirs.
#[tokio::test]
async fn a_namespace_naming_thousands_of_kinds_does_not_starve_the_others() {
    // Discovery and lists are all refused: only the admission is under test.
    let client = fake_client(|_, _| status(404));
    let (input, _inputs) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let mut m = WatchManager::new(client, input, Duration::from_secs(120), stop.clone());
    let covered: BTreeSet<String> = ["hostile", "shop"].map(String::from).into();
    m.set_namespaces(&covered);
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
        let key = (
            "shop".to_string(),
            api_version.to_string(),
            kind.to_string(),
        );
        assert!(m.kinds.contains(&key), "{kind} not followed in shop");
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
    m.set_namespaces(&["shop".to_string()].into());
    m.set_namespaces(&covered);
    m.ensure_kind("example.com/v1", "Bogus1", "hostile");
    assert!(m.kinds.contains(&(
        "hostile".to_string(),
        "example.com/v1".to_string(),
        "Bogus1".to_string()
    )));
    stop.cancel();
}

fn at(minutes: i64) -> Timestamp {
    Timestamp::from_unix_nanos(1_800_000_000_000_000_000 + minutes * 60_000_000_000)
}

/// An idle namespace's watch: listed at minute 0, a live event at 5, the watch expires and
/// lists again at minute 10 (the same events, and one new since), and again at 20.
#[test]
fn each_relist_takes_its_own_cutoff() {
    let mut cutoff = ListCutoff::new(Duration::from_secs(120));
    cutoff.list_started(at(0));
    let old = at(-30);
    let recent = at(-1);
    assert!(
        !cutoff.keeps(true, old),
        "older than the first list's cut-off"
    );
    assert!(cutoff.keeps(true, recent));
    let live = at(5);
    assert!(cutoff.keeps(false, live), "delivered live");

    cutoff.list_started(at(10));
    // The first list kept `recent` and the watch delivered `live`: both are history now.
    for (name, time) in [("old", old), ("recent", recent), ("live", live)] {
        assert!(!cutoff.keeps(true, time), "{name} re-sent by the re-list");
    }
    assert!(
        cutoff.keeps(true, at(9)),
        "younger than max age at the re-list"
    );

    cutoff.list_started(at(20));
    assert!(!cutoff.keeps(true, at(9)));
    assert!(cutoff.keeps(true, at(19)));
    // Live events are news whatever their time.
    assert!(cutoff.keeps(false, old));
}

#[test]
fn nothing_is_cut_before_a_list_starts() {
    let cutoff = ListCutoff::new(Duration::from_secs(120));
    assert!(cutoff.keeps(true, at(-1000)));
}

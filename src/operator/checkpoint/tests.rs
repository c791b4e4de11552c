use std::sync::atomic::{AtomicU64, Ordering};

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;

use super::*;
use crate::engine::ExportedSpan;
use crate::engine::ids::{SpanId, TraceId};

// ---- the schedule ----

#[derive(Clone, Default)]
struct FakeMark {
    offered: Arc<AtomicU64>,
    settled: Arc<AtomicU64>,
    failing_since: Arc<std::sync::Mutex<Option<Instant>>>,
}

impl Mark for FakeMark {
    fn offered(&self) -> u64 {
        self.offered.load(Ordering::Relaxed)
    }
    fn settled(&self) -> u64 {
        self.settled.load(Ordering::Relaxed)
    }
    fn failing_since(&self) -> Option<Instant> {
        *self.failing_since.lock().unwrap()
    }
}

fn checkpoint(spans: u64) -> Checkpoint {
    Checkpoint {
        spans: (1..=spans)
            .map(|i| ExportedSpan {
                trace: TraceId(1),
                span: SpanId(i),
                event: None,
            })
            .collect(),
        changes: Vec::new(),
    }
}

fn snapshot(spans: u64) -> Snapshot {
    Snapshot {
        engines: vec![(Duration::from_secs(5), checkpoint(spans))],
        emitted: spans,
    }
}

#[test]
fn a_snapshot_waits_for_every_exporter_to_settle() {
    let (a, b) = (FakeMark::default(), FakeMark::default());
    let mut schedule = Schedule::new(Duration::from_secs(5));
    let t0 = Instant::now();
    let marks = || vec![a.clone(), b.clone()];
    // Nothing emitted yet: nothing taken.
    assert!(schedule.tick(t0, 0, || panic!("not due")).is_none());
    // Three spans offered to both; a delivered them, b has two.
    a.offered.store(3, Ordering::Relaxed);
    b.offered.store(3, Ordering::Relaxed);
    a.settled.store(3, Ordering::Relaxed);
    b.settled.store(2, Ordering::Relaxed);
    assert!(schedule.tick(t0, 3, || (snapshot(3), marks())).is_none());
    // More offered after the snapshot: they do not hold it back, but b's third span does.
    b.offered.store(10, Ordering::Relaxed);
    let t1 = t0 + Duration::from_secs(6);
    assert!(
        schedule.tick(t1, 10, || panic!("one is pending")).is_none(),
        "b has not settled the snapshot's spans"
    );
    b.settled.store(3, Ordering::Relaxed);
    // Settled with b still holding later spans: the pending one goes, not a fresh one.
    assert_eq!(
        schedule.tick(t1, 10, || (snapshot(10), marks())),
        Some(Arc::new(snapshot(3)))
    );
    // An interval after the first was taken: the next one, settled at once.
    b.settled.store(10, Ordering::Relaxed);
    assert_eq!(
        schedule.tick(t1, 10, || (snapshot(10), marks())),
        Some(Arc::new(snapshot(10)))
    );
    // The one after is due only an interval after that.
    let t2 = t1 + Duration::from_secs(1);
    assert!(schedule.tick(t2, 12, || panic!("not due yet")).is_none());
    let t3 = t1 + Duration::from_secs(5);
    assert!(schedule.tick(t3, 12, || (snapshot(12), marks())).is_some());
}

#[test]
fn an_exporter_failing_past_the_grace_holds_no_checkpoint_back() {
    let (healthy, dead) = (FakeMark::default(), FakeMark::default());
    let mut schedule = Schedule::new(Duration::from_secs(5));
    let t0 = Instant::now();
    for m in [&healthy, &dead] {
        m.offered.store(4, Ordering::Relaxed);
    }
    healthy.settled.store(4, Ordering::Relaxed);
    *dead.failing_since.lock().unwrap() = Some(t0);
    let marks = || vec![healthy.clone(), dead.clone()];
    assert!(
        schedule.tick(t0, 4, || (snapshot(4), marks())).is_none(),
        "a receiver failing just now may come back: its spans hold the checkpoint"
    );
    let almost = t0 + FAILING_EXPORTER_GRACE - Duration::from_secs(1);
    assert!(schedule.tick(almost, 4, || panic!("pending")).is_none());
    assert_eq!(
        schedule.tick(t0 + FAILING_EXPORTER_GRACE, 4, || panic!("pending")),
        Some(Arc::new(snapshot(4))),
        "failing for the whole grace: the other sessions' spans are checkpointed"
    );
    // It recovers: its spans count again.
    *dead.failing_since.lock().unwrap() = None;
    healthy.offered.store(6, Ordering::Relaxed);
    healthy.settled.store(6, Ordering::Relaxed);
    dead.offered.store(6, Ordering::Relaxed);
    let later = t0 + FAILING_EXPORTER_GRACE * 2;
    assert!(schedule.tick(later, 6, || (snapshot(6), marks())).is_none());
    dead.settled.store(6, Ordering::Relaxed);
    assert_eq!(
        schedule.tick(later, 6, || panic!("pending")),
        Some(Arc::new(snapshot(6)))
    );
}

#[test]
fn a_snapshot_settling_when_all_is_delivered_gives_way_to_a_fresh_one() {
    let a = FakeMark::default();
    let mut schedule = Schedule::new(Duration::from_secs(5));
    let t0 = Instant::now();
    a.offered.store(3, Ordering::Relaxed);
    assert!(
        schedule
            .tick(t0, 3, || (snapshot(3), vec![a.clone()]))
            .is_none()
    );
    // A burst is emitted and delivered while the first waits for its last span: the
    // checkpoint handed over then holds the burst, not the older state.
    a.offered.store(9, Ordering::Relaxed);
    a.settled.store(9, Ordering::Relaxed);
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!(
        schedule.tick(t1, 9, || (snapshot(9), vec![a.clone()])),
        Some(Arc::new(snapshot(9)))
    );
    // It counts as taken then: nothing new, nothing written; the next is an interval on.
    assert!(schedule.tick(t1, 9, || panic!("nothing new")).is_none());
    let t2 = t1 + Duration::from_secs(4);
    assert!(schedule.tick(t2, 10, || panic!("not due yet")).is_none());
}

#[test]
fn idle_writes_nothing_and_stopping_takes_a_last_one() {
    let a = FakeMark::default();
    let mut schedule = Schedule::new(Duration::from_secs(5));
    let t0 = Instant::now();
    assert!(
        schedule
            .tick(t0, 4, || (snapshot(4), vec![a.clone()]))
            .is_some()
    );
    let later = t0 + Duration::from_secs(60);
    assert!(
        schedule.tick(later, 4, || panic!("nothing new")).is_none(),
        "idle"
    );
    assert!(schedule.last(4, || panic!("nothing new")).is_none());
    // Emitted since, within the interval: the last snapshot takes it anyway.
    a.offered.store(2, Ordering::Relaxed);
    let last = schedule
        .last(6, || (snapshot(6), vec![a.clone()]))
        .expect("unwritten spans");
    assert!(!last.settled(Instant::now()));
    a.settled.store(2, Ordering::Relaxed);
    assert!(last.settled(Instant::now()));
    assert_eq!(last.snapshot(), Arc::new(snapshot(6)));
}

// ---- the store, against a mock API server ----

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn mock() -> (Client, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "eventspan-system"), handle)
}

fn respond(send: tower_test::mock::SendResponse<Response<Body>>, code: u16, body: String) {
    send.send_response(
        Response::builder()
            .status(StatusCode::from_u16(code).unwrap())
            .body(Body::from(body.into_bytes()))
            .unwrap(),
    );
}

fn status(code: u16, reason: &str) -> String {
    serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure",
        "reason": reason, "code": code, "message": reason,
    })
    .to_string()
}

fn configmap(name: &str, version: &str, labels: bool, data: Option<Vec<u8>>) -> String {
    let mut cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("eventspan-system".into()),
            resource_version: Some(version.into()),
            ..ObjectMeta::default()
        },
        binary_data: data.map(|d| [(DATA_KEY.to_string(), ByteString(d))].into()),
        ..ConfigMap::default()
    };
    if labels {
        cm.metadata.labels = Some([(MANAGED_BY.0.into(), MANAGED_BY.1.into())].into());
    }
    serde_json::to_string(&cm).unwrap()
}

async fn body_of(request: Request<Body>) -> ConfigMap {
    use http_body_util::BodyExt;
    let bytes = request.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

const FIVE: Duration = Duration::from_secs(5);
const TEN: Duration = Duration::from_secs(10);
const TWENTY: Duration = Duration::from_secs(20);
const THIRTY: Duration = Duration::from_secs(30);

#[tokio::test]
async fn loads_what_is_good_and_ignores_the_rest() {
    let (client, mut handle) = mock();
    let good = checkpoint(3);
    let server = tokio::spawn(async move {
        let answers = [
            (
                200,
                configmap(
                    "eventspan-checkpoint-5s",
                    "7",
                    true,
                    Some(checkpoint(3).encode()),
                ),
            ),
            (404, status(404, "NotFound")),
            (
                200,
                configmap(
                    "eventspan-checkpoint-20s",
                    "8",
                    true,
                    Some(b"garbage".to_vec()),
                ),
            ),
            (
                200,
                configmap(
                    "eventspan-checkpoint-30s",
                    "9",
                    false,
                    Some(checkpoint(1).encode()),
                ),
            ),
            (403, status(403, "Forbidden")),
        ];
        let mut paths = Vec::new();
        for (code, body) in answers {
            let (request, send) = handle.next_request().await.expect("a request");
            assert_eq!(request.method(), Method::GET);
            paths.push(request.uri().path().to_string());
            respond(send, code, body);
        }
        paths
    });
    let metrics = Metrics::default();
    let mut store = Store::new(client, "eventspan-system", "replica-a");
    let sixty = Duration::from_secs(60);
    let loaded = store
        .load([FIVE, TEN, TWENTY, THIRTY, sixty], &metrics)
        .await;
    assert_eq!(loaded, [(FIVE, good)].into());
    assert_eq!(
        server.await.unwrap()[0],
        "/api/v1/namespaces/eventspan-system/configmaps/eventspan-checkpoint-5s"
    );
    assert_eq!(
        store.slots,
        [
            ("eventspan-checkpoint-5s".into(), Slot::Ours("7".into())),
            ("eventspan-checkpoint-10s".into(), Slot::Absent),
            ("eventspan-checkpoint-20s".into(), Slot::Ours("8".into())),
            ("eventspan-checkpoint-30s".into(), Slot::Foreign),
            ("eventspan-checkpoint-60s".into(), Slot::Absent),
        ]
        .into()
    );
    let text = metrics.encode();
    for result in ["resumed", "missing", "corrupt", "foreign", "error"] {
        let line = format!("eventspan_checkpoint_loads_total{{result=\"{result}\"}} 1\n");
        assert!(text.contains(&line), "{line} missing from\n{text}");
    }
}

#[tokio::test]
async fn writes_create_then_replace_the_version_read_and_skip_foreign() {
    let (client, mut handle) = mock();
    let server = tokio::spawn(async move {
        // Load: 5s missing, 10s foreign.
        let (_, send) = handle.next_request().await.unwrap();
        respond(send, 404, status(404, "NotFound"));
        let (_, send) = handle.next_request().await.unwrap();
        respond(
            send,
            200,
            configmap("eventspan-checkpoint-10s", "3", false, None),
        );
        // First write: a create (POST) of 5s.
        let (request, send) = handle.next_request().await.unwrap();
        assert_eq!(request.method(), Method::POST);
        assert_eq!(
            request.uri().path(),
            "/api/v1/namespaces/eventspan-system/configmaps"
        );
        let cm = body_of(request).await;
        assert_eq!(cm.metadata.resource_version, None);
        let annotations = cm.metadata.annotations.clone().unwrap();
        assert_eq!(annotations[WRITER_ANNOTATION], "replica-a");
        assert!(annotations.contains_key(WRITTEN_AT_ANNOTATION));
        let data = &cm.binary_data.as_ref().unwrap()[DATA_KEY].0;
        assert_eq!(Checkpoint::decode(data), Ok(checkpoint(2)));
        respond(
            send,
            201,
            configmap("eventspan-checkpoint-5s", "11", true, None),
        );
        // Second write: a replace (PUT) of exactly the version created.
        let (request, send) = handle.next_request().await.unwrap();
        assert_eq!(request.method(), Method::PUT);
        let cm = body_of(request).await;
        assert_eq!(cm.metadata.resource_version.as_deref(), Some("11"));
        respond(
            send,
            200,
            configmap("eventspan-checkpoint-5s", "12", true, None),
        );
        // Nothing for the foreign 10s one, nor for an unchanged 5s one.
        handle.next_request().await.is_none()
    });
    let metrics = Metrics::default();
    let mut store = Store::new(client, "eventspan-system", "replica-a");
    assert!(store.load([FIVE, TEN], &metrics).await.is_empty());
    let both = |spans| Snapshot {
        engines: vec![(FIVE, checkpoint(spans)), (TEN, checkpoint(spans))],
        emitted: spans,
    };
    store.write_all(&both(2), &metrics).await;
    store.write_all(&both(3), &metrics).await;
    store.write_all(&both(3), &metrics).await;
    assert!(!store.stopped());
    assert_eq!(
        store.slots["eventspan-checkpoint-5s"],
        Slot::Ours("12".into())
    );
    drop(store);
    assert!(server.await.unwrap(), "no request beyond those");
    let text = metrics.encode();
    assert!(
        text.contains("eventspan_checkpoint_writes_total{result=\"ok\"} 2\n"),
        "{text}"
    );
    assert!(text.contains("eventspan_checkpoint_spans 3\n"), "{text}");
    // The foreign 10s window holds no checkpoint of ours: nothing counts as covered.
    assert!(
        text.contains("eventspan_checkpoint_covered_spans 0\n"),
        "{text}"
    );
    let bytes = checkpoint(3).encode().len();
    assert!(
        text.contains(&format!("eventspan_checkpoint_bytes {bytes}\n")),
        "{text}"
    );
}

fn lease(holder: &str) -> String {
    serde_json::json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "eventspan-leader", "namespace": "eventspan-system"},
        "spec": {"holderIdentity": holder}})
    .to_string()
}

/// Serves a load of version 4 of the 5s checkpoint, a replace of it that conflicts (another
/// process wrote since), and the Lease read that follows, naming `holder`.
async fn conflict_after_load(handle: &mut Handle, holder: &str) {
    let (_, send) = handle.next_request().await.unwrap();
    respond(
        send,
        200,
        configmap(
            "eventspan-checkpoint-5s",
            "4",
            true,
            Some(checkpoint(1).encode()),
        ),
    );
    let (request, send) = handle.next_request().await.unwrap();
    assert_eq!(request.method(), Method::PUT);
    respond(send, 409, status(409, "Conflict"));
    let (request, send) = handle.next_request().await.unwrap();
    assert_eq!(
        request.uri().path(),
        "/apis/coordination.k8s.io/v1/namespaces/eventspan-system/leases/eventspan-leader"
    );
    respond(send, 200, lease(holder));
}

#[tokio::test]
async fn a_conflict_stops_writing_once_another_process_leads() {
    let (client, mut handle) = mock();
    let server = tokio::spawn(async move {
        // And another process holds the Lease now.
        conflict_after_load(&mut handle, "replica-b").await;
        handle.next_request().await.is_none()
    });
    let metrics = Metrics::default();
    let mut store =
        Store::new(client, "eventspan-system", "replica-a").with_lease("eventspan-leader");
    assert_eq!(store.load([FIVE], &metrics).await[&FIVE], checkpoint(1));
    let (tx, rx) = watch::channel(None);
    let writer = tokio::spawn(write_loop(
        store,
        rx,
        CancellationToken::new(),
        Arc::new(Metrics::default()),
    ));
    tx.send_replace(Some(Arc::new(snapshot(2))));
    // The writer ends by itself after the conflict, though the hub still sends.
    let ended = tokio::time::timeout(Duration::from_secs(5), writer).await;
    assert!(ended.is_ok(), "the writer stopped");
    tx.send_replace(Some(Arc::new(snapshot(3))));
    assert!(server.await.unwrap(), "no write after the conflict");
}

/// A deposed leader's late write came after this leader loaded the checkpoint: this leader,
/// which still holds the Lease, reads the new version and replaces it with its own.
#[tokio::test]
async fn the_leader_takes_its_checkpoint_back_after_a_deposed_leaders_write() {
    let (client, mut handle) = mock();
    let server = tokio::spawn(async move {
        conflict_after_load(&mut handle, "replica-a").await;
        // Read back: the deposed leader's version 6.
        let (request, send) = handle.next_request().await.unwrap();
        assert_eq!(request.method(), Method::GET);
        respond(
            send,
            200,
            configmap(
                "eventspan-checkpoint-5s",
                "6",
                true,
                Some(checkpoint(2).encode()),
            ),
        );
        // The next snapshot replaces exactly that version, with this leader's checkpoint.
        let (request, send) = handle.next_request().await.unwrap();
        assert_eq!(request.method(), Method::PUT);
        let cm = body_of(request).await;
        assert_eq!(cm.metadata.resource_version.as_deref(), Some("6"));
        let data = &cm.binary_data.as_ref().unwrap()[DATA_KEY].0;
        assert_eq!(Checkpoint::decode(data), Ok(checkpoint(3)));
        respond(
            send,
            200,
            configmap("eventspan-checkpoint-5s", "7", true, None),
        );
        handle.next_request().await.is_none()
    });
    let metrics = Metrics::default();
    let mut store =
        Store::new(client, "eventspan-system", "replica-a").with_lease("eventspan-leader");
    store.load([FIVE], &metrics).await;
    store.write_all(&snapshot(3), &metrics).await;
    assert!(!store.stopped(), "the leader keeps writing");
    store.write_all(&snapshot(3), &metrics).await;
    assert_eq!(
        store.slots["eventspan-checkpoint-5s"],
        Slot::Ours("7".into())
    );
    drop(store);
    assert!(server.await.unwrap(), "no request beyond those");
    let text = metrics.encode();
    assert!(
        text.contains("eventspan_checkpoint_writes_total{result=\"conflict\"} 1\n"),
        "{text}"
    );
    // Written after the conflict: the checkpoint now covers the snapshot's spans.
    assert!(
        text.contains("eventspan_checkpoint_covered_spans 3\n"),
        "{text}"
    );
}

#[tokio::test]
async fn a_deposed_writer_writes_nothing_more() {
    let (client, mut handle) = mock();
    let store = Store::new(client, "eventspan-system", "replica-a");
    let (tx, rx) = watch::channel(None);
    let deposed = CancellationToken::new();
    let writer = tokio::spawn(write_loop(
        store,
        rx,
        deposed.clone(),
        Arc::new(Metrics::default()),
    ));
    deposed.cancel();
    tokio::time::timeout(Duration::from_secs(5), writer)
        .await
        .expect("the writer stopped")
        .unwrap();
    tx.send_replace(Some(Arc::new(snapshot(3))));
    drop(tx);
    assert!(handle.next_request().await.is_none());
}

#[test]
fn names_follow_the_window() {
    assert_eq!(configmap_name(FIVE), "eventspan-checkpoint-5s");
    assert_eq!(
        configmap_name(Duration::from_millis(2500)),
        "eventspan-checkpoint-2500ms"
    );
}

//! Test doubles of what the operator core talks to: watches that only record what they are
//! asked, exporters that keep what they are offered, and recordings turned into the inputs the
//! watches would deliver.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::BoxFuture;

use super::hub::{ExporterFactory, SessionExporter};
use super::watches::{Input, WatchControl};
use crate::engine::ids::SpanId;
use crate::engine::model::FinishedSpan;
use crate::engine::model::{Change, Observed};
use crate::engine::time::Timestamp;
use crate::export::{ExporterSpec, ExporterStats, TransportError, Watermark};
use crate::watch::Refusal;
use crate::watch::WatchCounts;

/// What the hub asked of a [`FakeWatches`], and what the test makes it report.
#[derive(Debug, Default)]
pub struct WatchLog {
    /// The namespaces covered, as the hub last set them.
    pub namespaces: BTreeSet<String>,
    /// (namespace, apiVersion, kind) the hub asked to follow, in covered namespaces.
    pub kinds: BTreeSet<(String, String, String)>,
    /// Namespaces the hub asked to list again, in order.
    pub relisted: Vec<String>,
    /// Reported: namespaces whose Event watch has listed.
    pub listed: BTreeSet<String>,
    /// Reported: watches given up.
    pub refused: Vec<Refusal>,
}

/// Watches that watch nothing: they record what the hub asks, and report what the test says.
#[derive(Clone, Default)]
pub struct FakeWatches {
    log: Arc<Mutex<WatchLog>>,
    counts: Arc<WatchCounts>,
}

impl FakeWatches {
    pub fn log(&self) -> MutexGuard<'_, WatchLog> {
        self.log.lock().expect("watch log")
    }
}

impl WatchControl for FakeWatches {
    fn set_namespaces(&mut self, desired: &BTreeSet<String>) {
        let mut log = self.log();
        log.kinds.retain(|(ns, _, _)| desired.contains(ns));
        log.namespaces.clone_from(desired);
    }

    fn ensure_kind(&mut self, api_version: &str, kind: &str, namespace: &str) {
        let mut log = self.log();
        if log.namespaces.contains(namespace) {
            let key = (namespace.into(), api_version.into(), kind.into());
            log.kinds.insert(key);
        }
    }

    fn relist_namespace(&mut self, namespace: &str) {
        self.log().relisted.push(namespace.into());
    }

    fn namespaces(&self) -> BTreeSet<String> {
        self.log().namespaces.clone()
    }

    fn listed(&self, namespace: &str) -> bool {
        let log = self.log();
        log.namespaces.contains(namespace) && log.listed.contains(namespace)
    }

    fn refused(&self) -> Vec<Refusal> {
        self.log().refused.clone()
    }

    fn kinds_rejected(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }

    fn counts(&self) -> &WatchCounts {
        &self.counts
    }
}

/// One exporter a [`FakeExporters`] started: its spec, what it was offered, whether it stopped.
#[derive(Clone)]
pub struct Started {
    pub spec: ExporterSpec,
    offered: Arc<Mutex<Vec<Arc<FinishedSpan>>>>,
    stopped: Arc<AtomicBool>,
}

impl Started {
    /// The IDs of the spans it was offered, in order.
    pub fn span_ids(&self) -> Vec<SpanId> {
        let offered = self.offered.lock().expect("offered spans");
        offered.iter().map(|s| s.span_id).collect()
    }

    pub fn stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }
}

/// Starts exporters that keep every span offered (counted as exported), and remembers each one;
/// refuses to start those whose URL the test named.
#[derive(Clone, Default)]
pub struct FakeExporters {
    started: Arc<Mutex<Vec<Started>>>,
    refused_urls: Arc<Mutex<BTreeSet<String>>>,
}

impl FakeExporters {
    /// Exporters to `url` fail to start, as a bad CA bundle would.
    pub fn refuse(&self, url: &str) {
        self.refused_urls
            .lock()
            .expect("refused")
            .insert(url.into());
    }

    /// Every exporter started to `url`, oldest first.
    pub fn to(&self, url: &str) -> Vec<Started> {
        let started = self.started.lock().expect("started");
        started
            .iter()
            .filter(|s| s.spec.url == url)
            .cloned()
            .collect()
    }
}

impl ExporterFactory for FakeExporters {
    fn start(&self, spec: &ExporterSpec) -> Result<Box<dyn SessionExporter>, TransportError> {
        if self
            .refused_urls
            .lock()
            .expect("refused")
            .contains(&spec.url)
        {
            return Err(TransportError::Config("CA bundle: no certificate".into()));
        }
        let started = Started {
            spec: spec.clone(),
            offered: Arc::default(),
            stopped: Arc::default(),
        };
        self.started.lock().expect("started").push(started.clone());
        Ok(Box::new(FakeExporter(started)))
    }
}

struct FakeExporter(Started);

impl SessionExporter for FakeExporter {
    fn name(&self) -> &str {
        &self.0.spec.name
    }

    fn offer(&self, span: Arc<FinishedSpan>) {
        assert!(!self.0.stopped(), "a span offered to a stopped exporter");
        self.0.offered.lock().expect("offered spans").push(span);
    }

    fn stats(&self) -> ExporterStats {
        ExporterStats {
            exported: self.0.offered.lock().expect("offered spans").len() as u64,
            healthy: true,
            ..Default::default()
        }
    }

    fn watermarks(&self) -> Vec<Watermark> {
        Vec::new()
    }

    fn shutdown(self: Box<Self>, _grace: Duration) -> BoxFuture<'static, ExporterStats> {
        self.0.stopped.store(true, Ordering::SeqCst);
        let stats = self.stats();
        Box::pin(async move { stats })
    }
}

/// A recording as the watches would deliver it: each change at the time it was observed (else
/// the best time it carries, as replay does).
pub fn inputs(recording: &str) -> Vec<Input> {
    let mut changes = Vec::new();
    for document in crate::replay::input::documents(recording) {
        let document = document.expect("a valid recording");
        (*document.value).into_changes(&mut changes);
    }
    changes
        .into_iter()
        .filter_map(|change| {
            let Observed {
                change,
                observed_at,
            } = change.expect("a valid change");
            let at = match &change {
                Change::Event(event) => observed_at.unwrap_or(event.last.at),
                Change::Upsert(meta) => observed_at
                    .or_else(|| meta.time_hint())
                    .expect("an object with a time"),
                Change::Delete(_) => observed_at.expect("a deletion with a time"),
                Change::Ignore => return None,
            };
            Some(Input::Change(Observed {
                change,
                observed_at: Some(at),
            }))
        })
        .collect()
}

/// The latest time a recording's inputs carry.
pub fn last_time(inputs: &[Input]) -> Timestamp {
    inputs
        .iter()
        .filter_map(|input| match input {
            Input::Change(observed) => observed.observed_at,
            Input::Malformed(_) | Input::StateGap { .. } => None,
        })
        .max()
        .expect("a recording with inputs")
}

/// One request the fake API server got: method, path, query and JSON body (`Null` if empty).
#[derive(Clone, Debug)]
pub struct Request {
    pub method: http::Method,
    pub path: String,
    pub query: String,
    pub body: serde_json::Value,
}

/// Every request the fake API server got, in order.
#[derive(Clone, Default)]
pub struct Requests(Arc<Mutex<Vec<Request>>>);

impl Requests {
    pub fn all(&self) -> Vec<Request> {
        self.0.lock().expect("requests").clone()
    }

    /// Waits (a few seconds at most) until a request `which` recognises has come, and returns it.
    pub async fn wait_for(&self, which: impl Fn(&Request) -> bool) -> Request {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(found) = self.all().into_iter().find(|r| which(r)) {
                return found;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no such request; got {:#?}",
                self.all()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A client whose API server is `answer` (a status code and a JSON body for each request),
/// over `tower_test`'s mock service (as kube-rs's controller-rs tests its reconciler); every
/// request is kept, for the test to check.
pub fn api_server(
    answer: impl Fn(&Request) -> (u16, serde_json::Value) + Send + 'static,
) -> (kube::Client, Requests) {
    use kube::client::Body;

    let (service, mut handle) =
        tower_test::mock::pair::<http::Request<Body>, http::Response<Body>>();
    let requests = Requests::default();
    let kept = requests.clone();
    tokio::spawn(async move {
        while let Some((request, respond)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.expect("a request body");
            let request = Request {
                method: parts.method,
                path: parts.uri.path().to_string(),
                query: parts.uri.query().unwrap_or_default().to_string(),
                body: if bytes.is_empty() {
                    serde_json::Value::Null
                } else {
                    serde_json::from_slice(&bytes).expect("a JSON request body")
                },
            };
            let (code, reply) = answer(&request);
            kept.0.lock().expect("requests").push(request);
            let response = http::Response::builder()
                .status(code)
                .body(Body::from(reply.to_string().into_bytes()))
                .expect("a response");
            respond.send_response(response);
        }
    });
    (kube::Client::new(service, "default"), requests)
}

//! Watching a cluster for the engine, the one ingestion path of `record` and the operator: the
//! watch manager ([`WatchManager`]) and its tasks, which API serves a kind, watches of objects
//! (metadata only, plus progress fields for the kinds whose progress is followed), and objects
//! reduced to what eventspan keeps.

mod delivery;
pub(crate) mod kinds;
mod manager;
pub(crate) mod retry;
mod shared;
mod tasks;

pub use delivery::{Decode, Delivery, WatchType};
pub use manager::{Settings, WatchManager};
pub use shared::WatchCounts;

use std::collections::BTreeSet;
use std::time::Instant;

use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta as KubeMeta;
use kube::api::{ApiResource, DynamicObject, PartialObjectMeta};
use kube::core::GroupVersionKind;
use kube::runtime::watcher;
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use retry::{Backoff, Decision, Failure};

use crate::wire::progress::{self, WireSpec, WireStatus};
use crate::wire::{TOP_LEVEL_ANNOTATION, TRACEPARENT_ANNOTATION};

/// Where a watch looks.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    AllNamespaces,
    Namespace(String),
}

/// Events of both APIs are served as `events.k8s.io/v1` (the API server converts core/v1 ones).
pub fn events_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("events.k8s.io", "v1", "Event"))
}

fn api<K>(client: Client, ar: &ApiResource, namespaced: bool, scope: &Scope) -> Api<K>
where
    K: kube::Resource<DynamicType = ApiResource, Scope = kube::core::DynamicResourceScope>,
{
    match scope {
        Scope::Namespace(ns) if namespaced => Api::namespaced_with(client, ns, ar),
        _ => Api::all_with(client, ar),
    }
}

/// A watch of Events in `scope`. Errors come through as they are: [`next_event`] retries them.
pub fn events(
    client: Client,
    scope: &Scope,
) -> impl futures::Stream<Item = Result<watcher::Event<DynamicObject>, watcher::Error>> + Send + use<>
{
    let api: Api<DynamicObject> = api(client, &events_resource(), true, scope);
    watcher(api, watcher::Config::default())
}

/// An Event as JSON with its `apiVersion` and `kind` (list responses leave them out of items),
/// and without its managedFields, which say nothing about the event.
pub fn event_json(object: &DynamicObject) -> Value {
    let mut value = serde_json::to_value(object).expect("objects serialise");
    value["apiVersion"] = json!("events.k8s.io/v1");
    value["kind"] = json!("Event");
    if let Some(meta) = value["metadata"].as_object_mut() {
        meta.remove("managedFields");
    }
    value
}

/// An object as eventspan watches it: its metadata, and for the kinds whose progress is
/// followed ([`progress::tracks`]) the few spec and status fields that tell it. Nothing else of
/// the object is kept past decoding.
#[derive(Clone, Debug)]
pub struct Watched {
    pub metadata: KubeMeta,
    pub spec: Option<WireSpec>,
    pub status: Option<WireStatus>,
}

impl Watched {
    fn from_metadata(object: PartialObjectMeta<DynamicObject>) -> Self {
        Watched {
            metadata: object.metadata,
            spec: None,
            status: None,
        }
    }

    fn from_object(object: DynamicObject) -> Self {
        // Lenient: a field eventspan cannot read is as good as missing, never an error.
        fn typed<T: serde::de::DeserializeOwned>(v: Option<&Value>) -> Option<T> {
            v.and_then(|v| T::deserialize(v).ok())
        }
        Watched {
            spec: typed(object.data.get("spec")),
            status: typed(object.data.get("status")),
            metadata: object.metadata,
        }
    }
}

fn map_event<A, B>(event: watcher::Event<A>, f: impl Fn(A) -> B) -> watcher::Event<B> {
    match event {
        watcher::Event::Apply(o) => watcher::Event::Apply(f(o)),
        watcher::Event::Delete(o) => watcher::Event::Delete(f(o)),
        watcher::Event::InitApply(o) => watcher::Event::InitApply(f(o)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

/// A watch of one kind in `scope`: metadata-only, or whole objects reduced at once to [`Watched`]
/// for the kinds whose progress is followed or whose spec is read ([`progress::reads_spec`]).
/// Errors come through as they are: [`next_event`] retries them.
pub fn objects(
    client: Client,
    ar: &ApiResource,
    namespaced: bool,
    scope: &Scope,
) -> BoxStream<'static, Result<watcher::Event<Watched>, watcher::Error>> {
    if progress::reads_spec(&ar.kind) {
        let api: Api<DynamicObject> = api(client, ar, namespaced, scope);
        watcher(api, watcher::Config::default())
            .map_ok(|e| map_event(e, Watched::from_object))
            .boxed()
    } else {
        let api: Api<PartialObjectMeta<DynamicObject>> = api(client, ar, namespaced, scope);
        watcher(api, watcher::Config::default())
            .map_ok(|e| map_event(e, Watched::from_metadata))
            .boxed()
    }
}

/// An object as eventspan keeps it: annotations other than its own, and the field sets of
/// managedFields (often most of an object's size), are dropped; a managedFields entry keeps
/// only whether it touched `spec`. Spec and status keep only what tells progress.
pub fn slim_object(ar: &ApiResource, object: &Watched) -> Value {
    let mut m = object.metadata.clone();
    if let Some(annotations) = &mut m.annotations {
        annotations.retain(|k, _| k == TOP_LEVEL_ANNOTATION || k == TRACEPARENT_ANNOTATION);
    }
    if let Some(fields) = &mut m.managed_fields {
        for f in fields {
            let touches_spec = f
                .fields_v1
                .as_ref()
                .is_some_and(|v| v.0.get("f:spec").is_some());
            f.fields_v1 = touches_spec.then(|| {
                k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1(json!({"f:spec": {}}))
            });
        }
    }
    let mut value = json!({"apiVersion": ar.api_version, "kind": ar.kind, "metadata": m});
    if let Some(spec) = &object.spec {
        value["spec"] = serde_json::to_value(spec).expect("serialises");
    }
    if let Some(status) = &object.status {
        value["status"] = serde_json::to_value(status).expect("serialises");
    }
    value
}

/// What [`next_event`] got.
pub enum Next<K> {
    /// An event; `recovered` if the watch had been given up (and its refusal reported) before.
    Event {
        event: watcher::Event<K>,
        recovered: bool,
    },
    /// The watch failed: from now on until it delivers again (or [`Next::Resumed`]) what it
    /// watches may change unseen. Once per run of failures, before the first retry.
    Interrupted,
    /// An interrupted watch is established again and stayed quiet for [`QUIET`]: a watch
    /// resumed from its resourceVersion delivers at once what changed meanwhile, so nothing did.
    Resumed,
    /// The API server kept refusing (this code) for the policy's give-up time.
    GaveUp(u16),
    /// `stop` was cancelled, or the stream ended.
    Stopped,
}

/// How long an interrupted watch, once retried, stays quiet before it counts as resumed.
pub const QUIET: std::time::Duration = std::time::Duration::from_secs(2);

/// The next event of a watch. Errors are retried under `backoff`, sleeping here (the streams
/// above have no backoff of their own, so this is the only one); the first error of a run is a
/// warning, the retries after it are debug lines, so a long outage does not fill the log.
pub async fn next_event<K, S>(
    stream: &mut S,
    backoff: &mut Backoff,
    stop: &CancellationToken,
    what: &str,
) -> Next<K>
where
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Unpin,
{
    loop {
        if let Some(delay) = backoff.take_deferred() {
            tokio::select! {
                _ = stop.cancelled() => return Next::Stopped,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        let interrupted = backoff.interrupted();
        let quiet = async move {
            if interrupted {
                tokio::time::sleep(QUIET).await
            } else {
                futures::future::pending().await
            }
        };
        let next = tokio::select! {
            _ = stop.cancelled() => return Next::Stopped,
            next = stream.next() => next,
            () = quiet => {
                backoff.resumed();
                return Next::Resumed;
            }
        };
        let error = match next {
            Some(Ok(event)) => {
                let recovered = backoff.succeeded();
                return Next::Event { event, recovered };
            }
            Some(Err(error)) => error,
            None => return Next::Stopped,
        };
        let first = backoff.failures() == 0;
        let newly_interrupted = !backoff.interrupted();
        match backoff.failed(Instant::now(), Failure::of_watcher(&error)) {
            Decision::Retry(delay) => {
                if first {
                    tracing::warn!(%error, %what, ?delay, "watch failed; retrying");
                } else {
                    tracing::debug!(%error, %what, ?delay, "watch failed again; retrying");
                }
                backoff.defer(delay);
                if newly_interrupted {
                    return Next::Interrupted;
                }
            }
            Decision::GiveUp(code) => return Next::GaveUp(code),
        }
    }
}

/// How a refused resource is named: `plural.group` as RBAC rules name it (`deployments.apps`,
/// `pods`), or `Kind.group` for a kind discovery never resolved (its plural is unknown).
pub fn resource_name(ar: &ApiResource) -> String {
    if ar.group.is_empty() {
        ar.plural.clone()
    } else {
        format!("{}.{}", ar.plural, ar.group)
    }
}

/// `Kind.group` (`Kind` in the core group): the name of a kind discovery never resolved, whose
/// plural is unknown.
pub fn unresolved_name(api_version: &str, kind: &str) -> String {
    let group = kinds::gvk(api_version, kind).group;
    if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    }
}

/// A watch given up because the API server kept refusing it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Refusal {
    /// See [`resource_name`].
    pub resource: String,
    pub scope: Scope,
    /// 401, 403 or 404.
    pub code: u16,
}

/// The watches given up, shared by the watch tasks and whoever reports them (metrics, a status
/// condition naming the missing permission). A watch that recovers is taken off.
#[derive(Default, Debug)]
pub struct Refusals(std::sync::Mutex<BTreeSet<Refusal>>);

impl Refusals {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<Refusal>> {
        // A panic elsewhere while holding it leaves a set still worth reading.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add(&self, refusal: Refusal) {
        self.lock().insert(refusal);
    }

    pub fn remove(&self, resource: &str, scope: &Scope) {
        self.lock()
            .retain(|r| !(r.resource == resource && r.scope == *scope));
    }

    /// Forgets the refusals of a namespace no longer watched.
    pub fn forget_namespace(&self, namespace: &str) {
        self.lock()
            .retain(|r| !matches!(&r.scope, Scope::Namespace(n) if n == namespace));
    }

    pub fn list(&self) -> Vec<Refusal> {
        self.lock().iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Item = Result<watcher::Event<()>, watcher::Error>;

    fn refused(code: u16) -> Item {
        Err(watcher::Error::InitialListFailed(kube::Error::Api(
            Box::new(kube::core::Status::failure("refused", "Forbidden").with_code(code)),
        )))
    }

    /// Milliseconds instead of seconds: the shell sleeps for real.
    fn quick() -> Backoff {
        Backoff::new(
            retry::Policy {
                first: std::time::Duration::from_millis(1),
                max: std::time::Duration::from_millis(4),
                give_up_after: std::time::Duration::from_millis(100),
            },
            1,
        )
    }

    #[tokio::test]
    async fn a_watch_refused_while_the_api_server_starts_carries_on() {
        let mut stream = futures::stream::iter([
            refused(403),
            refused(403),
            refused(401),
            Ok(watcher::Event::Init),
        ]);
        let (mut backoff, stop) = (quick(), CancellationToken::new());
        assert!(matches!(
            next_event(&mut stream, &mut backoff, &stop, "test").await,
            Next::Interrupted
        ));
        match next_event(&mut stream, &mut backoff, &stop, "test").await {
            Next::Event {
                event: watcher::Event::Init,
                recovered: false,
            } => {}
            _ => panic!("expected the list to start, with nothing to withdraw"),
        }
        assert_eq!(backoff.failures(), 0);
        assert!(!backoff.interrupted());
    }

    /// Issue 12: a watch says when it fails (once per run of failures, at the first) and when
    /// it is whole again: at its next delivery, or once re-established and quiet for [`QUIET`].
    #[tokio::test(start_paused = true)]
    async fn a_watch_says_when_it_is_interrupted_and_when_it_is_whole_again() {
        let items: [Item; 3] = [
            Ok(watcher::Event::Init),
            Err(watcher::Error::NoResourceVersion),
            Err(watcher::Error::NoResourceVersion),
        ];
        let mut stream = futures::stream::iter(items)
            // Re-established: a watch that waits for changes.
            .chain(futures::stream::pending());
        let (mut backoff, stop) = (quick(), CancellationToken::new());
        macro_rules! next {
            () => {
                next_event(&mut stream, &mut backoff, &stop, "test")
            };
        }
        assert!(matches!(next!().await, Next::Event { .. }));
        assert!(matches!(next!().await, Next::Interrupted));
        let retried = tokio::time::Instant::now();
        assert!(matches!(next!().await, Next::Resumed));
        assert!(retried.elapsed() >= QUIET, "quiet for {QUIET:?} first");
        // Whole again: it waits for changes without a deadline.
        let more = tokio::time::timeout(std::time::Duration::from_secs(3600), next!()).await;
        assert!(more.is_err(), "nothing more to say");
    }

    #[tokio::test]
    async fn a_refusal_that_persists_is_given_up_and_a_later_success_says_so() {
        let mut stream = futures::stream::repeat_with(|| refused(403))
            // At least 2 ms apart after the third: well past the 100 ms give-up.
            .take(150)
            .chain(futures::stream::iter([Ok(watcher::Event::Init)]));
        let (mut backoff, stop) = (quick(), CancellationToken::new());
        let started = Instant::now();
        assert!(matches!(
            next_event(&mut stream, &mut backoff, &stop, "test").await,
            Next::Interrupted
        ));
        assert!(matches!(
            next_event(&mut stream, &mut backoff, &stop, "test").await,
            Next::GaveUp(403)
        ));
        assert!(started.elapsed() >= std::time::Duration::from_millis(100));
        // An Event watch keeps asking after a give-up: when it is let in, it says so.
        match next_event(&mut stream, &mut backoff, &stop, "test").await {
            Next::Event { recovered, .. } => assert!(recovered),
            Next::GaveUp(_) => panic!("given up twice"),
            _ => panic!("expected the event"),
        }
    }

    #[tokio::test]
    async fn a_retrying_watch_stops_when_told() {
        let mut stream =
            futures::stream::repeat_with(|| Item::Err(watcher::Error::NoResourceVersion));
        let mut backoff = Backoff::new(retry::Policy::default(), 1);
        let stop = CancellationToken::new();
        let stopper = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            stopper.cancel();
        });
        let started = Instant::now();
        assert!(matches!(
            next_event(&mut stream, &mut backoff, &stop, "test").await,
            Next::Interrupted
        ));
        assert!(matches!(
            next_event(&mut stream, &mut backoff, &stop, "test").await,
            Next::Stopped
        ));
        // Cancelled in its sleep (about a second long by then), not after it.
        assert!(started.elapsed() < std::time::Duration::from_millis(500));
    }

    #[test]
    fn refused_resources_are_named_as_rbac_names_them() {
        let deployments = ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment"));
        assert_eq!(resource_name(&deployments), "deployments.apps");
        let pods = ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "Pod"));
        assert_eq!(resource_name(&pods), "pods");
        assert_eq!(resource_name(&events_resource()), "events.events.k8s.io");
        assert_eq!(
            unresolved_name("argoproj.io/v1alpha1", "Rollout"),
            "Rollout.argoproj.io"
        );
        assert_eq!(unresolved_name("", "Service"), "Service");
    }

    #[test]
    fn refusals_are_withdrawn_and_forgotten_with_their_namespace() {
        let refusals = Refusals::default();
        let refusal = |resource: &str, ns: &str| Refusal {
            resource: resource.into(),
            scope: Scope::Namespace(ns.into()),
            code: 403,
        };
        refusals.add(refusal("services", "shop"));
        refusals.add(refusal("services", "shop"));
        refusals.add(refusal("services", "payments"));
        refusals.add(refusal("events.events.k8s.io", "shop"));
        assert_eq!(refusals.list().len(), 3);
        refusals.remove("events.events.k8s.io", &Scope::Namespace("shop".into()));
        assert_eq!(
            refusals.list(),
            [refusal("services", "payments"), refusal("services", "shop")]
        );
        refusals.forget_namespace("shop");
        assert_eq!(refusals.list(), [refusal("services", "payments")]);
    }
}

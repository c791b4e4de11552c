//! Watching a cluster for the engine: which API serves a kind, metadata-only watches, and
//! objects reduced to what eventspan keeps.

pub mod kinds;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta as KubeMeta;
use kube::api::{ApiResource, DynamicObject, PartialObjectMeta};
use kube::core::GroupVersionKind;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::engine::time::Timestamp;
use crate::wire::{TOP_LEVEL_ANNOTATION, TRACEPARENT_ANNOTATION};

/// The wall clock, for stamping what watches deliver (the engine itself never reads a clock).
pub fn now() -> Timestamp {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_unix_nanos(i64::try_from(since_epoch.as_nanos()).unwrap_or(i64::MAX))
}

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

/// A watch of Events in `scope`, with kube's default backoff on errors.
pub fn events(
    client: Client,
    scope: &Scope,
) -> impl futures::Stream<Item = Result<watcher::Event<DynamicObject>, watcher::Error>> + Send + use<>
{
    let api: Api<DynamicObject> = api(client, &events_resource(), true, scope);
    watcher(api, watcher::Config::default()).default_backoff()
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

/// A metadata-only watch of one kind in `scope`, with kube's default backoff on errors.
pub fn metadata(
    client: Client,
    ar: &ApiResource,
    namespaced: bool,
    scope: &Scope,
) -> impl futures::Stream<
    Item = Result<watcher::Event<PartialObjectMeta<DynamicObject>>, watcher::Error>,
> + Send
+ use<> {
    let api: Api<PartialObjectMeta<DynamicObject>> = api(client, ar, namespaced, scope);
    watcher(api, watcher::Config::default()).default_backoff()
}

/// An object's metadata as eventspan keeps it: annotations other than its own, and the field
/// sets of managedFields (often most of an object's size), are dropped; a managedFields entry
/// keeps only whether it touched `spec`.
pub fn slim_object(ar: &ApiResource, meta: &KubeMeta) -> Value {
    let mut m = meta.clone();
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
    json!({"apiVersion": ar.api_version, "kind": ar.kind, "metadata": m})
}

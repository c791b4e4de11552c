//! `eventspan record`: capture a live stream of events and the objects they involve, in the
//! format `eventspan replay` reads.
//!
//! Events are watched in the chosen namespaces; the kind of every involved object, and of every
//! owner of a watched object, gets a metadata-only watch of its own, so a recording holds the
//! owner chains the engine needs and nothing heavier. Each line is a watch event with the time
//! it was observed.

use std::collections::HashSet;
use std::io::Write;
use std::sync::Arc;

use kube::Client;
use kube::api::ApiResource;
use kube::runtime::watcher;
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::watch::kinds::{self, Budget, KindResolver, resolve_with_retry};
use crate::watch::retry::{Backoff, Policy};
use crate::watch::{self, Next, Refusal, Refusals, Scope, Watched};

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot write the recording: {0}")]
    Write(#[from] std::io::Error),
}

/// What a recording captured.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecordStats {
    pub lines: u64,
    pub events: u64,
    pub kinds: usize,
    /// Kinds named by events or owner references but not watched (malformed, or beyond the
    /// budgets of [`kinds::Budget`]).
    pub kinds_rejected: u64,
    /// Watches given up because the API server kept refusing them.
    pub refused: Vec<Refusal>,
}

/// A kind to start watching, learned from an event's involved object or an owner reference:
/// apiVersion, kind, and the namespace that named it (whose budget it takes).
type KindRequest = (String, String, String);

/// Kind requests waiting for the recorder; watches wait when it is behind.
const KIND_REQUESTS: usize = 1024;

fn watch_type<K>(event: &watcher::Event<K>) -> Option<(&'static str, &K)> {
    match event {
        watcher::Event::InitApply(o) => Some(("ADDED", o)),
        watcher::Event::Apply(o) => Some(("MODIFIED", o)),
        watcher::Event::Delete(o) => Some(("DELETED", o)),
        watcher::Event::Init | watcher::Event::InitDone => None,
    }
}

fn line(kind: &str, object: Value) -> Value {
    json!({"type": kind, "object": object, "observedAt": watch::now()})
}

/// Shared by the watch tasks of one recording.
#[derive(Clone)]
struct Shared {
    client: Client,
    lines: mpsc::Sender<Value>,
    kinds: mpsc::Sender<KindRequest>,
    refusals: Arc<Refusals>,
    stop: CancellationToken,
}

/// Records until `stop` is cancelled, writing lines to `out`. Watches retry failures and
/// refusals as the operator's do ([`crate::watch::retry`]), and the kinds followed have the
/// operator's budgets.
pub async fn record(
    client: Client,
    scopes: Vec<Scope>,
    out: Box<dyn Write + Send>,
    stop: CancellationToken,
) -> Result<RecordStats, RecordError> {
    let (lines_tx, lines_rx) = mpsc::channel::<Value>(1024);
    let (kinds_tx, mut kinds_rx) = mpsc::channel::<KindRequest>(KIND_REQUESTS);
    let writer = tokio::task::spawn_blocking(move || write_lines(out, lines_rx));
    let shared = Shared {
        client: client.clone(),
        lines: lines_tx,
        kinds: kinds_tx,
        refusals: Arc::default(),
        stop: stop.clone(),
    };
    let mut tasks = JoinSet::new();
    for scope in &scopes {
        tasks.spawn(watch_events(shared.clone(), scope.clone()));
    }
    let resolver = Arc::new(Mutex::new(KindResolver::new(client)));
    let mut budget = Budget::default();
    let mut watched: HashSet<(String, String)> = HashSet::new();
    let mut warned = HashSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            Some((api_version, kind, namespace)) = kinds_rx.recv() => {
                let api_version = kinds::gvk(&api_version, &kind).api_version();
                if kinds::valid_kind(&api_version, &kind)
                    && watched.contains(&(api_version.clone(), kind.clone()))
                {
                    continue;
                }
                if let Err(rejected) = budget.admit(&namespace, &api_version, &kind) {
                    if warned.insert((namespace.clone(), rejected)) {
                        let kind: String = kind.chars().take(80).collect();
                        tracing::warn!(%kind, %namespace, %rejected, "kind not recorded; more kinds rejected here for this reason are only counted");
                    }
                    continue;
                }
                watched.insert((api_version.clone(), kind.clone()));
                // Discovery (and its retries) runs in the kind's own task: a kind not served
                // yet must not hold up the others.
                tasks.spawn(watch_kind(shared.clone(), resolver.clone(), scopes.clone(), api_version, kind));
            }
        }
    }
    // Watches blocked on a full kinds channel see it closed and end.
    drop(kinds_rx);
    let refusals = shared.refusals.clone();
    drop(shared);
    let mut events = 0;
    while let Some(done) = tasks.join_next().await {
        events += done.unwrap_or(0);
    }
    let lines = writer.await.expect("writer task does not panic")?;
    Ok(RecordStats {
        lines,
        events,
        kinds: watched.len(),
        kinds_rejected: budget.rejected().map(|(_, n)| n).sum(),
        refused: refusals.list(),
    })
}

/// Resolves a kind, then watches it in every scope (once, for a cluster-scoped kind).
async fn watch_kind(
    shared: Shared,
    resolver: Arc<Mutex<KindResolver>>,
    scopes: Vec<Scope>,
    api_version: String,
    kind: String,
) -> u64 {
    let mut backoff = Backoff::seeded(Policy::default());
    let served = match resolve_with_retry(
        &resolver,
        &api_version,
        &kind,
        &mut backoff,
        &shared.stop,
    )
    .await
    {
        None => return 0,
        Some(Ok(served)) => served,
        Some(Err(code)) => {
            shared.refusals.add(Refusal {
                resource: watch::unresolved_name(&api_version, &kind),
                scope: Scope::AllNamespaces,
                code,
            });
            return 0;
        }
    };
    tracing::info!(%api_version, %kind, "watching metadata");
    let scopes = if served.namespaced {
        scopes
    } else {
        vec![Scope::AllNamespaces]
    };
    let watches = scopes.into_iter().map(|scope| {
        watch_metadata(
            shared.clone(),
            served.resource.clone(),
            served.namespaced,
            scope,
        )
    });
    futures::future::join_all(watches).await;
    0
}

fn write_lines(
    out: Box<dyn Write + Send>,
    mut lines: mpsc::Receiver<Value>,
) -> std::io::Result<u64> {
    let mut out = std::io::BufWriter::new(out);
    let mut written = 0;
    while let Some(value) = lines.blocking_recv() {
        serde_json::to_writer(&mut out, &value)?;
        out.write_all(b"\n")?;
        written += 1;
        // Flush when caught up, so a follower (`tail -f`, a pipe to replay) sees lines promptly.
        if lines.is_empty() {
            out.flush()?;
        }
    }
    out.flush()?;
    Ok(written)
}

/// The namespace an object is in, for the kinds budget (`""` for cluster-scoped ones).
fn namespace_of(meta_namespace: Option<&String>, scope: &Scope) -> String {
    match (meta_namespace, scope) {
        (Some(ns), _) => ns.clone(),
        (None, Scope::Namespace(ns)) => ns.clone(),
        (None, Scope::AllNamespaces) => String::new(),
    }
}

async fn watch_events(shared: Shared, scope: Scope) -> u64 {
    let mut stream = Box::pin(watch::events(shared.client.clone(), &scope));
    let mut backoff = Backoff::seeded(Policy::default());
    let what = format!("events in {scope:?}");
    let resource = watch::resource_name(&watch::events_resource());
    let mut count = 0;
    loop {
        let event = match watch::next_event(&mut stream, &mut backoff, &shared.stop, &what).await {
            Next::Event { event, .. } => event,
            // A recording is watched by someone: say so and stop, rather than wait for ever.
            Next::GaveUp(code) => {
                tracing::warn!(
                    ?scope,
                    code,
                    "not permitted to watch events; nothing more is recorded from here"
                );
                shared.refusals.add(Refusal {
                    resource,
                    scope,
                    code,
                });
                return count;
            }
            Next::Stopped => return count,
            // A recording keeps what arrives; a gap in it is not marked.
            Next::Interrupted | Next::Resumed => continue,
        };
        let Some((kind, object)) = watch_type(&event) else {
            continue;
        };
        if let Some(regarding) = object.data.get("regarding") {
            let api_version = regarding["apiVersion"].as_str().unwrap_or_default();
            let kind = regarding["kind"].as_str().unwrap_or_default();
            if !kind.is_empty() {
                let namespace = namespace_of(object.metadata.namespace.as_ref(), &scope);
                let request = (api_version.to_string(), kind.to_string(), namespace);
                if shared.kinds.send(request).await.is_err() {
                    return count;
                }
            }
        }
        count += 1;
        let value = watch::event_json(object);
        if shared.lines.send(line(kind, value)).await.is_err() {
            return count;
        }
    }
}

async fn watch_metadata(shared: Shared, resource: ApiResource, namespaced: bool, scope: Scope) {
    let mut stream = watch::objects(shared.client.clone(), &resource, namespaced, &scope);
    let mut backoff = Backoff::seeded(Policy::default());
    let what = format!("{} in {scope:?}", resource.kind);
    loop {
        let event = match watch::next_event(&mut stream, &mut backoff, &shared.stop, &what).await {
            Next::Event { event, .. } => event,
            Next::GaveUp(code) => {
                tracing::warn!(kind = %resource.kind, ?scope, code, "not permitted to watch this kind; its objects are not recorded");
                shared.refusals.add(Refusal {
                    resource: watch::resource_name(&resource),
                    scope,
                    code,
                });
                return;
            }
            Next::Stopped => return,
            Next::Interrupted | Next::Resumed => continue,
        };
        let Some((kind, object)): Option<(_, &Watched)> = watch_type(&event) else {
            continue;
        };
        let namespace = namespace_of(object.metadata.namespace.as_ref(), &scope);
        for owner in object.metadata.owner_references.iter().flatten() {
            let request = (
                owner.api_version.clone(),
                owner.kind.clone(),
                namespace.clone(),
            );
            if shared.kinds.send(request).await.is_err() {
                return;
            }
        }
        let value = watch::slim_object(&resource, object);
        if shared.lines.send(line(kind, value)).await.is_err() {
            return;
        }
    }
}

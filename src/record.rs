//! `eventspan record`: capture a live stream of events and the objects they involve, in the
//! format `eventspan replay` reads.
//!
//! Events are watched in the chosen namespaces; the kind of every involved object, and of every
//! owner of a watched object, gets a metadata-only watch of its own, so a recording holds the
//! owner chains the engine needs and nothing heavier. Each line is a watch event with the time
//! it was observed.

use std::collections::HashSet;
use std::io::Write;

use futures::StreamExt;
use kube::Client;
use kube::api::ApiResource;
use kube::runtime::watcher;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::watch::{self, Scope, Watched, kinds, kinds::KindResolver};

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
}

/// A kind to start watching, learned from an event's involved object or an owner reference.
type KindRequest = (String, String);

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

/// Records until `stop` is cancelled, writing lines to `out`.
pub async fn record(
    client: Client,
    scopes: Vec<Scope>,
    out: Box<dyn Write + Send>,
    stop: CancellationToken,
) -> Result<RecordStats, RecordError> {
    let (lines_tx, lines_rx) = mpsc::channel::<Value>(1024);
    let (kinds_tx, mut kinds_rx) = mpsc::unbounded_channel::<KindRequest>();
    let writer = tokio::task::spawn_blocking(move || write_lines(out, lines_rx));
    let mut tasks = JoinSet::new();
    for scope in &scopes {
        tasks.spawn(watch_events(
            client.clone(),
            scope.clone(),
            lines_tx.clone(),
            kinds_tx.clone(),
            stop.clone(),
        ));
    }
    let mut resolver = KindResolver::new(client.clone());
    let mut watched: HashSet<KindRequest> = HashSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            Some((api_version, kind)) = kinds_rx.recv() => {
                let request = (kinds::gvk(&api_version, &kind).api_version(), kind);
                if !watched.insert(request.clone()) {
                    continue;
                }
                let Some(served) = resolver.resolve(&request.0, &request.1).await else { continue };
                tracing::info!(api_version = %request.0, kind = %request.1, "watching metadata");
                for scope in &scopes {
                    tasks.spawn(watch_metadata(
                        client.clone(),
                        served.resource.clone(),
                        served.namespaced,
                        scope.clone(),
                        lines_tx.clone(),
                        kinds_tx.clone(),
                        stop.clone(),
                    ));
                    if !served.namespaced {
                        break;
                    }
                }
            }
        }
    }
    drop(lines_tx);
    let mut events = 0;
    while let Some(done) = tasks.join_next().await {
        events += done.unwrap_or(0);
    }
    let lines = writer.await.expect("writer task does not panic")?;
    Ok(RecordStats {
        lines,
        events,
        kinds: watched.len(),
    })
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

async fn watch_events(
    client: Client,
    scope: Scope,
    lines: mpsc::Sender<Value>,
    kinds: mpsc::UnboundedSender<KindRequest>,
    stop: CancellationToken,
) -> u64 {
    let mut stream = Box::pin(watch::events(client, &scope));
    let mut count = 0;
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => return count,
            next = stream.next() => next,
        };
        match next {
            Some(Ok(event)) => {
                let Some((kind, object)) = watch_type(&event) else {
                    continue;
                };
                if let Some(regarding) = object.data.get("regarding") {
                    let api_version = regarding["apiVersion"].as_str().unwrap_or_default();
                    let kind = regarding["kind"].as_str().unwrap_or_default();
                    if !kind.is_empty() {
                        let _ = kinds.send((api_version.to_string(), kind.to_string()));
                    }
                }
                count += 1;
                let value = watch::event_json(object);
                if lines.send(line(kind, value)).await.is_err() {
                    return count;
                }
            }
            Some(Err(error)) => tracing::warn!(%error, ?scope, "event watch failed; retrying"),
            None => return count,
        }
    }
}

async fn watch_metadata(
    client: Client,
    resource: ApiResource,
    namespaced: bool,
    scope: Scope,
    lines: mpsc::Sender<Value>,
    kinds: mpsc::UnboundedSender<KindRequest>,
    stop: CancellationToken,
) -> u64 {
    let mut stream = watch::objects(client, &resource, namespaced, &scope);
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => return 0,
            next = stream.next() => next,
        };
        match next {
            Some(Ok(event)) => {
                let Some((kind, object)): Option<(_, &Watched)> = watch_type(&event) else {
                    continue;
                };
                for owner in object.metadata.owner_references.iter().flatten() {
                    let _ = kinds.send((owner.api_version.clone(), owner.kind.clone()));
                }
                let value = watch::slim_object(&resource, object);
                if lines.send(line(kind, value)).await.is_err() {
                    return 0;
                }
            }
            Some(Err(error)) => {
                tracing::warn!(%error, kind = %resource.kind, "metadata watch failed; retrying")
            }
            None => return 0,
        }
    }
}

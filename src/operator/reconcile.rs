//! The TraceSession reconciler: checks a session, resolves what it references (Secrets, kinds),
//! and starts, changes, suspends or stops it in the hub. Problems never fail the reconcile: they
//! become the session's `Ready` condition, naming the field, and the operator carries on.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp as Jiff;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{Event as Finalize, finalizer};
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};

use super::conditions::{Readiness, Reason};
use super::crd::{FINALIZER, Phase, TraceSession};
use super::hub::{HubHandle, HubStopped, SessionSetup, UpsertError};
use super::limits::{self, Limits};
use super::metrics::{ErrorKind, Metrics};
use super::session::{
    self, DEFAULT_RECENT_TRACES, ExporterConfig, ExporterPolicy, Invalid, SessionConfig,
};
use super::snapshot::{SessionKey, SessionSnapshot};
use super::status::{Decision as StatusDecision, StatusSender, Update};
use crate::export::{ExporterSpec, Protocol};
use crate::operator::crd;
use crate::otlp::cluster_name::ClusterName;

/// Sessions are re-checked this often (Secrets may have been created or rotated).
const RECHECK: Duration = Duration::from_secs(300);
/// A session that cannot run yet (a missing Secret) is retried this often.
const RETRY_INVALID: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// The hub is not running (the operator is stopping): the session's state is left as it
    /// was, and the reconcile is retried.
    #[error(transparent)]
    HubStopped(#[from] HubStopped),
}

/// A failed API request's kind: a 409 is a conflict, anything else the API server's failure.
fn kind_of_kube(error: &kube::Error) -> ErrorKind {
    match error {
        kube::Error::Api(status) if status.code == 409 => ErrorKind::Conflict,
        _ => ErrorKind::Api,
    }
}

impl Error {
    /// The kind of what failed, looking through the finalizer's wrapping (every reconcile runs
    /// inside it).
    pub fn kind(&self) -> ErrorKind {
        use kube::runtime::finalizer::Error as Finalizer;
        match self {
            Error::Kube(e) => kind_of_kube(e),
            Error::HubStopped(_) => ErrorKind::HubStopped,
            Error::Finalizer(e) => match &**e {
                Finalizer::ApplyFailed(inner) | Finalizer::CleanupFailed(inner) => inner.kind(),
                Finalizer::AddFinalizer(e) | Finalizer::RemoveFinalizer(e) => kind_of_kube(e),
                Finalizer::UnnamedObject | Finalizer::InvalidFinalizer => ErrorKind::Finalizer,
            },
        }
    }
}

pub struct Context {
    pub client: Client,
    pub hub: HubHandle,
    /// To the status writer, which alone keeps the sessions' verdicts.
    pub status: StatusSender,
    pub admin_namespaces: BTreeSet<String>,
    pub exporter_policy: ExporterPolicy,
    pub limits: Limits,
    /// The operator's `--cluster-name`, put on every session's Resources.
    pub cluster_name: Option<ClusterName>,
    /// Every TraceSession, as the controller's reflector sees them: a namespace's sessions are
    /// ranked against each other for `--max-sessions-per-namespace`.
    pub sessions: Store<TraceSession>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
}

pub async fn reconcile(ts: Arc<TraceSession>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = ts.namespace().unwrap_or_default();
    let api: Api<TraceSession> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, ts, |event| async {
        match event {
            Finalize::Apply(ts) => apply(&ts, &ctx).await,
            Finalize::Cleanup(ts) => cleanup(&ts, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics
        .reconciled(result.as_ref().err().map(Error::kind));
    result
}

pub fn error_policy(_ts: Arc<TraceSession>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(15))
}

fn key_of(ts: &TraceSession) -> SessionKey {
    SessionKey {
        namespace: ts.namespace().unwrap_or_default(),
        name: ts.name_any(),
    }
}

async fn cleanup(ts: &TraceSession, ctx: &Context) -> Result<Action, Error> {
    let key = key_of(ts);
    ctx.hub.remove(key.clone()).await?;
    tell(ctx, Update::Forget(key)).await;
    publish(
        ctx,
        ts,
        EventType::Normal,
        "Stopped",
        "session deleted: watches released, pending spans flushed",
    )
    .await;
    Ok(Action::await_change())
}

/// Decides the session's state, applies it to the hub, and records the verdict for the status.
/// When the API server cannot answer (discovery, a Secret), the session carries on as it was and
/// the reconcile is retried.
async fn apply(ts: &TraceSession, ctx: &Context) -> Result<Action, Error> {
    let key = key_of(ts);
    let status = ts.status.clone().unwrap_or_default();
    let previously_active = status.phase == Some(Phase::Active);
    // What the session's run did, if this reconcile stops it: its counts and traces carry over.
    let mut stopped_run = None;
    let (phase, ready, started_at, requeue) = match decide(ts, ctx).await {
        Err(Refusal::Unavailable(error)) => {
            // A new session says it is waiting; one that ran carries on as it was.
            // (The writer ignores this if it already has a verdict for the session.)
            if status.phase.is_none() {
                let waiting = format!("waiting for the API server: {error}");
                let ready = Readiness::not_ready(Reason::Pending, waiting);
                let decision = decision(ts, Phase::Pending, ready, None, None);
                tell(ctx, Update::Waiting(decision)).await;
            }
            return Err(Error::Kube(error));
        }
        Err(Refusal::Invalid(invalid)) => {
            stopped_run = ctx.hub.remove(key.clone()).await?;
            let message = invalid.to_string();
            if status.conditions.iter().all(|c| c.message != message) {
                publish(ctx, ts, EventType::Warning, invalid.reason, &message).await;
            }
            (
                Phase::Failed,
                Readiness::not_ready(Reason::Invalid(invalid.reason), message),
                status.started_at.clone(),
                Some(RETRY_INVALID),
            )
        }
        Ok(Decision::Suspended) => {
            stopped_run = ctx.hub.remove(key.clone()).await?;
            (
                Phase::Suspended,
                Readiness::ready(Reason::Suspended, "tracing is suspended (spec.suspend)"),
                status.started_at.clone(),
                None,
            )
        }
        Ok(Decision::Completed) => {
            stopped_run = ctx.hub.remove(key.clone()).await?;
            if status.phase != Some(Phase::Completed) {
                publish(
                    ctx,
                    ts,
                    EventType::Normal,
                    "Completed",
                    "the session's ttl has passed",
                )
                .await;
            }
            (
                Phase::Completed,
                Readiness::ready(Reason::Completed, "the session's ttl has passed"),
                status.started_at.clone(),
                None,
            )
        }
        Ok(Decision::Run {
            setup,
            started_at,
            ttl_left,
        }) => match ctx.hub.upsert(key.clone(), (*setup).clone()).await {
            Ok(()) => {
                if !previously_active {
                    let message = format!(
                        "tracing {}",
                        setup
                            .scope
                            .namespaces
                            .iter()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    publish(ctx, ts, EventType::Normal, "Started", &message).await;
                }
                let requeue = ttl_left.map_or(RECHECK, |left| left.min(RECHECK));
                let message = format!(
                    "tracing {} namespace(s) to {} exporter(s)",
                    setup.scope.namespaces.len(),
                    setup.exporters.len()
                );
                (
                    Phase::Active,
                    Readiness::ready(Reason::Active, message),
                    Some(started_at),
                    Some(requeue),
                )
            }
            Err(UpsertError::Stopped(stopped)) => return Err(stopped.into()),
            Err(exporter @ UpsertError::Exporter { .. }) => {
                let message = format!("spec.exporters: {exporter}");
                (
                    Phase::Failed,
                    Readiness::not_ready(Reason::InvalidExporter, message),
                    status.started_at.clone(),
                    Some(RETRY_INVALID),
                )
            }
        },
    };
    let decision = decision(ts, phase, ready, started_at, stopped_run);
    tell(ctx, Update::Decided(decision)).await;
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// What was decided about a session, for the status writer, which carries counts and traces
/// over from its previous verdict (or from the status found on the object).
fn decision(
    ts: &TraceSession,
    phase: Phase,
    ready: Readiness,
    started_at: Option<Time>,
    stopped_run: Option<SessionSnapshot>,
) -> Box<StatusDecision> {
    // Links only from a template the session's checks accept (an invalid session still has a
    // status, and its carried traces must not get a `javascript:` link).
    let trace_url_template = ts
        .spec
        .trace_url_template
        .clone()
        .filter(|t| session::check_trace_url_template(t).is_ok());
    let max_recent_traces = ts
        .spec
        .max_recent_traces
        .map_or(DEFAULT_RECENT_TRACES, |n| n as usize);
    Box::new(StatusDecision {
        key: key_of(ts),
        generation: ts.metadata.generation.unwrap_or(0),
        phase,
        ready,
        started_at,
        trace_url_template,
        max_recent_traces,
        found: ts.status.clone().unwrap_or_default(),
        stopped_run,
    })
}

/// Sends the status writer an update. It has stopped only when the operator is stopping, and
/// then no status is written any more: nothing is lost that would have been.
async fn tell(ctx: &Context, update: Update) {
    if ctx.status.send(update).await.is_err() {
        tracing::debug!("the status writer has stopped");
    }
}

/// Why a session cannot run as specified.
enum Refusal {
    /// Its spec names something wrong or missing: a condition says what.
    Invalid(Invalid),
    /// The API server could not answer now.
    Unavailable(kube::Error),
}

impl From<Invalid> for Refusal {
    fn from(invalid: Invalid) -> Self {
        Refusal::Invalid(invalid)
    }
}

enum Decision {
    Suspended,
    Completed,
    Run {
        // Boxed: the setup outweighs the other variants many times.
        setup: Box<SessionSetup>,
        started_at: Time,
        ttl_left: Option<Duration>,
    },
}

async fn decide(ts: &TraceSession, ctx: &Context) -> Result<Decision, Refusal> {
    let ns = ts.namespace().unwrap_or_default();
    let mut config: SessionConfig = session::validate(&ts.spec, &ns, &ctx.admin_namespaces)?;
    config.shape.cluster = ctx.cluster_name.clone();
    session::check_exporters(&config, &ctx.exporter_policy)?;
    if config.suspend {
        return Ok(Decision::Suspended);
    }
    limits::check_session(&config, &ctx.limits)?;
    let started_at = ts
        .status
        .as_ref()
        .and_then(|s| s.started_at.clone())
        .unwrap_or_else(|| Time(Jiff::now()));
    let mut ttl_left = None;
    if let Some(ttl) = config.ttl {
        let elapsed = Jiff::now().duration_since(started_at.0);
        let elapsed = Duration::try_from(elapsed).unwrap_or_default();
        if elapsed >= ttl {
            return Ok(Decision::Completed);
        }
        ttl_left = Some(ttl - elapsed);
    }
    // Until the reflector has listed every session, a ranking could admit one that an older,
    // not yet seen session outranks.
    if ctx.sessions.wait_until_ready().await.is_ok() {
        let now = Jiff::now();
        let all = ctx.sessions.state();
        limits::admitted(
            ts,
            all.iter().map(|t| &**t),
            |o| limits::wants_to_run(o, &ctx.admin_namespaces, &ctx.limits, now),
            &ctx.limits,
        )?;
    }
    let mut exporters = Vec::new();
    for (i, e) in config.exporters.iter().enumerate() {
        exporters.push(resolve_exporter(ctx, &ns, i, e, &config.shape).await?);
    }
    let mut root_kinds = Vec::new();
    for (i, (group, kind)) in config.scope.root_kinds.iter().enumerate() {
        let served = discovery_kind(ctx, group, kind)
            .await
            .map_err(Refusal::Unavailable)?
            .ok_or_else(|| Invalid {
                reason: "UnknownRootKind",
                field: format!("spec.rootKinds[{i}]"),
                message: format!("the cluster serves no kind {kind} in group {:?}", group),
            })?;
        root_kinds.push(served);
    }
    Ok(Decision::Run {
        setup: Box::new(SessionSetup {
            scope: config.scope,
            exporters,
            window: config.window,
            max_recent_traces: config.max_recent_traces,
            root_kinds,
            shape: config.shape,
            namespace_label: config.namespace_label,
        }),
        started_at,
        ttl_left,
    })
}

/// The (apiVersion, kind) the cluster serves for a group and kind, if any.
async fn discovery_kind(
    ctx: &Context,
    group: &str,
    kind: &str,
) -> Result<Option<(String, String)>, kube::Error> {
    let g = match kube::discovery::group(&ctx.client, group).await {
        Ok(g) => g,
        Err(kube::Error::Discovery(kube::error::DiscoveryError::MissingApiGroup(_))) => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    Ok(g.recommended_kind(kind)
        .map(|(resource, _)| (resource.api_version, resource.kind)))
}

async fn secret(ctx: &Context, ns: &str, name: &str, field: String) -> Result<Secret, Refusal> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    match api.get_opt(name).await {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(Refusal::Invalid(Invalid {
            reason: "SecretNotFound",
            field,
            message: format!("Secret {ns}/{name} does not exist"),
        })),
        // Not granted: the namespace's owner has to let the operator read it.
        Err(kube::Error::Api(status)) if status.code == 403 => Err(Refusal::Invalid(Invalid {
            reason: "SecretUnreadable",
            field,
            message: format!("Secret {ns}/{name}: {}", status.message),
        })),
        Err(e) => Err(Refusal::Unavailable(e)),
    }
}

async fn resolve_exporter(
    ctx: &Context,
    ns: &str,
    i: usize,
    e: &ExporterConfig,
    shape: &crate::otlp::SpanShape,
) -> Result<ExporterSpec, Refusal> {
    let mut headers = e.headers.clone();
    for (j, name) in e.header_secrets.iter().enumerate() {
        let field = format!("spec.exporters[{i}].otlp.headersFrom[{j}].secretRef.name");
        let s = secret(ctx, ns, name, field.clone()).await?;
        for (k, v) in s.data.unwrap_or_default() {
            let value = String::from_utf8(v.0).map_err(|_| {
                Invalid::spec(
                    field.clone(),
                    format!("key {k} of Secret {name} is not text"),
                )
            })?;
            if http::HeaderName::try_from(k.as_str()).is_err()
                || http::HeaderValue::try_from(value.as_str()).is_err()
            {
                return Err(Invalid::spec(
                    field,
                    format!("key {k} of Secret {name} is not a valid header"),
                )
                .into());
            }
            headers.push((k.to_ascii_lowercase(), value));
        }
    }
    let ca_pem = match &e.ca_secret {
        None => None,
        Some(r) => {
            let field = format!("spec.exporters[{i}].otlp.tls.caSecretRef");
            let s = secret(ctx, ns, &r.name, field.clone()).await?;
            let pem = s
                .data
                .unwrap_or_default()
                .remove(&r.key)
                .ok_or_else(|| Invalid {
                    reason: "SecretKeyNotFound",
                    field,
                    message: format!("Secret {ns}/{} has no key {}", r.name, r.key),
                })?;
            Some(pem.0)
        }
    };
    Ok(ExporterSpec {
        name: e.name.clone(),
        protocol: match e.protocol {
            crd::Protocol::Grpc => Protocol::Grpc,
            crd::Protocol::HttpProtobuf => Protocol::HttpProtobuf,
        },
        url: e.endpoint.url(),
        headers,
        ca_pem,
        insecure: e.insecure,
        gzip: e.compression == crd::Compression::Gzip,
        timeout: e.timeout,
        shape: shape.clone(),
        logs: e.logs,
    })
}

/// Session lifecycle events, published as the operator (never fed back into traces).
async fn publish(ctx: &Context, ts: &TraceSession, type_: EventType, reason: &str, note: &str) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &ts.object_ref(&())).await {
        tracing::debug!(%error, "could not publish an event");
    }
}

mod controller;
#[cfg(test)]
mod tests;

pub use controller::run_controller;

//! `eventspan run`: the operator process. Serves `/metrics`, `/healthz` and `/readyz`; campaigns
//! for a Lease; while it leads, runs the hub (engine, watches, exporters), the status writer and
//! the TraceSession controller; on SIGTERM or lost leadership, stops them: exporters drain, and
//! open traces are left to the successor (see `hub.rs` and `checkpoint.rs`).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::routing::get;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span};

use super::checkpoint;
use super::crd::TraceSession;
use super::engines::WINDOW_STEPS;
use super::hub::{Hub, HubCheckpoints, HubSettings};
use super::metrics::{self, Metrics};
use super::reconcile::{self, Context};
use super::snapshot::HubSnapshot;
use super::watches::OWN_CONTROLLER;
use crate::engine::EngineConfig;
use crate::export::ExporterSettings;
use crate::otlp::cluster_name::ClusterName;

/// How long a stopping leader waits for its last checkpoint write.
const CHECKPOINT_WRITE_GRACE: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The namespace the operator runs in (its Lease lives there).
    pub namespace: String,
    /// Namespaces whose sessions may trace other namespaces.
    pub admin_namespaces: BTreeSet<String>,
    pub listen: SocketAddr,
    pub leader_election: bool,
    pub lease_name: String,
    pub identity: String,
    pub engine: EngineConfig,
    /// Exporters' queues and retries, and the destination policy they connect under (the same
    /// one as `exporter_policy.destinations`).
    pub exporters: ExporterSettings,
    pub exporter_policy: super::session::ExporterPolicy,
    pub max_event_age: Duration,
    /// How often, at most, checkpoints are written; zero: never (and none are loaded).
    pub checkpoint_interval: Duration,
    /// `k8s.cluster.name` on every Resource every session exports.
    pub cluster_name: Option<ClusterName>,
    pub limits: super::limits::Limits,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("no usable cluster credentials: {0}")]
    Credentials(#[source] kube::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("leader election: {0}")]
    Lease(#[source] kube_lease_manager::LeaseManagerError),
}

/// Runs until `shutdown` is cancelled.
pub async fn run(options: RunOptions, shutdown: CancellationToken) -> Result<(), RunError> {
    let client = Client::try_default().await.map_err(RunError::Credentials)?;
    let (snapshot_tx, snapshot_rx) = watch::channel(Arc::new(HubSnapshot::default()));
    let metrics = Arc::new(Metrics::new(snapshot_rx));
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|source| RunError::Listen {
            addr: options.listen,
            source,
        })?;
    tracing::info!(addr = %listener.local_addr().map_or(options.listen, |a| a), "serving /metrics, /healthz, /readyz");
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .with_state(metrics.clone());
    let server_stop = shutdown.clone();
    let server = tokio::spawn(
        async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(server_stop.cancelled_owned())
                .await;
        }
        .instrument(info_span!("metrics_server")),
    );

    if !options.leader_election {
        metrics.set_leader(true);
        let never_deposed = CancellationToken::new();
        lead(
            client,
            &options,
            metrics,
            snapshot_tx,
            shutdown.clone(),
            never_deposed,
        )
        .await;
    } else {
        let lease =
            kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &options.lease_name)
                .with_namespace(&options.namespace)
                .with_identity(&options.identity)
                .with_duration(15)
                .with_grace(5)
                .build()
                .await
                .map_err(RunError::Lease)?;
        let (mut leading, lease_task) = lease.watch().await;
        tracing::info!(lease = %options.lease_name, identity = %options.identity, "campaigning for leadership");
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = leading.changed() => if changed.is_err() { break },
            }
            if !*leading.borrow_and_update() {
                continue;
            }
            tracing::info!("leading: starting sessions");
            metrics.set_leader(true);
            let term = shutdown.child_token();
            let watch_term = term.clone();
            // Only when the lease is lost (or its task ended: it may be lost): a deposed leader
            // writes no checkpoint, while one stopping on SIGTERM writes a last one before it
            // releases the lease.
            let deposed = CancellationToken::new();
            let lost_term = deposed.clone();
            let mut lost = leading.clone();
            let until_lost = tokio::spawn(
                async move {
                    while lost.changed().await.is_ok() {
                        if !*lost.borrow() {
                            tracing::warn!("leadership lost: stopping sessions");
                            break;
                        }
                    }
                    lost_term.cancel();
                    watch_term.cancel();
                }
                .instrument(info_span!("leadership")),
            );
            lead(
                client.clone(),
                &options,
                metrics.clone(),
                snapshot_tx.clone(),
                term,
                deposed,
            )
            .await;
            until_lost.abort();
            metrics.set_leader(false);
        }
        drop(leading);
        if let Ok(Ok(manager)) = lease_task.await {
            let _ = manager.release().await;
        }
    }
    shutdown.cancel();
    let _ = server.await;
    Ok(())
}

async fn render_metrics(
    State(metrics): State<Arc<Metrics>>,
) -> (StatusCode, [(header::HeaderName, &'static str); 1], String) {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics.encode(),
    )
}

/// Everything the leader runs, until `stop`.
async fn lead(
    client: Client,
    options: &RunOptions,
    metrics: Arc<Metrics>,
    snapshots_out: watch::Sender<Arc<HubSnapshot>>,
    stop: CancellationToken,
    deposed: CancellationToken,
) {
    let hub_stop = CancellationToken::new();
    // Before the hub exists: its engines resume from these before they take any input.
    let (checkpoints, checkpoint_writer) = if options.checkpoint_interval.is_zero() {
        (None, None)
    } else {
        let mut store =
            checkpoint::Store::new(client.clone(), &options.namespace, &options.identity)
                .with_lease(&options.lease_name);
        let windows: BTreeSet<Duration> = std::iter::once(options.engine.window)
            .chain(WINDOW_STEPS)
            .collect();
        let resume = store.load(windows, &metrics).await;
        let (out, snapshots) = watch::channel(None);
        let writer = tokio::spawn(
            checkpoint::write_loop(store, snapshots, deposed, metrics.clone())
                .instrument(info_span!("checkpoint_writer")),
        );
        let checkpoints = HubCheckpoints {
            interval: options.checkpoint_interval,
            resume,
            out,
        };
        (Some(checkpoints), Some(writer))
    };
    let settings = HubSettings {
        engine: options.engine.clone(),
        exporters: options.exporters.clone(),
        input_capacity: 4096,
        max_event_age: options.max_event_age,
        checkpoints,
        span_metrics: metrics.spans(),
    };
    let (hub, handle) = Hub::new(client.clone(), settings, hub_stop.clone());
    let hub_task = tokio::spawn(hub.run(hub_stop.clone()).instrument(info_span!("hub")));

    // The metrics endpoint reads the hub's snapshots through the process-wide channel, up to the
    // hub's last one (after its flush); then a replica that no longer leads shows no sessions.
    let mut snapshots = handle.snapshots.clone();
    let forward = tokio::spawn(
        async move {
            while snapshots.changed().await.is_ok() {
                snapshots_out.send_replace(snapshots.borrow_and_update().clone());
            }
            snapshots_out.send_replace(Arc::new(HubSnapshot::default()));
        }
        .instrument(info_span!("metrics_snapshots")),
    );

    let (status, updates) = super::status::channel();
    let status_stop = CancellationToken::new();
    let status_task = tokio::spawn(
        super::status::run(
            client.clone(),
            updates,
            handle.snapshots.clone(),
            status_stop.clone(),
        )
        .instrument(info_span!("status_writer")),
    );

    let reporter = Reporter {
        controller: OWN_CONTROLLER.into(),
        instance: Some(options.identity.clone()),
    };
    let api: Api<TraceSession> = Api::all(client.clone());
    let (reader, writer) = reflector::store();
    let context = Arc::new(Context {
        client: client.clone(),
        hub: handle,
        status,
        admin_namespaces: options.admin_namespaces.clone(),
        exporter_policy: options.exporter_policy.clone(),
        limits: options.limits.clone(),
        cluster_name: options.cluster_name.clone(),
        sessions: reader,
        recorder: Recorder::new(client.clone(), reporter),
        metrics,
    });
    reconcile::run_controller(api, writer, context, stop).await;

    // Stopping: the hub lets the exporters drain and hands a last checkpoint to the writer,
    // which ends once that is written (the hub dropped its sender); then the status writer's last
    // write, of everything that changed (the hub's last snapshot included).
    hub_stop.cancel();
    let _ = hub_task.await;
    if let Some(writer) = checkpoint_writer
        && tokio::time::timeout(CHECKPOINT_WRITE_GRACE, writer)
            .await
            .is_err()
    {
        tracing::warn!("the last checkpoint write did not finish in time");
    }
    status_stop.cancel();
    let _ = status_task.await;
    let _ = forward.await;
}

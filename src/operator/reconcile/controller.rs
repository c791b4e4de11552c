//! The controller loop over every TraceSession: kube-runtime's `Controller` fed by a reflector,
//! stopped by a token, and never waited on for longer than its reconciles need.

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use kube::Api;
use kube::runtime::reflector::store::Writer;
use kube::runtime::{Controller, Predicate, WatchStreamExt, predicates, reflector, watcher};
use tokio_util::sync::CancellationToken;

use super::{Context, error_policy, reconcile};
use crate::operator::crd::TraceSession;

/// How long the reconciles in flight at a stop may take to finish.
const RECONCILE_GRACE: Duration = Duration::from_secs(10);

/// Reconciles every session `api` lists into `writer`'s store (the context's `sessions`) until
/// `stop`; then lets the reconciles in flight finish, for at most [`RECONCILE_GRACE`].
pub async fn run_controller(
    api: Api<TraceSession>,
    writer: Writer<TraceSession>,
    context: Arc<Context>,
    stop: CancellationToken,
) {
    let sessions = context.sessions.clone();
    // Status writes change neither the generation nor the finalizers: they do not retrigger.
    let trigger = reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .applied_objects()
        .predicate_filter(
            predicates::generation.combine(predicates::finalizers),
            Default::default(),
        );
    let controller = Controller::for_stream(trigger, sessions.clone())
        .graceful_shutdown_on(stop.clone().cancelled_owned())
        .run(reconcile, error_policy, context)
        .for_each(|_| std::future::ready(()));
    tokio::select! {
        () = controller => {}
        () = give_up_after_stop(stop, sessions) => {}
    }
}

/// Resolves once `stop` is cancelled and the controller has had its grace. kube-runtime's
/// graceful shutdown holds every reconcile until the store is ready, and stops reading the
/// watch that would make it ready: a stop before the first list would wait forever (it hung
/// SIGTERM right after winning the lease). No reconcile ran before that, so none is given.
async fn give_up_after_stop(stop: CancellationToken, sessions: reflector::Store<TraceSession>) {
    stop.cancelled().await;
    if sessions.wait_until_ready().now_or_never().is_none() {
        tracing::debug!("stopped before the sessions were first listed: no reconcile to wait for");
        return;
    }
    tokio::time::sleep(RECONCILE_GRACE).await;
    tracing::warn!("the session reconciles did not finish in time: dropping them");
}

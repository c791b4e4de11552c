//! `eventspan watch TYPE/NAME`: one object's rollout as a trace tree, live, with the user's own
//! credentials and no operator; it ends when the rollout does, as `kubectl rollout status` does.
//!
//! The watches are `eventspan record`'s ([`crate::watch::manager`]: events of the namespace and,
//! through discovery, the objects they involve and their owners), each delivery decoded from the
//! line a recording would hold for it, so the view sees exactly what a recording of the same
//! minutes would hold. What it
//! shows is [`follow::preview`]: everything so far replayed through a fresh engine and flushed,
//! which gives the spans still open with the phases and outcomes the tree output shows.

pub mod follow;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use kube::api::{ApiResource, DynamicObject};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::{Api, Client, Config};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::engine::model::{Change, FinishedSpan, ObjectMeta, Observed};
use crate::watch::{Delivery, Scope, Settings, WatchManager, WatchType};
use crate::wire::WireObject;
use follow::{Ending, Follow, Inputs, Target, TooManyInputs, Verdict};

/// At most one frame every 250 ms: the tree looks live, and a preview (a replay of the whole
/// change) runs at most four times a second.
const FRAME: Duration = Duration::from_millis(250);
/// After the root ends, events the controllers and kubelets record as they finish (the last
/// old pods' `Killing`) are still on their way: they get this long to arrive.
const SETTLE: Duration = Duration::from_secs(2);
/// Inputs waiting for the view; the watches wait when the view is behind.
const PENDING_INPUTS: usize = 1024;
/// Home, then clear the screen: each frame repaints the whole tree. A rollout's tree is a few
/// dozen lines redrawn a few times a second, which two ANSI sequences do as well as a terminal
/// crate would.
pub const CLEAR: &str = "\x1b[H\x1b[2J";

pub struct Options {
    pub target: Target,
    /// Default: the kubeconfig context's namespace.
    pub namespace: Option<String>,
    /// `None`: wait for ever.
    pub timeout: Option<Duration>,
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("no usable cluster credentials: {0}")]
    Credentials(String),
    #[error("Error from server (NotFound): {resource} {name:?} not found")]
    NotFound { resource: String, name: String },
    #[error("cannot read {resource} {name:?}: {source}")]
    Read {
        resource: String,
        name: String,
        source: kube::Error,
    },
    #[error("cannot read {0}: not a {1} the engine understands")]
    Decode(String, &'static str),
    #[error("the watches stopped before the rollout ended")]
    WatchEnded,
    #[error(transparent)]
    TooBusy(#[from] TooManyInputs),
    #[error("cannot write: {0}")]
    Write(#[from] std::io::Error),
}

/// Follows the rollout until it ends, drawing frames on `out` when `tty`, and the final tree
/// (with no escape sequences) when not. The last line, kubectl's, is the caller's to print:
/// [`Ending::message`].
pub async fn watch(
    options: Options,
    out: &mut (dyn Write + Send),
    tty: bool,
    stop: CancellationToken,
) -> Result<Ending, LiveError> {
    let (client, default_namespace) = client(&options).await?;
    let namespace = options.namespace.clone().unwrap_or(default_namespace);
    let target = &options.target;
    let (first, meta) = read_target(&client, &namespace, target).await?;
    let mut follow = Follow::start(target, &meta);
    let mut inputs = Inputs::default();
    inputs.push(first, follow.trace().is_some())?;

    let (tx, mut rx) = mpsc::channel(PENDING_INPUTS);
    let watches = start_watches(client, &namespace, stop.clone(), tx);
    let title = format!("{}/{} in {namespace}", target.workload.noun(), target.name);
    let deadline = options.timeout.map(|t| Instant::now() + t);
    let mut tick = tokio::time::interval(FRAME);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut dirty, mut next_frame, mut settle) = (true, Instant::now(), None);
    let result = loop {
        tokio::select! {
            _ = stop.cancelled() => break Ok(Ending::Interrupted),
            _ = sleep_until(deadline) => break Ok(Ending::TimedOut),
            input = rx.recv() => {
                let Some(input) = input else { break Err(LiveError::WatchEnded) };
                if follow.observe(&input.change).is_err() {
                    break Ok(Ending::Deleted);
                }
                if let Err(e) = inputs.push(input, follow.trace().is_some()) {
                    break Err(e.into());
                }
                dirty = true;
            }
            _ = tick.tick() => {
                if let Some((at, ending)) = &settle && Instant::now() >= *at {
                    break Ok(Ending::clone(ending));
                }
                if !dirty || Instant::now() < next_frame {
                    continue;
                }
                dirty = false;
                let started = Instant::now();
                let spans = current(&follow, &inputs);
                // A busy namespace makes previews slow: they then take at most a fifth of the time.
                next_frame = started + FRAME.max(started.elapsed() * 5);
                settle = match follow::verdict(&spans) {
                    Verdict::InProgress => None,
                    Verdict::Done => settle.or(Some((Instant::now() + SETTLE, Ending::Done))),
                    Verdict::Failed { reason, message } => settle.or(Some((
                        Instant::now() + SETTLE,
                        Ending::Failed { reason, message },
                    ))),
                };
                if tty {
                    let frame = frame(&title, &follow, &spans, settle.is_some());
                    out.write_all(frame.as_bytes())?;
                    out.flush()?;
                }
            }
        }
    };
    // Watches blocked on a full channel see it closed and end.
    drop(rx);
    watches.stop().await;
    let ending = result?;
    // The final tree, from everything that came, with the verdict it gives.
    let spans = current(&follow, &inputs);
    let ending = match (&ending, follow::verdict(&spans)) {
        (Ending::Done | Ending::Failed { .. }, Verdict::Done) => Ending::Done,
        (Ending::Done | Ending::Failed { .. }, Verdict::Failed { reason, message }) => {
            Ending::Failed { reason, message }
        }
        _ => ending,
    };
    if tty {
        out.write_all(frame(&title, &follow, &spans, true).as_bytes())?;
    } else {
        out.write_all(crate::replay::tree::render(&spans).as_bytes())?;
    }
    out.flush()?;
    Ok(ending)
}

fn current(follow: &Follow, inputs: &Inputs) -> Vec<FinishedSpan> {
    follow
        .trace()
        .map(|trace| follow::preview(inputs, trace))
        .unwrap_or_default()
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One screen: what is followed and how far it is, then the tree.
fn frame(title: &str, follow: &Follow, spans: &[FinishedSpan], over: bool) -> String {
    let state = match (follow.generation(), over) {
        (None, _) => "waiting for its next change".to_string(),
        (Some(g), false) => format!("generation {g} rolling out"),
        (Some(g), true) => format!("generation {g} over"),
    };
    format!(
        "{CLEAR}{title}: {state}\n\n{}",
        crate::replay::tree::render(spans)
    )
}

/// A client from the kubeconfig (`--kubeconfig`, else `KUBECONFIG` or ~/.kube/config, or
/// in-cluster credentials), with its context's namespace.
async fn client(options: &Options) -> Result<(Client, String), LiveError> {
    let bad = |e: &dyn std::fmt::Display| LiveError::Credentials(e.to_string());
    let chosen = KubeConfigOptions {
        context: options.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match &options.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|e| bad(&e))?;
            Config::from_custom_kubeconfig(kubeconfig, &chosen)
                .await
                .map_err(|e| bad(&e))?
        }
        None if options.context.is_some() => Config::from_kubeconfig(&chosen)
            .await
            .map_err(|e| bad(&e))?,
        None => Config::infer().await.map_err(|e| bad(&e))?,
    };
    let namespace = config.default_namespace.clone();
    let client = Client::try_from(config).map_err(|e| bad(&e))?;
    Ok((client, namespace))
}

/// The followed object as it is now, as an input for the engine and as the engine reads it.
async fn read_target(
    client: &Client,
    namespace: &str,
    target: &Target,
) -> Result<(Observed, ObjectMeta), LiveError> {
    let gvk = GroupVersionKind::gvk("apps", "v1", target.workload.kind());
    let ar = ApiResource::from_gvk(&gvk);
    let resource = format!("{}.apps", ar.plural);
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ar);
    let object = match api.get_opt(&target.name).await {
        Ok(Some(object)) => object,
        Ok(None) => {
            return Err(LiveError::NotFound {
                resource,
                name: target.name.clone(),
            });
        }
        Err(source) => {
            return Err(LiveError::Read {
                resource,
                name: target.name.clone(),
                source,
            });
        }
    };
    let mut value = serde_json::to_value(&object).expect("objects serialise");
    value["apiVersion"] = "apps/v1".into();
    value["kind"] = target.workload.kind().into();
    // Read as the watches' deliveries are.
    let decoded = decode(Delivery::Object {
        watch_type: WatchType::Added,
        object: value,
        observed: crate::clock::now(),
    });
    match decoded {
        Some(
            observed @ Observed {
                change: Change::Upsert(_),
                ..
            },
        ) => {
            let Change::Upsert(meta) = &observed.change else {
                unreachable!("matched above")
            };
            let meta = (**meta).clone();
            Ok((observed, meta))
        }
        _ => Err(LiveError::Decode(resource, target.workload.kind())),
    }
}

/// The watches `record` runs, of the namespace, delivering each change as replay reads the
/// line `record` would write for it.
fn start_watches(
    client: Client,
    namespace: &str,
    stop: CancellationToken,
    inputs: mpsc::Sender<Observed>,
) -> WatchManager<Observed> {
    let watches = WatchManager::new(client, inputs, decode, Settings::default(), stop);
    watches.set_scopes(&[Scope::Namespace(namespace.to_string())].into());
    watches
}

/// What the engine cannot read is skipped, as replay skips it.
fn decode(delivery: Delivery) -> Option<Observed> {
    let line = delivery.into_line()?;
    let mut changes = Vec::new();
    match WireObject::deserialize(line) {
        Ok(wire) => wire.into_changes(&mut changes),
        Err(e) => tracing::debug!(reason = %e, "input skipped"),
    }
    // A watch event's line carries one change.
    match changes.pop()? {
        Ok(observed) => Some(observed),
        Err(e) => {
            tracing::debug!(reason = %e, "input skipped");
            None
        }
    }
}

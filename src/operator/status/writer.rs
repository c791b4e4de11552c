//! The status writer: the one owner of the sessions' verdicts. The reconciler sends it what it
//! decided over a bounded channel; every [`WRITE_INTERVAL`] it composes each session's status
//! from its verdict and the hub's latest snapshot, and writes those whose health changed (what
//! kstatus and GitOps tools read: generation, phase, conditions) or, at most every
//! [`PROGRESS_INTERVAL`], whose progress changed (counts and traces, which move with every span
//! under churn).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp as Jiff;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{CarriedTraces, Counts, Verdict, compose};
use crate::operator::conditions::Readiness;
use crate::operator::crd::{Phase, TraceSession, TraceSessionStatus};
use crate::operator::snapshot::{HubSnapshot, SessionKey, SessionSnapshot};

pub const FIELD_MANAGER: &str = "eventspan";
/// No session's status is written more often than this; a change of health waits at most this.
pub const WRITE_INTERVAL: Duration = Duration::from_secs(2);
/// A change of progress alone (counts, traces) is written at most this often per session: under
/// churn they change every tick, and a write every tick was 30 writes a minute per session
/// (issue 14). A user waits at most this long for a new trace ID in the status.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);
/// The status fields that tell progress rather than health.
const PROGRESS_FIELDS: [&str; 9] = [
    "eventsObserved",
    "spansExported",
    "spansDropped",
    "exportErrors",
    "logsExported",
    "logsDropped",
    "traces",
    "lastTraceId",
    "recentTraces",
];
/// How long the last write on shutdown may take.
const LAST_WRITE_GRACE: Duration = Duration::from_secs(5);
/// Decisions waiting for the writer; a reconciler that gets ahead of it waits.
const UPDATES: usize = 64;

/// Where the reconciler sends its decisions.
pub type StatusSender = mpsc::Sender<Update>;

/// The channel from the reconciler to the writer.
pub fn channel() -> (StatusSender, mpsc::Receiver<Update>) {
    mpsc::channel(UPDATES)
}

/// What the reconciler tells the status writer.
#[derive(Debug)]
pub enum Update {
    /// What the reconciler decided about a session's current generation.
    Decided(Box<Decision>),
    /// A session waits for the API server: said only while nothing was decided about it (one
    /// that ran carries on as it was).
    Waiting(Box<Decision>),
    /// The session is gone: its status is no longer written.
    Forget(SessionKey),
}

/// A decision about a session, with what the writer needs the first time it hears of it.
#[derive(Debug)]
pub struct Decision {
    pub key: SessionKey,
    pub generation: i64,
    pub phase: Phase,
    pub ready: Readiness,
    pub started_at: Option<Time>,
    pub trace_url_template: Option<String>,
    pub max_recent_traces: usize,
    /// The status found on the object: counts, traces and conditions carry on from it when the
    /// writer knows nothing of the session yet (the first reconcile of this process).
    pub found: TraceSessionStatus,
    /// What a run this decision stopped had done: its counts and traces carry over.
    pub stopped_run: Option<SessionSnapshot>,
}

/// A status to write, and what it is compared by next time.
#[derive(Debug)]
pub struct Write {
    pub key: SessionKey,
    pub status: TraceSessionStatus,
    comparable: Comparable,
}

/// A status as the writer compares it: its health and its progress apart, transition times left
/// out (they only move on change), and when it was composed.
#[derive(Debug)]
struct Comparable {
    health: Value,
    progress: Value,
    at_ms: i64,
}

impl Comparable {
    fn of(status: &TraceSessionStatus, now: &Time) -> Self {
        let mut s = status.clone();
        s.conditions
            .iter_mut()
            .for_each(|c| c.last_transition_time = Time(Jiff::UNIX_EPOCH));
        let mut health = serde_json::to_value(&s).expect("status serialises");
        let progress = PROGRESS_FIELDS
            .iter()
            .filter_map(|&field| {
                let value = health.as_object_mut()?.remove(field)?;
                Some((field.to_string(), value))
            })
            .collect();
        Self {
            health,
            progress: Value::Object(progress),
            at_ms: now.0.as_millisecond(),
        }
    }

    /// Whether `self`, composed now, is to be written after `last` was.
    fn due_after(&self, last: Option<&Self>, cadence: Cadence) -> bool {
        let Some(last) = last else { return true };
        if self.health != last.health {
            return true;
        }
        let progress_may_wait = match cadence {
            Cadence::Throttled => {
                self.at_ms.saturating_sub(last.at_ms) < PROGRESS_INTERVAL.as_millis() as i64
            }
            Cadence::Last => false,
        };
        self.progress != last.progress && !progress_may_wait
    }
}

/// Whether a change of progress alone waits for [`PROGRESS_INTERVAL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cadence {
    Throttled,
    /// The last write before the process stops: everything that changed.
    Last,
}

/// The writer's state: the verdicts and what was last written for each session.
#[derive(Debug, Default)]
pub struct Writer {
    verdicts: BTreeMap<SessionKey, Verdict>,
    written: BTreeMap<SessionKey, Comparable>,
}

impl Writer {
    pub fn verdict(&self, key: &SessionKey) -> Option<&Verdict> {
        self.verdicts.get(key)
    }

    pub fn sessions(&self) -> impl Iterator<Item = &SessionKey> {
        self.verdicts.keys()
    }

    /// Takes in a decision. Counts and traces carry over from the previous verdict (or, the
    /// first time, from the status found on the object), plus what a stopped run had done.
    pub fn apply(&mut self, update: Update) {
        let decision = match update {
            Update::Forget(key) => {
                self.verdicts.remove(&key);
                return;
            }
            Update::Waiting(d) if self.verdicts.contains_key(&d.key) => return,
            Update::Waiting(d) | Update::Decided(d) => *d,
        };
        let (mut baseline, mut carried, previous_conditions) =
            match self.verdicts.get(&decision.key) {
                Some(v) => (v.baseline, v.carried.clone(), v.previous_conditions.clone()),
                None => (
                    Counts::of(&decision.found),
                    CarriedTraces::of(&decision.found),
                    decision.found.conditions.clone(),
                ),
            };
        if let Some(run) = &decision.stopped_run {
            baseline.absorb(run);
            carried = carried.after_run(
                &run.log,
                decision.trace_url_template.as_deref(),
                decision.max_recent_traces,
            );
        }
        self.verdicts.insert(
            decision.key,
            Verdict {
                generation: decision.generation,
                phase: decision.phase,
                ready: decision.ready,
                started_at: decision.started_at,
                trace_url_template: decision.trace_url_template,
                baseline,
                carried,
                max_recent_traces: decision.max_recent_traces,
                previous_conditions,
            },
        );
    }

    /// The statuses to write now: those whose health differs from what was last written, and
    /// those whose progress does, if the last write was [`PROGRESS_INTERVAL`] ago (or this is
    /// the [`Cadence::Last`] write).
    pub fn due(&mut self, snapshot: &HubSnapshot, now: &Time, cadence: Cadence) -> Vec<Write> {
        let verdicts = &self.verdicts;
        self.written.retain(|k, _| verdicts.contains_key(k));
        let mut due = Vec::new();
        for (key, verdict) in &mut self.verdicts {
            let mut status = compose(verdict, snapshot.sessions.get(key), now);
            let comparable = Comparable::of(&status, now);
            if !comparable.due_after(self.written.get(key), cadence) {
                continue;
            }
            // Keep the transition times written now for conditions that do not change.
            verdict.previous_conditions.clone_from(&status.conditions);
            status.conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
            due.push(Write {
                key: key.clone(),
                status,
                comparable,
            });
        }
        due
    }

    /// `write` reached the API server.
    pub fn written(&mut self, write: Write) {
        self.written.insert(write.key, write.comparable);
    }

    /// The session's object is gone: nothing more is written for it.
    pub fn gone(&mut self, key: &SessionKey) {
        self.verdicts.remove(key);
    }
}

/// Writes statuses until `stop`, taking decisions from `updates` as they come.
pub async fn run(
    client: kube::Client,
    mut updates: mpsc::Receiver<Update>,
    mut snapshots: watch::Receiver<Arc<HubSnapshot>>,
    stop: CancellationToken,
) {
    let mut writer = Writer::default();
    let mut interval = tokio::time::interval(WRITE_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The reconciler's senders are dropped before the last write on shutdown.
    let mut open = true;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            update = updates.recv(), if open => {
                match update {
                    Some(update) => writer.apply(update),
                    None => open = false,
                }
                continue;
            }
            _ = interval.tick() => {}
        }
        write_due(&client, &mut writer, &mut snapshots, Cadence::Throttled).await;
    }
    // Stopping: the counts and traces of the last seconds are written too, if the API server
    // answers in time.
    let last = write_due(&client, &mut writer, &mut snapshots, Cadence::Last);
    if tokio::time::timeout(LAST_WRITE_GRACE, last).await.is_err() {
        tracing::warn!("the last status write did not finish in time");
    }
}

async fn write_due(
    client: &kube::Client,
    writer: &mut Writer,
    snapshots: &mut watch::Receiver<Arc<HubSnapshot>>,
    cadence: Cadence,
) {
    let snapshot = snapshots.borrow_and_update().clone();
    for write in writer.due(&snapshot, &Time(Jiff::now()), cadence) {
        let api: Api<TraceSession> = Api::namespaced(client.clone(), &write.key.namespace);
        let patch = json!({"apiVersion": "eventspan.dev/v1alpha1", "kind": "TraceSession", "status": write.status});
        match api
            .patch_status(
                &write.key.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
        {
            Ok(_) => writer.written(write),
            Err(kube::Error::Api(e)) if e.code == 404 => writer.gone(&write.key),
            Err(error) => {
                tracing::warn!(session = %write.key, %error, "status write failed; retrying")
            }
        }
    }
}

#[cfg(test)]
mod tests;

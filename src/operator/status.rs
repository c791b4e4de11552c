//! The status of each TraceSession: what the reconciler decided (its verdict) and what the hub
//! counted, written with server-side apply to the status subresource, at most every couple of
//! seconds per session and only when something changed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::crd::{Phase, RecentTrace, RootObject, TraceSession, TraceSessionStatus};
use super::hub::{HubSnapshot, SessionKey, SessionSnapshot};
use crate::engine::time::Timestamp;
use k8s_openapi::jiff::Timestamp as Jiff;

pub const FIELD_MANAGER: &str = "eventspan";
/// No session's status is written more often than this.
pub const WRITE_INTERVAL: Duration = Duration::from_secs(2);

/// What the reconciler decided about a session, for its status.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub generation: i64,
    pub phase: Phase,
    /// `Ready` condition: Ok(reason, message) when ready, Err(reason, message) when not.
    pub ready: Result<(String, String), (String, String)>,
    pub started_at: Option<Time>,
    pub trace_url_template: Option<String>,
    /// Counts from the status found at the first reconcile of this process: counters carry on
    /// across operator restarts.
    pub baseline: Counts,
    /// Conditions as last seen on the object: transition times survive restarts.
    pub previous_conditions: Vec<Condition>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub events_observed: i64,
    pub spans_exported: i64,
    pub spans_dropped: i64,
    pub export_errors: i64,
    pub traces: i64,
}

/// The CRD's integers are int64 (Kubernetes knows no unsigned format).
fn n(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

impl Counts {
    pub fn of(status: &TraceSessionStatus) -> Counts {
        Counts {
            events_observed: status.events_observed,
            spans_exported: status.spans_exported,
            spans_dropped: status.spans_dropped,
            export_errors: status.export_errors,
            traces: status.traces,
        }
    }
}

pub type Verdicts = Arc<Mutex<BTreeMap<SessionKey, Verdict>>>;

/// A condition, keeping the previous transition time when its status did not change.
fn condition(
    previous: &[Condition],
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    generation: i64,
    now: &Time,
) -> Condition {
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: Some(generation),
        last_transition_time,
    }
}

fn time(t: Timestamp) -> Time {
    Time(Jiff::from_nanosecond(i128::from(t.unix_nanos())).unwrap_or(Jiff::UNIX_EPOCH))
}

/// The whole status of a session from its verdict and the hub's counts.
pub fn compose(
    verdict: &Verdict,
    runtime: Option<&SessionSnapshot>,
    now: &Time,
) -> TraceSessionStatus {
    let g = verdict.generation;
    let prev = &verdict.previous_conditions;
    let ready = match &verdict.ready {
        Ok((reason, message)) => condition(prev, "Ready", "True", reason, message, g, now),
        Err((reason, message)) => condition(prev, "Ready", "False", reason, message, g, now),
    };
    let exporters = runtime.map(|r| r.exporters.as_slice()).unwrap_or_default();
    let healthy = if exporters.is_empty() {
        condition(
            prev,
            "ExportersHealthy",
            "Unknown",
            "NotExporting",
            "no exporter is running",
            g,
            now,
        )
    } else {
        let failing: Vec<String> = exporters
            .iter()
            .filter(|(_, s)| !s.healthy)
            .map(|(name, s)| format!("{name}: {}", s.last_error.as_deref().unwrap_or("failing")))
            .collect();
        if failing.is_empty() {
            condition(
                prev,
                "ExportersHealthy",
                "True",
                "Exporting",
                "every exporter delivers",
                g,
                now,
            )
        } else {
            condition(
                prev,
                "ExportersHealthy",
                "False",
                "ExportFailing",
                &failing.join("; "),
                g,
                now,
            )
        }
    };
    let base = verdict.baseline;
    let sum = |f: fn(&crate::export::ExporterStats) -> u64| {
        exporters.iter().map(|(_, s)| f(s)).sum::<u64>()
    };
    let log = runtime.map(|r| &r.log);
    let url = |trace_id: &str| {
        verdict
            .trace_url_template
            .as_ref()
            .map(|t| t.replace("{traceId}", trace_id))
    };
    TraceSessionStatus {
        observed_generation: Some(g),
        phase: Some(verdict.phase),
        conditions: vec![ready, healthy],
        started_at: verdict.started_at.clone(),
        watched_namespaces: runtime.map(|r| r.namespaces.clone()).unwrap_or_default(),
        events_observed: base.events_observed + n(runtime.map_or(0, |r| r.events_observed)),
        spans_exported: base.spans_exported + n(sum(|s| s.exported)),
        spans_dropped: base.spans_dropped + n(sum(|s| s.dropped)),
        export_errors: base.export_errors + n(sum(|s| s.errors)),
        traces: base.traces + n(log.map_or(0, |l| l.traces)),
        last_trace_id: log.and_then(|l| l.last_trace).map(|t| t.to_string()),
        recent_traces: log
            .map(|l| {
                l.recent
                    .iter()
                    .map(|r| {
                        let trace_id = r.trace_id.to_string();
                        RecentTrace {
                            url: url(&trace_id),
                            trace_id,
                            root: RootObject {
                                kind: r.kind.clone(),
                                namespace: r.namespace.clone(),
                                name: r.name.clone(),
                                uid: r.uid.clone(),
                                generation: r.generation,
                            },
                            start_time: time(r.start),
                            span_count: n(r.spans),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Writes statuses until `stop`.
pub async fn run(
    client: kube::Client,
    verdicts: Verdicts,
    mut snapshots: watch::Receiver<Arc<HubSnapshot>>,
    stop: CancellationToken,
) {
    let mut written: BTreeMap<SessionKey, serde_json::Value> = BTreeMap::new();
    let mut interval = tokio::time::interval(WRITE_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = interval.tick() => {}
        }
        let snapshot = snapshots.borrow_and_update().clone();
        let current: Vec<(SessionKey, Verdict)> = verdicts
            .lock()
            .expect("verdicts lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        written.retain(|k, _| current.iter().any(|(c, _)| c == k));
        let now = Time(Jiff::now());
        for (key, verdict) in current {
            let mut status = compose(&verdict, snapshot.sessions.get(&key), &now);
            // Transition times only move on change: compare without them.
            let comparable = {
                let mut s = status.clone();
                s.conditions
                    .iter_mut()
                    .for_each(|c| c.last_transition_time = Time(Jiff::UNIX_EPOCH));
                serde_json::to_value(&s).expect("status serialises")
            };
            if written.get(&key) == Some(&comparable) {
                continue;
            }
            // Keep the transition times written last time for unchanged conditions.
            if let Some(v) = verdicts.lock().expect("verdicts lock").get_mut(&key) {
                v.previous_conditions.clone_from(&status.conditions);
            }
            status.conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
            let api: Api<TraceSession> = Api::namespaced(client.clone(), &key.namespace);
            let patch = json!({"apiVersion": "eventspan.dev/v1alpha1", "kind": "TraceSession", "status": status});
            match api
                .patch_status(
                    &key.name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&patch),
                )
                .await
            {
                Ok(_) => {
                    written.insert(key, comparable);
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    verdicts.lock().expect("verdicts lock").remove(&key);
                }
                Err(error) => {
                    tracing::warn!(session = %key, %error, "status write failed; retrying")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict() -> Verdict {
        Verdict {
            generation: 3,
            phase: Phase::Active,
            ready: Ok(("Active".into(), "tracing shop".into())),
            started_at: None,
            trace_url_template: Some("http://jaeger/trace/{traceId}".into()),
            baseline: Counts {
                spans_exported: 100,
                ..Counts::default()
            },
            previous_conditions: vec![],
        }
    }

    #[test]
    fn conditions_keep_their_transition_time_until_they_change() {
        let t1 = Time(Jiff::from_second(1_000).unwrap());
        let t2 = Time(Jiff::from_second(2_000).unwrap());
        let mut v = verdict();
        let first = compose(&v, None, &t1);
        let ready = first
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(
            (ready.status.as_str(), &ready.last_transition_time),
            ("True", &t1)
        );
        v.previous_conditions = first.conditions.clone();
        let same = compose(&v, None, &t2);
        assert_eq!(
            same.conditions
                .iter()
                .find(|c| c.type_ == "Ready")
                .unwrap()
                .last_transition_time,
            t1
        );
        v.ready = Err(("InvalidSpec".into(), "spec.window: bad".into()));
        let changed = compose(&v, None, &t2);
        let ready = changed
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(
            (ready.status.as_str(), &ready.last_transition_time),
            ("False", &t2)
        );
        assert_eq!(ready.observed_generation, Some(3));
        assert_eq!(changed.observed_generation, Some(3));
    }

    #[test]
    fn counts_add_to_the_baseline_and_urls_fill_the_template() {
        let spans = crate::replay::replay(
            include_str!("../../tests/scenarios/job.jsonl"),
            Default::default(),
        )
        .spans;
        let mut log = super::super::traces::TraceLog::default();
        for s in &spans {
            log.record(s, 10);
        }
        let exported = crate::export::ExporterStats {
            exported: 7,
            healthy: true,
            ..Default::default()
        };
        let runtime = SessionSnapshot {
            events_observed: 9,
            log,
            exporters: vec![("jaeger".into(), exported)],
            namespaces: vec!["shop".into()],
        };
        let now = Time(Jiff::UNIX_EPOCH);
        let status = compose(&verdict(), Some(&runtime), &now);
        assert_eq!(
            (status.spans_exported, status.events_observed, status.traces),
            (107, 9, 1)
        );
        let recent = &status.recent_traces[0];
        assert_eq!(
            recent.url.as_deref(),
            Some(format!("http://jaeger/trace/{}", recent.trace_id).as_str())
        );
        assert_eq!(
            status.last_trace_id.as_deref(),
            Some(recent.trace_id.as_str())
        );
        let healthy = status
            .conditions
            .iter()
            .find(|c| c.type_ == "ExportersHealthy")
            .unwrap();
        assert_eq!(healthy.status, "True");
    }
}

//! The status of each TraceSession: what the reconciler decided (its verdict) and what the hub
//! counted, composed here and written by the status writer ([`writer`]), the one owner of the
//! verdicts, only when something changed: a change of health within a couple of seconds, of
//! counts and traces alone at most every ten.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::conditions::Readiness;
use super::crd::{Phase, RecentTrace, RootObject, TraceSessionStatus};
use super::snapshot::SessionSnapshot;
use super::traces::TraceLog;
use crate::engine::time::Timestamp;
use k8s_openapi::jiff::Timestamp as Jiff;

mod writer;

pub use writer::{Decision, FIELD_MANAGER, StatusSender, Update, Write, Writer, channel, run};

/// What the reconciler decided about a session, for its status.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub generation: i64,
    pub phase: Phase,
    /// What the `Ready` condition says as far as the spec goes (the run may still hold it back).
    pub ready: Readiness,
    pub started_at: Option<Time>,
    pub trace_url_template: Option<String>,
    /// Counts from the status found at the first reconcile of this process, plus what the
    /// session did each time it stopped (suspended, completed, failed): counters carry on across
    /// operator restarts and never go backwards.
    pub baseline: Counts,
    /// Traces from before the session's current run (the status found at the first reconcile,
    /// or the run that stopped), listed after the current run's.
    pub carried: CarriedTraces,
    pub max_recent_traces: usize,
    /// Conditions as last seen on the object: transition times survive restarts.
    pub previous_conditions: Vec<Condition>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct CarriedTraces {
    pub last_trace_id: Option<String>,
    /// Newest first.
    pub recent: Vec<RecentTrace>,
}

impl CarriedTraces {
    pub fn of(status: &TraceSessionStatus) -> CarriedTraces {
        CarriedTraces {
            last_trace_id: status.last_trace_id.clone(),
            recent: status.recent_traces.clone(),
        }
    }

    /// What a stopped run leaves: its traces, then those carried before it.
    pub fn after_run(&self, run: &TraceLog, url_template: Option<&str>, max: usize) -> Self {
        CarriedTraces {
            last_trace_id: run
                .last_trace
                .map(|t| t.to_string())
                .or_else(|| self.last_trace_id.clone()),
            recent: self.merged(recent_traces(run, url_template), max),
        }
    }

    /// `newer`, then the carried traces it does not list, at most `max`.
    fn merged(&self, mut newer: Vec<RecentTrace>, max: usize) -> Vec<RecentTrace> {
        for old in &self.recent {
            if newer.len() >= max {
                break;
            }
            if newer.iter().all(|t| t.trace_id != old.trace_id) {
                newer.push(old.clone());
            }
        }
        newer.truncate(max);
        newer
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub events_observed: i64,
    pub spans_exported: i64,
    pub spans_dropped: i64,
    pub export_errors: i64,
    pub traces: i64,
    pub logs_exported: i64,
    pub logs_dropped: i64,
}

/// The CRD's integers are int64 (Kubernetes knows no unsigned format).
fn n(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

impl Counts {
    /// Adds what a run of the session did.
    pub fn absorb(&mut self, run: &SessionSnapshot) {
        let mut total = crate::export::ExporterStats::default();
        for s in run.exporters.iter().map(|(_, s)| s).chain([&run.retired]) {
            total.absorb(s);
        }
        self.events_observed += n(run.events_observed);
        self.spans_exported += n(total.exported);
        self.spans_dropped += n(total.dropped);
        self.export_errors += n(total.errors);
        self.traces += n(run.log.traces);
        self.logs_exported += n(total.logs_exported);
        self.logs_dropped += n(total.logs_dropped);
    }

    pub fn of(status: &TraceSessionStatus) -> Counts {
        Counts {
            events_observed: status.events_observed,
            spans_exported: status.spans_exported,
            spans_dropped: status.spans_dropped,
            export_errors: status.export_errors,
            traces: status.traces,
            logs_exported: status.logs_exported,
            logs_dropped: status.logs_dropped,
        }
    }
}

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
    let conditions = super::conditions::decide(verdict.phase, &verdict.ready, runtime)
        .into_iter()
        .map(|c| condition(prev, c.type_, c.status, &c.reason, &c.message, g, now))
        .collect();
    let mut counts = verdict.baseline;
    if let Some(run) = runtime {
        counts.absorb(run);
    }
    let recent = runtime.map_or_else(Vec::new, |r| {
        recent_traces(&r.log, verdict.trace_url_template.as_deref())
    });
    TraceSessionStatus {
        observed_generation: Some(g),
        phase: Some(verdict.phase),
        conditions,
        started_at: verdict.started_at.clone(),
        watched_namespaces: runtime.map(|r| r.namespaces.clone()).unwrap_or_default(),
        events_observed: counts.events_observed,
        spans_exported: counts.spans_exported,
        spans_dropped: counts.spans_dropped,
        export_errors: counts.export_errors,
        traces: counts.traces,
        logs_exported: counts.logs_exported,
        logs_dropped: counts.logs_dropped,
        last_trace_id: runtime
            .and_then(|r| r.log.last_trace)
            .map(|t| t.to_string())
            .or_else(|| verdict.carried.last_trace_id.clone()),
        recent_traces: verdict.carried.merged(recent, verdict.max_recent_traces),
    }
}

/// A run's recent traces as the status lists them, newest first.
fn recent_traces(log: &TraceLog, url_template: Option<&str>) -> Vec<RecentTrace> {
    log.recent
        .iter()
        .map(|r| {
            let trace_id = r.trace_id.to_string();
            RecentTrace {
                url: url_template.map(|t| t.replace("{traceId}", &trace_id)),
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::conditions::Reason;

    /// What a session that saw every span of a recording has logged.
    fn log_of(recording: &str) -> TraceLog {
        let mut log = TraceLog::default();
        for s in &crate::replay::replay(recording, Default::default()).spans {
            log.record(s, 10, &Default::default());
        }
        log
    }

    fn verdict() -> Verdict {
        Verdict {
            generation: 3,
            phase: Phase::Active,
            ready: Readiness::ready(Reason::Active, "tracing shop"),
            started_at: None,
            trace_url_template: Some("http://jaeger/trace/{traceId}".into()),
            baseline: Counts {
                spans_exported: 100,
                ..Counts::default()
            },
            carried: CarriedTraces::default(),
            max_recent_traces: 10,
            previous_conditions: vec![],
        }
    }

    #[test]
    fn conditions_keep_their_transition_time_until_they_change() {
        let t1 = Time(Jiff::from_second(1_000).unwrap());
        let t2 = Time(Jiff::from_second(2_000).unwrap());
        let mut v = verdict();
        // Running, listed, its exporter delivering: ready.
        let running = SessionSnapshot {
            exporters: vec![(
                "jaeger".into(),
                crate::export::ExporterStats {
                    healthy: true,
                    ..Default::default()
                },
            )],
            ..Default::default()
        };
        let first = compose(&v, Some(&running), &t1);
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
        let same = compose(&v, Some(&running), &t2);
        assert_eq!(
            same.conditions
                .iter()
                .find(|c| c.type_ == "Ready")
                .unwrap()
                .last_transition_time,
            t1
        );
        v.ready = Readiness::not_ready(Reason::Invalid("InvalidSpec"), "spec.window: bad");
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
        let log = log_of(include_str!("../../../tests/scenarios/job.jsonl"));
        let exported = crate::export::ExporterStats {
            exported: 7,
            healthy: true,
            logs_exported: 6,
            logs_dropped: 1,
            ..Default::default()
        };
        let runtime = SessionSnapshot {
            events_observed: 9,
            log,
            exporters: vec![("jaeger".into(), exported)],
            retired: crate::export::ExporterStats {
                exported: 3,
                logs_exported: 4,
                ..Default::default()
            },
            namespaces: vec!["shop".into()],
            watches: Default::default(),
        };
        let now = Time(Jiff::UNIX_EPOCH);
        let status = compose(&verdict(), Some(&runtime), &now);
        assert_eq!(
            (status.spans_exported, status.events_observed, status.traces),
            (110, 9, 1)
        );
        assert_eq!(
            (status.logs_exported, status.logs_dropped),
            (10, 1),
            "log records of live and retired exporters"
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

    #[test]
    fn a_refused_destination_names_the_exporter_and_its_field() {
        let failing = |last_error: &str, not_permitted| crate::export::ExporterStats {
            healthy: false,
            not_permitted,
            last_error: Some(last_error.into()),
            ..Default::default()
        };
        let runtime = SessionSnapshot {
            exporters: vec![
                (
                    "tempo".into(),
                    crate::export::ExporterStats {
                        healthy: true,
                        ..Default::default()
                    },
                ),
                ("jaeger".into(), failing("destination not permitted", true)),
                ("backup".into(), failing("connection refused", false)),
            ],
            ..Default::default()
        };
        let status = compose(&verdict(), Some(&runtime), &Time(Jiff::UNIX_EPOCH));
        let healthy = status
            .conditions
            .iter()
            .find(|c| c.type_ == "ExportersHealthy")
            .unwrap();
        assert_eq!(
            (healthy.status.as_str(), healthy.reason.as_str()),
            ("False", "DestinationNotPermitted")
        );
        assert_eq!(
            healthy.message,
            "exporter jaeger (spec.exporters[1].otlp.endpoint): destination not permitted; backup: connection refused"
        );
    }

    #[test]
    fn a_stopped_run_carries_its_counts_and_traces_over() {
        let log = log_of(include_str!(
            "../../../tests/scenarios/deployment-rollout.jsonl"
        ));
        let run = SessionSnapshot {
            events_observed: 5,
            log,
            exporters: vec![(
                "jaeger".into(),
                crate::export::ExporterStats {
                    exported: 20,
                    dropped: 1,
                    ..Default::default()
                },
            )],
            retired: crate::export::ExporterStats {
                exported: 2,
                errors: 4,
                ..Default::default()
            },
            namespaces: vec!["shop".into()],
            watches: Default::default(),
        };
        let mut v = verdict();
        let older = RecentTrace {
            trace_id: "0123".into(),
            root: RootObject {
                kind: "Job".into(),
                namespace: "shop".into(),
                name: "old".into(),
                uid: "u".into(),
                generation: 1,
            },
            start_time: Time(Jiff::UNIX_EPOCH),
            span_count: 3,
            url: None,
        };
        v.carried = CarriedTraces {
            last_trace_id: Some("0123".into()),
            recent: vec![older.clone()],
        };
        // Running: the run's counts on top of the baseline, its traces before the carried one.
        let now = Time(Jiff::UNIX_EPOCH);
        let running = compose(&v, Some(&run), &now);
        assert_eq!(running.spans_exported, 122);
        assert_eq!(running.recent_traces.len(), 3);
        assert_eq!(running.recent_traces[2], older);
        // Stopped (suspended): nothing goes backwards, nothing is forgotten.
        v.baseline.absorb(&run);
        v.carried = v
            .carried
            .after_run(&run.log, v.trace_url_template.as_deref(), 2);
        v.max_recent_traces = 2;
        let stopped = compose(&v, None, &now);
        assert_eq!(
            (
                stopped.spans_exported,
                stopped.spans_dropped,
                stopped.export_errors,
                stopped.events_observed,
                stopped.traces
            ),
            (122, 1, 4, 5, 2)
        );
        assert_eq!(stopped.recent_traces, running.recent_traces[..2]);
        assert_eq!(stopped.last_trace_id, running.last_trace_id);
        assert!(stopped.watched_namespaces.is_empty());
    }
}

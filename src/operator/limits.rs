//! Operator-wide limits on what sessions may ask for: how long a window, how many exporters, how
//! many sessions per namespace. A session over a limit is not started; its `Ready` condition
//! (reason `LimitExceeded`) names the flag and its value.
//!
//! Pure: decided from the sessions' objects alone, so the reconciler can rank a namespace's
//! sessions the same way every time, whichever it reconciles first.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::crd::TraceSession;
use super::session::{self, Invalid, SessionConfig};

pub const REASON: &str = "LimitExceeded";
/// The schema's bound on `spec.window` (a CEL rule); `--max-session-window` may only lower it.
pub const SCHEMA_MAX_WINDOW: Duration = Duration::from_secs(60);
/// The schema's bound on `spec.exporters`; `--max-exporters-per-session` may only lower it.
pub const SCHEMA_MAX_EXPORTERS: usize = 8;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `--max-session-window`.
    pub max_window: Duration,
    /// `--max-exporters-per-session`.
    pub max_exporters: usize,
    /// `--max-sessions-per-namespace`.
    pub max_sessions_per_namespace: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_window: SCHEMA_MAX_WINDOW,
            max_exporters: 4,
            max_sessions_per_namespace: 10,
        }
    }
}

fn exceeded(field: &str, message: String) -> Invalid {
    Invalid {
        reason: REASON,
        field: field.into(),
        message,
    }
}

/// The limits one session's spec is held to on its own: its window and its exporter count.
pub fn check_session(config: &SessionConfig, limits: &Limits) -> Result<(), Invalid> {
    if let Some(window) = config.window
        && window > limits.max_window
    {
        return Err(exceeded(
            "spec.window",
            format!(
                "{window:?} is longer than the operator allows (--max-session-window={:?})",
                limits.max_window
            ),
        ));
    }
    if config.exporters.len() > limits.max_exporters {
        return Err(exceeded(
            "spec.exporters",
            format!(
                "{} exporters are more than the operator allows (--max-exporters-per-session={})",
                config.exporters.len(),
                limits.max_exporters
            ),
        ));
    }
    Ok(())
}

/// Whether a session would run if no namespace limit stood in its way: not being deleted, not
/// suspended, valid, within the per-session limits, its ttl not passed. Only such sessions
/// compete for a namespace's places, so a broken or finished one never keeps a good one out.
/// Checks that need the cluster (Secrets, served kinds) are left out: they would make the
/// ranking depend on API calls.
pub fn wants_to_run(
    ts: &TraceSession,
    admin: &BTreeSet<String>,
    limits: &Limits,
    now: Timestamp,
) -> bool {
    if ts.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let ns = ts.namespace().unwrap_or_default();
    let Ok(config) = session::validate(&ts.spec, &ns, admin) else {
        return false;
    };
    if config.suspend || check_session(&config, limits).is_err() {
        return false;
    }
    let started = ts.status.as_ref().and_then(|s| s.started_at.as_ref());
    match (config.ttl, started) {
        (Some(ttl), Some(started)) => {
            Duration::try_from(now.duration_since(started.0)).is_ok_and(|elapsed| elapsed < ttl)
        }
        _ => true,
    }
}

/// The order in which a namespace's sessions get its places: oldest first, then by name (the
/// API server sets creationTimestamp once, so a new session never outranks a running one).
fn rank_key(ts: &TraceSession) -> (bool, Option<Timestamp>, String) {
    let created = ts.metadata.creation_timestamp.as_ref().map(|t| t.0);
    (created.is_none(), created, ts.name_any())
}

/// Whether `ts` gets one of its namespace's `--max-sessions-per-namespace` places, among
/// `sessions` (any namespaces; `ts` itself may be among them). `competing` says which sessions
/// compete (see [`wants_to_run`]).
pub fn admitted<'a>(
    ts: &TraceSession,
    sessions: impl IntoIterator<Item = &'a TraceSession>,
    competing: impl Fn(&TraceSession) -> bool,
    limits: &Limits,
) -> Result<(), Invalid> {
    let ns = ts.namespace();
    let name = ts.name_any();
    let mine = rank_key(ts);
    let ahead = sessions
        .into_iter()
        .filter(|o| o.namespace() == ns && o.name_any() != name)
        .filter(|o| rank_key(o) < mine && competing(o))
        .count();
    if ahead >= limits.max_sessions_per_namespace {
        return Err(exceeded(
            "metadata.namespace",
            format!(
                "{ahead} older sessions in namespace {} already take every place the operator allows (--max-sessions-per-namespace={})",
                ns.unwrap_or_default(),
                limits.max_sessions_per_namespace
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::crd::{
        Compression, Exporter, OtlpExporter, Protocol, TraceSessionSpec, TraceSessionStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn exporter(name: &str) -> Exporter {
        Exporter {
            name: name.into(),
            otlp: OtlpExporter {
                endpoint: "http://jaeger:4317".into(),
                protocol: Protocol::Grpc,
                headers: Default::default(),
                headers_from: vec![],
                tls: None,
                compression: Compression::Gzip,
                timeout: None,
                logs: false,
            },
        }
    }

    fn session(ns: &str, name: &str, created_secs: i64) -> TraceSession {
        let mut ts = TraceSession::new(
            name,
            TraceSessionSpec {
                exporters: vec![exporter("jaeger")],
                ..Default::default()
            },
        );
        ts.metadata.namespace = Some(ns.into());
        ts.metadata.creation_timestamp = Some(Time(
            Timestamp::from_second(1_800_000_000 + created_secs).unwrap(),
        ));
        ts
    }

    fn admin() -> BTreeSet<String> {
        ["eventspan-system".to_string()].into()
    }

    fn config(spec: TraceSessionSpec) -> SessionConfig {
        session::validate(&spec, "shop", &admin()).unwrap()
    }

    #[test]
    fn window_limit_names_the_field_and_the_flag() {
        let limits = Limits::default();
        let mut s = session("shop", "a", 0).spec;
        s.window = Some("60s".into());
        assert_eq!(check_session(&config(s.clone()), &limits), Ok(()));
        s.window = Some("2562047h".into());
        let e = check_session(&config(s.clone()), &limits).unwrap_err();
        assert_eq!((e.reason, e.field.as_str()), (REASON, "spec.window"));
        assert!(
            e.message.contains("--max-session-window=60s"),
            "{}",
            e.message
        );
        let tighter = Limits {
            max_window: Duration::from_secs(10),
            ..limits
        };
        s.window = Some("11s".into());
        let e = check_session(&config(s), &tighter).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("spec.window: 11s is longer than the operator allows"),
            "{e}"
        );
    }

    #[test]
    fn exporter_limit_names_the_flag() {
        let limits = Limits::default();
        let mut s = session("shop", "a", 0).spec;
        s.exporters = (0..4).map(|i| exporter(&format!("e{i}"))).collect();
        assert_eq!(check_session(&config(s.clone()), &limits), Ok(()));
        s.exporters.push(exporter("e4"));
        let e = check_session(&config(s), &limits).unwrap_err();
        assert_eq!((e.reason, e.field.as_str()), (REASON, "spec.exporters"));
        assert!(
            e.message.contains(
                "5 exporters are more than the operator allows (--max-exporters-per-session=4)"
            ),
            "{}",
            e.message
        );
    }

    #[test]
    fn the_oldest_sessions_of_a_namespace_win() {
        let limits = Limits {
            max_sessions_per_namespace: 2,
            ..Limits::default()
        };
        // Listed out of order; "b" and "a" share a creation second: the name decides.
        let all = vec![
            session("shop", "young", 30),
            session("shop", "b", 10),
            session("other", "elsewhere", 0),
            session("shop", "a", 10),
            session("shop", "old", 5),
        ];
        let verdict = |name: &str| {
            let ts = all.iter().find(|t| t.name_any() == name).unwrap();
            admitted(ts, &all, |_| true, &limits)
        };
        assert_eq!(verdict("old"), Ok(()));
        assert_eq!(verdict("a"), Ok(()));
        let e = verdict("b").unwrap_err();
        assert_eq!((e.reason, e.field.as_str()), (REASON, "metadata.namespace"));
        assert!(
            e.message.contains("--max-sessions-per-namespace=2"),
            "{}",
            e.message
        );
        assert!(verdict("young").is_err(), "a new session evicts no one");
        assert_eq!(verdict("elsewhere"), Ok(()), "other namespaces count apart");
        // A session that does not compete (suspended, broken, done) frees its place.
        let not_old = |t: &TraceSession| t.name_any() != "old";
        let b = all.iter().find(|t| t.name_any() == "b").unwrap();
        assert_eq!(admitted(b, &all, not_old, &limits), Ok(()));
    }

    #[test]
    fn only_sessions_that_would_run_compete() {
        let (limits, now) = (
            Limits::default(),
            Timestamp::from_second(1_900_000_000).unwrap(),
        );
        let wants = |ts: &TraceSession| wants_to_run(ts, &admin(), &limits, now);
        let ts = session("shop", "a", 0);
        assert!(wants(&ts));

        let mut suspended = ts.clone();
        suspended.spec.suspend = Some(true);
        assert!(!wants(&suspended));

        let mut invalid = ts.clone();
        invalid.spec.namespaces = vec!["payments".into()];
        assert!(!wants(&invalid), "NamespaceNotPermitted");

        let mut too_long = ts.clone();
        too_long.spec.window = Some("61s".into());
        assert!(!wants(&too_long));

        let mut deleting = ts.clone();
        deleting.metadata.deletion_timestamp = ts.metadata.creation_timestamp.clone();
        assert!(!wants(&deleting));

        let mut expired = ts.clone();
        expired.spec.ttl = Some("1h".into());
        expired.status = Some(TraceSessionStatus {
            started_at: Some(Time(
                now - k8s_openapi::jiff::SignedDuration::from_secs(7200),
            )),
            ..Default::default()
        });
        assert!(!wants(&expired));
        expired.spec.ttl = Some("3h".into());
        assert!(wants(&expired), "ttl not passed yet");
    }
}

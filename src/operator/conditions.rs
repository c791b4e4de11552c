//! The conditions of a session's status, decided from what the reconciler concluded (phase and
//! verdict) and what its run reports (exporters, watches). Pure: the status writer adds the
//! transition times.
//!
//! They follow kstatus (`sigs.k8s.io/cli-utils`, what Flux, kpt and Config Sync wait with):
//! besides `Ready`, the abnormal-true conditions `Reconciling` (being brought up: waiting for the
//! API server, or for the session's Event watches to list) and `Stalled` (the spec cannot work as
//! it is: someone has to change it or grant something), never both `True`. `Ready` is `True`
//! exactly when kstatus computes `Current`, so `kubectl wait --for=condition=Ready`, the `Ready`
//! printer column and a GitOps tool's health all say the same.

use super::crd::Phase;
use super::snapshot::SessionSnapshot;
use crate::watch::{Refusal, Scope};

/// A condition before its transition time and generation are known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decided {
    pub type_: &'static str,
    /// `True`, `False` or `Unknown`.
    pub status: &'static str,
    pub reason: String,
    pub message: String,
}

fn decided(type_: &'static str, status: &'static str, reason: &str, message: &str) -> Decided {
    Decided {
        type_,
        status,
        reason: reason.into(),
        message: message.into(),
    }
}

/// What the reconciler concluded about a session: whether it is ready as far as its spec goes,
/// and the `Ready` condition's reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    pub reason: Reason,
    pub message: String,
}

impl Readiness {
    pub fn ready(reason: Reason, message: impl Into<String>) -> Self {
        Readiness {
            ready: true,
            reason,
            message: message.into(),
        }
    }

    pub fn not_ready(reason: Reason, message: impl Into<String>) -> Self {
        Readiness {
            ready: false,
            reason,
            message: message.into(),
        }
    }
}

/// The reasons the reconciler gives; they are the conditions' `reason` strings users and
/// dashboards match on, so their spelling is fixed here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Active,
    Suspended,
    Completed,
    /// Waiting for the API server.
    Pending,
    /// An exporter could not be started from the spec.
    InvalidExporter,
    /// The spec names something wrong or missing (the reason of a `session::Invalid`).
    Invalid(&'static str),
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Active => "Active",
            Reason::Suspended => "Suspended",
            Reason::Completed => "Completed",
            Reason::Pending => "Pending",
            Reason::InvalidExporter => "InvalidExporter",
            Reason::Invalid(reason) => reason,
        }
    }
}

/// What the session's status says about it overall: which of `Ready`, `Reconciling`, `Stalled`
/// holds, with the reason and message of the one that does.
enum Overall {
    Ready(String, String),
    Reconciling(String, String),
    Stalled(String, String),
    /// Running, nothing to fix in the spec, yet not delivering (every exporter fails): the
    /// operator keeps trying and it recovers by itself, so it is not `Stalled`.
    NotReady(String, String),
}

/// `Ready`, `Reconciling`, `Stalled`, `ExportersHealthy` and `WatchesHealthy`, in that order.
pub fn decide(
    phase: Phase,
    verdict: &Readiness,
    runtime: Option<&SessionSnapshot>,
) -> Vec<Decided> {
    let exporters = exporters_healthy(runtime);
    let watches = if phase == Phase::Active {
        watches_healthy(runtime)
    } else {
        decided(
            "WatchesHealthy",
            "Unknown",
            "NotWatching",
            "no watch is running",
        )
    };
    let (reason, message) = (verdict.reason.as_str().to_string(), verdict.message.clone());
    let overall = match (phase, verdict.ready) {
        // Waiting for the API server (a discovery or Secret read failed for a passing reason).
        (Phase::Pending, _) => Overall::Reconciling(reason, message),
        // The spec names something wrong or missing; it is checked again, but only a change
        // (of the spec, a Secret, a grant) makes it work.
        (Phase::Failed, _) | (_, false) => Overall::Stalled(reason, message),
        (Phase::Active, true) => {
            active(runtime, &exporters, &watches).unwrap_or(Overall::Ready(reason, message))
        }
        (Phase::Suspended | Phase::Completed, true) => Overall::Ready(reason, message),
    };
    let (ready, reconciling, stalled) = match overall {
        Overall::Ready(reason, message) => (
            decided("Ready", "True", &reason, &message),
            not_reconciling(),
            not_stalled(),
        ),
        Overall::Reconciling(reason, message) => (
            decided("Ready", "False", &reason, &message),
            decided("Reconciling", "True", &reason, &message),
            not_stalled(),
        ),
        Overall::Stalled(reason, message) => (
            decided("Ready", "False", &reason, &message),
            not_reconciling(),
            decided("Stalled", "True", &reason, &message),
        ),
        Overall::NotReady(reason, message) => (
            decided("Ready", "False", &reason, &message),
            not_reconciling(),
            not_stalled(),
        ),
    };
    vec![ready, reconciling, stalled, exporters, watches]
}

fn not_reconciling() -> Decided {
    decided(
        "Reconciling",
        "False",
        "Reconciled",
        "the spec's generation is in place",
    )
}

fn not_stalled() -> Decided {
    decided(
        "Stalled",
        "False",
        "NotStalled",
        "nothing stops the session",
    )
}

/// What keeps a running session from being ready, if anything.
fn active(
    runtime: Option<&SessionSnapshot>,
    exporters: &Decided,
    watches: &Decided,
) -> Option<Overall> {
    let Some(run) = runtime else {
        // The hub has not published the session yet.
        return Some(Overall::Reconciling(
            "Starting".into(),
            "the session's watches are starting".into(),
        ));
    };
    // Without its Event watch a namespace traces nothing, and the refusal has lasted five
    // minutes (see `watch::retry`): no API server starting up, a missing grant.
    let events: Vec<&Refusal> = run
        .watches
        .refused
        .iter()
        .filter(|r| r.resource == events_resource())
        .collect();
    if !events.is_empty() {
        return Some(Overall::Stalled(
            refusal_reason(events[0].code).into(),
            refusal_messages(events.into_iter()),
        ));
    }
    if !run.watches.listing.is_empty() {
        return Some(Overall::Reconciling(
            "Starting".into(),
            watches.message.clone(),
        ));
    }
    let all_failing = !run.exporters.is_empty() && run.exporters.iter().all(|(_, s)| !s.healthy);
    all_failing.then(|| {
        Overall::NotReady(
            exporters.reason.clone(),
            format!("no exporter delivers: {}", exporters.message),
        )
    })
}

/// `ExportersHealthy`: whether the last attempt of each exporter succeeded.
fn exporters_healthy(runtime: Option<&SessionSnapshot>) -> Decided {
    let exporters = runtime.map(|r| r.exporters.as_slice()).unwrap_or_default();
    if exporters.is_empty() {
        return decided(
            "ExportersHealthy",
            "Unknown",
            "NotExporting",
            "no exporter is running",
        );
    }
    // Exporters run in the spec's order: the index names the field.
    let refused: Vec<String> = exporters
        .iter()
        .enumerate()
        .filter(|(_, (_, s))| !s.healthy && s.not_permitted)
        .map(|(i, (name, _))| {
            format!(
                "exporter {name} (spec.exporters[{i}].otlp.endpoint): {}",
                crate::export::NOT_PERMITTED
            )
        })
        .collect();
    // `last_error` is a fixed phrase (never a response body): fit for the tenant to read.
    let failing: Vec<String> = exporters
        .iter()
        .filter(|(_, s)| !s.healthy && !s.not_permitted)
        .map(|(name, s)| format!("{name}: {}", s.last_error.as_deref().unwrap_or("failing")))
        .collect();
    if !refused.is_empty() {
        let message = refused.into_iter().chain(failing).collect::<Vec<_>>();
        decided(
            "ExportersHealthy",
            "False",
            "DestinationNotPermitted",
            &message.join("; "),
        )
    } else if failing.is_empty() {
        decided(
            "ExportersHealthy",
            "True",
            "Exporting",
            "every exporter delivers",
        )
    } else {
        decided(
            "ExportersHealthy",
            "False",
            "ExportFailing",
            &failing.join("; "),
        )
    }
}

/// `WatchesHealthy` of a running session: refusals given up on in its namespaces, else the
/// namespaces still listing.
fn watches_healthy(runtime: Option<&SessionSnapshot>) -> Decided {
    let Some(run) = runtime else {
        return decided(
            "WatchesHealthy",
            "Unknown",
            "Starting",
            "the session's watches are starting",
        );
    };
    if let Some(first) = run.watches.refused.first() {
        return decided(
            "WatchesHealthy",
            "False",
            refusal_reason(first.code),
            &refusal_messages(run.watches.refused.iter()),
        );
    }
    if !run.watches.listing.is_empty() {
        return decided(
            "WatchesHealthy",
            "Unknown",
            "Listing",
            &format!(
                "listing events in namespace {}",
                run.watches.listing.join(", ")
            ),
        );
    }
    decided(
        "WatchesHealthy",
        "True",
        "Watching",
        "the session's namespaces are watched",
    )
}

fn events_resource() -> String {
    crate::watch::resource_name(&crate::watch::events_resource())
}

fn refusal_reason(code: u16) -> &'static str {
    match code {
        401 => "Unauthorized",
        404 => "NotFound",
        _ => "Forbidden",
    }
}

/// `cannot watch pods in namespace shop: forbidden, grant get, list, watch`: the verb, the
/// resource as an RBAC rule names it, the namespace, and what would fix it.
pub fn refusal_message(r: &Refusal) -> String {
    let place = match &r.scope {
        Scope::Namespace(ns) => format!("in namespace {ns}"),
        Scope::AllNamespaces => "cluster-wide".into(),
    };
    let why = match r.code {
        401 => "unauthorized, the API server refuses the operator's credentials",
        404 => "not found, the API server does not serve it",
        _ => "forbidden, grant get, list, watch",
    };
    format!("cannot watch {} {place}: {why}", r.resource)
}

fn refusal_messages<'a>(refusals: impl Iterator<Item = &'a Refusal>) -> String {
    refusals.map(refusal_message).collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::ExporterStats;

    fn ok(reason: Reason) -> Readiness {
        Readiness::ready(reason, format!("{} message", reason.as_str()))
    }

    fn err(reason: Reason, message: &str) -> Readiness {
        Readiness::not_ready(reason, message)
    }

    fn exporter(healthy: bool, not_permitted: bool) -> ExporterStats {
        ExporterStats {
            healthy,
            not_permitted,
            last_error: (!healthy).then(|| "connection refused".into()),
            ..Default::default()
        }
    }

    /// A running session whose watches listed and whose one exporter delivers.
    fn running() -> SessionSnapshot {
        SessionSnapshot {
            exporters: vec![("jaeger".into(), exporter(true, false))],
            namespaces: vec!["shop".into()],
            ..Default::default()
        }
    }

    fn refusal(resource: &str, ns: &str, code: u16) -> Refusal {
        Refusal {
            resource: resource.into(),
            scope: Scope::Namespace(ns.into()),
            code,
        }
    }

    /// (status, reason) of each condition, by type.
    fn summary(conditions: &[Decided]) -> Vec<(&'static str, &'static str, String)> {
        conditions
            .iter()
            .map(|c| (c.type_, c.status, c.reason.clone()))
            .collect()
    }

    fn get<'a>(conditions: &'a [Decided], type_: &str) -> &'a Decided {
        conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    /// (Ready, Reconciling, Stalled) statuses.
    fn abnormal(conditions: &[Decided]) -> (&'static str, &'static str, &'static str) {
        (
            get(conditions, "Ready").status,
            get(conditions, "Reconciling").status,
            get(conditions, "Stalled").status,
        )
    }

    #[test]
    fn a_running_session_whose_watches_listed_and_exporters_deliver_is_ready() {
        let c = decide(Phase::Active, &ok(Reason::Active), Some(&running()));
        assert_eq!(
            summary(&c),
            [
                ("Ready", "True", "Active".into()),
                ("Reconciling", "False", "Reconciled".into()),
                ("Stalled", "False", "NotStalled".into()),
                ("ExportersHealthy", "True", "Exporting".into()),
                ("WatchesHealthy", "True", "Watching".into()),
            ]
        );
    }

    #[test]
    fn a_session_being_brought_up_is_reconciling_not_ready() {
        // Waiting for the API server.
        let pending = decide(
            Phase::Pending,
            &err(Reason::Pending, "waiting for the API server: timed out"),
            None,
        );
        assert_eq!(abnormal(&pending), ("False", "True", "False"));
        assert_eq!(
            get(&pending, "Reconciling").message,
            "waiting for the API server: timed out"
        );
        // Started, its Event watch not listed yet (an edit adding a namespace alike).
        let mut listing = running();
        listing.watches.listing = vec!["shop".into()];
        let c = decide(Phase::Active, &ok(Reason::Active), Some(&listing));
        assert_eq!(abnormal(&c), ("False", "True", "False"));
        assert_eq!(
            get(&c, "Reconciling").message,
            "listing events in namespace shop"
        );
        assert_eq!(get(&c, "WatchesHealthy").status, "Unknown");
        // Not yet in the hub's snapshot.
        let c = decide(Phase::Active, &ok(Reason::Active), None);
        assert_eq!(abnormal(&c), ("False", "True", "False"));
    }

    #[test]
    fn a_refused_spec_is_stalled_with_its_reason_and_field() {
        for (phase, reason) in [
            (Phase::Failed, "NamespaceNotPermitted"),
            (Phase::Failed, "UnknownRootKind"),
            (Phase::Failed, "SecretNotFound"),
        ] {
            let message = "spec.namespaces: a session in namespace shop may only trace shop";
            let c = decide(phase, &err(Reason::Invalid(reason), message), None);
            assert_eq!(abnormal(&c), ("False", "False", "True"), "{reason}");
            let stalled = get(&c, "Stalled");
            assert_eq!(
                (stalled.reason.as_str(), stalled.message.as_str()),
                (reason, message)
            );
            assert_eq!(get(&c, "Ready").reason, reason);
            assert_eq!(get(&c, "WatchesHealthy").reason, "NotWatching");
            assert_eq!(get(&c, "ExportersHealthy").status, "Unknown");
        }
    }

    #[test]
    fn a_session_whose_exporters_all_fail_is_not_ready_but_not_stalled() {
        let mut down = running();
        down.exporters = vec![("jaeger".into(), exporter(false, false))];
        let c = decide(Phase::Active, &ok(Reason::Active), Some(&down));
        assert_eq!(abnormal(&c), ("False", "False", "False"));
        let ready = get(&c, "Ready");
        assert_eq!(
            (ready.reason.as_str(), ready.message.as_str()),
            (
                "ExportFailing",
                "no exporter delivers: jaeger: connection refused"
            )
        );
        // One of two delivering: ready, and ExportersHealthy names the other.
        down.exporters.push(("tempo".into(), exporter(true, false)));
        let c = decide(Phase::Active, &ok(Reason::Active), Some(&down));
        assert_eq!(abnormal(&c), ("True", "False", "False"));
        assert_eq!(get(&c, "ExportersHealthy").status, "False");
        // Every exporter refused by the destination policy.
        down.exporters = vec![("jaeger".into(), exporter(false, true))];
        let c = decide(Phase::Active, &ok(Reason::Active), Some(&down));
        assert_eq!(get(&c, "Ready").reason, "DestinationNotPermitted");
    }

    #[test]
    fn a_refused_event_watch_stalls_the_session_and_names_the_permission() {
        let mut refused = running();
        refused.namespaces.push("payments".into());
        refused.watches.listing = vec!["payments".into()];
        refused.watches.refused = vec![refusal("events.events.k8s.io", "payments", 403)];
        let c = decide(Phase::Active, &ok(Reason::Active), Some(&refused));
        assert_eq!(abnormal(&c), ("False", "False", "True"));
        let message = "cannot watch events.events.k8s.io in namespace payments: forbidden, grant get, list, watch";
        for type_ in ["Stalled", "WatchesHealthy", "Ready"] {
            let condition = get(&c, type_);
            assert_eq!(
                (condition.reason.as_str(), condition.message.as_str()),
                ("Forbidden", message),
                "{type_}"
            );
        }
        assert_eq!(get(&c, "WatchesHealthy").status, "False");
    }

    #[test]
    fn a_refused_object_watch_is_reported_but_the_session_stays_ready() {
        // Owner chains stop at pods; the session still traces its Deployments.
        let mut refused = running();
        refused.watches.refused = vec![refusal("pods", "shop", 403)];
        let c = decide(Phase::Active, &ok(Reason::Active), Some(&refused));
        assert_eq!(abnormal(&c), ("True", "False", "False"));
        let watches = get(&c, "WatchesHealthy");
        assert_eq!(
            (
                watches.status,
                watches.reason.as_str(),
                watches.message.as_str()
            ),
            (
                "False",
                "Forbidden",
                "cannot watch pods in namespace shop: forbidden, grant get, list, watch"
            )
        );
        refused.watches.refused = vec![
            refusal("Widget.example.com", "shop", 404),
            refusal("pods", "shop", 401),
        ];
        let c = decide(Phase::Active, &ok(Reason::Active), Some(&refused));
        assert_eq!(get(&c, "WatchesHealthy").reason, "NotFound");
        assert_eq!(
            get(&c, "WatchesHealthy").message,
            "cannot watch Widget.example.com in namespace shop: not found, the API server does not serve it; cannot watch pods in namespace shop: unauthorized, the API server refuses the operator's credentials"
        );
    }

    #[test]
    fn stopped_sessions_are_ready_and_never_reconciling_and_stalled_at_once() {
        for (phase, reason) in [
            (Phase::Suspended, Reason::Suspended),
            (Phase::Completed, Reason::Completed),
        ] {
            let c = decide(phase, &ok(reason), None);
            assert_eq!(abnormal(&c), ("True", "False", "False"), "{reason:?}");
        }
        // However things combine, at most one of Reconciling and Stalled is True, and Ready is
        // True only when neither is.
        let mut run = running();
        run.watches.listing = vec!["shop".into()];
        run.watches.refused = vec![refusal("events.events.k8s.io", "shop", 403)];
        run.exporters = vec![("jaeger".into(), exporter(false, false))];
        for phase in [Phase::Pending, Phase::Active, Phase::Failed] {
            for verdict in [ok(Reason::Active), err(Reason::Pending, "m")] {
                let c = decide(phase, &verdict, Some(&run));
                let (ready, reconciling, stalled) = abnormal(&c);
                assert!(!(reconciling == "True" && stalled == "True"), "{c:?}");
                assert_eq!(ready, "False", "{c:?}");
            }
        }
    }
}

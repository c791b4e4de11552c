//! Which API serves a kind, found by discovery and remembered.

use std::collections::HashMap;
use std::time::Instant;

use kube::Client;
use kube::api::ApiResource;
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};
use tokio_util::sync::CancellationToken;

use super::retry::{Backoff, Decision, Failure};

/// A kind the cluster serves.
#[derive(Clone, Debug)]
pub struct Served {
    pub resource: ApiResource,
    pub namespaced: bool,
}

/// Kinds remembered at most. Only kinds the cluster serves are remembered, and callers admit
/// kinds through a [`Budget`], so this is a backstop.
const MAX_KINDS: usize = 1024;

/// Resolves `apiVersion` + `kind` to the API resource serving it, caching the kinds served. A
/// failure is not remembered: the caller retries it under its [`Backoff`], which knows whether a
/// 404 (a CRD being installed) or a 403 (an API server starting) has lasted long enough to be
/// final.
pub struct KindResolver {
    client: Client,
    cache: HashMap<(String, String), Served>,
}

/// An empty apiVersion is taken as the core group's `v1`: some reporters (KWOK's fake kubelet)
/// leave it out of the objects their events name, which are Pods and Nodes.
pub fn gvk(api_version: &str, kind: &str) -> GroupVersionKind {
    let api_version = if api_version.is_empty() {
        "v1"
    } else {
        api_version
    };
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    GroupVersionKind::gvk(group, version, kind)
}

impl KindResolver {
    pub fn new(client: Client) -> Self {
        KindResolver {
            client,
            cache: HashMap::new(),
        }
    }

    pub async fn resolve(&mut self, api_version: &str, kind: &str) -> Result<Served, kube::Error> {
        let gvk = gvk(api_version, kind);
        let key = (gvk.api_version(), kind.to_string());
        if let Some(served) = self.cache.get(&key) {
            return Ok(served.clone());
        }
        let (resource, caps) = discovery::pinned_kind(&self.client, &gvk).await?;
        let served = Served {
            resource,
            namespaced: caps.scope == Scope::Namespaced,
        };
        if self.cache.len() < MAX_KINDS {
            self.cache.insert(key, served.clone());
        }
        Ok(served)
    }
}

/// Resolves a kind, retrying failures under `backoff` until it is served, `stop` is cancelled
/// (`None`), or a refusal persists (`Err` with its code, after one warning).
pub async fn resolve_with_retry(
    resolver: &tokio::sync::Mutex<KindResolver>,
    api_version: &str,
    kind: &str,
    backoff: &mut Backoff,
    stop: &CancellationToken,
) -> Option<Result<Served, u16>> {
    loop {
        let answer = tokio::select! {
            _ = stop.cancelled() => return None,
            answer = async { resolver.lock().await.resolve(api_version, kind).await } => answer,
        };
        let error = match answer {
            Ok(served) => return Some(Ok(served)),
            Err(error) => error,
        };
        match backoff.failed(Instant::now(), Failure::of_kube(&error)) {
            Decision::Retry(delay) => {
                tracing::debug!(%api_version, %kind, %error, ?delay, "kind not resolved; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return None,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            Decision::GiveUp(code) => {
                tracing::warn!(%api_version, %kind, %error, code, "kind not served; its objects are not watched");
                return Some(Err(code));
            }
        }
    }
}

/// Why a kind named by an event or an owner reference gets no watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
pub enum Rejected {
    /// Not the shape of a Kubernetes kind or apiVersion: it never becomes a discovery request.
    #[error("not a valid kind or apiVersion")]
    InvalidName,
    /// The namespace already follows [`Budget::per_namespace`] kinds.
    #[error("the namespace follows as many kinds as it may")]
    NamespaceBudget,
    /// All namespaces together follow [`Budget::total`] kinds.
    #[error("as many kinds are followed as the operator allows")]
    GlobalBudget,
}

impl Rejected {
    pub const ALL: [Rejected; 3] = [
        Rejected::InvalidName,
        Rejected::NamespaceBudget,
        Rejected::GlobalBudget,
    ];

    /// The metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Rejected::InvalidName => "invalid_name",
            Rejected::NamespaceBudget => "namespace_budget",
            Rejected::GlobalBudget => "global_budget",
        }
    }
}

/// A DNS-1035 label (`[a-z]([-a-z0-9]*[a-z0-9])?`, at most 63 characters) in either case: what
/// the API server accepts as a CRD's kind (lowercased) and as an API version.
fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && b[0].is_ascii_alphabetic()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

/// A DNS-1123 subdomain (lowercase labels joined by dots, at most 253 characters): an API group.
fn is_group(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

/// Whether `apiVersion` and `kind` could name a served kind. Anyone who may create an Event or
/// set an owner reference chooses them, and they end up in a discovery request's path: a kind of
/// a megabyte, or with a `/`, is refused here rather than sent.
pub fn valid_kind(api_version: &str, kind: &str) -> bool {
    let version_ok = match api_version.split_once('/') {
        // Empty: the core group (see [`gvk`]).
        None => api_version.is_empty() || is_label(api_version),
        Some((group, version)) => is_group(group) && is_label(version),
    };
    version_ok && is_label(kind)
}

/// How many kinds are followed, per namespace and in all: an owner reference may name any kind,
/// so one namespace naming thousands must not use up what the others need.
#[derive(Clone, Debug)]
pub struct Budget {
    per_namespace: usize,
    total: usize,
    used: std::collections::BTreeMap<String, usize>,
    used_total: usize,
    rejected: [u64; 3],
}

/// Kinds one namespace may follow. A namespace's workloads use a dozen or so (Deployment,
/// ReplicaSet, Pod, StatefulSet, Job, CronJob, PVC, a few custom kinds and those events name:
/// Service, HPA, Node...); 64 leaves room for operators' custom kinds.
pub const KINDS_PER_NAMESPACE: usize = 64;
/// Kinds followed in all namespaces together: one watch each, so this bounds the watches.
pub const KINDS_TOTAL: usize = 4096;

impl Default for Budget {
    fn default() -> Self {
        Budget::new(KINDS_PER_NAMESPACE, KINDS_TOTAL)
    }
}

impl Budget {
    pub fn new(per_namespace: usize, total: usize) -> Self {
        Budget {
            per_namespace,
            total,
            used: Default::default(),
            used_total: 0,
            rejected: [0; 3],
        }
    }

    /// Takes one kind from `namespace`'s budget (cluster-scoped objects use `""`), or says why
    /// not and counts the refusal. The caller asks once per new kind: it remembers those admitted.
    pub fn admit(
        &mut self,
        namespace: &str,
        api_version: &str,
        kind: &str,
    ) -> Result<(), Rejected> {
        let verdict = if !valid_kind(api_version, kind) {
            Err(Rejected::InvalidName)
        } else if self.used.get(namespace).copied().unwrap_or(0) >= self.per_namespace {
            Err(Rejected::NamespaceBudget)
        } else if self.used_total >= self.total {
            Err(Rejected::GlobalBudget)
        } else {
            Ok(())
        };
        match verdict {
            Ok(()) => {
                *self.used.entry(namespace.to_string()).or_default() += 1;
                self.used_total += 1;
            }
            Err(r) => self.rejected[r as usize] += 1,
        }
        verdict
    }

    /// Returns a namespace's kinds to the budget (it is no longer watched).
    pub fn release(&mut self, namespace: &str) {
        if let Some(n) = self.used.remove(namespace) {
            self.used_total -= n;
        }
    }

    /// Kinds refused so far, by reason.
    pub fn rejected(&self) -> impl Iterator<Item = (Rejected, u64)> + '_ {
        Rejected::ALL
            .into_iter()
            .map(|r| (r, self.rejected[r as usize]))
    }

    #[cfg(test)]
    pub fn used(&self) -> usize {
        self.used_total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_are_bounded_in_length_and_shape() {
        for (api_version, kind) in [
            ("apps/v1", "Deployment"),
            ("v1", "Pod"),
            ("", "Node"),
            ("argoproj.io/v1alpha1", "Rollout"),
            ("helm.toolkit.fluxcd.io/v2", "HelmRelease"),
            ("example.com/v1", "My-Kind"),
        ] {
            assert!(valid_kind(api_version, kind), "{api_version} {kind}");
        }
        let huge = "K".repeat(1 << 20);
        for (api_version, kind) in [
            ("apps/v1", huge.as_str()),
            ("apps/v1", "Deploy/ment"),
            ("apps/v1", "../../api/v1/secrets"),
            ("apps/v1", ""),
            ("apps/v1", "1Deployment"),
            ("apps/v1", "Deployment-"),
            ("apps/v1", &"K".repeat(64)),
            ("apps/v1", "Dep loyment"),
            ("apps/v1", "Déploiement"),
            ("a/b/v1", "Deployment"),
            ("Apps/v1", "Deployment"),
            ("apps/", "Deployment"),
            ("/v1", "Deployment"),
            ("apps/v1?watch=1", "Deployment"),
            ("apps..x/v1", "Deployment"),
            (huge.as_str(), "Deployment"),
        ] {
            assert!(
                !valid_kind(api_version, kind),
                "{api_version:.40} {kind:.40}"
            );
        }
    }

    #[test]
    fn one_namespace_naming_thousands_of_kinds_leaves_the_others_theirs() {
        let mut budget = Budget::default();
        let admitted = (0..10_000)
            .filter(|i| {
                budget
                    .admit("hostile", "example.com/v1", &format!("Bogus{i}"))
                    .is_ok()
            })
            .count();
        assert_eq!(admitted, KINDS_PER_NAMESPACE);
        for ns in ["shop", "payments", "kube-system"] {
            for kind in ["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"] {
                assert_eq!(budget.admit(ns, "apps/v1", kind), Ok(()), "{ns} {kind}");
            }
            assert_eq!(budget.admit(ns, "v1", "Pod"), Ok(()));
        }
        let rejected: Vec<_> = budget.rejected().collect();
        assert_eq!(
            rejected,
            [
                (Rejected::InvalidName, 0),
                (
                    Rejected::NamespaceBudget,
                    10_000 - KINDS_PER_NAMESPACE as u64
                ),
                (Rejected::GlobalBudget, 0),
            ]
        );
        assert_eq!(budget.used(), KINDS_PER_NAMESPACE + 15);
    }

    #[test]
    fn the_global_cap_still_holds_and_released_namespaces_give_back() {
        let mut budget = Budget::new(2, 3);
        assert!(budget.admit("a", "v1", "Pod").is_ok());
        assert!(budget.admit("a", "apps/v1", "ReplicaSet").is_ok());
        assert!(budget.admit("b", "v1", "Pod").is_ok());
        assert_eq!(budget.admit("c", "v1", "Pod"), Err(Rejected::GlobalBudget));
        assert_eq!(
            budget.admit("c", "apps/v1", "a/b"),
            Err(Rejected::InvalidName)
        );
        budget.release("a");
        assert!(budget.admit("c", "v1", "Pod").is_ok());
        assert!(budget.admit("c", "apps/v1", "ReplicaSet").is_ok());
        assert_eq!(budget.used(), 3);
    }

    #[test]
    fn api_versions_split_into_group_and_version() {
        let g = gvk("apps/v1", "Deployment");
        assert_eq!((g.group.as_str(), g.version.as_str()), ("apps", "v1"));
        let core = gvk("v1", "Pod");
        assert_eq!((core.group.as_str(), core.version.as_str()), ("", "v1"));
        assert_eq!(gvk("", "Pod"), core);
    }
}

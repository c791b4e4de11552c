//! Which traces belong to a session: namespaces, root kinds and a label selector, matched
//! against a trace's root object; and which of a matching trace's spans the session may read.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::engine::model::{FinishedSpan, TraceRoot};

/// One requirement of a label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    DoesNotExist(String),
}

/// What is wrong with a label selector: the entry (`matchExpressions[0].operator`, relative to
/// the selector) and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SelectorError {
    pub field: String,
    pub message: String,
}

impl SelectorError {
    fn new(field: String, message: String) -> Self {
        SelectorError { field, message }
    }
}

/// A validated label selector that matches without allocating.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelMatcher(Vec<Requirement>);

impl LabelMatcher {
    /// Checks a `LabelSelector` the way the API server would, naming the offending entry.
    pub fn new(selector: &LabelSelector) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(Requirement::In(
                key.clone(),
                BTreeSet::from([value.clone()]),
            ));
        }
        for (i, expr) in selector.match_expressions.iter().flatten().enumerate() {
            let values: BTreeSet<String> = expr.values.iter().flatten().cloned().collect();
            let key = expr.key.clone();
            if key.is_empty() {
                return Err(SelectorError::new(
                    format!("matchExpressions[{i}].key"),
                    "must not be empty".into(),
                ));
            }
            let requirement = match expr.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(SelectorError::new(
                        format!("matchExpressions[{i}].values"),
                        format!("operator {} needs values", expr.operator),
                    ));
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(SelectorError::new(
                        format!("matchExpressions[{i}].values"),
                        format!("operator {} takes no values", expr.operator),
                    ));
                }
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                "DoesNotExist" => Requirement::DoesNotExist(key),
                other => {
                    return Err(SelectorError::new(
                        format!("matchExpressions[{i}].operator"),
                        format!("{other:?} is not one of In, NotIn, Exists, DoesNotExist"),
                    ));
                }
            };
            requirements.push(requirement);
        }
        Ok(LabelMatcher(requirements))
    }

    pub fn matches(&self, labels: &[(Box<str>, Box<str>)]) -> bool {
        let get = |key: &str| labels.iter().find(|(k, _)| &**k == key).map(|(_, v)| &**v);
        self.0.iter().all(|r| match r {
            Requirement::In(k, values) => get(k).is_some_and(|v| values.contains(v)),
            Requirement::NotIn(k, values) => get(k).is_none_or(|v| !values.contains(v)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::DoesNotExist(k) => get(k).is_none(),
        })
    }
}

/// A kind that may root a trace: API group and kind.
pub type GroupKind = (String, String);

/// The kinds that root traces when a session names none.
pub fn default_root_kinds() -> BTreeSet<GroupKind> {
    [
        ("apps", "Deployment"),
        ("apps", "StatefulSet"),
        ("apps", "DaemonSet"),
        ("batch", "Job"),
        ("batch", "CronJob"),
    ]
    .into_iter()
    .map(|(g, k)| (g.to_string(), k.to_string()))
    .collect()
}

/// What a session traces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    pub namespaces: BTreeSet<String>,
    pub root_kinds: BTreeSet<GroupKind>,
    pub selector: LabelMatcher,
}

impl Scope {
    pub fn matches(&self, root: &TraceRoot) -> bool {
        self.namespaces.contains(&*root.namespace)
            && self
                .root_kinds
                .iter()
                .any(|(g, k)| **k == *root.kind && **g == *root.group())
            && self.selector.matches(&root.labels)
    }

    /// Whether the session gets this span: its trace matches, and its event is from a namespace
    /// the session traces. A cluster-scoped object's events (recorded in `default`) join a
    /// namespaced trace in one case: a Karpenter NodeClaim's, under the pod nominated to it.
    /// Only a session that traces `default` too (an admin session) reads them; any other gets
    /// the pod's trace without them, so that nothing cluster-wide (nor what a forged nomination
    /// pulls in) reaches a tenant.
    pub fn admits(&self, span: &FinishedSpan) -> bool {
        self.matches(&span.root)
            && span
                .event
                .as_ref()
                .is_none_or(|e| self.namespaces.contains(&e.namespace))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn root(kind: &str, api_version: &str, ns: &str, labels: &[(&str, &str)]) -> TraceRoot {
        TraceRoot {
            kind: kind.into(),
            api_version: api_version.into(),
            namespace: ns.into(),
            name: "web".into(),
            uid: "u".into(),
            generation: 1,
            labels: labels
                .iter()
                .map(|(k, v)| (Box::from(*k), Box::from(*v)))
                .collect::<Vec<_>>()
                .into(),
            traceparent: None,
            started: None,
        }
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn a_nodeclaims_spans_in_a_pods_trace_go_only_to_sessions_tracing_default() {
        // The real Karpenter's recording: a pod waited for a NodeClaim, whose events (in
        // `default`) hang under the pod's Nominated span in the Deployment's trace.
        let spans = crate::replay::replay(
            include_str!("../../tests/scenarios/recorded/karpenter.jsonl"),
            Default::default(),
        )
        .spans;
        let of_deployment: Vec<&FinishedSpan> = spans
            .iter()
            .filter(|s| &*s.root.kind == "Deployment")
            .collect();
        let is_claim = |s: &&&FinishedSpan| {
            s.event
                .as_ref()
                .is_some_and(|e| e.involved.kind == "NodeClaim")
        };
        assert!(of_deployment.iter().filter(is_claim).count() >= 4);
        let scope = |namespaces: &[&str]| Scope {
            namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
            root_kinds: default_root_kinds(),
            selector: LabelMatcher::default(),
        };
        let tenant = scope(&["rec-karpenter"]);
        let admin = scope(&["rec-karpenter", "default"]);
        for span in &of_deployment {
            assert_eq!(tenant.admits(span), !is_claim(&span), "{:?}", span.event);
            assert!(admin.admits(span));
        }
    }

    #[test]
    fn selector_semantics() {
        let selector = LabelSelector {
            match_labels: Some([("team".to_string(), "shop".to_string())].into()),
            match_expressions: Some(vec![
                expr("tier", "In", &["web", "api"]),
                expr("canary", "DoesNotExist", &[]),
            ]),
        };
        let m = LabelMatcher::new(&selector).unwrap();
        let labels = |l: &[(&str, &str)]| -> Arc<[(Box<str>, Box<str>)]> {
            l.iter()
                .map(|(k, v)| (Box::from(*k), Box::from(*v)))
                .collect::<Vec<_>>()
                .into()
        };
        assert!(m.matches(&labels(&[("team", "shop"), ("tier", "web")])));
        assert!(!m.matches(&labels(&[("team", "shop"), ("tier", "db")])));
        assert!(!m.matches(&labels(&[
            ("team", "shop"),
            ("tier", "web"),
            ("canary", "1")
        ])));
        assert!(!m.matches(&labels(&[("tier", "web")])));
        assert!(LabelMatcher::default().matches(&labels(&[])));
    }

    #[test]
    fn invalid_selectors_name_the_problem() {
        let bad = |e| {
            LabelMatcher::new(&LabelSelector {
                match_expressions: Some(vec![e]),
                ..Default::default()
            })
        };
        assert!(
            bad(expr("a", "Equals", &["x"]))
                .unwrap_err()
                .to_string()
                .contains("operator: \"Equals\"")
        );
        assert!(
            bad(expr("a", "In", &[]))
                .unwrap_err()
                .to_string()
                .contains("needs values")
        );
        assert!(
            bad(expr("a", "Exists", &["x"]))
                .unwrap_err()
                .to_string()
                .contains("takes no values")
        );
    }

    #[test]
    fn scope_matches_namespace_kind_and_labels() {
        let scope = Scope {
            namespaces: ["shop".to_string()].into(),
            root_kinds: default_root_kinds(),
            selector: LabelMatcher::default(),
        };
        assert!(scope.matches(&root("Deployment", "apps/v1", "shop", &[])));
        assert!(!scope.matches(&root("Deployment", "apps/v1", "other", &[])));
        assert!(!scope.matches(&root("Pod", "v1", "shop", &[])));
        assert!(!scope.matches(&root("Deployment", "example.com/v1", "shop", &[])));
    }
}

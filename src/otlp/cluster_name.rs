//! The cluster a span comes from, as the Resource attribute `k8s.cluster.name`.
//!
//! Traces from many clusters meet in one backend (a collector gateway in front of it): two
//! clusters' rollouts of the same Deployment look alike, and their reporting components have the
//! same names, so only this attribute tells them apart. It is set once per operator
//! (`eventspan run --cluster-name`), on every Resource of every session's spans and log records.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// The Resource attribute that names the cluster (OpenTelemetry semantic conventions).
pub const K8S_CLUSTER_NAME: &str = "k8s.cluster.name";

/// The longest name accepted: EKS allows 100 characters, GKE 40, AKS 63.
pub const MAX_LEN: usize = 100;

/// A checked cluster name: 1 to [`MAX_LEN`] ASCII letters, digits, `-`, `_` and `.`, beginning
/// and ending with a letter or digit. Covers the names managed Kubernetes services give and DNS
/// names, and stays one plain token in every backend's index and query language.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterName(Arc<str>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidClusterName {
    #[error("a cluster name must not be empty")]
    Empty,
    #[error("a cluster name has at most {MAX_LEN} characters, this one has {0}")]
    TooLong(usize),
    #[error(
        "a cluster name may only contain ASCII letters, digits, '-', '_' and '.': {found:?} at position {position}"
    )]
    Character { found: char, position: usize },
    #[error("a cluster name must begin and end with a letter or digit")]
    Edge,
}

impl FromStr for ClusterName {
    type Err = InvalidClusterName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(InvalidClusterName::Empty);
        }
        let chars = s.chars().count();
        if chars > MAX_LEN {
            return Err(InvalidClusterName::TooLong(chars));
        }
        if let Some((position, found)) = s
            .chars()
            .enumerate()
            .find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(InvalidClusterName::Character { found, position });
        }
        let edges = [s.as_bytes()[0], s.as_bytes()[s.len() - 1]];
        if !edges.iter().all(u8::is_ascii_alphanumeric) {
            return Err(InvalidClusterName::Edge);
        }
        Ok(ClusterName(s.into()))
    }
}

impl ClusterName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ClusterName, InvalidClusterName> {
        s.parse()
    }

    #[test]
    fn names_of_managed_clusters_and_dns_names_are_accepted() {
        for name in [
            "prod-eu-west-1",
            "gke_my-project_europe-west1_prod",
            "aks_cluster01",
            "prod.eu.example.com",
            "a",
            &"x".repeat(MAX_LEN),
        ] {
            assert_eq!(parse(name).map(|n| n.to_string()), Ok(name.to_string()));
        }
    }

    #[test]
    fn anything_else_is_refused_with_the_reason() {
        assert_eq!(parse(""), Err(InvalidClusterName::Empty));
        assert_eq!(
            parse(&"x".repeat(MAX_LEN + 1)),
            Err(InvalidClusterName::TooLong(MAX_LEN + 1))
        );
        assert_eq!(
            parse("prod eu"),
            Err(InvalidClusterName::Character {
                found: ' ',
                position: 4
            })
        );
        assert_eq!(
            parse("prød"),
            Err(InvalidClusterName::Character {
                found: 'ø',
                position: 2
            })
        );
        assert_eq!(
            parse("a\"b"),
            Err(InvalidClusterName::Character {
                found: '"',
                position: 1
            })
        );
        for edge in ["-prod", "prod-", ".prod", "prod_"] {
            assert_eq!(parse(edge), Err(InvalidClusterName::Edge), "{edge}");
        }
        // Counted in characters, not bytes: a long non-ASCII name says how long it is.
        assert_eq!(
            parse(&"é".repeat(MAX_LEN + 1)),
            Err(InvalidClusterName::TooLong(MAX_LEN + 1))
        );
    }
}

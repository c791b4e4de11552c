//! Which API serves a kind, found by discovery and remembered.

use std::collections::HashMap;

use kube::Client;
use kube::api::ApiResource;
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};

/// A kind the cluster serves.
#[derive(Clone, Debug)]
pub struct Served {
    pub resource: ApiResource,
    pub namespaced: bool,
}

/// Resolves `apiVersion` + `kind` to the API resource serving it, caching answers (including
/// "not served", so a missing CRD is asked about once, not on every event).
pub struct KindResolver {
    client: Client,
    cache: HashMap<(String, String), Option<Served>>,
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

    pub async fn resolve(&mut self, api_version: &str, kind: &str) -> Option<Served> {
        let gvk = gvk(api_version, kind);
        let key = (gvk.api_version(), kind.to_string());
        if let Some(known) = self.cache.get(&key) {
            return known.clone();
        }
        let served = match discovery::pinned_kind(&self.client, &gvk).await {
            Ok((resource, caps)) => Some(Served {
                resource,
                namespaced: caps.scope == Scope::Namespaced,
            }),
            Err(error) => {
                tracing::warn!(%api_version, %kind, %error, "kind not served; its objects are not watched");
                None
            }
        };
        self.cache.insert(key, served.clone());
        served
    }
}

#[cfg(test)]
mod tests {
    use super::gvk;

    #[test]
    fn api_versions_split_into_group_and_version() {
        let g = gvk("apps/v1", "Deployment");
        assert_eq!((g.group.as_str(), g.version.as_str()), ("apps", "v1"));
        let core = gvk("v1", "Pod");
        assert_eq!((core.group.as_str(), core.version.as_str()), ("", "v1"));
        assert_eq!(gvk("", "Pod"), core);
    }
}

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

pub fn gvk(api_version: &str, kind: &str) -> GroupVersionKind {
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
        let key = (api_version.to_string(), kind.to_string());
        if let Some(known) = self.cache.get(&key) {
            return known.clone();
        }
        let served = match discovery::pinned_kind(&self.client, &gvk(api_version, kind)).await {
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
    }
}

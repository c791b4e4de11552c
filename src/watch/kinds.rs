//! Which API serves a kind, found by discovery and remembered.

use std::collections::HashMap;
use std::time::{Duration, Instant};

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

/// How long a "not served" answer stands: a CRD installed later is found within this.
const NOT_SERVED_FOR: Duration = Duration::from_secs(60);
/// Kinds remembered at most: events can name any kind, and anyone who may create an Event
/// chooses it. Beyond this, answers are not remembered.
const MAX_KINDS: usize = 1024;

/// Resolves `apiVersion` + `kind` to the API resource serving it, caching answers. "Not served"
/// is remembered for a minute, so a missing CRD is asked about once a minute, not on every event.
pub struct KindResolver {
    client: Client,
    cache: HashMap<(String, String), Answer>,
}

#[derive(Clone)]
enum Answer {
    Served(Served),
    NotServed { asked: Instant },
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
        match self.cache.get(&key) {
            Some(Answer::Served(served)) => return Some(served.clone()),
            Some(Answer::NotServed { asked }) if asked.elapsed() < NOT_SERVED_FOR => return None,
            _ => {}
        }
        let answer = match discovery::pinned_kind(&self.client, &gvk).await {
            Ok((resource, caps)) => Answer::Served(Served {
                resource,
                namespaced: caps.scope == Scope::Namespaced,
            }),
            Err(error) => {
                tracing::warn!(%api_version, %kind, %error, "kind not served; its objects are not watched");
                Answer::NotServed {
                    asked: Instant::now(),
                }
            }
        };
        if self.cache.len() < MAX_KINDS || self.cache.contains_key(&key) {
            self.cache.insert(key, answer.clone());
        }
        match answer {
            Answer::Served(served) => Some(served),
            Answer::NotServed { .. } => None,
        }
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

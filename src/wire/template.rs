//! A root object's pod template, reduced while decoding to what its change summary compares
//! (see `engine/change.rs`): container names and images, and hashes of env values, resources
//! and template annotations. Values are hashed here and never kept, so neither memory nor a
//! recording (`eventspan record` writes this reduced form) holds a secret from an env value.

use serde::de::{Deserializer, IgnoredAny};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use xxhash_rust::xxh3::xxh3_64;

use crate::engine::change::{ContainerDigest, TemplateDigest};

/// `spec.template`, as read from an object or from a recording.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct WireTemplate {
    /// The reduced form; also what a recording holds.
    pub digest: KeptTemplate,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KeptTemplate {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<KeptContainer>,
    /// Annotation key and value hash.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub annotations: Vec<(String, u64)>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KeptContainer {
    pub name: String,
    pub image: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<(String, u64)>,
    pub resources: u64,
}

/// The object's own shape: only the fields compared are read; values are hashed at once.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ObjectTemplate {
    metadata: ObjectTemplateMeta,
    spec: ObjectPodSpec,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ObjectTemplateMeta {
    annotations: Option<std::collections::BTreeMap<String, Value>>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ObjectPodSpec {
    containers: Vec<ObjectContainer>,
    init_containers: Vec<ObjectContainer>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ObjectContainer {
    name: String,
    image: String,
    env: Vec<ObjectEnv>,
    resources: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ObjectEnv {
    name: String,
    value: Option<Value>,
    value_from: Option<Value>,
}

fn hash(value: &impl Serialize) -> u64 {
    // serde_json's maps are sorted by key (no `preserve_order`): equal values write the same
    // text, whatever order their keys came in.
    xxh3_64(serde_json::to_string(value).unwrap_or_default().as_bytes())
}

impl From<ObjectTemplate> for KeptTemplate {
    fn from(t: ObjectTemplate) -> Self {
        let containers = t
            .spec
            .init_containers
            .into_iter()
            .chain(t.spec.containers)
            .map(|c| KeptContainer {
                env: c
                    .env
                    .into_iter()
                    .map(|e| {
                        let h = hash(&(e.value, e.value_from));
                        (e.name, h)
                    })
                    .collect(),
                resources: c.resources.as_ref().map_or(0, hash),
                name: c.name,
                image: c.image,
            })
            .collect();
        let annotations = t
            .metadata
            .annotations
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| {
                let h = hash(&v);
                (k, h)
            })
            .collect();
        KeptTemplate {
            containers,
            annotations,
        }
    }
}

impl<'de> Deserialize<'de> for WireTemplate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Recorded { digest: KeptTemplate },
            Object(ObjectTemplate),
            Other(IgnoredAny),
        }
        Ok(match Either::deserialize(d)? {
            Either::Recorded { digest } => WireTemplate { digest },
            Either::Object(t) => WireTemplate { digest: t.into() },
            Either::Other(_) => WireTemplate::default(),
        })
    }
}

impl WireTemplate {
    /// The engine's digest, cut to its bounds.
    pub fn digest(&self, replicas: Option<i64>) -> TemplateDigest {
        let mut d = TemplateDigest {
            replicas,
            containers: self
                .digest
                .containers
                .iter()
                .take(crate::engine::change::MAX_CONTAINERS)
                .map(|c| ContainerDigest {
                    name: c.name.as_str().into(),
                    image: c.image.as_str().into(),
                    env: c
                        .env
                        .iter()
                        .take(crate::engine::change::MAX_ENV)
                        .map(|(k, h)| (k.as_str().into(), *h))
                        .collect(),
                    resources: c.resources,
                })
                .collect(),
            annotations: self
                .digest
                .annotations
                .iter()
                .take(crate::engine::change::MAX_ANNOTATIONS)
                .map(|(k, h)| (k.as_str().into(), *h))
                .collect(),
        };
        d.bound();
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_hashed_at_decoding_and_a_recording_round_trips() {
        let json = r#"{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2026-12-02T03:00:00Z"}},
            "spec":{"containers":[{"name":"web","image":"nginx:1.26","env":[{"name":"TOKEN","value":"s3cret"}],
            "resources":{"limits":{"cpu":"1"}}}]}}"#;
        let t: WireTemplate = serde_json::from_str(json).unwrap();
        let recorded = serde_json::to_string(&t).unwrap();
        assert!(!recorded.contains("s3cret"), "{recorded}");
        assert!(!recorded.contains("2026-12-02"), "{recorded}");
        let again: WireTemplate = serde_json::from_str(&recorded).unwrap();
        assert_eq!(again, t);
        let d = t.digest(Some(3));
        assert_eq!(&*d.containers[0].image, "nginx:1.26");
        assert_eq!(&*d.containers[0].env[0].0, "TOKEN");
        let other: WireTemplate = serde_json::from_str(&json.replace("s3cret", "other")).unwrap();
        assert_ne!(
            other.digest.containers[0].env[0].1,
            t.digest.containers[0].env[0].1
        );
    }

    #[test]
    fn a_template_of_another_shape_is_empty_not_an_error() {
        let t: WireTemplate = serde_json::from_str(r#""a string""#).unwrap();
        assert_eq!(t, WireTemplate::default());
        let t: WireTemplate = serde_json::from_str(r#"{"spec":{"containers":"nope"}}"#).unwrap();
        assert!(t.digest.containers.is_empty());
    }
}

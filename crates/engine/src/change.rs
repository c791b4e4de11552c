//! What a change of a root object changed: its pod template and replicas against the previous
//! generation, summarised on the root span ("image web: nginx:1.25 → nginx:1.26; replicas 3 →
//! 5"), and whether it was a scale or a rollout of a new template.
//!
//! Only names, images and replica counts are kept and shown. Environment values, resources and
//! annotation values are kept as hashes, compared, and never shown: they may be secret.

use std::fmt::Write as _;

/// Containers, and per container env entries, kept per template; what is beyond is not compared.
pub const MAX_CONTAINERS: usize = 16;
pub const MAX_ENV: usize = 64;
pub const MAX_ANNOTATIONS: usize = 32;
/// Bytes kept of a name or an image reference.
pub const MAX_NAME: usize = 256;
/// Bytes of a summary, at most.
const MAX_SUMMARY: usize = 1024;

/// A root object's spec as far as its change summary reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TemplateDigest {
    pub replicas: Option<i64>,
    pub containers: Vec<ContainerDigest>,
    /// The pod template's annotations: key and a hash of the value.
    pub annotations: Vec<(Box<str>, u64)>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerDigest {
    pub name: Box<str>,
    pub image: Box<str>,
    /// Variable name and a hash of its value (or `valueFrom`).
    pub env: Vec<(Box<str>, u64)>,
    /// A hash of the container's `resources`.
    pub resources: u64,
}

/// Whether a change only scaled the object or changed what its pods run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// Only the replica count changed.
    Scale,
    /// The pod template changed: a rollout.
    Template,
    /// Neither shows a difference (a strategy, a selector, or fields not compared).
    Spec,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Scale => "scale",
            ChangeKind::Template => "template",
            ChangeKind::Spec => "spec",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeSummary {
    pub kind: ChangeKind,
    /// `replicas` before and after, when they differ.
    pub replicas: Option<(i64, i64)>,
    /// One line: what changed, names and images only.
    pub text: Box<str>,
}

impl TemplateDigest {
    /// Cuts a digest decoded from anyone's object down to the documented bounds.
    pub fn bound(&mut self) {
        self.containers.truncate(MAX_CONTAINERS);
        self.annotations.truncate(MAX_ANNOTATIONS);
        for (key, _) in &mut self.annotations {
            cut(key);
        }
        for c in &mut self.containers {
            cut(&mut c.name);
            cut(&mut c.image);
            c.env.truncate(MAX_ENV);
            for (name, _) in &mut c.env {
                cut(name);
            }
        }
    }

    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self
                .annotations
                .iter()
                .map(|(k, _)| k.len() + 24)
                .sum::<usize>()
            + self
                .containers
                .iter()
                .map(|c| {
                    std::mem::size_of::<ContainerDigest>()
                        + c.name.len()
                        + c.image.len()
                        + c.env.iter().map(|(n, _)| n.len() + 24).sum::<usize>()
                })
                .sum::<usize>()
    }
}

fn cut(s: &mut Box<str>) {
    if s.len() > MAX_NAME {
        let mut end = MAX_NAME;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        *s = s[..end].into();
    }
}

/// What changed from `before` to `after`.
pub fn summarize(before: &TemplateDigest, after: &TemplateDigest) -> ChangeSummary {
    let mut parts: Vec<String> = Vec::new();
    for c in &after.containers {
        match before.containers.iter().find(|b| b.name == c.name) {
            None => parts.push(format!("container {} added ({})", c.name, c.image)),
            Some(b) => {
                if b.image != c.image {
                    parts.push(format!("image {}: {} → {}", c.name, b.image, c.image));
                }
                let env = changed_keys(&b.env, &c.env);
                if !env.is_empty() {
                    parts.push(format!("env {}: {}", c.name, env.join(", ")));
                }
                if b.resources != c.resources {
                    parts.push(format!("resources {}", c.name));
                }
            }
        }
    }
    for b in &before.containers {
        if !after.containers.iter().any(|c| c.name == b.name) {
            parts.push(format!("container {} removed", b.name));
        }
    }
    let annotations = changed_keys(&before.annotations, &after.annotations);
    if !annotations.is_empty() {
        parts.push(format!("template annotations: {}", annotations.join(", ")));
    }
    let template_changed = !parts.is_empty();
    let replicas = match (before.replicas, after.replicas) {
        (Some(b), Some(a)) if a != b => Some((b, a)),
        _ => None,
    };
    if let Some((b, a)) = replicas {
        parts.push(format!("replicas {b} → {a}"));
    }
    let kind = if template_changed {
        ChangeKind::Template
    } else if replicas.is_some() {
        ChangeKind::Scale
    } else {
        ChangeKind::Spec
    };
    let mut text = String::new();
    for (i, part) in parts.iter().enumerate() {
        if text.len() + part.len() + 2 > MAX_SUMMARY {
            let _ = write!(text, "; and {} more", parts.len() - i);
            break;
        }
        if i > 0 {
            text.push_str("; ");
        }
        text.push_str(part);
    }
    ChangeSummary {
        kind,
        replicas,
        text: text.into(),
    }
}

/// Keys added, removed or whose value hash differs, in `after`'s order then removed ones.
fn changed_keys<'a>(before: &'a [(Box<str>, u64)], after: &'a [(Box<str>, u64)]) -> Vec<&'a str> {
    let mut keys: Vec<&str> = after
        .iter()
        .filter(|(k, v)| {
            before
                .iter()
                .find(|(b, _)| b == k)
                .is_none_or(|(_, bv)| bv != v)
        })
        .map(|(k, _)| &**k)
        .collect();
    keys.extend(
        before
            .iter()
            .filter(|(k, _)| !after.iter().any(|(a, _)| a == k))
            .map(|(k, _)| &**k),
    );
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(name: &str, image: &str, env: &[(&str, u64)]) -> ContainerDigest {
        ContainerDigest {
            name: name.into(),
            image: image.into(),
            env: env.iter().map(|(k, v)| (Box::from(*k), *v)).collect(),
            resources: 7,
        }
    }

    fn digest(replicas: i64, containers: Vec<ContainerDigest>) -> TemplateDigest {
        TemplateDigest {
            replicas: Some(replicas),
            containers,
            annotations: Vec::new(),
        }
    }

    #[test]
    fn an_image_change_is_a_rollout_named_by_image() {
        let before = digest(3, vec![container("web", "nginx:1.25", &[("MODE", 1)])]);
        let after = digest(3, vec![container("web", "nginx:1.26", &[("MODE", 1)])]);
        let s = summarize(&before, &after);
        assert_eq!(s.kind, ChangeKind::Template);
        assert_eq!(&*s.text, "image web: nginx:1.25 → nginx:1.26");
        assert_eq!(s.replicas, None);
    }

    #[test]
    fn a_replica_change_alone_is_a_scale() {
        let before = digest(3, vec![container("web", "nginx", &[])]);
        let after = digest(5, vec![container("web", "nginx", &[])]);
        let s = summarize(&before, &after);
        assert_eq!((s.kind, &*s.text), (ChangeKind::Scale, "replicas 3 → 5"));
        assert_eq!(s.replicas, Some((3, 5)));
    }

    #[test]
    fn env_and_annotations_are_named_by_key_never_by_value() {
        let mut before = digest(
            2,
            vec![container("web", "app", &[("TOKEN", 11), ("OLD", 1)])],
        );
        let mut after = digest(
            2,
            vec![container("web", "app", &[("TOKEN", 12), ("NEW", 2)])],
        );
        before.annotations = vec![("kubectl.kubernetes.io/restartedAt".into(), 1)];
        after.annotations = vec![("kubectl.kubernetes.io/restartedAt".into(), 2)];
        after.containers[0].resources = 8;
        let s = summarize(&before, &after);
        assert_eq!(
            &*s.text,
            "env web: TOKEN, NEW, OLD; resources web; template annotations: kubectl.kubernetes.io/restartedAt"
        );
        assert_eq!(s.kind, ChangeKind::Template);
    }

    #[test]
    fn added_and_removed_containers_and_no_difference() {
        let before = digest(1, vec![container("a", "x", &[])]);
        let after = digest(1, vec![container("b", "y", &[])]);
        let s = summarize(&before, &after);
        assert_eq!(&*s.text, "container b added (y); container a removed");
        assert_eq!(summarize(&before, &before).kind, ChangeKind::Spec);
    }

    #[test]
    fn summaries_and_digests_are_bounded() {
        let env: Vec<(String, u64)> = (0..1000)
            .map(|i| (format!("{}{i}", "V".repeat(300)), i))
            .collect();
        let env_refs: Vec<(&str, u64)> = env.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let mut after = digest(
            1,
            (0..100)
                .map(|i| container(&format!("c{i}"), &"i".repeat(1000), &env_refs))
                .collect(),
        );
        let before = TemplateDigest::default();
        after.bound();
        assert!(after.containers.len() <= MAX_CONTAINERS);
        assert!(after.containers.iter().all(|c| c.image.len() <= MAX_NAME));
        assert!(
            after
                .containers
                .iter()
                .all(|c| c.env.len() <= MAX_ENV && c.env.iter().all(|(k, _)| k.len() <= MAX_NAME))
        );
        let s = summarize(&before, &after);
        assert!(s.text.len() <= MAX_SUMMARY + 32, "{}", s.text.len());
        assert!(s.text.ends_with("more"), "{}", s.text);
    }
}

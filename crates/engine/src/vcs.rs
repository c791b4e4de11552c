//! The Git revision a GitOps controller reports with its event, as OpenTelemetry's VCS attributes.
//!
//! Flux's controllers annotate each event they record with the revision they reconciled:
//! `kustomize.toolkit.fluxcd.io/revision: main@sha1:4f2a9c1...` (source-controller and
//! helm-controller the same under their own groups). The branch or tag before `@` is the ref's
//! name; the commit after `sha1:` (or the whole value when it has no such form) is the revision.

/// Whether an event annotation names the revision a Flux controller reconciled.
pub fn is_revision_annotation(key: &str) -> bool {
    key.strip_suffix("/revision")
        .is_some_and(|group| group.ends_with(".toolkit.fluxcd.io"))
}

/// `vcs.ref.head.revision` (and `vcs.ref.head.name` when the value names a ref) of a revision as
/// Flux writes it; nothing for an empty one.
pub fn attributes(revision: &str) -> Vec<(&'static str, &str)> {
    if revision.is_empty() {
        return Vec::new();
    }
    let (name, digest) = match revision.rsplit_once('@') {
        Some((name, digest)) if !name.is_empty() => (Some(name), digest),
        _ => (None, revision),
    };
    let commit = digest.strip_prefix("sha1:").unwrap_or(digest);
    let mut out = vec![("vcs.ref.head.revision", commit)];
    if let Some(name) = name {
        out.push(("vcs.ref.head.name", name));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flux_revision_annotations_are_recognised() {
        assert!(is_revision_annotation(
            "kustomize.toolkit.fluxcd.io/revision"
        ));
        assert!(is_revision_annotation("source.toolkit.fluxcd.io/revision"));
        assert!(!is_revision_annotation(
            "kustomize.toolkit.fluxcd.io/commit_status"
        ));
        assert!(!is_revision_annotation("example.com/revision"));
        assert!(!is_revision_annotation("revision"));
    }

    #[test]
    fn branch_and_commit_are_split() {
        assert_eq!(
            attributes("main@sha1:0bc35622f0a4fdb59b9285f5113d738bb7a8170d"),
            vec![
                (
                    "vcs.ref.head.revision",
                    "0bc35622f0a4fdb59b9285f5113d738bb7a8170d"
                ),
                ("vcs.ref.head.name", "main"),
            ]
        );
        // An OCI artifact's digest stays whole; a bare value is the revision itself.
        assert_eq!(
            attributes("v1.2.0@sha256:abc"),
            vec![
                ("vcs.ref.head.revision", "sha256:abc"),
                ("vcs.ref.head.name", "v1.2.0"),
            ]
        );
        assert_eq!(
            attributes("sha1:abc"),
            vec![("vcs.ref.head.revision", "abc")]
        );
        assert_eq!(
            attributes("@sha1:abc"),
            vec![("vcs.ref.head.revision", "@sha1:abc")]
        );
        assert!(attributes("").is_empty());
    }
}

//! Kubernetes controllers name what they create after themselves. When an object's owner is
//! unknown (it was deleted before a watch saw it, or only its events were recorded, and the
//! controller's "Created pod: X" is missing too), its name says which owner it probably had.
//! Such a guess is only a fallback, and spans that rely on it say so.

/// How a child's name extends its owner's: `<owner>-<suffix>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Suffix {
    /// `generateName`: a few random lowercase letters and digits (a pod's 5; a ReplicaSet's
    /// pod-template-hash, up to 10).
    Generated,
    /// A StatefulSet pod's ordinal: `web-0`, `web-12`.
    Ordinal,
    /// A CronJob's Job: the scheduled time in minutes since the epoch.
    ScheduledTime,
}

/// (child kind, owner kind, suffix), most likely owner first. Quoted from the controllers:
/// pkg/controller/controller_utils.go (pods of ReplicaSets, Jobs, DaemonSets), the statefulset
/// controller's getPodName, the deployment controller's ReplicaSet names, and the cronjob
/// controller's getJobName.
const CONVENTIONS: &[(&str, &str, Suffix)] = &[
    ("Pod", "ReplicaSet", Suffix::Generated),
    ("Pod", "StatefulSet", Suffix::Ordinal),
    ("Pod", "Job", Suffix::Generated),
    ("Pod", "DaemonSet", Suffix::Generated),
    ("ReplicaSet", "Deployment", Suffix::Generated),
    ("Job", "CronJob", Suffix::ScheduledTime),
];

fn fits(suffix: &str, kind: Suffix) -> bool {
    let digits = !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit());
    match kind {
        Suffix::Generated => {
            (1..=10).contains(&suffix.len())
                && suffix
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        }
        Suffix::Ordinal => digits && (suffix == "0" || !suffix.starts_with('0')),
        Suffix::ScheduledTime => digits && suffix.len() >= 8,
    }
}

/// The owners an object of `kind` named `name` may have had, by naming convention: (owner kind,
/// owner name), most likely first.
pub(crate) fn owner_candidates<'a>(
    kind: &'a str,
    name: &'a str,
) -> impl Iterator<Item = (&'static str, &'a str)> + 'a {
    let split = name.rsplit_once('-').filter(|(base, _)| !base.is_empty());
    CONVENTIONS
        .iter()
        .filter(move |(child, _, _)| *child == kind)
        .filter_map(move |&(_, owner, suffix)| {
            let (base, tail) = split?;
            fits(tail, suffix).then_some((owner, base))
        })
}

#[cfg(test)]
mod tests {
    use super::owner_candidates;

    fn candidates(kind: &str, name: &str) -> Vec<(&'static str, String)> {
        owner_candidates(kind, name)
            .map(|(k, n)| (k, n.to_string()))
            .collect()
    }

    #[test]
    fn pods_name_their_controllers() {
        assert_eq!(
            candidates("Pod", "web-5d4f8c7b9-x2x7k"),
            [
                ("ReplicaSet", "web-5d4f8c7b9".into()),
                ("Job", "web-5d4f8c7b9".into()),
                ("DaemonSet", "web-5d4f8c7b9".into())
            ]
        );
        assert_eq!(
            candidates("Pod", "db-12"),
            [
                ("ReplicaSet", "db".into()),
                ("StatefulSet", "db".into()),
                ("Job", "db".into()),
                ("DaemonSet", "db".into())
            ]
        );
        assert_eq!(candidates("ReplicaSet", "web-5d4f8c7b9")[0].1, "web");
        assert_eq!(
            candidates("Job", "nightly-29415780"),
            [("CronJob", "nightly".into())]
        );
    }

    #[test]
    fn names_that_follow_no_convention_give_nothing() {
        assert!(candidates("Pod", "standalone").is_empty());
        assert!(candidates("Pod", "-x2x7k").is_empty(), "no base");
        assert!(candidates("Pod", "web-").is_empty(), "no suffix");
        assert!(candidates("Pod", "web-Upper").is_empty());
        assert!(
            candidates("Pod", "web-01")
                .iter()
                .all(|(k, _)| *k != "StatefulSet")
        );
        assert!(
            candidates("Job", "backup-2024").is_empty(),
            "not a schedule"
        );
        assert!(
            candidates("Deployment", "web-abc").is_empty(),
            "roots have none"
        );
    }
}

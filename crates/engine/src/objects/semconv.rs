//! The OpenTelemetry semantic-convention attribute names of the Kubernetes kinds that have
//! them: an entry keeps its kind's row, looked up once, and every span on it reads the names.

/// The semantic-convention attribute names for an object kind's name and uid.
pub(crate) const SEMCONV: &[(&str, &str, &str)] = &[
    ("Pod", "k8s.pod.name", "k8s.pod.uid"),
    ("ReplicaSet", "k8s.replicaset.name", "k8s.replicaset.uid"),
    ("Deployment", "k8s.deployment.name", "k8s.deployment.uid"),
    ("StatefulSet", "k8s.statefulset.name", "k8s.statefulset.uid"),
    ("DaemonSet", "k8s.daemonset.name", "k8s.daemonset.uid"),
    ("Job", "k8s.job.name", "k8s.job.uid"),
    ("CronJob", "k8s.cronjob.name", "k8s.cronjob.uid"),
    ("Node", "k8s.node.name", "k8s.node.uid"),
    (
        "ReplicationController",
        "k8s.replicationcontroller.name",
        "k8s.replicationcontroller.uid",
    ),
    ("HorizontalPodAutoscaler", "k8s.hpa.name", "k8s.hpa.uid"),
    (
        "PersistentVolumeClaim",
        "k8s.persistentvolumeclaim.name",
        "k8s.persistentvolumeclaim.uid",
    ),
    ("Namespace", "k8s.namespace.name", "k8s.namespace.uid"),
];
/// The rows of Node and Namespace, which name a span's node and namespace however deep in its
/// owner chain (bits of the same number mark them named).
pub(crate) const NODE_BIT: u32 = 7;
pub(crate) const NAMESPACE_BIT: u32 = 11;

/// The row of [`SEMCONV`] for a kind, if it has semantic-convention attributes.
pub(super) fn semconv_slot(kind: &str) -> Option<u8> {
    SEMCONV
        .iter()
        .position(|(k, _, _)| *k == kind)
        .map(|i| i as u8)
}

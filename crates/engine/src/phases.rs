//! Where a pod's time went between its creation and Ready: the phases its creation span reports.
//!
//! A pod's own events (the scheduler's `FailedScheduling` and `Scheduled`, an autoscaler's
//! `TriggeredScaleUp` or Karpenter's `Nominated`, the kubelet's `Pulling`, `Pulled`, `Started`)
//! leave a few timestamps on the pod as they are placed ([`PodTimeline::note`]). When the span
//! of the controller's "Created pod" (or the creation derived from state) is emitted, they
//! become attributes of that span ([`PodTimeline::phases`]), so one span says where the pod's
//! time went:
//!
//! | phase | from → to | kind |
//! |---|---|---|
//! | `schedule` | creation → `Scheduled` | infra |
//! | `wait-node` | instead of `schedule`, when an autoscaler was asked for capacity | infra |
//! | `pull` | first `Pulling` → last `Pulled` (0 when every image was already present) | infra |
//! | `start` | last `Pulled` (else `Scheduled`) → last `Started` | infra |
//! | `ready` | last `Started` → the pod's `Ready` condition (probes, the app's start-up) | workload |
//!
//! Phases are attributes of the creation span, not spans of their own: a span stands for
//! something that happened (an event, a change), and the events that bound the phases are
//! already spans beside it; the attributes say how long each stretch took and whose it was.
//! The timeline is bounded ([`MAX_CONTAINERS`], [`MAX_REASON`]) and dropped once reported.

use std::fmt::Write as _;
use std::time::Duration;

use super::model::Attributes;
use super::time::Timestamp;

/// Containers whose pulls are listed one by one; others count in the totals only.
const MAX_CONTAINERS: usize = 8;
/// Bytes kept of the newest `FailedScheduling` message.
const MAX_REASON: usize = 256;

/// What a pod's events said about its way to Ready.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct PodTimeline {
    scheduled: Option<Timestamp>,
    /// `FailedScheduling` events seen, and the newest one's message.
    unschedulable: u32,
    unschedulable_reason: Option<Box<str>>,
    /// The reason of the first event saying new capacity was asked for this pod.
    capacity: Option<Box<str>>,
    pull_start: Option<Timestamp>,
    pull_end: Option<Timestamp>,
    started: Option<Timestamp>,
    containers: Vec<ContainerPull>,
}

#[derive(Debug, Clone, PartialEq)]
struct ContainerPull {
    name: Box<str>,
    pulling: Option<Timestamp>,
    /// When its image was there, and whether it already was.
    pulled: Option<(Timestamp, bool)>,
}

/// One stretch of a pod's way to Ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Phase {
    pub name: &'static str,
    pub duration: Duration,
    /// Whether the cluster (`infra`) or the workload's own start-up (`workload`) took the time.
    pub infra: bool,
}

/// The reasons [`PodTimeline::note`] reads: others leave no timeline behind.
pub(crate) fn is_phase_event(reason: &str) -> bool {
    matches!(
        reason,
        "Scheduled"
            | "FailedScheduling"
            | "TriggeredScaleUp"
            | "Nominated"
            | "Pulling"
            | "Pulled"
            | "Started"
    )
}

/// How long after its creation a pod's events still count towards its phases: a pod that has
/// been running for longer (say one listed at start-up) reports none, and keeps no timeline.
pub(crate) const PHASES_WITHIN: Duration = Duration::from_secs(30 * 60);

impl PodTimeline {
    /// Notes an event on the pod: `container` from its field path, `at` when it happened.
    /// Events that say nothing about the phases are ignored. Times keep the earliest (or, for
    /// ends, the latest) sighting, so noting an event twice changes nothing.
    pub fn note(&mut self, reason: &str, message: &str, container: Option<&str>, at: Timestamp) {
        match reason {
            "Scheduled" => self.scheduled = Some(self.scheduled.map_or(at, |s| s.min(at))),
            "FailedScheduling" => {
                self.unschedulable = self.unschedulable.saturating_add(1);
                self.unschedulable_reason = Some(bounded(message));
            }
            // cluster-autoscaler asked its cloud for a node; Karpenter nominated a NodeClaim.
            "TriggeredScaleUp" | "Nominated" if self.capacity.is_none() => {
                self.capacity = Some(reason.into());
            }
            "Pulling" => {
                self.pull_start = Some(self.pull_start.map_or(at, |s| s.min(at)));
                if let Some(c) = self.container(container) {
                    c.pulling = Some(c.pulling.map_or(at, |s| s.min(at)));
                }
            }
            "Pulled" => {
                self.pull_end = Some(self.pull_end.map_or(at, |e| e.max(at)));
                // The kubelet's words when it did not pull: "Container image ... already
                // present on machine".
                let cached = message.contains("already present");
                if let Some(c) = self.container(container) {
                    c.pulled = Some((at, cached));
                }
            }
            "Started" => self.started = Some(self.started.map_or(at, |s| s.max(at))),
            _ => {}
        }
    }

    fn container(&mut self, name: Option<&str>) -> Option<&mut ContainerPull> {
        let name = name?;
        if let Some(i) = self.containers.iter().position(|c| &*c.name == name) {
            return Some(&mut self.containers[i]);
        }
        if self.containers.len() >= MAX_CONTAINERS {
            return None;
        }
        self.containers.push(ContainerPull {
            name: bounded(name),
            pulling: None,
            pulled: None,
        });
        self.containers.last_mut()
    }

    /// The phases between `created` and `ready` (when the pod became Ready, if it did), in
    /// order. A phase whose bounds were not both seen is left out rather than guessed.
    pub fn phases(&self, created: Timestamp, ready: Option<Timestamp>) -> Vec<Phase> {
        let span = |from: Timestamp, to: Timestamp| to.since(from);
        let mut out = Vec::with_capacity(4);
        if let Some(scheduled) = self.scheduled {
            let name = if self.capacity.is_some() {
                "wait-node"
            } else {
                "schedule"
            };
            out.push(Phase {
                name,
                duration: span(created, scheduled),
                infra: true,
            });
        }
        let pulled = match (self.pull_start, self.pull_end) {
            (Some(from), Some(to)) => {
                out.push(Phase {
                    name: "pull",
                    duration: span(from, to),
                    infra: true,
                });
                Some(to)
            }
            // Every image already present: the kubelet says so without a `Pulling`.
            (None, Some(to)) => {
                out.push(Phase {
                    name: "pull",
                    duration: Duration::ZERO,
                    infra: true,
                });
                Some(to)
            }
            _ => None,
        };
        if let (Some(from), Some(started)) = (pulled.or(self.scheduled), self.started) {
            out.push(Phase {
                name: "start",
                duration: span(from, started),
                infra: true,
            });
        }
        if let (Some(started), Some(ready)) = (self.started, ready) {
            out.push(Phase {
                name: "ready",
                duration: span(started, ready),
                infra: false,
            });
        }
        out
    }

    /// The creation span's phase attributes: per phase `eventspan.phase.<name>.ms` and
    /// `.kind` (`infra` or `workload`), the totals, the scheduler's newest refusal, each
    /// container's pull, and `eventspan.phases`, the one-line summary the tree prints.
    pub fn push_attributes(
        &self,
        created: Timestamp,
        ready: Option<Timestamp>,
        attrs: &mut Attributes,
    ) {
        let phases = self.phases(created, ready);
        if phases.is_empty() && self.unschedulable == 0 {
            return;
        }
        let (mut infra, mut workload) = (Duration::ZERO, Duration::ZERO);
        for p in &phases {
            let (ms, kind) = PHASE_KEYS
                .iter()
                .find(|(name, _, _)| *name == p.name)
                .map(|(_, ms, kind)| (*ms, *kind))
                .expect("every phase has keys");
            attrs.push((ms, millis(p.duration).into()));
            attrs.push((kind, if p.infra { "infra" } else { "workload" }.into()));
            *if p.infra { &mut infra } else { &mut workload } += p.duration;
        }
        attrs.push(("eventspan.phase.infra.ms", millis(infra).into()));
        attrs.push(("eventspan.phase.workload.ms", millis(workload).into()));
        if let Some(reason) = &self.capacity {
            attrs.push(("eventspan.phase.wait-node.trigger", (&**reason).into()));
        }
        if self.unschedulable > 0 {
            attrs.push((
                "eventspan.phase.schedule.failures",
                i64::from(self.unschedulable).into(),
            ));
            if let Some(reason) = &self.unschedulable_reason {
                attrs.push(("eventspan.phase.schedule.reason", (&**reason).into()));
            }
        }
        if !self.containers.is_empty() {
            let pulls = self
                .containers
                .iter()
                .map(|c| match (c.pulling, c.pulled) {
                    (_, Some((_, true))) => format!("{} cached", c.name),
                    (Some(from), Some((to, false))) => {
                        format!("{} {}", c.name, seconds(to.since(from)))
                    }
                    _ => format!("{} ?", c.name),
                })
                .collect::<Vec<_>>()
                .join(", ");
            attrs.push(("eventspan.phase.pull.containers", pulls.as_str().into()));
        }
        attrs.push((
            "eventspan.phases",
            summary(&phases, self.unschedulable).as_str().into(),
        ));
    }

    /// Heap bytes held, for the object table's byte bound.
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.unschedulable_reason.as_ref().map_or(0, |r| r.len())
            + self.capacity.as_ref().map_or(0, |r| r.len())
            + self
                .containers
                .iter()
                .map(|c| std::mem::size_of::<ContainerPull>() + c.name.len())
                .sum::<usize>()
    }
}

/// Attribute keys per phase name (the keys are `&'static str`, as every span attribute's).
const PHASE_KEYS: &[(&str, &str, &str)] = &[
    (
        "schedule",
        "eventspan.phase.schedule.ms",
        "eventspan.phase.schedule.kind",
    ),
    (
        "wait-node",
        "eventspan.phase.wait-node.ms",
        "eventspan.phase.wait-node.kind",
    ),
    (
        "pull",
        "eventspan.phase.pull.ms",
        "eventspan.phase.pull.kind",
    ),
    (
        "start",
        "eventspan.phase.start.ms",
        "eventspan.phase.start.kind",
    ),
    (
        "ready",
        "eventspan.phase.ready.ms",
        "eventspan.phase.ready.kind",
    ),
];

/// `wait-node 41.2s · pull 12.0s · start 0.1s · ready 5.0s (infra 53.3s, workload 5.0s)`; for
/// a pod the scheduler only refused so far, `not scheduled (2 FailedScheduling)`.
fn summary(phases: &[Phase], unschedulable: u32) -> String {
    let mut out = String::new();
    if phases.is_empty() {
        let _ = write!(out, "not scheduled ({unschedulable} FailedScheduling)");
        return out;
    }
    let (mut infra, mut workload) = (Duration::ZERO, Duration::ZERO);
    for (i, p) in phases.iter().enumerate() {
        if i > 0 {
            out.push_str(" · ");
        }
        let _ = write!(out, "{} {}", p.name, seconds(p.duration));
        *if p.infra { &mut infra } else { &mut workload } += p.duration;
    }
    let _ = write!(
        out,
        " (infra {}, workload {})",
        seconds(infra),
        seconds(workload)
    );
    out
}

fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// At most [`MAX_REASON`] bytes, cut at a character boundary.
fn bounded(s: &str) -> Box<str> {
    let mut end = s.len().min(MAX_REASON);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AttrValue;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_unix_nanos(1_700_000_000_000_000_000 + ms * 1_000_000)
    }

    fn names(phases: &[Phase]) -> Vec<(&str, u128, bool)> {
        phases
            .iter()
            .map(|p| (p.name, p.duration.as_millis(), p.infra))
            .collect()
    }

    #[test]
    fn a_pod_that_pulled_its_image_splits_into_four_phases() {
        let mut tl = PodTimeline::default();
        tl.note("Scheduled", "Successfully assigned", None, t(300));
        tl.note("Pulling", "Pulling image", Some("app"), t(400));
        tl.note(
            "Pulled",
            "Successfully pulled image",
            Some("app"),
            t(12_400),
        );
        tl.note("Created", "Created container", Some("app"), t(12_450));
        tl.note("Started", "Started container", Some("app"), t(12_500));
        let phases = tl.phases(t(0), Some(t(17_500)));
        assert_eq!(
            names(&phases),
            [
                ("schedule", 300, true),
                ("pull", 12_000, true),
                ("start", 100, true),
                ("ready", 5_000, false)
            ]
        );
        assert_eq!(
            summary(&phases, 0),
            "schedule 0.3s · pull 12.0s · start 0.1s · ready 5.0s (infra 12.4s, workload 5.0s)"
        );
    }

    #[test]
    fn a_pod_that_waited_for_a_node_says_so_and_why() {
        let mut tl = PodTimeline::default();
        let refusal = "0/3 nodes are available: 3 Insufficient cpu.";
        tl.note("FailedScheduling", refusal, None, t(10));
        tl.note(
            "Nominated",
            "Pod should schedule on: nodeclaim/default-x",
            None,
            t(20),
        );
        tl.note("FailedScheduling", refusal, None, t(5_000));
        tl.note("Scheduled", "Successfully assigned", None, t(41_200));
        tl.note(
            "Pulled",
            "Container image \"nginx\" already present on machine",
            Some("app"),
            t(41_300),
        );
        tl.note("Started", "Started container", Some("app"), t(41_400));
        let mut attrs = Attributes::new();
        tl.push_attributes(t(0), None, &mut attrs);
        let get = |k: &str| {
            attrs
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            get("eventspan.phase.wait-node.ms"),
            Some(AttrValue::Int(41_200))
        );
        assert_eq!(get("eventspan.phase.wait-node.kind"), Some("infra".into()));
        assert_eq!(
            get("eventspan.phase.wait-node.trigger"),
            Some("Nominated".into())
        );
        assert_eq!(
            get("eventspan.phase.schedule.failures"),
            Some(AttrValue::Int(2))
        );
        assert_eq!(get("eventspan.phase.schedule.reason"), Some(refusal.into()));
        assert_eq!(get("eventspan.phase.pull.ms"), Some(AttrValue::Int(0)));
        assert_eq!(
            get("eventspan.phase.pull.containers"),
            Some("app cached".into())
        );
        // Not Ready yet: no readiness phase, and nothing is made up for it.
        assert_eq!(get("eventspan.phase.ready.ms"), None);
        assert_eq!(get("eventspan.phase.workload.ms"), Some(AttrValue::Int(0)));
    }

    #[test]
    fn noting_an_event_twice_changes_nothing_and_unknown_bounds_are_left_out() {
        let mut once = PodTimeline::default();
        once.note("Pulling", "", Some("app"), t(5));
        once.note("Started", "", Some("app"), t(9));
        let mut twice = once.clone();
        twice.note("Pulling", "", Some("app"), t(5));
        twice.note("Started", "", Some("app"), t(9));
        assert_eq!(once, twice);
        // No Scheduled and no Pulled: neither schedule, pull nor start can be told.
        assert!(
            once.phases(t(0), Some(t(20)))
                .iter()
                .all(|p| p.name == "ready")
        );
    }

    #[test]
    fn the_timeline_is_bounded_whatever_the_events_say() {
        let mut tl = PodTimeline::default();
        let long = "x".repeat(10_000);
        for i in 0..1_000 {
            tl.note("Pulling", "", Some(&format!("{long}{i}")), t(i));
            tl.note("FailedScheduling", &long, None, t(i));
        }
        assert!(tl.heap_bytes() < 8 * 1024, "{} bytes", tl.heap_bytes());
    }
}

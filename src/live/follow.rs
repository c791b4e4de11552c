//! The pure part of `eventspan watch`: which object and which of its changes is followed, what
//! the engine makes of that change so far, and how the command ends. No I/O and no clock: the
//! shell in `mod.rs` feeds what the watches deliver and asks.

use std::str::FromStr;
use std::time::Duration;

use rustc_hash::FxHashMap;

use crate::engine::ids::TraceId;
use crate::engine::model::{AttrRef, FinishedSpan, ObjectMeta, OutcomeKind};
use crate::engine::model::{Change, Observed};
use crate::engine::{Engine, EngineConfig};

/// The kinds whose rollouts can be followed: those `kubectl rollout status` follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    Deployment,
    StatefulSet,
    DaemonSet,
}

impl Workload {
    pub fn kind(self) -> &'static str {
        match self {
            Workload::Deployment => "Deployment",
            Workload::StatefulSet => "StatefulSet",
            Workload::DaemonSet => "DaemonSet",
        }
    }

    /// How kubectl names the kind in its messages (`daemon set "x" successfully rolled out`).
    pub fn noun(self) -> &'static str {
        match self {
            Workload::Deployment => "deployment",
            Workload::StatefulSet => "statefulset",
            Workload::DaemonSet => "daemon set",
        }
    }
}

/// `TYPE/NAME`, as kubectl takes it: `deployment/web`, `deploy/web`, `deployments.apps/web`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub workload: Workload,
    pub name: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("expected TYPE/NAME (deployment/web, statefulset/db, daemonset/agent), got {0:?}")]
    Shape(String),
    #[error(
        "cannot follow the rollout of {0:?}: only deployments, statefulsets and daemonsets roll out"
    )]
    Kind(String),
}

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(s: &str) -> Result<Target, TargetError> {
        let (kind, name) = s
            .split_once('/')
            .filter(|(k, n)| !k.is_empty() && !n.is_empty() && !n.contains('/'))
            .ok_or_else(|| TargetError::Shape(s.to_string()))?;
        let kind_lower = kind.to_ascii_lowercase();
        let bare = kind_lower.strip_suffix(".apps").unwrap_or(&kind_lower);
        let workload = match bare {
            "deployment" | "deployments" | "deploy" => Workload::Deployment,
            "statefulset" | "statefulsets" | "sts" => Workload::StatefulSet,
            "daemonset" | "daemonsets" | "ds" => Workload::DaemonSet,
            _ => return Err(TargetError::Kind(kind.to_string())),
        };
        Ok(Target {
            workload,
            name: name.to_string(),
        })
    }
}

/// Which change of the object is followed. A change in progress when the command starts (or
/// one that already failed) is followed; if the object is rolled out, its next one is. A newer
/// generation that supersedes the one followed is followed instead, as kubectl does.
#[derive(Clone, Debug)]
pub struct Follow {
    namespace: String,
    kind: &'static str,
    uid: String,
    /// The oldest generation that counts as the change followed.
    from_generation: i64,
    /// The newest generation seen.
    newest: i64,
}

/// The followed object was deleted.
#[derive(Debug, PartialEq, Eq)]
pub struct Deleted;

impl Follow {
    /// From the object as first read.
    pub fn start(target: &Target, meta: &ObjectMeta) -> Follow {
        let rolled_out = meta.state.as_ref().is_some_and(|s| {
            s.observed_generation >= meta.generation
                && s.outcome
                    .as_ref()
                    .is_some_and(|o| o.kind == OutcomeKind::Done)
        });
        Follow {
            namespace: meta.namespace.clone(),
            kind: target.workload.kind(),
            uid: meta.uid.clone(),
            from_generation: meta.generation + i64::from(rolled_out),
            newest: meta.generation,
        }
    }

    /// Takes note of a change of the followed object; other changes are ignored.
    pub fn observe(&mut self, change: &Change) -> Result<(), Deleted> {
        match change {
            Change::Upsert(m) if self.is_followed(m) => {
                self.newest = self.newest.max(m.generation);
                Ok(())
            }
            Change::Delete(m) if self.is_followed(m) => Err(Deleted),
            _ => Ok(()),
        }
    }

    fn is_followed(&self, m: &ObjectMeta) -> bool {
        m.uid == self.uid && m.kind == self.kind && m.namespace == self.namespace
    }

    /// The generation followed, once its change has begun.
    pub fn generation(&self) -> Option<i64> {
        (self.newest >= self.from_generation).then_some(self.newest)
    }

    /// The trace of the followed change, once it has begun.
    pub fn trace(&self) -> Option<TraceId> {
        self.generation().map(|g| TraceId::for_change(&self.uid, g))
    }
}

/// What the followed change's trace says so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    InProgress,
    Done,
    Failed { reason: String, message: String },
}

/// Read from the root span's outcome: the engine ends a rollout's root when the root object's
/// status says the generation is rolled out, and marks it failed on `ProgressDeadlineExceeded`.
pub fn verdict(spans: &[FinishedSpan]) -> Verdict {
    let Some(root) = spans.iter().find(|s| s.parent.is_none()) else {
        return Verdict::InProgress;
    };
    let text = |name| match root.attribute(name) {
        Some(AttrRef::Str(s)) => s.to_string(),
        _ => String::new(),
    };
    match text("eventspan.outcome").as_str() {
        "done" => Verdict::Done,
        "failed" => Verdict::Failed {
            reason: text("eventspan.outcome.reason"),
            message: text("eventspan.outcome.message"),
        },
        _ => Verdict::InProgress,
    }
}

/// How the command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    Done,
    Failed {
        reason: String,
        message: String,
    },
    TimedOut,
    Deleted,
    /// Ctrl-C or SIGTERM.
    Interrupted,
}

impl Ending {
    /// `kubectl rollout status`'s: 0 when rolled out, 1 when it failed, timed out or the object
    /// went away; 130 (a shell's code for SIGINT) when interrupted.
    pub fn exit_code(&self) -> u8 {
        match self {
            Ending::Done => 0,
            Ending::Failed { .. } | Ending::TimedOut | Ending::Deleted => 1,
            Ending::Interrupted => 130,
        }
    }

    /// The last line, worded as kubectl words it.
    pub fn message(&self, target: &Target) -> String {
        let (noun, name) = (target.workload.noun(), &target.name);
        match self {
            Ending::Done => format!("{noun} {name:?} successfully rolled out"),
            Ending::Failed { reason, .. } if reason == "ProgressDeadlineExceeded" => {
                format!("error: {noun} {name:?} exceeded its progress deadline")
            }
            Ending::Failed { reason, message } => {
                format!("error: {noun} {name:?} failed: {reason}: {message}")
            }
            Ending::TimedOut => "error: timed out waiting for the condition".into(),
            Ending::Deleted => "error: object has been deleted".into(),
            Ending::Interrupted => "interrupted".into(),
        }
    }
}

/// Inputs of a change are kept at most this many: each preview replays them all.
pub const MAX_INPUTS: usize = 200_000;
/// Until the followed change begins, events older than this are dropped: they belong to earlier
/// changes. Controllers' events can arrive before the object update that caused them.
const PRE_CHANGE_EVENTS: Duration = Duration::from_secs(60);
/// The log is first compacted at this length, then whenever it has doubled since.
const COMPACT_FROM: usize = 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "more than {MAX_INPUTS} objects and events in the namespace during this change: too busy for a live view (record it and replay it instead)"
)]
pub struct TooManyInputs;

/// What the watches delivered, in order, for the preview to replay. Until the followed change
/// begins only the newest version of each live object and the last minute of events are kept,
/// so waiting for a change in a busy namespace does not grow memory.
#[derive(Default)]
pub struct Inputs {
    log: Vec<Observed>,
    compacted: usize,
}

impl Inputs {
    pub fn push(&mut self, input: Observed, change_begun: bool) -> Result<(), TooManyInputs> {
        if self.log.len() >= MAX_INPUTS {
            return Err(TooManyInputs);
        }
        self.log.push(input);
        if !change_begun && self.log.len() >= 2 * self.compacted.max(COMPACT_FROM / 2) {
            self.compact();
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.log.len()
    }

    pub fn is_empty(&self) -> bool {
        self.log.is_empty()
    }

    fn compact(&mut self) {
        let newest = self.log.iter().filter_map(|o| o.observed_at).max();
        let horizon = newest.map(|t| t.saturating_sub(PRE_CHANGE_EVENTS));
        let mut last: FxHashMap<(&str, &str), usize> = FxHashMap::default();
        for (i, input) in self.log.iter().enumerate() {
            if let Change::Upsert(m) | Change::Delete(m) = &input.change {
                last.insert((&m.namespace, &m.uid), i);
            }
        }
        let keep: Vec<bool> = self
            .log
            .iter()
            .enumerate()
            .map(|(i, input)| match &input.change {
                Change::Upsert(m) => last.get(&(&*m.namespace, &*m.uid)) == Some(&i),
                Change::Event(e) => {
                    let at = input.observed_at.unwrap_or(e.last.at);
                    horizon.is_none_or(|h| at >= h)
                }
                Change::Delete(_) | Change::Ignore => false,
            })
            .collect();
        let mut keep = keep.into_iter();
        self.log.retain(|_| keep.next().unwrap_or(false));
        self.compacted = self.log.len();
    }
}

/// The followed trace as it stands: every input so far replayed through a fresh engine, which
/// is then flushed, so the spans still open come out too (a rollout in progress has its root
/// `pending`), with the phases and outcomes `eventspan replay` would show for the same input.
/// The engine is deterministic, so each preview extends the last one.
pub fn preview(inputs: &Inputs, trace: TraceId) -> Vec<FinishedSpan> {
    let mut engine = Engine::new(EngineConfig::default());
    for input in &inputs.log {
        engine.apply(input.clone());
    }
    engine.finish();
    engine
        .drain_finished()
        .filter(|s| s.trace_id == trace)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::WireObject;

    /// A real rollout (tests/scenarios/recorded): created, its image updated, scaled down.
    const DEPLOYMENT: &str = include_str!("../../tests/scenarios/recorded/deployment.jsonl");
    const WEB: &str = "c3920984-8ad5-4791-a43f-c25943a5e0dc";
    /// A real rollout whose pod never becomes Ready, past its progress deadline.
    const DEADLINE: &str = include_str!("../../tests/scenarios/recorded/deadline.jsonl");
    const STUCK: &str = "0763e995-4ca0-4c68-b396-fffc8a30ff60";

    fn inputs_of(recording: &str) -> Vec<Observed> {
        let mut changes = Vec::new();
        for line in recording.lines() {
            serde_json::from_str::<WireObject>(line)
                .unwrap()
                .into_changes(&mut changes);
        }
        changes.into_iter().map(Result::unwrap).collect()
    }

    fn target(s: &str) -> Target {
        s.parse().unwrap()
    }

    fn is_version(input: &Observed, uid: &str, generation: i64) -> bool {
        matches!(&input.change, Change::Upsert(m) if m.uid == uid && m.generation == generation)
    }

    fn meta(input: &Observed) -> &ObjectMeta {
        match &input.change {
            Change::Upsert(m) => m,
            _ => panic!("an object"),
        }
    }

    fn replayed(recording: &str, trace: TraceId) -> String {
        let spans = crate::replay::replay(recording, EngineConfig::default()).spans;
        let spans: Vec<FinishedSpan> = spans.into_iter().filter(|s| s.trace_id == trace).collect();
        crate::replay::tree::render(&spans)
    }

    #[test]
    fn targets_are_named_as_kubectl_names_them() {
        for (s, workload) in [
            ("deployment/web", Workload::Deployment),
            ("deploy/web", Workload::Deployment),
            ("deployments.apps/web", Workload::Deployment),
            ("Deployment/web", Workload::Deployment),
            ("sts/web", Workload::StatefulSet),
            ("daemonsets/web", Workload::DaemonSet),
        ] {
            let expected = Target {
                workload,
                name: "web".into(),
            };
            assert_eq!(s.parse::<Target>(), Ok(expected), "{s}");
        }
        assert!(matches!(
            "pod/web".parse::<Target>(),
            Err(TargetError::Kind(_))
        ));
        for bad in ["web", "deployment/", "/web", "deployment/a/b"] {
            let parsed = bad.parse::<Target>();
            assert!(matches!(parsed, Err(TargetError::Shape(_))), "{bad}");
        }
    }

    #[test]
    fn a_rolled_out_object_is_followed_from_its_next_generation() {
        let inputs = inputs_of(DEPLOYMENT);
        let web = target("deployment/web");
        // The last version of generation 1: rolled out.
        let gen1 = inputs.iter().rev().find(|i| is_version(i, WEB, 1)).unwrap();
        let mut follow = Follow::start(&web, meta(gen1));
        assert_eq!(follow.trace(), None, "generation 1 is over");
        // Its first version: in progress, so followed.
        let first = inputs.iter().find(|i| is_version(i, WEB, 1)).unwrap();
        assert_eq!(
            Follow::start(&web, meta(first)).trace(),
            Some(TraceId::for_change(WEB, 1))
        );
        let gen2 = inputs.iter().find(|i| is_version(i, WEB, 2)).unwrap();
        follow.observe(&gen2.change).unwrap();
        assert_eq!(follow.generation(), Some(2));
        assert_eq!(follow.trace(), Some(TraceId::for_change(WEB, 2)));
        // A newer generation supersedes it.
        let gen3 = inputs.iter().find(|i| is_version(i, WEB, 3)).unwrap();
        follow.observe(&gen3.change).unwrap();
        assert_eq!(follow.trace(), Some(TraceId::for_change(WEB, 3)));
        // Another object of the same name (another uid) is not the one followed.
        let mut other = meta(gen3).clone();
        other.uid = "another".into();
        other.generation = 9;
        follow
            .observe(&Change::Upsert(Box::new(other.clone())))
            .unwrap();
        assert_eq!(follow.generation(), Some(3));
        assert_eq!(follow.observe(&Change::Delete(Box::new(other))), Ok(()));
        let deleted = Change::Delete(Box::new(meta(gen3).clone()));
        assert_eq!(follow.observe(&deleted), Err(Deleted));
    }

    #[test]
    fn the_preview_is_pending_until_the_rollout_is_done_and_then_is_the_replay() {
        let trace = TraceId::for_change(WEB, 2);
        let mut follow = None;
        let mut inputs = Inputs::default();
        let mut verdicts = Vec::new();
        for input in inputs_of(DEPLOYMENT) {
            if follow.is_none() && is_version(&input, WEB, 2) {
                follow = Some(Follow::start(&target("deploy/web"), meta(&input)));
            }
            let begun = follow.as_ref().is_some_and(|f| f.trace() == Some(trace));
            inputs.push(input, begun).unwrap();
            if begun {
                verdicts.push(verdict(&preview(&inputs, trace)));
            }
        }
        assert_eq!(verdicts.first(), Some(&Verdict::InProgress));
        let done_at = verdicts.iter().position(|v| *v == Verdict::Done).unwrap();
        assert!(done_at > 0);
        assert!(
            verdicts[done_at..].iter().all(|v| *v == Verdict::Done),
            "once done, later input does not undo it"
        );
        // Everything seen: what replay prints for the same recording.
        let spans = preview(&inputs, trace);
        assert!(spans.len() > 20, "{}", crate::replay::tree::render(&spans));
        assert_eq!(
            crate::replay::tree::render(&spans),
            replayed(DEPLOYMENT, trace)
        );
    }

    #[test]
    fn a_rollout_past_its_deadline_fails_the_command() {
        let all = inputs_of(DEADLINE);
        let trace = TraceId::for_change(STUCK, 1);
        let first = all.iter().find(|i| is_version(i, STUCK, 1)).unwrap();
        let follow = Follow::start(&target("deployment/stuck"), meta(first));
        assert_eq!(follow.trace(), Some(trace), "in progress: followed");
        let mut inputs = Inputs::default();
        for input in all {
            inputs.push(input, true).unwrap();
        }
        let spans = preview(&inputs, trace);
        let Verdict::Failed { reason, message } = verdict(&spans) else {
            panic!("{}", crate::replay::tree::render(&spans));
        };
        assert_eq!(reason, "ProgressDeadlineExceeded");
        assert!(!message.is_empty());
        let ending = Ending::Failed { reason, message };
        assert_eq!(ending.exit_code(), 1);
        assert_eq!(
            ending.message(&target("deployment/stuck")),
            "error: deployment \"stuck\" exceeded its progress deadline"
        );
        assert_eq!(
            crate::replay::tree::render(&spans),
            replayed(DEADLINE, trace)
        );
    }

    #[test]
    fn endings_have_rollout_status_exit_codes_and_words() {
        assert_eq!(verdict(&[]), Verdict::InProgress, "no trace yet");
        let web = target("deployment/web");
        assert_eq!(Ending::Done.exit_code(), 0);
        assert_eq!(
            Ending::Done.message(&web),
            "deployment \"web\" successfully rolled out"
        );
        assert_eq!(
            Ending::Done.message(&target("ds/agent")),
            "daemon set \"agent\" successfully rolled out"
        );
        assert_eq!(Ending::TimedOut.exit_code(), 1);
        assert_eq!(
            Ending::TimedOut.message(&web),
            "error: timed out waiting for the condition"
        );
        assert_eq!(Ending::Deleted.exit_code(), 1);
        assert_eq!(Ending::Interrupted.exit_code(), 130);
        let other = Ending::Failed {
            reason: "Boom".into(),
            message: "it broke".into(),
        };
        assert_eq!(other.exit_code(), 1);
        assert_eq!(
            other.message(&web),
            "error: deployment \"web\" failed: Boom: it broke"
        );
    }

    #[test]
    fn before_the_change_only_live_objects_and_recent_events_are_kept() {
        let all = inputs_of(DEPLOYMENT);
        let is_event = |o: &&Observed| matches!(o.change, Change::Event(_));
        let per_round = all.iter().filter(is_event).count();
        let objects: std::collections::HashSet<&str> = all
            .iter()
            .filter_map(|o| match &o.change {
                Change::Upsert(m) => Some(m.uid.as_str()),
                _ => None,
            })
            .collect();
        let mut inputs = Inputs::default();
        // The recording over and over, a minute apart: a busy namespace waiting for a change.
        for round in 0..40 {
            for input in &all {
                let mut input = input.clone();
                input.observed_at = input
                    .observed_at
                    .map(|t| t.saturating_add(Duration::from_secs(61 * round)));
                inputs.push(input, false).unwrap();
            }
            let bound = 2 * (objects.len() + 2 * per_round).max(COMPACT_FROM / 2);
            assert!(inputs.len() <= bound, "{} kept", inputs.len());
        }
        inputs.compact();
        let events = inputs.log.iter().filter(is_event).count();
        assert!(
            events <= per_round,
            "{events} events kept: only the last minute's"
        );
        assert!(events > 0, "the last minute's are kept");
        for uid in &objects {
            let versions = inputs
                .log
                .iter()
                .filter(|o| matches!(&o.change, Change::Upsert(m) if m.uid == *uid))
                .count();
            assert!(versions <= 1, "{uid}: {versions} versions");
        }
        // The Deployment lives on, its pods of the old ReplicaSets were deleted.
        let web_kept = inputs.log.iter().any(|o| is_version(o, WEB, 3));
        assert!(web_kept, "the newest version of a live object is kept");
    }

    #[test]
    fn the_inputs_of_a_change_are_bounded() {
        let mut inputs = Inputs::default();
        let tick = Observed {
            change: Change::Ignore,
            observed_at: None,
        };
        for _ in 0..MAX_INPUTS {
            inputs.push(tick.clone(), true).unwrap();
        }
        assert_eq!(inputs.push(tick, true), Err(TooManyInputs));
    }
}

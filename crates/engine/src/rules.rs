//! What controllers say about the objects they act on, in one table.
//!
//! Some controllers report the child they acted on only in the message of an event on the parent
//! (`Created pod: web-7d4b9c-x2x` on a ReplicaSet). Each rule turns such a message into the child's
//! identity, so the child's own events can be parented on the span that acted on it. To support a
//! new controller, add a row to [`RULES`]; the messages are quoted from the Kubernetes sources.

/// What a matched message tells us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// The involved object acted on a child of this kind, named by the `{child}` placeholder.
    Child(&'static str),
    /// The involved object (a Pod) was bound to the node named by `{child}`.
    Node,
    /// An autoscaler nominated the cluster-scoped object of this kind, named by `{child}`, to
    /// bring up the capacity the involved Pod waits for (Karpenter's NodeClaim). The nominee is
    /// owned elsewhere (its NodePool), but its events say where the pod's wait went: they are
    /// placed under the nomination, in the pod's trace, not under the owner.
    Nominee(&'static str),
}

/// What the controller did to the child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Created it, a new object: the child's own events follow, so they wait for this message,
    /// and the name cannot mean an older object that had it.
    Create,
    /// Scaled it up, creating it if needed (a Deployment's ReplicaSet; on a rollback an old one):
    /// its events wait for this message like a creation's.
    ScaleUp,
    /// Scaled it down: the child deletes some of its own children next.
    ScaleDown,
    /// Deleted it: the child's last events (a pod's `Killing`) follow.
    Delete,
    /// Anything else (scaled it, noticed it finished).
    Other,
}

impl Action {
    /// A distinct bit per action, to remember which ones an object has seen.
    pub const fn bit(self) -> u8 {
        match self {
            Action::Create => 1,
            Action::ScaleUp => 2,
            Action::ScaleDown => 4,
            Action::Delete => 8,
            Action::Other => 16,
        }
    }
}

#[derive(Debug)]
pub struct Rule {
    /// The kind of the event's involved object, or `None` for any kind.
    pub involved_kind: Option<&'static str>,
    pub reason: &'static str,
    /// Literal text with placeholders: `{child}` captures a name, `{_}` skips a word, `{*}` skips
    /// the rest.
    pub pattern: Pattern,
    pub effect: Effect,
    pub action: Action,
}

use Action::{Create, Delete, Other, ScaleDown, ScaleUp};

const POD: Effect = Effect::Child("Pod");
const REPLICA_SET: Effect = Effect::Child("ReplicaSet");
const JOB: Effect = Effect::Child("Job");
const CLAIM: Effect = Effect::Child("PersistentVolumeClaim");
const NODE_CLAIM: Effect = Effect::Nominee("NodeClaim");

#[rustfmt::skip]
pub const RULES: &[Rule] = &[
    // pkg/controller/deployment/sync.go (1.29+ says "from N", older releases do not).
    rule(Some("Deployment"), "ScalingReplicaSet", "Scaled up replica set {child} from {_} to {_}", REPLICA_SET, ScaleUp),
    rule(Some("Deployment"), "ScalingReplicaSet", "Scaled down replica set {child} from {_} to {_}", REPLICA_SET, ScaleDown),
    rule(Some("Deployment"), "ScalingReplicaSet", "Scaled up replica set {child} to {_}", REPLICA_SET, ScaleUp),
    rule(Some("Deployment"), "ScalingReplicaSet", "Scaled down replica set {child} to {_}", REPLICA_SET, ScaleDown),
    // eventspan's own, for a scaling step derived from the ReplicaSet's pods (see `derive.rs`): the
    // replica counts are not known from them. Last, so the controller's messages match first.
    rule(Some("Deployment"), "ScalingReplicaSet", "Scaled up replica set {child}", REPLICA_SET, ScaleUp),
    rule(Some("Deployment"), "ScalingReplicaSet", "Scaled down replica set {child}", REPLICA_SET, ScaleDown),
    // pkg/controller/controller_utils.go RealPodControl: the ReplicaSet, ReplicationController,
    // Job and DaemonSet controllers all create and delete pods through it.
    rule(None, "SuccessfulCreate", "Created pod: {child}", POD, Create),
    rule(None, "SuccessfulDelete", "Deleted pod: {child}", POD, Delete),
    // pkg/controller/statefulset/stateful_pod_control.go recordPodEvent / recordClaimEvent.
    rule(Some("StatefulSet"), "SuccessfulCreate", "create Pod {child} in StatefulSet {_} successful", POD, Create),
    rule(Some("StatefulSet"), "SuccessfulDelete", "delete Pod {child} in StatefulSet {_} successful", POD, Delete),
    rule(Some("StatefulSet"), "SuccessfulUpdate", "update Pod {child} in StatefulSet {_} successful", POD, Other),
    rule(Some("StatefulSet"), "SuccessfulCreate", "create Claim {child} Pod {_} in StatefulSet {_} success", CLAIM, Create),
    // pkg/controller/cronjob/cronjob_controllerv2.go.
    rule(Some("CronJob"), "SuccessfulCreate", "Created job {child}", JOB, Create),
    rule(Some("CronJob"), "SawCompletedJob", "Saw completed job: {child}, condition: {*}", JOB, Other),
    rule(Some("CronJob"), "SuccessfulDelete", "Deleted job {child}", JOB, Delete),
    rule(Some("CronJob"), "MissingJob", "Active job went missing: {child}", JOB, Other),
    // pkg/scheduler/schedule_one.go.
    rule(Some("Pod"), "Scheduled", "Successfully assigned {_} to {child}", Effect::Node, Other),
    // Karpenter pkg/controllers/provisioning/scheduling/events.go NominatePodEvent: a NodeClaim
    // (being launched, or in flight), and with it the Node once one exists.
    rule(Some("Pod"), "Nominated", "Pod should schedule on: nodeclaim/{child}", NODE_CLAIM, Other),
    rule(Some("Pod"), "Nominated", "Pod should schedule on: nodeclaim/{child}, node/{_}", NODE_CLAIM, Other),
];

/// Whether objects of this kind are nominated for pods ([`Effect::Nominee`]).
pub fn is_nominee(kind: &str) -> bool {
    RULES
        .iter()
        .any(|r| matches!(r.effect, Effect::Nominee(k) if k == kind))
}

/// The events by which a nominee says that the capacity it stands for is up, so that the pod
/// nominated to it can land: (nominee kind, reason). Karpenter's NodeClaim condition
/// `Initialized` (pkg/apis/v1/nodeclaim_status.go: registered, started up, startup taints gone);
/// its later `Ready` only repeats that for the NodeClaim's own status.
const PROVISIONED: &[(&str, &str)] = &[("NodeClaim", "Initialized")];

/// Whether this event on a nominee says its capacity is up ([`PROVISIONED`]).
pub fn is_provisioned(kind: &str, reason: &str) -> bool {
    PROVISIONED.iter().any(|&(k, r)| k == kind && r == reason)
}

/// What a cluster autoscaler said about a pod that waits for capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapacityVerdict {
    /// It asked for a node: the pod's wait is for the cluster to grow.
    Requested,
    /// No node it could add would fit the pod: the pod waits for nothing the autoscaler will do.
    Refused,
}

/// cluster-autoscaler's events on a pod (core/scaleup/orchestrator: `TriggeredScaleUp`, "pod
/// triggered scale-up: [{group 1->2 (max: 10)}]"; `NotTriggerScaleUp`, "pod didn't trigger
/// scale-up (it wouldn't fit if a new node is added): ..."). Both are Normal events, so the
/// refusal is an error only by this table. Karpenter's decision is its `Nominated` above, and its
/// refusal a Warning `FailedScheduling`.
pub fn capacity_verdict(kind: &str, reason: &str) -> Option<CapacityVerdict> {
    match (kind, reason) {
        ("Pod", "TriggeredScaleUp") => Some(CapacityVerdict::Requested),
        ("Pod", "NotTriggerScaleUp") => Some(CapacityVerdict::Refused),
        _ => None,
    }
}

/// Events that follow an action the object's owner announces on it: (kind, reason, action).
/// Such an event waits for the announcement, as it belongs under it. (Only where the owner does
/// announce that action on that kind: a Job's pods are deleted without a Deployment's say.)
#[rustfmt::skip]
const AFTERMATH: &[(&str, &str, Action)] = &[
    // The kubelet stops the containers of a pod its controller deleted.
    ("Pod", "Killing", Delete),
    // A ReplicaSet creates and deletes pods after its Deployment scaled it.
    ("ReplicaSet", "SuccessfulCreate", ScaleUp),
    ("ReplicaSet", "SuccessfulDelete", ScaleDown),
];

const fn rule(
    involved_kind: Option<&'static str>,
    reason: &'static str,
    pattern: &'static str,
    effect: Effect,
    action: Action,
) -> Rule {
    Rule {
        involved_kind,
        reason,
        pattern: Pattern::compile(pattern),
        effect,
        action,
    }
}

/// A piece of a pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Literal(&'static str),
    /// `{child}`: a word, captured.
    Child,
    /// `{_}`: a word, skipped.
    Word,
    /// `{*}`: the rest of the text, whatever it is (last only).
    Rest,
}

const MAX_PARTS: usize = 12;

/// A pattern split into its parts when the table is compiled: matching runs for every event
/// that has a rule's reason, and should not parse the pattern each time.
#[derive(Debug)]
pub struct Pattern {
    parts: [Part; MAX_PARTS],
    len: usize,
}

impl Pattern {
    /// Splits a pattern; a malformed one (an unclosed or unknown placeholder, `{*}` not last)
    /// fails the build.
    const fn compile(text: &'static str) -> Pattern {
        let mut parts = [Part::Rest; MAX_PARTS];
        let mut len = 0;
        let mut rest = text;
        while !rest.is_empty() {
            let bytes = rest.as_bytes();
            let mut open = 0;
            while open < bytes.len() && bytes[open] != b'{' {
                open += 1;
            }
            if open > 0 {
                let (literal, after) = rest.split_at(open);
                parts[len] = Part::Literal(literal);
                len += 1;
                rest = after;
                continue;
            }
            let mut close = 1;
            while close < bytes.len() && bytes[close] != b'}' {
                close += 1;
            }
            assert!(close < bytes.len(), "unclosed placeholder");
            let (placeholder, after) = rest.split_at(close + 1);
            parts[len] = match placeholder.as_bytes() {
                b"{child}" => Part::Child,
                b"{_}" => Part::Word,
                b"{*}" => {
                    assert!(after.is_empty(), "{{*}} must end a pattern");
                    Part::Rest
                }
                _ => panic!("unknown placeholder"),
            };
            len += 1;
            rest = after;
        }
        Pattern { parts, len }
    }

    fn parts(&self) -> &[Part] {
        &self.parts[..self.len]
    }
}

/// Rules announcing `action` on children of `kind`; a creation is announced by scaling up too.
fn rules_for(kind: &str, action: Action) -> impl Iterator<Item = &'static Rule> + '_ {
    RULES.iter().filter(move |r| {
        let same = r.action == action || (action == Create && r.action == ScaleUp);
        same && matches!(r.effect, Effect::Child(k) if k == kind)
    })
}

/// Whether a controller of `owner_kind` announces doing `action` to objects of `kind`.
pub fn announces(owner_kind: &str, kind: &str, action: Action) -> bool {
    rules_for(kind, action).any(|r| r.involved_kind.is_none_or(|k| k == owner_kind))
}

/// Whether some controller announces creating objects of `kind`.
pub fn creation_announced(kind: &str) -> bool {
    rules_for(kind, Create).next().is_some()
}

/// The controllers that create pods through RealPodControl ("Created pod: X"): a creation is
/// derived only for their pods, never for an arbitrary owner (a pod "owned" by a pod).
const POD_CONTROLLERS: &[&str] = &["ReplicaSet", "ReplicationController", "Job", "DaemonSet"];

/// What the controller of `owner_kind` says when it creates a pod: the message of the event
/// that did not come, for a creation derived from the pod itself (see `place.rs`). Rendered
/// from the rule that reads it back, so the derived event is placed like the real one.
pub fn pod_creation_message(owner_kind: &str, owner: &str, pod: &str) -> Option<String> {
    pod_action_message(("SuccessfulCreate", Create), owner_kind, owner, pod)
}

/// What the controller of `owner_kind` says when it deletes a pod, likewise (see `derive.rs`).
pub fn pod_deletion_message(owner_kind: &str, owner: &str, pod: &str) -> Option<String> {
    pod_action_message(("SuccessfulDelete", Delete), owner_kind, owner, pod)
}

fn pod_action_message(
    (reason, action): (&str, Action),
    owner_kind: &str,
    owner: &str,
    pod: &str,
) -> Option<String> {
    let rule = RULES
        .iter()
        .filter(|r| r.reason == reason && r.action == action && r.effect == POD)
        .find(|r| r.involved_kind == Some(owner_kind))
        .or_else(|| {
            let generic = RULES
                .iter()
                .find(|r| r.reason == reason && r.effect == POD && r.involved_kind.is_none());
            generic.filter(|_| POD_CONTROLLERS.contains(&owner_kind))
        })?;
    let mut message = String::new();
    for part in rule.pattern.parts() {
        match part {
            Part::Literal(text) => message.push_str(text),
            Part::Child => message.push_str(pod),
            Part::Word => message.push_str(owner),
            Part::Rest => {}
        }
    }
    Some(message)
}

/// How many pods a Deployment's scale-up of a ReplicaSet asks for: "Scaled up replica set X
/// from 1 to 2" asks for 1. `None` where the message does not say: older releases' "to N", and
/// a step derived from state.
pub fn scale_up_count(message: &str) -> Option<u32> {
    let rest = message.strip_prefix("Scaled up replica set ")?;
    let (_, counts) = rest.rsplit_once(" from ")?;
    let (from, to) = counts.split_once(" to ")?;
    let (from, to): (u32, u32) = (from.parse().ok()?, to.parse().ok()?);
    to.checked_sub(from)
}

/// The message of a scale-up of the ReplicaSet `replica_set` by a Deployment, derived because
/// the deployment controller's own had not come: the one rule of its reason without counts.
pub fn derived_scale_up_message(replica_set: &str) -> String {
    format!("Scaled up replica set {replica_set}")
}

/// The message of a scale-down derived likewise.
pub fn derived_scale_down_message(replica_set: &str) -> String {
    format!("Scaled down replica set {replica_set}")
}

/// The action an event on an object of `kind` follows, if any.
pub fn follows(kind: &str, reason: &str) -> Option<Action> {
    AFTERMATH
        .iter()
        .find(|(k, r, _)| *k == kind && *r == reason)
        .map(|(_, _, action)| *action)
}

/// Whether the event is a controller saying it acted on a child.
pub fn names_child(event: &super::model::EventRecord) -> bool {
    apply(&event.involved.kind, &event.reason, &event.message)
        .is_some_and(|m| matches!(m.effect, Effect::Child(_)))
}

/// A rule that matched, with the name it captured.
#[derive(Debug, PartialEq, Eq)]
pub struct Match<'a> {
    pub effect: Effect,
    pub name: &'a str,
    pub action: Action,
}

/// Applies the first matching rule.
pub fn apply<'a>(involved_kind: &str, reason: &str, message: &'a str) -> Option<Match<'a>> {
    // After ten similar events on one object within ten minutes the recorder publishes one
    // Event with this prefix and the newest message, whose count grows with each further one.
    let message = message.strip_prefix(COMBINED).unwrap_or(message);
    RULES
        .iter()
        .filter(|r| r.reason == reason && r.involved_kind.is_none_or(|k| k == involved_kind))
        .find_map(|r| {
            capture(&r.pattern, message).map(|name| Match {
                effect: r.effect,
                name,
                action: r.action,
            })
        })
}

/// client-go's EventAggregator prefix (tools/record/events_cache.go).
const COMBINED: &str = "(combined from similar events): ";

/// Matches `text` against a pattern, returning what `{child}` captured. Literal text matches
/// regardless of ASCII case: controllers changed the case of their verbs between releases
/// (`create Pod X` became `Create Pod X` in Kubernetes 1.3x).
fn capture<'a>(pattern: &Pattern, text: &'a str) -> Option<&'a str> {
    let parts = pattern.parts();
    let mut child = None;
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let placeholder = match *part {
            Part::Literal(literal) if last => {
                return eq_ignore_case(rest, literal).then_some(child?);
            }
            Part::Literal(literal) => {
                rest = strip_prefix_ignore_case(rest, literal)?;
                continue;
            }
            Part::Rest => return child,
            placeholder => placeholder,
        };
        // A word runs to the next literal of the pattern, or to the end.
        let end = match parts.get(i + 1) {
            Some(&Part::Literal(next)) => word_before(rest, next)?,
            _ if has_whitespace(rest) => return None,
            _ => rest.len(),
        };
        if end == 0 {
            return None;
        }
        if placeholder == Part::Child {
            child = Some(&rest[..end]);
        }
        rest = &rest[end..];
    }
    if rest.is_empty() { child } else { None }
}

/// The length of the word that `text` starts with, if `next` (matched ignoring case) follows it:
/// a word has no whitespace.
fn word_before(text: &str, next: &str) -> Option<usize> {
    match next.as_bytes().first() {
        // Then `next` can only follow at the text's first whitespace: anywhere else, the word
        // would have to contain one.
        Some(b) if char::from(*b).is_whitespace() => {
            let end = first_whitespace(text)?;
            text[end..]
                .get(..next.len())
                .is_some_and(|head| eq_ignore_case(head, next))
                .then_some(end)
        }
        _ => {
            let end = find_ignore_case(text, next)?;
            (!has_whitespace(&text[..end])).then_some(end)
        }
    }
}

fn first_whitespace(s: &str) -> Option<usize> {
    let at = s
        .bytes()
        .position(|b| !b.is_ascii() || char::from(b).is_whitespace())?;
    if s.as_bytes()[at].is_ascii() {
        return Some(at);
    }
    // Everything before `at` is ASCII, so `at` starts a character.
    s[at..]
        .char_indices()
        .find(|(_, c)| c.is_whitespace())
        .map(|(i, _)| at + i)
}

fn has_whitespace(word: &str) -> bool {
    first_whitespace(word).is_some()
}

/// Equal ignoring ASCII case; the exact comparison first, as messages are usually written as
/// the pattern is.
fn eq_ignore_case(text: &str, literal: &str) -> bool {
    text == literal || text.eq_ignore_ascii_case(literal)
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    eq_ignore_case(head, prefix).then(|| &text[prefix.len()..])
}

/// Where `needle` (ASCII: pattern literals are) first occurs in `text`, ignoring ASCII case. An
/// ASCII byte never occurs inside a multi-byte UTF-8 sequence, so a match is on a char boundary.
fn find_ignore_case(text: &str, needle: &str) -> Option<usize> {
    debug_assert!(needle.is_ascii());
    let (text, needle) = (text.as_bytes(), needle.as_bytes());
    let Some(&first) = needle.first() else {
        return Some(0);
    };
    (0..=text.len().checked_sub(needle.len())?).find(|&i| {
        text[i].eq_ignore_ascii_case(&first)
            && text[i..i + needle.len()].eq_ignore_ascii_case(needle)
    })
}

/// What a GitOps controller said it did to an object it applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Created,
    Configured,
}

/// An object a GitOps controller named in its report of an apply: `Deployment/shop/web
/// configured`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppliedObject<'a> {
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub action: Applied,
}

/// How an applier's report names the objects whose change it reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Targets {
    /// Its message is a change set: one `Kind/namespace/name action` line per object
    /// ([`applied_objects`]).
    ChangeSet,
    /// Its message names nothing: the reporting object's own `spec.scaleTargetRef` does (an
    /// HPA), always in the reporting object's namespace.
    ScaleTarget,
}

/// A controller that reports, in one event on the object it reconciles, a write it made to
/// other objects: that write is a new generation of theirs, whose trace the event roots.
#[derive(Debug)]
pub struct Applier {
    pub involved_kind: &'static str,
    pub reason: &'static str,
    /// The field manager of its write (managedFields), which must have made the generation.
    pub manager: &'static str,
    pub targets: Targets,
}

/// kustomize-controller (v1.x) records a `Progressing` event on the Kustomization whose message
/// is the change set of its server-side apply (fluxcd/pkg/ssa `ChangeSet.String`): one `Kind/
/// namespace/name action` per changed object, `\n`-separated, `Kind/name` for cluster-scoped
/// ones. Only `created` and `configured` start a change; `unchanged`, `deleted` and `skipped` do
/// not.
///
/// The HPA controller (pkg/controller/podautoscaler/horizontal.go, `reconcileAutoscaler`)
/// writes its target's `/scale` subresource, then records `SuccessfulRescale` `New size: N;
/// reason: R` on the HPA. Its writes are the kube-controller-manager's (the field manager is
/// the user agent's first word), through `/scale`, so their managedFields entry has no time.
#[rustfmt::skip]
pub const APPLIERS: &[Applier] = &[
    Applier { involved_kind: "Kustomization", reason: "Progressing", manager: "kustomize-controller", targets: Targets::ChangeSet },
    Applier { involved_kind: "HorizontalPodAutoscaler", reason: "SuccessfulRescale", manager: "kube-controller-manager", targets: Targets::ScaleTarget },
];

/// The applier whose report an event is, if it is one.
pub fn applier(involved_kind: &str, reason: &str) -> Option<&'static Applier> {
    APPLIERS
        .iter()
        .find(|a| a.involved_kind == involved_kind && a.reason == reason)
}

/// What an HPA's `SuccessfulRescale` says: the size it set and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rescale<'a> {
    /// `None` when the message does not give a size that fits a replica count (int32, not
    /// negative): the rescale is still the HPA's, only its size is unknown.
    pub new_size: Option<i64>,
    /// The controller's reason ("Current number of replicas below Spec.MinReplicas", "cpu
    /// resource utilization (percentage of request) above target"); empty when not given.
    pub reason: &'a str,
}

/// Reads `New size: N; reason: R` (the format of every Kubernetes release since 1.2). Anything
/// else gives no size and no reason, never an error: the event came from whoever may write
/// Events in the namespace.
pub fn rescale(message: &str) -> Rescale<'_> {
    let message = message.strip_prefix(COMBINED).unwrap_or(message);
    let unknown = Rescale {
        new_size: None,
        reason: "",
    };
    let Some(rest) = message.strip_prefix("New size: ") else {
        return unknown;
    };
    let (size, reason) = rest.split_once("; reason: ").unwrap_or((rest, ""));
    // Digits only (no sign, no spaces), at most ten of them, within int32: a replica count.
    let new_size =
        (!size.is_empty() && size.len() <= 10 && size.bytes().all(|b| b.is_ascii_digit()))
            .then(|| size.parse::<i64>().ok())
            .flatten()
            .filter(|n| *n <= i64::from(i32::MAX));
    Rescale { new_size, reason }
}

/// The namespaced objects an applier's report says it created or configured, in message order.
/// Lazy and linear in the message: any line that is not exactly `Kind/namespace/name action`
/// (a word of ASCII letters and digits, two names without whitespace or `/`, one space, a known
/// verb in any ASCII case) is skipped, so prose lines ("Health check passed in 5s") and hostile
/// input name nothing. Lines may end in `\r\n`.
pub fn applied_objects(message: &str) -> impl Iterator<Item = AppliedObject<'_>> {
    message.split('\n').filter_map(applied_line)
}

fn applied_line(line: &str) -> Option<AppliedObject<'_>> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let (subject, verb) = line.split_once(' ')?;
    let action = if verb.eq_ignore_ascii_case("configured") {
        Applied::Configured
    } else if verb.eq_ignore_ascii_case("created") {
        Applied::Created
    } else {
        return None;
    };
    let mut parts = subject.split('/');
    let (kind, namespace, name) = (parts.next()?, parts.next()?, parts.next()?);
    let is_name = |s: &str| !s.is_empty() && !has_whitespace(s);
    let is_kind = !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_alphanumeric());
    (parts.next().is_none() && is_kind && is_name(namespace) && is_name(name)).then_some(
        AppliedObject {
            kind,
            namespace,
            name,
            action,
        },
    )
}

#[cfg(test)]
mod tests;

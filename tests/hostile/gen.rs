//! A hostile-input generator for the engine, shared by `tests/hostile.rs` (proptest, a few hundred
//! cases in `cargo test`) and `examples/fuzz.rs` (as long as asked).
//!
//! Inputs are built from a list of small numbers ([`Op`]), so proptest can shrink a failing case
//! and a case can be stored as a line of numbers (`tests/hostile/regressions/`). The numbers pick
//! from a small universe of namespaces and objects, so the attacks meet each other: owner cycles,
//! self-naming controller messages, references into other namespaces, uid collisions, absurd
//! counts and times, huge strings, many kinds, Node events where they do not belong, and the
//! ordinary events of a rollout around them.
//!
//! What is checked ([`check`]): nothing panics or aborts (an abort kills the test binary), every
//! case ends (the caller runs it under a timeout), no (trace, span) pair is emitted twice, every
//! span's parent was emitted in the same trace, every span is about an object of its trace root's
//! namespace and carries no name of another namespace's objects, and the engine's tables stay
//! within their caps.

#![allow(dead_code)]

use std::collections::HashSet;
use std::time::Duration;

use eventspan::engine::change::{ContainerDigest, TemplateDigest};
use eventspan::engine::model::{
    AttrRef, EventRecord, EventTime, FinishedSpan, ObjectMeta, ObjectRef, ObjectState, Outcome,
    OutcomeKind, OwnerRef, SpecChange,
};
use eventspan::engine::time::Timestamp;
use eventspan::engine::{Engine, EngineConfig, EngineStats, OBJECT_CAP_SLACK};

/// One step of a case: what to do, and three choices.
pub type Op = (u8, u8, u8, u16);

/// Namespaced tenants, then `default` (where Node events live), then cluster scope.
const NAMESPACES: [&str; 4] = ["shop", "payments", "default", ""];
const SLOTS: u8 = 8;
const KINDS: [(&str, &str); 7] = [
    ("Deployment", "apps/v1"),
    ("ReplicaSet", "apps/v1"),
    ("Pod", "v1"),
    ("Pod", "v1"),
    ("StatefulSet", "apps/v1"),
    ("Job", "batch/v1"),
    ("CronJob", "batch/v1"),
];
const T0: i64 = 1_780_000_000;

fn ns(i: u8) -> &'static str {
    NAMESPACES[usize::from(i) % NAMESPACES.len()]
}

/// A tenant namespace (never the cluster scope).
fn tenant(i: u8) -> &'static str {
    NAMESPACES[usize::from(i) % 3]
}

fn kind_of(namespace: &str, slot: u8) -> (&'static str, &'static str) {
    if namespace.is_empty() {
        ("Node", "v1")
    } else {
        KINDS[usize::from(slot) % KINDS.len()]
    }
}

/// Only the object itself carries this name: a span of another namespace's trace that shows it
/// has read across the tenant boundary.
pub fn secret_name(namespace: &str, slot: u8) -> String {
    format!("o{slot}-only@{namespace}")
}

fn uid(namespace: &str, slot: u8) -> String {
    format!("{namespace}:{slot}")
}

fn object_ref(namespace: &str, slot: u8, name: String) -> ObjectRef {
    let (kind, api_version) = kind_of(namespace, slot);
    ObjectRef {
        kind: kind.into(),
        api_version: api_version.into(),
        namespace: namespace.into(),
        name,
        uid: uid(namespace, slot),
        field_path: String::new(),
    }
}

/// What one op turns into.
pub enum Input {
    Upsert(Box<ObjectMeta>, Timestamp),
    Delete(String, String, Timestamp),
    Event(Box<EventRecord>, Option<Timestamp>),
    Advance(Timestamp),
}

/// Controller messages, `{}` for the child's name: every rule's shape, and a few near misses.
const MESSAGES: [(&str, &str); 12] = [
    ("SuccessfulCreate", "Created pod: {}"),
    ("SuccessfulDelete", "Deleted pod: {}"),
    ("ScalingReplicaSet", "Scaled up replica set {} from 0 to 3"),
    (
        "ScalingReplicaSet",
        "Scaled down replica set {} from 3 to 0",
    ),
    (
        "SuccessfulCreate",
        "create Pod {} in StatefulSet x successful",
    ),
    ("SuccessfulCreate", "Created job {}"),
    (
        "SawCompletedJob",
        "Saw completed job: {}, condition: Complete",
    ),
    ("Scheduled", "Successfully assigned x/y to {}"),
    ("Killing", "Stopping container {}"),
    ("BackOff", "Back-off restarting failed container {}"),
    ("Pulling", "Pulling image \"{}\""),
    ("Sync", "{}"),
];

pub struct Builder {
    now: Timestamp,
    events: Vec<(String, String)>,
    inputs: Vec<Input>,
}

impl Builder {
    fn tick(&mut self, ms: u16) -> Timestamp {
        self.now = self
            .now
            .saturating_add(Duration::from_millis(u64::from(ms % 2_000)));
        self.now
    }

    fn upsert(&mut self, (_, a, b, c): Op) {
        let namespace = ns(a);
        let slot = b % SLOTS;
        let (kind, api_version) = kind_of(namespace, slot);
        let at = self.tick(c);
        let owner_slot = (c % u16::from(SLOTS)) as u8;
        let owner = match c / 8 % 6 {
            // An owner in the same namespace, possibly itself or one that owns it back.
            0 | 1 => Some(object_ref(
                namespace,
                owner_slot,
                secret_name(namespace, owner_slot),
            )),
            // Another namespace's uid, under a name of the attacker's choosing.
            2 => Some(object_ref(
                tenant(a.wrapping_add(1)),
                owner_slot,
                format!("x{owner_slot}"),
            )),
            // A kind no one serves, of any length.
            3 => Some(ObjectRef {
                kind: format!("K{}{}", c, "k".repeat(usize::from(c % 3) * 300)),
                api_version: "bogus/v1".into(),
                namespace: namespace.into(),
                name: format!("k{c}"),
                uid: format!("{namespace}:k{c}"),
                field_path: String::new(),
            }),
            _ => None,
        };
        let generation = i64::from(c % 4) + 1;
        let state = (c % 5 == 0).then(|| ObjectState {
            observed_generation: generation - i64::from(c % 2),
            outcome: (c % 3 == 0).then(|| Outcome {
                kind: if c % 2 == 0 {
                    OutcomeKind::Done
                } else {
                    OutcomeKind::Failed
                },
                reason: "Ready".into(),
                message: String::new(),
            }),
            since: Some(at),
        });
        let meta = ObjectMeta {
            uid: uid(namespace, slot),
            kind: kind.into(),
            api_version: api_version.into(),
            namespace: namespace.into(),
            name: secret_name(namespace, slot),
            generation,
            labels: vec![("app".into(), format!("l{}", c % 3))],
            owners: owner
                .map(|o| OwnerRef {
                    kind: o.kind,
                    api_version: o.api_version,
                    name: o.name,
                    uid: o.uid,
                    controller: c % 2 == 0,
                })
                .into_iter()
                .collect(),
            spec_changes: vec![SpecChange {
                manager: "kubectl".into(),
                operation: "Update".into(),
                time: (c % 7 != 0).then_some(at),
            }],
            // Created now (a pod whose creation may be derived from its state) or long ago.
            created: Some(if c % 2 == 0 {
                at
            } else {
                Timestamp::from_unix_secs(T0)
            }),
            // Some being deleted now (their pods' last events may get a derived deletion).
            deleting: (c % 5 == 0).then_some(at),
            state,
            traceparent: None,
            // A template naming the tenant's secret, so a change summary that leaked into
            // another tenant's trace would show it.
            template: (c % 3 == 0).then(|| {
                Box::new(TemplateDigest {
                    replicas: Some(i64::from(c % 5)),
                    containers: (0..c % 4)
                        .map(|i| ContainerDigest {
                            name: format!("c{i}").into(),
                            image: format!("{}:{}", secret_name(namespace, slot), c % 2).into(),
                            env: vec![(format!("E{}", c % 3).into(), u64::from(c))],
                            resources: u64::from(c % 2),
                        })
                        .collect(),
                    annotations: Vec::new(),
                })
            }),
            scale_target: None,
        };
        self.inputs.push(Input::Upsert(Box::new(meta), at));
    }

    fn delete(&mut self, (_, a, b, c): Op) {
        let namespace = ns(a);
        let at = self.tick(c);
        self.inputs.push(Input::Delete(
            namespace.into(),
            uid(namespace, b % SLOTS),
            at,
        ));
    }

    fn event(&mut self, (op, a, b, c): Op) {
        let involved_ns = ns(a);
        let slot = b % SLOTS;
        let at = self.tick(c);
        let (reason, template) = MESSAGES[usize::from(c) % MESSAGES.len()];
        let child_slot = (c / 16 % u16::from(SLOTS)) as u8;
        let child = match c / 128 % 4 {
            // The event's own object: "Created pod: X" on X.
            0 => secret_name(involved_ns, slot),
            1 => secret_name(involved_ns, child_slot),
            2 => format!("x{child_slot}"),
            _ => "y".repeat(usize::from(c % 5) * 2_000),
        };
        // Where the Event itself lives: its object's namespace, or (hostile) another one.
        let event_ns = match (c / 512 % 5, involved_ns) {
            (0, _) => tenant(a.wrapping_add(1)),
            (_, "") => "default",
            (_, namespace) => namespace,
        };
        let count = match c % 9 {
            0 => u32::MAX,
            1 => 0,
            n => u32::from(n),
        };
        let (first, last) = match c % 11 {
            0 => (Timestamp::from_unix_secs(0), at),
            1 => (at, Timestamp::from_unix_secs(T0 + 3_000_000_000)),
            2 => (at, Timestamp::from_unix_secs(T0 - 86_400)),
            _ => (at.saturating_sub(Duration::from_secs(u64::from(c % 4))), at),
        };
        // Reuse an earlier event's uid (a collision, across namespaces too) or make a new one.
        let event_uid = match (op % 3, self.events.len()) {
            (0, n) if n > 0 => self.events[usize::from(c) % n].1.clone(),
            _ => format!("{event_ns}:e{}", self.events.len()),
        };
        self.events.push((event_ns.into(), event_uid.clone()));
        let related = (c % 3 == 0).then(|| {
            let other = tenant(a.wrapping_add(1).wrapping_add((c % 2) as u8));
            object_ref(other, child_slot, format!("r{child_slot}"))
        });
        let mut message = template.replace("{}", &child);
        if c % 13 == 0 {
            message.push_str(&"m".repeat(100_000));
        }
        let event = EventRecord {
            uid: event_uid,
            name: format!("ev{}", self.events.len()),
            namespace: event_ns.into(),
            involved: object_ref(involved_ns, slot, secret_name(involved_ns, slot)),
            related: related.map(Box::new),
            reason: reason.into(),
            message,
            warning: c % 4 == 0,
            action: String::new(),
            reporting_controller: format!("ctl{}", c % 3),
            reporting_instance: String::new(),
            count,
            first: EventTime {
                at: first,
                precise: c % 2 == 0,
            },
            last: EventTime {
                at: last,
                precise: c % 2 == 0,
            },
            top_level: reason == "Sync",
            revision: String::new(),
            truncated: false,
            derived: false,
        };
        let observed = (c % 6 != 0).then_some(at);
        self.inputs.push(Input::Event(Box::new(event), observed));
    }
}

/// The inputs a case's ops describe.
pub fn build(ops: &[Op]) -> Vec<Input> {
    let mut b = Builder {
        now: Timestamp::from_unix_secs(T0),
        events: Vec::new(),
        inputs: Vec::new(),
    };
    for &op in ops {
        match op.0 % 8 {
            0 | 1 => b.upsert(op),
            2 => b.delete(op),
            7 => {
                // Time jumps: a quiet minute, or past every hold and TTL.
                let at = b.tick(op.3);
                let jump = if op.3 % 2 == 0 { 60 } else { 3_600 };
                b.now = at.saturating_add(Duration::from_secs(jump));
                b.inputs.push(Input::Advance(b.now));
            }
            _ => b.event(op),
        }
    }
    b.inputs
}

/// How far one input may take a table past its byte cap: an entry of the largest size the wire
/// limits allow, a few times over.
const SLACK_BYTES: usize = 16 * 1024;

/// Small caps, so that eviction and forced emission run too.
pub fn config() -> EngineConfig {
    EngineConfig {
        max_objects: 40,
        max_open_spans: 60,
        max_held_events: 20,
        max_tracked_events: 50,
        // Byte caps below what the entry caps allow of large entries: both kinds of cap bite.
        max_object_bytes: 8 * 1024,
        max_open_span_bytes: 40 * 1024,
        max_held_bytes: 20 * 1024,
        ..EngineConfig::default()
    }
}

/// Runs a case and checks the properties; the engine's stats when they hold.
pub fn check(ops: &[Op]) -> Result<EngineStats, String> {
    let cfg = config();
    let mut engine = Engine::new(cfg.clone());
    let mut spans: Vec<FinishedSpan> = Vec::new();
    for input in build(ops) {
        match input {
            Input::Upsert(meta, at) => engine.upsert_object(&meta, at),
            Input::Delete(namespace, uid, at) => engine.delete_object(&namespace, &uid, at),
            Input::Event(event, observed) => engine.observe_event(event, observed),
            Input::Advance(at) => engine.advance(at),
        }
        spans.extend(engine.drain_finished());
        within_caps(&engine.stats(), &cfg)?;
    }
    engine.finish();
    spans.extend(engine.drain_finished());
    let stats = engine.stats();
    within_caps(&stats, &cfg)?;
    check_spans(&spans)?;
    if stats.open_spans != 0 || stats.held_now != 0 {
        return Err(format!("finish left state behind: {stats:?}"));
    }
    Ok(stats)
}

fn within_caps(stats: &EngineStats, cfg: &EngineConfig) -> Result<(), String> {
    let over = [
        // One input may name a few objects more than the cap while it is handled.
        ("objects", stats.objects, cfg.max_objects + OBJECT_CAP_SLACK),
        ("open spans", stats.open_spans, cfg.max_open_spans),
        ("held events", stats.held_now, cfg.max_held_events),
        (
            "tracked events",
            stats.tracked_events,
            cfg.max_tracked_events,
        ),
        // Byte caps may be passed by what one input adds (one entry of at most a few KiB).
        (
            "object bytes",
            stats.object_bytes,
            cfg.max_object_bytes + SLACK_BYTES,
        ),
        // Kept past the object cap for the traces of roots it evicted: an eighth of it.
        (
            "departed root bytes",
            stats.departed_root_bytes,
            cfg.max_object_bytes / 8 + SLACK_BYTES,
        ),
        (
            "open span bytes",
            stats.open_span_bytes,
            cfg.max_open_span_bytes + SLACK_BYTES,
        ),
        (
            "held bytes",
            stats.held_bytes,
            cfg.max_held_bytes + SLACK_BYTES,
        ),
    ]
    .into_iter()
    .find(|(_, n, cap)| n > cap);
    match over {
        Some((what, n, cap)) => Err(format!("{what}: {n} over the cap of {cap}")),
        None => Ok(()),
    }
}

fn check_spans(spans: &[FinishedSpan]) -> Result<(), String> {
    let mut seen = HashSet::new();
    for s in spans {
        if !seen.insert((s.trace_id, s.span_id)) {
            return Err(format!(
                "span {} of trace {} emitted twice",
                s.span_id, s.trace_id
            ));
        }
    }
    // The parents form a tree: walking up from any span ends at a root.
    let parent_of: std::collections::HashMap<_, _> = spans
        .iter()
        .map(|s| ((s.trace_id, s.span_id), s.parent))
        .collect();
    for s in spans {
        let mut at = s.parent;
        for step in 0.. {
            let Some(p) = at else { break };
            if p == s.span_id || step > spans.len() {
                return Err(format!("{} ({}) is its own ancestor", s.span_id, s.name()));
            }
            at = parent_of.get(&(s.trace_id, p)).copied().flatten();
        }
    }
    for s in spans {
        if let Some(parent) = s.parent
            && !seen.contains(&(s.trace_id, parent))
        {
            return Err(format!(
                "{} ({}): parent {parent} not emitted in its trace",
                s.span_id,
                s.name()
            ));
        }
        let home = &*s.root.namespace;
        if let Some(event) = &s.event
            && event.involved.namespace != home
        {
            return Err(format!(
                "{} about {}/{} in a trace of namespace {home:?}",
                s.name(),
                event.involved.namespace,
                event.involved.name
            ));
        }
        // Names only another namespace's objects (or a Node: cluster scope) carry.
        let foreign = |text: &str| {
            NAMESPACES.iter().filter(|n| **n != home).any(|n| {
                if n.is_empty() {
                    text.ends_with("-only@")
                } else {
                    text.contains(&format!("only@{n}"))
                }
            })
        };
        for (key, value) in s.all_attributes() {
            if let AttrRef::Str(text) = value
                && foreign(text)
                && !key.starts_with("k8s.event.")
                && !key.starts_with("k8s.object.")
            {
                return Err(format!(
                    "{} in a trace of namespace {home:?} carries {key}={text:.80}",
                    s.name()
                ));
            }
        }
    }
    Ok(())
}

/// Reads a stored case: one op per line, `op a b c`; `#` starts a comment.
pub fn parse(text: &str) -> Result<Vec<Op>, String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|l| {
            let n: Vec<&str> = l.split_whitespace().collect();
            match n.as_slice() {
                [op, a, b, c] => Ok((
                    op.parse().map_err(|e| format!("{l}: {e}"))?,
                    a.parse().map_err(|e| format!("{l}: {e}"))?,
                    b.parse().map_err(|e| format!("{l}: {e}"))?,
                    c.parse().map_err(|e| format!("{l}: {e}"))?,
                )),
                _ => Err(format!("{l}: want four numbers")),
            }
        })
        .collect()
}

/// Writes a case as [`parse`] reads it.
pub fn format(ops: &[Op]) -> String {
    ops.iter()
        .map(|(op, a, b, c)| format!("{op} {a} {b} {c}\n"))
        .collect()
}

/// Prints a case's inputs and the spans they give, for debugging a failure.
pub fn dump(ops: &[Op]) {
    let mut engine = Engine::new(config());
    let show = |engine: &mut Engine| {
        for s in engine.drain_finished() {
            println!(
                "  span {} trace {} parent {:?} root {}/{} {}: {}",
                s.span_id,
                s.trace_id,
                s.parent,
                s.root.namespace,
                s.root.name,
                s.name(),
                s.message().chars().take(60).collect::<String>()
            );
        }
    };
    for input in build(ops) {
        match input {
            Input::Upsert(meta, at) => {
                println!(
                    "upsert {} {}/{} owners {:?}",
                    meta.kind,
                    meta.namespace,
                    meta.name,
                    meta.owners
                        .iter()
                        .map(|o| (&o.kind, &o.uid))
                        .collect::<Vec<_>>()
                );
                engine.upsert_object(&meta, at)
            }
            Input::Delete(namespace, uid, at) => {
                println!("delete {namespace} {uid}");
                engine.delete_object(&namespace, &uid, at)
            }
            Input::Event(event, observed) => {
                println!(
                    "event {} in {} on {} {}/{}: {} {:.60} related {:?}",
                    event.uid,
                    event.namespace,
                    event.involved.kind,
                    event.involved.namespace,
                    event.involved.name,
                    event.reason,
                    event.message,
                    event.related.as_ref().map(|r| (&r.namespace, &r.name))
                );
                engine.observe_event(event, observed)
            }
            Input::Advance(at) => engine.advance(at),
        }
        show(&mut engine);
    }
    engine.finish();
    show(&mut engine);
}

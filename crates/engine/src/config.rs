use std::time::Duration;

/// Tunables of the correlation engine. The defaults suit a live cluster; replay uses the same.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// How long an event that cannot be placed yet (its creator's event has not arrived) is held.
    pub window: Duration,
    /// How long an event that would hang directly under a trace root waits, so that a new
    /// generation of the root, watched on another stream, can arrive first.
    pub root_settle: Duration,
    /// A span whose end no later event tells is emitted after its subtree was quiet this long.
    pub horizon: Duration,
    /// A repeating event's span waits up to this long for its next repetition.
    pub max_repeat_hold: Duration,
    /// A span that ends when its object is done (a rollout's root, a pod's creation) waits up
    /// to this long after its last activity for the object's status to say so; Kubernetes'
    /// default progress deadline.
    pub max_state_wait: Duration,
    /// Deleted objects (tombstones) and objects known only from events are forgotten after this.
    pub object_ttl: Duration,
    /// Recent spans stay usable as parents, and event uids stay deduplicated, this long.
    pub recent_ttl: Duration,
    pub max_objects: usize,
    /// Bytes the object table may hold (entries and their strings, as `ObjectTable` counts
    /// them); the first of this and `max_objects` to be reached evicts.
    pub max_object_bytes: usize,
    pub max_open_spans: usize,
    /// Bytes the open spans may hold (slots and events); past it the oldest traces are emitted.
    pub max_open_span_bytes: usize,
    pub max_held_events: usize,
    /// Bytes the held events may hold; past it events are placed at once.
    pub max_held_bytes: usize,
    pub max_tracked_events: usize,
    /// Exported spans remembered, so that none is exported twice (and half as many traces'
    /// roots).
    pub max_remembered_spans: usize,
    /// Traces known at once, open or recently done; past it, the done ones idle longest are
    /// forgotten early (open ones are bounded by the open spans).
    pub max_traces: usize,
    /// Repetitions of an event recorded as span events; beyond that only the count grows.
    pub max_span_events: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            window: Duration::from_secs(5),
            root_settle: Duration::from_secs(1),
            horizon: Duration::from_secs(15),
            max_repeat_hold: Duration::from_secs(600),
            max_state_wait: Duration::from_secs(600),
            object_ttl: Duration::from_secs(900),
            recent_ttl: Duration::from_secs(900),
            // The caps bound the engine's memory; README ("Memory bounds") adds them up.
            max_objects: 500_000,
            max_object_bytes: 96 << 20,
            max_open_spans: 200_000,
            max_open_span_bytes: 64 << 20,
            max_held_events: 50_000,
            max_held_bytes: 16 << 20,
            max_tracked_events: 300_000,
            max_remembered_spans: 200_000,
            max_traces: 100_000,
            max_span_events: 20,
        }
    }
}

/// Counters and gauges of the engine, for metrics and for tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub events: u64,
    /// Re-deliveries of an event already seen with the same count (re-lists, restarts).
    pub duplicates: u64,
    /// Spans not exported because the same (trace, span) was exported recently.
    pub duplicate_spans: u64,
    /// Spans not exported because a predecessor process exported them (see [`super::Checkpoint`]).
    pub resumed_spans: u64,
    /// Events that belong to a change of their root older than any this engine knows (a re-list
    /// or a restart delivers the events of a rollout long done): they join no trace.
    pub earlier_change: u64,
    /// Pod creation spans derived from the pod because its controller's event had not come.
    pub derived_creations: u64,
    /// ReplicaSet scale-ups derived from the pods they created because the deployment
    /// controller's event had not come.
    pub derived_scale_ups: u64,
    /// ReplicaSet scale-downs derived from the pods they deleted, likewise.
    pub derived_scale_downs: u64,
    /// Pod deletion spans derived from the pod's `deletionTimestamp` because its controller's
    /// event had not come.
    pub derived_deletions: u64,
    /// Controllers' "Created pod: X" that came after a creation span was derived for X: an open
    /// derived span took the event over; an exported one stands for it (no second span).
    pub late_creations: u64,
    /// HPA rescales (`SuccessfulRescale`) that rooted no trace because their target was not
    /// known: the HPA's spec unseen, or its `scaleTargetRef` naming no object seen here.
    pub rescales_unattributed: u64,
    /// Repetitions folded into an existing span.
    pub repeats: u64,
    /// Events held because their parent was not known yet.
    pub held: u64,
    /// Held events whose parent never came, placed by the owner chain after the window.
    pub held_expired: u64,
    /// Events placed at once because the held table was full.
    pub held_overflow: u64,
    pub spans_emitted: u64,
    /// Spans emitted before they settled because the open-span table was full.
    pub spans_forced: u64,
    pub traces_started: u64,
    pub objects_evicted: u64,
    pub tracked_events_evicted: u64,
    /// Inputs (or parts of inputs) the engine refused, by reason: see [`Rejection`].
    pub rejected: [u64; Rejection::ALL.len()],
    pub objects: usize,
    pub open_spans: usize,
    pub open_traces: usize,
    pub held_now: usize,
    pub tracked_events: usize,
    /// What the capped tables hold, in bytes as their caps count them.
    pub object_bytes: usize,
    /// What is kept of trace roots the object table dropped while their traces are known: at
    /// most an eighth of `max_object_bytes`, on top of `object_bytes`.
    pub departed_root_bytes: usize,
    pub open_span_bytes: usize,
    pub held_bytes: usize,
}

/// Why the engine ignored an input, or the part of one that would break an invariant. Every
/// rejection is counted (metric `eventspan_input_rejected_total{reason}`) and nothing else is lost:
/// the rest of the event still becomes its span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// An Event about an object in another namespace than its own (only cluster-scoped objects'
    /// events may live elsewhere, in `default`, as Kubernetes puts them): ignored whole.
    CrossNamespaceEvent,
    /// An Event's `related` object is in another namespace (or cluster-scoped): not followed.
    CrossNamespaceRelated,
    /// A controller message naming the event's own object as the child it acted on.
    SelfReference,
    /// Re-parenting a span under one of its own descendants (or itself): not done.
    Cycle,
    /// A span that would sit deeper than [`MAX_SPAN_DEPTH`]: placed under its trace root instead.
    TooDeep,
    /// An event whose uid is already an open span of another trace (uids are the API server's;
    /// only a crafted recording repeats one).
    UidCollision,
}

/// No real rollout nests spans more than a handful deep (root → scale → create → pod event);
/// deeper chains only come from crafted controller messages, and the emission order (children
/// first, by depth) needs depths that fit.
pub const MAX_SPAN_DEPTH: u8 = 32;

impl Rejection {
    pub const ALL: [Rejection; 6] = [
        Rejection::CrossNamespaceEvent,
        Rejection::CrossNamespaceRelated,
        Rejection::SelfReference,
        Rejection::Cycle,
        Rejection::TooDeep,
        Rejection::UidCollision,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::CrossNamespaceEvent => "cross_namespace_event",
            Rejection::CrossNamespaceRelated => "cross_namespace_related",
            Rejection::SelfReference => "self_reference",
            Rejection::Cycle => "cycle",
            Rejection::TooDeep => "too_deep",
            Rejection::UidCollision => "uid_collision",
        }
    }
}

impl EngineStats {
    pub fn rejected(&self, reason: Rejection) -> u64 {
        self.rejected[reason as usize]
    }

    pub(super) fn reject(&mut self, reason: Rejection) {
        self.rejected[reason as usize] += 1;
    }
}

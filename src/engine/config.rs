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
    pub max_open_spans: usize,
    pub max_held_events: usize,
    pub max_tracked_events: usize,
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
            max_objects: 1_000_000,
            max_open_spans: 200_000,
            max_held_events: 50_000,
            max_tracked_events: 500_000,
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
    pub objects: usize,
    pub open_spans: usize,
    pub open_traces: usize,
    pub held_now: usize,
    pub tracked_events: usize,
}

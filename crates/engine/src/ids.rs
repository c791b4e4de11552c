//! Deterministic trace and span IDs.
//!
//! IDs are hashes of stable Kubernetes identities (object and event uids), so a restart, a
//! re-list or a second replay of the same stream produces the same IDs, and two operator replicas
//! agree without talking to each other. XXH3 is a fixed, specified function: its output never
//! changes between versions.

use std::fmt;

use xxhash_rust::xxh3::{xxh3_64_with_seed, xxh3_128_with_seed};

use super::time::Timestamp;

const TRACE_SEED: u64 = 0x6576_656e_7473_7061; // "eventspa"
const SPAN_SEED: u64 = 0x6e73_7061_6e5f_6964; // "nspan_id"

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TraceId(pub u128);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpanId(pub u64);

impl TraceId {
    /// The trace of one change (spec generation) of a top-level object.
    pub fn for_change(root_uid: &str, generation: i64) -> TraceId {
        let id = with_joined(
            &[root_uid.as_bytes(), &[0], &generation.to_le_bytes()],
            |bytes| xxh3_128_with_seed(bytes, TRACE_SEED),
        );
        TraceId(id.max(1))
    }

    /// The trace of one reconciled revision (its key, see `revisions.rs`) of a GitOps object at
    /// a generation: a new commit does not change the object's generation.
    pub fn for_revision(root_uid: &str, generation: i64, revision: u64) -> TraceId {
        let id = with_joined(
            &[
                root_uid.as_bytes(),
                b"\0revision",
                &generation.to_le_bytes(),
                &revision.to_le_bytes(),
            ],
            |bytes| xxh3_128_with_seed(bytes, TRACE_SEED),
        );
        TraceId(id.max(1))
    }

    /// The trace of a burst of activity of an object whose generations are unknown (a
    /// recording of events without their objects): named by when the burst started.
    pub fn for_activity(root: &str, started: Timestamp) -> TraceId {
        TraceId::for_change(&format!("{root}@{}", started.unix_nanos()), 0)
    }

    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }
}

impl SpanId {
    /// The span of an event occurrence: the event's uid and the repeat count its span starts at.
    pub fn for_event(event_uid: &str, first_count: u32) -> SpanId {
        SpanId(hash_with_suffix(event_uid, b'e', u64::from(first_count)))
    }

    /// The root span of a trace, whether synthesised or taken from a top-level event: it depends
    /// only on the trace, so children can name it before the root's content is settled.
    pub fn for_root(trace: TraceId) -> SpanId {
        let bytes = trace.to_bytes();
        SpanId(xxh3_64_with_seed(&bytes, SPAN_SEED).max(1))
    }

    pub fn to_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }
}

fn hash_with_suffix(s: &str, tag: u8, n: u64) -> u64 {
    with_joined(&[s.as_bytes(), &[tag], &n.to_le_bytes()], |bytes| {
        xxh3_64_with_seed(bytes, SPAN_SEED)
    })
    .max(1)
}

/// Calls `f` with the parts concatenated: on the stack when they are short (nearly always:
/// identifiers are uids and names), so hashing an identifier does not allocate.
pub(crate) fn with_joined<R>(parts: &[&[u8]], f: impl FnOnce(&[u8]) -> R) -> R {
    const INLINE: usize = 256;
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len > INLINE {
        return f(&parts.concat());
    }
    let mut buf = [0u8; INLINE];
    let mut at = 0;
    for part in parts {
        buf[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    f(&buf[..len])
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = TraceId::for_change("7c1b6f0e-0000-4000-8000-000000000001", 2);
        assert_eq!(
            a,
            TraceId::for_change("7c1b6f0e-0000-4000-8000-000000000001", 2)
        );
        assert_ne!(
            a,
            TraceId::for_change("7c1b6f0e-0000-4000-8000-000000000001", 3)
        );
        assert_eq!(a.to_string().len(), 32);
        let s = SpanId::for_event("uid-1", 1);
        assert_ne!(s, SpanId::for_event("uid-1", 2));
        assert_ne!(SpanId::for_root(a), SpanId::for_event("uid-1", 1));
        assert_eq!(s.to_string().len(), 16);
    }

    /// Pinned values: a change here would silently split traces across an upgrade.
    #[test]
    fn ids_do_not_drift_between_versions() {
        assert_eq!(
            TraceId::for_change("uid-1", 1).to_string(),
            "fdb092066077872ff0f7d90773239e03"
        );
        assert_eq!(
            SpanId::for_event("uid-1", 1).to_string(),
            "27e75bf04575fd92"
        );
    }
}

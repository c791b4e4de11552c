//! How far the engine's times may be off: tolerances the placement and the emission of spans
//! both apply. A leaf: it imports nothing of the engine.

use std::time::Duration;

/// Second-granularity timestamps may lag the truth by up to this much.
pub(super) const COARSE: Duration = Duration::from_secs(1);
/// A synthesised root starts at the spec change, unless that is this much older than its first
/// child (an old object's first event in a long time): then it starts with the child.
pub(super) const MAX_ROOT_LEAD: Duration = Duration::from_secs(600);

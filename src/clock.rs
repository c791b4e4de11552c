//! The wall clock, in one place: the shells (watches, exporters, the hub) read it; the engine
//! never does, it is given times.

use crate::engine::time::Timestamp;

/// Now, as the engine's timestamp (nanoseconds since the Unix epoch).
pub fn now() -> Timestamp {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_unix_nanos(i64::try_from(since_epoch.as_nanos()).unwrap_or(i64::MAX))
}

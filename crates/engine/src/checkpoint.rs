//! What a successor process needs to carry on where a predecessor stopped without exporting a
//! span twice: the spans exported last, and for each event span the occurrences it covered.
//!
//! Span and trace IDs are deterministic (see `ids.rs`), so a successor that re-lists the same
//! objects and events rebuilds the same open traces with the same IDs; the checkpoint only has to
//! say which of them already went out. The successor places those again (their children need
//! them as parents, their roots need their times) but does not emit them, and an event whose
//! count grew since its span went out continues from the next occurrence.
//!
//! It also carries the changes of the traces still open: a successor sees each root object
//! only at its newest generation, and without them would put a still-open earlier change's
//! events into the newest one's trace (or, by the change-boundary rule, into none).
//!
//! The encoding is a small fixed binary layout written by hand: it is a handful of integers per
//! span, and the operator stores it in a ConfigMap's `binaryData`, whose size is capped at 1 MiB.

use thiserror::Error;

use super::ids::{SpanId, TraceId};
use super::time::Timestamp;

/// At most this many spans are carried over, and this many open changes: 15,000 × 49 bytes
/// and 4,096 × 33 bytes stay under a ConfigMap's 1 MiB.
pub const MAX_CHECKPOINT_SPANS: usize = 15_000;
pub const MAX_CHECKPOINT_CHANGES: usize = 4_096;

const MAGIC: &[u8; 4] = b"ESCP";
const VERSION: u8 = 2;
const HEADER: usize = 4 + 1 + 4;
const CHANGE_ENTRY: usize = 16 + 8 + 8 + 1;
const ROOT_ENTRY: usize = 16 + 8 + 1;
const EVENT_ENTRY: usize = ROOT_ENTRY + 16 + 4 + 4;

/// An exported span, and the event occurrences it covered when it is an event's span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportedSpan {
    pub trace: TraceId,
    pub span: SpanId,
    pub event: Option<ExportedOccurrences>,
}

/// Which occurrences of one Event (keyed by namespace and uid, hashed) a span covered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportedOccurrences {
    pub key: u128,
    pub first_count: u32,
    pub count: u32,
}

/// A change of a root object whose trace was open: which generation began when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenChange {
    /// The root object's namespace and uid, hashed as an Event's are.
    pub root: u128,
    pub generation: i64,
    pub time: Timestamp,
    /// `time` is an estimate (no managedFields time said when the change happened).
    pub estimated: bool,
}

/// The spans an engine exported last, oldest first, and the changes of its open traces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    pub spans: Vec<ExportedSpan>,
    pub changes: Vec<OpenChange>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CheckpointError {
    #[error("not an eventspan checkpoint (bad magic bytes)")]
    BadMagic,
    #[error("checkpoint version {0} is not supported (this build reads version {VERSION})")]
    UnsupportedVersion(u8),
    #[error("checkpoint is truncated at byte {0}")]
    Truncated(usize),
    #[error("checkpoint holds {0} spans or changes, more than allowed")]
    TooLarge(usize),
    #[error("checkpoint has {0} bytes after its last span")]
    TrailingBytes(usize),
}

impl Checkpoint {
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub fn encode(&self) -> Vec<u8> {
        let spans = &self.spans[self.spans.len().saturating_sub(MAX_CHECKPOINT_SPANS)..];
        let changes = &self.changes[..self.changes.len().min(MAX_CHECKPOINT_CHANGES)];
        let size = HEADER + spans.len() * EVENT_ENTRY + 4 + changes.len() * CHANGE_ENTRY;
        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&(spans.len() as u32).to_le_bytes());
        for s in spans {
            out.extend_from_slice(&s.trace.0.to_le_bytes());
            out.extend_from_slice(&s.span.0.to_le_bytes());
            match s.event {
                None => out.push(0),
                Some(e) => {
                    out.push(1);
                    out.extend_from_slice(&e.key.to_le_bytes());
                    out.extend_from_slice(&e.first_count.to_le_bytes());
                    out.extend_from_slice(&e.count.to_le_bytes());
                }
            }
        }
        out.extend_from_slice(&(changes.len() as u32).to_le_bytes());
        for c in changes {
            out.extend_from_slice(&c.root.to_le_bytes());
            out.extend_from_slice(&c.generation.to_le_bytes());
            out.extend_from_slice(&c.time.unix_nanos().to_le_bytes());
            out.push(u8::from(c.estimated));
        }
        out
    }

    /// Reads what [`Checkpoint::encode`] wrote; anything else is refused whole, never half read.
    pub fn decode(bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(4)? != MAGIC {
            return Err(CheckpointError::BadMagic);
        }
        let version = r.take(1)?[0];
        if version != VERSION {
            return Err(CheckpointError::UnsupportedVersion(version));
        }
        let n = r.u32()? as usize;
        if n > MAX_CHECKPOINT_SPANS {
            return Err(CheckpointError::TooLarge(n));
        }
        let mut spans = Vec::with_capacity(n);
        for _ in 0..n {
            let trace = TraceId(r.u128()?);
            let span = SpanId(r.u64()?);
            let event = match r.take(1)?[0] {
                0 => None,
                _ => Some(ExportedOccurrences {
                    key: r.u128()?,
                    first_count: r.u32()?,
                    count: r.u32()?,
                }),
            };
            spans.push(ExportedSpan { trace, span, event });
        }
        let n = r.u32()? as usize;
        if n > MAX_CHECKPOINT_CHANGES {
            return Err(CheckpointError::TooLarge(n));
        }
        let mut changes = Vec::with_capacity(n);
        for _ in 0..n {
            changes.push(OpenChange {
                root: r.u128()?,
                generation: r.u64()? as i64,
                time: Timestamp::from_unix_nanos(r.u64()? as i64),
                estimated: r.take(1)?[0] != 0,
            });
        }
        if r.at != bytes.len() {
            return Err(CheckpointError::TrailingBytes(bytes.len() - r.at));
        }
        Ok(Checkpoint { spans, changes })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CheckpointError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or(CheckpointError::Truncated(self.at))?;
        let part = &self.bytes[self.at..end];
        self.at = end;
        Ok(part)
    }

    fn u32(&mut self) -> Result<u32, CheckpointError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, CheckpointError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn u128(&mut self) -> Result<u128, CheckpointError> {
        Ok(u128::from_le_bytes(
            self.take(16)?.try_into().expect("16 bytes"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            spans: vec![
                ExportedSpan {
                    trace: TraceId(7 << 100),
                    span: SpanId(9),
                    event: None,
                },
                ExportedSpan {
                    trace: TraceId(3),
                    span: SpanId(u64::MAX),
                    event: Some(ExportedOccurrences {
                        key: u128::MAX - 1,
                        first_count: 2,
                        count: 500,
                    }),
                },
            ],
            changes: vec![OpenChange {
                root: 42 << 64,
                generation: -3,
                time: Timestamp::from_unix_nanos(-1),
                estimated: true,
            }],
        }
    }

    #[test]
    fn round_trips() {
        let cp = sample();
        let bytes = cp.encode();
        assert_eq!(
            bytes.len(),
            HEADER + ROOT_ENTRY + EVENT_ENTRY + 4 + CHANGE_ENTRY
        );
        assert_eq!(Checkpoint::decode(&bytes), Ok(cp));
    }

    #[test]
    fn refuses_anything_else_whole() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert!(Checkpoint::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            Checkpoint::decode(&longer),
            Err(CheckpointError::TrailingBytes(1))
        );
        let mut other = bytes.clone();
        other[4] = 9;
        assert_eq!(
            Checkpoint::decode(&other),
            Err(CheckpointError::UnsupportedVersion(9))
        );
        let mut huge = bytes;
        huge[5..9].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            Checkpoint::decode(&huge),
            Err(CheckpointError::TooLarge(u32::MAX as usize))
        );
        assert_eq!(
            Checkpoint::decode(b"{}"),
            Err(CheckpointError::Truncated(0))
        );
    }

    #[test]
    fn keeps_the_newest_within_the_cap() {
        let spans = (0..MAX_CHECKPOINT_SPANS as u64 + 5)
            .map(|i| ExportedSpan {
                trace: TraceId(1),
                span: SpanId(i + 1),
                event: None,
            })
            .collect();
        let at_most = HEADER + MAX_CHECKPOINT_SPANS * EVENT_ENTRY + 4;
        assert!(at_most + MAX_CHECKPOINT_CHANGES * CHANGE_ENTRY < 1_000_000);
        let changes = Vec::new();
        let decoded = Checkpoint::decode(&Checkpoint { spans, changes }.encode()).unwrap();
        assert_eq!(decoded.len(), MAX_CHECKPOINT_SPANS);
        assert_eq!(decoded.spans[0].span, SpanId(6));
    }
}

//! What a successor process needs to carry on where a predecessor stopped without exporting a
//! span twice: the spans exported last, and for each event span the occurrences it covered.
//!
//! Span and trace IDs are deterministic (see `ids.rs`), so a successor that re-lists the same
//! objects and events rebuilds the same open traces with the same IDs; the checkpoint only has to
//! say which of them already went out. The successor places those again (their children need
//! them as parents, their roots need their times) but does not emit them, and an event whose
//! count grew since its span went out continues from the next occurrence.
//!
//! The encoding is a small fixed binary layout written by hand: it is a handful of integers per
//! span, and the operator stores it in a ConfigMap's `binaryData`, whose size is capped at 1 MiB.

use thiserror::Error;

use super::ids::{SpanId, TraceId};

/// At most this many spans are carried over: 16,000 × 49 bytes stays under a ConfigMap's 1 MiB.
pub const MAX_CHECKPOINT_SPANS: usize = 16_000;

const MAGIC: &[u8; 4] = b"ESCP";
const VERSION: u8 = 1;
const HEADER: usize = 4 + 1 + 4;
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

/// The spans an engine exported last, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    pub spans: Vec<ExportedSpan>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CheckpointError {
    #[error("not an eventspan checkpoint (bad magic bytes)")]
    BadMagic,
    #[error("checkpoint version {0} is not supported (this build reads version {VERSION})")]
    UnsupportedVersion(u8),
    #[error("checkpoint is truncated at byte {0}")]
    Truncated(usize),
    #[error("checkpoint holds {0} spans, more than the {MAX_CHECKPOINT_SPANS} allowed")]
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
        let mut out = Vec::with_capacity(HEADER + spans.len() * EVENT_ENTRY);
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
        if r.at != bytes.len() {
            return Err(CheckpointError::TrailingBytes(bytes.len() - r.at));
        }
        Ok(Checkpoint { spans })
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
        }
    }

    #[test]
    fn round_trips() {
        let cp = sample();
        let bytes = cp.encode();
        assert_eq!(bytes.len(), HEADER + ROOT_ENTRY + EVENT_ENTRY);
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
        let decoded = Checkpoint::decode(&Checkpoint { spans }.encode()).unwrap();
        assert_eq!(decoded.len(), MAX_CHECKPOINT_SPANS);
        assert_eq!(decoded.spans[0].span, SpanId(6));
    }
}

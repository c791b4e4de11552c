//! `eventspan replay`: a recording in, traces out, no cluster.
//!
//! Time is virtual: it comes from the recording (`observedAt` where the recorder wrote it, else
//! the event's own time), so replay is instant and the same input always gives the same output.

pub mod input;
pub mod tree;

use std::io::Read;

use rustc_hash::FxHashMap;

use crate::engine::ids::TraceId;
use crate::engine::model::FinishedSpan;
use crate::engine::time::Timestamp;
use crate::engine::{Engine, EngineConfig, EngineStats};
use input::BadInput;

/// What a replay produced.
pub struct Replay {
    pub spans: Vec<FinishedSpan>,
    /// Input that could not be used, with its line.
    pub skipped: Vec<BadInput>,
    pub stats: EngineStats,
}

/// Runs a whole recording through a fresh engine and flushes it, keeping every span.
pub fn replay(input: &str, cfg: EngineConfig) -> Replay {
    let mut spans = Vec::new();
    let mut skipped = Vec::new();
    let stats = run(
        input.as_bytes(),
        cfg,
        |_, settled| {
            spans.append(settled);
            Ok(())
        },
        |bad| skipped.push(bad),
    )
    .expect("reading from memory and keeping spans cannot fail");
    Replay {
        spans,
        skipped,
        stats,
    }
}

/// Streams a recording through a fresh engine: `settled` is given the spans the engine emits
/// as it emits them (with the engine, to ask which traces are still open) and must take them
/// out of the vector; `skipped` is told each input that could not be used. Nothing of the input
/// or output is kept here, so memory does not grow with the recording's length.
///
/// Fails if the input cannot be read (what was read before is used) or `settled` fails.
pub fn run(
    input: impl Read,
    cfg: EngineConfig,
    mut settled: impl FnMut(&Engine, &mut Vec<FinishedSpan>) -> std::io::Result<()>,
    mut skipped: impl FnMut(BadInput),
) -> std::io::Result<EngineStats> {
    let mut engine = Engine::new(cfg);
    let mut changes = Vec::new();
    let mut finished = Vec::new();
    let mut documents = input::Documents::new(input);
    for doc in documents.by_ref() {
        let doc = match doc {
            Ok(doc) => doc,
            Err(bad) => {
                skipped(bad);
                continue;
            }
        };
        (*doc.value).into_changes(&mut changes);
        for change in changes.drain(..) {
            match change {
                Ok(observed) => engine.apply(observed),
                Err(e) => skipped(BadInput {
                    line: doc.line,
                    reason: e.to_string(),
                }),
            }
        }
        finished.extend(engine.drain_finished());
        if !finished.is_empty() {
            settled(&engine, &mut finished)?;
        }
    }
    if let Some(e) = documents.take_error() {
        return Err(e);
    }
    engine.finish();
    finished.extend(engine.drain_finished());
    settled(&engine, &mut finished)?;
    Ok(engine.stats())
}

/// OTLP/JSON lines: one `ExportTraceServiceRequest` per trace, as the Collector's file exporter
/// writes them.
pub fn otlp_json_lines(spans: &[FinishedSpan]) -> String {
    let mut out = Vec::new();
    write_otlp_json_lines(spans, &mut out).expect("writing to memory");
    String::from_utf8(out).expect("OTLP/JSON is UTF-8")
}

/// Writes [`otlp_json_lines`] to `out` a trace at a time, so the output is never held whole in
/// memory.
pub fn write_otlp_json_lines(
    spans: &[FinishedSpan],
    out: &mut impl std::io::Write,
) -> std::io::Result<()> {
    let mut line = String::new();
    for (_, trace) in tree::by_trace(spans) {
        write_trace_line(&mut line, &trace, out)?;
    }
    Ok(())
}

fn write_trace_line(
    line: &mut String,
    trace: &[&FinishedSpan],
    out: &mut impl std::io::Write,
) -> std::io::Result<()> {
    line.clear();
    crate::otlp::json::write_request(
        line,
        trace.iter().copied(),
        &crate::otlp::SpanShape::default(),
    );
    line.push('\n');
    out.write_all(line.as_bytes())
}

/// Why a streamed replay stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("cannot read input: {0}")]
    Read(std::io::Error),
    #[error("cannot write output: {0}")]
    Write(std::io::Error),
}

/// Replays a recording as a stream into `writer` (see [`run`] and [`StreamedOtlpJson`]),
/// returning the engine's counters and the output.
pub fn stream_otlp_json<W: std::io::Write>(
    input: impl Read,
    cfg: EngineConfig,
    mut writer: StreamedOtlpJson<W>,
    skipped: impl FnMut(BadInput),
) -> Result<(EngineStats, W), StreamError> {
    let mut write_failed = false;
    let stats = run(
        input,
        cfg,
        |engine, settled| {
            writer
                .settled(engine, settled)
                .inspect_err(|_| write_failed = true)
        },
        skipped,
    )
    .map_err(|e| {
        if write_failed {
            StreamError::Write(e)
        } else {
            StreamError::Read(e)
        }
    })?;
    let out = writer.finish().map_err(StreamError::Write)?;
    Ok((stats, out))
}

/// Finished spans [`StreamedOtlpJson`] keeps for traces that still have open spans, at most (about
/// 1 KiB each): past it the traces kept longest are written as they are.
pub const MAX_KEPT_SPANS: usize = 50_000;

/// OTLP/JSON lines written as a replay goes (see [`run`]): a trace's spans are kept until none
/// of its spans is open any more, then written as one request, spans in start order. Traces come
/// in the order they settled; a span that joins a trace after that (an event that comes late
/// for a rollout already exported) is written in a later request of the same trace, as a live
/// session exports it. At most [`MAX_KEPT_SPANS`] finished spans are kept: past it, the traces kept
/// longest are written as far as they are. Memory is bounded by that and the engine's own bounds,
/// not by the recording.
pub struct StreamedOtlpJson<W> {
    out: W,
    /// Spans of traces that still have open spans.
    traces: FxHashMap<TraceId, Vec<FinishedSpan>>,
    /// How many traces were kept after the last look at all of them.
    swept: usize,
    /// Spans kept in `traces`, and how many may be.
    kept: usize,
    max_kept: usize,
    touched: Vec<TraceId>,
    line: String,
}

impl<W: std::io::Write> StreamedOtlpJson<W> {
    pub fn new(out: W) -> Self {
        StreamedOtlpJson {
            out,
            traces: FxHashMap::default(),
            swept: 0,
            kept: 0,
            max_kept: MAX_KEPT_SPANS,
            touched: Vec::new(),
            line: String::new(),
        }
    }

    /// Keeps at most `max` finished spans instead of [`MAX_KEPT_SPANS`].
    pub fn with_max_kept(mut self, max: usize) -> Self {
        self.max_kept = max;
        self
    }

    /// Takes spans the engine emitted, and writes each trace of theirs that has none open.
    pub fn settled(
        &mut self,
        engine: &Engine,
        spans: &mut Vec<FinishedSpan>,
    ) -> std::io::Result<()> {
        self.touched.clear();
        for span in spans.drain(..) {
            if self.touched.last() != Some(&span.trace_id) {
                self.touched.push(span.trace_id);
            }
            self.traces.entry(span.trace_id).or_default().push(span);
            self.kept += 1;
        }
        // A trace whose last open spans were dropped (not exported twice) settles without a
        // span in the batch: whenever the kept traces have doubled, every one is looked at.
        let sweep = self.traces.len() > 2 * self.swept.max(1024);
        let mut ready = std::mem::take(&mut self.touched);
        if sweep {
            ready.clear();
            ready.extend(self.traces.keys().copied());
        } else {
            ready.sort_unstable();
            ready.dedup();
        }
        ready.retain(|t| !engine.has_open_spans(*t));
        self.write(&mut ready)?;
        if sweep {
            self.swept = self.traces.len();
        }
        if self.kept > self.max_kept {
            // Too many spans wait for their traces' last open spans (a rollout's root waits for
            // its status up to `max_state_wait`): the traces kept longest are written as they
            // are, down to half the bound; what they get later comes in later requests.
            let mut oldest: Vec<(Timestamp, TraceId)> = self
                .traces
                .iter()
                .map(|(id, spans)| {
                    (
                        spans
                            .iter()
                            .map(|s| s.start)
                            .min()
                            .unwrap_or(Timestamp::MIN),
                        *id,
                    )
                })
                .collect();
            oldest.sort_unstable();
            ready.clear();
            let mut left = self.kept;
            for (_, id) in oldest {
                if left <= self.max_kept / 2 {
                    break;
                }
                left -= self.traces[&id].len();
                ready.push(id);
            }
            self.write(&mut ready)?;
        }
        self.touched = ready;
        Ok(())
    }

    /// Writes what is left (the engine has finished) and returns the output.
    pub fn finish(mut self) -> std::io::Result<W> {
        let mut rest: Vec<TraceId> = self.traces.keys().copied().collect();
        self.write(&mut rest)?;
        self.out.flush()?;
        Ok(self.out)
    }

    /// Writes these traces, earliest first (then by ID, so the output is the same every time).
    fn write(&mut self, traces: &mut Vec<TraceId>) -> std::io::Result<()> {
        let mut ready: Vec<(TraceId, Vec<FinishedSpan>)> = traces
            .drain(..)
            .filter_map(|t| self.traces.remove(&t).map(|spans| (t, spans)))
            .collect();
        self.kept -= ready.iter().map(|(_, spans)| spans.len()).sum::<usize>();
        for (_, spans) in &mut ready {
            spans.sort_by_key(|s| (s.start, s.span_id));
        }
        ready.sort_by_key(|(id, spans)| (spans.first().map(|s| s.start), *id));
        let mut refs = Vec::new();
        for (_, spans) in &ready {
            refs.clear();
            refs.extend(spans.iter());
            write_trace_line(&mut self.line, &refs, &mut self.out)?;
        }
        Ok(())
    }
}

impl Replay {
    /// The earliest span start, for callers that report offsets.
    pub fn start(&self) -> Option<Timestamp> {
        self.spans.iter().map(|s| s.start).min()
    }
}

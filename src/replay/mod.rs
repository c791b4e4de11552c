//! `eventspan replay`: a recording in, traces out, no cluster.
//!
//! Time is virtual: it comes from the recording (`observedAt` where the recorder wrote it, else
//! the event's own time), so replay is instant and the same input always gives the same output.

pub mod input;
pub mod tree;

use crate::engine::model::FinishedSpan;
use crate::engine::time::Timestamp;
use crate::engine::{Engine, EngineConfig, EngineStats};
use crate::wire::{Change, Observed};
use input::BadInput;

/// What a replay produced.
pub struct Replay {
    pub spans: Vec<FinishedSpan>,
    /// Input that could not be used, with its line.
    pub skipped: Vec<BadInput>,
    pub stats: EngineStats,
}

/// Runs a whole recording through a fresh engine and flushes it.
pub fn replay(input: &str, cfg: EngineConfig) -> Replay {
    let mut engine = Engine::new(cfg);
    let mut skipped = Vec::new();
    let mut spans = Vec::new();
    let mut changes = Vec::new();
    for doc in input::documents(input) {
        let doc = match doc {
            Ok(doc) => doc,
            Err(bad) => {
                skipped.push(bad);
                continue;
            }
        };
        (*doc.value).into_changes(&mut changes);
        for change in changes.drain(..) {
            match change {
                Ok(observed) => feed(&mut engine, observed),
                Err(e) => skipped.push(BadInput {
                    line: doc.line,
                    reason: e.to_string(),
                }),
            }
        }
        spans.extend(engine.drain_finished());
    }
    engine.finish();
    spans.extend(engine.drain_finished());
    Replay {
        spans,
        skipped,
        stats: engine.stats(),
    }
}

/// Feeds one change, at the time it was observed or, failing that, the best time it carries.
pub fn feed(
    engine: &mut Engine,
    Observed {
        change,
        observed_at,
    }: Observed,
) {
    let now = engine.now();
    match change {
        Change::Event(event) => engine.observe_event(event, observed_at),
        Change::Upsert(meta) => {
            // Without an observation time, the object's own newest time stands in for it.
            let hint = meta.newest_change_time().or(meta.created);
            engine.upsert_object(&meta, observed_at.or(hint).unwrap_or(now));
        }
        Change::Delete(meta) => {
            engine.delete_object(&meta.namespace, &meta.uid, observed_at.unwrap_or(now))
        }
        Change::Ignore => {
            if let Some(at) = observed_at {
                engine.advance(at);
            }
        }
    }
}

/// OTLP/JSON lines: one `ExportTraceServiceRequest` per trace, as the Collector's file exporter
/// writes them.
pub fn otlp_json_lines(spans: &[FinishedSpan]) -> String {
    let mut out = Vec::new();
    write_otlp_json_lines(spans, &mut out).expect("writing to memory");
    String::from_utf8(out).expect("OTLP/JSON is UTF-8")
}

/// Writes [`otlp_json_lines`] to `out` a trace at a time, so a long recording's output is never
/// held whole in memory.
pub fn write_otlp_json_lines(
    spans: &[FinishedSpan],
    out: &mut impl std::io::Write,
) -> std::io::Result<()> {
    let mut line = String::new();
    for (_, trace) in tree::by_trace(spans) {
        line.clear();
        crate::otlp::json::write_request(&mut line, trace, &crate::otlp::SpanShape::default());
        line.push('\n');
        out.write_all(line.as_bytes())?;
    }
    Ok(())
}

impl Replay {
    /// The earliest span start, for callers that report offsets.
    pub fn start(&self) -> Option<Timestamp> {
        self.spans.iter().map(|s| s.start).min()
    }
}

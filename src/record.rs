//! `eventspan record`: capture a live stream of events and the objects they involve, in the
//! format `eventspan replay` reads.
//!
//! Events are watched in the chosen namespaces; the kind of every involved object, and of every
//! owner of a watched object, gets a metadata-only watch of its own, so a recording holds the
//! owner chains the engine needs and nothing heavier. Each line is a watch event with the time
//! it was observed.

use std::io::Write;

use kube::Client;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::watch::{Delivery, Refusal, Scope, Settings, WatchManager};

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot write the recording: {0}")]
    Write(#[from] std::io::Error),
}

/// What a recording captured.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecordStats {
    pub lines: u64,
    pub events: u64,
    pub kinds: usize,
    /// Kinds named by events or owner references but not watched (malformed, or beyond the
    /// budgets of [`crate::watch::kinds::Budget`]).
    pub kinds_rejected: u64,
    /// Watches given up because the API server kept refusing them.
    pub refused: Vec<Refusal>,
}

/// Lines waiting for the writer; watches wait when it is behind.
const LINES: usize = 1024;

/// A line to write, and whether it is an event's.
type Line = (Value, bool);

/// A recording keeps what arrives, history included; a gap in it is not marked.
fn to_line(delivery: Delivery) -> Option<Line> {
    let event = matches!(delivery, Delivery::Event { .. });
    delivery.into_line().map(|line| (line, event))
}

/// Records until `stop` is cancelled, writing lines to `out`. The watches are the operator's
/// ([`crate::watch::manager`]): the same retries, refusals and kind budgets.
pub async fn record(
    client: Client,
    scopes: Vec<Scope>,
    out: Box<dyn Write + Send>,
    stop: CancellationToken,
) -> Result<RecordStats, RecordError> {
    let (lines_tx, lines_rx) = mpsc::channel::<Line>(LINES);
    let writer = tokio::task::spawn_blocking(move || write_lines(out, lines_rx));
    let watches = WatchManager::new(client, lines_tx, to_line, Settings::default(), stop.clone());
    watches.set_scopes(&scopes.into_iter().collect());
    stop.cancelled().await;
    let kinds = watches.kinds().len();
    let kinds_rejected = watches.kinds_rejected().iter().map(|(_, n)| n).sum();
    let refused = watches.refused();
    // Ended, the watches drop their senders: the writer sees the channel close.
    watches.stop().await;
    let (lines, events) = writer.await.expect("writer task does not panic")?;
    Ok(RecordStats {
        lines,
        events,
        kinds,
        kinds_rejected,
        refused,
    })
}

/// Writes lines until the channel closes: how many, and how many of them were events.
fn write_lines(
    out: Box<dyn Write + Send>,
    mut lines: mpsc::Receiver<Line>,
) -> std::io::Result<(u64, u64)> {
    let mut out = std::io::BufWriter::new(out);
    let (mut written, mut events) = (0, 0);
    while let Some((value, event)) = lines.blocking_recv() {
        serde_json::to_writer(&mut out, &value)?;
        out.write_all(b"\n")?;
        written += 1;
        events += u64::from(event);
        // Flush when caught up, so a follower (`tail -f`, a pipe to replay) sees lines promptly.
        if lines.is_empty() {
            out.flush()?;
        }
    }
    out.flush()?;
    Ok((written, events))
}

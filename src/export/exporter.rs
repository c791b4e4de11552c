//! One exporter: a bounded queue and the task that empties it towards an OTLP endpoint; with
//! `logs`, a second queue and task that send the same spans' events as OTLP log records, so a
//! failing logs endpoint never holds up the spans (nor the other way round).

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::policy::DestinationPolicy;
use super::queue::{SpanQueue, Watermark};
use super::transport::{ExporterSpec, Request, Transport, TransportError};
use crate::engine::model::FinishedSpan;
use crate::engine::time::Timestamp;
use crate::otlp::SpanShape;

/// How exporters queue, batch and retry.
#[derive(Clone, Debug)]
pub struct ExporterSettings {
    /// Spans waiting per exporter; beyond it the oldest are dropped (and counted).
    pub queue_capacity: usize,
    pub batch_size: usize,
    /// A partial batch is sent after this long.
    pub flush_interval: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// A batch that could not be delivered for this long is dropped (and counted).
    pub max_retry: Duration,
    /// Where exporters may connect (the operator's `--exporter-allow`/`--exporter-deny`).
    pub destinations: Arc<DestinationPolicy>,
    /// The wall clock: when a receiver acknowledged spans (tests pass a fixed one).
    pub clock: fn() -> Timestamp,
}

impl Default for ExporterSettings {
    fn default() -> Self {
        ExporterSettings {
            queue_capacity: 10_000,
            batch_size: 512,
            flush_interval: Duration::from_secs(1),
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_retry: Duration::from_secs(300),
            destinations: Arc::new(DestinationPolicy::default()),
            clock: crate::clock::now,
        }
    }
}

/// What an exporter has done, for status and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExporterStats {
    pub exported: u64,
    /// Dropped from a full queue, after retrying too long, or refused for good.
    pub dropped: u64,
    /// Failed send attempts.
    pub errors: u64,
    /// Send attempts the destination policy refused (counted in `errors` too).
    pub refused: u64,
    /// The last failure was a refusal by the destination policy (while unhealthy).
    pub not_permitted: bool,
    /// Spans the receiver accepted the request of but rejected (OTLP partial success).
    pub rejected: u64,
    pub queued: u64,
    /// The last attempt succeeded (or none was made yet).
    pub healthy: bool,
    /// The last failure, in the fixed words of [`super::TransportError`]'s `Display` (status
    /// shows it to the tenant): never a response body or an address.
    pub last_error: Option<String>,
    /// Latency of successful span exports.
    pub latency: Histogram<ExportLatency>,
    /// Per span acknowledged by the receiver: from the span's end to the acknowledgement.
    pub event_to_export: Histogram<EventToExport>,
    /// Log records delivered (exporters with `logs` only).
    pub logs_exported: u64,
    /// Log records dropped: full queue, retries exhausted, refused, or rejected by the receiver.
    pub logs_dropped: u64,
    pub logs_queued: u64,
}

/// The upper bounds (seconds) of a histogram's buckets, named by a type so that a histogram's
/// bounds cannot be mixed up with another's.
pub trait Buckets {
    const BOUNDS: &'static [f64];
}

/// Export requests: Prometheus' default buckets, 5 ms to 10 s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportLatency;

impl Buckets for ExportLatency {
    const BOUNDS: &'static [f64] = &[
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
}

/// A span's end to its acknowledgement: the correlation window (5 s by default), batching
/// (up to the flush interval, 1 s) and retries, so seconds to minutes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventToExport;

impl Buckets for EventToExport {
    const BOUNDS: &'static [f64] = &[
        0.5, 1.0, 2.5, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    ];
}

/// Durations: how many fell at or under each of `B::BOUNDS` (cumulative, as Prometheus reads
/// them), their count and their sum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Histogram<B> {
    pub cumulative: Vec<u64>,
    pub count: u64,
    pub sum_micros: u64,
    buckets: PhantomData<B>,
}

impl<B: Buckets> Default for Histogram<B> {
    fn default() -> Self {
        Histogram {
            cumulative: vec![0; B::BOUNDS.len()],
            count: 0,
            sum_micros: 0,
            buckets: PhantomData,
        }
    }
}

impl<B: Buckets> Histogram<B> {
    pub fn observe(&mut self, d: Duration) {
        let seconds = d.as_secs_f64();
        for (bound, n) in B::BOUNDS.iter().zip(self.cumulative.iter_mut()) {
            if seconds <= *bound {
                *n += 1;
            }
        }
        self.count += 1;
        self.sum_micros = self
            .sum_micros
            .saturating_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }
}

impl ExporterStats {
    /// Adds another exporter's counts to these (a session's retired exporters).
    pub fn absorb(&mut self, other: &ExporterStats) {
        self.exported += other.exported;
        self.dropped += other.dropped;
        self.errors += other.errors;
        self.refused += other.refused;
        self.rejected += other.rejected;
        self.logs_exported += other.logs_exported;
        self.logs_dropped += other.logs_dropped;
    }
}

#[derive(Default)]
struct Counters {
    exported: AtomicU64,
    dropped: AtomicU64,
    errors: AtomicU64,
    refused: AtomicU64,
    rejected: AtomicU64,
    unhealthy: AtomicBool,
    not_permitted: AtomicBool,
    last_error: Mutex<Option<String>>,
    latency: Mutex<Histogram<ExportLatency>>,
    event_to_export: Mutex<Histogram<EventToExport>>,
}

impl Counters {
    /// A span export the receiver acknowledged at `at`: how long the request took, and how
    /// long after its end each span of the batch reached the receiver. A span's end, not its
    /// start: the engine cannot emit a span before its end (a pod's creation span ends when the
    /// pod is Ready, a root when its rollout completes), so only the end measures the delay
    /// eventspan adds; a clock behind the API server's counts as zero. Spans a partial success
    /// rejected are included, as OTLP does not say which they were.
    fn acknowledged(&self, request: Duration, batch: &[Arc<FinishedSpan>], at: Timestamp) {
        self.latency.lock().expect("stats lock").observe(request);
        let mut delays = self.event_to_export.lock().expect("stats lock");
        for span in batch {
            delays.observe(at.since(span.end));
        }
    }
}

/// A sending task and its queue: one for spans, one for log records.
struct Track {
    queue: Arc<SpanQueue>,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl Track {
    fn start(
        spec: &ExporterSpec,
        settings: &ExporterSettings,
        signal: Signal,
        stop: &CancellationToken,
    ) -> Result<Track, TransportError> {
        let transport = Transport::new(spec, &settings.destinations)?;
        let queue = Arc::new(SpanQueue::new(settings.queue_capacity));
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(
            Sender {
                transport,
                queue: queue.clone(),
                counters: counters.clone(),
                settings: settings.clone(),
                stop: stop.clone(),
                signal,
                shape: spec.shape.clone(),
                name: spec.name.clone(),
            }
            .run(),
        );
        Ok(Track {
            queue,
            counters,
            task,
        })
    }

    /// What this task has done, in the span fields of [`ExporterStats`].
    fn stats(&self) -> ExporterStats {
        let c = &self.counters;
        ExporterStats {
            exported: c.exported.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed) + self.queue.dropped.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            queued: self.queue.len() as u64,
            healthy: !c.unhealthy.load(Ordering::Relaxed),
            not_permitted: c.unhealthy.load(Ordering::Relaxed)
                && c.not_permitted.load(Ordering::Relaxed),
            last_error: c.last_error.lock().expect("stats lock").clone(),
            latency: c.latency.lock().expect("stats lock").clone(),
            event_to_export: c.event_to_export.lock().expect("stats lock").clone(),
            ..Default::default()
        }
    }
}

pub struct Exporter {
    pub spec: ExporterSpec,
    settings: ExporterSettings,
    spans: Track,
    logs: Option<Track>,
    stop: CancellationToken,
}

impl Exporter {
    /// Starts the sending task(s). Fails only on configuration errors (bad CA bundle, header).
    pub fn start(
        spec: ExporterSpec,
        settings: ExporterSettings,
    ) -> Result<Exporter, TransportError> {
        let stop = CancellationToken::new();
        let spans = Track::start(&spec, &settings, Signal::Traces, &stop)?;
        let logs = if spec.logs {
            match Track::start(&spec, &settings, Signal::Logs, &stop) {
                Ok(track) => Some(track),
                Err(e) => {
                    stop.cancel();
                    return Err(e);
                }
            }
        } else {
            None
        };
        Ok(Exporter {
            spec,
            settings,
            spans,
            logs,
            stop,
        })
    }

    /// Each sending task's settle watermark (spans, then logs), for the checkpoint.
    pub fn watermarks(&self) -> Vec<Watermark> {
        std::iter::once(&self.spans)
            .chain(&self.logs)
            .map(|t| Watermark(t.queue.clone()))
            .collect()
    }

    /// Queues a span (and, with `logs`, its event's log record); never waits.
    pub fn offer(&self, span: Arc<FinishedSpan>) {
        if let Some(logs) = &self.logs
            && span.event.is_some()
        {
            logs.queue.push(span.clone(), self.settings.batch_size);
        }
        self.spans.queue.push(span, self.settings.batch_size);
    }

    pub fn stats(&self) -> ExporterStats {
        let mut stats = self.spans.stats();
        if let Some(logs) = self.logs.as_ref().map(Track::stats) {
            stats.logs_exported = logs.exported;
            stats.logs_dropped = logs.dropped + logs.rejected;
            stats.logs_queued = logs.queued;
            stats.errors += logs.errors;
            stats.refused += logs.refused;
            if !logs.healthy {
                if stats.healthy {
                    stats.last_error = logs.last_error.map(|e| format!("logs: {e}"));
                    stats.not_permitted = logs.not_permitted;
                }
                stats.healthy = false;
            }
        }
        stats
    }

    /// Stops taking spans, sends what is queued (one attempt per batch, within `grace`), and
    /// ends the task(s). What cannot be sent in time is counted as dropped, and settled: nothing
    /// is sent after this returns (a task still sending is aborted), so a checkpoint written
    /// afterwards never claims a span that might still go out, nor waits for one that never will.
    pub async fn shutdown(mut self, grace: Duration) -> ExporterStats {
        self.stop.cancel();
        let finishing = async {
            let _ = (&mut self.spans.task).await;
            if let Some(logs) = &mut self.logs {
                let _ = (&mut logs.task).await;
            }
        };
        if tokio::time::timeout(grace, finishing).await.is_err() {
            tracing::warn!(exporter = %self.spec.name, "exporter did not finish flushing in time");
        }
        for track in std::iter::once(&self.spans).chain(&self.logs) {
            track.task.abort();
            let left = track.queue.close() as u64;
            track.counters.dropped.fetch_add(left, Ordering::Relaxed);
        }
        ExporterStats {
            queued: 0,
            logs_queued: 0,
            ..self.stats()
        }
    }
}

/// What a sending task sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signal {
    Traces,
    Logs,
}

struct Sender {
    transport: Transport,
    queue: Arc<SpanQueue>,
    counters: Arc<Counters>,
    settings: ExporterSettings,
    stop: CancellationToken,
    signal: Signal,
    shape: SpanShape,
    /// The exporter's name, for the log.
    name: String,
}

enum Outcome {
    Done,
    /// Stopped while waiting to retry: the batch is still unsent.
    Stopped(Vec<Arc<FinishedSpan>>),
}

impl Sender {
    async fn run(mut self) {
        let mut unsent = Vec::new();
        'outer: loop {
            tokio::select! {
                _ = self.queue.ready.notified() => {}
                _ = tokio::time::sleep(self.settings.flush_interval) => {}
                _ = self.stop.cancelled() => break,
            }
            loop {
                let batch = self.queue.take(self.settings.batch_size);
                if batch.is_empty() {
                    break;
                }
                if let Outcome::Stopped(batch) = self.send_with_retries(batch).await {
                    // Still unsettled: the queue keeps its mark until the last attempt below.
                    unsent = batch;
                    break 'outer;
                }
                self.queue.settle();
            }
        }
        // Shutting down: one attempt for what is left; the caller bounds how long this may take.
        if !unsent.is_empty() {
            self.send_once(unsent).await;
            self.queue.settle();
        }
        loop {
            let batch = self.queue.take(self.settings.batch_size);
            if batch.is_empty() {
                break;
            }
            self.send_once(batch).await;
            self.queue.settle();
        }
    }

    async fn attempt(&mut self, batch: &[Arc<FinishedSpan>]) -> Result<(), TransportError> {
        let spans = batch.iter().map(|s| &**s);
        let request = match self.signal {
            Signal::Traces => Request::Traces(crate::otlp::export_request(spans, &self.shape)),
            Signal::Logs => Request::Logs(crate::otlp::logs_request(
                spans,
                &self.shape,
                (self.settings.clock)(),
            )),
        };
        let started = Instant::now();
        let result = self.transport.send(request).await;
        let c = &self.counters;
        match &result {
            Ok(rejected) => {
                self.queue.delivered();
                c.exported.fetch_add(
                    batch.len() as u64 - rejected.min(&(batch.len() as u64)),
                    Ordering::Relaxed,
                );
                c.rejected.fetch_add(*rejected, Ordering::Relaxed);
                c.unhealthy.store(false, Ordering::Relaxed);
                c.not_permitted.store(false, Ordering::Relaxed);
                if self.signal == Signal::Traces {
                    c.acknowledged(started.elapsed(), batch, (self.settings.clock)());
                }
            }
            Err(e) => {
                self.queue.failed(started);
                c.errors.fetch_add(1, Ordering::Relaxed);
                if e.is_not_permitted() {
                    c.refused.fetch_add(1, Ordering::Relaxed);
                }
                c.not_permitted
                    .store(e.is_not_permitted(), Ordering::Relaxed);
                c.unhealthy.store(true, Ordering::Relaxed);
                *c.last_error.lock().expect("stats lock") = Some(e.to_string());
            }
        }
        result.map(|_| ())
    }

    async fn send_once(&mut self, batch: Vec<Arc<FinishedSpan>>) {
        if let Err(error) = self.attempt(&batch).await {
            tracing::warn!(
                exporter = %self.name,
                signal = ?self.signal,
                %error,
                detail = error.detail(),
                spans = batch.len(),
                "export failed while stopping; dropping the batch"
            );
            self.counters
                .dropped
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
    }

    async fn send_with_retries(&mut self, batch: Vec<Arc<FinishedSpan>>) -> Outcome {
        let first = Instant::now();
        let mut backoff = self.settings.initial_backoff;
        loop {
            let wait = match self.attempt(&batch).await {
                Ok(()) => return Outcome::Done,
                Err(TransportError::Retryable {
                    detail,
                    retry_after,
                    ..
                }) if first.elapsed() < self.settings.max_retry => {
                    // Retry-After is honoured, but never past the batch's retry budget.
                    let budget_left = self.settings.max_retry.saturating_sub(first.elapsed());
                    let wait = retry_after
                        .unwrap_or_else(|| jittered(backoff))
                        .min(budget_left);
                    tracing::debug!(exporter = %self.name, signal = ?self.signal, %detail, ?wait, "export failed; retrying");
                    backoff = (backoff * 2).min(self.settings.max_backoff);
                    wait
                }
                Err(error) => {
                    tracing::warn!(
                        exporter = %self.name,
                        signal = ?self.signal,
                        %error,
                        detail = error.detail(),
                        spans = batch.len(),
                        "export failed; dropping the batch"
                    );
                    self.counters
                        .dropped
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    return Outcome::Done;
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.stop.cancelled() => return Outcome::Stopped(batch),
            }
        }
    }
}

/// ±20 % around `d`, so exporters that failed together do not retry in lockstep.
fn jittered(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    let factor = 0.8 + f64::from(nanos % 1000) / 2500.0;
    d.mul_f64(factor)
}

//! A session's exporters as the hub drives them, and where they come from: the seam through
//! which the hub's tests pass doubles. [`OtlpExporters`] starts the real ones
//! ([`crate::export::Exporter`]: a queue and a sending task each).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::engine::model::FinishedSpan;
use crate::export::{
    Exporter, ExporterSettings, ExporterSpec, ExporterStats, TransportError, Watermark,
};

/// One running exporter of a session.
pub trait SessionExporter: Send {
    /// The name the session's spec gives it.
    fn name(&self) -> &str;

    /// Queues a span; never waits.
    fn offer(&self, span: Arc<FinishedSpan>);

    fn stats(&self) -> ExporterStats;

    /// Its sending tasks' settle watermarks: a checkpoint waits for what they still hold.
    fn watermarks(&self) -> Vec<Watermark>;

    /// Stops taking spans, sends what it holds within `grace`, and ends; resolves to what it
    /// did in all.
    fn shutdown(self: Box<Self>, grace: Duration) -> BoxFuture<'static, ExporterStats>;
}

/// Starts a session's exporters from their specs.
pub trait ExporterFactory: Send {
    /// Fails only on the exporter's own settings (a CA bundle, a header).
    fn start(&self, spec: &ExporterSpec) -> Result<Box<dyn SessionExporter>, TransportError>;
}

/// OTLP exporters, all with the operator's queue, batch, retry and destination settings.
pub struct OtlpExporters(pub ExporterSettings);

impl ExporterFactory for OtlpExporters {
    fn start(&self, spec: &ExporterSpec) -> Result<Box<dyn SessionExporter>, TransportError> {
        let exporter = Exporter::start(spec.clone(), self.0.clone())?;
        Ok(Box::new(exporter))
    }
}

impl SessionExporter for Exporter {
    fn name(&self) -> &str {
        &self.spec.name
    }

    fn offer(&self, span: Arc<FinishedSpan>) {
        Exporter::offer(self, span);
    }

    fn stats(&self) -> ExporterStats {
        Exporter::stats(self)
    }

    fn watermarks(&self) -> Vec<Watermark> {
        Exporter::watermarks(self)
    }

    fn shutdown(self: Box<Self>, grace: Duration) -> BoxFuture<'static, ExporterStats> {
        Box::pin(Exporter::shutdown(*self, grace))
    }
}

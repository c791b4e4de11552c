//! OTLP export of finished spans: a bounded queue and a sending task per exporter.
//!
//! Nothing here blocks the caller: spans are offered to a queue that drops its oldest span when
//! full (and counts it); a task per exporter batches, sends over gRPC or HTTP/protobuf, and retries
//! retryable failures with exponential backoff (honouring `Retry-After`) for a bounded time.

mod exporter;
pub mod policy;
mod queue;
mod tls;
mod transport;

pub use exporter::{
    Buckets, EventToExport, ExportLatency, Exporter, ExporterSettings, ExporterStats, Histogram,
};
pub use policy::{DestinationPolicy, NotPermitted};
pub use queue::Watermark;
pub use transport::{ExporterSpec, NOT_PERMITTED, Protocol, TransportError};

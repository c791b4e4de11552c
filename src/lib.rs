//! eventspan turns Kubernetes Events into OpenTelemetry traces.
//!
//! The correlation [`engine`] is pure and synchronous; everything else is a thin shell around
//! it: [`wire`] decodes Kubernetes JSON, [`replay`] drives the engine from a recording, and
//! [`otlp`] encodes its spans.

pub mod duration;
pub mod engine;
pub mod export;
pub mod live;
pub mod operator;
pub mod otlp;
pub mod record;
pub mod replay;
pub mod status;
pub mod watch;
pub mod wire;
pub mod workload;

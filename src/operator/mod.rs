//! The operator: TraceSession resources drive shared watchers, the engine and OTLP exporters.

pub mod crd;
pub mod matcher;
pub mod session;

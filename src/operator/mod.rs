//! The operator: TraceSession resources drive shared watchers, the engine and OTLP exporters.

pub mod checkpoint;
pub mod conditions;
pub mod crd;
pub mod engines;
pub mod hub;
pub mod limits;
pub mod matcher;
pub mod metrics;
pub mod reconcile;
pub mod run;
pub mod session;
pub mod status;
#[cfg(test)]
mod testing;
pub mod traces;
pub mod watches;

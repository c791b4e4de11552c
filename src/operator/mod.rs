//! The operator: TraceSession resources drive shared watchers, the engine and OTLP exporters.

mod checkpoint;
pub mod conditions;
pub mod crd;
mod engines;
pub mod hub;
pub mod limits;
mod matcher;
mod metrics;
mod reconcile;
pub mod run;
pub mod session;
pub mod snapshot;
pub mod status;
#[cfg(test)]
mod testing;
mod traces;
mod watches;

//! eventspan turns Kubernetes Events into OpenTelemetry traces.
//!
//! Data flows one way:
//!
//! ```text
//! operator:  API server ─▶ watch (objects, events) ─▶ engine (pure) ─▶ operator hub ─▶ export (OTLP), status
//! replay:    recording  ─▶ wire (decode)            ─▶ engine (pure) ─▶ replay (tree, OTLP/JSON)
//! record:    API server ─▶ watch (objects, events) ─▶ record (JSON lines)
//! ```
//!
//! The modules, one job each:
//! - [`wire`]: Kubernetes JSON and YAML (watch events, objects, Lists) decoded into the engine's
//!   inputs, leniently; its `progress` reads whether an object's status says its change is
//!   rolled out, failed or Ready, as `kubectl rollout status` reads it.
//! - [`engine`]: the correlation core, synchronous and deterministic, clock injected: objects and
//!   events in, finished spans out. A crate of its own (`crates/engine`, `eventspan-engine`)
//!   that depends on nothing doing I/O, re-exported here.
//! - [`watch`]: the one watch manager of `record` and the operator: it covers scopes, follows
//!   the kinds events and owner references name, and hands every delivery to its consumer's
//!   decoder; which API serves a kind; objects reduced to what is kept.
//! - [`otlp`]: finished spans (and events as log records) encoded as OTLP, one Resource per
//!   reporting component.
//! - [`export`]: a bounded queue and a sending task per OTLP exporter, with retries and backoff.
//! - [`operator`]: TraceSession resources drive shared watches, the engines, the exporters and
//!   the sessions' status; leader election and checkpoints.
//! - [`replay`]: `eventspan replay`, a recording in, traces out, no cluster.
//! - [`live`]: `eventspan watch`, one rollout's trace tree redrawn live from the cluster.
//! - [`record`]: `eventspan record`, a live stream captured in the format replay reads.
//! - [`clock`]: the wall clock, read by the shells only.
//! - [`duration`]: Go-style durations (`5s`, `1m30s`) as Kubernetes users write them.

pub mod clock;
pub mod duration;
pub use eventspan_engine as engine;
pub mod export;
pub mod live;
pub mod operator;
pub mod otlp;
pub mod record;
pub mod replay;
pub mod watch;
pub mod wire;

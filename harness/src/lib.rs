//! meshward-harness: a Proxy-Wasm (ABI 0.2.1) host on wasmtime that loads a filter's
//! `.wasm` and drives it the way Envoy 1.40 does, so filter tests are fast, deterministic
//! and can run in parallel.
//!
//! Build a [`Host`] for a module, send [`Request`]s through its [`Worker`]s with an
//! [`Upstream`] answer, and read the [`Outcome`]: the response the client got, the request
//! the upstream got, and the cost. The host also exposes metrics, logs, shared data, the
//! virtual clock, pending callouts and whether each worker's VM is alive. See the README for
//! what is emulated and what differs from Envoy.

mod abi;
mod callouts;
mod clock;
mod cost;
mod engine;
pub mod envoy_foreign;
mod error;
mod guest_memory;
mod headers;
mod host;
mod host_shared;
mod logs;
mod maps_and_buffers;
mod message;
mod metrics;
mod properties;
mod property_value;
mod root_events;
mod shared_data;
mod stats_tags;
mod status;
mod stream;
mod stream_data;
mod vm;
mod vm_state;
mod wasi;

use std::path::PathBuf;

pub use callouts::{
    GrpcCall, GrpcCallReply, GrpcStream, GrpcStreamReply, HttpCall, HttpCallReply, GRPC_UNAVAILABLE,
};
pub use cost::{CallCost, Callback, Cost, CostReport, HostCalls};
pub use error::HarnessError;
pub use headers::HeaderMap;
pub use host::{Host, HostBuilder, Outcome, Stream, TaggedMetric, Worker};
pub use host_shared::ForeignFunction;
pub use logs::{LogEntry, LogLevel, LogOrigin};
pub use message::{response_flags, Reply, Request, Response, Upstream};
pub use metrics::{MetricKind, MetricValue, ENVOY_PREFIX};
pub use property_value::PropertyValue;
pub use shared_data::SharedData;
pub use status::Status;
pub use stream_data::{Phase, StreamState};

/// Where `make build` puts the `.wasm` of a filter or fixture: `$MESHWARD_OUT/<name>.wasm`
/// if `MESHWARD_OUT` is set, else `<workspace root>/out/<name>.wasm`, e.g.
/// `wasm_path("security-headers")` or `wasm_path("fixture-noop")`.
///
/// The path may not exist yet; [`HostBuilder::build`] then fails with an error that says
/// to run `make build` first.
pub fn wasm_path(name: &str) -> PathBuf {
    let out = match std::env::var_os("MESHWARD_OUT") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(|root| root.join("out"))
            .unwrap_or_else(|| PathBuf::from("out")),
    };
    out.join(format!("{name}.wasm"))
}

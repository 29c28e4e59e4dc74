//! Test support shared by the cross-crate tests: the Envoy rig and the local upstream.
//!
//! - [`envoy`]: starts the `.venv` Envoy on free loopback ports, waits until it is ready,
//!   and always stops it; also runs `envoy --mode validate`.
//! - [`config`]: Envoy configs from `envoy-config/` or built inline, rewritten so that
//!   tests can run in parallel.
//! - [`upstream`]: a recording upstream server that answers as a test tells it.
//! - [`http1`]: the HTTP/1.1 client and server framing both use, keeping headers in order.
//! - [`stats`]: Envoy's `/stats/prometheus` text, parsed.
//! - [`kustomize`], [`istio_schema`], [`istiod`]: the manifests `k8s/` renders, checked
//!   as Istio's API server would, and turned into the Envoy config istiod would produce.
//! - [`traffic_extension`], [`envoy_gateway`], [`crd`]: the same for Istio's
//!   TrafficExtension and Envoy Gateway's EnvoyExtensionPolicy, and a CRD's schema (ajv).
//! - [`prometheus`]: a real Prometheus on a free loopback port, and `promtool`.
//! - [`ecds`]: filter configs Envoy watches in a temporary directory, for hot reload.
//! - [`load`]: steady load from concurrent clients, every request timed, for failover drills.
//! - [`rls`]: a real Rate Limit Service (limitador on redis-server) for global rate limits.
//! - [`parity`]: one config on both backends (Wasm, native), compared as a client, the
//!   upstream and an operator see it.
//! - [`cost`]: fuel, host calls by kind and VM entries of one bench request in the harness.
//! - [`error`]: the one error type, whose text says what to do.
//!
//! ```no_run
//! use meshward_tests::{Envoy, EnvoyConfig, Request, Upstream};
//!
//! # async fn example() -> Result<(), meshward_tests::RigError> {
//! let upstream = Upstream::start().await?;
//! let config = EnvoyConfig::load("meshward.yaml")?.upstream(8080, upstream.port());
//! let envoy = Envoy::start(config).await?;
//! let response = envoy.send(Request::get("/")).await?;
//! assert_eq!(response.status(), 200);
//! assert_eq!(upstream.received()[0].path(), "/");
//! # Ok(())
//! # }
//! ```

pub mod config;
pub mod cost;
pub mod crd;
pub mod ecds;
pub mod envoy;
pub mod envoy_gateway;
pub mod error;
pub mod http1;
pub mod istio_schema;
pub mod istiod;
pub mod kustomize;
pub mod load;
pub mod monitoring;
pub mod parity;
pub mod prometheus;
pub mod rls;
pub mod stats;
pub mod traffic_extension;
pub mod upstream;

pub use config::{Backend, EnvoyConfig, WasmFilter};
pub use envoy::{Envoy, EnvoyBuilder};
pub use error::RigError;
pub use http1::{Request, Response};
pub use rls::Rls;
pub use stats::Stats;
pub use upstream::{Reply, Upstream};

use std::path::PathBuf;

/// The repository's root directory (the workspace root).
pub fn repo_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

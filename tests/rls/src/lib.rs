//! A Rate Limit Service for meshward's Envoy tests: Envoy's
//! `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit` over gRPC, answered by
//! Kuadrant's `limitador` crate with its Redis storage, so every Envoy that asks shares one
//! count per key.
//!
//! - [`proto`]: the protocol's messages, as hand-written prost structs.
//! - [`limits`]: the limits file (limitador's format: namespace, max_value, seconds,
//!   conditions, variables).
//! - [`service`]: the gRPC service: the request's domain is limitador's namespace, its
//!   descriptors are the CEL list `descriptors`, and `hits_addend` is the delta.

pub mod limits;
pub mod proto;
pub mod service;

/// The tonic stubs build.rs generates: `rate_limit_service_server` and
/// `rate_limit_service_client`.
pub mod grpc {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(
        env!("OUT_DIR"),
        "/envoy.service.ratelimit.v3.RateLimitService.rs"
    ));
}

//! Generates the tonic server and client stubs for `RateLimitService` from a description in
//! Rust (tonic-build's `manual` builder): no `.proto` files and no protoc.

fn main() {
    let should_rate_limit = tonic_build::manual::Method::builder()
        .name("should_rate_limit")
        .route_name("ShouldRateLimit")
        .input_type("crate::proto::RateLimitRequest")
        .output_type("crate::proto::RateLimitResponse")
        .codec_path("tonic::codec::ProstCodec")
        .build();
    let service = tonic_build::manual::Service::builder()
        .name("RateLimitService")
        .package("envoy.service.ratelimit.v3")
        .method(should_rate_limit)
        .build();
    tonic_build::manual::Builder::new().compile(&[service]);
    println!("cargo:rerun-if-changed=build.rs");
}

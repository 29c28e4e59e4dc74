//! Properties in Envoy's encodings, derived from the request and the plugin, or set by the
//! test or the filter.

mod common;

use common::{hex, ok_upstream, probe, probe_request};
use meshward_harness::Request;

fn property(host: &meshward_harness::Host, request: Request, path: &str) -> String {
    let probe_header = format!("property:{path}");
    let out = host.send(request.header("x-probe", &probe_header), ok_upstream());
    let name = format!("x-property-{path}");
    out.upstream_request
        .unwrap()
        .header_value(&name)
        .unwrap()
        .to_string()
}

#[test]
fn request_properties_are_raw_strings() {
    let host = probe().build().unwrap();
    let request = || Request::get("/a/b?x=1").header("host", "app.example");
    assert_eq!(property(&host, request(), "request.path"), hex(b"/a/b?x=1"));
    assert_eq!(property(&host, request(), "request.url_path"), hex(b"/a/b"));
    assert_eq!(
        property(&host, request(), "request.host"),
        hex(b"app.example")
    );
    assert_eq!(property(&host, request(), "request.method"), hex(b"GET"));
    assert_eq!(
        property(&host, request(), "request.protocol"),
        hex(b"HTTP/1.1")
    );
    assert_eq!(
        property(&host, request().source("10.1.2.3:5555"), "source.address"),
        hex(b"10.1.2.3:5555")
    );
}

#[test]
fn integer_properties_are_eight_byte_little_endian() {
    let host = probe().build().unwrap();
    let port = property(
        &host,
        Request::get("/").source("10.1.2.3:5555"),
        "source.port",
    );
    assert_eq!(port, hex(&5555i64.to_le_bytes()));
    assert_eq!(
        property(&host, Request::get("/"), "response.flags"),
        hex(&0i64.to_le_bytes())
    );
}

#[test]
fn a_response_property_is_not_found_before_the_response() {
    let host = probe().build().unwrap();
    assert_eq!(property(&host, Request::get("/"), "response.code"), "err:1");
}

#[test]
fn request_headers_are_reachable_one_by_one() {
    let host = probe().build().unwrap();
    let value = property(
        &host,
        Request::get("/").header("x-tenant", "acme"),
        "request.headers.x-tenant",
    );
    assert_eq!(value, hex(b"acme"));
}

#[test]
fn plugin_properties_come_from_the_builder() {
    let host = probe()
        .plugin_name("sec")
        .vm_id("vm-1")
        .node_id("sidecar~10.0.0.1")
        .build()
        .unwrap();
    assert_eq!(
        property(&host, Request::get("/"), "plugin_name"),
        hex(b"sec")
    );
    assert_eq!(
        property(&host, Request::get("/"), "plugin_vm_id"),
        hex(b"vm-1")
    );
    assert_eq!(
        property(&host, Request::get("/"), "xds.node.id"),
        hex(b"sidecar~10.0.0.1")
    );
    // Envoy 1.40 keeps the node, cluster and route under `xds`: the old top-level names
    // are not found.
    for old in [
        "node.id",
        "cluster_name",
        "route_name",
        "listener_direction",
    ] {
        assert_eq!(property(&host, Request::get("/"), old), "err:1", "{old}");
    }
}

#[test]
fn route_and_upstream_properties_come_from_the_simulated_route() {
    let host = probe()
        .cluster_name("backend")
        .route_name("api")
        .upstream_address("10.0.0.9:8443")
        .build()
        .unwrap();
    assert_eq!(
        property(&host, Request::get("/"), "xds.cluster_name"),
        hex(b"backend")
    );
    assert_eq!(
        property(&host, Request::get("/"), "xds.route_name"),
        hex(b"api")
    );
    // The upstream is chosen after the request headers.
    assert_eq!(
        property(&host, Request::get("/"), "upstream.address"),
        "err:1"
    );
    // Without a route there is no route name.
    let out = host.send(
        Request::get("/").header("x-probe", "rqh>prop:xds.route_name"),
        meshward_harness::Upstream::no_route(),
    );
    assert_eq!(out.response.status(), 404);
    assert!(host
        .log_messages(meshward_harness::LogLevel::Info)
        .iter()
        .any(|m| m.ends_with("|rqh|prop:xds.route_name|err:1")));
    let logged = host.send(
        Request::get("/").header("x-probe", "log>prop:upstream.address"),
        ok_upstream(),
    );
    assert_eq!(logged.response.status(), 200);
    assert!(host
        .log_messages(meshward_harness::LogLevel::Info)
        .iter()
        .any(|m| m.ends_with(&format!(
            "|log|prop:upstream.address|ok:{}",
            hex(b"10.0.0.9:8443")
        ))));
}

#[test]
fn the_test_can_set_properties_for_the_host_or_one_request() {
    let host = probe()
        .property("xds.node.metadata.REGION", "eu-west-1")
        .build()
        .unwrap();
    assert_eq!(
        property(&host, Request::get("/"), "xds.node.metadata.REGION"),
        hex(b"eu-west-1")
    );
    let mtls = Request::get("/").property("connection.mtls", true);
    assert_eq!(property(&host, mtls, "connection.mtls"), "01");
    assert_eq!(property(&host, Request::get("/"), "connection.mtls"), "00");
}

#[test]
fn a_property_the_filter_sets_reads_back_in_the_same_stream() {
    let host = probe().build().unwrap();
    let out = host.send(probe_request("set-property:tenant=acme"), ok_upstream());
    assert_eq!(
        out.upstream_request.unwrap().header_value("x-set-property"),
        Some("ok:acme")
    );
    // A name Envoy knows resolves to its own value (two-segment paths are in
    // tests/tests/differential.rs).
    let out = host.send(probe_request("set-property:plugin_name=x"), ok_upstream());
    assert_eq!(
        out.upstream_request.unwrap().header_value("x-set-property"),
        Some("ok:meshward")
    );
}
